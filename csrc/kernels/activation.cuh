// The MLP activations on fp32 values, shared by the grouped GEMM's epilogue (epilogue.cuh) and
// the activation-quantizing pass of moe_mlp_fp8 (quantize_fp8.cuh): SiLU via MUFU ex2 + rcp,
// GELU (erf), GELU-tanh (MUFU tanh), ReLU, identity; gated: act(gate) * up, both clamped first
// when limit > 0 (comparisons, not fminf: a NaN stays NaN, as in torch.clamp); and the
// derivatives for moe_mlp's backward row pass (mlp_backward_rows.cuh). Both paths.
#pragma once

#include <cmath>

#include "../common/fast_math.h"
#include "grouped_gemm/grouped_gemm.h"  // GemmActivation

namespace moe_ext::MOE_KERNEL_NS {

MOE_DEVICE MOE_FORCEINLINE float activate(float x, GemmActivation act) {
  switch (act) {
    case GemmActivation::kSilu: return fast_silu(x);  // MUFU ex2 + rcp (common/fast_math.h)
    case GemmActivation::kGelu: return 0.5f * x * (1.f + erff(x * 0.70710678118654752f));
    case GemmActivation::kGeluTanh: {
      const float inner = 0.7978845608028654f * (x + 0.044715f * x * x * x);
      return 0.5f * x * (1.f + fast_tanh(inner));
    }
    case GemmActivation::kRelu: return x > 0.f ? x : 0.f;
    default: return x;
  }
}

MOE_DEVICE MOE_FORCEINLINE float gated_activate(float gate, float up, GemmActivation act,
                                                float limit) {
  if (limit > 0.f) {
    gate = gate > limit ? limit : gate;
    up = up > limit ? limit : (up < -limit ? -limit : up);
  }
  return activate(gate, act) * up;
}

// d act(x) / dx in fp32 (the derivatives torch's silu_backward, gelu_backward and
// threshold_backward compute; to fp32 rounding, not bit for bit).
MOE_DEVICE MOE_FORCEINLINE float activate_grad(float x, GemmActivation act) {
  switch (act) {
    case GemmActivation::kSilu: {
      const float s = 1.f / (1.f + expf(-x));
      return s * (1.f + x * (1.f - s));
    }
    case GemmActivation::kGelu:
      return 0.5f * (1.f + erff(x * 0.70710678118654752f)) +
             x * 0.3989422804014327f * expf(-0.5f * x * x);
    case GemmActivation::kGeluTanh: {
      const float c = 0.7978845608028654f, t = tanhf(c * (x + 0.044715f * x * x * x));
      return 0.5f * (1.f + t) + 0.5f * x * (1.f - t * t) * c * (1.f + 3.f * 0.044715f * x * x);
    }
    case GemmActivation::kRelu: return x > 0.f ? 1.f : 0.f;
    default: return 1.f;
  }
}

}  // namespace moe_ext::MOE_KERNEL_NS
