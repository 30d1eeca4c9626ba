#!/usr/bin/python3
"""PyTorch trains one of BnDist's models (--model, torch_models.py) on Fashion-MNIST with
BnDist's recipe: the accuracy peer of `bndist train`.

What it measures: test accuracy (and loss) after each epoch of SGD training, with the same
settings `bndist train` takes: global batch --batch-size, --lr with --lr-schedule constant or
cosine (BnDist's per-step cosine: step t of T runs at lr*(1 + cos(pi*t/T))/2), --momentum,
--weight-decay (torch.optim.SGD, which BnDist's Sgd mirrors), F.cross_entropy (mean), batch norm
with momentum 0.1 and eps 1e-5, inputs normalized as BnDist does ((x/255 - 0.2860)/0.3530), and
--augment crop:P,flip as bndist's --augment (torch_augment.py: pad P zeros after normalization,
random crop back to 28x28, horizontal flip p=0.5; per sample, drawn from a torch.Generator
seeded with --seed + 1).
Each epoch visits a fresh random permutation of the training set drawn from torch.Generator
seeded with --seed (PyTorch's own shuffle, not BnDist's), in batches of --batch-size with the
short last batch kept (as bench/accuracy.sh runs bndist train: --keep-last-batch). Initialization is
PyTorch's default unless --init names a BnDist checkpoint. Evaluation: model.eval() (running
statistics) over the whole test split in batches of 1000.

Prints one line per epoch and, with --metrics-out, JSON lines shaped like bndist's:
  {"step", "epoch", "loss", "lr"}                        every --log-every steps
  {"step", "epoch", "test_loss", "test_accuracy", ...}   after each epoch (and at --steps)

Run (the full set is installed in /usr/share/datasets/fashion-mnist):

  LD_LIBRARY_PATH=/usr/lib/x86_64-linux-gnu/openblas-openmp OMP_NUM_THREADS=2 \\
      /usr/bin/python3 bench/peers/torch_train.py --epochs 3 --threads 2
  ... torch_train.py --model resnet20 --epochs 5 --lr 0.1 --lr-schedule cosine --augment crop:4,flip

bench/accuracy.sh (and bench/accuracy-resnet.sh) runs it next to `bndist train` and prints both curves. stdlib + torch only.
"""
import argparse
import json
import math
import os
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

import torch_augment  # noqa: E402
import torch_models as tm  # noqa: E402

SCHEDULES = ("constant", "cosine")


def learning_rate(schedule, base, step, total):
    """The rate of 0-based step `step` of `total`, as BnDist's LearningRateSchedule.At."""
    if schedule == "cosine":
        return base * 0.5 * (1 + math.cos(math.pi * step / total))
    return base


def evaluate(model, images, labels, batch=1000):
    model.eval()
    loss_sum, correct = 0.0, 0
    with torch.no_grad():
        for start in range(0, len(labels), batch):
            logits = model(images[start:start + batch])
            y = labels[start:start + batch]
            loss_sum += F.cross_entropy(logits, y, reduction="sum").item()
            correct += (logits.argmax(1) == y).sum().item()
    model.train()
    n = max(1, len(labels))
    return loss_sum / n, correct / n


