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
//   2. scan (one block): per bucket (a thread each, coalesced across threads, 8 blocks' counts
//      loaded before they are summed), the exclusive prefix over blocks (each block's base
//      rank), each block's overflow added to its dropped count (shared integer atomics), and
//      kept = min(total, capacity); the kept counts' scan over experts = offsets, the dropped
//      counts' scan over blocks = each block's first dropped row. Both scans over threads are
//      block-parallel (block_exclusive_scan: warp shuffles, then one warp over the warp
//      totals); integer sums, so exact;
//   3. scatter: block b walks its chunk in rounds of kSortChunk rows (one round unless the grid
//      is capped at kSortMaxBlocks); a round is split among 4 warps (contiguous quarters,
//      counted again per warp so each warp knows its base rank per expert); a warp walks its
//      quarter 32 ids at a time, finds the lanes holding the same expert with log2(E+2) ballots
//      (a radix "match"), ranks each lane among them and writes slot (coalesced: lane order).
//      The order rows are staged: each expert's kept rows of a round, and its dropped rows, are
//      one contiguous run of `order`, so the round is first laid out in shared memory in output
//      order and then copied out by consecutive threads -- coalesced stores instead of 32 lanes
//      writing 32 experts' runs (emulator: 32-39 % -> 87-100 % of each touched sector used).
//      Every position is computed, never atomically claimed: the same result on every run.
// Small N (<= one chunk, e.g. decode): the scatter kernel alone, as one block that also does the
// histogram and the scan in shared memory (the same block-parallel scan) -- one launch.
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
constexpr int kScanBatch = 8;  // per-block counts a scan thread loads before summing them
constexpr int kScatterThreads = 32 * kSortWarps;
static_assert(kSortMaxBlocks <= kScanThreads, "the scan kernel gives each block one thread");

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

// Exclusive prefix sum of one int per thread over the block (blockDim.x a multiple of 32, at most
// 1024): a shuffle scan within each warp, one of the warp totals by warp 0, through `warp_part`
// (32 ints of shared memory). Integer sums: the result is exact whatever the association. Writes
// the block total to *total when total is non-null. Ends with a barrier, so warp_part can be
// reused at once.
MOE_DEVICE MOE_FORCEINLINE int block_exclusive_scan(int v, int* warp_part, int* total) {
  const int lane = threadIdx.x % 32, warp = threadIdx.x / 32, warps = blockDim.x / 32;
  int x = v;
  for (int o = 1; o < 32; o *= 2) {
    const int n = __shfl_up_sync(0xffffffffu, x, o);
    if (lane >= o) x += n;
  }
  if (lane == 31) st_shared(warp_part + warp, x);
  __syncthreads();
  if (warp == 0) {
    const int w = lane < warps ? ld_shared(warp_part + lane) : 0;
    int y = w;
    for (int o = 1; o < 32; o *= 2) {
      const int n = __shfl_up_sync(0xffffffffu, y, o);
      if (lane >= o) y += n;
    }
    __syncwarp();
    if (lane < warps) st_shared(warp_part + lane, y - w);
    if (lane == 31 && total != nullptr) st_shared(total, y);
  }
  __syncthreads();
  const int r = ld_shared(warp_part + warp) + (x - v);
  __syncthreads();
  return r;
}

// Shared ints of the scatter kernel: rank[kSortWarps][B], wdrop[kSortWarps], start[E],
// shift[B], next[B], part[kScatterThreads], kept_total, stage[kSortChunk].
MOE_HOST_DEVICE inline int64_t scatter_smem_ints(int E) {
  const int64_t B = E + 1;
  return kSortWarps * B + kSortWarps + E + 2 * B + kScatterThreads + 1 + kSortChunk;
}

