#!/usr/bin/env bash
# Cuts a worker's network link in the middle of a run and measures how long every process
# takes to end (issue: "every process exits within the deadline plus a small constant").
# Three network namespaces on one bridge: the coordinator in one, a worker in each of the
# others. Needs root and iproute2. Usage: bash bench/linkcut.sh [TIMEOUT_S] (default 15).
set -euo pipefail
cd "$(dirname "$0")/.."
T=${1:-15}
BNDIST=${BNDIST:-src/Cli/bin/Release/net10.0/bndist}
OUT=${OUT:-bench/out/linkcut}
mkdir -p "$OUT"
[ "$(id -u)" = 0 ] || { echo "linkcut: needs root (network namespaces)" >&2; exit 2; }
command -v ip >/dev/null || { echo "linkcut: needs iproute2" >&2; exit 2; }
[ -x "$BNDIST" ] || { echo "linkcut: build first (make build)" >&2; exit 2; }

id=$(( $$ % 100000 ))   # names of this run's namespaces and links (interface names ≤ 15 characters)
NS=("bnd-c-$id" "bnd-w0-$id" "bnd-w1-$id")
BR="bnd-br-$id"
now() { date +%s.%N; }
since() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.1f", b - a }'; }
IPS=(10.77.0.1 10.77.0.2 10.77.0.3)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill -9 "$p" 2>/dev/null || true; done
  for i in 0 1 2; do ip netns del "${NS[$i]}" 2>/dev/null || true; ip link del "bnd-h$i-$id" 2>/dev/null || true; done
  ip link del "$BR" 2>/dev/null || true
}
trap cleanup EXIT
cleanup
ip link add "$BR" type bridge && ip link set "$BR" up
for i in 0 1 2; do
  ip netns add "${NS[$i]}"
  ip link add "bnd-h$i-$id" type veth peer name eth0 netns "${NS[$i]}"
  ip link set "bnd-h$i-$id" master "$BR" up
  ip -n "${NS[$i]}" addr add "${IPS[$i]}/24" dev eth0
  ip -n "${NS[$i]}" link set eth0 up
  ip -n "${NS[$i]}" link set lo up
done

token=$(mktemp); head -c 24 /dev/urandom | base64 > "$token"
ip netns exec "${NS[0]}" "$BNDIST" coordinator --host 10.77.0.1 --port 29500 --workers 2 --timeout "$T" --token-file "$token" \
  --model mlp-paper --batch-size 16 --steps 100000 --no-eval --quiet > "$OUT/coordinator.log" 2>&1 &
pids+=($!)
for w in 0 1; do
  ip netns exec "${NS[$((w + 1))]}" "$BNDIST" worker --coordinator http://10.77.0.1:29500 --worker-id "linkcut-$w" --token-file "$token" \
    --threads 1 --advertise "${IPS[$((w + 1))]}" > "$OUT/worker$w.log" 2>&1 &
  pids+=($!)
done
# Wait until both workers train, then a few seconds more.
for _ in $(seq 1 120); do
  grep -q "is rank" "$OUT/worker0.log" 2>/dev/null && grep -q "is rank" "$OUT/worker1.log" 2>/dev/null && break
  sleep 0.5
done
sleep 5
cut=$(now)
ip link set "bnd-h2-$id" down   # worker 1's link
echo "cut worker 1's link at $(date -u +%T.%N)"
names=(coordinator worker0 worker1)
for i in 0 1 2; do
  while kill -0 "${pids[$i]}" 2>/dev/null; do
    sleep 0.1
    awk -v e="$(since "$cut")" -v t="$T" 'BEGIN { exit !(e > 4 * t + 30) }' && break
  done
  code=0; wait "${pids[$i]}" || code=$?
  if kill -0 "${pids[$i]}" 2>/dev/null; then echo "${names[$i]}: still running"; else
    printf '%s: exit %d after %s s: %s\n' "${names[$i]}" "$code" "$(since "$cut")" \
      "$(grep -E 'failed|aborted|lost|error' "$OUT/${names[$i]}.log" | tail -1 | cut -c1-220)"
  fi
done
rm -f "$token"
