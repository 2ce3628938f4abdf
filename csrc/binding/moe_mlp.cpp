// moe_mlp's shared pieces (moe_mlp.h): checks, activation parsing, the composite path.
#include "moe_mlp.h"

#include "checks.h"

namespace moe_ext {

MlpActivation parse_mlp_activation(c10::string_view activation) {
  const std::string a(activation);
  if (a == "swiglu") return {GemmActivation::kSilu, true};
  if (a == "geglu") return {GemmActivation::kGelu, true};
  if (a == "geglu_tanh") return {GemmActivation::kGeluTanh, true};
  if (a == "silu") return {GemmActivation::kSilu, false};
  if (a == "gelu") return {GemmActivation::kGelu, false};
  if (a == "gelu_tanh") return {GemmActivation::kGeluTanh, false};
  if (a == "relu") return {GemmActivation::kRelu, false};
  if (a == "identity") return {GemmActivation::kNone, false};
  MOE_CHECK("moe_mlp", false, "activation must be one of swiglu, geglu, geglu_tanh, silu, gelu, "
            "gelu_tanh, relu, identity; got '", a, "'");
  return {};
}

int64_t check_moe_mlp_args(const at::Tensor& x, const at::Tensor& w1, const at::Tensor& w2,
                           const at::Tensor& weights, const at::Tensor& order,
                           const at::Tensor& slot, const at::Tensor& offsets,
                           const MlpActivation& act) {
  const char* op = "moe_mlp";
  check_float(op, "x", x, true);
  check_dim(op, "x", x, 2);
  check_dim(op, "w1", w1, 3);
  check_dim(op, "w2", w2, 3);
  for (auto [name, w] : {std::pair{"w1", &w1}, std::pair{"w2", &w2}}) {
    MOE_CHECK(op, w->scalar_type() == x.scalar_type(), name, " must have x's dtype (",
              c10::toString(x.scalar_type()), "), got ", describe(*w));
    check_same_device(op, name, *w, "x", x);
  }
  check_dim(op, "offsets", offsets, 1);
  // E is sort_tokens' expert count (offsets' length): a wrong w1 is blamed on w1, not on w2
  const int64_t E = offsets.size(0), H = x.size(1);
  MOE_CHECK(op, w1.size(0) == E && w1.size(2) == H, "w1 must be [E=", E, " (offsets' length), "
            "2I or I, H=", H, "], got ", describe(w1));
  const int64_t I = act.gated ? w1.size(1) / 2 : w1.size(1);
  MOE_CHECK(op, !act.gated || w1.size(1) % 2 == 0, "a gated activation needs w1 = [E, 2I, H] "
            "(gate rows then up rows), got ", describe(w1));
  MOE_CHECK(op, w2.size(0) == E && w2.size(1) == H && w2.size(2) == I, "w2 must be [E=", E,
            ", H=", H, ", I=", I, "], got ", describe(w2));
  check_float(op, "weights", weights, true);
  check_dim(op, "weights", weights, 2);
  check_same_device(op, "weights", weights, "x", x);
  MOE_CHECK(op, weights.size(0) == x.size(0), "weights must be [T=", x.size(0), ", top_k], got ",
            describe(weights));
  const int64_t N = weights.numel();
  for (auto [name, t, n] : {std::tuple{"order", &order, N}, std::tuple{"slot", &slot, N},
                            std::tuple{"offsets", &offsets, E}}) {
    check_int32(op, name, *t);
    check_dim(op, name, *t, 1);
    check_same_device(op, name, *t, "x", x);
    MOE_CHECK(op, t->size(0) == n, name, " must have ", n, " entries, got ", describe(*t));
  }
  check_num_assignments(op, "order", N);
  check_order_slot_values(op, order, slot);
  return I;
}

at::Tensor apply_mlp_activation(const at::Tensor& h, const MlpActivation& act) {
  const int64_t I = act.gated ? h.size(1) / 2 : h.size(1);
  auto f = [&](const at::Tensor& v) {
    switch (act.act) {
      case GemmActivation::kSilu: return at::silu(v);
      case GemmActivation::kGelu: return at::gelu(v);
      case GemmActivation::kGeluTanh: return at::gelu(v, "tanh");
      case GemmActivation::kRelu: return at::relu(v);
      default: return v;
    }
  };
  const auto acc = h.scalar_type() == at::kDouble ? at::kDouble : at::kFloat;
  at::Tensor out = act.gated ? f(h.narrow(1, 0, I).to(acc)) * h.narrow(1, I, I).to(acc)
                             : f(h.to(acc));
  return out.to(h.scalar_type());
}

at::Tensor moe_mlp_composite(const at::Tensor& x, const at::Tensor& w1, const at::Tensor& w2,
                             const at::Tensor& weights, const at::Tensor& order,
                             const at::Tensor& slot, const at::Tensor& offsets,
                             const MlpActivation& act, const MlpOps& ops) {
  const int64_t k = weights.size(1);
  const auto xp = ops.permute(x, order, slot, k);
  const auto h = ops.grouped_mm(xp, w1.transpose(-2, -1), offsets);
  const auto z = ops.grouped_mm(apply_mlp_activation(h, act), w2.transpose(-2, -1), offsets);
  return ops.unpermute(z, order, slot, weights);
}

}  // namespace moe_ext
