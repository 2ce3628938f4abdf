#!/usr/bin/env bash
# Incremental developer build into build/dev (CMake + Ninja directly, no pip): the library lands
# in python/moe_ext/, so `PYTHONPATH=python python -m pytest tests` runs it. Uses the active
# Python's torch (activate the venv that scripts/setup_env.sh made first). Defaults: CUDA for
# 8.0;9.0a when nvcc is at $CUDA_HOME (default /usr/local/cuda), the emulator on, test-only
# kernels on. Override with MOE_EXT_CUDA_ARCHS, MOE_EXT_CUDA=0, MOE_EXT_EMU=0, MAX_JOBS.
set -euo pipefail
cd "$(dirname "$0")/.."
home=${CUDA_HOME:-/usr/local/cuda}
cuda=ON
[[ "${MOE_EXT_CUDA:-1}" == 0 || ! -x "$home/bin/nvcc" ]] && cuda=OFF
emu=ON
[[ "${MOE_EXT_EMU:-1}" == 0 ]] && emu=OFF
args=(-G Ninja -DPython_EXECUTABLE="$(command -v python)" -DCMAKE_BUILD_TYPE=Release
      -DCMAKE_LIBRARY_OUTPUT_DIRECTORY="$PWD/python/moe_ext"
      -DMOE_EXT_CUDA=$cuda -DMOE_EXT_EMU=$emu -DMOE_EXT_TEST_KERNELS="${MOE_EXT_TEST_KERNELS:-ON}" -DMOE_EXT_CUDA_INCLUDE_DIR="$home/include")
if [[ $cuda == ON ]]; then
  export CUDA_HOME=$home PATH="$home/bin:$PATH"
  args+=(-DMOE_EXT_CUDA_ARCHS="${MOE_EXT_CUDA_ARCHS:-8.0;9.0a}" -DCMAKE_CUDA_COMPILER="$home/bin/nvcc"
         -DCUDAToolkit_ROOT="$home")
fi
cmake -S . -B build/dev "${args[@]}" "$@" >/dev/null
cmake --build build/dev -j "${MAX_JOBS:-$(nproc)}"
python -c "import torch; print(torch.__version__)" > python/moe_ext/_build_torch.txt
