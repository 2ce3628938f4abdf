// moe_mlp's activation with torch ops (mlp_activation.h).
#include "mlp_activation.h"

namespace moe_ext {

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
  at::Tensor out;
  if (act.gated) {
    at::Tensor gate = h.narrow(1, 0, I).to(acc), up = h.narrow(1, I, I).to(acc);
    if (act.limit > 0) {
      gate = gate.clamp_max(act.limit);
      up = up.clamp(-act.limit, act.limit);
    }
    out = f(gate) * up;
  } else {
    out = f(h.to(acc));
  }
  return out.to(h.scalar_type());
}

}  // namespace moe_ext
