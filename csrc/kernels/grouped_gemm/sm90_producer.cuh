// The producer side of the sm_90a grouped GEMM (hopper.cuh, warpgroup 0): the TMA tile loads
// of a stage (2-D / 3-D maps, 128-byte swizzle; ragged K reads the per-group maps that
// sm90_group_maps.cuh builds). The gathered A (kGather, moe_mlp's first GEMM): all 128 producer
// threads copy x rows with 16-byte cp.async into the layout TMA would write (128-byte swizzle,
// common/swizzle.h), and report each stage on full[] once its copies have landed.
//
// Gather ownership (per producer thread ptid = 0..127, per stage):
//   rows   r = ptid / 8 + 16 j, j < kGatherRows (8 rows, 16 apart)
//   chunk  ptid % 8: one 16-byte column chunk of the 128-byte (64 k) row
#pragma once

#include "../../common/ptx_sm90.h"
#include "../../common/swizzle.h"
#include "../../common/memory.h"
#include "grouped_gemm.h"
#include "scheduler.cuh"
#include "sm90_cluster.cuh"
#include "sm90_config.cuh"

namespace moe_ext::MOE_KERNEL_NS {

namespace sm90_detail {

MOE_DEVICE MOE_FORCEINLINE void tma_load(void* smem, const TmaDescriptor* map, int rank, int c0,
                                         int c1, int g, uint64_t* bar) {
  if (rank == 3)
    tma_load_3d(smem, map, c0, c1, g, bar);
  else
    tma_load_2d(smem, map, c0, c1, bar);
}

// The same into this CTA's and the peers' of `mask` shared memory (kCluster).
MOE_DEVICE MOE_FORCEINLINE void tma_load_to_peers(void* smem, const TmaDescriptor* map, int rank,
                                                  int c0, int c1, int g, uint64_t* bar,
                                                  uint16_t mask) {
  if (rank == 3)
    tma_load_3d_multicast(smem, map, c0, c1, g, bar, mask);
  else
    tma_load_2d_multicast(smem, map, c0, c1, bar, mask);
}

// Thread 0's TMA loads of one stage (full[s] already armed with the stage's bytes):
//   A (kLoadA): K-major one (64 k, 128 rows) box at sa; MN-major two (64 m, 64 k) boxes
//   B: K-major the (64 k, 64 rows) boxes of rows n0.. and b_up.. (the tile's second half, or the
//      up rows of a gated [gate; up] weight); MN-major two (64 n, 64 k) boxes n0.., n0 + 64..
// kCluster (sm90_cluster.cuh): A's 64-row box rn only (rows a_row + 64 rn; the K-major map's
// box is 64 rows then), multicast to the N pair, and B's box rm only, multicast to the M pair;
// the partners load the other halves into this CTA.
template <bool kAKMajor, bool kBKMajor, bool kLoadA, bool kCluster>
MOE_DEVICE MOE_FORCEINLINE void load_stage(unsigned char* sa, const TmaDescriptor* map_a,
                                           const TmaDescriptor* map_b, int a_rank, int b_rank,
                                           int k, int a_row, int n0, int b_up, int g,
                                           uint64_t* bar) {
  using namespace sm90;
  unsigned char* sb = sa + kABytes;
  if constexpr (kCluster) {
    const uint32_t rank = cluster_ctarank();
    const int rm = static_cast<int>(rank & 1), rn = static_cast<int>(rank >> 1);
    if constexpr (kLoadA) {
      const int row = a_row + 64 * rn;
      tma_load_to_peers(sa + rn * kBoxBytes, map_a, a_rank, kAKMajor ? k : row, kAKMajor ? row : k,
                        g, bar, a_pair_mask(rank));
    }
    const int n = kBKMajor ? (rm ? b_up : n0) : n0 + kBHalf * rm;
    tma_load_to_peers(sb + rm * kBoxBytes, map_b, b_rank, kBKMajor ? k : n, kBKMajor ? n : k, g,
                      bar, b_pair_mask(rank));
    return;
  }
  if constexpr (kLoadA) {
    if constexpr (kAKMajor) {
      tma_load(sa, map_a, a_rank, k, a_row, g, bar);
    } else {
      tma_load(sa, map_a, a_rank, a_row, k, g, bar);
      tma_load(sa + kBoxBytes, map_a, a_rank, a_row + 64, k, g, bar);
    }
  }
  if constexpr (kBKMajor) {
    tma_load(sb, map_b, b_rank, k, n0, g, bar);
    tma_load(sb + kBoxBytes, map_b, b_rank, k, b_up, g, bar);
  } else {
    tma_load(sb, map_b, b_rank, n0, k, g, bar);
    tma_load(sb + kBoxBytes, map_b, b_rank, n0 + kBHalf, k, g, bar);
  }
}

// The x rows of this thread's tile rows (kGather): order[q.start + m0 + r] / a_gather_div, or
// -1 for a zero row (past the group, or an order entry outside [0, M)).
MOE_DEVICE MOE_FORCEINLINE void gather_sources(int32_t (&src_row)[sm90::kGatherRows],
                                               const GroupedGemmParams& p, const GroupProblem& q,
                                               int64_t m0, int ptid) {
  MOE_UNROLL for (int j = 0; j < sm90::kGatherRows; ++j) {
    const int r = ptid / 8 + 16 * j;
    const int32_t src = m0 + r < q.m ? ld_global_nc(p.a_gather + q.start + m0 + r) : -1;
    src_row[j] = src >= 0 && src < p.m ? src / p.a_gather_div : -1;
  }
}

// Issues this thread's cp.async copies of k step kt into the stage's A (sa: (BM, BK), 128-byte
// swizzled rows) as one cp.async group; bytes past K and zero rows are zero-filled.
MOE_DEVICE MOE_FORCEINLINE void gather_stage(unsigned char* sa,
                                             const int32_t (&src_row)[sm90::kGatherRows],
                                             const GroupedGemmParams& p, const GroupProblem& q,
                                             int kt, int ptid) {
  const int chunk = ptid % 8;
  const int64_t k0 = int64_t{kt} * sm90::BK + chunk * 8;
  const int64_t left = q.k - k0;
  const int bytes = left >= 8 ? 16 : (left > 0 ? static_cast<int>(left) * 2 : 0);
  MOE_UNROLL for (int j = 0; j < sm90::kGatherRows; ++j) {
    const int r = ptid / 8 + 16 * j;
    const bool live = src_row[j] >= 0 && bytes > 0;
    const char* src =
        static_cast<const char*>(p.a) + (live ? (int64_t{src_row[j]} * p.a_stride_m + k0) * 2 : 0);
    cp_async<16>(sa + r * 128 + (swizzle_chunk<3, 0>(r, chunk) << 4), src, live ? bytes : 0);
  }
  cp_async_commit();
}

// Reports landed gathered stages on full[]: k step `signaled` once at most kLag later groups
// are in flight (kLag = 0 at a tile's end: every step issued so far).
template <int kLag>
MOE_DEVICE MOE_FORCEINLINE void gather_signal(uint64_t* full, int issued, int& signaled) {
  if constexpr (kLag > 0) {
    if (issued - signaled > kLag) {  // step issued - 1 - lag has landed: hand it over
      cp_async_wait<kLag>();
      fence_proxy_async_shared();  // generic-proxy writes -> wgmma's async-proxy reads
      mbarrier_arrive(&full[signaled++ % sm90::kStages]);
    }
  } else {
    cp_async_wait<0>();
    fence_proxy_async_shared();
    while (signaled < issued) mbarrier_arrive(&full[signaled++ % sm90::kStages]);
  }
}

}  // namespace sm90_detail

}  // namespace moe_ext::MOE_KERNEL_NS
