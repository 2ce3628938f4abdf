// Host-side interface of the router kernels: params and launchers (torch-free; shared by the
// binding and the nvcc / emulator instantiations).
#pragma once

#include "../common/dtype.h"
#include "../common/launcher.h"
#include "../common/portable.h"

#include <cstdint>

namespace moe_ext {

using RouteDtype = FloatDtype;  // float32, bfloat16 or float16 (can_implement)

// The score function s(logit): softmax over the row, sigmoid, or sqrt(softplus) (DeepSeek-V4;
// softplus with torch's threshold 20: softplus(x) = x for x > 20).
enum class RouteScore : int32_t { kSoftmax, kSigmoid, kSqrtSoftplus };

struct RouteParams {
  const void* logits;  // [T, E], inner dim contiguous, row stride `row_stride` elements
  RouteDtype dtype;
  int64_t row_stride;
  const float* bias;   // [E] fp32 selection bias, or nullptr
  float* weights;      // [T, k] fp32 out
  int32_t* ids;        // [T, k] int32 out
  int64_t tokens;      // T
  int32_t experts;     // E (1..kMaxRouteExperts)
  int32_t top_k;       // 1..E
  int32_t num_groups;  // 1 = no group-limited routing
  int32_t topk_groups;
  RouteScore score;
  bool renormalize;
  float scaling;
  // Aux-loss statistics (route_with_stats), or nullptr: per-expert assignment counts [E]
  // (integer atomics: exact and order-independent), per-block partial sums of the scores
  // [gridDim.x, E] (summed in a fixed order by launch_route, so deterministic) and their mean.
  int32_t* counts;
  float* prob_partial;
  float* mean_prob;
};

struct RouteBackwardParams {
  const void* logits;  // [T, E] as in the forward (scores are recomputed)
  RouteDtype dtype;
  int64_t row_stride;
  const int32_t* ids;           // [T, k]
  const float* grad_weights;    // [T, k] fp32, contiguous
  const float* grad_mean_prob;  // [E] d(mean_prob) of route_with_stats, or nullptr
  void* grad_logits;            // [T, E] contiguous, logits' dtype
  int64_t tokens;
  int32_t experts, top_k;
  RouteScore score;
  bool renormalize;
  float scaling;
};

// route_weights: the weights of given experts (DeepSeek-V4 hash layers: ids = tid2eid[input]).
struct RouteWeightsParams {
  const void* logits;  // [T, E] as in RouteParams
  RouteDtype dtype;
  int64_t row_stride;
  const int32_t* ids;  // [T, k] contiguous; an id outside [0, E) gets weight 0 (not summed)
  float* weights;      // [T, k] fp32 out, contiguous
  int64_t tokens;
  int32_t experts, top_k;
  RouteScore score;
  bool renormalize;
  float scaling;
};

// route's renormalisation w / (sum(w) + kRenormEps): reference.RENORM_EPS, for every backend
// (the kernels use it rounded to fp32).
constexpr double kRenormEps = 1e-20;

constexpr int kMaxRouteExperts = 1024;  // 32 lanes x 32 register-resident scores

constexpr int kRouteWarpsPerBlock = 4;  // one token per warp
constexpr int64_t kRouteMaxStatsBlocks = 1024;

// Grid of the route_with_stats launch = rows of RouteParams::prob_partial the caller provides.
inline int64_t route_stats_blocks(int64_t tokens) {
  const int64_t blocks = ceil_div(tokens, int64_t{kRouteWarpsPerBlock});
  return blocks < 1 ? 1 : blocks < kRouteMaxStatsBlocks ? blocks : kRouteMaxStatsBlocks;
}

// The part of can_implement the forward and the backward share.
inline const char* route_experts_can_implement(int32_t experts, RouteDtype dtype) {
  if (experts < 1 || experts > kMaxRouteExperts)
    return "the device router takes 1 to kMaxRouteExperts (1024) experts";
  if (dtype != RouteDtype::kFloat32 && dtype != RouteDtype::kBFloat16 &&
      dtype != RouteDtype::kFloat16)
    return "logits must be float32, bfloat16 or float16";
  return nullptr;
}

inline const char* can_implement(const RouteParams& p) {
  if (p.num_groups < 1 || p.experts % p.num_groups != 0 || p.topk_groups < 1 ||
      p.topk_groups > p.num_groups)
    return "num_groups must divide E and topk_groups be in [1, num_groups]";
  if (p.top_k < 1 || p.top_k > p.experts) return "top_k must be in [1, E]";
  return route_experts_can_implement(p.experts, p.dtype);
}
inline const char* can_implement(const RouteBackwardParams& p) {
  return route_experts_can_implement(p.experts, p.dtype);
}
inline const char* can_implement(const RouteWeightsParams& p) {
  if (p.top_k < 1) return "ids must have at least one column";
  return route_experts_can_implement(p.experts, p.dtype);
}

// Top-k routing and its backward (route.cuh) on `stream` (kCuda) or the emulator (kEmu).
template <Target T>
cudaError_t launch_route(const RouteParams& p, cudaStream_t stream);
template <Target T>
cudaError_t launch_route_backward(const RouteBackwardParams& p, cudaStream_t stream);
template <Target T>
cudaError_t launch_route_weights(const RouteWeightsParams& p, cudaStream_t stream);

}  // namespace moe_ext
