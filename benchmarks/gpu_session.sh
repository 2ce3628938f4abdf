#!/usr/bin/env bash
# What a session lent a GPU runs, in one call (budget ~20 minutes):
#   bash benchmarks/gpu_session.sh            # results into $OUT (default ./gpu_out)
# 1. build against the device's torch:  pip install --no-build-isolation -e .
# 2. the CUDA test suite (MOE_EXT_REQUIRE_CUDA_BUILD=1), with the emulator tests deselected
# 3. compute-sanitizer memcheck and racecheck on the kernel tests (a CUDA-only subset)
# 4. benchmarks/run_all.py (full sizes) and the static report
# 5. the grouped GEMM tile-config sweep (tune_grouped_gemm.py), the table the launcher can load
# Each step has a time limit and its log is copied to $OUT; a failing step does not stop the
# next. Commit the results afterwards as benchmarks/results/<date>-<device>/ (see README).
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
step build 420 python -m pip install --no-build-isolation -e .
step tests 420 env MOE_EXT_REQUIRE_CUDA_BUILD=1 python -m pytest -q -x tests \
  -k "cuda or not emu" -p no:cacheprovider
SAN="$CUDA_HOME/bin/compute-sanitizer"
KERNEL_TESTS="tests/test_grouped_mm.py tests/test_permutation.py tests/test_route.py tests/test_moe_mlp.py"
step memcheck 300 "$SAN" --tool memcheck --error-exitcode 1 python -m pytest -q -x $KERNEL_TESTS -k cuda
step racecheck 300 "$SAN" --tool racecheck --error-exitcode 1 python -m pytest -q -x \
  tests/test_grouped_mm.py tests/test_permutation.py -k "cuda and not large"
step benchmarks 900 python benchmarks/run_all.py --out "$OUT/results/$DATE-$DEV"
step tune 240 python benchmarks/tune_grouped_gemm.py --iters 10 \
  --out "$OUT/results/$DATE-$DEV/gemm_tuning.json"  # moe_ext.load_gemm_tuning reads it
echo "results in $OUT (commit $OUT/results/$DATE-$DEV as benchmarks/results/$DATE-$DEV)"
