// The native CPU implementations of the ops (csrc/cpu/<op>_cpu.cpp). They receive arguments the
// binding (csrc/binding/<op>.cpp) has checked -- shapes, dtypes, devices and, on CPU, values
// (ids in range, order/slot inverse, offs monotone) -- so they check nothing themselves beyond
// what only the computation sees (NaN logits, +inf softmax rows). Nothing here includes binding/.
#pragma once

#include <ATen/ATen.h>

#include <optional>
#include <tuple>

#include "../kernels/route.h"  // RouteScore
#include "mlp_activation.h"

namespace moe_ext {

std::tuple<at::Tensor, at::Tensor> route_cpu(const at::Tensor& logits, int64_t top_k,
                                             c10::string_view score_func, bool renormalize,
                                             const std::optional<at::Tensor>& correction_bias,
                                             int64_t num_groups, int64_t topk_groups,
                                             double scaling_factor);
// route, then the per-expert assignment counts [E] int32 and the mean score [E].
std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor> route_with_stats_cpu(
    const at::Tensor& logits, int64_t top_k, c10::string_view score_func, bool renormalize,
    const std::optional<at::Tensor>& correction_bias, int64_t num_groups, int64_t topk_groups,
    double scaling_factor);
at::Tensor route_backward_cpu(const at::Tensor& grad_weights, const at::Tensor& logits,
                              const at::Tensor& ids, c10::string_view score_func, bool renormalize,
                              double scaling_factor,
                              const std::optional<at::Tensor>& grad_mean_prob);

// The score function of a checked score_func string ("softmax", "sigmoid", "sqrtsoftplus"),
// for the CPU op and the device bindings alike.
RouteScore parse_route_score(c10::string_view score_func);
// The weights of given experts ids[T, k].
at::Tensor route_weights_cpu(const at::Tensor& logits, const at::Tensor& ids,
                             c10::string_view score_func, bool renormalize, double scaling_factor);

std::tuple<at::Tensor, at::Tensor, at::Tensor> sort_tokens_cpu(const at::Tensor& ids,
                                                               int64_t num_experts,
                                                               std::optional<int64_t> capacity);

at::Tensor permute_cpu(const at::Tensor& x, const at::Tensor& order, const at::Tensor& slot,
                       int64_t top_k);
at::Tensor unpermute_cpu(const at::Tensor& yp, const at::Tensor& slot, const at::Tensor& weights);
std::tuple<at::Tensor, at::Tensor> unpermute_backward_cpu(const at::Tensor& grad_y,
                                                          const at::Tensor& yp,
                                                          const at::Tensor& order,
                                                          const at::Tensor& slot,
                                                          const at::Tensor& weights);

// The four torch._grouped_mm forms, told apart by the ranks of a and b (the binding's check
// returns it).
enum class GroupedForm { k2Dx3D, k3Dx2D, k2Dx2D, k3Dx3D };
at::Tensor grouped_mm_cpu(GroupedForm form, const at::Tensor& a, const at::Tensor& b,
                          const std::optional<at::Tensor>& offs,
                          const std::optional<at::Tensor>& bias,
                          std::optional<at::ScalarType> out_dtype);

at::Tensor moe_mlp_cpu(const at::Tensor& x, const at::Tensor& w1, const at::Tensor& w2,
                       const at::Tensor& weights, const at::Tensor& order, const at::Tensor& slot,
                       const at::Tensor& offsets, const MlpActivation& act,
                       at::Tensor* h_out = nullptr);

// Per-token-group FP8 quantization (quantize_fp8_cpu.cpp): (x_q e4m3fn, scale fp32).
std::tuple<at::Tensor, at::Tensor> quantize_fp8_cpu(const at::Tensor& x, int64_t group_size,
                                                    bool ue8m0);

// Block-FP8 grouped GEMM (grouped_mm_fp8_cpu.cpp): a[M, K] (ragged by offs) or a[G, M, K]
// (offs None) times b[G, N, K]ᵀ, both e4m3 with their block scales, out in out_dtype.
at::Tensor grouped_mm_fp8_cpu(const at::Tensor& a, const at::Tensor& a_scale, const at::Tensor& b,
                              const at::Tensor& b_scale, const std::optional<at::Tensor>& offs,
                              at::ScalarType out_dtype);

// moe_mlp's backward (moe_mlp_backward_cpu.cpp): (grad_x, grad_w1, grad_w2, grad_weights); h, when
// given, is the forward's x[order // k] @ w1ᵀ in sorted row order (else recomputed).
std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor> moe_mlp_backward_cpu(
    const at::Tensor& grad_y, const at::Tensor& x, const at::Tensor& w1, const at::Tensor& w2,
    const at::Tensor& weights, const at::Tensor& order, const at::Tensor& slot,
    const at::Tensor& offsets, const MlpActivation& act, const std::optional<at::Tensor>& h);

}  // namespace moe_ext
