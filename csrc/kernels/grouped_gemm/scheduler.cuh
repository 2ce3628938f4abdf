// Per-group problems and the persistent tile scheduler of the grouped GEMM.
//
// group_problem(p, g): the extents and operand offsets of problem g, read from `offs` on the
// device. The ragged-M and ragged-N forms get one extra problem, g = num_groups, covering the
// rows/columns past offs[-1] with k = 0, so the kernel writes every element of c (zeros there)
// and the output needs no separate memset. Offsets are clamped to the ragged extent and to the
// previous group's start, so malformed offs (unchecked on the device) can never address outside
// the operands; problems then overlap, but never leave a gap.
//
// TileScheduler: a persistent grid walks the linear tile index t = blockIdx.x, + gridDim.x, ...
// over all problems' tiles (problem-major; inside a problem, m-tile fastest, so CTAs running at
// the same time share the expert's B column block in L2). The map t -> (problem, m-tile, n-tile)
// needs the prefix sum of tile counts over problems; each warp keeps a window of 32 problems
// (one per lane) with their inclusive prefix sums (a shuffle scan) and slides it forward, since
// a CTA's t only grows. No shared memory, no barrier, no host sync (CUDA-graph safe), any number
// of groups. Every warp of the CTA computes the same answer. Tiles are equal work within a
// problem, so round-robin over tiles balances skewed groups (one huge expert, many empty ones).
#pragma once

#include "../../common/memory.h"
#include "../../common/portable.h"
#include "../../common/warp.h"  // __shfl_sync / __shfl_up_sync on both paths
#include "grouped_gemm.h"

namespace moe_ext::MOE_KERNEL_NS {

struct GroupProblem {
  int64_t m, n, k;
  int64_t a_off, b_off, c_off;  // element offsets of the problem's A, B, C origins
  int64_t bias_off;             // element offset of its bias row (column 0), -1 for none
  int64_t start;                // first row (kRaggedM) / column (kRaggedN) / k of the problem
};

MOE_DEVICE MOE_FORCEINLINE int num_problems(const GroupedGemmParams& p) {
  const bool tail = p.form == GroupedGemmForm::kRaggedM || p.form == GroupedGemmForm::kRaggedN;
  return p.num_groups + (tail ? 1 : 0);
}

MOE_DEVICE MOE_FORCEINLINE int64_t clamp64(int64_t v, int64_t lo, int64_t hi) {
  return v < lo ? lo : (v > hi ? hi : v);
}

MOE_DEVICE inline GroupProblem group_problem(const GroupedGemmParams& p, int g) {
  GroupProblem q{p.m, p.n, p.k, 0, 0, 0, -1, 0};
  const bool has_bias = p.bias != nullptr;
  if (p.form == GroupedGemmForm::kBatched) {
    q.a_off = g * p.a_stride_g, q.b_off = g * p.b_stride_g, q.c_off = g * p.c_stride_g;
    if (has_bias) q.bias_off = g * p.bias_stride_g;
    return q;
  }
  const int64_t extent = p.form == GroupedGemmForm::kRaggedM   ? p.m
                         : p.form == GroupedGemmForm::kRaggedN ? p.n
                                                               : p.k;
  const bool tail = g == p.num_groups;  // past offs[-1]: zeros, no bias
  const int64_t lo = g == 0 ? 0 : clamp64(ld_global_nc(p.offs + g - 1), 0, extent);
  const int64_t hi = tail ? extent : clamp64(ld_global_nc(p.offs + g), lo, extent);
  q.start = lo;
  switch (p.form) {
    case GroupedGemmForm::kRaggedM:
      q.m = hi - lo, q.a_off = lo * p.a_stride_m, q.c_off = lo * p.c_stride_m;
      if (tail)
        q.k = 0;
      else
        q.b_off = g * p.b_stride_g;
      if (has_bias && !tail) q.bias_off = g * p.bias_stride_g;
      break;
    case GroupedGemmForm::kRaggedN:
      q.n = hi - lo, q.b_off = lo * p.b_stride_n, q.c_off = lo;
      if (tail)
        q.k = 0;
      else
        q.a_off = g * p.a_stride_g;
      if (has_bias && !tail) q.bias_off = g * p.bias_stride_g + lo;
      break;
    default:  // kRaggedK
      q.k = hi - lo, q.a_off = lo * p.a_stride_k, q.b_off = lo * p.b_stride_k;
      q.c_off = g * p.c_stride_g;
      if (has_bias) q.bias_off = g * p.bias_stride_g;
      break;
  }
  return q;
}

struct TileCoord {
  int problem, tile_m, tile_n;
};

// Tile indices are int32: the launcher refuses shapes whose tile-count bound reaches 2^31.
template <int BM, int BN>
class TileScheduler {
 public:
  MOE_DEVICE explicit TileScheduler(const GroupedGemmParams& p)
      : p_(p), problems_(num_problems(p)), lane_(static_cast<int>(threadIdx.x % 32)) {
    load_window(0);
  }

  // The coordinates of linear tile `tile` (non-decreasing across calls); false past the last.
  MOE_DEVICE bool find(int tile, TileCoord& out) {
    while (tile >= window_first_ + window_total_) {
      if (window_base_ + 32 >= problems_) return false;
      window_first_ += window_total_;
      load_window(window_base_ + 32);
    }
    // the first lane whose inclusive end passes `tile` holds the tile's problem
    const unsigned past = __ballot_sync(0xffffffffu, window_first_ + lane_end_ > tile);
    const int owner = __ffs(static_cast<int>(past)) - 1;
    const int owner_begin = __shfl_sync(0xffffffffu, lane_begin_, owner);
    const int owner_tiles_m = __shfl_sync(0xffffffffu, lane_tiles_m_, owner);
    const int t = tile - window_first_ - owner_begin;
    out.problem = window_base_ + owner;
    out.tile_m = t % owner_tiles_m;
    out.tile_n = t / owner_tiles_m;
    return true;
  }

 private:
  MOE_DEVICE void load_window(int base) {
    window_base_ = base;
    const int g = base + lane_;
    int count = 0, tiles_m = 1;
    if (g < problems_) {
      const GroupProblem q = group_problem(p_, g);
      tiles_m = static_cast<int>((q.m + BM - 1) / BM);
      count = tiles_m * static_cast<int>((q.n + BN - 1) / BN);
      if (tiles_m == 0) tiles_m = 1;
    }
    int incl = count;
    for (int o = 1; o < 32; o *= 2) {
      const int v = __shfl_up_sync(0xffffffffu, incl, o);
      if (lane_ >= o) incl += v;
    }
    lane_begin_ = incl - count, lane_end_ = incl, lane_tiles_m_ = tiles_m;
    window_total_ = __shfl_sync(0xffffffffu, incl, 31);
  }

  const GroupedGemmParams& p_;
  int problems_, lane_, window_base_ = 0;
  int window_first_ = 0, window_total_ = 0;  // tiles before the window / in it
  int lane_begin_ = 0, lane_end_ = 0, lane_tiles_m_ = 1;
};

}  // namespace moe_ext::MOE_KERNEL_NS
