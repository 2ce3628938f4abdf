// The CPU SIMT emulator's side of common/warp.h: the __shfl*_sync warp shuffles and fmaxf
// (simt/cuda_compat.h). Only the emulator's build puts csrc/simt/include on the include path
// (cmake/emu.cmake), so nvcc never sees this.
#pragma once

#include "../../cuda_compat.h"
