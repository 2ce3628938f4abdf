// route_kernel / route_backward_kernel: the router (scores -> group-limited top-k -> weights)
// and its gradient w.r.t. the logits, for E <= 1024 experts and any top_k <= E.
//
// Forward, per token (one warp per token, grid-stride over tokens):
//   1. the row's logits are loaded coalesced (expert e = v*32 + lane sits in lane `lane`,
//      register slot v; V = ceil(E/32) rounded to a power of two is a template parameter, so
//      all E scores stay in registers), converted to fp32;
//   2. softmax (warp max, exp, warp sum), sigmoid or sqrt(softplus) (DeepSeek-V4, torch's
//      softplus threshold 20); selection keys = score + correction_bias;
//   3. group-limited routing (num_groups > 1), the same rule as reference.route, fused in: when
//      a group is 2^j whole register slots (E/G = 32 * 2^j: DeepSeek-V3's 8 groups of 32), each
//      lane merges its keys' top-2 per group and a butterfly of top-2 merges gives every lane
//      every group's score, so every lane picks the topk_groups groups itself
//      (mask_slot_groups: no shared memory, no serial scan); smaller groups go through a shared
//      row, one lane per group (mask_groups); the other groups' keys become -inf;
//   4. top-k by k rounds of a warp argmax over 32-bit order-preserving keys: one REDUX (warp
//      max) and one VOTE per round, a second REDUX + VOTE only when several lanes hold the top
//      key (ties go to the lower id); NaN ranks below every number; identical on every lane
//      (deterministic); the winning lane writes its score and id to a per-warp shared row
//      (no shuffle carries the score). ptxas: 48-146 registers for E <= 512, 255 at E = 1024
//      (keys, scores and the groups' top-2 pairs, 32 slots each), 0 spills;
//   5. weights = chosen scores (summed in selection order for the renormalisation, exactly as
//      the CPU op does), / (sum + 1e-20) if renormalize, x scaling_factor.
// Why a warp per token: E <= 1024 scores fit in one warp's registers and all reductions are
// shuffles, with no block barrier; routers run at T up to 10^5 tokens, which fills the GPU.
// Statistics (route_with_stats): counts by integer atomics (exact in any order); score sums in
// registers per warp, combined per block in warp order, then over blocks in block order by a
// second small kernel -- deterministic, and no second pass over the logits.
// route_weights (same mapping, DeepSeek-V4 hash layers: the experts are given): the row's scores
// as in step 2, then the given ids' scores gathered by shuffles (lane j of a 32-wide chunk takes
// id j's score from its lane and slot), summed in j order as the forward sums its choices,
// renormalised and scaled as in step 5 -- so for route's own ids it reproduces route's weights.
// Backward (same mapping): recompute the scores, scatter d(weights) (through the
// renormalisation, plus d(mean_prob) / T) into a per-warp shared row, apply the softmax /
// sigmoid / sqrt-softplus Jacobian (the last from the score alone: sigmoid(x) = 1 - exp(-s^2)).
// No atomics.
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <cmath>
#include <cstring>
#include <type_traits>
#include <utility>

#include "../common/convert.h"
#include "../common/dispatch.h"
#include "../common/launch.h"
#include "../common/memory.h"
#include "../common/shared.h"
#include "../common/warp.h"
#include "route.h"

