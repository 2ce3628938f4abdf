// Global and shared memory access helpers used by every kernel (DESIGN.md principle 3).
//
// On the GPU they compile to plain (vectorised, for 8/16-byte types) loads and stores, with the
// read-only cache path for ld_global_nc. On the emulator every access is checked -- bounds
// against the launch's buffers or the block's shared memory, shared-memory races and
// uninitialised reads -- and counted (bytes, 32-byte sectors, bank conflicts).
#pragma once

#include <cstring>
#include <type_traits>

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
// Scalars go through __ldg directly; 16/8/4/2-byte aggregates (Vec<T, N>) as uint4/uint2/uint
// (one ld.global.nc instruction), reinterpreted.
template <typename T>
MOE_DEVICE MOE_FORCEINLINE T ld_global_nc(const T* p) {
  constexpr size_t n = sizeof(T);
  if constexpr (std::is_arithmetic_v<T> || !(n == 2 || n == 4 || n == 8 || n == 16)) {
    return __ldg(p);  // the emulator's __ldg is a checked load (simt/cuda_compat.h)
  } else {
    using W = std::conditional_t<
        n == 16, uint4,
        std::conditional_t<n == 8, uint2, std::conditional_t<n == 4, unsigned, unsigned short>>>;
    const W w = __ldg(reinterpret_cast<const W*>(p));
    T v;
    static_assert(sizeof(W) == sizeof(T));
    memcpy(&v, &w, sizeof(T));
    return v;
  }
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
