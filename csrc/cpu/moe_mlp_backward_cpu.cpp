// Native CPU moe_mlp backward, fused per expert (the forward's structure, moe_mlp_cpu.cpp): for
// expert e and its sorted rows i (x row t = order[i] / k, routing weight w_i = weights[order[i]]),
//   h    = x_e @ w1[e]ᵀ                   recomputed (or the caller's saved h rows)
//   a    = act(h)
//   g    = dy[t]                          the output gradient gathered into sorted order
//   dA'  = g @ w2[e]                      the dA GEMM, not yet scaled by the routing weight
//   dweights[order[i]] = <dA'_i, a_i>     = <dy[t], a_i w2[e]ᵀ> = <dy[t], z_i>: the routing-weight
//                                          gradient without the second forward GEMM z = a w2ᵀ
//                                          (SonicMoE's reformulation)
//   da   = w_i dA'_i ;  dh = act'(h) ⊙ da  (gated: both halves; fp32 math on the expert's rows)
//   dw2[e] = (w ⊙ g)ᵀ @ a ;  dw1[e] = dhᵀ @ x_e ;  dxp_i = dh_i @ w1[e]
// then dx[t] = Σ_j dxp[slot[t k + j]] (j order, deterministic). Four GEMMs per expert (five with
// the recompute), against the eight of the composite backward that recomputed both forward GEMMs;
// no [N, 2I] fp32 buffer (the activation backward runs on one expert's rows at a time), no
// eager autograd. Each expert's chain runs on one thread with its rows cache-resident
// (run_groups_balanced, as the forward); bf16/fp16 GEMMs run natively where oneDNN supports
// them (mm_precision.h), in fp32 elsewhere, rounding each stage to the input dtype.
#include <ATen/ATen.h>

#include <algorithm>
#include <vector>

#include "cpu_ops.h"
#include "group_schedule.h"
#include "mm_precision.h"

namespace moe_ext {

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor> moe_mlp_backward_cpu(
    const at::Tensor& grad_y, const at::Tensor& x, const at::Tensor& w1, const at::Tensor& w2,
    const at::Tensor& weights, const at::Tensor& order, const at::Tensor& slot,
    const at::Tensor& offsets, const MlpActivation& act, const std::optional<at::Tensor>& h) {
  const int64_t E = w1.size(0), H = x.size(1), k = weights.size(1), N = order.size(0);
  const auto dtype = x.scalar_type();
  const auto compute = cpu_mm_is_native(dtype) ? dtype : at::kFloat;
  const auto acc = dtype == at::kDouble ? at::kDouble : at::kFloat;

  const std::vector<int64_t> start =
      group_row_starts(offsets, N);  // expert e: [start[e], start[e + 1])
  const auto order_l = order.to(at::kLong);
  const auto src_rows = at::div(order_l, k, "floor");
  const auto w_sorted = weights.reshape({-1}).index_select(0, order_l).to(acc);  // [N]
  const auto dy = grad_y.to(dtype);

  // Outputs written in place by each expert's GEMMs (mm_out where the GEMM runs in the output
  // dtype, no per-expert temporaries and copies). The gradients are zero-filled first, in
  // parallel: that also faults their pages in (measured at the Qwen3-30B-A3B expert shape, fp32,
  // 2 threads: page faults taken inside the GEMMs' stores made them 2.5x slower than zero fill
  // + GEMM); the experts without rows keep the zeros.
  const auto contiguous = x.options().memory_format(at::MemoryFormat::Contiguous);
  auto dw1 = at::zeros(w1.sizes(), contiguous);
  auto dw2 = at::zeros(w2.sizes(), contiguous);
  auto dxp = at::empty({N, H}, x.options());
  if (start[E] < N) dxp.narrow(0, start[E], N - start[E]).zero_();  // dropped: never read
  auto dw_sorted = at::zeros({N}, x.options().dtype(acc));          // dropped rows stay 0

  auto run_expert = [&](int64_t e) {
    const int64_t lo = start[e], m = start[e + 1] - lo;
    if (m == 0) return;
    const auto rows = src_rows.narrow(0, lo, m);
    const auto xe = x.index_select(0, rows).to(compute);           // [m, H]
    const auto ge = dy.index_select(0, rows).to(compute);          // [m, H]
    const auto we = w_sorted.narrow(0, lo, m).unsqueeze(1);        // [m, 1]
    const auto he = h.has_value() ? h->narrow(0, lo, m).to(dtype)  // saved, or recomputed
                                  : at::mm(xe, w1[e].t().to(compute)).to(dtype);
    const auto a = apply_mlp_activation(he, act);                 // [m, I]
    const auto da_raw = at::mm(ge, w2[e].to(compute)).to(dtype);  // dA' [m, I]
    dw_sorted.narrow(0, lo, m).copy_((da_raw.to(acc) * a.to(acc)).sum(1));
    const auto dh = mlp_activation_backward(he, da_raw.to(acc) * we, act).to(compute);
    mm_into(dw2[e], (ge.to(acc) * we).to(dtype).to(compute).t(), a.to(compute));
    mm_into(dw1[e], dh.t(), xe);
    mm_into(dxp.narrow(0, lo, m), dh, w1[e].to(compute));
  };
  run_groups_balanced(E, [&](int64_t e) { return start[e + 1] - start[e]; }, run_expert);

  const auto ones = at::ones({x.size(0), k}, x.options().dtype(at::kFloat));
  auto dx = unpermute_cpu(dxp, slot, ones);
  // dweights[order[i]] = <dA'_i, a_i>: order is a permutation of the N assignments, and the
  // dropped ones (rows past offsets[-1]) scatter their 0
  auto dweights = at::empty({weights.numel()}, weights.options().dtype(acc));
  dweights.index_copy_(0, order_l, dw_sorted);
  return {dx, dw1, dw2, dweights.view(weights.sizes()).to(weights.scalar_type())};
}

}  // namespace moe_ext
