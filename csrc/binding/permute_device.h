// The device-side binding of permute, shared by the CUDA and emulator backends: checks, tensors
// -> PermuteParams, then `launch(params, buffers)`; only the launch target differs.
#pragma once

#include <algorithm>
#include <limits>
#include <utility>

#include "../kernels/permute.h"
#include "../kernels/sort_tokens.h"
#include "../kernels/unpermute.h"
#include "../kernels/unpermute_backward.h"
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

// Sorts into caller-provided outputs and workspace (sort_tokens_workspace_ints(N, E) int32).
template <typename Launch>
void sort_tokens_into_device(const at::Tensor& ids, int64_t num_experts,
                             std::optional<int64_t> capacity, const at::Tensor& order,
                             const at::Tensor& slot, const at::Tensor& offsets,
                             const at::Tensor& workspace, Launch&& launch) {
  const char* op = "sort_tokens";
  const DeviceBackendScope device_checks;
  check_sort_tokens_args(ids, num_experts, capacity);
  MOE_CHECK(op, num_experts <= kSortMaxExperts, "the device sort supports up to ",
            kSortMaxExperts, " experts, got num_experts=", num_experts);
  const int64_t N = ids.numel();
  auto check_out = [&](const char* name, const at::Tensor& t, int64_t n) {
    check_int32(op, name, t);
    check_same_device(op, name, t, "ids", ids);
    MOE_CHECK(op, t.dim() == 1 && t.numel() >= n && t.is_contiguous(), name,
              " must be a contiguous 1-D int32 tensor of at least ", n, " elements, got ",
              describe(t));
  };
  check_out("order", order, N);
  check_out("slot", slot, N);
  check_out("offsets", offsets, num_experts);
  check_out("workspace", workspace, sort_tokens_workspace_ints(N, num_experts));
  if (N == 0) offsets.narrow(0, 0, num_experts).zero_();
  auto ids_c = ids.contiguous();
  SortTokensParams p{};
  p.ids = ids_c.const_data_ptr();
  p.ids_are_int64 = ids.scalar_type() == at::kLong;
  p.num_assignments = N;
  p.num_experts = static_cast<int32_t>(num_experts);
  p.capacity = capacity.value_or(std::numeric_limits<int64_t>::max());
  p.order = order.data_ptr<int32_t>();
  p.slot = slot.data_ptr<int32_t>();
  p.offsets = offsets.data_ptr<int32_t>();
  p.workspace = workspace.data_ptr<int32_t>();
  launch(op, p,
         DeviceBuffers{{"ids", ids_c, false}, {"order", order, true}, {"slot", slot, true},
                       {"offsets", offsets, true}, {"workspace", workspace, true}});
}

template <typename Launch>
std::tuple<at::Tensor, at::Tensor, at::Tensor> sort_tokens_device(const at::Tensor& ids,
                                                                  int64_t num_experts,
                                                                  std::optional<int64_t> capacity,
                                                                  Launch&& launch) {
  const int64_t N = ids.numel(), E = std::max<int64_t>(num_experts, 0);
  check_num_assignments("sort_tokens", "ids", N);  // before allocating N-sized outputs
  auto opts = ids.options().dtype(at::kInt);
  auto order = at::empty({N}, opts), slot = at::empty({N}, opts), offsets = at::empty({E}, opts);
  auto workspace = at::empty({sort_tokens_workspace_ints(N, E)}, opts);
  sort_tokens_into_device(ids, num_experts, capacity, order, slot, offsets, workspace,
                          std::forward<Launch>(launch));
  return {order, slot, offsets};
}

template <typename Launch>
at::Tensor unpermute_device(const at::Tensor& yp, const at::Tensor& order, const at::Tensor& slot,
                            const at::Tensor& weights, Launch&& launch) {
  const DeviceBackendScope device_checks;
  check_unpermute_args(yp, order, slot, weights);
  const int64_t T = weights.size(0), k = weights.size(1), H = yp.size(1);
  auto y = at::empty({T, H}, yp.options());
  const bool fp64 = yp.scalar_type() == at::kDouble;
  auto ypc = yp.stride(1) == 1 ? yp : yp.contiguous();
  auto w = weights.to(fp64 ? at::kDouble : at::kFloat).contiguous();
  auto slot_c = slot.contiguous();
  UnpermuteParams p{};
  p.yp = ypc.const_data_ptr();
  p.slot = slot_c.const_data_ptr<int32_t>();
  p.weights = w.const_data_ptr();
  p.y = y.data_ptr();
  switch (yp.scalar_type()) {
    case at::kFloat: p.dtype = FloatDtype::kFloat32; break;
    case at::kBFloat16: p.dtype = FloatDtype::kBFloat16; break;
    case at::kHalf: p.dtype = FloatDtype::kFloat16; break;
    default: p.dtype = FloatDtype::kFloat64; break;  // check_unpermute_args admitted fp64 on cpu
  }
  p.tokens = T;
  p.hidden = H;
  p.yp_row_stride = ypc.stride(0);
  p.num_rows = yp.size(0);
  p.top_k = static_cast<int32_t>(k);
  launch("unpermute", p,
         DeviceBuffers{{"yp", ypc, false}, {"slot", slot_c, false}, {"weights", w, false},
                       {"y", y, true}});
  return y;
}

// Both gradients of unpermute from one kernel (unpermute_backward.cuh).
template <typename Launch>
std::tuple<at::Tensor, at::Tensor> unpermute_backward_device(const at::Tensor& grad_y,
                                                             const at::Tensor& yp,
                                                             const at::Tensor& order,
                                                             const at::Tensor& slot,
                                                             const at::Tensor& weights,
                                                             Launch&& launch) {
  const DeviceBackendScope device_checks;
  check_unpermute_backward_args(grad_y, yp, order, slot, weights);
  const int64_t N = yp.size(0), H = yp.size(1), T = weights.size(0), k = weights.size(1);
  const bool fp64 = yp.scalar_type() == at::kDouble;
  auto grad_yp = at::empty({N, H}, yp.options());
  auto w = weights.to(fp64 ? at::kDouble : at::kFloat).contiguous();
  auto grad_w = at::zeros({T, k}, w.options());
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
  switch (yp.scalar_type()) {
    case at::kFloat: p.dtype = FloatDtype::kFloat32; break;
    case at::kBFloat16: p.dtype = FloatDtype::kBFloat16; break;
    case at::kHalf: p.dtype = FloatDtype::kFloat16; break;
    default: p.dtype = FloatDtype::kFloat64; break;
  }
  p.tokens = T;
  p.hidden = H;
  p.yp_row_stride = ypc.stride(0);
  p.num_rows = N;
  p.top_k = static_cast<int32_t>(k);
  launch("unpermute_backward", p,
         DeviceBuffers{{"grad_y", dy, false}, {"yp", ypc, false}, {"order", order_c, false},
                       {"slot", slot_c, false}, {"weights", w, false}, {"grad_yp", grad_yp, true},
                       {"grad_weights", grad_w, true}});
  return {grad_yp, grad_w.to(weights.scalar_type())};
}

}  // namespace moe_ext
