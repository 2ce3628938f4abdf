// Warp-wide reductions by butterfly shuffles (every lane gets the result). Both paths.
#pragma once

#include <cmath>

#include "portable.h"

#if !defined(__CUDACC__)
// The emulator's implementation: csrc/simt/include/moe_emu/warp.h, found through the include
// path that only the emulator build adds (cmake/emu.cmake).
#include <moe_emu/warp.h>
#endif

namespace moe_ext {

constexpr unsigned kFullMask = 0xffffffffu;

// The lane index read afresh (%laneid through volatile asm, which the compiler cannot merge with
// an earlier threadIdx read): lets a kernel drop the lane from its registers across a loop that
// needs every register (the Hopper GEMM's 128 x 128 accumulator) and read it again after.
MOE_DEVICE MOE_FORCEINLINE int lane_id() {
#if defined(__CUDACC__)
  int lane;
  asm volatile("mov.u32 %0, %%laneid;" : "=r"(lane));
  return lane;
#else
  return static_cast<int>(threadIdx.x) % 32;
#endif
}

MOE_DEVICE MOE_FORCEINLINE float warp_max(float v) {
  for (int o = 16; o > 0; o /= 2) v = fmaxf(v, __shfl_xor_sync(kFullMask, v, o));
  return v;
}

MOE_DEVICE MOE_FORCEINLINE float warp_sum(float v) {
  for (int o = 16; o > 0; o /= 2) v += __shfl_xor_sync(kFullMask, v, o);
  return v;
}

MOE_DEVICE MOE_FORCEINLINE unsigned long long warp_max_u64(unsigned long long v) {
  for (int o = 16; o > 0; o /= 2) {
    const unsigned long long other = __shfl_xor_sync(kFullMask, v, o);
    v = other > v ? other : v;
  }
  return v;
}

// Unsigned max / min over the warp: one redux.sync (REDUX) on sm_80+, the targets moe_ext builds.
MOE_DEVICE MOE_FORCEINLINE unsigned warp_max_u32(unsigned v) {
  return __reduce_max_sync(kFullMask, v);
}
MOE_DEVICE MOE_FORCEINLINE unsigned warp_min_u32(unsigned v) {
  return __reduce_min_sync(kFullMask, v);
}

}  // namespace moe_ext
