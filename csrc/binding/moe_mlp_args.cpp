// Argument checks and the activation parser shared by the moe_mlp bindings (moe_mlp.cpp,
// moe_mlp_fp8.cpp).
#include "moe_mlp_args.h"

#include <string>
#include <tuple>
#include <utility>

namespace moe_ext {

// "swiglu", "geglu", "geglu_tanh" (gated); "silu", "gelu", "gelu_tanh", "relu", "identity".
MlpActivation parse_mlp_activation(const char* op, c10::string_view activation) {
  const std::string a(activation);
  if (a == "swiglu") return {GemmActivation::kSilu, true};
  if (a == "geglu") return {GemmActivation::kGelu, true};
  if (a == "geglu_tanh") return {GemmActivation::kGeluTanh, true};
  if (a == "silu") return {GemmActivation::kSilu, false};
  if (a == "gelu") return {GemmActivation::kGelu, false};
  if (a == "gelu_tanh") return {GemmActivation::kGeluTanh, false};
  if (a == "relu") return {GemmActivation::kRelu, false};
  if (a == "identity") return {GemmActivation::kNone, false};
  MOE_CHECK(op, false,
            "activation must be one of swiglu, geglu, geglu_tanh, silu, gelu, "
            "gelu_tanh, relu, identity; got '",
            a, "'");
  return {};
}

int64_t check_moe_mlp_args(const char* op, const at::Tensor& x, const at::Tensor& w1,
                           const at::Tensor& w2, const at::Tensor& weights, const at::Tensor& order,
                           const at::Tensor& slot, const at::Tensor& offsets,
                           const MlpActivation& act, bool fp8_weights) {
  check_float(op, "x", x, !fp8_weights);
  check_dim(op, "x", x, 2);
  check_dim(op, "w1", w1, 3);
  check_dim(op, "w2", w2, 3);
  for (auto [name, w] : {std::pair{"w1", &w1}, std::pair{"w2", &w2}}) {
    if (fp8_weights) {
      MOE_CHECK(op, w->scalar_type() == at::kFloat8_e4m3fn, name, " must be float8_e4m3fn, got ",
                describe(*w));
    } else {
      MOE_CHECK(op, w->scalar_type() == x.scalar_type(), name, " must have x's dtype (",
                c10::toString(x.scalar_type()), "), got ", describe(*w));
    }
    check_same_device(op, name, *w, "x", x);
  }
  check_dim(op, "offsets", offsets, 1);
  // E is sort_tokens' expert count (offsets' length): a wrong w1 is blamed on w1, not on w2
  const int64_t E = offsets.size(0), H = x.size(1);
  MOE_CHECK(op, w1.size(0) == E && w1.size(2) == H, "w1 must be [E=", E,
            " (offsets' length), "
            "2I or I, H=",
            H, "], got ", describe(w1));
  const int64_t I = act.gated ? w1.size(1) / 2 : w1.size(1);
  MOE_CHECK(op, !act.gated || w1.size(1) % 2 == 0,
            "a gated activation needs w1 = [E, 2I, H] "
            "(gate rows then up rows), got ",
            describe(w1));
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

}  // namespace moe_ext
