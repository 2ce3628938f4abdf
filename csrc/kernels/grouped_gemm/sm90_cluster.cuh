// The 2x2 thread-block cluster of the sm_90a grouped GEMM (hopper.cuh, kCluster): which tile a
// CTA of a cluster takes, which half of a stage it loads and multicasts, and whose empty
// barriers its consumers release.
//
// What it buys: a 128 x 128 tile reads (128 + 128) x 64 x 2 bytes per 64-k step from L2 for
// 2 x 128 x 128 x 64 FLOP (0.0156 B/FLOP). Four CTAs on the 2 x 2 block of tiles
// (m, n), (m + 1, n), (m, n + 1), (m + 1, n + 1) of one group share every operand row twice:
// the CTAs of one m-tile (an "N pair") need the same A rows, those of one n-tile (an "M pair")
// the same B rows. Each CTA loads half of its A tile and half of its B tile and multicasts them
// (cp.async.bulk.tensor .multicast::cluster) into its partners' shared memory at the same
// offsets, so per CTA and k step (64 + 64) x 64 x 2 bytes come from L2: 0.0078 B/FLOP, half
// of the single-CTA tile -- what CUTLASS's 128 x 256 tile in a 2 x 1 cluster reads, while each
// consumer warpgroup keeps its own 128 x 128 tile and the ping-pong epilogue overlap (a
// 128 x 256 ping-pong tile would need 256 accumulator registers per thread; a cooperative one
// stops both warpgroups' MMAs for the same epilogue). The gathered A of moe_mlp's first GEMM
// (cp.async, which cannot write a peer's shared memory) is loaded whole by each CTA, only B is
// multicast there: (128 + 64) / 256 = 0.75x the single-CTA bytes.
//
// Ranks (%cluster_ctarank, cluster dims (4, 1, 1)): bit 0 = the m-tile's parity (rm), bit 1 =
// the n-tile's parity (rn). rank ^ 1 is the M partner (same n-tile: shares B), rank ^ 2 the N
// partner (same m-tile: shares A). CTA (rm, rn) loads A's rows 64 rn.. (box rn of the stage's
// two 64-row A boxes) for {rank, rank ^ 2} and B's box rm (rows n0.. or the second half / the
// up rows) for {rank, rank ^ 1}.
//
// Scheduling: the persistent scheduler hands out 2x2 tile blocks (TileScheduler<2 BM, 2 BN>)
// over cluster indices blockIdx.x / 4, + gridDim.x / 4, ...; every CTA of a cluster walks the
// same blocks, so their k steps -- and the stage ring positions -- are identical. A block at a
// group's edge (an odd tile count along m or n) has phantom CTAs: their tile is past the group's
// rows or columns, so they load (zero-filled or unused rows) and multicast their halves to the
// real partners, run the mainloop and store nothing (the epilogue skips rows >= m and columns
// >= n). Their MMAs cost no time: the cluster's stages advance in lockstep anyway, bound by the
// slowest CTA. Phantoms are why the heuristic takes the cluster only at >= 4 m-tiles per group
// (grouped_gemm.h, sm90_cluster_pays).
//
// Barriers: a stage of CTA c is written by c and by its two partners, so it is free only when
// all three have consumed it: each consumer warp releases a stage on its own empty barrier and,
// remotely (mapa + mbarrier.arrive.release.cluster), on both partners' (empty[s]: 3 x 4
// arrivals). full[s] is armed by c's own producer with the stage's whole byte count; a partner's
// multicast may complete its bytes before that (the transaction count goes negative, the phase
// cannot complete while the producer's arrival is pending), but never before c's consumers have
// released the stage's previous use, which the partner's empty wait covers. A cluster barrier
// after the barrier inits (a peer's barriers exist before anything reaches them) and one before
// exit (no CTA leaves while a peer may still arrive on its barriers) bracket the kernel.
#pragma once

#include "../../common/ptx_sm90.h"
#include "grouped_gemm.h"
#include "scheduler.cuh"
#include "sm90_config.cuh"

namespace moe_ext::MOE_KERNEL_NS {

namespace sm90_detail {

// The tiles of one CTA: the scheduler's tile t itself, or (kCluster) this CTA's tile of the
// scheduler's 2x2 block t.
template <bool kCluster, int kTileN>
class Sm90Tiles {
 public:
  MOE_DEVICE explicit Sm90Tiles(const GroupedGemmParams& p)
      : scheduler_(p), rank_(kCluster ? cluster_ctarank() : 0) {}

  MOE_DEVICE static int first() {
    return static_cast<int>(blockIdx.x) / (kCluster ? sm90::kClusterCtas : 1);
  }
  MOE_DEVICE static int stride() {
    return static_cast<int>(gridDim.x) / (kCluster ? sm90::kClusterCtas : 1);
  }

  MOE_DEVICE bool find(int t, TileCoord& tc) {
    if (!scheduler_.find(t, tc)) return false;
    if constexpr (kCluster) {
      tc.tile_m = 2 * tc.tile_m + static_cast<int>(rank_ & 1);
      tc.tile_n = 2 * tc.tile_n + static_cast<int>(rank_ >> 1);
    }
    return true;
  }

 private:
  TileScheduler<kCluster ? 2 * sm90::BM : sm90::BM, kCluster ? 2 * kTileN : kTileN> scheduler_;
  uint32_t rank_;
};

// Multicast masks of this CTA's A half (its N pair) and B half (its M pair).
MOE_DEVICE MOE_FORCEINLINE uint16_t a_pair_mask(uint32_t rank) {
  return static_cast<uint16_t>(1u << rank | 1u << (rank ^ 2));
}
MOE_DEVICE MOE_FORCEINLINE uint16_t b_pair_mask(uint32_t rank) {
  return static_cast<uint16_t>(1u << rank | 1u << (rank ^ 1));
}

// A consumer warp's release of a stage (one lane): its own empty barrier, and with kCluster the
// M and N partners' too (their producers wrote halves of this stage).
template <bool kCluster>
MOE_DEVICE MOE_FORCEINLINE void release_stage(uint64_t* empty) {
  mbarrier_arrive(empty);
  if constexpr (kCluster) {
    const uint32_t rank = cluster_ctarank();
    mbarrier_arrive_cluster(mapa_shared(empty, rank ^ 1));
    mbarrier_arrive_cluster(mapa_shared(empty, rank ^ 2));
  }
}

}  // namespace sm90_detail

}  // namespace moe_ext::MOE_KERNEL_NS
