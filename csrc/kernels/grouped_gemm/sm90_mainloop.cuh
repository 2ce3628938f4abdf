// The consumer mainloop of the sm_90a grouped GEMM (hopper.cuh, warpgroups 1 and 2): one tile's
// k steps as wgmma.m64n128k16 groups; the warpgroup owns the whole 128 x 128 tile (ping-pong:
// the two consumer warpgroups take alternate tiles), as two 64-row halves sharing B.
//
// Per k step (stage s = it % kStages): wait full[s]; fence; 8 x wgmma.m64n128k16 (BK = 64 = one
// 128-byte swizzle atom, x 2 halves) committed as one group; wait_group 1 -- this step's MMAs
// stay in flight while the previous step's group, now retired, releases its stage (one arrival
// per warp on empty[]; in a cluster on the two partners' empty[] too, sm90_cluster.cuh); after the
// last step the turn is handed to the other warpgroup
// (`handoff`), then wait_group 0 and that stage is released too.
//
// Descriptors (128-byte swizzle, SBO 1024 = 8 rows of 128 bytes):
//   K-major operand  rows of 64 k; a k16 step advances 32 bytes along the swizzled row, LBO 16
//   MN-major operand 16 k rows of 128 bytes (64 m or n) per k16 step = 2 KB; LBO = the next 64
//                    columns' box (kBoxBytes); the instruction's transpose bit set
// MN-major A: the half's (64 m, 64 k) box; its k16 steps 2 KB apart, LBO unused (64 m = one box).
// Accumulator d[h][64]: rows 64 h.. of the tile, (64 rows, BN) in the wgmma m64n128 fp32 layout --
// warp w of the warpgroup holds rows 64 h + 16 w + lane / 4 (+ 8), columns 8 j + 2 (lane % 4)
// (+ 1), j < 16.
#pragma once

#include "../../common/ptx_sm90.h"
#include "grouped_gemm.h"
#include "sm90_cluster.cuh"
#include "sm90_config.cuh"

namespace moe_ext::MOE_KERNEL_NS {

namespace sm90_detail {

template <typename T, bool kAKMajor, bool kBKMajor, bool kCluster>
MOE_DEVICE MOE_FORCEINLINE int mma_tile(float (&d)[2][64], unsigned char* smem, uint64_t* full,
                                        uint64_t* empty, uint64_t* handoff, int it, int k_tiles,
                                        int lane, const GroupedGemmParams& p) {
  using namespace sm90;
  for (int kt = 0; kt < k_tiles; ++kt, ++it) {
    const int s = it % kStages, use = it / kStages;
    mbarrier_wait(&full[s], use & 1, kWaitSm90ConsumerFull, p.wait_report);
    // (64, BK) of A per half: 64 swizzled rows K-major, or the (64 m, BK) box MN-major -- both
    // kBoxBytes apart
    const unsigned char* sa = smem + s * kStageBytes;
    const unsigned char* sb = sa + kABytes;  // (BN, BK)
    wgmma_fence();
    MOE_UNROLL for (int ks = 0; ks < BK / 16; ++ks) {
      const uint64_t db = kBKMajor ? wgmma_desc(sb + ks * 32, 16, 1024, true)
                                   : wgmma_desc(sb + ks * 2048, kBoxBytes, 1024, true);
      MOE_UNROLL for (int h = 0; h < 2; ++h) {
        const unsigned char* sah = sa + h * kBoxBytes;
        const uint64_t da = kAKMajor ? wgmma_desc(sah + ks * 32, 16, 1024, true)
                                     : wgmma_desc(sah + ks * 2048, kBoxBytes, 1024, true);
        wgmma_m64n128k16<T, !kAKMajor, !kBKMajor>(d[h], da, db, kt > 0 || ks > 0);
      }
    }
    wgmma_commit();
    wgmma_wait<1>();
    if (kt > 0 && lane == 0) release_stage<kCluster>(&empty[(it - 1) % kStages]);
  }
  // every MMA of the tile is issued: the other warpgroup's mainloop may start (its MMAs queue
  // behind these), this one drains and goes on to its epilogue
  if (lane == 0) mbarrier_arrive(handoff);
  wgmma_wait<0>();  // the accumulators are read next; the last stage is free
  if (k_tiles > 0 && lane == 0) release_stage<kCluster>(&empty[(it - 1) % kStages]);
  return it;
}

}  // namespace sm90_detail

}  // namespace moe_ext::MOE_KERNEL_NS
