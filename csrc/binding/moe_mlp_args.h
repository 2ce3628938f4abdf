// Argument checks and the activation parser shared by the moe_mlp bindings (moe_mlp.cpp,
// moe_mlp_fp8.cpp).
#pragma once

#include <ATen/ATen.h>

#include "../cpu/mlp_activation.h"
#include "checks.h"

namespace moe_ext {

// "swiglu", "geglu", "geglu_tanh" (gated); "silu", "gelu", "gelu_tanh", "relu", "identity".
MlpActivation parse_mlp_activation(const char* op, c10::string_view activation);

// Checks every argument of op (moe_mlp, its variants, moe_mlp_fp8); returns I (the activation
// width). fp8_weights: w1 and w2 are float8_e4m3fn (their scales are the caller's to check),
// else of x's dtype; x may be float64 on CPU only without FP8 weights.
int64_t check_moe_mlp_args(const char* op, const at::Tensor& x, const at::Tensor& w1,
                           const at::Tensor& w2, const at::Tensor& weights, const at::Tensor& order,
                           const at::Tensor& slot, const at::Tensor& offsets,
                           const MlpActivation& act, bool fp8_weights);

}  // namespace moe_ext
