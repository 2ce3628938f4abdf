#!/usr/bin/env bash
# Installs moe_ext (see setup_env.sh) and runs the main job: a Mixtral-shaped MoE layer forward
# and backward through torch.ops.moe_ext, timed next to a plain-torch loop over experts.
# Extra arguments go to benchmarks/demo_moe.py (try --help).
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/setup_env.sh
python benchmarks/demo_moe.py "$@"
