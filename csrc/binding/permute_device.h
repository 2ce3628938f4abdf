// The device-side binding of permute, shared by the CUDA and emulator backends: checks, tensors
// -> PermuteParams, then `launch(params, buffers)`; only the launch target differs.
#pragma once

#include "../kernels/permute.h"
#include "checks.h"
#include "device_buffers.h"

namespace moe_ext {

template <typename Launch>
at::Tensor permute_device(const at::Tensor& x, const at::Tensor& order, const at::Tensor& slot,
                          int64_t top_k, Launch&& launch) {
  const DeviceBackendScope device_checks;
  check_permute_args(x, order, slot, top_k);
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
  launch("permute", p,
         DeviceBuffers{{"x", xc, false}, {"order", order_c, false}, {"slot", slot_c, false},
                       {"xp", xp, true}});
  return xp;
}

}  // namespace moe_ext
