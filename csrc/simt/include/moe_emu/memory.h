// The CPU SIMT emulator's side of common/memory.h: moe_simt::check_global / check_shared and
// the checked __ldg (simt/cuda_compat.h). Only the emulator's build puts csrc/simt/include on
// the include path (cmake/emu.cmake), so nvcc never sees this.
#pragma once

#include "../../cuda_compat.h"
