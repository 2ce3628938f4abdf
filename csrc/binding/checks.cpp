// Argument validation for every op (see checks.h for the policy on value checks).
#include "checks.h"

#include <cstdlib>
#include <sstream>

namespace moe_ext {

std::string describe(const at::Tensor& t) {
  std::ostringstream s;
  s << c10::toString(t.scalar_type()) << " " << t.sizes() << " on " << t.device();
  return s.str();
}

FloatDtype float_dtype(const at::Tensor& t) {
  switch (t.scalar_type()) {
    case at::kFloat: return FloatDtype::kFloat32;
    case at::kBFloat16: return FloatDtype::kBFloat16;
    case at::kHalf: return FloatDtype::kFloat16;
    default: return FloatDtype::kFloat64;  // the checks admitted fp64 on cpu only
  }
}

void check_float(const char* op, const char* name, const at::Tensor& t, bool allow_fp64_on_cpu) {
  auto dt = t.scalar_type();
  bool ok = dt == at::kFloat || dt == at::kBFloat16 || dt == at::kHalf ||
            (dt == at::kDouble && allow_fp64_on_cpu && t.device().is_cpu());
  MOE_CHECK(op, ok, name, " must be float32, bfloat16 or float16",
            allow_fp64_on_cpu ? " (or float64 on cpu)" : "", ", got ", describe(t));
}

void check_dim(const char* op, const char* name, const at::Tensor& t, int64_t dim) {
  MOE_CHECK(op, t.dim() == dim, name, " must be ", dim, "-D, got ", describe(t));
}

void check_int32(const char* op, const char* name, const at::Tensor& t) {
  MOE_CHECK(op, t.scalar_type() == at::kInt, name, " must be int32, got ", describe(t));
}

void check_same_device(const char* op, const char* name, const at::Tensor& t, const char* ref_name,
                       const at::Tensor& ref) {
  MOE_CHECK(op, t.device() == ref.device(), name, " must be on the same device as ", ref_name, " (",
            ref.device(), "), got ", describe(t));
}

void check_num_assignments(const char* op, const char* name, int64_t n) {
  MOE_CHECK(op, n < kMaxAssignments, name, " has N = ", n,
            " assignments; N = T*top_k must be < 2^31 (order and slot are int32)");
}

namespace {
thread_local bool in_device_backend = false;
}  // namespace

DeviceBackendScope::DeviceBackendScope() : previous_(in_device_backend) {
  in_device_backend = true;
}
DeviceBackendScope::~DeviceBackendScope() { in_device_backend = previous_; }

bool value_checks_enabled(const at::Tensor& t) {
  if (t.device().is_cpu() && !in_device_backend) return true;
  static const bool debug = [] {
    const char* v = std::getenv("MOE_EXT_DEBUG");
    return v != nullptr && std::string(v) != "0" && std::string(v) != "";
  }();
  return debug;
}

// Range check of an integer tensor's values: lo <= v < hi. The message names the first bad
// entry by its index ("order[5] = 99 is out of range [0, 8)"), so the caller can find it.
static void check_values_in_range(const char* op, const char* name, const at::Tensor& t, int64_t lo,
                                  int64_t hi) {
  if (t.numel() == 0 || !value_checks_enabled(t)) return;
  // one pass over the values, no copy for contiguous int32/int64 CPU tensors (these checks run
  // on every CPU call; a few µs at MoE sizes)
  auto v = t.to(at::kCPU).contiguous();
  if (v.scalar_type() != at::kInt) v = v.to(at::kLong);
  const int64_t n = v.numel();
  int64_t flat = 0, value = 0;
  auto scan = [&](const auto* data) {
    while (flat < n && data[flat] >= lo && data[flat] < hi) ++flat;
    if (flat < n) value = data[flat];
  };
  if (v.scalar_type() == at::kInt)
    scan(v.const_data_ptr<int32_t>());
  else
    scan(v.const_data_ptr<int64_t>());
  if (flat == n) return;
  std::ostringstream where;  // multi-index of the flat position, "[1, 0]" for 2-D ids
  for (int64_t d = 0, rest = flat; d < v.dim(); ++d) {
    const int64_t inner = v.stride(d);  // contiguous and non-empty: elements per index step
    where << (d == 0 ? "[" : ", ") << rest / inner;
    rest %= inner;
  }
  where << "]";
  MOE_CHECK(op, false, name, where.str(), " = ", value, " is out of range [", lo, ", ", hi, ")");
}

void check_route_score_func(const char* op, c10::string_view score_func) {
  MOE_CHECK(op, score_func == "softmax" || score_func == "sigmoid" || score_func == "sqrtsoftplus",
            "score_func must be \"softmax\", \"sigmoid\" or \"sqrtsoftplus\", got \"",
            std::string(score_func), "\"");
}

void check_route_args(const at::Tensor& logits, int64_t top_k, c10::string_view score_func,
                      const std::optional<at::Tensor>& correction_bias, int64_t num_groups,
                      int64_t topk_groups) {
  const char* op = "route";
  check_dim(op, "logits", logits, 2);
  check_float(op, "logits", logits, /*allow_fp64_on_cpu=*/true);
  const int64_t E = logits.size(1);
  MOE_CHECK(op, E >= 1, "logits must have at least one expert column, got ", describe(logits));
  MOE_CHECK(op, top_k >= 1 && top_k <= E, "top_k must be in [1, num_experts=", E, "], got ", top_k);
  check_route_score_func(op, score_func);
  if (correction_bias) {
    const auto& b = *correction_bias;
    check_dim(op, "correction_bias", b, 1);
    check_float(op, "correction_bias", b, true);
    MOE_CHECK(op, b.size(0) == E, "correction_bias must have num_experts=", E, " elements, got ",
              describe(b));
    check_same_device(op, "correction_bias", b, "logits", logits);
  }
  MOE_CHECK(op, num_groups >= 1, "num_groups must be >= 1, got ", num_groups);
  if (num_groups > 1) {
    MOE_CHECK(op, E % num_groups == 0, "num_groups=", num_groups,
              " must divide the number of experts ", E);
    MOE_CHECK(op, E / num_groups >= 2, "num_groups=", num_groups, " leaves groups of size ",
              E / num_groups, "; group-limited routing needs >= 2");
    MOE_CHECK(op, topk_groups >= 1 && topk_groups <= num_groups, "topk_groups must be in [1, ",
              "num_groups=", num_groups, "], got ", topk_groups);
    MOE_CHECK(op, top_k <= topk_groups * (E / num_groups), "top_k=", top_k,
              " exceeds the experts in the topk_groups=", topk_groups, " kept groups (",
              topk_groups * (E / num_groups), ")");
  }
}

void check_sort_tokens_args(const at::Tensor& ids, int64_t num_experts,
                            std::optional<int64_t> capacity) {
  const char* op = "sort_tokens";
  check_dim(op, "ids", ids, 2);
  MOE_CHECK(op, ids.scalar_type() == at::kInt || ids.scalar_type() == at::kLong,
            "ids must be int32 or int64, got ", describe(ids));
  MOE_CHECK(op, num_experts >= 1, "num_experts must be >= 1, got ", num_experts);
  check_num_assignments(op, "ids", ids.numel());
  MOE_CHECK(op, !capacity || *capacity >= 0, "capacity must be >= 0 or None, got ",
            capacity.value_or(0));
  // -1 means "not routed here"; ids >= E or < -1 are errors (on CUDA they are dropped).
  check_values_in_range(op, "ids", ids, -1, num_experts);
}

// Metadata of order and slot: [N] int32 on ref's device, N < 2^31 (the indices are int32).
static void check_order_slot_meta(const char* op, const at::Tensor& order, const at::Tensor& slot,
                                  const at::Tensor& ref, const char* ref_name) {
  check_dim(op, "order", order, 1);
  check_dim(op, "slot", slot, 1);
  check_int32(op, "order", order);
  check_int32(op, "slot", slot);
  MOE_CHECK(op, order.size(0) == slot.size(0), "order and slot must have the same length N, got ",
            describe(order), " and ", describe(slot));
  check_same_device(op, "order", order, ref_name, ref);
  check_same_device(op, "slot", slot, ref_name, ref);
  check_num_assignments(op, "order", order.size(0));
}

// Values of order and slot: order[i] in [0, N), slot[a] in [-1, N) (-1 = dropped). Run after
// every metadata check, so a malformed call never pays for (or dies in) the copy they make.
void check_order_slot_values(const char* op, const at::Tensor& order, const at::Tensor& slot) {
  const int64_t N = order.size(0);
  check_values_in_range(op, "order", order, 0, N);
  check_values_in_range(op, "slot", slot, -1, N);
  if (N == 0 || !value_checks_enabled(order)) return;
  // inverse of each other where kept (as sort_tokens makes them): a kept assignment a sits at
  // row slot[a] and that row holds a. (Duplicate rows would make the kernels' gathers and
  // unpermute_backward's per-row weight gradient race.)
  const auto o = order.to(at::kCPU).contiguous(), sl = slot.to(at::kCPU).contiguous();
  const int32_t* ord = o.const_data_ptr<int32_t>();
  const int32_t* slt = sl.const_data_ptr<int32_t>();
  for (int64_t a = 0; a < N; ++a) {
    const int32_t row = slt[a];
    MOE_CHECK(op, row < 0 || ord[row] == a, "order and slot are not inverse: slot[", a, "] = ", row,
              " but order[", row, "] = ", ord[row], " (sort_tokens' outputs are)");
  }
  for (int64_t i = 0; i < N; ++i) {
    const int32_t row = slt[ord[i]];
    MOE_CHECK(op, row < 0 || row == i, "order and slot are not inverse: order[", i, "] = ", ord[i],
              " but slot[", ord[i], "] = ", row, " (sort_tokens' outputs are)");
  }
}

void check_permute_args(const at::Tensor& x, const at::Tensor& order, const at::Tensor& slot,
                        int64_t top_k) {
  const char* op = "permute";
  check_dim(op, "x", x, 2);
  check_float(op, "x", x, true);
  MOE_CHECK(op, top_k >= 1, "top_k must be >= 1, got ", top_k);
  // T * top_k < 2^31, compared without forming a product that could overflow int64.
  MOE_CHECK(op, x.size(0) <= (kMaxAssignments - 1) / top_k, "x.size(0) * top_k = ", x.size(0),
            " * ", top_k, " assignments; N = T*top_k must be < 2^31 (order and slot are int32)");
  check_order_slot_meta(op, order, slot, x, "x");
  MOE_CHECK(op, order.size(0) == x.size(0) * top_k,
            "order must have N = x.size(0) * top_k = ", x.size(0), " * ", top_k, " = ",
            x.size(0) * top_k, " elements, got ", describe(order));
  check_order_slot_values(op, order, slot);
}

// unpermute's checks, under the name of the op that runs them (unpermute or unpermute_backward).
static void check_unpermute_meta(const char* op, const at::Tensor& yp, const at::Tensor& order,
                                 const at::Tensor& slot, const at::Tensor& weights) {
  check_dim(op, "yp", yp, 2);
  check_float(op, "yp", yp, true);
  check_dim(op, "weights", weights, 2);
  check_float(op, "weights", weights, true);
  check_same_device(op, "weights", weights, "yp", yp);
  check_order_slot_meta(op, order, slot, yp, "yp");
  MOE_CHECK(op, yp.size(0) == order.size(0), "yp must have N = order.size(0) = ", order.size(0),
            " rows, got ", describe(yp));
  MOE_CHECK(op, weights.numel() == order.size(0),
            "weights must be [T, top_k] with T * top_k = N = ", order.size(0), ", got ",
            describe(weights));
}

void check_unpermute_args(const at::Tensor& yp, const at::Tensor& order, const at::Tensor& slot,
                          const at::Tensor& weights) {
  const char* op = "unpermute";
  check_unpermute_meta(op, yp, order, slot, weights);
  check_order_slot_values(op, order, slot);
}

void check_unpermute_backward_args(const at::Tensor& grad_y, const at::Tensor& yp,
                                   const at::Tensor& order, const at::Tensor& slot,
                                   const at::Tensor& weights) {
  const char* op = "unpermute_backward";
  check_unpermute_meta(op, yp, order, slot, weights);
  check_dim(op, "grad_y", grad_y, 2);
  check_same_device(op, "grad_y", grad_y, "yp", yp);
  MOE_CHECK(op, grad_y.scalar_type() == yp.scalar_type(), "grad_y must have yp's dtype, got ",
            describe(grad_y), " and ", describe(yp));
  MOE_CHECK(op, grad_y.size(0) == weights.size(0) && grad_y.size(1) == yp.size(1),
            "grad_y must be [T=", weights.size(0), ", H=", yp.size(1), "], got ", describe(grad_y));
  check_order_slot_values(op, order, slot);
}

void check_group_offs(const char* op, const at::Tensor& o, int64_t groups, const at::Tensor& a,
                      int64_t ragged_extent, const char* ragged) {
  check_dim(op, "offs", o, 1);
  check_int32(op, "offs", o);
  check_same_device(op, "offs", o, "a", a);
  MOE_CHECK(op, groups < 0 || o.size(0) == groups, "offs must have one entry per group (", groups,
            "), got ", describe(o));
  if (o.numel() > 0 && value_checks_enabled(o)) {
    auto v = o.to(at::kCPU, at::kLong);
    const int64_t* ends = v.const_data_ptr<int64_t>();
    for (int64_t g = 0; g < v.size(0); ++g) {
      const int64_t before = g == 0 ? 0 : ends[g - 1];
      MOE_CHECK(op, ends[g] >= before,
                "offs must be non-decreasing and >= 0 (cumulative group "
                "ends), but offs[",
                g, "] = ", ends[g],
                g == 0 ? std::string(" < 0")
                       : " < offs[" + std::to_string(g - 1) + "] = " + std::to_string(before));
    }
    int64_t last = v[-1].item<int64_t>();
    MOE_CHECK(op, last <= ragged_extent, "offs[-1]=", last, " exceeds the ragged ", ragged,
              " extent ", ragged_extent);
  }
}

GroupedForm check_grouped_mm_args(const at::Tensor& a, const at::Tensor& b,
                                  const std::optional<at::Tensor>& offs,
                                  const std::optional<at::Tensor>& bias,
                                  std::optional<at::ScalarType> out_dtype) {
  const char* op = "grouped_mm";
  check_float(op, "a", a, true);
  check_float(op, "b", b, true);
  MOE_CHECK(op, a.scalar_type() == b.scalar_type(), "a and b must have the same dtype, got ",
            describe(a), " and ", describe(b));
  check_same_device(op, "b", b, "a", a);
  MOE_CHECK(op, (a.dim() == 2 || a.dim() == 3) && (b.dim() == 2 || b.dim() == 3),
            "a and b must be 2-D or 3-D, got ", describe(a), " and ", describe(b));
  if (out_dtype) {
    auto od = *out_dtype;
    MOE_CHECK(op, od == at::kFloat || od == at::kBFloat16 || od == at::kHalf || od == at::kDouble,
              "out_dtype must be a floating dtype, got ", c10::toString(od));
  }
  GroupedForm form;
  int64_t K_a, K_b, G = -1, ragged_extent = 0, n_out = 0;
  const char* ragged = "";
  if (a.dim() == 2 && b.dim() == 3) {
    form = GroupedForm::k2Dx3D;
    K_a = a.size(1), K_b = b.size(1), G = b.size(0), ragged_extent = a.size(0), ragged = "M";
    n_out = b.size(2);
  } else if (a.dim() == 3 && b.dim() == 2) {
    form = GroupedForm::k3Dx2D;
    K_a = a.size(2), K_b = b.size(0), G = a.size(0), ragged_extent = b.size(1), ragged = "N";
    n_out = b.size(1);
  } else if (a.dim() == 2 && b.dim() == 2) {
    form = GroupedForm::k2Dx2D;
    K_a = a.size(1), K_b = b.size(0), ragged_extent = a.size(1), ragged = "K";
    n_out = b.size(1);
  } else {
    form = GroupedForm::k3Dx3D;
    K_a = a.size(2), K_b = b.size(1), n_out = b.size(2);
    MOE_CHECK(op, a.size(0) == b.size(0), "a and b must have the same number of groups, got ",
              describe(a), " and ", describe(b));
    G = a.size(0);
  }
  MOE_CHECK(op, K_a == K_b, "the contraction sizes of a and b differ: a is ", describe(a),
            ", b is ", describe(b));
  if (form == GroupedForm::k3Dx3D) {
    MOE_CHECK(op, !offs.has_value(), "offs must be None for 3-D a with 3-D b (batched), got ",
              describe(*offs));
  } else {
    MOE_CHECK(op, offs.has_value(), "offs is required when a or b is 2-D");
    check_group_offs(op, *offs, G, a, ragged_extent, ragged);
    if (G < 0) G = offs->size(0);
  }
  if (bias) {
    const auto& bi = *bias;
    check_float(op, "bias", bi, true);
    check_same_device(op, "bias", bi, "a", a);
    MOE_CHECK(op, bi.dim() == 2 && bi.size(0) == G && bi.size(1) == n_out,
              "bias must be [num_groups=", G, ", N=", n_out, "], got ", describe(bi));
  }
  return form;
}

}  // namespace moe_ext
