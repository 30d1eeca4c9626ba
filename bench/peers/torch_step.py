#!/usr/bin/python3
"""Median wall time of one PyTorch training step of one of BnDist's models (--model: convnet,
mlp-paper, resnet20, resnet56, bn-inception; torch_models.py): the peer of `bndist bench step`.

What it measures: one step = zero_grad, forward (model.train(), batch norm on batch statistics),
F.cross_entropy, backward, torch.optim.SGD(lr 0.01, momentum 0.9, weight decay 5e-4).step() and
loss.item(), on one fixed batch: the first --batch-size samples of the embedded Fashion-MNIST
training subset (data/fashion-mnist), as `bndist bench step` uses. After --warmup untimed steps,
--iterations steps are timed one by one with time.perf_counter (on --device cuda too: loss.item()
ends each step by waiting for the GPU); it prints one JSON line

  {"median_ms", "min_ms", "max_ms", "threads", "batch_size", "model", "norm", "iterations",
   "warmup", "gflop_per_step", "gflops", "torch_version", "blas", "mkldnn", ...}

where gflop_per_step counts 2 x multiply-adds of the conv/linear layers as BenchCommand.StepFlops
does (forward, weight and input gradients; no input gradient for the first layer).

Run (Debian's torch is in the system python; its default BLAS is ~2x slower than OpenBLAS/OpenMP):

  LD_LIBRARY_PATH=/usr/lib/x86_64-linux-gnu/openblas-openmp OMP_NUM_THREADS=2 \\
      /usr/bin/python3 bench/peers/torch_step.py --batch-size 128 --threads 2

bench/step.sh runs it interleaved with `bndist bench step`. stdlib + torch only.
"""
import argparse
import json
import os
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

import torch_models as tm  # noqa: E402


def main():
    ap = argparse.ArgumentParser(description="median ms per PyTorch training step of BnDist's models")
    ap.add_argument("--model", default="convnet", choices=tm.ARCHITECTURES)
    ap.add_argument("--norm", default="bn", choices=tm.NORMALIZATIONS)
    ap.add_argument("--batch-size", type=int, default=128)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--warmup", type=int, default=10)
    ap.add_argument("--iterations", type=int, default=30)
    ap.add_argument("--data", default=os.path.join(HERE, "..", "..", "data", "fashion-mnist"),
                    help="directory of the IDX files (default: the embedded subset)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--device", default="cpu",
                    help="torch device: cpu (default) or cuda[:N]; each step ends in loss.item(), which waits for the GPU")
    args = ap.parse_args()
    if args.batch_size < 1 or args.threads < 1 or args.iterations < 1 or args.warmup < 0:
        ap.error("--batch-size, --threads and --iterations must be >= 1, --warmup >= 0")

    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        ap.error(f"--device {args.device}: torch {torch.__version__} sees no CUDA device")
    tm.setup_threads(args.threads)
    torch.manual_seed(args.seed)
    images, labels = tm.load_fashion_mnist(args.data, train=True)
    if args.batch_size > len(labels):
        ap.error(f"--batch-size {args.batch_size} exceeds the {len(labels)} samples in {args.data}")
    x = images[:args.batch_size].contiguous().to(device)
    y = labels[:args.batch_size].contiguous().to(device)

    model = tm.build(args.model, args.norm, in_channels=x.shape[1], classes=tm.CLASSES).to(device)
    model.train()
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, weight_decay=5e-4)

    def step():
        opt.zero_grad(set_to_none=True)
        loss = F.cross_entropy(model(x), y)
        loss.backward()
        opt.step()
        return loss.item()

    for _ in range(args.warmup):
        step()
    times = []
    for _ in range(args.iterations):
        t0 = time.perf_counter()
        step()
        times.append((time.perf_counter() - t0) * 1000.0)

    times.sort()
    median = times[len(times) // 2]  # BenchCommand's definition (the upper median when even)
    gflop = tm.step_flops(model, args.batch_size, sample_shape=tuple(x.shape[1:])) / 1e9
    result = {
        "model": args.model, "norm": args.norm, "batch_size": args.batch_size, "threads": args.threads,
        "median_ms": median, "min_ms": times[0], "max_ms": times[-1],
        "iterations": args.iterations, "warmup": args.warmup,
        "gflop_per_step": gflop, "gflops": gflop / (median / 1000.0),
    }
    result.update(tm.runtime_info())
    result["device"] = str(device)
    if device.type == "cuda":
        # PyTorch's defaults, recorded beside the figure: TF32 convolutions are on unless disabled.
        result["cuda_device"] = torch.cuda.get_device_name(device)
        result["cudnn_allow_tf32"] = torch.backends.cudnn.allow_tf32
        result["matmul_allow_tf32"] = torch.backends.cuda.matmul.allow_tf32
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
