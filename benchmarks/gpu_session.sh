#!/usr/bin/env bash
# What a session lent a GPU runs. The device budget is ~15 minutes in all and 10 per call, so
# the work is split into named steps, run as two calls on one warm machine:
#   bash benchmarks/gpu_session.sh build tests memcheck     # call 1 (~8 min)
#   bash benchmarks/gpu_session.sh gemm layer static         # call 2 (~6 min)
# (no arguments: every step, for a machine without that limit). Results go to $OUT (default
# ./gpu_out); each step has a time limit, its log is copied to $OUT and a failing step does not
# stop the next.
#   build      pip install --no-build-isolation -e . against the device's torch
#   tests      the CUDA test suite (MOE_EXT_REQUIRE_CUDA_BUILD=1), emulator tests deselected
#   memcheck   compute-sanitizer memcheck on the grouped GEMM / moe_mlp CUDA tests (both kernel
#              families: the Hopper one's TMA loads/stores and device-rewritten tensor maps)
#   racecheck  compute-sanitizer racecheck on the grouped GEMM and permutation CUDA tests
#   gemm       bench_grouped_gemm.py: fwd / dA / dB per kernel family (sm80, sm90) at the model
#              shapes, uniform and Zipf routing, vs torch._grouped_mm and a dense mm
#   layer      bench_moe_layer.py: the issue goals (Qwen3-30B-A3B, T=32768, fwd and fwd+bwd)
#   static     the static report (registers, spills, SASS mix, occupancy)
#   all_benchmarks  benchmarks/run_all.py at full sizes (~15 min: a machine without the limit)
#   tune       the tile-config sweep (tune_grouped_gemm.py), the table the launcher can load
# Commit the results afterwards as benchmarks/results/<date>-<device>/ (see README).
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-$PWD/gpu_out}
mkdir -p "$OUT"
export CUDA_HOME=${CUDA_HOME:-/usr/local/cuda}
export PATH="$CUDA_HOME/bin:$PATH"
DEV=$(nvidia-smi --query-gpu=name --format=csv,noheader 2>/dev/null | head -1 | tr ' ' '-')
DATE=$(date +%Y-%m-%d)
step() {  # step NAME TIMEOUT CMD...
  local name=$1 limit=$2; shift 2
  echo "== $name (limit ${limit}s)"
  timeout "$limit" "$@" > "$OUT/$name.log" 2>&1
  echo "$name: exit $?" | tee -a "$OUT/steps.txt"
  tail -5 "$OUT/$name.log"
}
nvidia-smi > "$OUT/nvidia-smi.txt" 2>&1
RES="$OUT/results/$DATE-$DEV"
mkdir -p "$RES"
SAN="$CUDA_HOME/bin/compute-sanitizer"
KERNEL_TESTS="tests/test_grouped_mm.py tests/test_permutation.py tests/test_route.py tests/test_moe_mlp.py"
run_step() {
  case "$1" in
    build) step build 360 python -m pip install --no-build-isolation -e . ;;
    tests) step tests 300 env MOE_EXT_REQUIRE_CUDA_BUILD=1 python -m pytest -q -x tests \
             -k "cuda or not emu" -p no:cacheprovider ;;
    memcheck) step memcheck 150 "$SAN" --tool memcheck --error-exitcode 1 python -m pytest -q -x \
                tests/test_grouped_mm.py tests/test_moe_mlp.py -k "cuda and not large" ;;
    racecheck) step racecheck 300 "$SAN" --tool racecheck --error-exitcode 1 python -m pytest -q -x \
                 tests/test_grouped_mm.py tests/test_permutation.py -k "cuda and not large" ;;
    gemm) step gemm 240 python benchmarks/bench_grouped_gemm.py --paths sm80 sm90 --iters 20 \
            --json "$RES/grouped_gemm.json" ;;
    layer) step layer 150 python benchmarks/bench_moe_layer.py --presets qwen3-30b-a3b \
             --tokens 32768 --json "$RES/moe_layer_goal.json" ;;
    static) step static 60 python benchmarks/static_report.py --markdown "$RES/static_report.md" \
              --json "$RES/static_report.json" ;;
    all_benchmarks) step all_benchmarks 900 python benchmarks/run_all.py --out "$RES" ;;
    tune) step tune 240 python benchmarks/tune_grouped_gemm.py --iters 10 \
            --out "$RES/gemm_tuning.json" ;;  # moe_ext.load_gemm_tuning reads it
    *) echo "unknown step $1" | tee -a "$OUT/steps.txt" ;;
  esac
}
STEPS=("$@")
[ ${#STEPS[@]} -eq 0 ] && STEPS=(build tests memcheck racecheck all_benchmarks tune)
for s in "${STEPS[@]}"; do run_step "$s"; done
echo "results in $OUT (commit $RES as benchmarks/results/$DATE-$DEV)"
