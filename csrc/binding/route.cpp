// Bindings of route, route_with_stats, route_backward (router top-k and its gradient) and
// route_weights (the weights of given experts): checks,
// then the native CPU ops or tensors -> RouteParams and the kernels (kernels/route.cuh) on the
// device target.
#include "../cpu/cpu_ops.h"
#include "../kernels/route.h"
#include "backend.h"
#include "ops.h"

namespace moe_ext {
namespace {

RouteDtype route_dtype(const char* op, const at::Tensor& logits) {
  switch (logits.scalar_type()) {
    case at::kFloat: return RouteDtype::kFloat32;
    case at::kBFloat16: return RouteDtype::kBFloat16;
    case at::kHalf: return RouteDtype::kFloat16;
    default:
      MOE_CHECK(op, false,
                "logits must be float32, bfloat16 or float16 for the device kernels, "
                "got ",
                describe(logits));
  }
  return RouteDtype::kFloat32;
}

void check_route_device_limits(const char* op, const at::Tensor& logits) {
  MOE_CHECK(op, logits.size(1) <= kMaxRouteExperts, "the device router supports up to ",
            kMaxRouteExperts, " experts, got logits ", describe(logits));
}

void check_route_values(const char* op, const at::Tensor& logits,
                        const std::optional<at::Tensor>& correction_bias) {
  if (!value_checks_enabled(logits)) return;
  if (correction_bias) {
    MOE_CHECK(op, !correction_bias->isnan().any().item<bool>(), "correction_bias contains NaN");
  }
  // NaN logits: the CPU router raises as it meets one (naming the token), route_device below
  // checks them for the device kernels
}

// The device forward; with `stats`, also the per-expert assignment counts [E] int32 and mean
// scores [E] fp32 of route_with_stats (else those two outputs are undefined tensors).
template <Target T>
std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor> route_device(
    const char* op, const at::Tensor& logits, int64_t top_k, c10::string_view score_func,
    bool renormalize, const std::optional<at::Tensor>& correction_bias, int64_t num_groups,
    int64_t topk_groups, double scaling_factor, bool stats) {
  if (value_checks_enabled(logits)) {  // MOE_EXT_DEBUG=1: NaN raises as on CPU
    MOE_CHECK(op, !logits.isnan().any().item<bool>(), "logits contain NaN");
  }
  RouteParams p{};
  p.dtype = route_dtype(op, logits);
  check_route_device_limits(op, logits);
  const int64_t tokens = logits.size(0), E = logits.size(1);
  auto x = logits.stride(1) == 1 ? logits : logits.contiguous();
  at::Tensor bias, counts, partial, mean_prob;
  if (correction_bias) bias = correction_bias->to(at::kFloat).contiguous();
  auto weights = at::empty({tokens, top_k}, logits.options().dtype(at::kFloat));
  auto ids = at::empty({tokens, top_k}, logits.options().dtype(at::kInt));
  if (stats) {
    counts = at::zeros({E}, logits.options().dtype(at::kInt));
    partial = at::empty({route_stats_blocks(tokens), E}, logits.options().dtype(at::kFloat));
    // T = 0: the mean of no scores is 0 (not NaN), and no kernel runs
    mean_prob = at::zeros({E}, logits.options().dtype(at::kFloat));
    p.counts = counts.data_ptr<int32_t>();
    p.prob_partial = partial.data_ptr<float>();
    p.mean_prob = mean_prob.data_ptr<float>();
  }
  p.logits = x.const_data_ptr();
  p.row_stride = x.stride(0);
  p.bias = bias.defined() ? bias.const_data_ptr<float>() : nullptr;
  p.weights = weights.data_ptr<float>();
  p.ids = ids.data_ptr<int32_t>();
  p.tokens = tokens;
  p.experts = static_cast<int32_t>(E);
  p.top_k = static_cast<int32_t>(top_k);
  p.num_groups = static_cast<int32_t>(num_groups);
  p.topk_groups = static_cast<int32_t>(topk_groups);
  p.score = parse_route_score(score_func);
  p.renormalize = renormalize;
  p.scaling = static_cast<float>(scaling_factor);
  launch_on<T>(op, &launch_route<T>, p,
               {{"logits", x, false},
                {"correction_bias", bias, false},
                {"weights", weights, true},
                {"ids", ids, true},
                {"counts", counts, true},
                {"prob_partial", partial, true},
                {"mean_prob", mean_prob, true}});
  return {weights, ids, counts, mean_prob};
}

}  // namespace

template <Target T>
std::tuple<at::Tensor, at::Tensor> route(const at::Tensor& logits, int64_t top_k,
                                         c10::string_view score_func, bool renormalize,
                                         const std::optional<at::Tensor>& correction_bias,
                                         int64_t num_groups, int64_t topk_groups,
                                         double scaling_factor) {
  const CheckScope<T> checks;
  check_route_args(logits, top_k, score_func, correction_bias, num_groups, topk_groups);
  check_route_values("route", logits, correction_bias);
  if constexpr (T == Target::kCpu) {
    return route_cpu(logits, top_k, score_func, renormalize, correction_bias, num_groups,
                     topk_groups, scaling_factor);
  } else {
    auto [weights, ids, counts, mean_prob] =
        route_device<T>("route", logits, top_k, score_func, renormalize, correction_bias,
                        num_groups, topk_groups, scaling_factor, /*stats=*/false);
    return {weights, ids};
  }
}

template <Target T>
std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor> route_with_stats(
    const at::Tensor& logits, int64_t top_k, c10::string_view score_func, bool renormalize,
    const std::optional<at::Tensor>& correction_bias, int64_t num_groups, int64_t topk_groups,
    double scaling_factor) {
  const CheckScope<T> checks;
  check_route_args(logits, top_k, score_func, correction_bias, num_groups, topk_groups);
  check_route_values("route_with_stats", logits, correction_bias);
  if constexpr (T == Target::kCpu) {
    return route_with_stats_cpu(logits, top_k, score_func, renormalize, correction_bias, num_groups,
                                topk_groups, scaling_factor);
  } else {
    return route_device<T>("route_with_stats", logits, top_k, score_func, renormalize,
                           correction_bias, num_groups, topk_groups, scaling_factor,
                           /*stats=*/true);
  }
}

template <Target T>
at::Tensor route_backward(const at::Tensor& grad_weights, const at::Tensor& logits,
                          const at::Tensor& ids, c10::string_view score_func, bool renormalize,
                          double scaling_factor, const std::optional<at::Tensor>& grad_mean_prob) {
  const char* op = "route_backward";
  check_dim(op, "logits", logits, 2);
  check_dim(op, "ids", ids, 2);
  check_int32(op, "ids", ids);
  check_route_score_func(op, score_func);
  MOE_CHECK(op, grad_weights.sizes() == ids.sizes() && ids.size(0) == logits.size(0),
            "grad_weights and ids must be [T, top_k] with T = logits.size(0), got ",
            describe(grad_weights), " and ", describe(ids));
  if (grad_mean_prob) {
    MOE_CHECK(op, grad_mean_prob->numel() == logits.size(1),
              "grad_mean_prob must have E = ", logits.size(1), " elements, got ",
              describe(*grad_mean_prob));
  }
  if constexpr (T == Target::kCpu) {
    return route_backward_cpu(grad_weights, logits, ids, score_func, renormalize, scaling_factor,
                              grad_mean_prob);
  } else {
    RouteBackwardParams p{};
    p.dtype = route_dtype(op, logits);
    check_route_device_limits(op, logits);
    auto x = logits.stride(1) == 1 ? logits : logits.contiguous();
    auto gw = grad_weights.to(at::kFloat).contiguous();
    auto ids_c = ids.contiguous();
    at::Tensor gmp;
    if (grad_mean_prob) gmp = grad_mean_prob->to(at::kFloat).contiguous();
    auto grad = at::empty(logits.sizes(), logits.options());
    p.logits = x.const_data_ptr();
    p.row_stride = x.stride(0);
    p.ids = ids_c.const_data_ptr<int32_t>();
    p.grad_weights = gw.const_data_ptr<float>();
    p.grad_mean_prob = gmp.defined() ? gmp.const_data_ptr<float>() : nullptr;
    p.grad_logits = grad.data_ptr();
    p.tokens = logits.size(0);
    p.experts = static_cast<int32_t>(logits.size(1));
    p.top_k = static_cast<int32_t>(ids.size(1));
    p.score = parse_route_score(score_func);
    p.renormalize = renormalize;
    p.scaling = static_cast<float>(scaling_factor);
    launch_on<T>(op, &launch_route_backward<T>, p,
                 {{"logits", x, false},
                  {"ids", ids_c, false},
                  {"grad_weights", gw, false},
                  {"grad_mean_prob", gmp, false},
                  {"grad_logits", grad, true}});
    return grad;
  }
}

// route_weights (DeepSeek-V4 hash layers: the experts of each token are given, ids =
// tid2eid[input_ids]; the router only weights them): route_weights_kernel on the device.
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
  check_route_score_func(op, score_func);
  if (value_checks_enabled(ids_in) && ids_in.numel() > 0) {
    const bool in_range = ((ids_in >= 0) & (ids_in < E)).all().item<bool>();
    MOE_CHECK(op, in_range, "ids must be in [0, E=", E, "), got values in [",
              ids_in.min().item<int64_t>(), ", ", ids_in.max().item<int64_t>(), "]");
  }
  if constexpr (T == Target::kCpu) {
    return route_weights_cpu(logits, ids_in, score_func, renormalize, scaling_factor);
  } else {
    RouteWeightsParams p{};
    p.dtype = route_dtype(op, logits);
    check_route_device_limits(op, logits);
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
    p.score = parse_route_score(score_func);
    p.renormalize = renormalize;
    p.scaling = static_cast<float>(scaling_factor);
    launch_on<T>(op, &launch_route_weights<T>, p,
                 {{"logits", x, false}, {"ids", ids, false}, {"weights", weights, true}});
    return weights;
  }
}

MOE_EXT_INSTANTIATE(route)
MOE_EXT_INSTANTIATE(route_with_stats)
MOE_EXT_INSTANTIATE(route_backward)
MOE_EXT_INSTANTIATE(route_weights)

}  // namespace moe_ext
