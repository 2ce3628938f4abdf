// mlp_backward_rows_kernel: the elementwise steps of moe_mlp's backward between its GEMMs, in
// one pass over the expert-sorted rows (moe_mlp.cpp, moe_mlp_backward on device targets):
//
//   a_i      = act(h_i)                         (gated: act(gate) * up, clamped with `limit`)
//   dw_i     = <dA'_i, a_i>                     the routing-weight gradient (a rounded to x's
//                                               dtype first, as the CPU op), with dA' = g @ w2
//   dh_i     = act'(h_i) (w_i dA'_i)            gated: d gate = w dA' up act'(gate) [gate <=
//                                               limit], d up = w dA' act(gate) [|up| <= limit]
//   dz_i     = w_i g_i                          the dW2 GEMM's operand
//
// Design: memory-bound (reads h, dA', g once; writes a, dh, dz in x's dtype and one float per
// row), so one warp per row with a grid-stride loop over rows: lanes walk the row's columns at
// consecutive addresses, fp32 math in registers, the dot reduced by shuffles. No [N, 2I] fp32
// tensor and none of the ~10 passes of torch ops the chunked composite made. (Fusing this into
// the dA GEMM's epilogue, as SonicMoE does, is the next step: the epilogue holds dA'.)
#pragma once

#include <algorithm>
#include <cmath>

#include "../common/convert.h"
#include "../common/dispatch.h"
#include "../common/launch.h"
#include "../common/memory.h"
#include "../common/warp.h"
#include "activation.cuh"
#include "mlp_backward_rows.h"

namespace moe_ext::MOE_KERNEL_NS {

template <typename T>
__global__ void mlp_backward_rows_kernel(MlpBackwardRowsParams p) {
  const int lane = static_cast<int>(threadIdx.x) % 32, warp = static_cast<int>(threadIdx.x) / 32;
  const int warps = static_cast<int>(blockDim.x) / 32;
  const T* h = static_cast<const T*>(p.h);
  const T* da = static_cast<const T*>(p.da);
  const T* g = static_cast<const T*>(p.g);
  T* a_out = static_cast<T*>(p.a);
  T* dh_out = static_cast<T*>(p.dh);
  T* dz_out = static_cast<T*>(p.dz);
  const int64_t I = p.inter, H = p.hidden, h_cols = p.gated ? 2 * I : I;
  const float lim = p.limit;
  for (int64_t row = static_cast<int64_t>(blockIdx.x) * warps + warp; row < p.rows;
       row += static_cast<int64_t>(gridDim.x) * warps) {
    const float w = ld_global_nc(p.w + row);
    const T* hr = h + row * p.h_stride;
    const T* dar = da + row * p.da_stride;
    float dot = 0.f;
    for (int64_t j = lane; j < I; j += 32) {
      const float d = to_acc(ld_global_nc(dar + j));
      const float x = to_acc(ld_global_nc(hr + j));
      float a, dgate, dup = 0.f;
      if (p.gated) {
        const float up_raw = to_acc(ld_global_nc(hr + I + j));
        // torch.clamp: NaN passes forward; the gradient flows where lo <= x <= hi
        const bool clamp = lim > 0.f;
        const bool gate_in = !clamp || x <= lim;
        const bool up_in = !clamp || (up_raw >= -lim && up_raw <= lim);
        const float gate = clamp && x > lim ? lim : x;
        const float up = clamp && up_raw > lim ? lim : (clamp && up_raw < -lim ? -lim : up_raw);
        const float act_gate = activate(gate, p.act);
        a = act_gate * up;
        dgate = gate_in ? w * d * up * activate_grad(gate, p.act) : 0.f;
        dup = up_in ? w * d * act_gate : 0.f;
      } else {
        a = activate(x, p.act);
        dgate = w * d * activate_grad(x, p.act);
      }
      const T a_t = from_acc<T>(a);
      st_global(a_out + row * I + j, a_t);
      dot += d * to_acc(a_t);
      st_global(dh_out + row * h_cols + j, from_acc<T>(dgate));
      if (p.gated) st_global(dh_out + row * h_cols + I + j, from_acc<T>(dup));
    }
    for (int o = 16; o > 0; o /= 2) dot += __shfl_xor_sync(0xffffffffu, dot, o);
    if (lane == 0) st_global(p.dw + row, dot);
    const T* gr = g + row * p.g_stride;
    for (int64_t j = lane; j < H; j += 32)
      st_global(dz_out + row * H + j, from_acc<T>(w * to_acc(ld_global_nc(gr + j))));
  }
}

}  // namespace moe_ext::MOE_KERNEL_NS

namespace moe_ext {

template <>
cudaError_t launch_mlp_backward_rows<kKernelTarget>(const MlpBackwardRowsParams& p,
                                                    cudaStream_t stream) {
  using namespace MOE_KERNEL_NS;
  if (p.rows == 0) return cudaSuccess;
  if (can_implement(p) != nullptr) return cudaErrorInvalidValue;
  constexpr int kThreads = 256;  // 8 warps, one row each
  const auto blocks = static_cast<unsigned>(std::min<int64_t>((p.rows + 7) / 8, int64_t{1} << 16));
  return dispatch_dtype<float, __nv_bfloat16, __half>(p.dtype, [&](auto tag) {
    using T = decltype(tag);
    return launch_kernel("mlp_backward_rows_kernel", mlp_backward_rows_kernel<T>, dim3(blocks),
                         dim3(kThreads), 0, stream, p);
  });
}

}  // namespace moe_ext
