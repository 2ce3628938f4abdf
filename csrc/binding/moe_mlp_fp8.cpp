// Binding of moe_mlp_fp8 (DESIGN.md "Contract additions"): moe_mlp with block-FP8 experts, as
// the same target's ops:
//   1. x_q, x_s = quantize_fp8(x)            per token (quantizing each gathered copy of a row
//                                            gives the same values: one pass over T rows, not N)
//   2. h[N, 2I] = x_q[order // k] @ w1ᵀ      grouped_mm_fp8 gathering the rows (and their
//                                            scales) in the kernel's loads; out in x's dtype
//   3. a_q, a_s = quantize_fp8(act(h))       act in fp32 from h (x's dtype), quantized from fp32:
//                                            on device targets inside the quantization kernel
//                                            (one read of h, no fp32 tensor); on CPU torch ops
//                                            in row chunks (fp32 temporaries <= 16 K x 2I)
//   4. z[N, H]  = a_q @ w2ᵀ                  grouped_mm_fp8, out in x's dtype
//   5. y[T, H]  = unpermute(z, weights)      fp32 combine in j order
// On CPU the rows of step 2 are gathered by index_select first. Dropped rows (past offsets[-1])
// are zero in h and z. Not fused into the first GEMM's epilogue yet: the activation +
// quantization is its own pass over h (read once, 1 byte + 1/128 scale written per element).
#include <algorithm>
#include <string>
#include <tuple>

#include "../cpu/cpu_ops.h"
#include "../kernels/grouped_mm_fp8.h"
#include "backend.h"
#include "moe_mlp_args.h"
#include "ops.h"

namespace moe_ext {
namespace {

constexpr int64_t blocks128(int64_t n) { return (n + kFp8ScaleBlock - 1) / kFp8ScaleBlock; }
constexpr int64_t kActivationChunkRows = 16384;

MlpActivation check_moe_mlp_fp8_args(const char* op, const at::Tensor& x, const at::Tensor& w1,
                                     const at::Tensor& w1_scale, const at::Tensor& w2,
                                     const at::Tensor& w2_scale, const at::Tensor& weights,
                                     const at::Tensor& order, const at::Tensor& slot,
                                     const at::Tensor& offsets, c10::string_view activation) {
  const MlpActivation act = parse_mlp_activation(op, activation);
  MOE_CHECK(op, x.scalar_type() == at::kBFloat16 || x.scalar_type() == at::kHalf,
            "x must be bfloat16 or float16, got ", describe(x));
  const int64_t I = check_moe_mlp_args(op, x, w1, w2, weights, order, slot, offsets, act, true);
  const int64_t E = w1.size(0), H = x.size(1);
  for (auto [name, s, rows, cols] : {std::tuple{"w1_scale", &w1_scale, w1.size(1), H},
                                     std::tuple{"w2_scale", &w2_scale, H, I}}) {
    MOE_CHECK(op, s->scalar_type() == at::kFloat, name, " must be float32, got ", describe(*s));
    check_same_device(op, name, *s, "x", x);
    MOE_CHECK(op,
              s->dim() == 3 && s->size(0) == E && s->size(1) == blocks128(rows) &&
                  s->size(2) == blocks128(cols),
              name, " must be [", E, ", ", blocks128(rows), ", ", blocks128(cols),
              "] (one scale per 128 x 128 block), got ", describe(*s));
  }
  return act;
}

template <Target T>
std::tuple<at::Tensor, at::Tensor, at::Tensor> moe_mlp_fp8_forward(
    const at::Tensor& x, const at::Tensor& w1, const at::Tensor& w1_scale, const at::Tensor& w2,
    const at::Tensor& w2_scale, const at::Tensor& weights, const at::Tensor& order,
    const at::Tensor& slot, const at::Tensor& offsets, const MlpActivation& act) {
  const int64_t k = weights.size(1), N = order.size(0);
  const auto dtype = x.scalar_type();
  const auto [x_q, x_s] = quantize_fp8<T>(x, kFp8ScaleBlock, "float");
  const auto h =
      grouped_mm_fp8_gathered<T>(x_q, x_s, w1, w1_scale, offsets, order, k, dtype);  // [N, 2I]
  at::Tensor a_q, a_s;
  if constexpr (T == Target::kCpu) {  // torch ops in row chunks
    const int64_t I = act.gated ? h.size(1) / 2 : h.size(1);
    a_q = at::empty({N, I}, x.options().dtype(at::kFloat8_e4m3fn));
    a_s = at::empty({N, blocks128(I)}, x.options().dtype(at::kFloat));
    for (int64_t r0 = 0; r0 < N; r0 += kActivationChunkRows) {
      const int64_t n = std::min(kActivationChunkRows, N - r0);
      const auto a = apply_mlp_activation(h.narrow(0, r0, n).to(at::kFloat), act);  // fp32
      const auto [q, s] = quantize_fp8<T>(a, kFp8ScaleBlock, "float");
      a_q.view(at::kByte).narrow(0, r0, n).copy_(q.view(at::kByte));
      a_s.narrow(0, r0, n).copy_(s);
    }
  } else {  // the activation inside the quantization kernel: one read of h
    std::tie(a_q, a_s) = quantize_fp8_activated<T>(h, act);
  }
  auto z = grouped_mm_fp8<T>(a_q, a_s, w2, w2_scale, offsets, dtype);  // [N, H]
  auto y = unpermute<T>(z, order, slot, weights);
  return {y, h, z};
}

}  // namespace

template <Target T>
at::Tensor moe_mlp_fp8(const at::Tensor& x, const at::Tensor& w1, const at::Tensor& w1_scale,
                       const at::Tensor& w2, const at::Tensor& w2_scale, const at::Tensor& weights,
                       const at::Tensor& order, const at::Tensor& slot, const at::Tensor& offsets,
                       c10::string_view activation) {
  const CheckScope<T> checks;
  const MlpActivation act = check_moe_mlp_fp8_args("moe_mlp_fp8", x, w1, w1_scale, w2, w2_scale,
                                                   weights, order, slot, offsets, activation);
  return std::get<0>(
      moe_mlp_fp8_forward<T>(x, w1, w1_scale, w2, w2_scale, weights, order, slot, offsets, act));
}

template <Target T>
std::tuple<at::Tensor, at::Tensor, at::Tensor> moe_mlp_fp8_save(
    const at::Tensor& x, const at::Tensor& w1, const at::Tensor& w1_scale, const at::Tensor& w2,
    const at::Tensor& w2_scale, const at::Tensor& weights, const at::Tensor& order,
    const at::Tensor& slot, const at::Tensor& offsets, c10::string_view activation) {
  const CheckScope<T> checks;
  const MlpActivation act = check_moe_mlp_fp8_args("moe_mlp_fp8", x, w1, w1_scale, w2, w2_scale,
                                                   weights, order, slot, offsets, activation);
  return moe_mlp_fp8_forward<T>(x, w1, w1_scale, w2, w2_scale, weights, order, slot, offsets, act);
}

MOE_EXT_INSTANTIATE(moe_mlp_fp8)
MOE_EXT_INSTANTIATE(moe_mlp_fp8_save)

}  // namespace moe_ext
