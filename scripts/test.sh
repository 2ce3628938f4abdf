#!/usr/bin/env bash
# Installs moe_ext and its test dependencies (see setup_env.sh), then runs the test suite.
# Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/setup_env.sh pytest numpy expecttest hypothesis "transformers>=5" nvidia-cuda-cuobjdump nvidia-cuda-nvdisasm matplotlib tqdm ruff
python -m pytest -q tests "$@"
