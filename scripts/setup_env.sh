# Sourced by demo.sh and test.sh: creates/activates a virtual environment, installs torch if the
# interpreter has none, and builds moe_ext into it (editable, no build isolation, so the
# extension is compiled against exactly the torch it will run with). Prints each stage with the
# seconds elapsed, and the build's progress.
#
# MOE_EXT_VENV   venv directory (default .venv); "none" uses the current interpreter as is
# MOE_EXT_TORCH  pip requirement for torch when none is importable (default torch==2.14.1, the
#                CUDA build; demo.sh on a machine without a GPU: torch==2.13.0, the CPU wheel)
# MOE_EXT_CPU_FAST=1  (demo.sh sets it when no GPU is visible) CPU-only build: no CUDA kernels,
#                no emulator, CPU torch -- about 1 minute instead of ~13 on 2 cores
# plus the build switches of setup.py (MOE_EXT_CUDA, MOE_EXT_CUDA_ARCHS, CUDA_HOME, MAX_JOBS).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
_t0=$SECONDS
stage() { echo "[setup $((SECONDS - _t0)) s] $*"; }
venv=${MOE_EXT_VENV:-.venv}
if [ "$venv" != "none" ]; then
  if [ ! -x "$venv/bin/python" ]; then
    stage "creating the virtual environment $venv"
    # --system-site-packages: a machine that already has torch (e.g. a GPU box) keeps using it
    python3 -m venv --system-site-packages "$venv"
  fi
  # shellcheck disable=SC1091
  . "$venv/bin/activate"
fi
# pip's exit status is kept; only its noise about absent local index folders is filtered out
pip_install() { python -m pip install -q "$@" 2> >(grep -v "is ignored" >&2); }
if [ "${MOE_EXT_CPU_FAST:-0}" = 1 ]; then
  stage "no GPU visible: CPU-only build (CPU torch, no CUDA kernels, no emulator);" \
        "set MOE_EXT_CPU_FAST=0 for the full build"
  export MOE_EXT_CUDA=${MOE_EXT_CUDA:-0} MOE_EXT_EMU=${MOE_EXT_EMU:-0}
  : "${MOE_EXT_TORCH:=torch==2.13.0}"
fi
if ! python -c "import torch" 2>/dev/null; then
  stage "installing ${MOE_EXT_TORCH:-torch==2.14.1} (the CUDA build is 5.5 GB: about a minute from local disk)"
  pip_install "${MOE_EXT_TORCH:-torch==2.14.1}"
fi
stage "installing the build tools${*:+ and $*}"
pip_install setuptools wheel "cmake>=3.26" ninja "$@"
if [ -z "${CUDA_HOME:-}" ] && [ -x /usr/local/cuda/bin/nvcc ]; then
  export CUDA_HOME=/usr/local/cuda
fi
stage "building moe_ext (CUDA: ${MOE_EXT_CUDA:-auto}, emulator: ${MOE_EXT_EMU:-auto}); progress below"
# -v shows setup.py's choices and ninja's [n/total] lines; the whole log is kept
mkdir -p build
log=build/pip-install.log
if ! python -m pip install -v --no-build-isolation -e . 2>&1 | tee "$log" \
    | { grep --line-buffered -E "^ *moe_ext:|\[[0-9]+/[0-9]+\]" || true; } \
    | sed -u -E "s/^ *(\[[0-9]+\/[0-9]+\]) ([A-Za-z ]+) .*\/(csrc\/[^ ]+).*/  \1 \2 \3/"; then
  stage "the build FAILED; the end of $log:"
  tail -40 "$log"
  exit 1
fi
stage "built"
python -c "import moe_ext; print('moe_ext built:', moe_ext.build_info())"