namespace moe_ext::MOE_KERNEL_NS {

namespace route_detail {

constexpr int kThreads = 32 * kRouteWarpsPerBlock;

// Shared floats per warp in the forward: k scores + k ids (+ E keys + G flags with groups).
MOE_HOST_DEVICE inline int route_smem_floats_per_warp(const RouteParams& p) {
  return 2 * p.top_k + (p.num_groups > 1 ? p.experts + p.num_groups : 0);
}

// sqrt(softplus(x)) in fp32, softplus with torch's threshold (x for x > 20): DeepSeek-V4.
MOE_DEVICE MOE_FORCEINLINE float sqrt_softplus(float x) {
  return sqrtf(x > 20.f ? x : log1pf(expf(x)));
}

// d sqrt(softplus(x)) / dx from the score s alone (the backward keeps no logits):
// softplus'(x) = sigmoid(x) = 1 - exp(-softplus(x)) = -expm1(-s^2), over 2 s. For x > 20,
// -expm1(-s^2) rounds to 1 in fp32, torch's thresholded derivative. s = 0 (softplus underflowed,
// or x = -inf): the limit 0, where the chain rule through sqrt would give 0 / 0.
MOE_DEVICE MOE_FORCEINLINE float sqrt_softplus_grad(float s) {
  return s > 0.f ? -expm1f(-s * s) / (2.f * s) : 0.f;
}

// Scores of token row `row` in registers: s[v] for expert v*32 + lane (0 where e >= E).
template <typename T, int V>
MOE_DEVICE MOE_FORCEINLINE void compute_scores(const T* row, int E, RouteScore score,
                                               float (&s)[V]) {
  const int lane = threadIdx.x % 32;
  float mx = -INFINITY;
  MOE_UNROLL for (int v = 0; v < V; ++v) {
    const int e = v * 32 + lane;
    s[v] = e < E ? to_acc(ld_global_nc(row + e)) : -INFINITY;
    mx = fmaxf(mx, s[v]);
  }
  if (score == RouteScore::kSoftmax) {
    mx = warp_max(mx);
    float sum = 0.f;
    MOE_UNROLL for (int v = 0; v < V; ++v) {
      s[v] = v * 32 + lane < E ? expf(s[v] - mx) : 0.f;
      sum += s[v];
    }
    sum = warp_sum(sum);
    MOE_UNROLL for (int v = 0; v < V; ++v) s[v] = s[v] / sum;
  } else if (score == RouteScore::kSigmoid) {
    MOE_UNROLL for (int v = 0; v < V; ++v) s[v] =
        v * 32 + lane < E ? 1.f / (1.f + expf(-s[v])) : 0.f;
  } else {
    MOE_UNROLL for (int v = 0; v < V; ++v) s[v] = v * 32 + lane < E ? sqrt_softplus(s[v]) : 0.f;
  }
}

// Order-preserving 32-bit selection key: a larger key gives a larger value; NaN (1) ranks below
// every number; 0 is "not selectable" (padding lanes, already chosen). Ties are the caller's.
MOE_DEVICE MOE_FORCEINLINE unsigned order_key(float key) {
  key += 0.0f;  // -0 -> +0, so that they tie as in a float comparison
#if defined(__CUDACC__)
  const unsigned bits = __float_as_uint(key);
#else
  unsigned bits;
  std::memcpy(&bits, &key, sizeof(bits));
#endif
  return key != key ? 1u : (bits & 0x80000000u) ? ~bits : (bits | 0x80000000u);
}

// The warp's argmax over per-lane candidates (`best` = order_key of the lane's best key, 0 if
// none; `slot` = its register slot): the lane holding the largest key, ties to the lowest id
// slot*32 + lane, i.e. the lowest slot, then the lowest lane. Every lane gets the same lane
// back, and the winning slot in *slot. One REDUX + one VOTE; a tie at the top adds one REDUX +
// one VOTE (a warp-uniform branch), where a 64-bit (key, ~id) butterfly takes 10 SHFL.
MOE_DEVICE MOE_FORCEINLINE int warp_argmax(unsigned best, int* slot) {
  const unsigned top = warp_max_u32(best);
  unsigned lanes = __ballot_sync(kFullMask, best == top);
  if ((lanes & (lanes - 1)) != 0) {  // several lanes hold the top key: the lowest slot first
    const unsigned s = warp_min_u32(best == top ? static_cast<unsigned>(*slot) : ~0u);
    lanes = __ballot_sync(kFullMask, best == top && static_cast<unsigned>(*slot) == s);
    *slot = static_cast<int>(s);
  }
  return __ffs(static_cast<int>(lanes)) - 1;
}

// (f1, s1) <- the top-2 of the values of (f1, s1) and (f2, s2) (first >= second, NaN-free).
MOE_DEVICE MOE_FORCEINLINE void merge_top2(float& f1, float& s1, float f2, float s2) {
  s1 = fmaxf(fminf(f1, f2), fmaxf(s1, s2));
  f1 = fmaxf(f1, f2);
}

// The first N slots' top-2 pairs merged over the warp, every lane getting every slot's result:
// 5 dependent butterfly steps of 2N independent shuffles (no branch between the slots' chains).
template <int V, int N>
MOE_DEVICE MOE_FORCEINLINE void butterfly_top2(float (&first)[V], float (&second)[V]) {
  for (int o = 16; o > 0; o /= 2) {
    MOE_UNROLL for (int v = 0; v < N; ++v) {
      const float f = __shfl_xor_sync(kFullMask, first[v], o);
      const float g = __shfl_xor_sync(kFullMask, second[v], o);
      merge_top2(first[v], second[v], f, g);
    }
  }
}

// Lane-locally merges slots (2i, 2i+1) into slot i `levels` times (a group of 2^levels slots
// ends up in one slot, group g in slot g), then the butterfly over the N >> levels slots left.
template <int V, int N>
MOE_DEVICE MOE_FORCEINLINE void group_top2(float (&first)[V], float (&second)[V], int levels) {
  if constexpr (N > 1) {
    if (levels > 0) {
      MOE_UNROLL for (int i = 0; i < N / 2; ++i) {
        merge_top2(first[2 * i], second[2 * i], first[2 * i + 1], second[2 * i + 1]);
        first[i] = first[2 * i];
        second[i] = second[2 * i];
      }
      group_top2<V, N / 2>(first, second, levels - 1);
      return;
    }
  }
  butterfly_top2<V, N>(first, second);
}

// Whether mask_slot_groups takes E experts in G groups: a group is 2^j whole register slots.
MOE_DEVICE MOE_FORCEINLINE bool slot_groups(int E, int G) {
  const int gs = E / G, spg = gs / 32;
  return gs % 32 == 0 && (spg & (spg - 1)) == 0;
}

// Group-limited routing when a group is 2^j whole register slots (slot_groups; DeepSeek-V3:
// E = 256, G = 8, one slot per group): each lane's keys as top-2 pairs (NaN never counted, as
// mask_groups does), a group's slots merged lane-locally and then over the warp (group_top2:
// no shared memory, no serial scan), so every lane holds every group's score (the top-2 sum, the
// reference's) and picks the topk_groups best groups itself (ties to the lower group).
template <int V>
MOE_DEVICE MOE_FORCEINLINE void mask_slot_groups(float (&key)[V], int E, int G, int TG) {
  int levels = 0;
  while ((32 << levels) < E / G) ++levels;
  float first[V], second[V];  // per slot, then (after group_top2) per group: the top-2
  MOE_UNROLL for (int v = 0; v < V; ++v) {
    first[v] = v * 32 < E && key[v] == key[v] ? key[v] : -INFINITY;
    second[v] = -INFINITY;
  }
  group_top2<V, V>(first, second, levels);
  unsigned taken = 0;  // bit g: group g is kept
  for (int r = 0; r < TG; ++r) {
    unsigned best = 0;
    int at = 0;
    MOE_UNROLL for (int g = 0; g < V; ++g) {
      const unsigned o = g < G && !(taken >> g & 1u) ? order_key(first[g] + second[g]) : 0u;
      if (o > best) {
        best = o;
        at = g;
      }
    }
    taken |= 1u << at;
  }
  MOE_UNROLL for (int v = 0; v < V; ++v) if (!(taken >> (v >> levels) & 1u)) key[v] = -INFINITY;
}

// Keeps the topk_groups groups with the largest top-2 key sums; others' keys become -inf.
// The groups that are not 2^j whole register slots (mask_slot_groups takes those).
// `keys` is this warp's shared row of E keys followed by G scratch floats.
template <int V>
MOE_DEVICE MOE_FORCEINLINE void mask_groups(float (&key)[V], float* keys, int E, int G, int TG) {
  const int lane = threadIdx.x % 32, gs = E / G;
  MOE_UNROLL for (int v = 0; v < V; ++v) if (v * 32 + lane < E)
      st_shared(keys + v * 32 + lane, key[v]);
  __syncwarp();
  constexpr int kMaxGroupsPerLane = V > 1 ? V / 2 : 1;  // G <= E/2 <= 16 V
  float gscore[kMaxGroupsPerLane];
#pragma unroll
  for (int i = 0; i < kMaxGroupsPerLane; ++i) {
    const int g = i * 32 + lane;
    float first = -INFINITY, second = -INFINITY;
    for (int j = 0; g < G && j < gs; ++j) {
      const float k = ld_shared(keys + g * gs + j);
      if (k > first) {
        second = first;
        first = k;
      } else if (k > second) {
        second = k;
      }
    }
    gscore[i] = first + second;
  }
  unsigned taken = 0;
  for (int r = 0; r < TG; ++r) {
    unsigned best = 0;
    int slot = 0;
#pragma unroll
    for (int i = 0; i < kMaxGroupsPerLane; ++i) {
      const unsigned o = i * 32 + lane < G && !(taken >> i & 1u) ? order_key(gscore[i]) : 0u;
      if (o > best) {
        best = o;
        slot = i;
      }
    }
    int win_slot = slot;
    if (lane == warp_argmax(best, &win_slot)) taken |= 1u << win_slot;
  }
  __syncwarp();  // every lane has read the keys before the flags overwrite the scratch
#pragma unroll
  for (int i = 0; i < kMaxGroupsPerLane; ++i)
    if (i * 32 + lane < G) st_shared(keys + E + i * 32 + lane, (taken >> i & 1u) ? 1.f : 0.f);
  __syncwarp();
  MOE_UNROLL for (int v = 0; v < V; ++v) {
    const int e = v * 32 + lane;
    if (e < E && ld_shared(keys + E + e / gs) == 0.f) key[v] = -INFINITY;
  }
  __syncwarp();  // the row is reused by the warp's next token
}

}  // namespace route_detail

template <typename T, int V>
__global__ void __launch_bounds__(route_detail::kThreads, 1) route_kernel(RouteParams p) {
  using namespace route_detail;
  MOE_SHARED_DYNAMIC(float, smem);  // per warp: k selected scores, k ids[, E keys + G flags]
  const int lane = threadIdx.x % 32, warp = threadIdx.x / 32, warps = blockDim.x / 32;
  const int E = p.experts, k = p.top_k;
  float* sel_score = smem + warp * route_smem_floats_per_warp(p);
  int* sel_id = reinterpret_cast<int*>(sel_score + k);
  float* keys = sel_score + 2 * k;  // group-limited routing only
  float prob_sum[V] = {};           // route_with_stats: this warp's score sums per expert
  for (int64_t t = static_cast<int64_t>(blockIdx.x) * warps + warp; t < p.tokens;
       t += static_cast<int64_t>(gridDim.x) * warps) {
    float s[V], key[V];
    compute_scores<T, V>(static_cast<const T*>(p.logits) + t * p.row_stride, E, p.score, s);
    MOE_UNROLL for (int v = 0; v < V; ++v) {
      const int e = v * 32 + lane;
      key[v] = s[v] + (p.bias != nullptr && e < E ? ld_global_nc(p.bias + e) : 0.f);
    }
    if (p.num_groups > 1) {
      if (slot_groups(E, p.num_groups)) {
        mask_slot_groups<V>(key, E, p.num_groups, p.topk_groups);
      } else {
        mask_groups<V>(key, keys, E, p.num_groups, p.topk_groups);
      }
    }

    // k rounds of a warp argmax over 32-bit ordered keys (warp_argmax); the winning lane
    // records its score and id in this warp's shared row (k scores, k ids), which keeps
    // registers for E <= 1024 in check and needs no shuffle of the score.
    unsigned taken = 0;
    for (int j = 0; j < k; ++j) {
      unsigned best = 0;
      int slot = 0;
      MOE_UNROLL for (int u = 0; u < V; ++u) {
        const unsigned o = u * 32 + lane < E && !(taken >> u & 1u) ? order_key(key[u]) : 0u;
        if (o > best) {
          best = o;
          slot = u;
        }
      }
      int win_slot = slot;
      const int win = warp_argmax(best, &win_slot);
      if (lane == win) {
        taken |= 1u << win_slot;
        const int id = win_slot * 32 + lane;
        float score = 0.f;  // s[win_slot] without a runtime register index
        MOE_UNROLL for (int u = 0; u < V; ++u) if (u == win_slot) score = s[u];
        st_shared(sel_score + j, score);
        st_shared(sel_id + j, id);
        if (p.counts != nullptr) atomicAdd(p.counts + id, 1);
      }
    }
    __syncwarp();
    float sum = 0.f;  // the chosen scores in selection order, as the CPU op sums them
    if (p.renormalize)
      for (int j = 0; j < k; ++j) sum += ld_shared(sel_score + j);
    const float denom = p.renormalize ? sum + static_cast<float>(kRenormEps) : 1.f;
    for (int j = lane; j < k; j += 32) {
      st_global(p.weights + t * k + j, ld_shared(sel_score + j) / denom * p.scaling);
      st_global(p.ids + t * k + j, ld_shared(sel_id + j));
    }
    if (p.prob_partial != nullptr) {
      MOE_UNROLL for (int v = 0; v < V; ++v) prob_sum[v] += s[v];
    }
    __syncwarp();  // the selection row is reused by the warp's next token
  }
  if (p.prob_partial != nullptr) {
    // Block partial = the warps' sums added in warp order, through a shared row of E floats.
    float* row = smem + warps * route_smem_floats_per_warp(p);
    for (int w = 0; w < warps; ++w) {
      if (warp == w) {
        MOE_UNROLL for (int v = 0; v < V; ++v) {
          const int e = v * 32 + lane;
          if (e < E) st_shared(row + e, (w == 0 ? 0.f : ld_shared(row + e)) + prob_sum[v]);
        }
      }
      __syncthreads();
    }
    for (int e = threadIdx.x; e < E; e += blockDim.x)
      st_global(p.prob_partial + static_cast<int64_t>(blockIdx.x) * E + e, ld_shared(row + e));
  }
}

// mean_prob[e] = (sum over blocks b, in order, of prob_partial[b][e]) / tokens.
__global__ void route_stats_reduce_kernel(RouteParams p, int blocks) {
  const int e = blockIdx.x * blockDim.x + threadIdx.x;
  if (e >= p.experts) return;
  float sum = 0.f;
  for (int b = 0; b < blocks; ++b)
    sum += ld_global(p.prob_partial + static_cast<int64_t>(b) * p.experts + e);
  st_global(p.mean_prob + e, sum / static_cast<float>(p.tokens));
}

template <typename T, int V>
__global__ void __launch_bounds__(route_detail::kThreads, 1)
    route_backward_kernel(RouteBackwardParams p) {
  using namespace route_detail;
  MOE_SHARED_DYNAMIC(float, smem);  // per warp: scores [E], d scores [E]
  const int lane = threadIdx.x % 32, warp = threadIdx.x / 32, warps = blockDim.x / 32;
  const int E = p.experts, k = p.top_k;
  float* sc = smem + warp * 2 * E;
  float* ds = sc + E;
  for (int64_t t = static_cast<int64_t>(blockIdx.x) * warps + warp; t < p.tokens;
       t += static_cast<int64_t>(gridDim.x) * warps) {
    float s[V];
    compute_scores<T, V>(static_cast<const T*>(p.logits) + t * p.row_stride, E, p.score, s);
    MOE_UNROLL for (int v = 0; v < V; ++v) {
      const int e = v * 32 + lane;
      if (e < E) {
        st_shared(sc + e, s[v]);
        // d(mean_prob[e]) / d(score[t, e]) = 1 / T
        st_shared(ds + e, p.grad_mean_prob != nullptr
                              ? ld_global_nc(p.grad_mean_prob + e) / static_cast<float>(p.tokens)
                              : 0.f);
      }
    }
    __syncwarp();
    // w_j = s_j / D, D = sum_i s_i + eps  =>  ds_j = g_j / D - <g, s_sel> / D^2
    float denom = 1.f, dot = 0.f;
    if (p.renormalize) {
      float sum = 0.f;
      for (int j = lane; j < k; j += 32) {
        const int id = ld_global_nc(p.ids + t * k + j);
        const float sj = id >= 0 && id < E ? ld_shared(sc + id) : 0.f;
        sum += sj;
        dot += ld_global_nc(p.grad_weights + t * k + j) * p.scaling * sj;
      }
      denom = warp_sum(sum) + static_cast<float>(kRenormEps);
      dot = warp_sum(dot);
    }
    for (int j = lane; j < k; j += 32) {
      const int id = ld_global_nc(p.ids + t * k + j);
      float g = ld_global_nc(p.grad_weights + t * k + j) * p.scaling;
      if (p.renormalize) g = g / denom - dot / (denom * denom);
      if (id >= 0 && id < E) st_shared(ds + id, ld_shared(ds + id) + g);
    }
    __syncwarp();
    float d[V], inner = 0.f;
    MOE_UNROLL for (int v = 0; v < V; ++v) {
      const int e = v * 32 + lane;
      d[v] = e < E ? ld_shared(ds + e) : 0.f;
      inner += d[v] * s[v];
    }
    const bool softmax = p.score == RouteScore::kSoftmax;
    if (softmax) inner = warp_sum(inner);
    T* out = static_cast<T*>(p.grad_logits) + t * E;
    MOE_UNROLL for (int v = 0; v < V; ++v) {
      const int e = v * 32 + lane;
      if (e < E) {
        const float dx = softmax                           ? s[v] * (d[v] - inner)
                         : p.score == RouteScore::kSigmoid ? d[v] * s[v] * (1.f - s[v])
                                                           : d[v] * sqrt_softplus_grad(s[v]);
        st_global(out + e, from_acc<T>(dx));
      }
    }
    __syncwarp();  // the shared rows are reused by the warp's next token
  }
}

namespace route_detail {

// Calls f(std::integral_constant<int, V>) with V = the register slots per lane for E experts.
template <typename F>
cudaError_t with_slots(int E, F&& f) {
  if (E <= 32) return f(std::integral_constant<int, 1>{});
  if (E <= 64) return f(std::integral_constant<int, 2>{});
  if (E <= 128) return f(std::integral_constant<int, 4>{});
  if (E <= 256) return f(std::integral_constant<int, 8>{});
  if (E <= 512) return f(std::integral_constant<int, 16>{});
  if (E <= kMaxRouteExperts) return f(std::integral_constant<int, 32>{});
  return cudaErrorInvalidValue;
}

template <typename F>
cudaError_t with_dtype(RouteDtype dt, F&& f) {
  return dispatch_dtype<float, __nv_bfloat16, __half>(dt, std::forward<F>(f));
}

inline dim3 route_grid(int64_t tokens) {
  const int64_t warps_per_block = kThreads / 32;
  const int64_t blocks = ceil_div(tokens, warps_per_block);
  return dim3(static_cast<unsigned>(blocks < 65535 * 8 ? blocks : 65535 * 8));
}

// Fewer, fuller blocks when the per-block score sums must be kept (and reduced afterwards).
inline dim3 route_stats_grid(int64_t tokens) {
  return dim3(static_cast<unsigned>(route_stats_blocks(tokens)));
}

template <typename T, int V>
__global__ void __launch_bounds__(route_detail::kThreads, 1)
    route_weights_kernel(RouteWeightsParams p) {
  using namespace route_detail;
  const int lane = threadIdx.x % 32, warp = threadIdx.x / 32, warps = blockDim.x / 32;
  const int E = p.experts, k = p.top_k;
  for (int64_t t = static_cast<int64_t>(blockIdx.x) * warps + warp; t < p.tokens;
       t += static_cast<int64_t>(gridDim.x) * warps) {
    float s[V];
    compute_scores<T, V>(static_cast<const T*>(p.logits) + t * p.row_stride, E, p.score, s);
    float* w = p.weights + t * k;
    float sum = 0.f;
    for (int j0 = 0; j0 < k; j0 += 32) {
      const int j = j0 + lane;
      const int id = j < k ? ld_global_nc(p.ids + t * k + j) : -1;
      const bool valid = id >= 0 && id < E;
      float score = 0.f;  // s[id / 32] of lane id % 32, without a runtime register index
      MOE_UNROLL for (int u = 0; u < V; ++u) {
        const float c = __shfl_sync(kFullMask, s[u], valid ? id % 32 : 0);
        if (valid && id / 32 == u) score = c;
      }
      const int n = k - j0 < 32 ? k - j0 : 32;
      for (int i = 0; i < n; ++i) sum += __shfl_sync(kFullMask, score, i);  // j order
      if (j < k) st_global(w + j, score);  // raw; this lane rescales it below
    }
    const float denom = p.renormalize ? sum + static_cast<float>(kRenormEps) : 1.f;
    for (int j = lane; j < k; j += 32) st_global(w + j, ld_global(w + j) / denom * p.scaling);
  }
}

}  // namespace route_detail

}  // namespace moe_ext::MOE_KERNEL_NS

