#!/usr/bin/env bash
# bench/gradients.sh: the shared-memory gradient all-reduce of BnDist against Open MPI's, round by
# round, each measurement labelled with where the hypervisor had placed the two vCPUs.
#
# Why a script of its own: on these virtual machines the 16 MiB all-reduce takes either ~2.7 ms or
# ~5.5 ms from one minute to the next, for BnDist and Open MPI alike. The mode follows the one-way
# latency of a cache line between the two vCPUs (bench/probes/cross_core_latency.c): ~30 ns when the
# hypervisor runs them on one core complex (a shared L3), ~170 ns across chiplets. A comparison
# means something only between two runs taken in the same placement, so each round runs
# the probe, BnDist (`bndist bench collective --skip-stats`, shared memory), the probe, Open MPI
# (bench/out/mpi_allreduce, btl self,vader), the probe, in alternating order, and the table pairs
# the two per round: a round whose three probes disagree about the placement is reported but not
# paired.
#
# Run from anywhere:  bench/gradients.sh
# Knobs (environment): ROUNDS=10 WORKERS=2 SIZE_MIB=16 REPS=30
#   PLACEMENT=same|across: before each round, wait (probing every 5 s, at most WAIT_S=600 s) until
#   the vCPUs are in that placement; the hypervisor moves them every few seconds to minutes.
# Needs gcc, and for the peer openmpi-bin and libopenmpi-dev (mpicc). Raw lines: bench/out/gradients-<time>/.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
ROUNDS=${ROUNDS:-10}
WORKERS=${WORKERS:-2}
SIZE_MIB=${SIZE_MIB:-16}
REPS=${REPS:-30}
PLACEMENT=${PLACEMENT:-}
WAIT_S=${WAIT_S:-600}
[[ -z $PLACEMENT || $PLACEMENT == same || $PLACEMENT == across ]] || { echo "gradients.sh: PLACEMENT must be same or across, got '$PLACEMENT'" >&2; exit 2; }
for v in ROUNDS WORKERS SIZE_MIB REPS; do
    [[ ${!v} =~ ^[1-9][0-9]*$ ]] || { echo "gradients.sh: $v must be a positive integer, got '${!v}'" >&2; exit 2; }
done
OUT="$ROOT/bench/out/gradients-$(date +%Y%m%d-%H%M%S)"
mkdir -p "$OUT"
RESULTS="$OUT/gradients.jsonl"
echo "gradients: $ROUNDS rounds of K = $WORKERS, $SIZE_MIB MiB x $REPS; $(nproc) cores, $(lscpu | sed -n 's/^Model name: *//p'), load $(cut -d' ' -f1-3 /proc/loadavg); out $OUT"

dotnet build "$ROOT/src/Cli/Cli.csproj" -c Release --nologo -v q >"$OUT/build.log" 2>&1 || { cat "$OUT/build.log" >&2; exit 1; }
BNDIST="$ROOT/src/Cli/bin/Release/net10.0/bndist"
PROBE="$ROOT/bench/out/cross_core_latency"
gcc -O2 -pthread "$ROOT/bench/probes/cross_core_latency.c" -o "$PROBE"
MPI_BIN="$ROOT/bench/out/mpi_allreduce"
if [[ ! -x $MPI_BIN || $ROOT/bench/peers/mpi_allreduce.c -nt $MPI_BIN ]]; then
    command -v mpicc >/dev/null || { echo "gradients.sh: no mpicc (apt-get install openmpi-bin libopenmpi-dev)" >&2; exit 1; }
    mpicc -O2 -o "$MPI_BIN" "$ROOT/bench/peers/mpi_allreduce.c"
fi
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
LIMIT="timeout -k 5 300"

probe() { echo "{\"round\": $1, \"kind\": \"probe\", \"cross_core_ns\": $("$PROBE")}" >>"$RESULTS"; }
bndist() {
    $LIMIT "$BNDIST" bench collective --workers "$WORKERS" --skip-stats --sizes-mib "$SIZE_MIB" --reps "$REPS" \
        --stats-transport shm --out "$OUT/round.jsonl" >>"$OUT/bndist.log" 2>&1
}
openmpi() {
    $LIMIT mpirun --oversubscribe --bind-to none -np "$WORKERS" --mca btl self,vader "$MPI_BIN" --workers "$WORKERS" \
        --impl openmpi-sm --channels 64 --ops 10 --warmup 10 --sizes-mib "$SIZE_MIB" --reps "$REPS" --out "$OUT/round.jsonl" >>"$OUT/openmpi.log" 2>&1
}
# Waits until the probe shows PLACEMENT (80 ns splits ~30 from ~170); gives up after WAIT_S.
await_placement() {
    [[ -n $PLACEMENT ]] || return 0
    local start=$SECONDS ns
    while :; do
        ns=$("$PROBE")
        if [[ $PLACEMENT == same ]]; then ((ns < 80)) && return 0; else ((ns >= 80)) && return 0; fi
        ((SECONDS - start < WAIT_S)) || { echo "gradients.sh: the vCPUs did not come to placement '$PLACEMENT' within $WAIT_S s (last probe $ns ns)" >&2; return 1; }
        sleep 5
    done
}
for ((r = 1; r <= ROUNDS; r++)); do
    await_placement || break
    rm -f "$OUT/round.jsonl"
    probe "$r"
    if ((r % 2)); then bndist; probe "$r"; openmpi; else openmpi; probe "$r"; bndist; fi
    probe "$r"
    grep -h '"gradients"' "$OUT/round.jsonl" | sed "s/^{/{\"round\": $r, /" >>"$RESULTS"
    echo "round $r done: $(tail -n 5 "$RESULTS" | grep -o '"\(impl\|median_ms\|cross_core_ns\)": *[^,}]*' | tr '\n' ' ')"
done

[[ -s $RESULTS ]] || { echo "gradients.sh: no round ran" >&2; exit 1; }
/usr/bin/python3 - "$RESULTS" <<'PY'
import json, statistics, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
NEAR = 80  # ns: one core complex (~30) or across chiplets (~170); nothing measured falls between
rounds = sorted({r["round"] for r in rows})
print(f"\n{'round':>5} {'probes ns':>14} {'placement':>10} {'bndist ms':>10} {'openmpi ms':>11} {'ratio':>6}")
paired = {}
for n in rounds:
    probes = [r["cross_core_ns"] for r in rows if r["round"] == n and r["kind"] == "probe"]
    ms = {r["impl"]: r["median_ms"] for r in rows if r["round"] == n and r["kind"] == "gradients"}
    near = {p < NEAR for p in probes}
    place = ("same CCX" if near == {True} else "across") if len(near) == 1 else "moved"
    b, m = ms.get("bndist-shm"), ms.get("openmpi-sm")
    ratio = b / m if b and m else None
    if ratio and place != "moved": paired.setdefault(place, []).append((b, m, ratio))
    print(f"{n:>5} {','.join(f'{p:.0f}' for p in probes):>14} {place:>10} {b or float('nan'):>10.2f} {m or float('nan'):>11.2f} "
          f"{ratio or float('nan'):>6.2f}")
print("\nmedians per placement (time BnDist / time Open MPI: < 1 is BnDist faster)")
for place, v in paired.items():
    print(f"  {place:>9}: {len(v)} rounds, BnDist {statistics.median(x[0] for x in v):.2f} ms, "
          f"Open MPI {statistics.median(x[1] for x in v):.2f} ms, ratio {statistics.median(x[2] for x in v):.2f}")
PY
