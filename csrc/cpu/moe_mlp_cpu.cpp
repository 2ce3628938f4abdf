// Native CPU moe_mlp: the composite path (moe_mlp.h) over the CPU ops -- permute, grouped_mm
// (one at::mm per expert, in fp32 where the CPU has no native bf16 GEMM), the activation in fp32,
// grouped_mm, and the weighted unpermute.
#include "../binding/moe_mlp.h"
#include "../binding/ops.h"

namespace moe_ext {

at::Tensor moe_mlp_cpu(const at::Tensor& x, const at::Tensor& w1, const at::Tensor& w2,
                       const at::Tensor& weights, const at::Tensor& order, const at::Tensor& slot,
                       const at::Tensor& offsets, c10::string_view activation) {
  const MlpActivation act = parse_mlp_activation(activation);
  check_moe_mlp_args(x, w1, w2, weights, order, slot, offsets, act);
  MlpOps ops;
  ops.permute = &permute_cpu;
  ops.unpermute = &unpermute_cpu;
  ops.grouped_mm = [](const at::Tensor& a, const at::Tensor& b, const at::Tensor& offs) {
    return grouped_mm_cpu(a, b, offs, std::nullopt, std::nullopt);
  };
  return moe_mlp_composite(x, w1, w2, weights, order, slot, offsets, act, ops);
}

}  // namespace moe_ext
