#!/usr/bin/env bash
# bench/collectives.sh: BnDist's all-reduce against PyTorch's gloo and Open MPI, in one run.
#
# What it measures, for K = 2 and 4 worker processes on loopback:
#   - BN-statistics all-reduce latency: 2·C+1 float64 values, C in CHANNELS; WARMUP operations
#     to let the JIT settle, then OPS timed ones back to back; rank 0's p50 / p99 / mean.
#     BnDist: `bndist bench collective` twice: through the shared memory of this host
#     (--stats-transport shm, impl "bndist-shm": what launch does) and through the coordinator
#     (--stats-transport grpc, impl "bndist": WorkerCollective → coordinator hub → running-statistics
#     update → answer, token checked); peers: bench/peers/collectives.sh.
#   - Gradient all-reduce: float32 buffers of SIZES MiB, REPS timed ones; median time, algbw and
#     busbw = algbw·2(K−1)/K (nccl-tests). BnDist three times: through the shared memory of this
#     host (the default on one host; impl "bndist-shm"), the TCP ring between the workers (what
#     several hosts use; impl "bndist") and the path through the coordinator (--gradient-path hub; "bndist-hub").
#   - The share of a training step spent communicating (`bndist launch --workers K` of each model
#     in LAUNCH_MODELS, on each statistics transport, LAUNCH_STEPS steps of global batch 128 on
#     the embedded data; its time breakdown).
# Prints the merged tables (bench/peers/collectives_table.py); raw JSON lines and logs go to
# bench/out/collectives-<time>/.
#
# Run from anywhere:  bench/collectives.sh
# Knobs (environment): WORKERS="2 4" CHANNELS=64,256,1024 OPS=2000 WARMUP=1000 SIZES=1,4,16,64
#                      REPS=10 LAUNCH_STEPS=40 LAUNCH_MODELS="convnet resnet20" PEERS=1 (0: BnDist only)
# Needs the .NET SDK; for the peers Debian's python3-torch, openmpi-bin and libopenmpi-dev.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
WORKERS=${WORKERS:-"2 4"}
CHANNELS=${CHANNELS:-64,256,1024}
OPS=${OPS:-2000}
WARMUP=${WARMUP:-1000}
SIZES=${SIZES:-1,4,16,64}
REPS=${REPS:-10}
LAUNCH_STEPS=${LAUNCH_STEPS:-40}
LAUNCH_MODELS=${LAUNCH_MODELS:-"convnet resnet20"}
PEERS=${PEERS:-1}

OUT="$ROOT/bench/out/collectives-$(date +%Y%m%d-%H%M%S)"
mkdir -p "$OUT"
RESULTS="$OUT/collectives.jsonl"
echo "collectives: K in {$WORKERS}, C in {$CHANNELS}, $WARMUP warm-up + $OPS ops, gradients of {$SIZES} MiB x $REPS; $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg); out $OUT"

dotnet build "$ROOT/src/Cli/Cli.csproj" -c Release --nologo -v q >"$OUT/build.log" 2>&1 || { cat "$OUT/build.log" >&2; exit 1; }
BNDIST="$ROOT/src/Cli/bin/Release/net10.0/bndist"
# Where the hypervisor runs the vCPUs changes every shared-memory figure (bench/gradients.sh): say it.
PROBE="$ROOT/bench/out/cross_core_latency"
gcc -O2 -pthread "$ROOT/bench/probes/cross_core_latency.c" -o "$PROBE"
placement() { echo "cross-core cache-line latency $("$PROBE") ns (~30: the vCPUs share an L3; ~170: two chiplets)"; }
placement

for K in $WORKERS; do
    echo "== BnDist, K=$K (BN statistics and gradients through shared memory: impl bndist-shm)"
    "$BNDIST" bench collective --workers "$K" --channels "$CHANNELS" --ops "$OPS" --warmup "$WARMUP" \
        --sizes-mib "$SIZES" --reps "$REPS" --gradient-path ring --stats-transport shm --out "$RESULTS" 2>&1 | tee -a "$OUT/bndist.log"
    echo "== BnDist, K=$K (BN statistics through the coordinator, --stats-transport grpc; gradients through the TCP ring: impl bndist)"
    "$BNDIST" bench collective --workers "$K" --channels "$CHANNELS" --ops "$OPS" --warmup "$WARMUP" \
        --sizes-mib "$SIZES" --reps "$REPS" --gradient-path ring --stats-transport grpc --out "$RESULTS" 2>&1 | tee -a "$OUT/bndist.log"
    echo "== BnDist, K=$K (gradients through the coordinator: impl bndist-hub)"
    "$BNDIST" bench collective --workers "$K" --skip-stats --sizes-mib "$SIZES" --reps "$REPS" --gradient-path hub \
        --out "$RESULTS" 2>&1 | tee -a "$OUT/bndist.log"
done

placement
if [[ $PEERS == 1 ]]; then
    echo "== peers (gloo, Open MPI)"
    WORKERS="$WORKERS" CHANNELS="$CHANNELS" OPS="$OPS" WARMUP="$WARMUP" SIZES="$SIZES" REPS="$REPS" OUT="$RESULTS" \
        bash "$ROOT/bench/peers/collectives.sh" 2>&1 | tee "$OUT/peers.log"
fi

for MODEL in $LAUNCH_MODELS; do
    for K in $WORKERS; do
        for T in shm grpc; do
            echo "== $MODEL step breakdown, K=$K, --stats-transport $T (bndist launch, $LAUNCH_STEPS steps)"
            "$BNDIST" launch --workers "$K" --model "$MODEL" --steps "$LAUNCH_STEPS" --no-eval --quiet --stats-transport "$T" 2>&1 \
                | tee "$OUT/launch-$MODEL-$K-$T.log" | sed -n '/time per step/,$p'
        done
    done
done

placement
echo
/usr/bin/python3 "$ROOT/bench/peers/collectives_table.py" "$RESULTS"
