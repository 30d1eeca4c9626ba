#!/usr/bin/python3
"""All-reduce latency and bandwidth of PyTorch's gloo backend: a peer of BnDist's gRPC collective.

What it measures, with K processes on this machine joined by
torch.distributed.init_process_group("gloo", init_method="tcp://127.0.0.1:PORT"):

  * bn-stats: for each C in --channels, all_reduce(SUM) of a float64 tensor of 2*C+1 elements
    (the batch-norm statistics BnDist reduces: per-channel sum, sum of squares, and a count).
    --warmup untimed ops, then --ops timed ops back to back; every rank times each call with
    time.perf_counter_ns. Rank 0's per-op latencies give p50, p99 and mean in microseconds.
  * gradients: for each S in --sizes-mib, all_reduce(SUM) of a float32 tensor of S*2^20/4
    elements: 3 untimed ops, then --reps timed ops; the median seconds per op on rank 0 gives
    algbw = bytes/time and busbw = algbw * 2(K-1)/K (as nccl-tests), both in GB/s (1e9 B/s).

A barrier precedes each measurement so that all ranks start it together. Rank 0 appends one
JSON object per measurement to --out (and prints it):

  {"impl": "gloo", "kind": "bn-stats", "workers", "channels", "values", "ops", "warmup",
   "p50_us", "p99_us", "mean_us"}
  {"impl": "gloo", "kind": "gradients", "workers", "mib", "bytes", "reps", "median_ms",
   "algbw_gbs", "busbw_gbs"}

Run (Debian's torch is in the system python; bench/peers/collectives.sh runs it for K=2 and 4):

  LD_LIBRARY_PATH=/usr/lib/x86_64-linux-gnu/openblas-openmp \\
      /usr/bin/python3 bench/peers/gloo_allreduce.py --workers 2 --ops 200 --warmup 100 \\
      --sizes-mib 1,4 --reps 3 --out bench/out/gloo.jsonl

stdlib + torch only. Each worker runs with one intra-op thread (torch.set_num_threads(1)), as
the machine has few cores and the workers share them.
"""
import argparse
import json
import os
import socket
import statistics
import sys
import time

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

WARMUP_GRADIENT_OPS = 3  # untimed gradient all-reduces before the --reps timed ones


def int_list(text):
    """Parse '64,256,1024' into [64, 256, 1024] (positive integers)."""
    try:
        values = [int(t) for t in text.split(",") if t.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got '{text}'")
    if not values or any(v <= 0 for v in values):
        raise argparse.ArgumentTypeError(f"expected positive integers, got '{text}'")
    return values


def percentile(sorted_values, q):
    """Nearest-rank percentile (q in [0, 100]) of an ascending list; p50 of an even count is the
    lower middle, the same rule mpi_allreduce.c uses."""
    n = len(sorted_values)
    rank = max(1, -(-q * n // 100))  # ceil(q * n / 100), at least 1
    return sorted_values[int(rank) - 1]


def free_port():
    """A TCP port on 127.0.0.1 that was free a moment ago (for the rendezvous)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def emit(record, out_path):
    """Print one JSON line and append it to out_path (rank 0 only)."""
    line = json.dumps(record)
    with open(out_path, "a", encoding="utf-8") as f:  # the file first: it is the record that counts
        f.write(line + "\n")
    print(line, flush=True)


def bn_stats(args, rank, k):
    """Latency of all_reduce on 2C+1 float64 values, per C."""
    for c in args.channels:
        n = 2 * c + 1
        x = torch.ones(n, dtype=torch.float64)
        dist.barrier()
        for _ in range(args.warmup):
            dist.all_reduce(x, op=dist.ReduceOp.SUM)
        dist.barrier()
        lat_ns = [0] * args.ops
        for i in range(args.ops):
            t0 = time.perf_counter_ns()
            dist.all_reduce(x, op=dist.ReduceOp.SUM)
            lat_ns[i] = time.perf_counter_ns() - t0
        if rank == 0:
            us = sorted(t / 1e3 for t in lat_ns)
            emit({"impl": "gloo", "kind": "bn-stats", "workers": k, "channels": c, "values": n,
                  "ops": args.ops, "warmup": args.warmup,
                  "p50_us": round(percentile(us, 50), 3), "p99_us": round(percentile(us, 99), 3),
                  "mean_us": round(sum(us) / len(us), 3)}, args.out)


def gradients(args, rank, k):
    """Median time of all_reduce on S MiB of float32, per S."""
    for mib in args.sizes_mib:
        nbytes = mib * 2**20
        x = torch.ones(nbytes // 4, dtype=torch.float32)
        dist.barrier()
        for _ in range(WARMUP_GRADIENT_OPS):
            dist.all_reduce(x, op=dist.ReduceOp.SUM)
        dist.barrier()
        secs = []
        for _ in range(args.reps):
            t0 = time.perf_counter_ns()
            dist.all_reduce(x, op=dist.ReduceOp.SUM)
            secs.append((time.perf_counter_ns() - t0) / 1e9)
        if rank == 0:
            med = statistics.median(secs)
            algbw = nbytes / med / 1e9
            emit({"impl": "gloo", "kind": "gradients", "workers": k, "mib": mib, "bytes": nbytes,
                  "reps": args.reps, "median_ms": round(med * 1e3, 3),
                  "algbw_gbs": round(algbw, 4), "busbw_gbs": round(algbw * 2 * (k - 1) / k, 4)},
                 args.out)


def worker(rank, args, port):
    """One gloo rank: join the group, run both measurements, leave."""
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}",
                            world_size=args.workers, rank=rank)
    try:
        if args.channels:
            bn_stats(args, rank, args.workers)
        if args.sizes_mib:
            gradients(args, rank, args.workers)
        dist.barrier()
    finally:
        dist.destroy_process_group()


def main():
    ap = argparse.ArgumentParser(description="gloo all_reduce latency (BN stats) and bandwidth (gradients)")
    ap.add_argument("--workers", type=int, default=2, help="number of processes K (>= 2)")
    ap.add_argument("--channels", type=int_list, default=[64, 256, 1024],
                    help="comma-separated channel counts C; each op reduces 2C+1 float64")
    ap.add_argument("--ops", type=int, default=2000, help="timed bn-stats ops per C")
    ap.add_argument("--warmup", type=int, default=1000, help="untimed bn-stats ops per C")
    ap.add_argument("--sizes-mib", type=int_list, default=[1, 4, 16, 64],
                    help="comma-separated gradient sizes in MiB (float32)")
    ap.add_argument("--reps", type=int, default=10, help="timed gradient ops per size")
    ap.add_argument("--port", type=int, default=0, help="rendezvous port (0: pick a free one)")
    ap.add_argument("--out", required=True, help="JSON-lines file to append to")
    args = ap.parse_args()
    if args.workers < 2:
        ap.error("--workers must be at least 2")
    if args.ops < 1 or args.warmup < 0 or args.reps < 1:
        ap.error("--ops and --reps must be >= 1, --warmup >= 0")
    if not dist.is_gloo_available():
        sys.exit("gloo_allreduce.py: this torch build has no gloo backend")
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)

    port = args.port or free_port()
    # spawn: fresh interpreters, no fork of a process that already touched torch's thread pools.
    mp.spawn(worker, args=(args, port), nprocs=args.workers, join=True)


if __name__ == "__main__":
    main()
