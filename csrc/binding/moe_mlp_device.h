// The device-side binding of moe_mlp, shared by the CUDA and emulator backends. bf16/fp16 with a
// row-major x run the fused path, two launches of the grouped GEMM kernel plus the combine:
//   1. h[N, I]  = act(x[order // k] @ w1ᵀ)   A rows gathered through `order` inside the kernel's
//                 loads (no xp buffer); gated activations read gate and up column blocks into
//                 one tile and write act(gate) * up from the epilogue (no [N, 2I] buffer)
//   2. yp[N, H] = weights[order] * (h @ w2ᵀ)  routing weight applied in the epilogue
//   3. y[T, H]  = sum_j yp[slot[t*k + j]]     the unpermute kernel (gather, j order, fp32)
// Memory: h and yp (N x (I + H) elements) besides the output. Everything else (fp32, a strided
// x) takes the composite path through the same device ops.
#pragma once

#include "grouped_mm_device.h"
#include "moe_mlp.h"
#include "permute_device.h"

namespace moe_ext {

template <typename LaunchGemm, typename LaunchPermute, typename LaunchUnpermute>
at::Tensor moe_mlp_device(const at::Tensor& x, const at::Tensor& w1, const at::Tensor& w2,
                          const at::Tensor& weights, const at::Tensor& order,
                          const at::Tensor& slot, const at::Tensor& offsets,
                          c10::string_view activation, LaunchGemm launch_gemm,
                          LaunchPermute launch_permute, LaunchUnpermute launch_unpermute) {
  using namespace grouped_mm_binding;
  const char* op = "moe_mlp";
  const DeviceBackendScope device_checks;
  const MlpActivation act = parse_mlp_activation(activation);
  const int64_t I = check_moe_mlp_args(x, w1, w2, weights, order, slot, offsets, act);
  MOE_CHECK(op, x.scalar_type() != at::kDouble, "float64 is supported on CPU tensors only");
  const int64_t T = x.size(0), H = x.size(1), k = weights.size(1), N = order.size(0);
  const int64_t E = w1.size(0);
  const bool fused = (x.scalar_type() == at::kBFloat16 || x.scalar_type() == at::kHalf) &&
                     (x.stride(1) == 1 || H <= 1) && k >= 1;
  if (!fused) {
    MlpOps ops;
    ops.permute = [&](const at::Tensor& a, const at::Tensor& o, const at::Tensor& s, int64_t kk) {
      return permute_device(a, o, s, kk, launch_permute);
    };
    ops.unpermute = [&](const at::Tensor& a, const at::Tensor& o, const at::Tensor& s,
                        const at::Tensor& w) { return unpermute_device(a, o, s, w, launch_unpermute); };
    ops.grouped_mm = [&](const at::Tensor& a, const at::Tensor& b, const at::Tensor& offs) {
      return grouped_mm_device(a, b, offs, std::nullopt, std::nullopt, launch_gemm);
    };
    return moe_mlp_composite(x, w1, w2, weights, order, slot, offsets, act, ops);
  }

  const auto order_c = order.contiguous(), offsets_c = offsets.contiguous();
  const auto w_flat = weights.contiguous().view({-1});
  auto h = at::empty({N, I}, x.options());
  auto yp = at::empty({N, H}, x.options());
  auto fill = [&](GroupedGemmParams& p, const at::Tensor& w_t, int64_t n, int64_t kdim) {
    // b = w_t = w.transpose(-2, -1): [E, K, N] view of HF's [E, N, K] expert weights
    const Operand B = as_operand(w_t);
    p.form = GroupedGemmForm::kRaggedM;
    p.in_type = p.out_type = gemm_elem(x.scalar_type());
    p.m = N, p.n = n, p.k = kdim, p.num_groups = static_cast<int32_t>(E);
    p.b = B.t.const_data_ptr();
    p.b_stride_g = B.t.stride(0);
    p.b_k_major = !B.cols_unit;
    p.b_stride_k = stride_of(B, 1, !B.cols_unit);
    p.b_stride_n = stride_of(B, 2, B.cols_unit);
    p.offs = offsets_c.const_data_ptr<int32_t>();
    p.a_k_major = true;
    p.config = config_from_env(op);
    p.stages = stages_from_env(op);
    p.path = path_from_env(op);
    return B.t;
  };

  GroupedGemmParams p1{};
  const auto w1_t = fill(p1, w1.transpose(-2, -1), I, H);
  p1.a = x.const_data_ptr();
  p1.a_stride_m = x.stride(0), p1.a_stride_k = 1;
  p1.a_gather = order_c.const_data_ptr<int32_t>();
  p1.a_gather_div = static_cast<int32_t>(k);
  p1.activation = act.act;
  p1.gated = act.gated;
  apply_gemm_tuning(p1);
  p1.c = h.data_ptr();
  p1.c_stride_m = I;
  if (N > 0 && I > 0) {
    launch_gemm(op, p1,
                DeviceBuffers{{"x", x, false}, {"w1", w1_t, false}, {"order", order_c, false},
                              {"offsets", offsets_c, false}, {"h", h, true}});
  }

  GroupedGemmParams p2{};
  const auto w2_t = fill(p2, w2.transpose(-2, -1), H, I);
  p2.a = h.const_data_ptr();
  p2.a_stride_m = I, p2.a_stride_k = 1;
  p2.row_scale = w_flat.const_data_ptr();
  p2.row_scale_type = gemm_elem(w_flat.scalar_type());
  p2.row_scale_index = order_c.const_data_ptr<int32_t>();
  p2.c = yp.data_ptr();
  p2.c_stride_m = H;
  apply_gemm_tuning(p2);
  at::Tensor w_scale = w_flat;
  if (w_flat.scalar_type() == at::kDouble) {
    w_scale = w_flat.to(at::kFloat);
    p2.row_scale = w_scale.const_data_ptr();
    p2.row_scale_type = GemmElem::kF32;
  }
  if (N > 0 && H > 0) {
    launch_gemm(op, p2,
                DeviceBuffers{{"h", h, false}, {"w2", w2_t, false}, {"order", order_c, false},
                              {"offsets", offsets_c, false}, {"weights", w_scale, false},
                              {"yp", yp, true}});
  }
  (void)T;
  const auto ones = at::ones({x.size(0), k}, x.options().dtype(at::kFloat));
  return unpermute_device(yp, order_c, slot, ones, launch_unpermute);
}

}  // namespace moe_ext
