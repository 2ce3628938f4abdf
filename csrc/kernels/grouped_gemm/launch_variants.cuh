// The grouped GEMM's launch variants: one kernel instantiation each, with its pipeline depth,
// shared memory and persistent grid -- launch_tensor_core<T, Tile, A K-major, B K-major, gated>
// (grouped_gemm_tc_kernel, tensor_core.cuh) and launch_simt<A K-major, B K-major>
// (grouped_gemm_simt_kernel, simt.cuh). grouped_gemm.cuh picks one per problem; under nvcc each
// is instantiated by a generated unit in csrc/cuda/gemm_instances/ (scripts/generate_kernels.py).
//
//   * pipeline depth: the deepest (<= 5) whose shared memory still lets two CTAs share an SM
//     (A100: 164 KB/SM -> 5 stages of 16 KB; sm_86/89: 100 KB -> the 69.6 KB epilogue staging
//     already limits to one CTA, so 4 stages come free; H100: 5), never below 2.
//   * grid: SMs x resident CTAs per SM (occupancy API), capped by an upper bound of the tile count
//     computed from the shapes alone (the true count depends on offs, read only on the device).
#pragma once

#include <algorithm>

#include "../../common/launch.h"
#include "grouped_gemm.h"
#include "persistent.cuh"
#include "scheduler.cuh"
#include "simt.cuh"
#include "tensor_core.cuh"

namespace moe_ext::MOE_KERNEL_NS {

namespace grouped_gemm_detail {

template <typename Tile>
int pick_stages(const DeviceLimits& lim) {
  const size_t epilogue = EpilogueStaging<Tile::BM, Tile::BN>::kBytes;
  const size_t two_per_sm = lim.smem_per_sm / 2 > 1024 ? lim.smem_per_sm / 2 - 1024 : 0;
  const size_t budget = std::min(std::max(two_per_sm, epilogue), lim.smem_per_block_optin);
  int stages = Tile::kMaxStages;
  while (stages > 2 && static_cast<size_t>(stages) * Tile::kStageBytes > budget) --stages;
  return stages;
}

template <typename T, typename Tile, bool kAKMajor, bool kBKMajor, bool kGated = false>
cudaError_t launch_tensor_core(const GroupedGemmParams& p, cudaStream_t stream) {
  const int stages = p.stages > 0 ? std::min(std::max(p.stages, 2), Tile::kMaxStages)
                                  : pick_stages<Tile>(device_limits());
  size_t smem = std::max<size_t>(static_cast<size_t>(stages) * Tile::kStageBytes,
                                 EpilogueStaging<Tile::BM, Tile::BN>::kBytes);
  if (p.a_gather != nullptr) smem += Tile::BM * sizeof(int64_t);  // the gathered rows' offsets
  const int tile_n = kGated ? Tile::BN / 2 : Tile::BN;
  return launch_persistent("grouped_gemm_tc_kernel",
                           grouped_gemm_tc_kernel<T, Tile, kAKMajor, kBKMajor, kGated>,
                           Tile::kThreads, smem, max_tiles(p, Tile::BM, tile_n), stream, p, stages);
}

template <bool kAKMajor, bool kBKMajor>
cudaError_t launch_simt(const GroupedGemmParams& p, cudaStream_t stream) {
  return launch_persistent("grouped_gemm_simt_kernel", grouped_gemm_simt_kernel<kAKMajor, kBKMajor>,
                           SimtTile::kThreads, SimtTile::kSmemBytes,
                           max_tiles(p, SimtTile::BM, SimtTile::BN), stream, p);
}

}  // namespace grouped_gemm_detail

}  // namespace moe_ext::MOE_KERNEL_NS
