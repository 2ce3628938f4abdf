// The op bindings, one template per op on the target it runs on (backend.h): `route<Target::kCpu>`
// is the native CPU op, `route<Target::kCuda>` the CUDA kernel, `route<Target::kEmu>` the same
// kernel on the SIMT emulator. Each is defined in csrc/binding/<op>.cpp, instantiated there for the
// targets this build has (MOE_EXT_INSTANTIATE), and registered in registration.cpp. Signatures
// follow the schemas (DESIGN.md "Op contract") argument for argument.
#pragma once

#include <ATen/ATen.h>

#include <optional>
#include <tuple>

#include "../common/launcher.h"
#include "../cpu/mlp_activation.h"  // MlpActivation

namespace moe_ext {

template <Target T>
std::tuple<at::Tensor, at::Tensor> route(const at::Tensor& logits, int64_t top_k,
                                         c10::string_view score_func, bool renormalize,
                                         const std::optional<at::Tensor>& correction_bias,
                                         int64_t num_groups, int64_t topk_groups,
                                         double scaling_factor);
template <Target T>
std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor> route_with_stats(
    const at::Tensor& logits, int64_t top_k, c10::string_view score_func, bool renormalize,
    const std::optional<at::Tensor>& correction_bias, int64_t num_groups, int64_t topk_groups,
    double scaling_factor);
template <Target T>
at::Tensor route_backward(const at::Tensor& grad_weights, const at::Tensor& logits,
                          const at::Tensor& ids, c10::string_view score_func, bool renormalize,
                          double scaling_factor, const std::optional<at::Tensor>& grad_mean_prob);

template <Target T>
std::tuple<at::Tensor, at::Tensor, at::Tensor> sort_tokens(const at::Tensor& ids,
                                                           int64_t num_experts,
                                                           std::optional<int64_t> capacity);
// Device targets only (graph capture into caller-provided buffers).
template <Target T>
void sort_tokens_into(const at::Tensor& ids, int64_t num_experts, std::optional<int64_t> capacity,
                      const at::Tensor& order, const at::Tensor& slot, const at::Tensor& offsets,
                      const at::Tensor& workspace);

template <Target T>
at::Tensor permute(const at::Tensor& x, const at::Tensor& order, const at::Tensor& slot,
                   int64_t top_k);
template <Target T>
at::Tensor unpermute(const at::Tensor& yp, const at::Tensor& order, const at::Tensor& slot,
                     const at::Tensor& weights);
template <Target T>
std::tuple<at::Tensor, at::Tensor> unpermute_backward(const at::Tensor& grad_y,
                                                      const at::Tensor& yp, const at::Tensor& order,
                                                      const at::Tensor& slot,
                                                      const at::Tensor& weights);

template <Target T>
at::Tensor grouped_mm(const at::Tensor& a, const at::Tensor& b,
                      const std::optional<at::Tensor>& offs, const std::optional<at::Tensor>& bias,
                      std::optional<at::ScalarType> out_dtype);

template <Target T>
at::Tensor route_weights(const at::Tensor& logits, const at::Tensor& ids,
                         c10::string_view score_func, bool renormalize, double scaling_factor);

template <Target T>
at::Tensor moe_mlp(const at::Tensor& x, const at::Tensor& w1, const at::Tensor& w2,
                   const at::Tensor& weights, const at::Tensor& order, const at::Tensor& slot,
                   const at::Tensor& offsets, c10::string_view activation,
                   std::optional<double> activation_limit);

template <Target T>
std::tuple<at::Tensor, at::Tensor> moe_mlp_save_h(const at::Tensor& x, const at::Tensor& w1,
                                                  const at::Tensor& w2, const at::Tensor& weights,
                                                  const at::Tensor& order, const at::Tensor& slot,
                                                  const at::Tensor& offsets,
                                                  c10::string_view activation,
                                                  std::optional<double> activation_limit);

template <Target T>
std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor> moe_mlp_backward(
    const at::Tensor& grad_y, const at::Tensor& x, const at::Tensor& w1, const at::Tensor& w2,
    const at::Tensor& weights, const at::Tensor& order, const at::Tensor& slot,
    const at::Tensor& offsets, c10::string_view activation, std::optional<double> activation_limit,
    const std::optional<at::Tensor>& h);

template <Target T>
std::tuple<at::Tensor, at::Tensor> quantize_fp8(const at::Tensor& x, int64_t group_size,
                                                c10::string_view scale_format);

template <Target T>
at::Tensor grouped_mm_fp8(const at::Tensor& a, const at::Tensor& a_scale, const at::Tensor& b,
                          const at::Tensor& b_scale, const std::optional<at::Tensor>& offs,
                          at::ScalarType out_dtype);

// grouped_mm's ragged-K form out[g] = a[:, K_g] @ x[order[K_g] / top_k] with b's rows gathered
// in the kernel's loads (moe_mlp's dW1 = dhᵀ x[order / k] without the permuted copy of x); a is
// [M, N] with N = len(order), x [T, H] row-major, out [G, M, H]. Device targets, bf16/fp16.
// Internal; the arguments are the caller's to check.
template <Target T>
at::Tensor grouped_mm_gathered_b(const at::Tensor& a, const at::Tensor& x,
                                 const at::Tensor& offsets, const at::Tensor& order, int64_t top_k);

// grouped_mm_fp8 of the ragged-M form with a's rows read through sort_tokens' order (row r is
// a[order[r] / top_k], as permute gathers): no gathered copy on device targets (the kernel's
// loads gather). Internal (moe_mlp_fp8); the arguments are the caller's to check.
template <Target T>
at::Tensor grouped_mm_fp8_gathered(const at::Tensor& a, const at::Tensor& a_scale,
                                   const at::Tensor& b, const at::Tensor& b_scale,
                                   const at::Tensor& offsets, const at::Tensor& order,
                                   int64_t top_k, at::ScalarType out_dtype);

// quantize_fp8 (group 128, float scales) of act(h) -- gated: act(h[:, :I]) * h[:, I:] -- computed
// in fp32 inside the quantization kernel: moe_mlp_fp8's second-GEMM input in one pass over h.
// Device targets only; internal.
template <Target T>
std::tuple<at::Tensor, at::Tensor> quantize_fp8_activated(const at::Tensor& h,
                                                          const MlpActivation& act);

template <Target T>
at::Tensor moe_mlp_fp8(const at::Tensor& x, const at::Tensor& w1, const at::Tensor& w1_scale,
                       const at::Tensor& w2, const at::Tensor& w2_scale, const at::Tensor& weights,
                       const at::Tensor& order, const at::Tensor& slot, const at::Tensor& offsets,
                       c10::string_view activation);
template <Target T>
std::tuple<at::Tensor, at::Tensor, at::Tensor> moe_mlp_fp8_save(
    const at::Tensor& x, const at::Tensor& w1, const at::Tensor& w1_scale, const at::Tensor& w2,
    const at::Tensor& w2_scale, const at::Tensor& weights, const at::Tensor& order,
    const at::Tensor& slot, const at::Tensor& offsets, c10::string_view activation);

// Explicit instantiations of a binding for the targets this build has, at the end of its .cpp:
// MOE_EXT_INSTANTIATE(op) for kCpu and the device targets, MOE_EXT_INSTANTIATE_DEVICE(op) for the
// device targets only.
#define MOE_EXT_INSTANTIATE_FOR(op, target) template decltype(op<target>) op<target>;
#ifdef MOE_EXT_WITH_CUDA
#define MOE_EXT_INSTANTIATE_CUDA(op) MOE_EXT_INSTANTIATE_FOR(op, Target::kCuda)
#else
#define MOE_EXT_INSTANTIATE_CUDA(op)
#endif
#ifdef MOE_EXT_WITH_EMU
#define MOE_EXT_INSTANTIATE_EMU(op) MOE_EXT_INSTANTIATE_FOR(op, Target::kEmu)
#else
#define MOE_EXT_INSTANTIATE_EMU(op)
#endif
#define MOE_EXT_INSTANTIATE_DEVICE(op) MOE_EXT_INSTANTIATE_CUDA(op) MOE_EXT_INSTANTIATE_EMU(op)
#define MOE_EXT_INSTANTIATE(op) \
  MOE_EXT_INSTANTIATE_FOR(op, Target::kCpu) MOE_EXT_INSTANTIATE_DEVICE(op)

}  // namespace moe_ext
