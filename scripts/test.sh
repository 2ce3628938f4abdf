#!/usr/bin/env bash
# Installs moe_ext and its test dependencies (see setup_env.sh), then runs the test suite.
# Extra arguments go to pytest; `--fast` first leaves out the tests marked slow. The formatters
# are pinned: tests/test_style.py checks their exact output.
set -euo pipefail
cd "$(dirname "$0")/.."
# the tests also exercise the test-only kernels (emulator self-tests, tile/wgmma test GEMMs)
export MOE_EXT_TEST_KERNELS=${MOE_EXT_TEST_KERNELS:-1}
. scripts/setup_env.sh pytest numpy expecttest hypothesis "transformers>=5" nvidia-cuda-cuobjdump nvidia-cuda-nvdisasm matplotlib tqdm ruff==0.17.6 clang-format==23.1.5
# --fast: the developer loop, without the tests marked slow (CI runs everything)
if [ "${1:-}" = "--fast" ]; then
  shift
  set -- -m "not slow" "$@"
fi
python -m pytest -q tests "$@"
