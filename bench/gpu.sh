#!/usr/bin/env bash
# bench/gpu.sh: everything BnDist needs a GPU for, in one call, from outputs built beforehand,
# so that no minute of GPU time goes to setup (issue 11, item 4). Steps, in order:
#
#   env     nvidia-smi, the .NET and PyTorch found, the GPU's compute capability
#   ptxas   every kernel's PTX (PtxCompilationTests with BNDIST_PTX_DIR, the PTX ISA a current
#           driver gets) through the CUDA toolkit's ptxas for this GPU: registers, spills,
#           shared memory — what the test cannot check without one. Skipped without ptxas.
#   tests   the whole test suite (dotnet test on the built test assemblies) with CUDA present,
#           so the Cuda* test classes run instead of skipping; tests.log lists any still skipped
#   launch  bndist launch --device cuda --workers $WORKERS for $EPOCHS epoch(s) on the full
#           Fashion-MNIST if it is at $DATA, else on the embedded subset
#   step    bndist bench step --device cuda against bench/peers/torch_step.py --device cuda
#           (when python's torch sees CUDA), interleaved as bench/step.sh does
#
# Prepare here (with the SDK and the package cache):   bash bench/gpu.sh --bundle
#   builds Release and writes bench/out/gpu-bundle.tar.xz: bndist and the test assemblies without
#   the copies of the embedded data (the binaries find data/fashion-mnist up the tree), ~3 MB;
#   WITH_DOTNET=1 adds this machine's .NET 10 runtimes (~40 MB) for a GPU machine without .NET.
#   On the GPU machine, with the bundle carried (or the bin/ folders present):
#                                                        bash bench/gpu.sh      (or make bench-gpu)
#   e.g. with the device tool: run(command="bash bench/gpu.sh", carry=["bench/out/gpu-bundle.tar.xz"]).
# It needs, there: nvidia-smi and a CUDA driver, dotnet with the .NET 10 runtimes
# (Microsoft.NETCore.App and Microsoft.AspNetCore.App; the tests step also needs a .NET SDK),
# python3 with torch for the PyTorch side, no network. Without nvidia-smi it stops at once (exit 2).
#
# Results: $OUT if set, else bench/out/gpu-<time>/, at most 8 files (what the device tool brings
# back): summary.txt (each step's status and time, the figures), env.txt, ptxas.txt, tests.log,
# launch.log, step.txt. Exit 0 when every step that ran passed, 1 otherwise.
#
# Knobs (environment): STEPS="env ptxas tests launch step"  BUDGET=570 (seconds for all steps:
#   a step that would start later is skipped; a device call may run 600 s)
#   ENV_TIMEOUT=30 PTXAS_TIMEOUT=60 TESTS_TIMEOUT=300 LAUNCH_TIMEOUT=150 STEP_TIMEOUT=150
#   WORKERS=2 EPOCHS=1 DATA=/usr/share/datasets/fashion-mnist
#   MODEL=convnet BATCH=128 ROUNDS=3 WARMUP=10 ITERATIONS=30 THREADS=4 (PyTorch's CPU threads)
#   DOTNET=path/to/dotnet  PYTHON=python3  BUNDLE=bench/out/gpu-bundle.tar.xz
#   DEVICE=cuda (cpu or ilgpu-cpu only to try this script where there is no GPU, with a stand-in
#   nvidia-smi on PATH)  TEST_FILTER= (a dotnet test --filter; empty: the whole suite)
# shellcheck disable=SC2317  # the step functions run through `timeout bash -c`
set -uo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BUNDLE=${BUNDLE:-$ROOT/bench/out/gpu-bundle.tar.xz}
CONFIG=Release
TFM=net10.0
CLI_BIN="src/Cli/bin/$CONFIG/$TFM"
TEST_PROJECTS=(Core.Tests Cli.Tests Integration.Tests)

die() { echo "gpu.sh: $1" >&2; exit "${2:-1}"; }

