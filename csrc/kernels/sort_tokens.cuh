// sort_tokens kernels: a stable counting sort of the N = T*k token->expert assignments by expert.
//
// Outputs (DESIGN.md): order[N] (flat assignment at each sorted row), slot[N] (sorted row of each
// assignment, -1 when dropped) and offsets[E] (cumulative ends of the kept rows), all int32. An
// expert keeps its first `capacity` assignments in flat order; dropped ones (over capacity, id
// -1, or -- on the device, where ids are not validated -- any id outside [0, E)) follow all kept
// rows in flat order. Stable: within an expert, rows keep flat order t*k+j.
//
// Three launches, fixed grid sizes derived from N alone (no device->host sync, graph-capturable):
//   1. histogram: block b counts its contiguous chunk of ids into E+1 buckets (bucket E =
//      dropped) with shared-memory atomics (integer counts: order-independent);
//   2. scan (one block): per expert, the exclusive prefix over blocks (each block's base rank),
//      the kept counts min(total, capacity), their scan = offsets, and the dropped count of
//      every block (from the same bases) scanned into each block's first dropped row;
//   3. scatter: block b splits its chunk among 4 warps (contiguous sub-chunks, counted again per
//      warp so each warp knows its base rank per expert); a warp walks its sub-chunk 32 ids at a
//      time, finds the lanes holding the same expert with log2(E+2) ballots (a radix "match"),
//      ranks each lane among them, and writes order/slot. Every position is computed, never
//      atomically claimed, so the result is the same on every run.
// Small N (<= one chunk, e.g. decode): the scatter kernel alone, as one block that also does the
// histogram and the scan in shared memory -- one launch.
// The ids are read 3 times in total (histogram, per-warp count, scatter).
#pragma once

#include <algorithm>
#include <cstdint>

#include "../common/launch.h"
#include "../common/memory.h"
#include "../common/shared.h"
#include "sort_tokens.h"

