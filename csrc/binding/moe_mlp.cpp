// Binding of moe_mlp, the expert MLP of an MoE layer over expert-sorted assignments (DESIGN.md,
// op table):
//   h  = act(x[order // k] @ w1[e]ᵀ)            per expert e, gated: act(gate) * up
//   yp = weights[order] * (h @ w2[e]ᵀ)           [N, H], rows past offsets[-1] zero
//   y  = combine(yp) over each token's kept assignments, in j order (deterministic)
// CPU: the native op (cpu/moe_mlp_cpu.cpp, fused per expert). Device targets: bf16/fp16 with a
// row-major x run the fused path, two launches of the grouped GEMM kernel plus the combine:
//   1. h[N, I]  = act(x[order // k] @ w1ᵀ)   A rows gathered through `order` inside the kernel's
//                 loads (no xp buffer); gated activations read gate and up column blocks into
//                 one tile and write act(gate) * up from the epilogue (no [N, 2I] buffer)
//   2. yp[N, H] = weights[order] * (h @ w2ᵀ)  routing weight applied in the epilogue
//   3. y[T, H]  = sum_j yp[slot[t*k + j]]     the unpermute kernel (gather, j order, fp32)
// Memory: h and yp (N x (I + H) elements) besides the output. Everything else (fp32, a strided
// x) takes the composite path through the same target's ops (permute -> grouped_mm -> activation
// -> grouped_mm -> unpermute).
#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <string>

#include "../cpu/cpu_ops.h"
#include "../kernels/grouped_gemm/grouped_gemm.h"
#include "../kernels/mlp_backward_rows.h"
#include "backend.h"
#include "gemm_params.h"
#include "moe_mlp_args.h"
#include "ops.h"

