// Host-side interface of moe_mlp's fused backward row pass (mlp_backward_rows.cuh): the
// elementwise steps between the backward's GEMMs, one pass over the sorted rows. Torch-free.
#pragma once

#include <cstdint>

#include "../common/dtype.h"
#include "../common/launcher.h"
#include "grouped_gemm/grouped_gemm.h"  // GemmActivation

namespace moe_ext {

struct MlpBackwardRowsParams {
  const void* h;   // [N, 2I] (gated: gate | up) or [N, I], x's dtype, row stride h_stride
  const void* da;  // dA' = gather(dy) @ w2 [N, I], x's dtype, row stride da_stride
  const void* g;   // gather(dy) [N, H], x's dtype, row stride g_stride
  const float* w;  // [N] the routing weight of each sorted row (dropped rows: g, dA', h 0)
  void* a;         // out: act(h) [N, I], contiguous, x's dtype
  void* dh;        // out: d h [N, 2I or I], contiguous, x's dtype
  void* dz;        // out: w * g [N, H], contiguous, x's dtype
  float* dw;       // out: <dA'_i, a_i> [N]
  int64_t rows, inter, hidden;  // N, I, H
  int64_t h_stride, da_stride, g_stride;
  FloatDtype dtype;  // bfloat16, float16 or float32
  GemmActivation act;
  bool gated;
  float limit;  // gated, > 0: the clamped SwiGLU (gate <= limit, |up| <= limit)
};

inline const char* can_implement(const MlpBackwardRowsParams& p) {
  return p.dtype == FloatDtype::kFloat64 ? "float64 runs on the CPU op" : nullptr;
}

template <Target T>
cudaError_t launch_mlp_backward_rows(const MlpBackwardRowsParams& params, cudaStream_t stream);

}  // namespace moe_ext
