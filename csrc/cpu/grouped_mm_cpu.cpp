// Native CPU grouped GEMM: torch._grouped_mm's four forms as one at::mm per group, the groups
// spread over the intra-op threads by run_groups_balanced (group_schedule.h).
//
// Rows/columns past offs[-1] are zeroed, K = 0 groups get zeros (or their bias); each group's
// product is written through a view of the output: at::mm_out when the result needs no extra
// rounding step, otherwise (bias, or out_dtype other than the input dtype) the product is formed
// in fp32 (fp64 for fp64), the bias added there, and the sum rounded once into the output; so is
// a bf16/fp16 product on a CPU without native reduced-precision GEMM (mm_precision.h).
#include <ATen/ATen.h>
#include <ATen/core/dispatch/Dispatcher.h>

#include <vector>

#include "cpu_ops.h"
#include "group_schedule.h"
#include "mm_precision.h"

namespace moe_ext {

bool cpu_mm_is_native(at::ScalarType dt) {
  auto query = [](const char* name) {
    try {
      return c10::Dispatcher::singleton().findSchemaOrThrow(name, "").typed<bool()>().call();
    } catch (const c10::Error&) {
      return false;  // a torch build without oneDNN
    }
  };
  static const bool bf16 = query("mkldnn::_is_mkldnn_bf16_supported");
  static const bool fp16 = query("mkldnn::_is_mkldnn_fp16_supported");
  return dt == at::kBFloat16 ? bf16 : dt == at::kHalf ? fp16 : true;
}

at::Tensor grouped_mm_cpu(GroupedForm form, const at::Tensor& a, const at::Tensor& b,
                          const std::optional<at::Tensor>& offs,
                          const std::optional<at::Tensor>& bias,
                          std::optional<at::ScalarType> out_dtype) {
  const auto od = out_dtype.value_or(a.scalar_type());
  const auto acc = a.scalar_type() == at::kDouble ? at::kDouble : at::kFloat;

  // Every element of out is written once: by its group's product (zeros where K = 0), or below
  // for rows/columns past offs[-1]. (at::zeros of a [G, M, N] weight gradient costs more than
  // its GEMMs at MoE decode sizes.)
  at::Tensor out;
  switch (form) {
    case GroupedForm::k2Dx3D: out = at::empty({a.size(0), b.size(2)}, a.options().dtype(od)); break;
    case GroupedForm::k3Dx2D: out = at::empty({a.size(1), b.size(1)}, a.options().dtype(od)); break;
    case GroupedForm::k2Dx2D:
      out = at::empty({offs->size(0), a.size(0), b.size(1)}, a.options().dtype(od));
      break;
    case GroupedForm::k3Dx3D:
      out = at::empty({a.size(0), a.size(1), b.size(2)}, a.options().dtype(od));
      break;
  }
  const int64_t G = form == GroupedForm::k3Dx3D ? a.size(0) : offs->size(0);
  std::vector<int64_t> ends(G);
  if (offs) {
    auto o = offs->to(at::kLong).contiguous();
    std::copy_n(o.const_data_ptr<int64_t>(), G, ends.begin());
  }
  if (form == GroupedForm::k2Dx3D || form == GroupedForm::k3Dx2D) {  // past offs[-1]: zeros
    const int dim = form == GroupedForm::k2Dx3D ? 0 : 1;
    const int64_t end = G > 0 ? ends[G - 1] : 0;
    out.narrow(dim, end, out.size(dim) - end).zero_();
  }
  const bool direct = !bias && od == a.scalar_type() && cpu_mm_is_native(a.scalar_type());

  // the ragged extent of group g: [lo, lo + len)
  auto group_lo = [&](int64_t g) { return g == 0 || !offs ? int64_t{0} : ends[g - 1]; };
  auto group_len = [&](int64_t g) { return offs ? ends[g] - group_lo(g) : int64_t{0}; };
  auto run_group = [&](int64_t g) {
    const int64_t lo = group_lo(g), len = group_len(g);
    at::Tensor a_g, b_g, out_g, bias_g;
    switch (form) {
      case GroupedForm::k2Dx3D:  // rows [lo, lo+len) of a and out use b[g]
        a_g = a.narrow(0, lo, len), b_g = b[g], out_g = out.narrow(0, lo, len);
        if (bias) bias_g = (*bias)[g];
        break;
      case GroupedForm::k3Dx2D:  // columns [lo, lo+len) of b and out use a[g]
        a_g = a[g], b_g = b.narrow(1, lo, len), out_g = out.narrow(1, lo, len);
        if (bias) bias_g = (*bias)[g].narrow(0, lo, len);
        break;
      case GroupedForm::k2Dx2D:  // contraction over k in [lo, lo+len) into out[g]
        a_g = a.narrow(1, lo, len), b_g = b.narrow(0, lo, len), out_g = out[g];
        if (bias) bias_g = (*bias)[g];
        break;
      case GroupedForm::k3Dx3D:
        a_g = a[g], b_g = b[g], out_g = out[g];
        if (bias) bias_g = (*bias)[g];
        break;
    }
    if (out_g.numel() == 0) return;
    if (direct && a_g.size(1) > 0) {
      at::mm_out(out_g, a_g, b_g);
      return;
    }
    auto prod = at::mm(a_g.to(acc), b_g.to(acc));
    if (bias) prod.add_(bias_g.to(acc));
    out_g.copy_(prod);
  };
  // cost of group g: its multiply-adds + its outputs (so K = 0 groups are written too)
  auto work = [&](int64_t g) -> int64_t {
    const int64_t len = group_len(g);
    switch (form) {
      case GroupedForm::k2Dx3D: return len * b.size(2) * (a.size(1) + 1);
      case GroupedForm::k3Dx2D: return len * a.size(1) * (a.size(2) + 1);
      case GroupedForm::k2Dx2D: return a.size(0) * b.size(1) * (len + 1);
      default: return a.size(1) * b.size(2) * (a.size(2) + 1);
    }
  };
  run_groups_balanced(G, work, run_group);
  return out;
}

}  // namespace moe_ext
