// The sm_90a grouped GEMM's tile configuration (hopper.cuh): tile shape, pipeline depth, the
// warp roles' thread counts and the shared-memory / workspace layout that the producer
// (sm90_producer.cuh), the consumer mainloop (sm90_mainloop.cuh), the epilogue
// (sm90_epilogue.cuh) and the launcher (sm90_launch.cuh) agree on.
//
// Shared memory (1024-aligned base; 128-byte swizzle atoms need 1024-byte alignment):
//   stages      (BM, BK) A + (BN, BK) B bf16/fp16 per stage, x kStages     kStages * 32 KB
//               (A: one box of 64 k x 128 rows K-major -- two of 64 rows in a cluster, each
//                CTA of an N pair loading one --, or two (64 m, 64 k) boxes MN-major;
//                B: two boxes of 64 rows, the tile's halves or gated [gate | up])
//   stagings    (kStoreRows, BN) output per consumer warp, x 8 warps        8 * 9 KB
//   row scales  the routing weights of each consumer warp's 32 tile rows     8 * 128 B
//   barriers    full[kStages], empty[kStages], turn[2] mbarriers            (2 kStages + 2) * 8 B
#pragma once

#include "../../common/ptx_sm90.h"
#include "epilogue.cuh"
#include "grouped_gemm.h"

namespace moe_ext::MOE_KERNEL_NS {

namespace sm90 {
constexpr int BM = 128, BN = 128, BK = 64, kStages = 4, kThreads = 384;
constexpr int kABytes = BM * BK * 2, kBBytes = BN * BK * 2, kStageBytes = kABytes + kBBytes;
constexpr int kBoxBytes = 64 * BK * 2;  // one 64-row (or 64-column) box of a stage
constexpr int kBHalf = BN / 2;          // B rows per TMA box (a gated tile's gate / up half)
constexpr int kProducerThreads = 128;
constexpr int kClusterCtas = 4;  // kCluster: a 2x2 block of tiles per cluster (sm90_cluster.cuh)
// a stage's releases: one per warp of the consuming warpgroup, x 3 with kCluster (this CTA and
// the two partners whose multicasts write into it)
template <bool kCluster>
constexpr int kEmptyArrivals = kCluster ? 12 : 4;
constexpr int kGatherRows = BM * (BK / 8) / kProducerThreads;  // A rows per gathering thread
constexpr int kGatherLag = kStages - 2;  // cp.async groups a gathering thread keeps in flight
using WarpStaging = EpilogueStaging<16, BN>;
constexpr int kWarpStagingBytes = 9 * 1024;  // >= WarpStaging::kBytes, 1024-aligned (swizzle)
constexpr int kStoreRows = 16;               // a consumer warp's rows: one TMA store box height
constexpr int kBoxRowBytes = 128;            // TMA store box width in bytes (the swizzle span)
constexpr int kMapBytes = 128;               // a CUtensorMap
// shared: stages | 8 warp stagings | 8 warps' row scales | mbarriers
constexpr size_t kStagingOffset = size_t{kStages} * kStageBytes;
constexpr size_t kScalesOffset = kStagingOffset + 8 * kWarpStagingBytes;  // 8 warps x 32 rows
constexpr size_t kBarrierOffset = kScalesOffset + 8 * 32 * 4;
constexpr size_t kSmemBytes = 1024 + kBarrierOffset + (2 * kStages + 2) * 8;
static_assert(WarpStaging::kBytes <= kWarpStagingBytes && kStoreRows * BN * 4 <= kWarpStagingBytes);
static_assert(sizeof(TmaDescriptor) == kMapBytes, "a tensor map is 128 bytes");
static_assert(kGatherLag < kStages, "a producer must signal stage it - lag before reusing it");
}  // namespace sm90

}  // namespace moe_ext::MOE_KERNEL_NS
