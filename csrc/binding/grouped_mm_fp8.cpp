// Binding of grouped_mm_fp8 (DeepSeek-V3 block FP8, DESIGN.md "Contract additions"): checks,
// then the native CPU op or tensors -> GroupedMmFp8Params and the FP8 grouped GEMM
// (kernels/grouped_mm_fp8.cuh) on the device target.
#include "../cpu/cpu_ops.h"
#include "../kernels/grouped_mm_fp8.h"
#include "backend.h"
#include "gemm_params.h"
#include "ops.h"

namespace moe_ext {
namespace {

constexpr int64_t blocks128(int64_t n) { return (n + kFp8ScaleBlock - 1) / kFp8ScaleBlock; }

void check_fp8_operand(const char* op, const char* name, const at::Tensor& t) {
  MOE_CHECK(op, t.scalar_type() == at::kFloat8_e4m3fn, name, " must be float8_e4m3fn, got ",
            describe(t));
}

void check_scale(const char* op, const char* name, const at::Tensor& s, std::vector<int64_t> shape,
                 const at::Tensor& a) {
  MOE_CHECK(op, s.scalar_type() == at::kFloat, name, " must be float32, got ", describe(s));
  check_same_device(op, name, s, "a", a);
  MOE_CHECK(op, s.sizes() == at::IntArrayRef(shape), name, " must be ", at::IntArrayRef(shape),
            ", got ", describe(s));
}

// Checks shared by every target; the operands' K-major layout is made here (contiguous along K).
void check_grouped_mm_fp8_args(const at::Tensor& a, const at::Tensor& a_scale, const at::Tensor& b,
                               const at::Tensor& b_scale, const std::optional<at::Tensor>& offs,
                               at::ScalarType out_dtype) {
  const char* op = "grouped_mm_fp8";
  check_fp8_operand(op, "a", a);
  check_fp8_operand(op, "b", b);
  check_same_device(op, "b", b, "a", a);
  check_dim(op, "b", b, 3);
  const int64_t G = b.size(0), N = b.size(1), K = b.size(2);
  MOE_CHECK(op, out_dtype == at::kBFloat16 || out_dtype == at::kHalf || out_dtype == at::kFloat,
            "out_dtype must be bfloat16, float16 or float32, got ", c10::toString(out_dtype));
  if (offs) {
    MOE_CHECK(op, a.dim() == 2, "a must be [M, K] when offs is given, got ", describe(a));
    check_group_offs(op, *offs, G, a, a.size(0), "M");
  } else {
    MOE_CHECK(op, a.dim() == 3 && a.size(0) == G, "a must be [G=", G,
              ", M, K] when offs is None (batched), got ", describe(a));
  }
  MOE_CHECK(op, a.size(-1) == K, "the contraction sizes of a and b differ: a is ", describe(a),
            ", b is ", describe(b), " (b is [G, N, K])");
  std::vector<int64_t> a_scale_shape(a.sizes().begin(), a.sizes().end());
  a_scale_shape.back() = blocks128(K);
  check_scale(op, "a_scale", a_scale, a_scale_shape, a);
  check_scale(op, "b_scale", b_scale, {G, blocks128(N), blocks128(K)}, a);
}

// contiguous along the last dimension (K for the operands and the scales' K blocks)
at::Tensor last_dim_unit(const at::Tensor& t) {
  return t.size(-1) <= 1 || t.stride(-1) == 1 ? t : t.contiguous();
}

// The device launch, past the checks: out = a @ bᵀ with a's rows read through
// gather = (order, top_k) when given (row r is a[order[r] / top_k]; the ragged-M form).
template <Target T>
at::Tensor grouped_mm_fp8_device(const at::Tensor& a, const at::Tensor& a_scale,
                                 const at::Tensor& b, const at::Tensor& b_scale,
                                 const std::optional<at::Tensor>& offs, at::ScalarType out_dtype,
                                 const at::Tensor* order, int64_t top_k) {
  using namespace grouped_mm_binding;
  const char* op = "grouped_mm_fp8";
  const bool batched = !offs.has_value();
  const int64_t G = b.size(0), N = b.size(1), K = b.size(2);
  const int64_t M = order != nullptr ? order->size(0) : batched ? a.size(1) : a.size(0);
  auto out = batched ? at::empty({G, M, N}, a.options().dtype(out_dtype))
                     : at::empty({M, N}, a.options().dtype(out_dtype));
  if (out.numel() == 0) return out;
  const auto ac = last_dim_unit(a), bc = last_dim_unit(b);
  const auto asc = last_dim_unit(a_scale), bsc = last_dim_unit(b_scale);
  GroupedMmFp8Params p{};
  GroupedGemmParams& g = p.gemm;
  g.form = batched ? GroupedGemmForm::kBatched : GroupedGemmForm::kRaggedM;
  g.out_type = gemm_elem(out_dtype);
  g.a = ac.const_data_ptr();
  g.a_stride_g = batched ? ac.stride(0) : 0;
  g.a_stride_m = ac.stride(ac.dim() - 2), g.a_stride_k = 1;
  g.b = bc.const_data_ptr();
  g.b_stride_g = bc.stride(0), g.b_stride_n = bc.stride(1), g.b_stride_k = 1;
  g.a_k_major = g.b_k_major = true;
  g.c = out.data_ptr();
  g.c_stride_g = batched ? out.stride(0) : 0;
  g.c_stride_m = out.stride(out.dim() - 2);
  at::Tensor offs_c, order_c;
  if (offs) {
    offs_c = offs->contiguous();
    g.offs = offs_c.const_data_ptr<int32_t>();
  }
  if (order != nullptr) {
    order_c = order->contiguous();
    g.a_gather = order_c.const_data_ptr<int32_t>();
    g.a_gather_div = static_cast<int32_t>(top_k);
  }
  g.num_groups = static_cast<int32_t>(G);
  g.m = M, g.n = N, g.k = K;
  g.stages = stages_from_env(op);
  p.mma = fp8_mma_from_env(op);
  p.a_scale = asc.const_data_ptr<float>();
  p.a_scale_stride_g = batched ? asc.stride(0) : 0;
  p.a_scale_stride_m = asc.stride(asc.dim() - 2);
  p.b_scale = bsc.const_data_ptr<float>();
  p.b_scale_stride_g = bsc.stride(0), p.b_scale_stride_n = bsc.stride(1);
  launch_on<T>(op, &launch_grouped_mm_fp8<T>, p,
               {{"a", ac, false},
                {"a_scale", asc, false},
                {"b", bc, false},
                {"b_scale", bsc, false},
                {"offs", offs_c, false},
                {"order", order_c, false},
                {"out", out, true}});
  return out;
}

}  // namespace

template <Target T>
at::Tensor grouped_mm_fp8(const at::Tensor& a, const at::Tensor& a_scale, const at::Tensor& b,
                          const at::Tensor& b_scale, const std::optional<at::Tensor>& offs,
                          at::ScalarType out_dtype) {
  const CheckScope<T> checks;
  check_grouped_mm_fp8_args(a, a_scale, b, b_scale, offs, out_dtype);
  if constexpr (T == Target::kCpu)
    return grouped_mm_fp8_cpu(a, a_scale, b, b_scale, offs, out_dtype);
  else
    return grouped_mm_fp8_device<T>(a, a_scale, b, b_scale, offs, out_dtype, nullptr, 0);
}

template <Target T>
at::Tensor grouped_mm_fp8_gathered(const at::Tensor& a, const at::Tensor& a_scale,
                                   const at::Tensor& b, const at::Tensor& b_scale,
                                   const at::Tensor& offsets, const at::Tensor& order,
                                   int64_t top_k, at::ScalarType out_dtype) {
  if constexpr (T == Target::kCpu) {  // the rows gathered first (an e4m3 row is bytes)
    const auto rows = at::floor_divide(order.to(at::kLong), top_k);
    const auto a_rows = a.view(at::kByte).index_select(0, rows).view(at::kFloat8_e4m3fn);
    return grouped_mm_fp8_cpu(a_rows, a_scale.index_select(0, rows), b, b_scale, offsets,
                              out_dtype);
  } else {
    return grouped_mm_fp8_device<T>(a, a_scale, b, b_scale, offsets, out_dtype, &order, top_k);
  }
}

MOE_EXT_INSTANTIATE(grouped_mm_fp8)
MOE_EXT_INSTANTIATE(grouped_mm_fp8_gathered)

}  // namespace moe_ext
