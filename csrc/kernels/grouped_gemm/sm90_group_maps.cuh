// build_group_maps_sm90_kernel: the ragged-K prologue of the sm_90a grouped GEMM (hopper.cuh).
// For every group g it writes two tensor maps into the workspace -- A's and B's host-encoded maps
// with the token dimension cut at the group's last token (offs[g]) -- so that a TMA box starting
// inside the group zero-fills the rows past it instead of reading the next group's tokens.
//
// Why a prologue: a TMA box cannot stop at a group's last token, and the GEMM kernel used to
// rewrite a per-stage pair of maps in its producer whenever a stage first served a new group
// (tensormap.replace in shared, tensormap.cp_fenceproxy to global, a proxy fence): up to 8
// rewrites per tile on the producer's critical path, since with ~100 tiles per expert and a grid
// stride of 132 nearly every tile a CTA takes belongs to another group. Built once per launch
// here (one warp per group, G warps of work: negligible next to the GEMM), the GEMM's producer
// only acquires a group's two maps (fence.proxy.tensormap acquire, once per group change) -- the
// mainloop never waits on map work, and the tile order stays the scheduler's grid-strided one,
// which balances skewed groups and keeps concurrent CTAs on one expert's operands in L2.
// No host sync: offs is read on the device; the workspace comes from the caching allocator, so
// the pair of launches is stream-ordered and CUDA-graph safe.
//
// Per warp: copy both templates to the warp's 256 shared bytes (4 bytes per lane), lane 0
// replaces the token (K) dimension -- dim 0 (innermost) of a K-major operand's map, dim 1 of an
// MN-major one -- then the warp publishes both (release at gpu scope); the GEMM acquires them
// (hopper.cuh).
#pragma once

#include "../../common/ptx_sm90.h"
#include "../../common/shared.h"
#include "grouped_gemm.h"
#include "scheduler.cuh"
#include "sm90_config.cuh"

namespace moe_ext::MOE_KERNEL_NS {

namespace sm90 {
constexpr int kGroupMapWarps = 4;  // groups per prologue CTA
constexpr size_t kGroupMapSmemBytes = 128 + kGroupMapWarps * 2 * kMapBytes;
static_assert(2 * kMapBytes == kGroupedGemmWorkspacePerGroup, "see grouped_gemm.h");
}  // namespace sm90

namespace sm90_detail {
// A warp copies a tensor map into shared memory (4 bytes per lane), to be edited there.
MOE_DEVICE MOE_FORCEINLINE void copy_map_to_shared(unsigned char* dst, const TmaDescriptor& src,
                                                   int lane) {
  st_shared(reinterpret_cast<uint32_t*>(dst) + lane, reinterpret_cast<const uint32_t*>(&src)[lane]);
  __syncwarp();
}

}  // namespace sm90_detail

// The maps of group g in the workspace: [0] A, [1] B.
MOE_DEVICE MOE_FORCEINLINE TmaDescriptor* group_maps(const GroupedGemmParams& p, int g) {
  return static_cast<TmaDescriptor*>(p.workspace) + 2 * g;
}

template <bool kAKMajor, bool kBKMajor>
__global__ void __launch_bounds__(sm90::kGroupMapWarps * 32)
    build_group_maps_sm90_kernel(const MOE_GRID_CONSTANT TmaDescriptor tma_a,
                                 const MOE_GRID_CONSTANT TmaDescriptor tma_b, GroupedGemmParams p) {
  using namespace sm90;
  using namespace sm90_detail;
  MOE_SHARED_DYNAMIC(unsigned char, smem_raw);
  unsigned char* smem = smem_raw + (128 - shared_address(smem_raw) % 128) % 128;
  const int warp = static_cast<int>(threadIdx.x) / 32, lane = static_cast<int>(threadIdx.x) % 32;
  const int g = static_cast<int>(blockIdx.x) * kGroupMapWarps + warp;
  if (g >= p.num_groups) return;  // warp-uniform
  unsigned char* map_a = smem + warp * 2 * kMapBytes;
  unsigned char* map_b = map_a + kMapBytes;
  copy_map_to_shared(map_a, tma_a, lane);
  copy_map_to_shared(map_b, tma_b, lane);
  const GroupProblem q = group_problem(p, g);
  // an empty group's maps are never used, but a dimension is at least 1
  const auto end = static_cast<uint32_t>(q.start + q.k > 0 ? q.start + q.k : 1);
  if (lane == 0) {
    tensormap_replace_global_dim<kAKMajor ? 0 : 1>(map_a, end);
    tensormap_replace_global_dim<kBKMajor ? 0 : 1>(map_b, end);
  }
  __syncwarp();
  TmaDescriptor* out = group_maps(p, g);
  tensormap_publish(&out[0], map_a);
  tensormap_publish(&out[1], map_b);
}

}  // namespace moe_ext::MOE_KERNEL_NS
