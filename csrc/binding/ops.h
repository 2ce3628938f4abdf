// Per-backend entry points of every op, as registered in registration.cpp.
#pragma once

#include <ATen/ATen.h>

#include <optional>
#include <tuple>

namespace moe_ext {

// Native CPU implementations (csrc/cpu/).
std::tuple<at::Tensor, at::Tensor> route_cpu(const at::Tensor& logits, int64_t top_k,
                                             c10::string_view score_func, bool renormalize,
                                             const std::optional<at::Tensor>& correction_bias,
                                             int64_t num_groups, int64_t topk_groups,
                                             double scaling_factor);
std::tuple<at::Tensor, at::Tensor, at::Tensor> sort_tokens_cpu(const at::Tensor& ids,
                                                               int64_t num_experts,
                                                               std::optional<int64_t> capacity);
at::Tensor permute_cpu(const at::Tensor& x, const at::Tensor& order, const at::Tensor& slot,
                       int64_t top_k);
at::Tensor unpermute_cpu(const at::Tensor& yp, const at::Tensor& order, const at::Tensor& slot,
                         const at::Tensor& weights);
// unpermute_cpu past its argument checks (callers that have made them: moe_mlp_cpu)
at::Tensor unpermute_cpu_prechecked(const at::Tensor& yp, const at::Tensor& slot,
                                    const at::Tensor& weights);
std::tuple<at::Tensor, at::Tensor> unpermute_backward_cpu(const at::Tensor& grad_y,
                                                          const at::Tensor& yp,
                                                          const at::Tensor& order,
                                                          const at::Tensor& slot,
                                                          const at::Tensor& weights);
at::Tensor moe_mlp_cpu(const at::Tensor& x, const at::Tensor& w1, const at::Tensor& w2,
                       const at::Tensor& weights, const at::Tensor& order, const at::Tensor& slot,
                       const at::Tensor& offsets, c10::string_view activation);
at::Tensor grouped_mm_cpu(const at::Tensor& a, const at::Tensor& b,
                          const std::optional<at::Tensor>& offs,
                          const std::optional<at::Tensor>& bias,
                          std::optional<at::ScalarType> out_dtype);

// The ops with device kernels (one list for the CUDA and emulator registrations).
#define MOE_EXT_FOR_EACH_DEVICE_OP(X) \
  X(route) X(route_with_stats) X(route_backward) X(sort_tokens) X(sort_tokens_into) X(permute) \
  X(unpermute) X(unpermute_backward) X(grouped_mm) X(moe_mlp)

// Device backends: the CUDA kernels (csrc/kernels/) launched on the GPU (suffix _cuda) or on
// the CPU SIMT emulator on CPU tensors (suffix _emu), through the same binding code.
#define MOE_EXT_DEVICE_OPS(suffix)                                                              \
  at::Tensor permute_##suffix(const at::Tensor& x, const at::Tensor& order,                     \
                              const at::Tensor& slot, int64_t top_k);                           \
  std::tuple<at::Tensor, at::Tensor, at::Tensor> sort_tokens_##suffix(                          \
      const at::Tensor& ids, int64_t num_experts, std::optional<int64_t> capacity);            \
  void sort_tokens_into_##suffix(const at::Tensor& ids, int64_t num_experts,                    \
                                 std::optional<int64_t> capacity, const at::Tensor& order,     \
                                 const at::Tensor& slot, const at::Tensor& offsets,             \
                                 const at::Tensor& workspace);                                  \
  at::Tensor unpermute_##suffix(const at::Tensor& yp, const at::Tensor& order,                  \
                                const at::Tensor& slot, const at::Tensor& weights);             \
  std::tuple<at::Tensor, at::Tensor> route_##suffix(                                            \
      const at::Tensor& logits, int64_t top_k, c10::string_view score_func, bool renormalize,  \
      const std::optional<at::Tensor>& correction_bias, int64_t num_groups,                     \
      int64_t topk_groups, double scaling_factor);                                              \
  std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor> route_with_stats_##suffix(       \
      const at::Tensor& logits, int64_t top_k, c10::string_view score_func, bool renormalize,  \
      const std::optional<at::Tensor>& correction_bias, int64_t num_groups,                     \
      int64_t topk_groups, double scaling_factor);                                              \
  std::tuple<at::Tensor, at::Tensor> unpermute_backward_##suffix(                              \
      const at::Tensor& grad_y, const at::Tensor& yp, const at::Tensor& order,                  \
      const at::Tensor& slot, const at::Tensor& weights);                                       \
  at::Tensor moe_mlp_##suffix(const at::Tensor& x, const at::Tensor& w1, const at::Tensor& w2,   \
                              const at::Tensor& weights, const at::Tensor& order,               \
                              const at::Tensor& slot, const at::Tensor& offsets,                \
                              c10::string_view activation);                                     \
  at::Tensor grouped_mm_##suffix(const at::Tensor& a, const at::Tensor& b,                     \
                                 const std::optional<at::Tensor>& offs,                         \
                                 const std::optional<at::Tensor>& bias,                         \
                                 std::optional<at::ScalarType> out_dtype);                     \
  at::Tensor route_backward_##suffix(const at::Tensor& grad_weights, const at::Tensor& logits, \
                                     const at::Tensor& ids, c10::string_view score_func,       \
                                     bool renormalize, double scaling_factor,                  \
                                     const std::optional<at::Tensor>& grad_mean_prob);
#ifdef MOE_EXT_WITH_CUDA
MOE_EXT_DEVICE_OPS(cuda)
#endif
#ifdef MOE_EXT_WITH_EMU
MOE_EXT_DEVICE_OPS(emu)
#endif

}  // namespace moe_ext
