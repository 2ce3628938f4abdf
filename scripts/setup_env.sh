# Sourced by demo.sh and test.sh: creates/activates a virtual environment, installs torch if the
# interpreter has none, and builds moe_ext into it (editable, no build isolation, so the
# extension is compiled against exactly the torch it will run with).
#
# MOE_EXT_VENV   venv directory (default .venv); "none" uses the current interpreter as is
# MOE_EXT_TORCH  pip requirement for torch when none is importable (default torch==2.14.1)
# plus the build switches of setup.py (MOE_EXT_CUDA, MOE_EXT_CUDA_ARCHS, CUDA_HOME, MAX_JOBS).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
venv=${MOE_EXT_VENV:-.venv}
if [ "$venv" != "none" ]; then
  # --system-site-packages: a machine that already has torch (e.g. a GPU box) keeps using it
  [ -x "$venv/bin/python" ] || python3 -m venv --system-site-packages "$venv"
  # shellcheck disable=SC1091
  . "$venv/bin/activate"
fi
# pip's exit status is kept; only its noise about absent local index folders is filtered out
pip_install() { python -m pip install -q "$@" 2> >(grep -v "is ignored" >&2); }
if ! python -c "import torch" 2>/dev/null; then
  pip_install "${MOE_EXT_TORCH:-torch==2.14.1}"
fi
pip_install setuptools wheel "cmake>=3.26" ninja "$@"
if [ -z "${CUDA_HOME:-}" ] && [ -x /usr/local/cuda/bin/nvcc ]; then
  export CUDA_HOME=/usr/local/cuda
fi
pip_install --no-build-isolation -e .
python -c "import moe_ext; print('moe_ext built:', moe_ext.build_info())"
