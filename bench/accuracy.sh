#!/usr/bin/env bash
# bench/accuracy.sh: test-accuracy curves of BnDist and PyTorch training one model (convnet by
# default) on the full Fashion-MNIST with the same recipe.
#
# What it measures: test accuracy and loss after each epoch of
#   bench/peers/torch_train.py   (PyTorch, its own init and shuffle unless SAME_INIT=1)
#   bndist train                 (Release build, --keep-last-batch: torch_train.py keeps the short batch too)
# both with model MODEL, EPOCHS epochs, global batch BATCH, lr LR with schedule LR_SCHEDULE (per
# step on both sides), momentum MOMENTUM, weight decay WD, augmentation AUGMENT, THREADS threads,
# on DATA. The runs are sequential (PyTorch first; BnDist first with SAME_INIT=1) so they do not
# share cores. Prints both curves side by side; the metrics (JSON lines) and logs go to
# bench/out/accuracy-<time>/. bench/accuracy-resnet.sh runs it with issue 12's resnet20 recipe.
#
# Run from anywhere:  bench/accuracy.sh
# Knobs (environment): DATA=/usr/share/datasets/fashion-mnist MODEL=convnet EPOCHS=3 BATCH=128
#   LR=0.05 LR_SCHEDULE=constant (or cosine) MOMENTUM=0.9 WD=5e-4 THREADS=2 SEED=0
#   PYTHON=/usr/bin/python3
#   AUGMENT=crop:4,flip   training augmentation, both sides (default none): pad 4 zeros after
#             normalization + random crop back to 28x28, horizontal flip p=0.5 (torch_augment.py;
#             bndist train --augment crop:P,flip, docs/data.md).
#   SAME_INIT=1   BnDist runs first with --save-init and PyTorch starts from that checkpoint,
#             so both start from the same weights (default 0: each side its own init)
#   STEPS=N   smoke run: stop both after N steps in all (one evaluation at the end), e.g. STEPS=5
#   ONLY=torch|bndist   run one side only
# Needs the .NET SDK and Debian's python3-torch (/usr/bin/python3). The full run is long while
# BnDist's CPU kernels are the naive ones.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
DATA=${DATA:-/usr/share/datasets/fashion-mnist}
MODEL=${MODEL:-convnet}
EPOCHS=${EPOCHS:-3}
BATCH=${BATCH:-128}
LR=${LR:-0.05}
LR_SCHEDULE=${LR_SCHEDULE:-constant}
AUGMENT=${AUGMENT:-}
SAME_INIT=${SAME_INIT:-0}
MOMENTUM=${MOMENTUM:-0.9}
WD=${WD:-5e-4}
THREADS=${THREADS:-2}
SEED=${SEED:-0}
STEPS=${STEPS:-}
ONLY=${ONLY:-}
PYTHON=${PYTHON:-/usr/bin/python3}
OPENBLAS=/usr/lib/x86_64-linux-gnu/openblas-openmp

die() { echo "accuracy.sh: $*" >&2; exit 1; }
for v in EPOCHS BATCH THREADS; do
    [[ ${!v} =~ ^[1-9][0-9]*$ ]] || die "$v must be a positive integer, got '${!v}'"
done
[[ -z $STEPS || $STEPS =~ ^[1-9][0-9]*$ ]] || die "STEPS must be a positive integer or empty, got '$STEPS'"
[[ -z $ONLY || $ONLY == torch || $ONLY == bndist ]] || die "ONLY must be torch, bndist or empty, got '$ONLY'"
[[ $LR_SCHEDULE == constant || $LR_SCHEDULE == cosine ]] || die "LR_SCHEDULE must be constant or cosine (torch_train.py has no other), got '$LR_SCHEDULE'"
[[ $SAME_INIT == 0 || $SAME_INIT == 1 ]] || die "SAME_INIT must be 0 or 1, got '$SAME_INIT'"
[[ $SAME_INIT == 0 || -z $ONLY ]] || die "SAME_INIT=1 needs both sides (PyTorch starts from BnDist's initial checkpoint); unset ONLY"
[[ -d $DATA ]] || die "no data directory $DATA (set DATA=...)"
command -v "$PYTHON" >/dev/null || die "no python at '$PYTHON' (set PYTHON=...)"
if [[ $ONLY != bndist ]] && ! "$PYTHON" -c 'import torch' 2>/dev/null; then
    die "PyTorch is not importable by $PYTHON: install Debian's python3-torch (apt-get install python3-torch), set PYTHON, or run ONLY=bndist"
fi