# ---- --bundle: here, not on the GPU machine ------------------------------------------------------
if [[ ${1:-} == --bundle ]]; then
    command -v dotnet >/dev/null || die "--bundle builds here: dotnet not found"
    echo "building BnDist.sln ($CONFIG)..."
    dotnet build "$ROOT/BnDist.sln" -c "$CONFIG" --nologo -v q 2>&1 | tail -3
    [[ ${PIPESTATUS[0]} -eq 0 ]] || die "build failed"
    paths=("$CLI_BIN")
    for p in "${TEST_PROJECTS[@]}"; do paths+=("tests/$p/bin/$CONFIG/$TFM"); done
    for p in "${paths[@]}"; do [[ -d $ROOT/$p ]] || die "no $p after the build"; done
    # WITH_DOTNET=1: also this machine's .NET 10 runtimes as .dotnet/ (for a GPU machine without
    # .NET: launch and step then run; the tests need an SDK, far too big to carry).
    runtime=()
    if [[ ${WITH_DOTNET:-0} == 1 ]]; then
        dn=$(dirname "$(readlink -f "$(command -v dotnet)")")
        for r in "$dn"/shared/Microsoft.NETCore.App/10.* "$dn"/shared/Microsoft.AspNetCore.App/10.*; do
            [[ -d $r ]] && runtime+=("${r#"$dn"/}")
        done
        (( ${#runtime[@]} == 2 )) || die "WITH_DOTNET=1: $dn lacks the .NET 10 runtimes"
        runtime=(-C "$dn" dotnet host "${runtime[@]}")
    fi
    mkdir -p "$(dirname "$BUNDLE")"
    # xz -9: a 64 MiB window, so the assemblies every folder repeats are stored once.
    (cd "$ROOT" && tar --exclude='*/data/fashion-mnist' --transform='s,^\(dotnet\|host\|shared\)\(/\|$\),.dotnet/\1\2,' \
        -cf - "${paths[@]}" "${runtime[@]}" | xz -9 -T1 >"$BUNDLE.tmp") || die "could not write $BUNDLE"
    mv "$BUNDLE.tmp" "$BUNDLE"
    echo "wrote ${BUNDLE#"$ROOT"/} ($(du -h "$BUNDLE" | cut -f1)): carry it to the GPU machine and run bash bench/gpu.sh there"
    exit 0
fi
[[ $# -eq 0 ]] || die "usage: bench/gpu.sh [--bundle]  (knobs are environment variables: see the header)"

# ---- fail fast: no GPU, no point ---------------------------------------------------------------------
command -v nvidia-smi >/dev/null \
    || die "no NVIDIA GPU here: nvidia-smi not found. This script is for a machine with an NVIDIA GPU and its driver; without one, 'make test' compiles every kernel to PTX (PtxCompilationTests) and checks the launch shapes (GpuGroupShapeTests)" 2
GPUS=$(nvidia-smi -L 2>&1) || die "nvidia-smi finds no usable GPU: $GPUS" 2
[[ $GPUS == *GPU* ]] || die "nvidia-smi lists no GPU: $GPUS" 2

STEPS=${STEPS:-env ptxas tests launch step}
BUDGET=${BUDGET:-570}
ENV_TIMEOUT=${ENV_TIMEOUT:-30}
PTXAS_TIMEOUT=${PTXAS_TIMEOUT:-60}
TESTS_TIMEOUT=${TESTS_TIMEOUT:-300}
LAUNCH_TIMEOUT=${LAUNCH_TIMEOUT:-150}
STEP_TIMEOUT=${STEP_TIMEOUT:-150}
WORKERS=${WORKERS:-2}
EPOCHS=${EPOCHS:-1}
DATA=${DATA:-/usr/share/datasets/fashion-mnist}
MODEL=${MODEL:-convnet}
BATCH=${BATCH:-128}
ROUNDS=${ROUNDS:-3}
WARMUP=${WARMUP:-10}
ITERATIONS=${ITERATIONS:-30}
THREADS=${THREADS:-4}
DEVICE=${DEVICE:-cuda}
TEST_FILTER=${TEST_FILTER:-}
PYTHON=${PYTHON:-python3}
for v in BUDGET ENV_TIMEOUT PTXAS_TIMEOUT TESTS_TIMEOUT LAUNCH_TIMEOUT STEP_TIMEOUT WORKERS EPOCHS BATCH ROUNDS ITERATIONS THREADS; do
    [[ ${!v} =~ ^[1-9][0-9]*$ ]] || die "$v must be a positive integer, got '${!v}'"
done
[[ $WARMUP =~ ^[0-9]+$ ]] || die "WARMUP must be a non-negative integer, got '$WARMUP'"
for s in $STEPS; do [[ $s =~ ^(env|ptxas|tests|launch|step)$ ]] || die "unknown step '$s' in STEPS (env ptxas tests launch step)"; done

# ---- the build outputs (and perhaps .NET): present, or unpacked from the carried bundle -------------
if [[ ! -f $ROOT/$CLI_BIN/bndist.dll ]]; then
    [[ -f $BUNDLE ]] || die "no $CLI_BIN/bndist.dll and no bundle at $BUNDLE: run 'bash bench/gpu.sh --bundle' where the SDK is and carry ${BUNDLE#"$ROOT"/}" 3
    echo "unpacking ${BUNDLE#"$ROOT"/}..."
    xz -dc "$BUNDLE" | tar -C "$ROOT" -xf - || die "could not unpack $BUNDLE" 3
fi
# ---- dotnet: nothing can be installed there, so look where a carried one would be ----------------
find_dotnet() {
    local c
    for c in "${DOTNET:-}" "$(command -v dotnet 2>/dev/null)" "$ROOT/.dotnet/dotnet" "$HOME/.dotnet/dotnet" \
             /usr/share/dotnet/dotnet /usr/lib/dotnet/dotnet /opt/dotnet/dotnet; do
        [[ -n $c && -x $c ]] && { echo "$c"; return 0; }
    done
    return 1
}
DOTNET=$(find_dotnet) || die "no dotnet (looked at \$DOTNET, PATH, $ROOT/.dotnet, ~/.dotnet, /usr/share/dotnet, /usr/lib/dotnet, /opt/dotnet): the GPU steps need .NET 10 — its runtimes (Microsoft.NETCore.App, Microsoft.AspNetCore.App) for launch and step, an SDK for tests; nothing can be downloaded there: carry a bundle made with WITH_DOTNET=1 (see the header), or set DOTNET" 3
export DOTNET_ROOT=${DOTNET_ROOT:-$(dirname "$(readlink -f "$DOTNET")")}
export DOTNET_CLI_TELEMETRY_OPTOUT=1 DOTNET_NOLOGO=1 DOTNET_SKIP_FIRST_TIME_EXPERIENCE=1
RUNTIMES=$("$DOTNET" --list-runtimes 2>/dev/null)
if ! grep -q '^Microsoft.NETCore.App 10\.' <<<"$RUNTIMES" || ! grep -q '^Microsoft.AspNetCore.App 10\.' <<<"$RUNTIMES"; then
    die "$DOTNET lacks the .NET 10 runtimes bndist needs (Microsoft.NETCore.App and Microsoft.AspNetCore.App 10.x); it has: ${RUNTIMES:-none}" 3
fi
HAVE_SDK=0
[[ -n $("$DOTNET" --list-sdks 2>/dev/null) ]] && HAVE_SDK=1

BNDIST_DLL=$ROOT/$CLI_BIN/bndist.dll
[[ -f $BNDIST_DLL ]] || die "the bundle holds no $CLI_BIN/bndist.dll" 3
TEST_DLLS=()
for p in "${TEST_PROJECTS[@]}"; do
    d=$(find "$ROOT/tests/$p/bin/$CONFIG/$TFM" -maxdepth 1 -name 'BnDist.*Tests.dll' 2>/dev/null | head -n 1)
    [[ -n $d ]] && TEST_DLLS+=("$d")
done
bndist() { "$DOTNET" "$BNDIST_DLL" "$@"; }

OUT=${OUT:-$ROOT/bench/out/gpu-$(date +%Y%m%d-%H%M%S)}
mkdir -p "$OUT" || die "cannot create $OUT"
SUMMARY=$OUT/summary.txt
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
START=$SECONDS
FAILED=0
note() { echo "$*" | tee -a "$SUMMARY"; }

# run_step NAME TIMEOUT LOG COMMAND...: the command under `timeout -k 5`, output to LOG (appended),
# status and seconds to the summary. Skipped when it could not finish inside BUDGET.
run_step() {
    local name=$1 limit=$2 log=$3 rc t0=$SECONDS
    shift 3
    if (( SECONDS - START + limit > BUDGET )); then
        note "$(printf '%-7s SKIPPED: %ds of the %ds budget left, the step may take %ds (raise BUDGET or run it alone with STEPS=%s)' \
            "$name" $((BUDGET - (SECONDS - START))) "$BUDGET" "$limit" "$name")"
        return 0
    fi
    echo "== $name (at most ${limit}s) -> ${log#"$OUT"/}"
    # The step functions and their settings are exported; timeout runs them in a fresh bash and,
    # at the limit, signals its whole process group (dotnet, the launched workers, python).
    timeout -k 5 "$limit" bash -c '"$@"' "$name" "$@" >>"$log" 2>&1
    rc=$?
    local what=ok
    if (( rc == 124 || rc == 137 )); then what="TIMED OUT after ${limit}s"; elif (( rc != 0 )); then what="FAILED (exit $rc)"; fi
    (( rc == 0 )) || FAILED=1
    note "$(printf '%-7s %s in %ds' "$name" "$what" $((SECONDS - t0)))"
    return $rc
}

note "bench/gpu.sh $(date -u +%Y-%m-%dT%H:%M:%SZ) on $(hostname): ${GPUS%%$'\n'*}"
note "commit $(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown); dotnet $DOTNET (SDK: $([[ $HAVE_SDK == 1 ]] && echo yes || echo no)); results in $OUT"
CAP=$(nvidia-smi --query-gpu=compute_cap --format=csv,noheader 2>/dev/null | head -n 1 | tr -d ' .')
[[ $CAP =~ ^[0-9]+$ ]] || CAP=90
ARCH=sm_$CAP

step_env() {
    nvidia-smi
    echo; "$DOTNET" --info | head -n 30
    echo; echo "compute capability: $ARCH"
    echo; command -v ptxas nvcc || true
    ptxas --version 2>/dev/null | tail -n 2 || true
    echo; "$PYTHON" -c 'import torch; print("torch", torch.__version__, "cuda", torch.version.cuda, "available", torch.cuda.is_available(), torch.cuda.get_device_name(0) if torch.cuda.is_available() else "")' || true
    echo; ls -la "$DATA" 2>&1 || true
}

# Every kernel's PTX for this GPU, at the newest ISA ILGPU knows (8.8: what a current driver
# gets), through ptxas -v for the GPU's own architecture. The test writes the modules for sm_70,
# sm_80 and sm_90 devices (ILGPU targets sm_80 for the latter two); take the closest below.
step_ptxas() {
    local dir=$WORK/ptx n=0 bad=0 f
    [[ -n ${CORE_TESTS:-} ]] || { echo "no BnDist.Core.Tests.dll"; return 1; }
    BNDIST_PTX_DIR=$dir "$DOTNET" test "$CORE_TESTS" --filter "FullyQualifiedName~PtxCompilationTests" || return 1
    local device=sm_70
    if (( CAP >= 90 )); then device=sm_90; elif (( CAP >= 80 )); then device=sm_80; fi
    local isa; isa=$(find "$dir" -name "*.$device.isa*.ptx" -printf '%f\n' | sed -n 's/.*\.'"$device"'\.isa\([0-9.]*\)\.ptx$/\1/p' | sort -V | tail -n 1)
    [[ -n $isa ]] || { echo "no PTX for $device in $dir"; return 1; }
    echo "ptxas -arch=$ARCH -v on the PTX ILGPU writes for an $device device, ISA $isa:"
    for f in "$dir"/*."$device".isa"$isa".ptx; do
        n=$((n + 1))
        echo "-- $(basename "$f" ".$device.isa$isa.ptx") ($(grep -m1 '^\.target' "$f"))"
        ptxas -arch="$ARCH" -v -o /dev/null "$f" 2>&1 || { bad=$((bad + 1)); echo "   ^ ptxas REJECTED it"; }
    done
    echo "$n modules, $bad rejected"
    (( n > 0 && bad == 0 ))
}

step_tests() {
    local dlls
    mapfile -t dlls < <(printf '%s' "$TEST_DLLS_LIST")
    (( ${#dlls[@]} > 0 )) || { echo "no test assemblies under tests/*/bin"; return 1; }
    "$DOTNET" test "${dlls[@]}" --logger "console;verbosity=normal" ${TEST_FILTER:+--filter "$TEST_FILTER"}
}

step_launch() {
    local data=()
    if [[ -f $DATA/train-labels-idx1-ubyte.gz || -f $DATA/train-labels-idx1-ubyte ]]; then
        data=(--data "$DATA")
        echo "data: $DATA"
    else
        echo "data: the embedded subset ($DATA holds no Fashion-MNIST)"
    fi
    # (no --metrics-out: launch accepts it but only `train` writes it; the log has the evaluations)
    bndist launch --device "$DEVICE" --workers "$WORKERS" --epochs "$EPOCHS" --model "$MODEL" "${data[@]}" --quiet
}

step_step() {
    local r torch=0 on=cpu
    [[ $DEVICE == cuda* ]] && on=cuda
    if "$PYTHON" -c 'import sys, torch; sys.exit(0 if sys.argv[1] == "cpu" or torch.cuda.is_available() else 1)' "$on" 2>/dev/null; then torch=1
    else echo "PyTorch with $on is not importable by $PYTHON: BnDist alone"; fi
    for ((r = 1; r <= ROUNDS; r++)); do
        bndist bench step --device "$DEVICE" --model "$MODEL" --batch-size "$BATCH" --warmup "$WARMUP" --iterations "$ITERATIONS" --json \
            | tail -n 1 | tee "$WORK/bndist-$r.json" || return 1
        if (( torch )); then
            OMP_NUM_THREADS=$THREADS "$PYTHON" "$ROOT/bench/peers/torch_step.py" --device "$on" --model "$MODEL" --batch-size "$BATCH" \
                --threads "$THREADS" --warmup "$WARMUP" --iterations "$ITERATIONS" | tail -n 1 | tee "$WORK/torch-$r.json" || return 1
        fi
    done
    command -v "$PYTHON" >/dev/null || { echo "no $PYTHON to summarize: the JSON lines above are the result"; return 0; }
    "$PYTHON" - "$WORK" "$ROUNDS" "$torch" <<'EOF'
import json, os, sys
work, rounds, torch = sys.argv[1], int(sys.argv[2]), sys.argv[3] == "1"
load = lambda side: [json.load(open(os.path.join(work, f"{side}-{r}.json"))) for r in range(1, rounds + 1)]
med = lambda xs: sorted(xs)[len(xs) // 2]
b = load("bndist")
bm = med([x["median_ms"] for x in b])
print(f"RESULT BnDist on {b[0]['device']}: {bm:.2f} ms/step (median of {rounds} round medians; "
      f"min {min(x['min_ms'] for x in b):.2f}), {b[0]['gflop_per_step'] / (bm / 1000):.1f} GFLOP/s, "
      f"{b[0]['model']}/{b[0]['norm']} batch {b[0]['batch_size']}")
if torch:
    t = load("torch")
    tm = med([x["median_ms"] for x in t])
    print(f"RESULT PyTorch {t[0]['torch_version']} on {t[0].get('cuda_device')}: {tm:.2f} ms/step "
          f"(min {min(x['min_ms'] for x in t):.2f}; cudnn TF32 {t[0].get('cudnn_allow_tf32')}, matmul TF32 {t[0].get('matmul_allow_tf32')})")
    print(f"RESULT ratio BnDist/PyTorch: {bm / tm:.2f}x")
EOF
}

CORE_TESTS=$(printf '%s\n' "${TEST_DLLS[@]}" | grep '/BnDist.Core.Tests.dll$' || true)
TEST_DLLS_LIST=$(printf '%s\n' "${TEST_DLLS[@]}")
export DOTNET BNDIST_DLL ROOT OUT WORK CAP ARCH DEVICE TEST_FILTER DATA WORKERS EPOCHS MODEL BATCH ROUNDS WARMUP ITERATIONS THREADS PYTHON \
    CORE_TESTS TEST_DLLS_LIST
export -f bndist step_env step_ptxas step_tests step_launch step_step
for s in $STEPS; do
    case $s in
        env)    run_step env "$ENV_TIMEOUT" "$OUT/env.txt" step_env ;;
        ptxas)
            if ! command -v ptxas >/dev/null; then note "ptxas   SKIPPED: no ptxas on PATH (the CUDA toolkit's)"
            elif (( ! HAVE_SDK )); then note "ptxas   SKIPPED: no .NET SDK to run PtxCompilationTests"
            else run_step ptxas "$PTXAS_TIMEOUT" "$OUT/ptxas.txt" step_ptxas
                 grep -E 'modules, [0-9]+ rejected|registers|spill' "$OUT/ptxas.txt" | grep -E 'rejected|[1-9][0-9]* bytes spill' | head -n 20 | tee -a "$SUMMARY"
            fi ;;
        tests)
            if (( ! HAVE_SDK )); then note "tests   SKIPPED: $DOTNET has no SDK ('dotnet test' needs one); the runtime runs launch and step"
            else run_step tests "$TESTS_TIMEOUT" "$OUT/tests.log" step_tests
                 grep -E '^Test Run |^\s+(Total tests|Passed|Failed|Skipped): |^(Passed|Failed)!|^\s+Failed ' "$OUT/tests.log" \
                     | head -n 40 | sed 's/^ */    /' | tee -a "$SUMMARY"
                 grep -E '^\s+Skipped ' "$OUT/tests.log" | sed 's/^ */    still skipped with a GPU: /' | head -n 40 | tee -a "$SUMMARY"
            fi ;;
        launch) run_step launch "$LAUNCH_TIMEOUT" "$OUT/launch.log" step_launch
                grep -E '^(world of|step [0-9]+: test|done:|communication share)' "$OUT/launch.log" | sed 's/^/    /' | tee -a "$SUMMARY" ;;
        step)   run_step step "$STEP_TIMEOUT" "$OUT/step.txt" step_step
                grep '^RESULT' "$OUT/step.txt" | tee -a "$SUMMARY" ;;
    esac
done
note "done in $((SECONDS - START))s: $([[ $FAILED == 0 ]] && echo 'every step that ran passed' || echo 'a step FAILED, see above')"
exit $FAILED
