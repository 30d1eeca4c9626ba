#!/usr/bin/env bash
# bench/peers/collectives.sh: all-reduce baselines for BnDist's gRPC collective, from PyTorch's
# gloo backend, Open MPI and a bare gRPC-dotnet hub, on this machine (loopback only).
#
# What it runs, for each K in WORKERS (default "2 4"):
#   grpc-hub     bench/peers/GrpcHub: a bare gRPC-dotnet hub (Kestrel h2c, one bidi stream per client
#                process, the last contribution answers all), BN statistics only: the floor under
#                BnDist's gRPC path on this machine; warm-up WARMUP ops and WARMUP_SECONDS s. Twice:
#                clients that await (impl grpc-hub) and clients that block (grpc-hub-sync)
#   gloo         bench/peers/gloo_allreduce.py: K spawned processes, gloo over TCP on 127.0.0.1
#   openmpi-tcp  bench/out/mpi_allreduce under mpirun with --mca btl tcp,self and
#                btl_tcp_if_include lo: loopback TCP, the fair comparison with gRPC over TCP
#   openmpi-sm   the same program with --mca btl self,vader: Open MPI's shared-memory transport
#                (vader is Open MPI 4.x's name for it; 5.x calls it sm), a lower bound, not TCP
# Each measures (see the two programs' headers for details):
#   bn-stats   latency of all-reduce(SUM) of 2C+1 float64 for C in CHANNELS: WARMUP untimed ops,
#              then OPS timed ops; rank 0's p50/p99/mean in microseconds
#   gradients  all-reduce(SUM) of S MiB of float32 for S in SIZES: 3 untimed ops, then REPS timed
#              ops; rank 0's median ms, algbw and busbw = algbw*2(K-1)/K in GB/s
# and appends one JSON object per measurement to OUT; bench/peers/collectives_table.py turns
# that file (and BnDist's own, impl "bndist") into Markdown tables.
#
# Run from the repository root (or anywhere):  bench/peers/collectives.sh
# Knobs (environment): OPS=2000 WARMUP=1000 REPS=10 WORKERS="2 4" CHANNELS=64,256,1024
#                      SIZES=1,4,16,64 OUT=bench/out/peers-collectives.jsonl
#                      PEERS="grpc-hub gloo openmpi-tcp openmpi-sm" PYTHON=/usr/bin/python3 WARMUP_SECONDS=5
#                      TIMEOUT=900 (seconds per program run)
# A quick check:  OPS=200 WARMUP=100 REPS=3 SIZES=1,4 OUT=/tmp/peers.jsonl bench/peers/collectives.sh
#
# grpc-hub needs the .NET SDK. Needs Debian's python3-torch (/usr/bin/python3) for gloo, and openmpi-bin + libopenmpi-dev
# (mpicc, mpirun) for Open MPI; a peer whose tools are missing is skipped with a message.
# K=4 on a 2-core machine oversubscribes the cores: mpirun gets --oversubscribe --bind-to none
# (Open MPI then yields the CPU while polling), and any other load on the machine shows in the
# figures: the script prints `uptime` before each run, check it.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$ROOT"

OPS=${OPS:-2000}
WARMUP=${WARMUP:-1000}
WARMUP_SECONDS=${WARMUP_SECONDS:-5}
REPS=${REPS:-10}
WORKERS=${WORKERS:-"2 4"}
CHANNELS=${CHANNELS:-64,256,1024}
SIZES=${SIZES:-1,4,16,64}
OUT=${OUT:-bench/out/peers-collectives.jsonl}
PEERS=${PEERS:-"grpc-hub gloo openmpi-tcp openmpi-sm"}
HUB_DIR=bench/out/grpc-hub
PYTHON=${PYTHON:-/usr/bin/python3}
TIMEOUT=${TIMEOUT:-900}
OPENBLAS=/usr/lib/x86_64-linux-gnu/openblas-openmp
MPI_SRC=bench/peers/mpi_allreduce.c
MPI_BIN=bench/out/mpi_allreduce

die() { echo "collectives.sh: $*" >&2; exit 1; }
note() { echo "collectives.sh: $*" >&2; }

for v in OPS REPS TIMEOUT; do
    [[ ${!v} =~ ^[1-9][0-9]*$ ]] || die "$v must be a positive integer, got '${!v}'"
done
[[ $WARMUP =~ ^[0-9]+$ ]] || die "WARMUP must be a non-negative integer, got '$WARMUP'"
for k in $WORKERS; do
    [[ $k =~ ^[0-9]+$ ]] && (( k >= 2 )) || die "WORKERS must list integers >= 2, got '$WORKERS'"
done
for v in CHANNELS SIZES; do
    [[ ${!v} =~ ^[1-9][0-9]*(,[1-9][0-9]*)*$ ]] || die "$v must be comma-separated positive integers, got '${!v}'"
done
for p in $PEERS; do
    case $p in grpc-hub|gloo|openmpi-tcp|openmpi-sm) ;; *) die "unknown peer '$p' in PEERS (grpc-hub, gloo, openmpi-tcp, openmpi-sm)";; esac
