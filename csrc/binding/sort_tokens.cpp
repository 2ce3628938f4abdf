// Bindings of sort_tokens (the stable counting sort of the T*k assignments by expert) and of
// sort_tokens_into (the same into caller-provided outputs and workspace, for CUDA-graph capture):
// checks, then the native CPU op or tensors -> SortTokensParams and the kernels
// (kernels/sort_tokens.cuh) on the device target.
#include <algorithm>
#include <limits>

#include "../cpu/cpu_ops.h"
#include "../kernels/sort_tokens.h"
#include "backend.h"
#include "ops.h"

namespace moe_ext {

// Sorts into caller-provided outputs and workspace (sort_tokens_workspace_ints(N, E) int32).
template <Target T>
void sort_tokens_into(const at::Tensor& ids, int64_t num_experts, std::optional<int64_t> capacity,
                      const at::Tensor& order, const at::Tensor& slot, const at::Tensor& offsets,
                      const at::Tensor& workspace) {
  static_assert(T != Target::kCpu, "sort_tokens_into is a device op");
  const char* op = "sort_tokens";
  const CheckScope<T> checks;
  check_sort_tokens_args(ids, num_experts, capacity);
  MOE_CHECK(op, num_experts <= kSortMaxExperts, "the device sort supports up to ", kSortMaxExperts,
            " experts, got num_experts=", num_experts);
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
  launch_on<T>(op, &launch_sort_tokens<T>, p,
               {{"ids", ids_c, false},
                {"order", order, true},
                {"slot", slot, true},
                {"offsets", offsets, true},
                {"workspace", workspace, true}});
}

template <Target T>
std::tuple<at::Tensor, at::Tensor, at::Tensor> sort_tokens(const at::Tensor& ids,
                                                           int64_t num_experts,
                                                           std::optional<int64_t> capacity) {
  if constexpr (T == Target::kCpu) {
    check_sort_tokens_args(ids, num_experts, capacity);
    return sort_tokens_cpu(ids, num_experts, capacity);
  } else {
    const int64_t N = ids.numel(), E = std::max<int64_t>(num_experts, 0);
    check_num_assignments("sort_tokens", "ids", N);  // before allocating N-sized outputs
    auto opts = ids.options().dtype(at::kInt);
    auto order = at::empty({N}, opts), slot = at::empty({N}, opts), offsets = at::empty({E}, opts);
    auto workspace = at::empty({sort_tokens_workspace_ints(N, E)}, opts);
    sort_tokens_into<T>(ids, num_experts, capacity, order, slot, offsets, workspace);
    return {order, slot, offsets};
  }
}

MOE_EXT_INSTANTIATE(sort_tokens)
MOE_EXT_INSTANTIATE_DEVICE(sort_tokens_into)

}  // namespace moe_ext