namespace moe_ext {
namespace {

template <Target T>
at::Tensor moe_mlp_composite(const at::Tensor& x, const at::Tensor& w1, const at::Tensor& w2,
                             const at::Tensor& weights, const at::Tensor& order,
                             const at::Tensor& slot, const at::Tensor& offsets,
                             const MlpActivation& act, at::Tensor* h_out) {
  const int64_t k = weights.size(1);
  const auto xp = permute<T>(x, order, slot, k);
  const auto h = grouped_mm<T>(xp, w1.transpose(-2, -1), offsets, std::nullopt, std::nullopt);
  if (h_out != nullptr) *h_out = h;
  const auto z = grouped_mm<T>(apply_mlp_activation(h, act), w2.transpose(-2, -1), offsets,
                               std::nullopt, std::nullopt);
  return unpermute<T>(z, order, slot, weights);
}

// The fused device path (see the top of the file), past the checks.
template <Target T>
at::Tensor moe_mlp_fused(const at::Tensor& x, const at::Tensor& w1, const at::Tensor& w2,
                         const at::Tensor& weights, const at::Tensor& order, const at::Tensor& slot,
                         const at::Tensor& offsets, const MlpActivation& act, int64_t I,
                         at::Tensor* h_out) {
  using namespace grouped_mm_binding;
  const char* op = "moe_mlp";
  const int64_t H = x.size(1), k = weights.size(1), N = order.size(0);
  const int64_t E = w1.size(0);
  const auto order_c = order.contiguous(), offsets_c = offsets.contiguous();
  const auto w_flat = weights.contiguous().view({-1});
  // h_out (moe_mlp_save_h): the first GEMM writes h = x w1ᵀ itself ([N, 2I or I], kept for the
  // backward) and the activation runs between the GEMMs; else act(h) straight from its epilogue
  const int64_t h_cols = h_out != nullptr ? w1.size(1) : I;
  auto h = at::empty({N, h_cols}, x.options());
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
  const auto w1_t = fill(p1, w1.transpose(-2, -1), h_cols, H);
  p1.a = x.const_data_ptr();
  p1.a_stride_m = x.stride(0), p1.a_stride_k = 1;
  p1.a_gather = order_c.const_data_ptr<int32_t>();
  p1.a_gather_div = static_cast<int32_t>(k);
  p1.activation = h_out != nullptr ? GemmActivation::kNone : act.act;
  p1.gated = h_out == nullptr && act.gated;
  p1.act_limit = static_cast<float>(act.limit);
  apply_gemm_tuning(p1);
  p1.c = h.data_ptr();
  p1.c_stride_m = h_cols;
  if (N > 0 && I > 0) {
    launch_on<T>(op, &launch_grouped_gemm<T>, p1,
                 {{"x", x, false},
                  {"w1", w1_t, false},
                  {"order", order_c, false},
                  {"offsets", offsets_c, false},
                  {"h", h, true}});
  }

  at::Tensor a = h;  // act(h) [N, I]
  if (h_out != nullptr) {
    *h_out = h;
    a = apply_mlp_activation(h, act).contiguous();
  }
  GroupedGemmParams p2{};
  const auto w2_t = fill(p2, w2.transpose(-2, -1), H, I);
  p2.a = a.const_data_ptr();
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
    launch_on<T>(op, &launch_grouped_gemm<T>, p2,
                 {{"h", a, false},
                  {"w2", w2_t, false},
                  {"order", order_c, false},
                  {"offsets", offsets_c, false},
                  {"weights", w_scale, false},
                  {"yp", yp, true}});
  }
  const auto ones = at::ones({x.size(0), k}, x.options().dtype(at::kFloat));
  return unpermute<T>(yp, order_c, slot, ones);
}

// The device targets' forward (past the checks): the fused path for bf16/fp16 with a row-major
// x, else the composite; h_out (moe_mlp_save_h): h = x[order // k] @ w1ᵀ is kept too.
template <Target T>
at::Tensor moe_mlp_device(const char* op, const at::Tensor& x, const at::Tensor& w1,
                          const at::Tensor& w2, const at::Tensor& weights, const at::Tensor& order,
                          const at::Tensor& slot, const at::Tensor& offsets,
                          const MlpActivation& act, int64_t I, at::Tensor* h_out) {
  MOE_CHECK(op, x.scalar_type() != at::kDouble, "float64 is supported on CPU tensors only");
  const bool fused = (x.scalar_type() == at::kBFloat16 || x.scalar_type() == at::kHalf) &&
                     (x.stride(1) == 1 || x.size(1) <= 1) && weights.size(1) >= 1;
  if (!fused) return moe_mlp_composite<T>(x, w1, w2, weights, order, slot, offsets, act, h_out);
  return moe_mlp_fused<T>(x, w1, w2, weights, order, slot, offsets, act, I, h_out);
}

// The activation and its limit, checked (op: the error's op name).
MlpActivation checked_activation(const char* op, c10::string_view activation,
                                 std::optional<double> activation_limit) {
  MlpActivation act = parse_mlp_activation("moe_mlp", activation);
  if (activation_limit.has_value()) {
    const double lim = *activation_limit;
    MOE_CHECK(op, act.gated,
              "activation_limit clamps the gate and up halves of a gated activation "
              "(swiglu, geglu, geglu_tanh); activation is '",
              std::string(activation), "'");
    MOE_CHECK(op, lim > 0 && std::isfinite(lim),
              "activation_limit must be a positive finite number, got ", lim);
    act.limit = lim;
  }
  return act;
}

// The backward on a device target (moe_mlp_backward_cpu.cpp's formulas, the steps as that
// target's ops): 5 grouped GEMMs (4 with h given) and no second forward GEMM.
template <Target T>
std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor> moe_mlp_backward_device(
    const at::Tensor& grad_y, const at::Tensor& x, const at::Tensor& w1, const at::Tensor& w2,
    const at::Tensor& weights, const at::Tensor& order, const at::Tensor& slot,
    const at::Tensor& offsets, const MlpActivation& act, const std::optional<at::Tensor>& h_in) {
  const int64_t k = weights.size(1);
  const auto acc = at::kFloat;
  const auto none = std::nullopt;
  // x[order / k] is read through order by the dW1 GEMM (bf16/fp16, the Ampere kernel); xp is
  // materialised to recompute h, for fp32 (the FFMA kernel does not gather) and on sm_90
  // (not where the Hopper kernel runs: its TMA loads cannot gather rows, and on sm_90 the TMA
  // kernel on a permuted copy is expected to beat the Ampere kernel gathering -- unmeasured)
  const bool sm80 = grouped_mm_binding::path_from_env("moe_mlp_backward") == kGemmPathSm80;
  const bool gather_x =
      x.scalar_type() != at::kFloat && x.stride(1) == 1 && (sm80 || !grouped_gemm_on_sm90<T>());
  const at::Tensor xp =
      !h_in.has_value() || !gather_x ? permute<T>(x, order, slot, k) : at::Tensor();
  const auto h = h_in.has_value()
                     ? h_in->to(x.scalar_type())
                     : grouped_mm<T>(xp, w1.transpose(-2, -1), offsets, none, none);  // [N, 2I]
  const auto g = permute<T>(grad_y.to(x.scalar_type()), order, slot, k);              // [N, H]
  const auto da_raw = grouped_mm<T>(g, w2, offsets, none, none);                      // dA' [N, I]
  // routing weight of each sorted row (dropped rows: g and dA' are zero there)
  const auto order_l = order.to(at::kLong);
  const auto w_sorted = weights.reshape({-1}).index_select(0, order_l).to(acc).contiguous();
  // The elementwise steps -- a = act(h), <dA'_i, a_i>, dh = act'(h) (w dA'), dz = w g -- in one
  // pass over the rows (kernels/mlp_backward_rows.cuh): no fp32 temporaries
  const int64_t N = order.size(0), I = act.gated ? h.size(1) / 2 : h.size(1);
  auto a = at::empty({N, I}, x.options());
  auto dh = at::empty({N, h.size(1)}, x.options());
  auto dz = at::empty({N, x.size(1)}, x.options());
  auto dw_sorted = at::empty({N}, x.options().dtype(acc));
  const auto hc = h.stride(1) == 1 ? h : h.contiguous();
  const auto dac = da_raw.stride(1) == 1 ? da_raw : da_raw.contiguous();
  const auto gc = g.stride(1) == 1 ? g : g.contiguous();
  MlpBackwardRowsParams p{};
  p.h = hc.const_data_ptr(), p.h_stride = hc.stride(0);
  p.da = dac.const_data_ptr(), p.da_stride = dac.stride(0);
  p.g = gc.const_data_ptr(), p.g_stride = gc.stride(0);
  p.w = w_sorted.const_data_ptr<float>();
  p.a = a.data_ptr(), p.dh = dh.data_ptr(), p.dz = dz.data_ptr();
  p.dw = dw_sorted.data_ptr<float>();
  p.rows = N, p.inter = I, p.hidden = x.size(1);
  p.dtype = float_dtype(x);
  p.act = act.act, p.gated = act.gated, p.limit = static_cast<float>(act.limit);
  launch_on<T>("moe_mlp_backward", &launch_mlp_backward_rows<T>, p,
               {{"h", hc, false},
                {"dA'", dac, false},
                {"g", gc, false},
                {"w", w_sorted, false},
                {"a", a, true},
                {"dh", dh, true},
                {"dz", dz, true},
                {"dw", dw_sorted, true}});
  auto dw2 = grouped_mm<T>(dz.t(), a, offsets, none, none);                     // [E, H, I]
  auto dw1 = gather_x ? grouped_mm_gathered_b<T>(dh.t(), x, offsets, order, k)  // [E, 2I, H]
                      : grouped_mm<T>(dh.t(), xp, offsets, none, none);
  const auto dxp = grouped_mm<T>(dh, w1, offsets, none, none);  // [N, H]
  const auto ones = at::ones({x.size(0), k}, x.options().dtype(at::kFloat));
  auto dx = unpermute<T>(dxp, order, slot, ones);
  // order is a permutation of the N assignments: a scatter over all rows needs no kept count
  // (no host sync); dropped rows contribute their zero
  auto dweights = at::empty({weights.numel()}, weights.options().dtype(acc));
  dweights.index_copy_(0, order_l, dw_sorted);
  return {dx, dw1, dw2, dweights.view(weights.sizes()).to(weights.scalar_type())};
}

}  // namespace

