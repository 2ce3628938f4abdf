// moe_mlp's activation with torch ops (mlp_activation.h).
#include "mlp_activation.h"

namespace moe_ext {

namespace {

// The (ungated) activation of v.
at::Tensor activate(const at::Tensor& v, GemmActivation a) {
  switch (a) {
    case GemmActivation::kSilu: return at::silu(v);
    case GemmActivation::kGelu: return at::gelu(v);
    case GemmActivation::kGeluTanh: return at::gelu(v, "tanh");
    case GemmActivation::kRelu: return at::relu(v);
    default: return v;
  }
}

}  // namespace

at::Tensor apply_mlp_activation(const at::Tensor& h, const MlpActivation& act) {
  const int64_t I = act.gated ? h.size(1) / 2 : h.size(1);
  auto f = [&](const at::Tensor& v) { return activate(v, act.act); };
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

at::Tensor mlp_activation_backward(const at::Tensor& h, const at::Tensor& grad,
                                   const MlpActivation& act) {
  const auto acc = h.scalar_type() == at::kDouble ? at::kDouble : at::kFloat;
  auto f = [&](const at::Tensor& v) { return activate(v, act.act); };
  auto df = [&](const at::Tensor& g, const at::Tensor& v) {  // g * act'(v)
    switch (act.act) {
      case GemmActivation::kSilu: return at::silu_backward(g, v);
      case GemmActivation::kGelu: return at::gelu_backward(g, v);
      case GemmActivation::kGeluTanh: return at::gelu_backward(g, v, "tanh");
      case GemmActivation::kRelu: return at::threshold_backward(g, v, 0);
      default: return g;
    }
  };
  const auto g = grad.to(acc);
  if (!act.gated) return df(g, h.to(acc)).to(h.scalar_type());
  const int64_t I = h.size(1) / 2;
  at::Tensor gate = h.narrow(1, 0, I).to(acc), up = h.narrow(1, I, I).to(acc);
  at::Tensor gate_in = gate, up_in = up;
  if (act.limit > 0) {
    gate = gate.clamp_max(act.limit);
    up = up.clamp(-act.limit, act.limit);
  }
  auto d_gate = df(g * up, gate);
  auto d_up = f(gate) * g;
  if (act.limit > 0) {  // torch.clamp's backward: the gradient where min <= input <= max
    d_gate = d_gate * gate_in.le(act.limit);
    d_up = d_up * (up_in.ge(-act.limit) & up_in.le(act.limit));
  }
  // (each half rounded first: no fp32 tensor as wide as h)
  return at::cat({d_gate.to(h.scalar_type()), d_up.to(h.scalar_type())}, 1);
}

}  // namespace moe_ext
