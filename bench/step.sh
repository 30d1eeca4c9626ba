#!/usr/bin/env bash
# bench/step.sh: BnDist vs PyTorch, median wall time of one training step of one model.
#
# What it measures: `bndist bench step --model MODEL --batch-size B --threads T --json`
# (Release build) and bench/peers/torch_step.py with the same model, batch, thread count,
# warm-up and iteration count: each reports the median ms of one training step (forward,
# backward, SGD update) on the first B samples of the embedded Fashion-MNIST subset. The two
# are run interleaved, A B A B ... for ROUNDS rounds, so both see the machine's noise alike.
# Prints each round, then per side the median over rounds of the per-round medians, the ratio
# BnDist/PyTorch, and GFLOP/s of each (both from the gflop_per_step BnDist reports) against
# the T-core peak, and the managed bytes BnDist allocates per timed step (its
# allocated_bytes_per_step: GC.GetTotalAllocatedBytes over all threads; ~0 on a clean hot path).
#
# Run from anywhere:  bench/step.sh           MODEL=resnet20 bench/step.sh
# Knobs (environment): MODEL=convnet (convnet, mlp-paper, resnet20, resnet56, bn-inception)
#                      BATCH=128 THREADS=2 ROUNDS=3 WARMUP=10 ITERATIONS=30
#                      PEAK_GFLOPS=300 (peak of THREADS cores) PYTHON=/usr/bin/python3
# Raw JSON of every run goes to bench/out/step-<time>/.
# Needs the .NET SDK and Debian's python3-torch (/usr/bin/python3; the python3 of a pyenv or
# venv usually lacks it). PyTorch runs with OpenBLAS/OpenMP, Debian's default BLAS being ~2x slower.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BATCH=${BATCH:-128}
THREADS=${THREADS:-2}
ROUNDS=${ROUNDS:-3}
WARMUP=${WARMUP:-10}
ITERATIONS=${ITERATIONS:-30}
PEAK_GFLOPS=${PEAK_GFLOPS:-300}
PYTHON=${PYTHON:-/usr/bin/python3}
OPENBLAS=/usr/lib/x86_64-linux-gnu/openblas-openmp
MODEL=${MODEL:-convnet}

die() { echo "step.sh: $*" >&2; exit 1; }
for v in BATCH THREADS ROUNDS ITERATIONS; do
    [[ ${!v} =~ ^[1-9][0-9]*$ ]] || die "$v must be a positive integer, got '${!v}'"
done
[[ $WARMUP =~ ^[0-9]+$ ]] || die "WARMUP must be a non-negative integer, got '$WARMUP'"
(( ROUNDS >= 3 )) || echo "step.sh: warning: ROUNDS=$ROUNDS; use at least 3 for a comparison" >&2

command -v "$PYTHON" >/dev/null || die "no python at '$PYTHON' (set PYTHON=...)"
if ! "$PYTHON" -c 'import torch' 2>/dev/null; then
    die "PyTorch is not importable by $PYTHON: install Debian's python3-torch (apt-get install python3-torch) or set PYTHON to an interpreter that has torch"
fi
MODELS=$(cd "$ROOT/bench/peers" && "$PYTHON" -c 'import torch_models; print(" ".join(torch_models.ARCHITECTURES))')
[[ " $MODELS " == *" $MODEL "* ]] || die "MODEL must be one of: $MODELS (the models torch_models.py twins), got '$MODEL'"
command -v dotnet >/dev/null || die "dotnet not found"

echo "building bndist (Release)..."
BUILD_LOG=$(mktemp)
trap 'rm -f "$BUILD_LOG"' EXIT
if ! dotnet build "$ROOT/src/Cli/Cli.csproj" -c Release --nologo -v q >"$BUILD_LOG" 2>&1; then
    cat "$BUILD_LOG" >&2
    die "Release build failed"
fi
BNDIST_DLL="$ROOT/src/Cli/bin/Release/net10.0/bndist.dll"
[[ -f $BNDIST_DLL ]] || die "build produced no $BNDIST_DLL"