// The launcher (declared in the .h), for the target this translation unit compiles.
namespace moe_ext {

template <>
cudaError_t launch_route<kKernelTarget>(const RouteParams& p, cudaStream_t stream) {
  using namespace MOE_KERNEL_NS;
  using namespace route_detail;
  if (p.tokens == 0) return cudaSuccess;
  const bool stats = p.prob_partial != nullptr;
  const size_t smem =
      sizeof(float) * ((kThreads / 32) * route_smem_floats_per_warp(p) + (stats ? p.experts : 0));
  const dim3 grid = stats ? route_stats_grid(p.tokens) : route_grid(p.tokens);
  const cudaError_t err = with_dtype(p.dtype, [&](auto tag) {
    using T = decltype(tag);
    return with_slots(p.experts, [&](auto slots) {
      return launch_kernel("route_kernel", route_kernel<T, decltype(slots)::value>, grid,
                           dim3(kThreads), smem, stream, p);
    });
  });
  if (err != cudaSuccess || !stats) return err;
  return launch_kernel("route_stats_reduce_kernel", route_stats_reduce_kernel,
                       dim3(static_cast<unsigned>((p.experts + 255) / 256)), dim3(256), 0, stream,
                       p, static_cast<int>(grid.x));
}

template <>
cudaError_t launch_route_backward<kKernelTarget>(const RouteBackwardParams& p,
                                                 cudaStream_t stream) {
  using namespace MOE_KERNEL_NS;
  using namespace route_detail;
  if (p.tokens == 0) return cudaSuccess;
  const size_t smem = sizeof(float) * (kThreads / 32) * 2 * p.experts;
  return with_dtype(p.dtype, [&](auto tag) {
    using T = decltype(tag);
    return with_slots(p.experts, [&](auto slots) {
      return launch_kernel("route_backward_kernel",
                           route_backward_kernel<T, decltype(slots)::value>, route_grid(p.tokens),
                           dim3(kThreads), smem, stream, p);
    });
  });
}

template <>
cudaError_t launch_route_weights<kKernelTarget>(const RouteWeightsParams& p, cudaStream_t stream) {
  using namespace MOE_KERNEL_NS;
  using namespace route_detail;
  if (p.tokens == 0) return cudaSuccess;
  return with_dtype(p.dtype, [&](auto tag) {
    using T = decltype(tag);
    return with_slots(p.experts, [&](auto slots) {
      return launch_kernel("route_weights_kernel", route_weights_kernel<T, decltype(slots)::value>,
                           route_grid(p.tokens), dim3(kThreads), 0, stream, p);
    });
  });
}

}  // namespace moe_ext
