// Binding of permute (the row gather into expert order): checks, then the native CPU op or
// tensors -> PermuteParams and the kernel (kernels/permute.cuh) on the device target.
#include <algorithm>

#include "../cpu/cpu_ops.h"
#include "../kernels/permute.h"
#include "backend.h"
#include "ops.h"

namespace moe_ext {

template <Target T>
at::Tensor permute(const at::Tensor& x, const at::Tensor& order, const at::Tensor& slot,
                   int64_t top_k) {
  const CheckScope<T> checks;
  check_permute_args(x, order, slot, top_k);
  if constexpr (T == Target::kCpu) {
    return permute_cpu(x, order, slot, top_k);
  } else {
    const int64_t N = order.size(0), H = x.size(1);
    auto xp = at::empty({N, H}, x.options());
    auto xc = x.stride(1) == 1 ? x : x.contiguous();
    auto order_c = order.contiguous(), slot_c = slot.contiguous();
    PermuteParams p{};
    p.x = xc.const_data_ptr();
    p.xp = xp.data_ptr();
    p.order = order_c.const_data_ptr<int32_t>();
    p.slot = slot_c.const_data_ptr<int32_t>();
    p.num_rows = N;
    p.hidden = H;
    p.x_row_stride = xc.stride(0);
    p.elem_bytes = xc.element_size();
    p.top_k = static_cast<int32_t>(top_k);
    launch_on<T>(
        "permute", &launch_permute<T>, p,
        {{"x", xc, false}, {"order", order_c, false}, {"slot", slot_c, false}, {"xp", xp, true}});
    return xp;
  }
}

MOE_EXT_INSTANTIATE(permute)

}  // namespace moe_ext
