// unpermute_backward_kernel: both gradients of unpermute in one pass over the sorted rows.
//
//   y[t] = sum_j w[t, j] * yp[slot[t*k + j]]   (unpermute)
//   =>  grad_yp[i]      = w[a] * grad_y[a / k]          a = order[i], kept (slot[a] >= 0)
//       grad_weights[a] = <grad_y[a / k], yp[i]>        (fp32 / fp64 accumulation)
//   and 0 for dropped assignments (rows past offsets[-1] of sort_tokens).
//   A malformed order[i] outside [0, N) (unchecked on the device unless MOE_EXT_DEBUG=1) gives
//   grad_yp[i] = 0 and writes no grad_weights entry: slot, weights and grad_y are never read
//   out of bounds.
//
// Design: one warp per sorted row i (grid-stride). The row's assignment a, its kept flag and
// weight are broadcast loads; the lanes stream grad_y[a / k] and yp[i] once each in kVec-wide
// vectors (both loads of a step issued before either is used, through the read-only path
// ld.global.nc: neither is written by the kernel) (consecutive lanes on consecutive vectors:
// coalesced), write grad_yp[i] and keep a running dot product, reduced by a butterfly warp sum
// (fixed order: deterministic) and stored by lane 0. Every flat assignment appears exactly once in
// `order`, so each grad_weights entry has one writer: no atomics. Reading grad_y once for both
// outputs is the point of fusing: the torch formulation (permute of grad_y, a scaled copy, a
// row-wise dot) reads it twice and materialises the permuted rows. Traffic: grad_y rows N*H + yp
// N*H read, grad_yp N*H written. Vector width as in unpermute: the widest dividing H, the row
// stride and the base addresses. Offsets are int64 (i * H can exceed 2^31).
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <algorithm>

#include "../common/convert.h"
#include "../common/dispatch.h"
#include "../common/launch.h"
#include "../common/memory.h"
#include "../common/vec.h"
#include "../common/warp.h"
#include "unpermute_backward.h"

namespace moe_ext::MOE_KERNEL_NS {

namespace unpermute_backward_detail {
constexpr int kThreads = 128;  // 4 warps, one sorted row each

MOE_DEVICE MOE_FORCEINLINE double warp_sum_acc(double v) {
  for (int o = 16; o > 0; o /= 2) v += __shfl_xor_sync(kFullMask, v, o);
  return v;
}
MOE_DEVICE MOE_FORCEINLINE float warp_sum_acc(float v) { return warp_sum(v); }
}  // namespace unpermute_backward_detail

template <typename T, int kVec>
__global__ void __launch_bounds__(unpermute_backward_detail::kThreads)
    unpermute_backward_kernel(UnpermuteBackwardParams p) {
  using namespace unpermute_backward_detail;
  using V = Vec<T, kVec>;
  using A = acc_type_t<T>;
  const int64_t vecs = p.hidden / kVec, yp_stride = p.yp_row_stride / kVec;
  const V* grad_y = static_cast<const V*>(p.grad_y);
  const V* yp = static_cast<const V*>(p.yp);
  V* grad_yp = static_cast<V*>(p.grad_yp);
  const A* weights = static_cast<const A*>(p.weights);
  A* grad_w = static_cast<A*>(p.grad_weights);
  const int lane = static_cast<int>(threadIdx.x) % 32, warp = static_cast<int>(threadIdx.x) / 32;
  const int warps = static_cast<int>(blockDim.x) / 32;
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * warps + warp; i < p.num_rows;
       i += static_cast<int64_t>(gridDim.x) * warps) {
    const int32_t a = ld_global_nc(p.order + i);
    const bool valid = a >= 0 && a < p.tokens * p.top_k;  // never read out of bounds
    const bool kept = valid && ld_global_nc(p.slot + a) >= 0;
    const A w = kept ? ld_global_nc(weights + a) : A(0);
    const V* dy = grad_y + (valid ? a / p.top_k : 0) * vecs;
    const V* y = yp + i * yp_stride;
    A dot = A(0);
    for (int64_t c = lane; c < vecs; c += 32) {
      V out;
      if (kept) {
        const V g = ld_global_nc(dy + c), v = ld_global_nc(y + c);
        MOE_UNROLL for (int e = 0; e < kVec; ++e) {
          const A ge = to_acc(g.v[e]);
          out.v[e] = from_acc<T>(w * ge);
          dot += ge * to_acc(v.v[e]);
        }
      } else {
        MOE_UNROLL for (int e = 0; e < kVec; ++e) out.v[e] = from_acc<T>(A(0));
      }
      st_global(grad_yp + i * vecs + c, out);
    }
    dot = warp_sum_acc(dot);
    if (lane == 0 && valid) st_global(grad_w + a, kept ? dot : A(0));
  }
}

namespace unpermute_backward_detail {

template <typename T, int kVec>
cudaError_t launch_with(const UnpermuteBackwardParams& p, cudaStream_t stream) {
  const int64_t blocks = std::min<int64_t>((p.num_rows + 3) / 4, int64_t{1} << 16);
  return launch_kernel("unpermute_backward_kernel", unpermute_backward_kernel<T, kVec>,
                       dim3(static_cast<unsigned>(blocks)), dim3(kThreads), 0, stream, p);
}

template <typename T>
cudaError_t launch_typed(const UnpermuteBackwardParams& p, cudaStream_t stream) {
  const uint64_t bits = static_cast<uint64_t>(p.hidden * sizeof(T)) |
                        static_cast<uint64_t>(p.yp_row_stride * sizeof(T)) |
                        reinterpret_cast<uintptr_t>(p.yp) | reinterpret_cast<uintptr_t>(p.grad_y) |
                        reinterpret_cast<uintptr_t>(p.grad_yp);
  return with_vector_width<T>(
      bits, [&](auto n) { return launch_with<T, decltype(n)::value>(p, stream); });
}

}  // namespace unpermute_backward_detail

}  // namespace moe_ext::MOE_KERNEL_NS

// The launcher (declared in the .h), for the target this translation unit compiles.
namespace moe_ext {

template <>
cudaError_t launch_unpermute_backward<kKernelTarget>(const UnpermuteBackwardParams& p,
                                                     cudaStream_t stream) {
  using namespace MOE_KERNEL_NS;
  using namespace unpermute_backward_detail;
  if (p.num_rows == 0) return cudaSuccess;
  return dispatch_dtype<float, __nv_bfloat16, __half, double>(
      p.dtype, [&](auto tag) { return launch_typed<decltype(tag)>(p, stream); });
}

}  // namespace moe_ext
