// Shared-memory declarations that work on both paths. A plain `#define __shared__` cannot give
// every emulated block its own copy (nor express `extern __shared__`), so kernels declare shared
// memory only through these macros:
//   MOE_SHARED_ARRAY(float, tile, 256);   // static:  __shared__ float tile[256]
//   MOE_SHARED_DYNAMIC(half, smem);       // dynamic: extern __shared__ ... (launch-time size)
// Both give a pointer-like `name` indexable as an array; access it through ld_shared/st_shared.
#pragma once

#if defined(__CUDACC__)
#define MOE_SHARED_ARRAY(T, name, n) __shared__ __align__(16) T name[n]
#define MOE_SHARED_DYNAMIC(T, name)                            \
  extern __shared__ __align__(16) unsigned char name##_raw_[]; \
  T* name = reinterpret_cast<T*>(name##_raw_)
#else
// The emulator's definitions: csrc/simt/include/moe_emu/shared.h, found through the include
// path that only the emulator build adds (cmake/emu.cmake).
#include <moe_emu/shared.h>
#endif