done
mkdir -p "$(dirname "$OUT")" bench/out

# --- which peers can run ----------------------------------------------------------------------
want() { [[ " $PEERS " == *" $1 "* ]]; }

have_gloo=0
if want gloo; then
    if ! command -v "$PYTHON" >/dev/null; then
        note "skipping gloo: no python at '$PYTHON' (set PYTHON=...)"
    elif ! LD_LIBRARY_PATH="$OPENBLAS${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}" "$PYTHON" -c \
            'import sys, torch.distributed as d; sys.exit(0 if d.is_available() and d.is_gloo_available() else 1)' 2>/dev/null; then
        note "skipping gloo: $PYTHON cannot import torch with torch.distributed/gloo (install Debian's python3-torch: apt-get install python3-torch, or set PYTHON)"
    else
        have_gloo=1
    fi
fi

have_mpi=0
if want openmpi-tcp || want openmpi-sm; then
    if ! command -v mpirun >/dev/null; then
        note "skipping Open MPI: no mpirun (apt-get install openmpi-bin libopenmpi-dev)"
    elif [[ ! -x $MPI_BIN || $MPI_SRC -nt $MPI_BIN ]] && ! command -v mpicc >/dev/null; then
        note "skipping Open MPI: $MPI_BIN is not built and there is no mpicc (apt-get install libopenmpi-dev)"
    else
        if [[ ! -x $MPI_BIN || $MPI_SRC -nt $MPI_BIN ]]; then
            note "compiling $MPI_SRC -> $MPI_BIN"
            mpicc -O2 -Wall -o "$MPI_BIN" "$MPI_SRC" || die "mpicc failed on $MPI_SRC"
        fi
        have_mpi=1
    fi
fi
have_hub=0
if want grpc-hub; then
    if ! command -v dotnet >/dev/null; then
        note "skipping grpc-hub: no dotnet"
    elif ! dotnet build bench/peers/GrpcHub/GrpcHub.csproj -c Release --nologo -v q -o "$HUB_DIR" >bench/out/grpc-hub.build.log 2>&1; then
        die "building bench/peers/GrpcHub failed (bench/out/grpc-hub.build.log)"
    else
        have_hub=1
    fi
fi
(( have_hub || have_gloo || have_mpi )) || die "no peer can run (see the messages above)"

# mpirun refuses to run as root unless told; harmless for other users.
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
# Common mpirun flags: 4 ranks on 2 cores is oversubscription; do not pin ranks to cores.
MPIRUN=(mpirun --oversubscribe --bind-to none)
COMMON=(--channels "$CHANNELS" --ops "$OPS" --warmup "$WARMUP" --sizes-mib "$SIZES" --reps "$REPS" --out "$OUT")

run_mpi() {  # run_mpi IMPL K BTL-ARGS...
    local impl=$1 k=$2; shift 2
    timeout "$TIMEOUT" "${MPIRUN[@]}" -np "$k" "$@" "$MPI_BIN" --workers "$k" --impl "$impl" "${COMMON[@]}" \
        || die "$impl K=$k failed (exit $?)"
}

note "OPS=$OPS WARMUP=$WARMUP REPS=$REPS WORKERS='$WORKERS' CHANNELS=$CHANNELS SIZES=$SIZES -> $OUT"
for k in $WORKERS; do
    if (( have_hub )); then
        note "grpc-hub K=$k   load: $(uptime | sed 's/.*load average: //')"
        for client in async sync; do
            timeout "$TIMEOUT" "$HUB_DIR/grpc-hub" --workers "$k" --channels "$CHANNELS" --ops "$OPS" --warmup "$WARMUP" \
                --warmup-seconds "$WARMUP_SECONDS" --client "$client" --out "$OUT" || die "grpc-hub K=$k --client $client failed (exit $?)"
        done
    fi
    if (( have_gloo )) && want gloo; then
        note "gloo K=$k   load: $(uptime | sed 's/.*load average: //')"
        LD_LIBRARY_PATH="$OPENBLAS${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}" OMP_NUM_THREADS=1 \
            timeout "$TIMEOUT" "$PYTHON" bench/peers/gloo_allreduce.py --workers "$k" "${COMMON[@]}" \
            || die "gloo K=$k failed (exit $?)"
    fi
    if (( have_mpi )) && want openmpi-tcp; then
        note "openmpi-tcp K=$k   load: $(uptime | sed 's/.*load average: //')"
        run_mpi openmpi-tcp "$k" --mca btl tcp,self --mca btl_tcp_if_include lo
    fi
    if (( have_mpi )) && want openmpi-sm; then
        note "openmpi-sm K=$k   load: $(uptime | sed 's/.*load average: //')"
        run_mpi openmpi-sm "$k" --mca btl self,vader
    fi
done
note "done; results appended to $OUT (tables: bench/peers/collectives_table.py $OUT)"
