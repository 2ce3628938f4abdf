// Portable qualifiers shared by kernel sources compiled with nvcc (GPU) and with g++ (the
// csrc/simt CPU emulator). Kernels use these instead of raw CUDA keywords so the same source
// builds on both paths (DESIGN.md principle 3). Torch-free.
#pragma once

#include <cstdint>

// Kernels and their launchers live in moe_ext::MOE_KERNEL_NS: `cuda` when nvcc compiles them,
// `emu` when g++ compiles them for the emulator, so both builds link into one library.
#if defined(__CUDACC__)
#define MOE_KERNEL_NS cuda
#define MOE_HOST_DEVICE __host__ __device__
#define MOE_DEVICE __device__
#define MOE_FORCEINLINE __forceinline__
#else
#define MOE_KERNEL_NS emu
#define MOE_HOST_DEVICE
#define MOE_DEVICE
#define MOE_FORCEINLINE inline
#endif

// Full unrolling of a loop with a compile-time trip count (register arrays stay in registers).
#if defined(__CUDACC__)
#define MOE_UNROLL _Pragma("unroll")
#else
#define MOE_UNROLL
#endif

namespace moe_ext {

// Integer ceil-division for sizes (int64: row * hidden can pass 2^31).
// (the common type of its arguments: int64 sizes stay int64, int counts stay int)
template <typename A, typename B>
MOE_HOST_DEVICE constexpr auto ceil_div(A a, B b) {
  return (a + b - 1) / b;
}

}  // namespace moe_ext
