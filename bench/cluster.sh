#!/usr/bin/env bash
# bench/cluster.sh: what a local cluster costs against one process, and the small-batch SyncBN run.
#
# 1. Throughput of one epoch of the embedded data (10,000 images, global batch 128, convnet):
#    `bndist launch --workers 2` (1 thread each) against `bndist train --threads 2`, the same
#    global batch on the same cores, for each statistics transport in TRANSPORTS. Throughput is
#    the epoch's samples over the sum of its step times, from --metrics-out (each step's
#    samples_per_s), without the first step (JIT, connection set-up) and without process start-up
#    or evaluation. The runs alternate (train, launch per transport, train, …) for ROUNDS rounds,
#    so each sees the machine's noise alike; per side the median over rounds, and the ratio
#    launch/train of throughputs (≥ 0.9 is issue 13's target).
# 2. The case SyncBN exists for: 8 workers × 2 samples (global batch 16), SMALL_STEPS steps on the
#    full Fashion-MNIST (/usr/share/datasets/fashion-mnist, Debian's dataset-fashion-mnist), per
#    transport: ms per step (median of the step times after the first 20), the communication
#    share the launch reports, and the test accuracy; and once with --sync-bn off (plain DDP).
#
# Run from anywhere:  bench/cluster.sh
# Knobs (environment): ROUNDS=3 TRANSPORTS="shm grpc" SMALL_STEPS=500 SMALL=1 (0: skip part 2)
# Raw metrics and logs go to bench/out/cluster-<time>/.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
ROUNDS=${ROUNDS:-3}
TRANSPORTS=${TRANSPORTS:-"shm grpc"}
SMALL_STEPS=${SMALL_STEPS:-500}
SMALL=${SMALL:-1}
FULL=/usr/share/datasets/fashion-mnist
OUT="$ROOT/bench/out/cluster-$(date +%Y%m%d-%H%M%S)"
mkdir -p "$OUT"
echo "cluster: $(nproc) cores, $(lscpu | sed -n 's/^Model name: *//p'), load $(cut -d' ' -f1-3 /proc/loadavg); out $OUT"

dotnet build "$ROOT/src/Cli/Cli.csproj" -c Release --nologo -v q >"$OUT/build.log" 2>&1 || { cat "$OUT/build.log" >&2; exit 1; }
BNDIST="$ROOT/src/Cli/bin/Release/net10.0/bndist"
# Where the hypervisor runs the two vCPUs (bench/gradients.sh): ~30 ns one core complex, ~170 two chiplets.
PROBE="$ROOT/bench/out/cross_core_latency"
gcc -O2 -pthread "$ROOT/bench/probes/cross_core_latency.c" -o "$PROBE"
LIMIT="timeout -k 5 900"

# samples/s over the steps of a --metrics-out file after the first: Σ batch / Σ (batch / samples_per_s).
throughput() {
    python3 - "$1" "$2" <<'EOF'
import json, sys
batch = float(sys.argv[2])
steps = [json.loads(l) for l in open(sys.argv[1]) if '"samples_per_s"' in l][1:]
print(f"{len(steps) * batch / sum(batch / s['samples_per_s'] for s in steps):.1f}")
EOF
}

echo "== 1. one epoch of the embedded data, global batch 128: launch --workers 2 against train --threads 2"
declare -A results
for round in $(seq 1 "$ROUNDS"); do
    before=$("$PROBE")
    $LIMIT "$BNDIST" train --threads 2 --epochs 1 --no-eval --quiet --metrics-out "$OUT/train-$round.jsonl" >"$OUT/train-$round.log" 2>&1
    results[train]+="$(throughput "$OUT/train-$round.jsonl" 128) "
    for t in $TRANSPORTS; do
        $LIMIT "$BNDIST" launch --workers 2 --epochs 1 --no-eval --quiet --stats-transport "$t" \
            --metrics-out "$OUT/launch-$t-$round.jsonl" >"$OUT/launch-$t-$round.log" 2>&1
        results[$t]+="$(throughput "$OUT/launch-$t-$round.jsonl" 128) "
    done
    echo "round $round: train $(echo "${results[train]}" | awk '{print $NF}') $(for t in $TRANSPORTS; do echo -n "launch/$t $(echo "${results[$t]}" | awk '{print $NF}') "; done)samples/s; cross-core latency $before -> $("$PROBE") ns"
done
median() { tr ' ' '\n' | grep -v '^$' | sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
train=$(echo "${results[train]}" | median)
echo "median samples/s: train --threads 2 $train"
for t in $TRANSPORTS; do
    l=$(echo "${results[$t]}" | median)
    echo "                  launch --workers 2 --stats-transport $t $l  (launch/train $(python3 -c "print(f'{$l / $train:.3f}')"))"
    grep -h "communication share" "$OUT"/launch-"$t"-*.log | sed "s/^/    $t: /"
done

if [[ $SMALL == 1 ]]; then
    [[ -f $FULL/train-images-idx3-ubyte.gz || -f $FULL/train-images-idx3-ubyte ]] || { echo "cluster: $FULL missing (apt-get install dataset-fashion-mnist)" >&2; exit 1; }
    echo "== 2. 8 workers x 2 samples (global batch 16), $SMALL_STEPS steps on the full Fashion-MNIST"
    run_small() {  # name, extra launch options
        local name=$1; shift
        $LIMIT "$BNDIST" launch --workers 8 --batch-size 16 --steps "$SMALL_STEPS" --data "$FULL" --quiet \
            --metrics-out "$OUT/small-$name.jsonl" "$@" >"$OUT/small-$name.log" 2>&1
        local ms acc share
        ms=$(python3 -c "
import json, statistics
s = [json.loads(l) for l in open('$OUT/small-$name.jsonl') if '\"samples_per_s\"' in l][20:]
print(f'{statistics.median(16 / x[\"samples_per_s\"] * 1e3 for x in s):.1f}')")
        acc=$(grep -o 'test accuracy [0-9.]*' "$OUT/small-$name.log" | tail -1)
        share=$(grep -o 'mean [0-9.]*%' "$OUT/small-$name.log" | tail -1)
        echo "$name: $ms ms per step (median), communication share ($share), $acc"
    }
    for t in $TRANSPORTS; do run_small "sync-$t" --stats-transport "$t"; done
    run_small local-bn --sync-bn off
fi
