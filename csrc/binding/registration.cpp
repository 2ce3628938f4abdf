// The op library: every schema once (DESIGN.md "Op contract" is the source of truth), then every
// implementation: register_ops<T> names each op's binding (ops.h) once, for the CPU, CUDA and
// emulator targets alike. Fake (meta) kernels and autograd formulas are attached from Python
// (python/moe_ext/_fake.py, _autograd.py).
#include <ATen/core/dispatch/Dispatcher.h>
#include <torch/library.h>

#include <string>

#include "../kernels/sort_tokens_layout.h"
#include "checks.h"
#include "ops.h"

TORCH_LIBRARY(moe_ext, m) {
  // Router top-k: logits[T,E] -> weights[T,k] fp32 (fp64 for fp64), ids[T,k] int32.
  m.def(
      "route(Tensor logits, int top_k, str score_func=\"softmax\", bool renormalize=True, "
      "Tensor? correction_bias=None, int num_groups=1, int topk_groups=1, "
      "float scaling_factor=1.0) -> (Tensor weights, Tensor ids)");
  // Stable sort of the T*k assignments by expert: order[N], slot[N], offsets[E], all int32.
  m.def(
      "sort_tokens(Tensor ids, int num_experts, int? capacity=None) -> "
      "(Tensor order, Tensor slot, Tensor offsets)");
  // Row gather into expert order: xp[i] = x[order[i] // top_k]; dropped rows are zero.
  m.def("permute(Tensor x, Tensor order, Tensor slot, int top_k) -> Tensor");
  // Weighted combine back to token order: y[t] = sum_j weights[t,j] * yp[slot[t*k+j]].
  m.def("unpermute(Tensor yp, Tensor order, Tensor slot, Tensor weights) -> Tensor");
  // torch._grouped_mm's four forms (2Dx3D, 3Dx2D, 2Dx2D, 3Dx3D) with optional per-group bias.
  m.def(
      "grouped_mm(Tensor a, Tensor b, Tensor? offs=None, Tensor? bias=None, "
      "ScalarType? out_dtype=None) -> Tensor");
  // Both gradients of unpermute in one pass: grad_yp[i] = w[order[i]] * grad_y[order[i] // k],
  // grad_weights[t,j] = <grad_y[t], yp[slot[t*k+j]]> (0 for dropped assignments).
  m.def(
      "unpermute_backward(Tensor grad_y, Tensor yp, Tensor order, Tensor slot, Tensor weights) "
      "-> (Tensor grad_yp, Tensor grad_weights)");
  // The expert MLP over expert-sorted assignments (x[T,H], w1[E,2I,H] HF gate_up_proj with
  // gate rows first (or [E,I,H] for ungated activations), w2[E,H,I], weights[T,k], sort_tokens'
  // order/slot/offsets): y[T,H] = sum_j weights[t,j] * w2[e] act(w1[e] x[t]), e = ids[t,j].
  // activation_limit (gated only): gate clamped to <= limit, up to [-limit, limit] first.
  m.def(
      "moe_mlp(Tensor x, Tensor w1, Tensor w2, Tensor weights, Tensor order, Tensor slot, "
      "Tensor offsets, str activation=\"swiglu\", float? activation_limit=None) -> Tensor");
  // moe_mlp for training with the "save_h" memory policy: also returns h = x[order // k] @ w1ᵀ
  // ([N, 2I or I] in x's dtype, sorted rows) for moe_mlp_backward, which then runs 4 GEMMs.
  m.def(
      "moe_mlp_save_h(Tensor x, Tensor w1, Tensor w2, Tensor weights, Tensor order, Tensor slot, "
      "Tensor offsets, str activation=\"swiglu\", float? activation_limit=None) -> "
      "(Tensor y, Tensor h)");
  // moe_mlp's gradients in one op: dA' = gather(grad_y) @ w2 gives the routing-weight gradient
  // <dA', act(h)> (no second forward GEMM) and, scaled, the activation's backward; h (the first
  // GEMM's output, sorted rows) is recomputed unless given. 5 grouped GEMMs (4 with h).
  m.def(
      "moe_mlp_backward(Tensor grad_y, Tensor x, Tensor w1, Tensor w2, Tensor weights, "
      "Tensor order, Tensor slot, Tensor offsets, str activation=\"swiglu\", "
      "float? activation_limit=None, Tensor? h=None) -> "
      "(Tensor grad_x, Tensor grad_w1, Tensor grad_w2, Tensor grad_weights)");
  // route plus aux-loss statistics: per-expert assignment counts [E] int32, mean score [E].
  m.def(
      "route_with_stats(Tensor logits, int top_k, str score_func=\"softmax\", "
      "bool renormalize=True, Tensor? correction_bias=None, int num_groups=1, "
      "int topk_groups=1, float scaling_factor=1.0) -> "
      "(Tensor weights, Tensor ids, Tensor counts, Tensor mean_prob)");
  // sort_tokens into caller-provided outputs and workspace (for CUDA-graph capture without the
  // caching allocator); not differentiable. Device backends only.
  m.def(
      "sort_tokens_into(Tensor ids, int num_experts, int? capacity, Tensor(a!) order, "
      "Tensor(b!) slot, Tensor(c!) offsets, Tensor(d!) workspace) -> ()");
  // int32 elements of sort_tokens_into's workspace for N assignments and E experts.
  m.def("sort_tokens_workspace_size(int num_assignments, int num_experts) -> int");
  // The weights of given experts (DeepSeek-V4 hash layers: ids = tid2eid[input_ids]):
  // score(logits) at ids[T,k], renormalised if asked, x scaling_factor; [T,k] fp32.
  m.def(
      "route_weights(Tensor logits, Tensor ids, str score_func=\"softmax\", "
      "bool renormalize=True, float scaling_factor=1.0) -> Tensor");
  // Per-token-group FP8: x[M,K] -> x_q float8_e4m3fn, scale[M, ceil(K/g)] fp32 (amax / 448,
  // or rounded up to a power of two with "ue8m0"); x ~= x_q * scale per group.
  m.def(
      "quantize_fp8(Tensor x, int group_size=128, str scale_format=\"float\") -> "
      "(Tensor x_q, Tensor scale)");
  // DeepSeek-V3 block FP8 grouped GEMM: a[M,K] (ragged by offs, or a[G,M,K]) e4m3 with
  // a_scale[.., ceil(K/128)], b[G,N,K] e4m3 with b_scale[G, ceil(N/128), ceil(K/128)]; each
  // 128-wide K block's fp32 partial sum promoted with both scales.
  m.def(
      "grouped_mm_fp8(Tensor a, Tensor a_scale, Tensor b, Tensor b_scale, Tensor? offs=None, "
      "ScalarType out_dtype=bfloat16) -> Tensor");
  // moe_mlp with block-FP8 experts (HF FP8Experts layout: w1[E,2I,H] e4m3 + w1_scale[E,
  // ceil(2I/128), ceil(H/128)], w2[E,H,I] + w2_scale): x's gathered rows quantized per 128
  // columns, h in x's dtype, act(h) in fp32 quantized per 128 columns, unpermute's combine.
  m.def(
      "moe_mlp_fp8(Tensor x, Tensor w1, Tensor w1_scale, Tensor w2, Tensor w2_scale, "
      "Tensor weights, Tensor order, Tensor slot, Tensor offsets, str activation=\"swiglu\") "
      "-> Tensor");
  // moe_mlp_fp8 for training: also h [N, 2I or I] and z [N, H] (x's dtype, sorted rows; z = the
  // second GEMM before the combine) for the backward w.r.t. x and weights.
  m.def(
      "moe_mlp_fp8_save(Tensor x, Tensor w1, Tensor w1_scale, Tensor w2, Tensor w2_scale, "
      "Tensor weights, Tensor order, Tensor slot, Tensor offsets, str activation=\"swiglu\") "
      "-> (Tensor y, Tensor h, Tensor z)");
  // Backward of route / route_with_stats: d logits (scores recomputed from the logits).
  m.def(
      "route_backward(Tensor grad_weights, Tensor logits, Tensor ids, str score_func, "
      "bool renormalize, float scaling_factor, Tensor? grad_mean_prob=None) -> Tensor");
}

