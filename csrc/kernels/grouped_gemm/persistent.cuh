// Launch helpers shared by the grouped GEMM kernels' launchers (grouped_gemm.cuh, hopper.cuh).
#pragma once

#include <algorithm>
#include <cstdint>

#include "../../common/launch.h"
#include "grouped_gemm.h"

namespace moe_ext::MOE_KERNEL_NS {

namespace grouped_gemm_detail {

// Upper bound of the tiles the scheduler will visit, from shapes only.
inline int64_t max_tiles(const GroupedGemmParams& p, int bm, int bn) {
  const int64_t tm = ceil_div(p.m, bm), tn = ceil_div(p.n, bn), groups = p.num_groups;
  switch (p.form) {
    case GroupedGemmForm::kRaggedM: return (tm + groups + 1) * tn;  // each cut adds <= 1 m-tile
    case GroupedGemmForm::kRaggedN: return tm * (tn + groups + 1);
    default: return groups * tm * tn;
  }
}

// A persistent kernel's shared memory: within the device's per-block limit, opted into above
// 48 KB.
template <typename... KArgs>
cudaError_t prepare_smem(void (*kernel)(KArgs...), size_t smem, const DeviceLimits& lim) {
  if (smem > lim.smem_per_block_optin) return cudaErrorInvalidConfiguration;
  return smem > 48 * 1024 ? allow_dynamic_smem(kernel, smem) : cudaSuccess;
}

// A persistent grid: one CTA per resident slot, at most `tiles` CTAs.
template <typename... KArgs, typename... Args>
cudaError_t launch_persistent(const char* name, void (*kernel)(KArgs...), int threads, size_t smem,
                              int64_t tiles, cudaStream_t stream, Args&&... args) {
  if (tiles <= 0) return cudaSuccess;
  if (tiles >= (int64_t{1} << 31)) return cudaErrorInvalidValue;  // tile indices are int32
  const DeviceLimits lim = device_limits();
  if (const cudaError_t err = prepare_smem(kernel, smem, lim); err != cudaSuccess) return err;
  const int64_t resident =
      static_cast<int64_t>(lim.sm_count) * max_active_blocks(kernel, threads, smem);
  const int64_t grid = std::min<int64_t>(tiles, std::max<int64_t>(resident, 1));
  if (grid <= 0) return cudaErrorInvalidValue;
  return launch_kernel(name, kernel, dim3(static_cast<unsigned>(grid)), dim3(threads), smem, stream,
                       std::forward<Args>(args)...);
}

// The same with thread-block clusters of `cluster` CTAs: one cluster per resident cluster slot
// (the occupancy calculator's answer for this cluster size), at most `blocks` clusters.
template <typename... KArgs, typename... Args>
cudaError_t launch_persistent_clusters(const char* name, void (*kernel)(KArgs...), int threads,
                                       size_t smem, int64_t blocks, int cluster,
                                       cudaStream_t stream, Args&&... args) {
  if (blocks <= 0) return cudaSuccess;
  if (blocks >= (int64_t{1} << 31) / cluster) return cudaErrorInvalidValue;  // int32 indices
  if (const cudaError_t err = prepare_smem(kernel, smem, device_limits()); err != cudaSuccess)
    return err;
  const int64_t resident = max_active_clusters(kernel, threads, smem, cluster);
  const int64_t grid = std::min<int64_t>(blocks, std::max<int64_t>(resident, 1)) * cluster;
  return launch_kernel_cluster(name, kernel, dim3(static_cast<unsigned>(grid)), dim3(threads),
                               dim3(static_cast<unsigned>(cluster)), smem, stream,
                               std::forward<Args>(args)...);
}

}  // namespace grouped_gemm_detail

}  // namespace moe_ext::MOE_KERNEL_NS
