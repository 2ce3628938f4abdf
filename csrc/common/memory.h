// Global and shared memory access helpers used by every kernel (DESIGN.md principle 3).
//
// On the GPU they compile to plain (vectorised, for 8/16-byte types) loads and stores, with the
// read-only cache path for ld_global_nc. On the emulator every access is checked -- bounds
// against the launch's buffers or the block's shared memory, shared-memory races and
// uninitialised reads -- and counted (bytes, 32-byte sectors, bank conflicts).
#pragma once

#include "portable.h"

#if !defined(__CUDACC__)
// The emulator's implementation: csrc/simt/include/moe_emu/memory.h, found through the include
// path that only the emulator build adds (cmake/emu.cmake).
#include <moe_emu/memory.h>
#endif

namespace moe_ext {

template <typename T>
MOE_DEVICE MOE_FORCEINLINE T ld_global(const T* p) {
#if !defined(__CUDACC__)
  ::moe_simt::check_global(p, sizeof(T), false, "load");
#endif
  return *p;
}

// Read-only data for the whole kernel: the non-coherent (texture) cache path on the GPU.
template <typename T>
MOE_DEVICE MOE_FORCEINLINE T ld_global_nc(const T* p) {
  return __ldg(p);  // the emulator's __ldg is a checked load (simt/cuda_compat.h)
}

template <typename T>
MOE_DEVICE MOE_FORCEINLINE void st_global(T* p, const T& v) {
#if !defined(__CUDACC__)
  ::moe_simt::check_global(p, sizeof(T), true, "store");
#endif
  *p = v;
}

template <typename T>
MOE_DEVICE MOE_FORCEINLINE T ld_shared(const T* p) {
#if !defined(__CUDACC__)
  ::moe_simt::check_shared(p, sizeof(T), false, "load");
#endif
  return *p;
}

template <typename T>
MOE_DEVICE MOE_FORCEINLINE void st_shared(T* p, const T& v) {
#if !defined(__CUDACC__)
  ::moe_simt::check_shared(p, sizeof(T), true, "store");
#endif
  *p = v;
}

}  // namespace moe_ext
