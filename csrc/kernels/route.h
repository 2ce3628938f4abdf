// Host-side interface of the router kernels: params and launchers (torch-free; shared by the
// binding and the nvcc / emulator instantiations).
#pragma once

#include <cuda_runtime_api.h>

#include <cstdint>

namespace moe_ext {

enum class RouteDtype : int32_t { kFloat32, kBFloat16, kFloat16 };

struct RouteParams {
  const void* logits;      // [T, E], inner dim contiguous, row stride `row_stride` elements
  RouteDtype dtype;
  int64_t row_stride;
  const float* bias;       // [E] fp32 selection bias, or nullptr
  float* weights;          // [T, k] fp32 out
  int32_t* ids;            // [T, k] int32 out
  int64_t tokens;          // T
  int32_t experts;         // E (1..kMaxRouteExperts)
  int32_t top_k;           // 1..E
  int32_t num_groups;      // 1 = no group-limited routing
  int32_t topk_groups;
  bool softmax;            // else sigmoid
  bool renormalize;
  float scaling;
};

struct RouteBackwardParams {
  const void* logits;      // [T, E] as in the forward (scores are recomputed)
  RouteDtype dtype;
  int64_t row_stride;
  const int32_t* ids;      // [T, k]
  const float* grad_weights;  // [T, k] fp32, contiguous
  void* grad_logits;       // [T, E] contiguous, logits' dtype
  int64_t tokens;
  int32_t experts, top_k;
  bool softmax, renormalize;
  float scaling;
};

constexpr int kMaxRouteExperts = 1024;  // 32 lanes x 32 register-resident scores

namespace cuda {
cudaError_t launch_route(const RouteParams& p, cudaStream_t stream);
cudaError_t launch_route_backward(const RouteBackwardParams& p, cudaStream_t stream);
}  // namespace cuda
namespace emu {
cudaError_t launch_route(const RouteParams& p, cudaStream_t stream);
cudaError_t launch_route_backward(const RouteBackwardParams& p, cudaStream_t stream);
}  // namespace emu

}  // namespace moe_ext
