// Native CPU grouped_mm_fp8 (DESIGN.md "Contract additions"): the contract's two-level sum as
// the GPU kernel computes it -- per group and 128-wide K block, one fp32 at::mm of the raw e4m3
// values (exact in fp32, so are their products: the block's partial sum has only fp32
// accumulation error), promoted with a_scale[m, kb] * b_scale[g, n / 128, kb] into an fp32
// accumulator. (Dequantizing first and running one long fp32 GEMM drifts over long K: the
// test with K = 8192 of equal-sign products fails that way.) The groups are spread over the
// intra-op threads (group_schedule.h); rows past offs[-1] are zero.
#include <ATen/ATen.h>

#include "cpu_ops.h"
#include "group_schedule.h"

namespace moe_ext {

namespace {

// a[rows, K] e4m3, a_scale[rows, KB] times b[N, K] e4m3 with b_scale[ceil(N / 128), KB], fp32.
at::Tensor block_fp8_mm(const at::Tensor& a, const at::Tensor& a_scale, const at::Tensor& b,
                        const at::Tensor& b_scale) {
  const int64_t rows = a.size(0), N = b.size(0), K = b.size(1);
  const auto A = a.to(at::kFloat), B = b.to(at::kFloat);
  const auto b_cols = b_scale.repeat_interleave(128, 0).narrow(0, 0, N);  // [N, KB]
  auto acc = at::zeros({rows, N}, a.options().dtype(at::kFloat));
  for (int64_t kb = 0, k0 = 0; k0 < K; ++kb, k0 += 128) {
    const int64_t width = std::min<int64_t>(128, K - k0);
    auto part = at::mm(A.narrow(1, k0, width), B.narrow(1, k0, width).t());
    part.mul_(a_scale.narrow(1, kb, 1)).mul_(b_cols.select(1, kb).unsqueeze(0));
    acc.add_(part);
  }
  return acc;
}

}  // namespace

at::Tensor grouped_mm_fp8_cpu(const at::Tensor& a, const at::Tensor& a_scale, const at::Tensor& b,
                              const at::Tensor& b_scale, const std::optional<at::Tensor>& offs,
                              at::ScalarType out_dtype) {
  const int64_t G = b.size(0), N = b.size(1);
  const bool batched = !offs.has_value();
  const int64_t M = batched ? a.size(1) : a.size(0);
  auto out = batched ? at::empty({G, M, N}, a.options().dtype(out_dtype))
                     : at::empty({M, N}, a.options().dtype(out_dtype));
  std::vector<int64_t> start(G + 1, 0);
  if (batched) {
    for (int64_t g = 0; g <= G; ++g) start[g] = g * M;
  } else {
    start = group_row_starts(*offs, M);
    out.narrow(0, start[G], M - start[G]).zero_();
  }
  const auto a2 = batched ? a.reshape({G * M, a.size(2)}) : a;
  const auto s2 = batched ? a_scale.reshape({G * M, a_scale.size(2)}) : a_scale;
  auto out2 = batched ? out.view({G * M, N}) : out;
  run_groups_balanced(
      G, [&](int64_t g) { return (start[g + 1] - start[g]) * N; },
      [&](int64_t g) {
        const int64_t lo = start[g], rows = start[g + 1] - lo;
        auto dst = out2.narrow(0, lo, rows);
        dst.copy_(block_fp8_mm(a2.narrow(0, lo, rows), s2.narrow(0, lo, rows), b[g], b_scale[g]));
      });
  return out;
}

}  // namespace moe_ext
