// The consumer mainloop of the sm_90a grouped GEMM (hopper.cuh, warpgroups 1 and 2): one tile's
// k steps as wgmma.m64n128k16 groups, each warpgroup on its 64 of the tile's 128 rows.
//
// Per k step (stage s = it % kStages): wait full[s]; fence; 4 x wgmma.m64n128k16 (BK = 64 = one
// 128-byte swizzle atom) committed as one group; wait_group 1 -- this step's MMAs stay in flight
// while the previous step's group, now retired, releases its stage (one arrival per consumer
// warp on empty[]); after the last step wait_group 0 and release that stage too.
//
// Descriptors (128-byte swizzle, SBO 1024 = 8 rows of 128 bytes):
//   K-major operand  rows of 64 k; a k16 step advances 32 bytes along the swizzled row, LBO 16
//   MN-major operand 16 k rows of 128 bytes (64 m or n) per k16 step = 2 KB; LBO = the next 64
//                    columns' box (kBoxBytes); the instruction's transpose bit set
// Accumulator d[64]: (64 rows, BN) in the wgmma m64n128 fp32 layout -- warp w of the warpgroup
// holds rows 16 w + lane / 4 (+ 8), columns 8 j + 2 (lane % 4) (+ 1), j < 16.
#pragma once

#include "../../common/ptx_sm90.h"
#include "grouped_gemm.h"
#include "sm90_config.cuh"

namespace moe_ext::MOE_KERNEL_NS {

namespace sm90_detail {

template <typename T, bool kAKMajor, bool kBKMajor>
MOE_DEVICE MOE_FORCEINLINE int mma_tile(float (&d)[64], unsigned char* smem, uint64_t* full,
                                        uint64_t* empty, int it, int k_tiles, int wg_rows, int lane,
                                        const GroupedGemmParams& p) {
  using namespace sm90;
  for (int kt = 0; kt < k_tiles; ++kt, ++it) {
    const int s = it % kStages, use = it / kStages;
    mbarrier_wait(&full[s], use & 1, kWaitSm90ConsumerFull, p.wait_report);
    // (64, BK) of A for this warpgroup: 64 swizzled rows K-major, or the (64 m, BK) box MN-major
    const unsigned char* sa =
        smem + s * kStageBytes + (kAKMajor ? wg_rows * 128 : (wg_rows / 64) * kBoxBytes);
    const unsigned char* sb = smem + s * kStageBytes + kABytes;  // (BN, BK)
    wgmma_fence();
    MOE_UNROLL for (int ks = 0; ks < BK / 16; ++ks) {
      const uint64_t da = kAKMajor ? wgmma_desc(sa + ks * 32, 16, 1024, true)
                                   : wgmma_desc(sa + ks * 2048, kBoxBytes, 1024, true);
      const uint64_t db = kBKMajor ? wgmma_desc(sb + ks * 32, 16, 1024, true)
                                   : wgmma_desc(sb + ks * 2048, kBoxBytes, 1024, true);
      wgmma_m64n128k16<T, !kAKMajor, !kBKMajor>(d, da, db, kt > 0 || ks > 0);
    }
    wgmma_commit();
    wgmma_wait<1>();
    if (kt > 0 && lane == 0) mbarrier_arrive(&empty[(it - 1) % kStages]);
  }
  wgmma_wait<0>();  // the accumulators are read next; the last stage is free
  if (k_tiles > 0 && lane == 0) mbarrier_arrive(&empty[(it - 1) % kStages]);
  return it;
}

}  // namespace sm90_detail

}  // namespace moe_ext::MOE_KERNEL_NS