def main():
    ap = argparse.ArgumentParser(description="PyTorch trains BnDist's models with BnDist's recipe")
    ap.add_argument("--data", default="/usr/share/datasets/fashion-mnist", help="directory of the four IDX files")
    ap.add_argument("--model", default="convnet", choices=tm.ARCHITECTURES)
    ap.add_argument("--norm", default="bn", choices=tm.NORMALIZATIONS)
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--steps", type=int, default=0, help="stop after this many steps in all (0: --epochs whole epochs)")
    ap.add_argument("--batch-size", type=int, default=128)
    ap.add_argument("--lr", type=float, default=0.05)
    ap.add_argument("--lr-schedule", default="constant", choices=SCHEDULES, help="per step, as bndist's (default constant)")
    ap.add_argument("--augment", default="", metavar="crop:P,flip", help="training augmentation as bndist's --augment (default none)")
    ap.add_argument("--momentum", type=float, default=0.9)
    ap.add_argument("--weight-decay", type=float, default=5e-4)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0, help="seed of the initialization and the shuffle")
    ap.add_argument("--init", default=None, help="start from this BnDist checkpoint (else PyTorch's init)")
    ap.add_argument("--metrics-out", default=None, help="JSON lines of steps and epochs")
    ap.add_argument("--log-every", type=int, default=50, help="steps between loss lines in --metrics-out")
    args = ap.parse_args()
    if args.batch_size < 1 or args.epochs < 1 or args.steps < 0 or args.threads < 1 or args.log_every < 1:
        ap.error("--batch-size, --epochs, --threads, --log-every must be >= 1 and --steps >= 0")
    try:
        augmentation = torch_augment.parse(args.augment)
    except ValueError as e:
        ap.error(f"--augment: {e}")

    tm.setup_threads(args.threads)
    torch.manual_seed(args.seed)
    shuffle = torch.Generator().manual_seed(args.seed)
    draws = torch.Generator().manual_seed(args.seed + 1)  # augmentation

    t0 = time.perf_counter()
    train_x, train_y = tm.load_fashion_mnist(args.data, train=True)
    test_x, test_y = tm.load_fashion_mnist(args.data, train=False)
    model = tm.build(args.model, args.norm, in_channels=train_x.shape[1], classes=tm.CLASSES)
    if args.init:
        tm.load_into(model, args.init)
    opt = torch.optim.SGD(model.parameters(), lr=args.lr, momentum=args.momentum, weight_decay=args.weight_decay)
    per_epoch = math.ceil(len(train_y) / args.batch_size)
    total = args.steps if args.steps > 0 else args.epochs * per_epoch
    info = tm.runtime_info()
    print(f"torch_train: {args.model}/{args.norm}, {sum(p.numel() for p in model.parameters()):,} parameters, "
          f"torch {info['torch_version']} ({args.threads} threads, BLAS {info['blas']})")
    print(f"data {args.data}: {len(train_y)} train, {len(test_y)} test; batch {args.batch_size}, {per_epoch} steps/epoch, "
          f"{total} steps, lr {args.lr} {args.lr_schedule}, momentum {args.momentum}, weight decay {args.weight_decay}, "
          f"augmentation {torch_augment.describe(augmentation)}, "
          f"init {'from ' + args.init if args.init else 'PyTorch default (seed %d)' % args.seed} "
          f"(loaded in {time.perf_counter() - t0:.1f} s)", flush=True)

    metrics = open(args.metrics_out, "w") if args.metrics_out else None
    model.train()
    step, clock = 0, time.perf_counter()
    last = None
    try:
        for epoch in range(math.ceil(total / per_epoch)):
            order = torch.randperm(len(train_y), generator=shuffle)
            loss_sum, seen, epoch_clock = 0.0, 0, time.perf_counter()
            for b in range(per_epoch):
                if step >= total:
                    break
                idx = order[b * args.batch_size:(b + 1) * args.batch_size]
                lr = learning_rate(args.lr_schedule, args.lr, step, total)
                for group in opt.param_groups:
                    group["lr"] = lr
                x = torch_augment.augment(train_x[idx], augmentation, draws)
                opt.zero_grad(set_to_none=True)
                loss = F.cross_entropy(model(x), train_y[idx])
                loss.backward()
                opt.step()
                step += 1
                value = loss.item()
                loss_sum += value * len(idx)
                seen += len(idx)
                if metrics and (step % args.log_every == 0 or step == total):
                    metrics.write(json.dumps({"step": step, "epoch": epoch + 1, "loss": value, "lr": lr}) + "\n")
            seconds = time.perf_counter() - epoch_clock  # training only, evaluation excluded
            test_loss, test_acc = evaluate(model, test_x, test_y)
            last = (test_loss, test_acc)
            print(f"epoch {epoch + 1}: test loss {test_loss:.4f}, test accuracy {test_acc:.4f} "
                  f"(train loss {loss_sum / max(1, seen):.4f}, {seen / seconds:.0f} samples/s, step {step})", flush=True)
            if metrics:
                metrics.write(json.dumps({"step": step, "epoch": epoch + 1, "test_loss": test_loss, "test_accuracy": test_acc,
                                          "train_loss": loss_sum / max(1, seen), "seconds": seconds}) + "\n")
                metrics.flush()
    finally:
        if metrics:
            metrics.close()
    print(f"done: {step} steps in {time.perf_counter() - clock:.1f} s; test accuracy {last[1]:.4f}, test loss {last[0]:.4f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
