// permute_kernel: gather token rows into expert-sorted order.
//
//   xp[i, :] = x[order[i] / top_k, :]   if assignment order[i] is kept (slot[order[i]] >= 0)
//   xp[i, :] = 0                        if it was dropped (over capacity / id -1)
//
// Layout: x [T, H] with a contiguous inner dim and any row stride; xp [N, H] contiguous.
// Design: a pure memory-bound copy, so one CTA per output row (grid-stride over rows) and each
// thread moves `Vec`-sized units across the row. The launcher picks the widest unit (16, 8, 4, 2
// or 1 bytes) that divides the row size, the source row stride and both base addresses, so rows
// whose byte size is not a multiple of 16 (H not a multiple of 8 in bf16) still work, at a lower
// vector width. The copy is dtype-agnostic (bytes), so one instantiation per unit width serves
// every dtype. Row offsets are computed in int64 (row * H can exceed 2^31).
#pragma once

#include "../common/portable.h"
#include "permute.h"

namespace moe_ext {

template <typename Vec>
__global__ void permute_kernel(PermuteParams p) {
  const int64_t units = p.hidden * p.elem_bytes / static_cast<int64_t>(sizeof(Vec));
  const int64_t src_stride = p.x_row_stride * p.elem_bytes / static_cast<int64_t>(sizeof(Vec));
  const Vec* x = static_cast<const Vec*>(p.x);
  Vec* xp = static_cast<Vec*>(p.xp);
  for (int64_t row = blockIdx.x; row < p.num_rows; row += gridDim.x) {
    const int32_t a = p.order[row];
    const bool kept = p.slot[a] >= 0;
    const Vec* src = x + static_cast<int64_t>(a / p.top_k) * src_stride;
    Vec* dst = xp + row * units;
    for (int64_t u = threadIdx.x; u < units; u += blockDim.x) {
      dst[u] = kept ? src[u] : Vec{};
    }
  }
}

}  // namespace moe_ext
