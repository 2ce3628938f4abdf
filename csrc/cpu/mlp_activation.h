// moe_mlp's activation: which one, whether gated, and act(h) with torch ops (the CPU op and the
// device bindings' composite path apply it between the two GEMMs).
#pragma once

#include <ATen/ATen.h>

#include "../kernels/grouped_gemm/grouped_gemm.h"

namespace moe_ext {

struct MlpActivation {
  GemmActivation act;
  bool gated;  // SwiGLU / GeGLU: w1 rows [0, I) gate, [I, 2I) up (HF's concatenated gate_up_proj)
  double limit = 0;  // gated, > 0: gate clamped to <= limit, up to [-limit, limit] first
};

// act(h) (gated: act(h[:, :I]) * h[:, I:], each half clamped first when act.limit > 0) computed in
// fp32 (fp64 for fp64), returned in h's dtype.
at::Tensor apply_mlp_activation(const at::Tensor& h, const MlpActivation& act);

// The activation's backward: dh = d act(h) / dh * grad (gated: d gate = act'(gate) * up * grad,
// d up = act(gate) * grad; a clamp passes the gradient where its input is inside the limits, as
// torch.clamp's does), computed in fp32 (fp64 for fp64) from h (h's dtype) and grad (any float
// dtype), returned in h's dtype: [rows, 2I] (gated) or [rows, I]. Torch's own derivative kernels
// (silu_backward, gelu_backward, threshold_backward), so it matches eager autograd bit for bit
// on the same inputs.
at::Tensor mlp_activation_backward(const at::Tensor& h, const at::Tensor& grad,
                                   const MlpActivation& act);

}  // namespace moe_ext