namespace moe_ext::MOE_KERNEL_NS {

namespace sort_detail {

constexpr int kHistThreads = 256, kScanThreads = 1024;
constexpr int kScatterThreads = 32 * kSortWarps;

// Workspace views (int32): count[nb][B], base[nb][B], start[E], dropped_base[nb], kept_total.
struct Workspace {
  int32_t *count, *base, *start, *dropped_base, *kept_total;
  MOE_HOST_DEVICE Workspace(const SortTokensParams& p, int64_t nb) {
    const int64_t B = p.num_experts + 1;
    count = p.workspace;
    base = count + nb * B;
    start = base + nb * B;
    dropped_base = start + p.num_experts;
    kept_total = dropped_base + nb;
  }
};

template <typename IdT>
MOE_DEVICE MOE_FORCEINLINE int bucket_of(const SortTokensParams& p, int64_t i) {
  const int64_t v = static_cast<int64_t>(ld_global_nc(static_cast<const IdT*>(p.ids) + i));
  return v >= 0 && v < p.num_experts ? static_cast<int>(v) : p.num_experts;
}

MOE_DEVICE MOE_FORCEINLINE int64_t kept_of(int64_t capacity, int64_t rank_base, int64_t count) {
  const int64_t room = capacity - rank_base;
  return room < 0 ? 0 : room < count ? room : count;
}

}  // namespace sort_detail

template <typename IdT>
__global__ void __launch_bounds__(sort_detail::kHistThreads, 1)
    sort_histogram_kernel(SortTokensParams p, int64_t chunk, int64_t nb) {
  using namespace sort_detail;
  MOE_SHARED_DYNAMIC(int, hist);  // [E+1]
  const int B = p.num_experts + 1;
  for (int e = threadIdx.x; e < B; e += blockDim.x) st_shared(hist + e, 0);
  __syncthreads();
  const int64_t lo = blockIdx.x * chunk, hi = std::min(p.num_assignments, lo + chunk);
  for (int64_t i = lo + threadIdx.x; i < hi; i += blockDim.x)
    atomicAdd(hist + bucket_of<IdT>(p, i), 1);
  __syncthreads();
  const Workspace ws(p, nb);
  for (int e = threadIdx.x; e < B; e += blockDim.x)
    st_global(ws.count + blockIdx.x * B + e, ld_shared(hist + e));
}

__global__ void __launch_bounds__(sort_detail::kScanThreads, 1)
    sort_scan_kernel(SortTokensParams p, int64_t nb) {
  using namespace sort_detail;
  MOE_SHARED_DYNAMIC(int, part);  // [blockDim.x] per-thread partial sums
  const Workspace ws(p, nb);
  const int E = p.num_experts, B = E + 1, tid = threadIdx.x, nt = blockDim.x;
  // Per bucket: each block's base rank; per expert: kept = min(total, capacity) (into start).
  for (int e = tid; e < B; e += nt) {
    int32_t run = 0;
    for (int64_t b = 0; b < nb; ++b) {
      st_global(ws.base + b * B + e, run);
      run += ld_global(ws.count + b * B + e);
    }
    if (e < E) st_global(ws.start + e, static_cast<int32_t>(kept_of(p.capacity, 0, run)));
  }
  __syncthreads();
  // Exclusive scan of the kept counts over experts: each thread owns a contiguous range.
  const int per = ceil_div(E, nt), e0 = std::min(E, tid * per), e1 = std::min(E, e0 + per);
  int32_t sum = 0;
  for (int e = e0; e < e1; ++e) sum += ld_global(ws.start + e);
  st_shared(part + tid, sum);
  __syncthreads();
  if (tid == 0) {
    int32_t run = 0;
    for (int t = 0; t < nt; ++t) {
      const int32_t v = ld_shared(part + t);
      st_shared(part + t, run);
      run += v;
    }
    st_global(ws.kept_total, run);
  }
  __syncthreads();
  int32_t run = ld_shared(part + tid);
  for (int e = e0; e < e1; ++e) {
    const int32_t kept = ld_global(ws.start + e);
    st_global(ws.start + e, run);
    run += kept;
    st_global(p.offsets + e, run);
  }
  // Dropped assignments per block (from its base ranks), then their exclusive scan.
  for (int64_t b = tid; b < nb; b += nt) {
    int64_t dropped = ld_global(ws.count + b * B + E);
    for (int e = 0; e < E; ++e) {
      const int64_t c = ld_global(ws.count + b * B + e);
      dropped += c - kept_of(p.capacity, ld_global(ws.base + b * B + e), c);
    }
    st_global(ws.dropped_base + b, static_cast<int32_t>(dropped));
  }
  __syncthreads();
  if (tid == 0) {
    int32_t acc = 0;
    for (int64_t b = 0; b < nb; ++b) {
      const int32_t v = ld_global(ws.dropped_base + b);
      st_global(ws.dropped_base + b, acc);
      acc += v;
    }
  }
}

// kSingleBlock: the small-N path (N <= kSortChunk, decode), where this one block also does the
// histogram's and the scan's work: its bases are 0 and it computes the expert starts and offsets
// itself, in shared memory, so the whole sort is one launch.
template <typename IdT, bool kSingleBlock>
__global__ void __launch_bounds__(sort_detail::kScatterThreads, 1)
    sort_scatter_kernel(SortTokensParams p, int64_t chunk, int64_t nb) {
  using namespace sort_detail;
  // rank[kSortWarps][E+1], dropped[kSortWarps]; single block: + start[E], part[threads], total
  MOE_SHARED_DYNAMIC(int, sm);
  const int E = p.num_experts, B = E + 1;
  const int lane = threadIdx.x % 32, warp = threadIdx.x / 32;
  int* rank = sm;
  int* wdrop = sm + kSortWarps * B;
  int* start_s = wdrop + kSortWarps;
  int* part = start_s + E;
  int* kept_total_s = part + kScatterThreads;
  const int zeroed = kSortWarps * B + kSortWarps;
  for (int i = threadIdx.x; i < zeroed; i += blockDim.x) st_shared(sm + i, 0);
  __syncthreads();
  const int64_t lo = blockIdx.x * chunk, hi = std::min(p.num_assignments, lo + chunk);
  const int64_t sub = ceil_div(hi - lo, int64_t{kSortWarps});
  const int64_t wlo = std::min(hi, lo + warp * sub), whi = std::min(hi, wlo + sub);
  for (int64_t i = wlo + lane; i < whi; i += 32)
    atomicAdd(rank + warp * B + bucket_of<IdT>(p, i), 1);
  __syncthreads();
  const Workspace ws(p, nb);
  if constexpr (kSingleBlock) {
    // kept per expert, their exclusive scan (each thread a contiguous range) -> starts, offsets
    const int nt = blockDim.x, per = ceil_div(E, nt);
    const int e0 = std::min(E, static_cast<int>(threadIdx.x) * per), e1 = std::min(E, e0 + per);
    int sum = 0;
    for (int e = e0; e < e1; ++e) {
      int total = 0;
      for (int w = 0; w < kSortWarps; ++w) total += ld_shared(rank + w * B + e);
      const int kept = static_cast<int>(kept_of(p.capacity, 0, total));
      st_shared(start_s + e, kept);
      sum += kept;
    }
    st_shared(part + threadIdx.x, sum);
    __syncthreads();
    if (threadIdx.x == 0) {
      int run = 0;
      for (int t = 0; t < nt; ++t) {
        const int v = ld_shared(part + t);
        st_shared(part + t, run);
        run += v;
      }
      st_shared(kept_total_s, run);
    }
    __syncthreads();
    int run = ld_shared(part + threadIdx.x);
    for (int e = e0; e < e1; ++e) {
      const int kept = ld_shared(start_s + e);
      st_shared(start_s + e, run);
      run += kept;
      st_global(p.offsets + e, run);
    }
    __syncthreads();
  }
  // Counts -> each warp's base rank per expert; count each warp's dropped assignments.
  int dropped[kSortWarps] = {};
  for (int e = threadIdx.x; e < B; e += blockDim.x) {
    int64_t running = kSingleBlock ? 0 : ld_global(ws.base + blockIdx.x * B + e);
    for (int w = 0; w < kSortWarps; ++w) {
      const int c = ld_shared(rank + w * B + e);
      dropped[w] += e < E ? static_cast<int>(c - kept_of(p.capacity, running, c)) : c;
      st_shared(rank + w * B + e, static_cast<int>(running));
      running += c;
    }
  }
  for (int w = 0; w < kSortWarps; ++w)
    if (dropped[w] != 0) atomicAdd(wdrop + w, dropped[w]);
  __syncthreads();
  int64_t next_dropped = kSingleBlock
                             ? ld_shared(kept_total_s)
                             : ld_global(ws.kept_total) + ld_global(ws.dropped_base + blockIdx.x);
  for (int w = 0; w < warp; ++w) next_dropped += ld_shared(wdrop + w);

  int bits = 0;
  while ((1 << bits) <= B) ++bits;  // bucket values 0..B (B marks lanes past the end)
  const unsigned lt = (1u << lane) - 1u;
  for (int64_t i0 = wlo; i0 < whi; i0 += 32) {
    const int64_t i = i0 + lane;
    const bool valid = i < whi;
    const int e = valid ? bucket_of<IdT>(p, i) : B;
    unsigned match = 0xffffffffu;
    for (int bit = 0; bit < bits; ++bit) {
      const unsigned ones = __ballot_sync(0xffffffffu, (e >> bit) & 1);
      match &= ((e >> bit) & 1) ? ones : ~ones;
    }
    const bool routed = valid && e < E;
    const int r = routed ? ld_shared(rank + warp * B + e) + __popc(match & lt) : 0;
    __syncwarp();
    if (routed && lane == 31 - __clz(static_cast<int>(match)))
      st_shared(rank + warp * B + e, r + 1);
    const bool kept = routed && r < p.capacity;
    const unsigned dropped_lanes = __ballot_sync(0xffffffffu, valid && !kept);
    if (valid) {
      const int64_t start = kSingleBlock ? ld_shared(start_s + e) : ld_global(ws.start + e);
      const int64_t pos = kept ? start + r : next_dropped + __popc(dropped_lanes & lt);
      st_global(p.order + pos, static_cast<int32_t>(i));
      st_global(p.slot + i, kept ? static_cast<int32_t>(pos) : -1);
    }
    next_dropped += __popc(dropped_lanes);
  }
}

}  // namespace moe_ext::MOE_KERNEL_NS

