// moe_mlp: the expert MLP of an MoE layer over expert-sorted assignments (DESIGN.md, op table):
//   h  = act(x[order // k] @ w1[e]ᵀ)            per expert e, gated: act(gate) * up
//   yp = weights[order] * (h @ w2[e]ᵀ)           [N, H], rows past offsets[-1] zero
//   y  = combine(yp) over each token's kept assignments, in j order (deterministic)
// Shared pieces: argument checks, the activation parsing, and the composite path (permute ->
// grouped_mm -> activation -> grouped_mm -> unpermute) that the CPU backend uses and the device
// backends fall back to where the fused kernel does not apply (fp32, a non-row-major x).
#pragma once

#include <ATen/ATen.h>

#include <functional>

#include "../kernels/grouped_gemm/grouped_gemm.h"

namespace moe_ext {

struct MlpActivation {
  GemmActivation act;
  bool gated;  // SwiGLU / GeGLU: w1 rows [0, I) gate, [I, 2I) up (HF's concatenated gate_up_proj)
};

// "swiglu", "geglu", "geglu_tanh" (gated); "silu", "gelu", "gelu_tanh", "relu", "identity".
MlpActivation parse_mlp_activation(c10::string_view activation);

// Checks every argument; returns I (the activation width).
int64_t check_moe_mlp_args(const at::Tensor& x, const at::Tensor& w1, const at::Tensor& w2,
                           const at::Tensor& weights, const at::Tensor& order,
                           const at::Tensor& slot, const at::Tensor& offsets,
                           const MlpActivation& act);

// act(h) (gated: act(h[:, :I]) * h[:, I:]) computed in fp32, returned in h's dtype.
at::Tensor apply_mlp_activation(const at::Tensor& h, const MlpActivation& act);

struct MlpOps {  // the backend's ops the composite path runs on
  std::function<at::Tensor(const at::Tensor&, const at::Tensor&, const at::Tensor&, int64_t)> permute;
  std::function<at::Tensor(const at::Tensor&, const at::Tensor&, const at::Tensor&,
                           const at::Tensor&)> unpermute;
  std::function<at::Tensor(const at::Tensor&, const at::Tensor&, const at::Tensor&)> grouped_mm;
};

at::Tensor moe_mlp_composite(const at::Tensor& x, const at::Tensor& w1, const at::Tensor& w2,
                             const at::Tensor& weights, const at::Tensor& order,
                             const at::Tensor& slot, const at::Tensor& offsets,
                             const MlpActivation& act, const MlpOps& ops);

}  // namespace moe_ext