// Backend-independent (reads no tensor).
TORCH_LIBRARY_IMPL(moe_ext, CompositeExplicitAutograd, m) {
  m.impl("sort_tokens_workspace_size", [](int64_t n, int64_t e) -> int64_t {
    MOE_CHECK("sort_tokens_workspace_size", n >= 0 && e >= 1,
              "num_assignments must be >= 0 and "
              "num_experts >= 1, got ",
              n, " and ", e);
    return moe_ext::sort_tokens_workspace_ints(n, e);
  });
}

namespace moe_ext {
namespace {

// Every op implementation of one target (ops.h), under the schemas above.
template <Target T>
void register_ops(torch::Library& m) {
  m.impl("route", &route<T>);
  m.impl("route_with_stats", &route_with_stats<T>);
  m.impl("route_backward", &route_backward<T>);
  m.impl("sort_tokens", &sort_tokens<T>);
  if constexpr (T != Target::kCpu) m.impl("sort_tokens_into", &sort_tokens_into<T>);
  m.impl("permute", &permute<T>);
  m.impl("unpermute", &unpermute<T>);
  m.impl("unpermute_backward", &unpermute_backward<T>);
  m.impl("grouped_mm", &grouped_mm<T>);
  m.impl("moe_mlp", &moe_mlp<T>);
  m.impl("moe_mlp_save_h", &moe_mlp_save_h<T>);
  m.impl("moe_mlp_backward", &moe_mlp_backward<T>);
  m.impl("route_weights", &route_weights<T>);
  m.impl("quantize_fp8", &quantize_fp8<T>);
  m.impl("grouped_mm_fp8", &grouped_mm_fp8<T>);
  m.impl("moe_mlp_fp8", &moe_mlp_fp8<T>);
  m.impl("moe_mlp_fp8_save", &moe_mlp_fp8_save<T>);
}

}  // namespace
}  // namespace moe_ext

