// permute_kernel: gather token rows into expert-sorted order.
//
//   xp[i, :] = x[order[i] / top_k, :]   if assignment order[i] is kept (slot[order[i]] >= 0)
//   xp[i, :] = 0                        if it was dropped (over capacity / id -1)
//   xp[i, :] = 0                        if order[i] is outside [0, N) (a malformed order)
//
// order's values are checked only on CPU and under MOE_EXT_DEBUG=1 (a check would sync), so
// the kernel guards the index itself: a bad entry zeroes its row instead of reading slot and x
// out of bounds (the emulator's bounds checker holds it to that).
//
// Layout: x [T, H] with a contiguous inner dim and any row stride; xp [N, H] contiguous.
// Design: a pure memory-bound copy, so one warp per output row (grid-stride over rows; the row's
// order/slot indices are broadcast loads, one transaction per warp), and the lanes move
// unit-sized words across the row, consecutive lanes on consecutive units (coalesced). The
// launcher picks the widest unit (16, 8, 4, 2 or 1 bytes) that divides the row size, the source row
// stride and both base addresses, so rows whose byte size is not a multiple of 16 (H not a multiple
// of 8 in bf16) still work, at a lower vector width. The copy is dtype-agnostic (bytes), so one
// instantiation per unit width serves every dtype. Row offsets are computed in int64 (row * H can
// exceed 2^31). Included once per backend: by csrc/cuda/permute.cu (nvcc) and csrc/emu/permute.cpp
// (g++).
#pragma once

#include <algorithm>

#include "../common/launch.h"
#include "../common/memory.h"
#include "../common/vec.h"
#include "permute.h"

namespace moe_ext::MOE_KERNEL_NS {

template <typename Unit>
__global__ void permute_kernel(PermuteParams p) {
  const int64_t units = p.hidden * p.elem_bytes / static_cast<int64_t>(sizeof(Unit));
  const int64_t src_stride = p.x_row_stride * p.elem_bytes / static_cast<int64_t>(sizeof(Unit));
  const Unit* x = static_cast<const Unit*>(p.x);
  Unit* xp = static_cast<Unit*>(p.xp);
  const int lane = threadIdx.x % 32, warp = threadIdx.x / 32, warps = blockDim.x / 32;
  for (int64_t row = static_cast<int64_t>(blockIdx.x) * warps + warp; row < p.num_rows;
       row += static_cast<int64_t>(gridDim.x) * warps) {
    // Every lane loads the row's indices: one broadcast transaction per warp. An assignment
    // outside [0, N) is treated as dropped, so slot and x are only read in bounds.
    const int32_t a = ld_global_nc(p.order + row);
    const bool kept = a >= 0 && a < p.num_rows && ld_global_nc(p.slot + a) >= 0;
    const Unit* src = x + static_cast<int64_t>(kept ? a / p.top_k : 0) * src_stride;
    Unit* dst = xp + row * units;
    for (int64_t u = lane; u < units; u += 32)
      st_global(dst + u, kept ? ld_global_nc(src + u) : Unit{});
  }
}

namespace {

template <typename Unit>
cudaError_t launch_permute_with(const PermuteParams& p, cudaStream_t stream) {
  constexpr int kThreads = 128;  // 4 warps, one row each
  const int64_t blocks = std::min<int64_t>((p.num_rows + 3) / 4, int64_t{1} << 16);
  return launch_kernel("permute_kernel", permute_kernel<Unit>, dim3(static_cast<unsigned>(blocks)),
                       dim3(kThreads), 0, stream, p);
}

// Widest power-of-two byte unit dividing every byte quantity the kernel steps by.
int64_t vector_bytes(const PermuteParams& p) {
  const uint64_t bits = static_cast<uint64_t>(p.hidden * p.elem_bytes) |
                        static_cast<uint64_t>(p.x_row_stride * p.elem_bytes) |
                        reinterpret_cast<uintptr_t>(p.x) | reinterpret_cast<uintptr_t>(p.xp);
  return static_cast<int64_t>(widest_vector_bytes(bits));
}

}  // namespace

}  // namespace moe_ext::MOE_KERNEL_NS

// The launcher (declared in the .h), for the target this translation unit compiles.
namespace moe_ext {

template <>
cudaError_t launch_permute<kKernelTarget>(const PermuteParams& p, cudaStream_t stream) {
  using namespace MOE_KERNEL_NS;
  if (p.num_rows == 0 || p.hidden == 0) return cudaSuccess;
  switch (vector_bytes(p)) {
    case 16: return launch_permute_with<uint4>(p, stream);
    case 8: return launch_permute_with<uint2>(p, stream);
    case 4: return launch_permute_with<uint32_t>(p, stream);
    case 2: return launch_permute_with<uint16_t>(p, stream);
    default: return launch_permute_with<uint8_t>(p, stream);
  }
}

}  // namespace moe_ext
