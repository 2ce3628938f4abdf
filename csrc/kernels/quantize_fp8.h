// Host-side interface of the per-token-group FP8 quantization kernel (quantize_fp8.cuh): a params
// struct and its launchers. Torch-free.
#pragma once

#include <cstdint>

#include "../common/dtype.h"
#include "../common/launcher.h"
#include "grouped_gemm/grouped_gemm.h"  // GemmActivation

namespace moe_ext {

struct QuantizeFp8Params {
  const void* x;         // [M, K], inner dim contiguous, row stride x_row_stride elements
  uint8_t* x_q;          // [M, K] float8_e4m3fn bits, contiguous
  float* scale;          // [M, groups] contiguous, groups = ceil(K / group_size)
  int64_t rows, cols;    // M, K
  int64_t x_row_stride;  // in elements
  int32_t group_size;    // >= 1
  FloatDtype dtype;      // of x: float32, bfloat16 or float16
  bool ue8m0;            // scales rounded up to powers of two
  // moe_mlp_fp8's second-GEMM input: the value quantized is act(x) in fp32 (kNone: x itself),
  // with `gated` act(x[:, k]) * x[:, K + k] of an x of 2K columns (HF gate_up order).
  GemmActivation act = GemmActivation::kNone;
  bool gated = false;
};

inline const char* can_implement(const QuantizeFp8Params& p) {
  return p.group_size >= 1 ? nullptr : "group_size must be >= 1";
}

// Quantize on `stream` (kCuda) or on the CPU SIMT emulator (kEmu): see common/launcher.h.
template <Target T>
cudaError_t launch_quantize_fp8(const QuantizeFp8Params& params, cudaStream_t stream);

}  // namespace moe_ext