// A staged row: its offset in the round (12 bits) and its output segment (an expert, or E for
// the dropped rows), so that the copy-out knows where the row's run starts.
constexpr int kStageRowBits = 12;
static_assert(kSortChunk <= (int64_t{1} << kStageRowBits), "a round offset fits 12 bits");
static_assert(kSortMaxExperts < (1 << (31 - kStageRowBits)), "a segment fits the upper bits");

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
  // drop[nb] per-block dropped counts, then 33 ints of block_exclusive_scan scratch
  MOE_SHARED_DYNAMIC(int, sm);
  int* drop = sm;
  int* part = sm + nb;
  const Workspace ws(p, nb);
  const int E = p.num_experts, B = E + 1, tid = threadIdx.x, nt = blockDim.x;
  for (int64_t b = tid; b < nb; b += nt) st_shared(drop + b, 0);
  __syncthreads();
  // Per bucket (a thread each; neighbouring threads read neighbouring counts: coalesced): each
  // block's base rank, the bucket's overflow per block added to that block's dropped count
  // (integer shared atomics, exact in any order), and kept = min(total, capacity) into start.
  // The counts are loaded kScanBatch blocks at a time, so that many loads are in flight.
  for (int e = tid; e < B; e += nt) {
    int32_t run = 0;
    for (int64_t b0 = 0; b0 < nb; b0 += kScanBatch) {
      int32_t c[kScanBatch];
      MOE_UNROLL for (int j = 0; j < kScanBatch; ++j) c[j] =
          b0 + j < nb ? ld_global(ws.count + (b0 + j) * B + e) : 0;
      MOE_UNROLL for (int j = 0; j < kScanBatch; ++j) {
        if (b0 + j >= nb) break;
        st_global(ws.base + (b0 + j) * B + e, run);
        const int32_t over =
            e < E ? c[j] - static_cast<int32_t>(kept_of(p.capacity, run, c[j])) : c[j];
        if (over != 0) atomicAdd(drop + b0 + j, over);
        run += c[j];
      }
    }
    if (e < E) st_global(ws.start + e, static_cast<int32_t>(kept_of(p.capacity, 0, run)));
  }
  __syncthreads();
  // Exclusive scan of the kept counts over experts: each thread owns a contiguous range.
  const int per = ceil_div(E, nt), e0 = std::min(E, tid * per), e1 = std::min(E, e0 + per);
  int32_t sum = 0;
  for (int e = e0; e < e1; ++e) sum += ld_global(ws.start + e);
  int32_t run = block_exclusive_scan(sum, part, part + 32);
  if (tid == 0) st_global(ws.kept_total, ld_shared(part + 32));
  for (int e = e0; e < e1; ++e) {
    const int32_t kept = ld_global(ws.start + e);
    st_global(ws.start + e, run);
    run += kept;
    st_global(p.offsets + e, run);
  }
  // The blocks' dropped counts -> each block's first dropped row (nb <= blockDim.x: one block
  // per thread).
  const int32_t dropped_base =
      block_exclusive_scan(tid < nb ? ld_shared(drop + tid) : 0, part, nullptr);
  if (tid < nb) st_global(ws.dropped_base + tid, dropped_base);
}

