// Bindings of unpermute (the weighted combine back to token order) and of its backward (both
// gradients in one pass): checks, then the native CPU op or tensors -> params and the kernel
// (kernels/unpermute.cuh, kernels/unpermute_backward.cuh) on the device target.
#include "../cpu/cpu_ops.h"
#include "../kernels/unpermute.h"
#include "../kernels/unpermute_backward.h"
#include "backend.h"
#include "ops.h"

namespace moe_ext {

template <Target T>
at::Tensor unpermute(const at::Tensor& yp, const at::Tensor& order, const at::Tensor& slot,
                     const at::Tensor& weights) {
  const CheckScope<T> checks;
  check_unpermute_args(yp, order, slot, weights);
  if constexpr (T == Target::kCpu) {
    return unpermute_cpu(yp, slot, weights);
  } else {
    const int64_t tokens = weights.size(0), k = weights.size(1), H = yp.size(1);
    auto y = at::empty({tokens, H}, yp.options());
    const bool fp64 = yp.scalar_type() == at::kDouble;
    auto ypc = yp.stride(1) == 1 ? yp : yp.contiguous();
    auto w = weights.to(fp64 ? at::kDouble : at::kFloat).contiguous();
    auto slot_c = slot.contiguous();
    UnpermuteParams p{};
    p.yp = ypc.const_data_ptr();
    p.slot = slot_c.const_data_ptr<int32_t>();
    p.weights = w.const_data_ptr();
    p.y = y.data_ptr();
    p.dtype = float_dtype(yp);
    p.tokens = tokens;
    p.hidden = H;
    p.yp_row_stride = ypc.stride(0);
    p.num_rows = yp.size(0);
    p.top_k = static_cast<int32_t>(k);
    launch_on<T>(
        "unpermute", &launch_unpermute<T>, p,
        {{"yp", ypc, false}, {"slot", slot_c, false}, {"weights", w, false}, {"y", y, true}});
    return y;
  }
}

template <Target T>
std::tuple<at::Tensor, at::Tensor> unpermute_backward(const at::Tensor& grad_y,
                                                      const at::Tensor& yp, const at::Tensor& order,
                                                      const at::Tensor& slot,
                                                      const at::Tensor& weights) {
  const CheckScope<T> checks;
  check_unpermute_backward_args(grad_y, yp, order, slot, weights);
  if constexpr (T == Target::kCpu) {
    return unpermute_backward_cpu(grad_y, yp, order, slot, weights);
  } else {
    const int64_t N = yp.size(0), H = yp.size(1), tokens = weights.size(0), k = weights.size(1);
    const bool fp64 = yp.scalar_type() == at::kDouble;
    auto grad_yp = at::empty({N, H}, yp.options());
    auto w = weights.to(fp64 ? at::kDouble : at::kFloat).contiguous();
    auto grad_w = at::zeros({tokens, k}, w.options());
    auto dy = grad_y.contiguous();
    auto ypc = yp.stride(1) == 1 ? yp : yp.contiguous();
    auto order_c = order.contiguous(), slot_c = slot.contiguous();
    UnpermuteBackwardParams p{};
    p.grad_y = dy.const_data_ptr();
    p.yp = ypc.const_data_ptr();
    p.order = order_c.const_data_ptr<int32_t>();
    p.slot = slot_c.const_data_ptr<int32_t>();
    p.weights = w.const_data_ptr();
    p.grad_yp = grad_yp.data_ptr();
    p.grad_weights = grad_w.data_ptr();
    p.dtype = float_dtype(yp);
    p.tokens = tokens;
    p.hidden = H;
    p.yp_row_stride = ypc.stride(0);
    p.num_rows = N;
    p.top_k = static_cast<int32_t>(k);
    launch_on<T>("unpermute_backward", &launch_unpermute_backward<T>, p,
                 {{"grad_y", dy, false},
                  {"yp", ypc, false},
                  {"order", order_c, false},
                  {"slot", slot_c, false},
                  {"weights", w, false},
                  {"grad_yp", grad_yp, true},
                  {"grad_weights", grad_w, true}});
    return {grad_yp, grad_w.to(weights.scalar_type())};
  }
}

MOE_EXT_INSTANTIATE(unpermute)
MOE_EXT_INSTANTIATE(unpermute_backward)

}  // namespace moe_ext
