// Binding of route_weights (DeepSeek-V4 hash layers: the experts of each token are given,
// ids = tid2eid[input_ids]; the router only weights them): checks, then the native CPU op or
// RouteWeightsParams and route_weights_kernel (kernels/route.cuh) on the device target.
#include <string>

#include "../cpu/cpu_ops.h"
#include "../kernels/route.h"
#include "backend.h"
#include "ops.h"

namespace moe_ext {

template <Target T>
at::Tensor route_weights(const at::Tensor& logits, const at::Tensor& ids_in,
                         c10::string_view score_func, bool renormalize, double scaling_factor) {
  const CheckScope<T> checks;
  const char* op = "route_weights";
  check_dim(op, "logits", logits, 2);
  check_float(op, "logits", logits, /*allow_fp64_on_cpu=*/true);
  check_dim(op, "ids", ids_in, 2);
  MOE_CHECK(op, ids_in.scalar_type() == at::kInt || ids_in.scalar_type() == at::kLong,
            "ids must be int32 or int64, got ", describe(ids_in));
  check_same_device(op, "ids", ids_in, "logits", logits);
  const int64_t E = logits.size(1);
  MOE_CHECK(op, E >= 1, "logits must have at least one expert column, got ", describe(logits));
  MOE_CHECK(op, ids_in.size(0) == logits.size(0) && ids_in.size(1) >= 1,
            "ids must be [T=", logits.size(0), " (logits' rows), k >= 1], got ", describe(ids_in));
  MOE_CHECK(op, score_func == "softmax" || score_func == "sigmoid" || score_func == "sqrtsoftplus",
            "score_func must be \"softmax\", \"sigmoid\" or \"sqrtsoftplus\", got \"",
            std::string(score_func), "\"");
  if (value_checks_enabled(ids_in) && ids_in.numel() > 0) {
    const bool in_range = ((ids_in >= 0) & (ids_in < E)).all().item<bool>();
    MOE_CHECK(op, in_range, "ids must be in [0, E=", E, "), got values in [",
              ids_in.min().item<int64_t>(), ", ", ids_in.max().item<int64_t>(), "]");
  }
  if constexpr (T == Target::kCpu) {
    return route_weights_cpu(logits, ids_in, score_func, renormalize, scaling_factor);
  } else {
    MOE_CHECK(op, score_func != "sqrtsoftplus",
              "score_func \"sqrtsoftplus\" is not in the device kernel yet");
    RouteWeightsParams p{};
    switch (logits.scalar_type()) {
      case at::kFloat: p.dtype = RouteDtype::kFloat32; break;
      case at::kBFloat16: p.dtype = RouteDtype::kBFloat16; break;
      case at::kHalf: p.dtype = RouteDtype::kFloat16; break;
      default:
        MOE_CHECK(op, false,
                  "logits must be float32, bfloat16 or float16 for the device kernels, got ",
                  describe(logits));
    }
    MOE_CHECK(op, E <= kMaxRouteExperts, "the device router supports up to ", kMaxRouteExperts,
              " experts, got logits ", describe(logits));
    const auto x = logits.stride(1) == 1 ? logits : logits.contiguous();
    const auto ids = ids_in.to(at::kInt).contiguous();
    auto weights = at::empty(ids.sizes(), logits.options().dtype(at::kFloat));
    p.logits = x.const_data_ptr();
    p.row_stride = x.stride(0);
    p.ids = ids.const_data_ptr<int32_t>();
    p.weights = weights.data_ptr<float>();
    p.tokens = logits.size(0);
    p.experts = static_cast<int32_t>(E);
    p.top_k = static_cast<int32_t>(ids.size(1));
    p.softmax = score_func == "softmax";
    p.renormalize = renormalize;
    p.scaling = static_cast<float>(scaling_factor);
    launch_on<T>(op, &launch_route_weights<T>, p,
                 {{"logits", x, false}, {"ids", ids, false}, {"weights", weights, true}});
    return weights;
  }
}

MOE_EXT_INSTANTIATE(route_weights)

}  // namespace moe_ext
