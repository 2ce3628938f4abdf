#!/usr/bin/env bash
# Installs moe_ext (see setup_env.sh) and runs the main job: a Mixtral-shaped MoE layer forward
# and backward through torch.ops.moe_ext, timed next to a plain-torch loop over experts.
# On a machine without a visible GPU it takes the CPU-only fast path (CPU torch, no CUDA
# kernels; ~1 min of build on 2 cores instead of ~13) unless MOE_EXT_CPU_FAST=0.
# Extra arguments go to benchmarks/demo_moe.py (try --help).
set -euo pipefail
cd "$(dirname "$0")/.."
if [ -z "${MOE_EXT_CPU_FAST:-}" ]; then
  if command -v nvidia-smi > /dev/null && nvidia-smi -L > /dev/null 2>&1; then
    export MOE_EXT_CPU_FAST=0
  else
    export MOE_EXT_CPU_FAST=1
  fi
fi
args=("$@")
set --  # a sourced script sees the caller's arguments: setup_env.sh must get none of the demo's
. scripts/setup_env.sh
python benchmarks/demo_moe.py "${args[@]}"