// kSingleBlock: the small-N path (N <= kSortChunk, decode), where this one block also does the
// histogram's and the scan's work: its bases are 0 and it computes the expert starts and offsets
// itself, in shared memory, so the whole sort is one launch.
template <typename IdT, bool kSingleBlock>
__global__ void __launch_bounds__(sort_detail::kScatterThreads, 1)
    sort_scatter_kernel(SortTokensParams p, int64_t chunk, int64_t nb) {
  using namespace sort_detail;
  MOE_SHARED_DYNAMIC(int, sm);  // scatter_smem_ints(E)
  const int E = p.num_experts, B = E + 1;
  const int lane = threadIdx.x % 32, warp = threadIdx.x / 32, nt = blockDim.x;
  int* rank = sm;
  int* wdrop = rank + kSortWarps * B;
  int* start_s = wdrop + kSortWarps;
  int* shift = start_s + E;  // per segment: output row = staged row + shift[segment]
  int* next = shift + B;     // per expert: the block's rank of its next row (rounds so far)
  int* part = next + B;
  int* kept_total_s = part + kScatterThreads;
  int* stage = kept_total_s + 1;
  const Workspace ws(p, nb);
  const int per = ceil_div(E, nt);
  const int e0 = std::min(E, static_cast<int>(threadIdx.x) * per), e1 = std::min(E, e0 + per);
  const int64_t lo = blockIdx.x * chunk, hi = std::min(p.num_assignments, lo + chunk);
  for (int e = threadIdx.x; e < B; e += nt) {
    st_shared(next + e, kSingleBlock || e == E ? 0 : ld_global(ws.base + blockIdx.x * B + e));
    if (!kSingleBlock && e < E) st_shared(start_s + e, ld_global(ws.start + e));
  }
  int64_t round_dropped = 0;  // the first output row of this round's dropped rows
  if (!kSingleBlock)
    round_dropped = ld_global(ws.kept_total) + ld_global(ws.dropped_base + blockIdx.x);
  int bits = 0;
  while ((1 << bits) <= B) ++bits;  // bucket values 0..B (B marks lanes past the end)
  const unsigned lt = (1u << lane) - 1u;

  // Rounds of kSortChunk rows (one round unless the grid is capped); the 4 warps take
  // contiguous quarters of a round.
  for (int64_t rlo = lo; rlo < hi; rlo += kSortChunk) {
    const int64_t rhi = std::min(hi, rlo + kSortChunk);
    const int64_t sub = ceil_div(rhi - rlo, int64_t{kSortWarps});
    const int64_t wlo = std::min(rhi, rlo + warp * sub), whi = std::min(rhi, wlo + sub);
    for (int i = threadIdx.x; i < kSortWarps * B + kSortWarps; i += nt) st_shared(sm + i, 0);
    __syncthreads();
    for (int64_t i = wlo + lane; i < whi; i += 32)
      atomicAdd(rank + warp * B + bucket_of<IdT>(p, i), 1);
    __syncthreads();
    if constexpr (kSingleBlock) {
      // kept per expert, their exclusive scan (each thread a contiguous range) -> starts, offsets
      int sum = 0;
      for (int e = e0; e < e1; ++e) {
        int total = 0;
        for (int w = 0; w < kSortWarps; ++w) total += ld_shared(rank + w * B + e);
        const int kept = static_cast<int>(kept_of(p.capacity, 0, total));
        st_shared(start_s + e, kept);
        sum += kept;
      }
      int run = block_exclusive_scan(sum, part, kept_total_s);
      for (int e = e0; e < e1; ++e) {
        const int kept = ld_shared(start_s + e);
        st_shared(start_s + e, run);
        run += kept;
        st_global(p.offsets + e, run);
      }
      round_dropped = ld_shared(kept_total_s);
      __syncthreads();
    }
    // Counts -> each warp's base rank per expert; each warp's dropped rows; the round's kept
    // rows per expert (into shift, turned into shifts below); the block's ranks move on.
    int dropped[kSortWarps] = {};
    for (int e = threadIdx.x; e < B; e += nt) {
      const int base = ld_shared(next + e);
      int running = base;
      for (int w = 0; w < kSortWarps; ++w) {
        const int c = ld_shared(rank + w * B + e);
        dropped[w] += e < E ? static_cast<int>(c - kept_of(p.capacity, running, c)) : c;
        st_shared(rank + w * B + e, running);
        running += c;
      }
      if (e < E) st_shared(shift + e, static_cast<int>(kept_of(p.capacity, base, running - base)));
      st_shared(next + e, running);
    }
    for (int w = 0; w < kSortWarps; ++w)
      if (dropped[w] != 0) atomicAdd(wdrop + w, dropped[w]);
    __syncthreads();
    // The round's rows in output order, staged: expert e's kept rows from its local start (the
    // exclusive scan of the kept counts), then the dropped rows. Each expert's kept rows (and
    // the dropped rows) are one contiguous run of `order`: output row = staged + shift[segment].
    {
      int sum = 0;
      for (int e = e0; e < e1; ++e) sum += ld_shared(shift + e);
      int run = block_exclusive_scan(sum, part, part + 32);
      for (int e = e0; e < e1; ++e) {
        const int kept = ld_shared(shift + e);
        st_shared(shift + e, ld_shared(start_s + e) + ld_shared(rank + e) - run);
        run += kept;
      }
      if (threadIdx.x == 0)
        st_shared(shift + E, static_cast<int>(round_dropped) - ld_shared(part + 32));
      __syncthreads();
    }
    int64_t next_dropped = round_dropped;
    for (int w = 0; w < warp; ++w) next_dropped += ld_shared(wdrop + w);
    for (int w = 0; w < kSortWarps; ++w) round_dropped += ld_shared(wdrop + w);

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
        const int64_t pos =
            kept ? ld_shared(start_s + e) + r : next_dropped + __popc(dropped_lanes & lt);
        const int segment = kept ? e : E;
        st_shared(stage + (pos - ld_shared(shift + segment)),
                  static_cast<int>(i - rlo) | segment << kStageRowBits);
        st_global(p.slot + i, kept ? static_cast<int32_t>(pos) : -1);
      }
      next_dropped += __popc(dropped_lanes);
    }
    // Copy-out: consecutive threads write consecutive rows of each run -- coalesced stores.
    __syncthreads();
    for (int64_t row = threadIdx.x; row < rhi - rlo; row += nt) {
      const int v = ld_shared(stage + row);
      const int segment = v >> kStageRowBits;
      st_global(p.order + row + ld_shared(shift + segment),
                static_cast<int32_t>(rlo + (v & ((1 << kStageRowBits) - 1))));
    }
    __syncthreads();  // stage, shift and the rank rows are reused by the next round
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
  const size_t scatter_smem = scatter_smem_ints(p.num_experts) * sizeof(int);
  if (nb == 1) {  // small N: one block, one launch
    const size_t smem = scatter_smem;
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
                      (nb + 33) * sizeof(int), stream, p, nb);
  if (err != cudaSuccess) return err;
  if (p.ids_are_int64) {
    return launch_kernel("sort_scatter_kernel", sort_scatter_kernel<int64_t, false>, grid,
                         dim3(kScatterThreads), scatter_smem, stream, p, chunk, nb);
  }
  return launch_kernel("sort_scatter_kernel", sort_scatter_kernel<int32_t, false>, grid,
                       dim3(kScatterThreads), scatter_smem, stream, p, chunk, nb);
}

}  // namespace moe_ext
