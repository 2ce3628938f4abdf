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

}  // namespace moe_ext
