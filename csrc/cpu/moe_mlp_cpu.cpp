// Native CPU moe_mlp, fused per expert: for expert e, gather its rows of x (x[order[i] / k] for
// the sorted rows i of the expert), h = xe @ w1[e]ᵀ, a = act(h) (gated: act(gate) * up, in
// fp32), z = a @ w2[e]ᵀ written into its rows of yp[N, H]; then the weighted unpermute (fp32
// accumulation in j order, deterministic).
//
// Why not the composite of the CPU ops (permute -> grouped_mm -> act -> grouped_mm -> unpermute):
// at MoE shapes each expert gets few rows (Qwen3-30B-A3B at T = 1024: 64), and a multithreaded
// at::mm of 64 rows spends much of its time forking and joining threads and streaming the whole
// x/h buffers between the stages. Here each expert's chain runs on one thread with its rows
// cache-resident, scheduled by run_groups_balanced (group_schedule.h: largest first from a shared
// counter; an expert too big to balance runs alone with every thread in its GEMMs).
// bf16/fp16 GEMMs run natively where oneDNN supports them (mm_precision.h), in fp32 elsewhere;
// each stage rounds to the input dtype as the composite path does. With h_out (moe_mlp_save_h,
// the training forward that keeps h for moe_mlp_backward) each expert's h rows are also copied
// into an [N, 2I or I] buffer in x's dtype.
#include <ATen/ATen.h>

#include <algorithm>
#include <vector>

#include "cpu_ops.h"
#include "group_schedule.h"
#include "mm_precision.h"

namespace moe_ext {

at::Tensor moe_mlp_cpu(const at::Tensor& x, const at::Tensor& w1, const at::Tensor& w2,
                       const at::Tensor& weights, const at::Tensor& order, const at::Tensor& slot,
                       const at::Tensor& offsets, const MlpActivation& act, at::Tensor* h_out) {
  const int64_t E = w1.size(0), H = x.size(1), k = weights.size(1), N = order.size(0);
  const auto dtype = x.scalar_type();
  const auto compute = cpu_mm_is_native(dtype) ? dtype : at::kFloat;

  const std::vector<int64_t> start =
      group_row_starts(offsets, N);  // expert e: [start[e], start[e + 1])
  // x row of each sorted row (order entries in [0, N): checked by the binding)
  const auto src_rows = at::div(order.to(at::kLong), k, "floor");
  auto yp = at::empty({N, H}, x.options());
  if (start[E] < N) yp.narrow(0, start[E], N - start[E]).zero_();  // dropped: never read
  if (h_out != nullptr) {  // kept for the backward; its dropped rows are zeros
    *h_out = at::empty({N, w1.size(1)}, x.options());
    if (start[E] < N) h_out->narrow(0, start[E], N - start[E]).zero_();
  }

  // fp32 (MKL sgemm) runs faster with the weight as the left operand at few rows -- hᵀ = w1[e] xeᵀ,
  // zᵀ = w2[e] aᵀ: measured here at the Qwen3-30B-A3B expert shape, T = 1024, the layer's fp32
  // GEMMs go from 0.67 to 0.73 of a dense mm of equal FLOPs --, bf16 (oneDNN) the other way
  // round (0.88 plain vs 0.84 transposed).
  const bool weight_left = compute == at::kFloat;
  auto run_expert = [&](int64_t e) {
    const int64_t lo = start[e], m = start[e + 1] - lo;
    if (m == 0) return;
    const auto xe = x.index_select(0, src_rows.narrow(0, lo, m)).to(compute);
    auto out = yp.narrow(0, lo, m);
    if (weight_left) {
      const auto ht = at::mm(w1[e].to(compute), xe.t().contiguous()).to(dtype);  // [2I or I, m]
      if (h_out != nullptr) h_out->narrow(0, lo, m).copy_(ht.t());
      const auto at_ = apply_mlp_activation(ht.t(), act).to(compute).t();  // [I, m]
      out.copy_(at::mm(w2[e].to(compute), at_.contiguous()).t());
      return;
    }
    const auto h = at::mm(xe, w1[e].t().to(compute)).to(dtype);
    if (h_out != nullptr) h_out->narrow(0, lo, m).copy_(h);
    const auto a = apply_mlp_activation(h, act).to(compute);
    mm_into(out, a, w2[e].t().to(compute));
  };

  run_groups_balanced(E, [&](int64_t e) { return start[e + 1] - start[e]; }, run_expert);
  return unpermute_cpu(yp, slot, weights);
}

}  // namespace moe_ext
