// CUDA backend entry points (torch.ops.moe_ext.* on CUDA tensors): the shared device bindings
// launched on the current stream.
#include "cuda_launch.h"
#include "ops.h"
#include "permute_device.h"
#include "route_device.h"

namespace moe_ext {

at::Tensor permute_cuda(const at::Tensor& x, const at::Tensor& order, const at::Tensor& slot,
                        int64_t top_k) {
  return permute_device(x, order, slot, top_k, cuda_launcher(x, &cuda::launch_permute));
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> sort_tokens_cuda(
    const at::Tensor& ids, int64_t num_experts, std::optional<int64_t> capacity) {
  return sort_tokens_device(ids, num_experts, capacity, cuda_launcher(ids, &cuda::launch_sort_tokens));
}

void sort_tokens_into_cuda(const at::Tensor& ids, int64_t num_experts,
                          std::optional<int64_t> capacity, const at::Tensor& order,
                          const at::Tensor& slot, const at::Tensor& offsets,
                          const at::Tensor& workspace) {
  sort_tokens_into_device(ids, num_experts, capacity, order, slot, offsets, workspace, cuda_launcher(ids, &cuda::launch_sort_tokens));
}

at::Tensor unpermute_cuda(const at::Tensor& yp, const at::Tensor& order, const at::Tensor& slot,
                         const at::Tensor& weights) {
  return unpermute_device(yp, order, slot, weights, cuda_launcher(yp, &cuda::launch_unpermute));
}

std::tuple<at::Tensor, at::Tensor> route_cuda(const at::Tensor& logits, int64_t top_k,
                                             c10::string_view score_func, bool renormalize,
                                             const std::optional<at::Tensor>& correction_bias,
                                             int64_t num_groups, int64_t topk_groups,
                                             double scaling_factor) {
  auto [weights, ids, counts, mean_prob] =
      route_device(logits, top_k, score_func, renormalize, correction_bias, num_groups,
                   topk_groups, scaling_factor, /*stats=*/false, cuda_launcher(logits, &cuda::launch_route));
  return {weights, ids};
}

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor> route_with_stats_cuda(
    const at::Tensor& logits, int64_t top_k, c10::string_view score_func, bool renormalize,
    const std::optional<at::Tensor>& correction_bias, int64_t num_groups, int64_t topk_groups,
    double scaling_factor) {
  return route_device(logits, top_k, score_func, renormalize, correction_bias, num_groups,
                      topk_groups, scaling_factor, /*stats=*/true, cuda_launcher(logits, &cuda::launch_route));
}

at::Tensor route_backward_cuda(const at::Tensor& grad_weights, const at::Tensor& logits,
                               const at::Tensor& ids, c10::string_view score_func,
                               bool renormalize, double scaling_factor,
                               const std::optional<at::Tensor>& grad_mean_prob) {
  return route_backward_device(grad_weights, logits, ids, score_func, renormalize, scaling_factor,
                               grad_mean_prob, cuda_launcher(logits, &cuda::launch_route_backward));
}

}  // namespace moe_ext
