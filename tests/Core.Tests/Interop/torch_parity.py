#!/usr/bin/python3
"""PyTorch side of TorchParityTests.cs: replays BnDist's first training steps in PyTorch.

Usage (TorchParityTests runs it; by hand it needs Debian's torch, which is /usr/bin/python3):

  LD_LIBRARY_PATH=/usr/lib/x86_64-linux-gnu/openblas-openmp OMP_NUM_THREADS=1 \\
  /usr/bin/python3 torch_parity.py --init INIT.safetensors --data DIR --out OUT.safetensors \\
      [--model convnet|mlp-paper|resnet20|resnet56|bn-inception] [--batch-size 32] [--steps 3] [--lr 0.05] [--momentum 0.9] \\
      [--weight-decay 5e-4] [--eval-count 16] [--threads 1]

Loads the BnDist checkpoint INIT into the PyTorch twin of the model (bench/peers/torch_models.py;
input channels from DIR's images, 10 classes) by name: every tensor of INIT must be a
state_dict entry of the twin, with its shape, and the other way round, else it exits with
status 3 and names each missing, unexpected or misshapen key on stderr. Then in float32, model.train(), runs --steps SGD steps on the training split of DIR without
shuffling (step s takes samples [s*B, (s+1)*B)): F.cross_entropy (mean), backward,
torch.optim.SGD(lr, momentum, weight_decay). Writes OUT as safetensors:

  every state_dict entry (parameters, running_mean, running_var, num_batches_tracked)
  optimizer.momentum_buffer.<param>   SGD momentum buffers after the last step (BnDist's names)
  parity.grad1.<param>                the gradients of step 1 (one step: no amplification)
  parity.losses                       F64 [steps], the loss of each step (before its update)
  parity.eval_logits                  F32 [eval-count, 10], eval-mode logits of the first test images
  fp64.<any float tensor above>       the same steps run in float64 (the reference for rounding)
  parity.normalize_table              F32 [256], the normalized value of each pixel byte

with metadata torch_version and threads. Prints "ready" once torch is imported. Exit status 77
(and a line on stderr) when torch cannot be imported, so the caller can tell "not available"
from "failed".
"""
import argparse
import os
import sys


def find_peers():
    """bench/peers of this repository: tests/Core.Tests/Interop/ is three levels below the root."""
    here = os.path.dirname(os.path.abspath(__file__))
    for up in range(3, 6):
        candidate = os.path.join(here, *([".."] * up), "bench", "peers")
        if os.path.exists(os.path.join(candidate, "torch_models.py")):
            return os.path.normpath(candidate)
    return None


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--init", required=True)
    ap.add_argument("--data", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--model", default="convnet", help="convnet, mlp-paper, resnet20, resnet56 or bn-inception")
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--lr", type=float, default=0.05)
    ap.add_argument("--momentum", type=float, default=0.9)
    ap.add_argument("--weight-decay", type=float, default=5e-4)
    ap.add_argument("--eval-count", type=int, default=16)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--peers", default=None, help="directory of torch_models.py (default: found from this file)")
    args = ap.parse_args()

    try:
        import torch
        import torch.nn.functional as F
    except ImportError as e:
        print(f"torch is not importable by {sys.executable}: {e}", file=sys.stderr)
        return 77
    peers = args.peers or find_peers()
    if peers is None:
        print("bench/peers/torch_models.py not found above this script; pass --peers", file=sys.stderr)
        return 2
    sys.path.insert(0, peers)
    import safetensors_io
    import torch_models as tm
    if args.model not in tm.ARCHITECTURES:
        print(f"--model {args.model!r}: torch_models.py twins {', '.join(tm.ARCHITECTURES)}", file=sys.stderr)
        return 2
    print("ready", flush=True)  # the test waits for this line before it trains

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)  # nothing random is drawn (the init is loaded), but be explicit

    images, labels = tm.load_fashion_mnist(args.data, train=True)
    need = args.steps * args.batch_size
    if need > len(labels):
        print(f"{args.data}: {len(labels)} training samples, {need} needed", file=sys.stderr)
        return 2
    test_images, _ = tm.load_fashion_mnist(args.data, train=False)

    def twin():
        return tm.build(args.model, in_channels=images.shape[1], classes=tm.CLASSES)

    # The names first, once, so a mismatch fails with its list rather than a traceback.
    state, _, meta = tm.load_checkpoint(args.init)
    if meta.get("model") != args.model or meta.get("norm") != "bn":
        print(f"{args.init}: holds {meta.get('model')}/{meta.get('norm')}, expected {args.model}/bn", file=sys.stderr)
        return 3
    try:
        tm.check_names(twin(), state, args.init)
    except ValueError as e:
        print(e, file=sys.stderr)
        return 3

    def run(dtype):
        """The same steps from the same initial state in dtype: float32 is the peer, float64
        the (near-)exact answer both float32 implementations are measured against."""
        model = twin()
        tm.load_into(model, args.init)
        model = model.to(dtype)
        opt = torch.optim.SGD(model.parameters(), lr=args.lr, momentum=args.momentum, weight_decay=args.weight_decay)
        out, losses = {}, []
        model.train()
        for s in range(args.steps):
            x = images[s * args.batch_size:(s + 1) * args.batch_size].to(dtype)
            y = labels[s * args.batch_size:(s + 1) * args.batch_size]
            opt.zero_grad(set_to_none=True)
            loss = F.cross_entropy(model(x), y)
            loss.backward()
            if s == 0:
                for name, p in model.named_parameters():
                    out[f"parity.grad1.{name}"] = p.grad.detach().clone()
            opt.step()
            losses.append(loss.item())
        model.eval()
        with torch.no_grad():
            logits = model(test_images[:args.eval_count].to(dtype))
        out.update({k: v.detach().clone() for k, v in model.state_dict().items()})
        out.update(tm.momentum_state(model, opt))
        out["parity.losses"] = torch.tensor(losses, dtype=torch.float64)
        out["parity.eval_logits"] = logits
        return out, losses

    out, losses = run(torch.float32)
    exact, _ = run(torch.float64)
    out.update({"fp64." + k: v.double() for k, v in exact.items() if v.is_floating_point()})
    out["parity.normalize_table"] = tm.normalize_table()
    safetensors_io.write(args.out, out, {"torch_version": torch.__version__, "threads": str(torch.get_num_threads())})
    print(f"torch {torch.__version__}: {args.steps} steps of {args.batch_size}, losses {losses}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
