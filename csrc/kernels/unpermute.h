// Host-side interface of the unpermute (weighted combine) kernel: params and launchers.
#pragma once

#include "../common/dtype.h"
#include "../common/launcher.h"

#include <cstdint>

namespace moe_ext {

struct UnpermuteParams {
  const void* yp;       // [N, H] expert outputs, inner dim contiguous, row stride yp_row_stride
  const int32_t* slot;  // [N] = [T, k] sorted row per assignment, -1 when dropped
  const void* weights;  // [T, k] contiguous, fp32 (fp64 for fp64 yp): the binding converts
  void* y;              // [T, H] contiguous, yp's dtype
  FloatDtype dtype;
  int64_t tokens, hidden, yp_row_stride, num_rows;
  int32_t top_k;
};

inline const char* can_implement(const UnpermuteParams& p) {
  if (p.dtype != FloatDtype::kFloat32 && p.dtype != FloatDtype::kBFloat16 &&
      p.dtype != FloatDtype::kFloat16 && p.dtype != FloatDtype::kFloat64)
    return "yp's dtype must be float32, bfloat16, float16 or float64";
  return nullptr;
}

// The weighted combine (unpermute.cuh) on `stream` (kCuda) or the emulator (kEmu).
template <Target T>
cudaError_t launch_unpermute(const UnpermuteParams& params, cudaStream_t stream);

}  // namespace moe_ext
