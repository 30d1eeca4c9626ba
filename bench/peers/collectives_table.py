#!/usr/bin/env python3
"""Markdown tables of all-reduce results: BnDist's gRPC collective against its peers.

Reads one or more JSON-lines files, as written by bench/peers/collectives.sh (impl "grpc-hub",
"grpc-hub-sync", "gloo", "openmpi-tcp", "openmpi-sm") and by BnDist's own benchmark (impl "bndist-shm": statistics through
shared memory; "bndist": through the coordinator over gRPC; "bndist-hub": gradients through the coordinator; same fields):

  {"impl", "kind": "bn-stats", "workers", "channels", "values", "ops", "warmup",
   "p50_us", "p99_us", "mean_us"}
  {"impl", "kind": "gradients", "workers", "mib", "bytes", "reps", "median_ms",
   "algbw_gbs", "busbw_gbs"}

and prints two tables:

  * BN-stats latency: one row per (K, C), per impl p50 and p99 in microseconds;
  * gradient all-reduce: one row per (K, MiB), per impl median ms and busbw GB/s;

each with ratio columns bndist/grpc-hub and bndist/grpc-hub-sync (BN stats only: the bare
gRPC-dotnet hub with awaiting and with blocking clients, the floor of BnDist's gRPC path) and bndist/gloo (ratio of p50, resp. of median ms; > 1 means BnDist is
slower) when both are present. Where a file holds several records of the same (impl, K, C) or
(impl, K, MiB), e.g. after repeated runs appended to one file, each figure is the median over
them and the table says so. Lines that are blank or not JSON objects are skipped with a warning.

Usage:  bench/peers/collectives_table.py bench/out/peers-collectives.jsonl [bench/out/bndist.jsonl ...]
stdlib only.
"""
import argparse
import json
import statistics
import sys
from collections import defaultdict

# Column order: ours first, then the peers, then anything else in order of appearance.
KNOWN_IMPLS = ["bndist-shm", "bndist", "bndist-hub", "grpc-hub", "grpc-hub-sync", "gloo", "openmpi-tcp", "openmpi-sm"]


def load(paths):
    """Group records by kind -> (impl, workers, size) -> [record, ...]; keep impl order."""
    groups = {"bn-stats": defaultdict(list), "gradients": defaultdict(list)}
    impls = []
    for path in paths:
        try:
            f = open(path, encoding="utf-8")
        except OSError as e:
            sys.exit(f"collectives_table.py: cannot read {path}: {e.strerror}")
        with f:
            for lineno, line in enumerate(f, 1):
                line = line.strip()
                if not line:
                    continue
                try:
                    r = json.loads(line)
                    kind = r["kind"]
                    key = (r["impl"], int(r["workers"]),
                           int(r["channels"] if kind == "bn-stats" else r["mib"]))
                except (ValueError, KeyError, TypeError) as e:
                    print(f"collectives_table.py: {path}:{lineno}: skipped ({type(e).__name__}: {e})",
                          file=sys.stderr)
                    continue
                if kind not in groups:
                    print(f"collectives_table.py: {path}:{lineno}: skipped (unknown kind '{kind}')",
                          file=sys.stderr)
                    continue
                groups[kind][key].append(r)
                if r["impl"] not in impls:
                    impls.append(r["impl"])
    ordered = [i for i in KNOWN_IMPLS if i in impls] + [i for i in impls if i not in KNOWN_IMPLS]
    return groups, ordered


def med(records, field):
    """Median of a field over repeated records (None where absent)."""
    values = [r[field] for r in records if isinstance(r.get(field), (int, float))]
    return statistics.median(values) if values else None


def fmt(x, digits):
    return "–" if x is None else f"{x:,.{digits}f}"


def fmt_us(x):
    """Microseconds: one decimal below 100, whole numbers above."""
    return "–" if x is None else (f"{x:.1f}" if x < 100 else f"{x:,.0f}")


def table(group, impls, size_label, cells, ratio_field, ratio_note, baselines):
    """Print one Markdown table. cells: [(header suffix, field, formatter)] per impl; one
    column A/B per pair (A, B) of baselines, both present (ratio of ratio_field)."""
    impls_here = [i for i in impls if any(k[0] == i for k in group)]
    if not impls_here:
        print("(no records)\n")
        return
    ratios = [(a, b) for a, b in baselines if a in impls_here and b in impls_here]
    header = ["K", size_label] + [f"{i} {h}" for i in impls_here for h, _, _ in cells]
    header += [f"{a}/{b} ({ratio_note})" for a, b in ratios]
    print("| " + " | ".join(header) + " |")
    print("|" + "|".join(["---:"] * len(header)) + "|")
    repeated = False
    for k, size in sorted({(key[1], key[2]) for key in group}):
        row = [str(k), str(size)]
        for impl in impls_here:
            recs = group.get((impl, k, size), [])
            repeated |= len(recs) > 1
            row += [f(med(recs, field)) if recs else "–" for _, field, f in cells]
        for mine, baseline in ratios:
            b = med(group.get((mine, k, size), []), ratio_field)
            g = med(group.get((baseline, k, size), []), ratio_field)
            row.append(f"{b / g:.2f}" if b is not None and g else "–")
        print("| " + " | ".join(row) + " |")
    if repeated:
        print("\nSome cells are medians over several runs of the same configuration.")
    print()


def main():
    ap = argparse.ArgumentParser(description="Markdown tables of all-reduce JSON-lines results")
    ap.add_argument("files", nargs="+", help="JSON-lines files (collectives.sh output, BnDist's output)")
    args = ap.parse_args()
    groups, impls = load(args.files)

    print("### BN-stats all-reduce latency (2C+1 float64 per op; per-op µs on rank 0)\n")
    table(groups["bn-stats"], impls, "C",
          [("p50 µs", "p50_us", fmt_us), ("p99 µs", "p99_us", fmt_us)], "p50_us", "p50",
          [("bndist-shm", "openmpi-sm"), ("bndist-shm", "openmpi-tcp"), ("bndist", "grpc-hub"), ("bndist", "grpc-hub-sync"), ("bndist", "openmpi-tcp")])

    print("### Gradient all-reduce (float32; median per op on rank 0; busbw = algbw·2(K−1)/K)\n")
    table(groups["gradients"], impls, "MiB",
          [("ms", "median_ms", lambda x: fmt(x, 2)), ("busbw GB/s", "busbw_gbs", lambda x: fmt(x, 2))],
          "median_ms", "median ms", [("bndist-shm", "openmpi-sm"), ("bndist", "openmpi-tcp"), ("bndist", "gloo")])


if __name__ == "__main__":
    main()