// The launcher (declared in the .h), for the target this translation unit compiles.
namespace moe_ext {

template <>
cudaError_t launch_sort_tokens<kKernelTarget>(const SortTokensParams& p, cudaStream_t stream) {
  using namespace MOE_KERNEL_NS;
  using namespace sort_detail;
  const int64_t N = p.num_assignments;
  if (N == 0) return cudaSuccess;  // offsets were zero-filled by the caller
  if (p.num_experts < 1 || p.num_experts > kSortMaxExperts) return cudaErrorInvalidValue;
  const int64_t nb = sort_tokens_blocks(N), chunk = ceil_div(N, nb);
  const size_t B = static_cast<size_t>(p.num_experts) + 1;
  const dim3 grid(static_cast<unsigned>(nb));
  const size_t scatter_smem = (kSortWarps * B + kSortWarps) * sizeof(int);
  if (nb == 1) {  // small N: one block, one launch
    const size_t smem = scatter_smem + (p.num_experts + kScatterThreads + 1) * sizeof(int);
    return p.ids_are_int64
               ? launch_kernel("sort_scatter_kernel", sort_scatter_kernel<int64_t, true>, grid,
                               dim3(kScatterThreads), smem, stream, p, chunk, nb)
               : launch_kernel("sort_scatter_kernel", sort_scatter_kernel<int32_t, true>, grid,
                               dim3(kScatterThreads), smem, stream, p, chunk, nb);
  }
  cudaError_t err;
  if (p.ids_are_int64) {
    err = launch_kernel("sort_histogram_kernel", sort_histogram_kernel<int64_t>, grid,
                        dim3(kHistThreads), B * sizeof(int), stream, p, chunk, nb);
  } else {
    err = launch_kernel("sort_histogram_kernel", sort_histogram_kernel<int32_t>, grid,
                        dim3(kHistThreads), B * sizeof(int), stream, p, chunk, nb);
  }
  if (err != cudaSuccess) return err;
  err = launch_kernel("sort_scan_kernel", sort_scan_kernel, dim3(1), dim3(kScanThreads),
                      kScanThreads * sizeof(int), stream, p, nb);
  if (err != cudaSuccess) return err;
  if (p.ids_are_int64) {
    return launch_kernel("sort_scatter_kernel", sort_scatter_kernel<int64_t, false>, grid,
                         dim3(kScatterThreads), scatter_smem, stream, p, chunk, nb);
  }
  return launch_kernel("sort_scatter_kernel", sort_scatter_kernel<int32_t, false>, grid,
                       dim3(kScatterThreads), scatter_smem, stream, p, chunk, nb);
}

}  // namespace moe_ext