OUT="$ROOT/bench/out/step-$(date +%Y%m%d-%H%M%S)"
mkdir -p "$OUT"

run_bndist() {
    dotnet "$BNDIST_DLL" bench step --model "$MODEL" --batch-size "$BATCH" --threads "$THREADS" \
        --warmup "$WARMUP" --iterations "$ITERATIONS" --json
}
run_torch() {
    LD_LIBRARY_PATH="$OPENBLAS${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}" OMP_NUM_THREADS="$THREADS" \
        "$PYTHON" "$ROOT/bench/peers/torch_step.py" --model "$MODEL" --batch-size "$BATCH" --threads "$THREADS" \
        --warmup "$WARMUP" --iterations "$ITERATIONS"
}

echo "$MODEL, batch $BATCH, $THREADS threads, $WARMUP warm-up + $ITERATIONS timed steps per run, $ROUNDS rounds; raw results in $OUT"
for ((r = 1; r <= ROUNDS; r++)); do
    run_bndist | tail -n 1 >"$OUT/bndist-$r.json"
    run_torch | tail -n 1 >"$OUT/torch-$r.json"
    echo "round $r: bndist $("$PYTHON" -c 'import json,sys; print("%.2f ms" % json.load(open(sys.argv[1]))["median_ms"])' "$OUT/bndist-$r.json")," \
         "torch $("$PYTHON" -c 'import json,sys; print("%.2f ms" % json.load(open(sys.argv[1]))["median_ms"])' "$OUT/torch-$r.json")"
done

"$PYTHON" - "$OUT" "$ROUNDS" "$PEAK_GFLOPS" "$THREADS" <<'EOF'
import json, os, sys
out, rounds, peak, threads = sys.argv[1], int(sys.argv[2]), float(sys.argv[3]), sys.argv[4]
load = lambda side: [json.load(open(os.path.join(out, f"{side}-{r}.json"))) for r in range(1, rounds + 1)]
bnd, tch = load("bndist"), load("torch")
model = bnd[0].get("model")
def med(xs):
    xs = sorted(xs)
    return xs[len(xs) // 2]
gflop = bnd[0]["gflop_per_step"]
if abs(tch[0]["gflop_per_step"] - gflop) > 1e-3 * gflop:
    print(f"warning: torch_step.py counts {tch[0]['gflop_per_step']:.4f} GFLOP/step, bndist {gflop:.4f}", file=sys.stderr)
b, t = med([x["median_ms"] for x in bnd]), med([x["median_ms"] for x in tch])
bmin, tmin = min(x["min_ms"] for x in bnd), min(x["min_ms"] for x in tch)
info = tch[0]
print()
print(f"PyTorch {info['torch_version']} (BLAS {info.get('blas')}, oneDNN {info.get('mkldnn')}); "
      f"BnDist device {bnd[0].get('device')} ({bnd[0].get('threads')} threads)")
print(f"{model}, batch {bnd[0].get('batch_size')}")
print(f"{'':10}{'median ms':>12}{'min ms':>10}{'GFLOP/s':>10}{'% of peak':>11}")
for name, m, mn in (("BnDist", b, bmin), ("PyTorch", t, tmin)):
    g = gflop / (m / 1000)
    print(f"{name:10}{m:12.2f}{mn:10.2f}{g:10.1f}{100 * g / peak:10.1f}%")
print(f"ratio BnDist/PyTorch (median of round medians): {b / t:.2f}x   "
      f"[{gflop:.3f} GFLOP/step; peak {peak:g} GFLOP/s on {threads} cores]")
allocated = [x["allocated_bytes_per_step"] for x in bnd if "allocated_bytes_per_step" in x]
if allocated:
    print(f"BnDist managed allocation per step: median {med(allocated) / 1024:.1f} KiB "
          f"(rounds: {', '.join(f'{a / 1024:.1f}' for a in allocated)} KiB)")
else:
    print("BnDist managed allocation per step: not reported (no allocated_bytes_per_step in bench step --json)")
EOF
