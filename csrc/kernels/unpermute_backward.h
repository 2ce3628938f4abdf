// Host-side interface of unpermute's backward kernel (unpermute_backward.cuh). Torch-free.
#pragma once

#include <cstdint>

#include "unpermute.h"

namespace moe_ext {

struct UnpermuteBackwardParams {
  const void* grad_y;    // [T, H] contiguous, yp's dtype
  const void* yp;        // [N, H] inner dim contiguous, row stride yp_row_stride
  const int32_t* order;  // [N] flat assignment at each sorted row
  const int32_t* slot;   // [N] sorted row per assignment, -1 when dropped
  const void* weights;   // [T, k] contiguous, fp32 (fp64 for fp64 yp): the binding converts
  void* grad_yp;         // [N, H] contiguous, yp's dtype
  void* grad_weights;    // [T, k] contiguous, weights' accumulation type (fp32 / fp64)
  FloatDtype dtype;
  int64_t tokens, hidden, yp_row_stride, num_rows;
  int32_t top_k;
};

inline const char* can_implement(const UnpermuteBackwardParams& p) {
  if (p.dtype != FloatDtype::kFloat32 && p.dtype != FloatDtype::kBFloat16 &&
      p.dtype != FloatDtype::kFloat16 && p.dtype != FloatDtype::kFloat64)
    return "yp's dtype must be float32, bfloat16, float16 or float64";
  return nullptr;
}

// Both gradients of unpermute (unpermute_backward.cuh) on `stream` (kCuda) or the emulator (kEmu).
template <Target T>
cudaError_t launch_unpermute_backward(const UnpermuteBackwardParams& params, cudaStream_t stream);

}  // namespace moe_ext
