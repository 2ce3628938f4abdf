#!/usr/bin/env bash
# What a session lent a GPU runs: one H200, 15 minutes of device time in all (start-up
# included), at most 10 minutes a command, released ~30 s after a call, at most 8 files back.
# Two calls, the second issued as soon as the first returns (README, "A GPU session"):
#
#   bash benchmarks/gpu_session.sh call1     # <= 6 min: build, smoke, memcheck, CUDA tests
#   bash benchmarks/gpu_session.sh call2     # <= 5 min: the goal figures, ncu, clocks
#   bash benchmarks/gpu_session.sh --dry-run # the same steps at smoke sizes on a CPU machine
#                                            # (CPU + emulator backends; run by the test suite)
#
# Steps and their time limits (seconds; `timeout` kills a step at its limit, the next goes on):
#   build     pip install --no-build-isolation --no-deps --no-index -e . for 9.0a only, no
#             emulator, MAX_JOBS = all cores; then fail the call unless build_info() lists 9.0a
#   smoke     benchmarks/gpu_smoke.py: every CUDA kernel instantiation once at a small shape vs
#             torch, each case under its own limit (a hang or trap costs one case)
#   memcheck  compute-sanitizer --tool memcheck on that smoke
#   tests     pytest -k cuda, not -x, capped
#   goals     benchmarks/gpu_goals.py: every goal figure, one JSON line per case as measured
#   ncu       one speed-of-light + memory-workload profile of the layer's two GEMMs (if ncu)
#   clocks    nvidia-smi clocks / power snapshot (before and after the goals)
# Everything lands in $OUT/session/ and is packed into $OUT/<call>.tar.gz (one file back);
# $OUT/<call>-summary.txt has each step's exit status and seconds. Commit the unpacked archive
# as benchmarks/results/<date>-h200/.
set -uo pipefail
cd "$(dirname "$0")/.."
MODE=${1:-}
DRY=0
[ "$MODE" = "--dry-run" ] && DRY=1
OUT=${OUT:-$PWD/gpu_out}
RES="$OUT/session"
mkdir -p "$RES"
SUMMARY="$OUT/${MODE#--}-summary.txt"
: > "$SUMMARY"
export PYTHONUNBUFFERED=1
export CUDA_HOME=${CUDA_HOME:-/usr/local/cuda}
export PATH="$CUDA_HOME/bin:$PATH"
PY=${PYTHON:-python3}
SMOKE_BACKENDS=(cuda)
[ $DRY = 1 ] && SMOKE_BACKENDS=(emu cpu)

step() {  # step NAME LIMIT CMD...: run with a time limit, log to $RES/NAME.log, never abort
  local name=$1 limit=$2; shift 2
  local t0=$SECONDS
  echo "== $name (limit ${limit} s)"
  timeout --kill-after=5 "$limit" "$@" > "$RES/$name.log" 2>&1
  local rc=$?
  local dt=$((SECONDS - t0))
  [ $rc = 124 ] && echo "$name: TIMED OUT after $limit s" >> "$RES/$name.log"
  printf '%-10s exit %3d  %4d s (limit %d)\n' "$name" "$rc" "$dt" "$limit" | tee -a "$SUMMARY"
  tail -4 "$RES/$name.log"
  return $rc
}

build() {
  # 9.0a only, explicitly: a TORCH_CUDA_ARCH_LIST in the device's environment must not decide
  MOE_EXT_CUDA=1 MOE_EXT_EMU=0 MOE_EXT_CUDA_ARCHS=9.0a MAX_JOBS=$(nproc) \
    $PY -m pip install --no-build-isolation --no-deps --no-index -v -e . || return 1
  $PY - <<'EOF'
import moe_ext
info = moe_ext.build_info()
print("build_info:", info)
if "9.0a" not in info["cuda_archs"]:
    raise SystemExit(f"the sm_90a kernels were not built (archs {info['cuda_archs']}): stopping")
EOF
}

clocks() {
  nvidia-smi --query-gpu=name,clocks.sm,clocks.mem,clocks.max.sm,power.draw,power.limit,temperature.gpu,utilization.gpu \
    --format=csv >> "$RES/clocks.csv" 2>&1 || echo "no nvidia-smi" >> "$RES/clocks.csv"
}

ncu_layer() {
  command -v ncu > /dev/null || { echo "ncu not on PATH: skipped"; return 0; }
  ncu --clock-control none --section SpeedOfLight --section MemoryWorkloadAnalysis \
    -k regex:grouped_gemm -c 2 -o "$RES/layer_gemms" -f \
    $PY benchmarks/gpu_goals.py --only layer --iters 1 --out "$RES/ncu_goals.jsonl" &&
    ncu --import "$RES/layer_gemms.ncu-rep" --page details > "$RES/layer_gemms_ncu.txt"
}

pack() {  # pack NAME: the session directory as one archive (the 8-file limit)
  tar -czf "$OUT/$1.tar.gz" -C "$OUT" session && echo "packed $OUT/$1.tar.gz"
}

call1() {
  nvidia-smi > "$RES/nvidia-smi.txt" 2>&1
  if ! step build 170 build; then pack call1; echo "build failed: see build.log"; return 1; fi
  step smoke 45 $PY benchmarks/gpu_smoke.py --case-timeout 20 --json "$RES/smoke.jsonl"
  step memcheck 60 compute-sanitizer --tool memcheck --error-exitcode 1 \
    $PY benchmarks/gpu_smoke.py --case-timeout 40 --json "$RES/memcheck.jsonl"
  # (the device build is 9.0a only, without the test-only kernels: the CI check that every arch
  # and the test GEMMs were compiled does not apply there)
  step tests 60 env MOE_EXT_REQUIRE_CUDA_BUILD=1 $PY -m pytest -q tests \
    -k "cuda and not compiled_for_every_arch" \
    -p no:cacheprovider --junitxml="$RES/tests.xml"
  pack call1
}

call2() {
  # the warm machine keeps call 1's install; rebuild (incremental) only if it is gone
  $PY -c "import moe_ext" 2>/dev/null || step build 150 build
  clocks
  step goals 210 $PY benchmarks/gpu_goals.py --out "$RES/goals.jsonl"
  clocks
  step ncu 50 ncu_layer
  pack call2
}

dry_run() {
  # the same drivers at smoke sizes on the CPU and the emulator (the test suite runs this)
  for b in "${SMOKE_BACKENDS[@]}"; do
    step "smoke-$b" 300 $PY benchmarks/gpu_smoke.py --backend "$b" --case-timeout 120 \
      --json "$RES/smoke-$b.jsonl"
  done
  step goals 300 $PY benchmarks/gpu_goals.py --smoke --out "$RES/goals.jsonl"
  pack dry-run
}

case "$MODE" in
  call1) call1 ;;
  call2) call2 ;;
  --dry-run) dry_run ;;
  *) echo "usage: $0 call1 | call2 | --dry-run" >&2; exit 2 ;;
esac
echo "--- steps"; cat "$SUMMARY"
! grep -qv " exit   0 " "$SUMMARY"
