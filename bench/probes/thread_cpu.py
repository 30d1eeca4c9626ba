#!/usr/bin/env python3
"""CPU time per thread of every running bndist process, in windows of time.

Samples /proc/PID/task/TID/stat of each process whose program is `bndist` every 50 ms until the
last one has exited (or LIMIT seconds have passed), then prints a table: one row per process
(pid and role: launch, worker, train, ...) and thread name (.NET names its own threads: ".NET
Tiered Com" is the tiered JIT, ".NET TP Worker" the thread pool, ".NET Long Runni" a long-running
task), one column per window, in clock ticks (usually 10 ms). The last row is what the machine's
cores left idle. Start it just before the run:

    python3 bench/probes/thread_cpu.py --window-ms 250 & bndist launch --workers 2 --epochs 1 --quiet; wait
"""
import argparse
import collections
import os
import time

parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
parser.add_argument("--window-ms", type=int, default=250)
parser.add_argument("--limit-s", type=float, default=300)
parser.add_argument("--rows", type=int, default=14, help="the busiest threads to print")
args = parser.parse_args()
tick = os.sysconf("SC_CLK_TCK")


def bndist_processes():
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            argv = open(f"/proc/{pid}/cmdline", "rb").read().split(b"\0")
        except OSError:
            continue
        if argv and os.path.basename(argv[0]) == b"bndist":
            yield pid, argv[1].decode() if len(argv) > 1 else ""


samples = collections.defaultdict(list)  # (pid, role, tid, name) -> [(ms, ticks)]
seen, start, deadline = False, time.monotonic(), time.monotonic() + args.limit_s
while time.monotonic() < deadline:
    processes = list(bndist_processes())
    if not processes and seen:
        break
    seen |= bool(processes)
    now = (time.monotonic() - start) * 1000
    for pid, role in processes:
        try:
            tids = os.listdir(f"/proc/{pid}/task")
        except OSError:
            continue
        for tid in tids:
            try:
                name = open(f"/proc/{pid}/task/{tid}/comm").read().strip()
                fields = open(f"/proc/{pid}/task/{tid}/stat").read().rsplit(")", 1)[1].split()
            except OSError:
                continue
            samples[(pid, role, tid, name)].append((now, int(fields[11]) + int(fields[12])))
    time.sleep(0.05)

usage = collections.defaultdict(collections.Counter)  # (pid role, name) -> window -> ticks
for (pid, role, _, name), series in samples.items():
    for (t0, c0), (_, c1) in zip(series, series[1:]):
        usage[(f"{pid} {role}", name)][int(t0 // args.window_ms)] += c1 - c0
if not usage:
    raise SystemExit("thread_cpu: no bndist process was seen")
windows = max(max(c, default=0) for c in usage.values()) + 1
capacity = os.cpu_count() * args.window_ms / 1000 * tick
print(f"ticks of {1000 // tick} ms per {args.window_ms} ms window; {os.cpu_count()} cores = {capacity:.0f} ticks a window")
for key in sorted(usage, key=lambda k: -sum(usage[k].values()))[: args.rows]:
    print(f"{key[0][:14]:15}{key[1][:16]:17}", " ".join(f"{usage[key][w]:3}" for w in range(windows)))
print(f"{'idle':32}", " ".join(f"{capacity - sum(u[w] for u in usage.values()):3.0f}" for w in range(windows)))
