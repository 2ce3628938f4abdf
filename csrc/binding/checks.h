// Argument checks shared by every backend's op entry point.
//
// Every message starts with "moe_ext.<op>: " and names the argument, what was expected and what
// was got, so a user can fix the call without reading our source (STYLE.md rule 4). Checks that
// only need metadata (dtype, rank, shape, device) run everywhere. Checks that read tensor values
// (ids in range, offs monotone, NaN logits) would force a device->host sync on CUDA, so they run
// on CPU tensors always and on CUDA only when MOE_EXT_DEBUG=1 (DESIGN.md principle 1).
#pragma once

#include <ATen/ATen.h>

#include <string>

#include "../common/dtype.h"
#include "../cpu/cpu_ops.h"  // GroupedForm

namespace moe_ext {

#define MOE_CHECK(op, cond, ...) TORCH_CHECK((cond), "moe_ext.", op, ": ", __VA_ARGS__)

// order, slot and offsets are int32 (DESIGN.md principle 6): N = T * top_k assignments must be
// below this. Every op taking or producing them checks it on shapes alone (no value reads).
constexpr int64_t kMaxAssignments = int64_t{1} << 31;

// "float32 [3, 4] on cpu": a compact description of a tensor for error messages.
std::string describe(const at::Tensor& t);

// The kernels' FloatDtype of a tensor the checks admitted as floating point (fp64 only on cpu).
FloatDtype float_dtype(const at::Tensor& t);

void check_float(const char* op, const char* name, const at::Tensor& t, bool allow_fp64_on_cpu);
void check_dim(const char* op, const char* name, const at::Tensor& t, int64_t dim);
void check_int32(const char* op, const char* name, const at::Tensor& t);
void check_same_device(const char* op, const char* name, const at::Tensor& t, const char* ref_name,
                       const at::Tensor& ref);
// `name` holds n assignments (N = T*top_k); n must be < kMaxAssignments.
void check_num_assignments(const char* op, const char* name, int64_t n);

// Values of order and slot: order[i] in [0, N), slot[a] in [-1, N) (-1 = dropped), and inverse
// of each other where kept (order[slot[a]] == a, slot[order[i]] in {i, -1}); only where
// value_checks_enabled. Call after every metadata check.
void check_order_slot_values(const char* op, const at::Tensor& order, const at::Tensor& slot);

// True when value checks (which read tensor contents) should run: for the native CPU ops always;
// for the device kernels (CUDA, and the emulator, which stands for CUDA on CPU tensors) only
// under MOE_EXT_DEBUG=1, so the emulator exercises the kernels' own handling of bad values.
bool value_checks_enabled(const at::Tensor& t);

// Marks the calls made on this thread while it lives as device-kernel calls (see above).
class DeviceBackendScope {
 public:
  DeviceBackendScope();
  ~DeviceBackendScope();
  DeviceBackendScope(const DeviceBackendScope&) = delete;
  DeviceBackendScope& operator=(const DeviceBackendScope&) = delete;

 private:
  bool previous_;
};

// Argument validation per op; each backend calls the one for its op before launching.
// score_func of route / route_with_stats / route_backward: "softmax", "sigmoid" or "sqrtsoftplus".
void check_route_score_func(const char* op, c10::string_view score_func);
void check_route_args(const at::Tensor& logits, int64_t top_k, c10::string_view score_func,
                      const std::optional<at::Tensor>& correction_bias, int64_t num_groups,
                      int64_t topk_groups);
void check_sort_tokens_args(const at::Tensor& ids, int64_t num_experts,
                            std::optional<int64_t> capacity);
void check_permute_args(const at::Tensor& x, const at::Tensor& order, const at::Tensor& slot,
                        int64_t top_k);
void check_unpermute_args(const at::Tensor& yp, const at::Tensor& order, const at::Tensor& slot,
                          const at::Tensor& weights);
void check_unpermute_backward_args(const at::Tensor& grad_y, const at::Tensor& yp,
                                   const at::Tensor& order, const at::Tensor& slot,
                                   const at::Tensor& weights);

// offs of a grouped GEMM: int32 [groups] (any length for groups < 0) on a's device; where value
// checks run, non-decreasing,
// >= 0 and <= ragged_extent (the extent of dimension `ragged` it cuts).
void check_group_offs(const char* op, const at::Tensor& offs, int64_t groups, const at::Tensor& a,
                      int64_t ragged_extent, const char* ragged);

// Returns the torch._grouped_mm form (cpu/cpu_ops.h), told apart by the ranks of a and b.
GroupedForm check_grouped_mm_args(const at::Tensor& a, const at::Tensor& b,
                                  const std::optional<at::Tensor>& offs,
                                  const std::optional<at::Tensor>& bias,
                                  std::optional<at::ScalarType> out_dtype);

}  // namespace moe_ext