template <Target T>
at::Tensor moe_mlp(const at::Tensor& x, const at::Tensor& w1, const at::Tensor& w2,
                   const at::Tensor& weights, const at::Tensor& order, const at::Tensor& slot,
                   const at::Tensor& offsets, c10::string_view activation,
                   std::optional<double> activation_limit) {
  const CheckScope<T> checks;
  const MlpActivation act = checked_activation("moe_mlp", activation, activation_limit);
  const int64_t I =
      check_moe_mlp_args("moe_mlp", x, w1, w2, weights, order, slot, offsets, act, false);
  if constexpr (T == Target::kCpu)
    return moe_mlp_cpu(x, w1, w2, weights, order, slot, offsets, act);
  else
    return moe_mlp_device<T>("moe_mlp", x, w1, w2, weights, order, slot, offsets, act, I, nullptr);
}

template <Target T>
std::tuple<at::Tensor, at::Tensor> moe_mlp_save_h(const at::Tensor& x, const at::Tensor& w1,
                                                  const at::Tensor& w2, const at::Tensor& weights,
                                                  const at::Tensor& order, const at::Tensor& slot,
                                                  const at::Tensor& offsets,
                                                  c10::string_view activation,
                                                  std::optional<double> activation_limit) {
  const CheckScope<T> checks;
  const MlpActivation act = checked_activation("moe_mlp_save_h", activation, activation_limit);
  const int64_t I =
      check_moe_mlp_args("moe_mlp", x, w1, w2, weights, order, slot, offsets, act, false);
  at::Tensor h;
  at::Tensor y;
  if constexpr (T == Target::kCpu)
    y = moe_mlp_cpu(x, w1, w2, weights, order, slot, offsets, act, &h);
  else
    y = moe_mlp_device<T>("moe_mlp_save_h", x, w1, w2, weights, order, slot, offsets, act, I, &h);
  return {y, h};
}

