// Native CPU quantize_fp8 (DESIGN.md): per row and group of group_size columns, scale =
// max(amax, 1e-10) / 448 (ue8m0: rounded up to a power of two through frexp, exact), x_q =
// e4m3fn(clamp(x / scale, -448, 448)) with torch's round-to-nearest-even conversion. ATen ops
// over a [M, groups, group_size] view of x zero-padded to whole groups (the padding cannot
// raise an amax); memory-bound, vectorised by ATen's kernels.
#include <ATen/ATen.h>

#include "cpu_ops.h"

namespace moe_ext {

std::tuple<at::Tensor, at::Tensor> quantize_fp8_cpu(const at::Tensor& x, int64_t group_size,
                                                    bool ue8m0) {
  const int64_t M = x.size(0), K = x.size(1);
  const int64_t groups = (K + group_size - 1) / group_size;
  const auto xf = x.to(at::kFloat);
  auto scale = at::empty({M, groups}, x.options().dtype(at::kFloat));
  if (M > 0 && groups > 0) {
    const auto padded = at::constant_pad_nd(xf, {0, groups * group_size - K}, 0);
    const auto amax = padded.view({M, groups, group_size}).abs().amax(-1);
    scale = amax.clamp_min(1e-10) / 448.0;
    if (ue8m0) {
      const auto [mant, exp] = at::frexp(scale);
      scale = at::where(mant == 0.5, scale, at::ldexp(at::ones_like(scale), exp));
    }
  }
  const auto full = scale.repeat_interleave(group_size, 1).narrow(1, 0, K);
  auto x_q = (xf / full).clamp(-448.0, 448.0).to(at::kFloat8_e4m3fn);
  return {x_q, scale.contiguous()};
}

}  // namespace moe_ext
