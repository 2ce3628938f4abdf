// Host-side interface of unpermute's backward kernel (unpermute_backward.cuh). Torch-free.
#pragma once

#include <cuda_runtime_api.h>

#include <cstdint>

#include "unpermute.h"

namespace moe_ext {

struct UnpermuteBackwardParams {
  const void* grad_y;      // [T, H] contiguous, yp's dtype
  const void* yp;          // [N, H] inner dim contiguous, row stride yp_row_stride
  const int32_t* order;    // [N] flat assignment at each sorted row
  const int32_t* slot;     // [N] sorted row per assignment, -1 when dropped
  const void* weights;     // [T, k] contiguous, fp32 (fp64 for fp64 yp): the binding converts
  void* grad_yp;           // [N, H] contiguous, yp's dtype
  void* grad_weights;      // [T, k] contiguous, weights' accumulation type (fp32 / fp64)
  FloatDtype dtype;
  int64_t tokens, hidden, yp_row_stride, num_rows;
  int32_t top_k;
};

namespace cuda {
cudaError_t launch_unpermute_backward(const UnpermuteBackwardParams& p, cudaStream_t stream);
}
namespace emu {
cudaError_t launch_unpermute_backward(const UnpermuteBackwardParams& p, cudaStream_t stream);
}

}  // namespace moe_ext
