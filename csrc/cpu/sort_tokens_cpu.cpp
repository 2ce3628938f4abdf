// Native CPU counting sort of token->expert assignments (the CPU twin of the CUDA radix sort).
//
// Two passes over the N = T*k flat assignments, split into chunks run by at::parallel_for:
//   1. per-chunk histogram over E+1 buckets (bucket E collects the "-1 / not routed here" ids);
//   2. after an exclusive scan over (expert, chunk), a stable scatter: each chunk knows, for every
//      expert, how many earlier assignments went there, hence which of its own are within
//      `capacity` (kept, placed in the expert's range) and which are dropped (placed after
//      offsets[-1] in flat order).
// Output: order[N] (flat index at each sorted row), slot[N] (sorted row per flat index, -1 when
// dropped), offsets[E] (cumulative ends of the kept rows). Everything int32; stable in t*k+j.
#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>

#include <algorithm>
#include <limits>
#include <vector>

#include "../common/portable.h"  // ceil_div
#include "cpu_ops.h"

namespace moe_ext {
namespace {

constexpr int64_t kChunk = 1 << 15;

template <typename id_t>
void sort_tokens_kernel_cpu(const id_t* ids, int64_t N, int64_t E, int64_t cap, int32_t* order,
                            int32_t* slot, int32_t* offsets) {
  const int64_t num_chunks = std::max<int64_t>(1, ceil_div(N, kChunk));
  const int64_t B = E + 1;  // bucket E = not routed here (-1)
  auto bucket = [E](id_t v) { return v < 0 ? E : static_cast<int64_t>(v); };

  // Pass 1: per-chunk histograms.
  std::vector<int64_t> count(num_chunks * B, 0);
  at::parallel_for(0, num_chunks, 1, [&](int64_t c0, int64_t c1) {
    for (int64_t c = c0; c < c1; ++c) {
      int64_t* h = count.data() + c * B;
      for (int64_t i = c * kChunk, end = std::min(N, (c + 1) * kChunk); i < end; ++i)
        ++h[bucket(ids[i])];
    }
  });

  // Scan: base[c][e] = assignments to e in chunks before c (rank of the chunk's first one).
  std::vector<int64_t> base(num_chunks * B), start(E);
  std::vector<int64_t> dropped_base(num_chunks + 1, 0);
  int64_t kept_total = 0;
  for (int64_t e = 0; e < B; ++e) {
    int64_t running = 0;
    for (int64_t c = 0; c < num_chunks; ++c) {
      base[c * B + e] = running;
      running += count[c * B + e];
    }
    if (e < E) {
      start[e] = kept_total;
      kept_total += std::min(running, cap);
      offsets[e] = static_cast<int32_t>(kept_total);
    }
  }
  for (int64_t c = 0; c < num_chunks; ++c) {
    int64_t dropped = count[c * B + E];
    for (int64_t e = 0; e < E; ++e) {
      const int64_t n = count[c * B + e], kept = std::clamp(cap - base[c * B + e], int64_t{0}, n);
      dropped += n - kept;
    }
    dropped_base[c + 1] = dropped_base[c] + dropped;
  }

  // Pass 2: stable scatter.
  at::parallel_for(0, num_chunks, 1, [&](int64_t c0, int64_t c1) {
    std::vector<int64_t> rank(E);
    for (int64_t c = c0; c < c1; ++c) {
      std::copy_n(base.begin() + c * B, E, rank.begin());
      int64_t next_dropped = kept_total + dropped_base[c];
      for (int64_t i = c * kChunk, end = std::min(N, (c + 1) * kChunk); i < end; ++i) {
        const int64_t e = bucket(ids[i]);
        int64_t row;
        if (e < E && rank[e] < cap) {
          row = start[e] + rank[e]++;
          slot[i] = static_cast<int32_t>(row);
        } else {
          if (e < E) ++rank[e];
          row = next_dropped++;
          slot[i] = -1;
        }
        order[row] = static_cast<int32_t>(i);
      }
    }
  });
}

}  // namespace

std::tuple<at::Tensor, at::Tensor, at::Tensor> sort_tokens_cpu(const at::Tensor& ids,
                                                               int64_t num_experts,
                                                               std::optional<int64_t> capacity) {
  const int64_t N = ids.numel();
  auto opts = ids.options().dtype(at::kInt);
  auto order = at::empty({N}, opts), slot = at::empty({N}, opts);
  auto offsets = at::zeros({num_experts}, opts);
  if (N == 0) return {order, slot, offsets};
  auto ids_c = ids.contiguous();
  const int64_t cap = capacity.value_or(std::numeric_limits<int64_t>::max());
  AT_DISPATCH_INDEX_TYPES(ids_c.scalar_type(), "sort_tokens_cpu", [&] {
    sort_tokens_kernel_cpu<index_t>(ids_c.const_data_ptr<index_t>(), N, num_experts, cap,
                                    order.data_ptr<int32_t>(), slot.data_ptr<int32_t>(),
                                    offsets.data_ptr<int32_t>());
  });
  return {order, slot, offsets};
}

}  // namespace moe_ext
