// Binding of grouped_mm (torch._grouped_mm's four forms with optional per-group bias): checks,
// then the native CPU op or tensors -> GroupedGemmParams (form, strides, operand majors, tuning)
// and the grouped GEMM (kernels/grouped_gemm/) on the device target.
#include "../cpu/cpu_ops.h"
#include "../kernels/grouped_gemm/grouped_gemm.h"
#include "backend.h"
#include "gemm_params.h"
#include "ops.h"

namespace moe_ext {
namespace {

// b's rows read through a sorted order (grouped_mm_gathered_b): row k is b[order[k] / top_k].
struct BGather {
  at::Tensor order;  // [K] int32
  int64_t top_k;
};

// The device path, past the checks shared with the CPU op.
template <Target T>
at::Tensor grouped_mm_device(GroupedForm form, const at::Tensor& a, const at::Tensor& b,
                             const std::optional<at::Tensor>& offs,
                             const std::optional<at::Tensor>& bias,
                             std::optional<at::ScalarType> out_dtype,
                             const BGather* b_gather = nullptr) {
  using namespace grouped_mm_binding;
  const char* op = "grouped_mm";
  MOE_CHECK(op, a.scalar_type() != at::kDouble,
            "float64 is supported on CPU tensors only, got a: ", describe(a));
  const auto od = out_dtype.value_or(a.scalar_type());
  MOE_CHECK(op, od != at::kDouble, "out_dtype=float64 is supported on CPU tensors only");
  if (bias) {
    MOE_CHECK(op, bias->scalar_type() != at::kDouble,
              "float64 bias is supported on CPU tensors only, got bias: ", describe(*bias));
  }

  GroupedGemmParams p{};
  const Operand A = as_operand(a), B = as_operand(b);
  at::Tensor out;
  switch (form) {
    case GroupedForm::k2Dx3D:
      p.form = GroupedGemmForm::kRaggedM;
      p.m = a.size(0), p.k = a.size(1), p.n = b.size(2),
      p.num_groups = static_cast<int32_t>(b.size(0));
      out = at::empty({p.m, p.n}, a.options().dtype(od));
      break;
    case GroupedForm::k3Dx2D:
      p.form = GroupedGemmForm::kRaggedN;
      p.m = a.size(1), p.k = a.size(2), p.n = b.size(1),
      p.num_groups = static_cast<int32_t>(a.size(0));
      out = at::empty({p.m, p.n}, a.options().dtype(od));
      break;
    case GroupedForm::k2Dx2D:
      p.form = GroupedGemmForm::kRaggedK;
      p.m = a.size(0), p.k = a.size(1), p.n = b.size(1),
      p.num_groups = static_cast<int32_t>(offs->size(0));
      out = at::empty({p.num_groups, p.m, p.n}, a.options().dtype(od));
      break;
    case GroupedForm::k3Dx3D:
      p.form = GroupedGemmForm::kBatched;
      p.m = a.size(1), p.k = a.size(2), p.n = b.size(2),
      p.num_groups = static_cast<int32_t>(a.size(0));
      out = at::empty({p.num_groups, p.m, p.n}, a.options().dtype(od));
      break;
  }
  if (out.numel() == 0) return out;

  p.in_type = gemm_elem(a.scalar_type());
  p.out_type = gemm_elem(od);
  p.a = A.t.const_data_ptr();
  p.a_stride_g = a.dim() == 3 ? A.t.stride(0) : 0;
  p.a_k_major = A.cols_unit;
  p.a_stride_m = stride_of(A, A.t.dim() - 2, !A.cols_unit);
  p.a_stride_k = stride_of(A, A.t.dim() - 1, A.cols_unit);
  p.b = B.t.const_data_ptr();
  p.b_stride_g = b.dim() == 3 ? B.t.stride(0) : 0;
  p.b_k_major = !B.cols_unit;  // b is (k, n): k-major when its rows dim has unit stride
  p.b_stride_k = stride_of(B, B.t.dim() - 2, !B.cols_unit);
  p.b_stride_n = stride_of(B, B.t.dim() - 1, B.cols_unit);
  p.c = out.data_ptr();
  p.c_stride_g = out.dim() == 3 ? out.stride(0) : 0;
  p.c_stride_m = out.stride(out.dim() - 2);
  at::Tensor offs_c, bias_c, order_c;
  if (b_gather != nullptr) {
    order_c = b_gather->order.contiguous();
    p.b_gather = order_c.const_data_ptr<int32_t>();
    p.b_gather_div = static_cast<int32_t>(b_gather->top_k);
    p.b_gather_rows = b.size(0);
    p.k = order_c.size(0);  // K is the gathered row count, not b's
  }
  if (offs) {
    offs_c = offs->contiguous();
    p.offs = offs_c.const_data_ptr<int32_t>();
  }
  if (bias) {
    bias_c = bias->stride(1) == 1 ? *bias : bias->contiguous();
    p.bias = bias_c.const_data_ptr();
    p.bias_type = gemm_elem(bias_c.scalar_type());
    p.bias_stride_g = bias_c.stride(0);
  }
  p.config = config_from_env(op);
  p.stages = stages_from_env(op);
  p.path = path_from_env(op);
  apply_gemm_tuning(p);
  const at::Tensor workspace = gemm_workspace(p, a.options());
  launch_on<T>(op, &launch_grouped_gemm<T>, p,
               {{"a", A.t, false},
                {"b", B.t, false},
                {"order", order_c, false},
                {"offs", offs_c, false},
                {"bias", bias_c, false},
                {"out", out, true},
                {"workspace", workspace, true}});
  return out;
}

}  // namespace

template <Target T>
at::Tensor grouped_mm(const at::Tensor& a, const at::Tensor& b,
                      const std::optional<at::Tensor>& offs, const std::optional<at::Tensor>& bias,
                      std::optional<at::ScalarType> out_dtype) {
  const CheckScope<T> checks;
  const GroupedForm form = check_grouped_mm_args(a, b, offs, bias, out_dtype);
  if constexpr (T == Target::kCpu) {
    return grouped_mm_cpu(form, a, b, offs, bias, out_dtype);
  } else {
    return grouped_mm_device<T>(form, a, b, offs, bias, out_dtype);
  }
}

template <Target T>
at::Tensor grouped_mm_gathered_b(const at::Tensor& a, const at::Tensor& x,
                                 const at::Tensor& offsets, const at::Tensor& order,
                                 int64_t top_k) {
  static_assert(T != Target::kCpu, "the CPU backward gathers per expert itself");
  MOE_CHECK("grouped_mm", a.size(1) == order.size(0) && x.stride(1) == 1,
            "a gathered B needs a[M, K = len(order)] and a row-major x");
  const BGather g{order, top_k};
  return grouped_mm_device<T>(GroupedForm::k2Dx2D, a, x, offsets, std::nullopt, std::nullopt, &g);
}

MOE_EXT_INSTANTIATE(grouped_mm)
MOE_EXT_INSTANTIATE_DEVICE(grouped_mm_gathered_b)

}  // namespace moe_ext