template <Target T>
std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor> moe_mlp_backward(
    const at::Tensor& grad_y, const at::Tensor& x, const at::Tensor& w1, const at::Tensor& w2,
    const at::Tensor& weights, const at::Tensor& order, const at::Tensor& slot,
    const at::Tensor& offsets, c10::string_view activation, std::optional<double> activation_limit,
    const std::optional<at::Tensor>& h) {
  const CheckScope<T> checks;
  const char* op = "moe_mlp_backward";
  const MlpActivation act = checked_activation(op, activation, activation_limit);
  check_moe_mlp_args("moe_mlp", x, w1, w2, weights, order, slot, offsets, act, false);
  check_float(op, "grad_y", grad_y, true);
  check_same_device(op, "grad_y", grad_y, "x", x);
  MOE_CHECK(op, grad_y.sizes() == x.sizes(), "grad_y must have x's shape ", x.sizes(), ", got ",
            describe(grad_y));
  if (h.has_value()) {
    check_same_device(op, "h", *h, "x", x);
    MOE_CHECK(op, h->dim() == 2 && h->size(0) == order.size(0) && h->size(1) == w1.size(1),
              "h must be [N=", order.size(0), ", ", w1.size(1), "] (x[order // k] @ w1ᵀ), got ",
              describe(*h));
  }
  if constexpr (T == Target::kCpu) {
    return moe_mlp_backward_cpu(grad_y, x, w1, w2, weights, order, slot, offsets, act, h);
  } else {
    MOE_CHECK(op, x.scalar_type() != at::kDouble, "float64 is supported on CPU tensors only");
    return moe_mlp_backward_device<T>(grad_y, x, w1, w2, weights, order, slot, offsets, act, h);
  }
}

MOE_EXT_INSTANTIATE(moe_mlp)
MOE_EXT_INSTANTIATE(moe_mlp_save_h)
MOE_EXT_INSTANTIATE(moe_mlp_backward)

}  // namespace moe_ext
