// Emulator backend entry points (torch.ops.moe_ext_emu.*): the shared device bindings, run on the
// CPU SIMT emulator with every tensor registered as a bounds-checked buffer.
#include "emu_launch.h"
#include "ops.h"
#include "permute_device.h"
#include "route_device.h"

namespace moe_ext {

at::Tensor permute_emu(const at::Tensor& x, const at::Tensor& order, const at::Tensor& slot,
                       int64_t top_k) {
  return permute_device(x, order, slot, top_k, emu_launcher(&emu::launch_permute));
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> sort_tokens_emu(
    const at::Tensor& ids, int64_t num_experts, std::optional<int64_t> capacity) {
  return sort_tokens_device(ids, num_experts, capacity, emu_launcher(&emu::launch_sort_tokens));
}

void sort_tokens_into_emu(const at::Tensor& ids, int64_t num_experts,
                          std::optional<int64_t> capacity, const at::Tensor& order,
                          const at::Tensor& slot, const at::Tensor& offsets,
                          const at::Tensor& workspace) {
  sort_tokens_into_device(ids, num_experts, capacity, order, slot, offsets, workspace, emu_launcher(&emu::launch_sort_tokens));
}

at::Tensor unpermute_emu(const at::Tensor& yp, const at::Tensor& order, const at::Tensor& slot,
                         const at::Tensor& weights) {
  return unpermute_device(yp, order, slot, weights, emu_launcher(&emu::launch_unpermute));
}

std::tuple<at::Tensor, at::Tensor> route_emu(const at::Tensor& logits, int64_t top_k,
                                             c10::string_view score_func, bool renormalize,
                                             const std::optional<at::Tensor>& correction_bias,
                                             int64_t num_groups, int64_t topk_groups,
                                             double scaling_factor) {
  auto [weights, ids, counts, mean_prob] =
      route_device(logits, top_k, score_func, renormalize, correction_bias, num_groups,
                   topk_groups, scaling_factor, /*stats=*/false, emu_launcher(&emu::launch_route));
  return {weights, ids};
}

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor> route_with_stats_emu(
    const at::Tensor& logits, int64_t top_k, c10::string_view score_func, bool renormalize,
    const std::optional<at::Tensor>& correction_bias, int64_t num_groups, int64_t topk_groups,
    double scaling_factor) {
  return route_device(logits, top_k, score_func, renormalize, correction_bias, num_groups,
                      topk_groups, scaling_factor, /*stats=*/true, emu_launcher(&emu::launch_route));
}

at::Tensor route_backward_emu(const at::Tensor& grad_weights, const at::Tensor& logits,
                               const at::Tensor& ids, c10::string_view score_func,
                               bool renormalize, double scaling_factor,
                               const std::optional<at::Tensor>& grad_mean_prob) {
  return route_backward_device(grad_weights, logits, ids, score_func, renormalize, scaling_factor,
                               grad_mean_prob, emu_launcher(&emu::launch_route_backward));
}

}  // namespace moe_ext