TORCH_LIBRARY_IMPL(moe_ext, CPU, m) { moe_ext::register_ops<moe_ext::Target::kCpu>(m); }

#ifdef MOE_EXT_WITH_CUDA
TORCH_LIBRARY_IMPL(moe_ext, CUDA, m) { moe_ext::register_ops<moe_ext::Target::kCuda>(m); }
#endif

#ifdef MOE_EXT_WITH_EMU
// The CUDA kernels run on the CPU SIMT emulator, on CPU tensors, with the same schemas: every
// moe_ext op that reads tensors, its schema copied from the registration above (this block runs
// after TORCH_LIBRARY(moe_ext), in the same translation unit).
TORCH_LIBRARY(moe_ext_emu, m) {
  for (const auto& name : c10::Dispatcher::singleton().getAllOpNames()) {
    if (name.name.rfind("moe_ext::", 0) != 0 || name.name == "moe_ext::sort_tokens_workspace_size")
      continue;
    const auto& schema = c10::Dispatcher::singleton()
                             .findSchemaOrThrow(name.name.c_str(), name.overload_name.c_str())
                             .schema();
    const std::string text = c10::toString(schema);
    m.def(text.substr(text.find("::") + 2).c_str());
  }
}

TORCH_LIBRARY_IMPL(moe_ext_emu, CPU, m) { moe_ext::register_ops<moe_ext::Target::kEmu>(m); }

#ifdef MOE_EXT_WITH_TEST_KERNELS
// Self-test kernels of the emulator itself (tests/test_emu_*.py); defined in
// csrc/binding/emu_selftest_*.cpp with TORCH_LIBRARY_FRAGMENT.
TORCH_LIBRARY(moe_ext_emu_test, m) {}
#endif
#endif