OUT="$ROOT/bench/out/accuracy-$(date +%Y%m%d-%H%M%S)"
mkdir -p "$OUT"
STEP_ARGS=()
[[ -n $STEPS ]] && STEP_ARGS=(--steps "$STEPS")
AUGMENT_ARGS=()
[[ -n $AUGMENT ]] && AUGMENT_ARGS=(--augment "$AUGMENT")
TORCH_INIT=()
[[ $SAME_INIT == 1 ]] && TORCH_INIT=(--init "$OUT/init.safetensors")
echo "$MODEL on $DATA: $EPOCHS epochs${STEPS:+ (smoke: $STEPS steps)}, batch $BATCH, lr $LR $LR_SCHEDULE, momentum $MOMENTUM," \
     "wd $WD, augmentation ${AUGMENT:-none}, init $([[ $SAME_INIT == 1 ]] && echo "BnDist's on both sides" || echo "each side's own")," \
     "$THREADS threads; logs in $OUT"

build_bndist() {
    command -v dotnet >/dev/null || die "dotnet not found"
    echo "== BnDist (building Release...)"
    dotnet build "$ROOT/src/Cli/Cli.csproj" -c Release --nologo -v q >"$OUT/build.log" 2>&1 \
        || { cat "$OUT/build.log" >&2; die "Release build failed"; }
    BNDIST_DLL="$ROOT/src/Cli/bin/Release/net10.0/bndist.dll"
    [[ -f $BNDIST_DLL ]] || die "build produced no $BNDIST_DLL"
    if [[ -n $AUGMENT ]] && ! dotnet "$BNDIST_DLL" train --help 2>&1 | grep -q -- '--augment'; then
        die "AUGMENT=$AUGMENT but this bndist train has no --augment option yet"
    fi
}
run_bndist() {
    local init=()
    [[ $SAME_INIT == 1 ]] && init=(--save-init "$OUT/init.safetensors")
    dotnet "$BNDIST_DLL" train --model "$MODEL" --data "$DATA" --epochs "$EPOCHS" "${STEP_ARGS[@]}" --batch-size "$BATCH" \
        --lr "$LR" --momentum "$MOMENTUM" --weight-decay "$WD" --lr-schedule "$LR_SCHEDULE" "${AUGMENT_ARGS[@]}" \
        --threads "$THREADS" --keep-last-batch --seed "$SEED" "${init[@]}" --metrics-out "$OUT/bndist.jsonl" 2>&1 | tee "$OUT/bndist.log"
}
run_torch() {
    echo "== PyTorch"
    LD_LIBRARY_PATH="$OPENBLAS${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}" OMP_NUM_THREADS="$THREADS" \
        "$PYTHON" "$ROOT/bench/peers/torch_train.py" --model "$MODEL" --data "$DATA" --epochs "$EPOCHS" "${STEP_ARGS[@]}" \
        --batch-size "$BATCH" --lr "$LR" --lr-schedule "$LR_SCHEDULE" "${AUGMENT_ARGS[@]}" --momentum "$MOMENTUM" \
        --weight-decay "$WD" --threads "$THREADS" --seed "$SEED" "${TORCH_INIT[@]}" --metrics-out "$OUT/torch.jsonl" 2>&1 \
        | tee "$OUT/torch.log"
}

[[ $ONLY == torch ]] || build_bndist
if [[ $SAME_INIT == 1 ]]; then
    run_bndist
    run_torch
else
    [[ $ONLY == bndist ]] || run_torch
    [[ $ONLY == torch ]] || run_bndist
fi

"$PYTHON" - "$OUT" <<'EOF'
import json, os, sys
out = sys.argv[1]
def epochs(name):
    path = os.path.join(out, name)
    if not os.path.exists(path):
        return {}
    rows = [json.loads(line) for line in open(path) if line.strip()]
    return {r["epoch"]: r for r in rows if "test_accuracy" in r}
b, t = epochs("bndist.jsonl"), epochs("torch.jsonl")
def cell(r):
    return f"{r['test_accuracy']:8.4f} {r['test_loss']:8.4f} {r['step']:6d}" if r else f"{'-':>8} {'-':>8} {'-':>6}"
print()
def gap(x, y):
    return f"{x['test_accuracy'] - y['test_accuracy']:+8.4f}" if x and y else f"{'-':>8}"
print(f"{'':6}{'BnDist':^24} | {'PyTorch':^24} |")
print(f"{'epoch':6}{'acc':>8} {'loss':>8} {'step':>6} | {'acc':>8} {'loss':>8} {'step':>6} | {'Δacc':>8}")
for e in sorted(set(b) | set(t)):
    print(f"{e:<6}{cell(b.get(e))} | {cell(t.get(e))} | {gap(b.get(e), t.get(e))}")
EOF
