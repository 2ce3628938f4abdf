// launch_kernel(name, kernel, grid, block, dynamic_smem, stream, args...): one spelling of a
// kernel launch for both paths. With nvcc it is `kernel<<<...>>>(args...)` and returns the launch
// status (never synchronises); on the emulator it runs the grid on the CPU and throws on a
// checker error. `name` labels emulator diagnostics.
//
// launch_kernel_cluster(name, kernel, grid, block, cluster, dynamic_smem, stream, args...): the
// same with thread-block clusters of `cluster` CTAs (grid a multiple of it, at most 8 CTAs):
// cudaLaunchKernelEx with cudaLaunchAttributeClusterDimension; the emulator runs each cluster's
// CTAs together (ptx_sm90.h: cluster PTX).
//
// For persistent kernels that size their grid and shared memory to the device:
//   device_limits()                     SM count and shared-memory limits of the current device
//                                       (host queries, cached per device; never synchronise). The
//                                       emulator models a 2-SM sm_90 (227 KB per block, 228 KB
//                                       per SM, cc 9), so persistent CTAs there walk several tiles.
//   allow_dynamic_smem(kernel, bytes)   opts a kernel into > 48 KB of dynamic shared memory.
//   max_active_blocks(kernel, threads, bytes)   resident CTAs per SM (occupancy calculator).
//   max_active_clusters(kernel, threads, bytes, cluster)   resident clusters of `cluster` CTAs
//                                       on the whole device (cudaOccupancyMaxActiveClusters;
//                                       the emulator: its SMs' CTA slots / cluster, at least 1).
#pragma once

#include <cstddef>

#include "portable.h"

namespace moe_ext {
struct DeviceLimits {
  int sm_count;
  size_t smem_per_block_optin;  // the most dynamic + static shared memory one block may use
  size_t smem_per_sm;
  int cc_major;  // compute capability major (9 = Hopper)
  int cc_minor;  // and minor (8.9 = Ada: fp8 mma.sync)
};
}  // namespace moe_ext

#if defined(__CUDACC__)
#include <cuda_runtime.h>

#include <utility>

namespace moe_ext {
template <typename... KArgs, typename... Args>
cudaError_t launch_kernel(const char* /*name*/, void (*kernel)(KArgs...), dim3 grid, dim3 block,
                          size_t dynamic_smem, cudaStream_t stream, Args&&... args) {
  kernel<<<grid, block, dynamic_smem, stream>>>(std::forward<Args>(args)...);
  return cudaGetLastError();
}

template <typename... KArgs, typename... Args>
cudaError_t launch_kernel_cluster(const char* /*name*/, void (*kernel)(KArgs...), dim3 grid,
                                  dim3 block, dim3 cluster, size_t dynamic_smem,
                                  cudaStream_t stream, Args&&... args) {
  cudaLaunchConfig_t cfg{};
  cfg.gridDim = grid;
  cfg.blockDim = block;
  cfg.dynamicSmemBytes = dynamic_smem;
  cfg.stream = stream;
  cudaLaunchAttribute attr[1];
  attr[0].id = cudaLaunchAttributeClusterDimension;
  attr[0].val.clusterDim.x = cluster.x;
  attr[0].val.clusterDim.y = cluster.y;
  attr[0].val.clusterDim.z = cluster.z;
  cfg.attrs = attr;
  cfg.numAttrs = 1;
  return cudaLaunchKernelEx(&cfg, kernel, std::forward<Args>(args)...);
}

inline DeviceLimits device_limits() {
  constexpr int kMaxDevices = 64;
  static DeviceLimits cache[kMaxDevices] = {};
  int dev = 0;
  if (cudaGetDevice(&dev) != cudaSuccess || dev < 0 || dev >= kMaxDevices) dev = 0;
  DeviceLimits& l = cache[dev];
  if (l.sm_count == 0) {  // benign race: every thread computes the same values
    int sms = 0, optin = 0, per_sm = 0, major = 0, minor = 0;
    cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, dev);
    cudaDeviceGetAttribute(&minor, cudaDevAttrComputeCapabilityMinor, dev);
    l.cc_major = major;
    l.cc_minor = minor;
    cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, dev);
    cudaDeviceGetAttribute(&optin, cudaDevAttrMaxSharedMemoryPerBlockOptin, dev);
    cudaDeviceGetAttribute(&per_sm, cudaDevAttrMaxSharedMemoryPerMultiprocessor, dev);
    l.smem_per_block_optin = static_cast<size_t>(optin);
    l.smem_per_sm = static_cast<size_t>(per_sm);
    l.sm_count = sms > 0 ? sms : 1;
  }
  return l;
}

template <typename... KArgs>
cudaError_t allow_dynamic_smem(void (*kernel)(KArgs...), size_t bytes) {
  return cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize,
                              static_cast<int>(bytes));
}

template <typename... KArgs>
int max_active_blocks(void (*kernel)(KArgs...), int threads, size_t dynamic_smem) {
  int n = 0;
  if (cudaOccupancyMaxActiveBlocksPerMultiprocessor(&n, kernel, threads, dynamic_smem) !=
      cudaSuccess)
    return 1;
  return n > 0 ? n : 1;
}

template <typename... KArgs>
int max_active_clusters(void (*kernel)(KArgs...), int threads, size_t dynamic_smem, int cluster) {
  cudaLaunchConfig_t cfg{};
  cfg.gridDim = dim3(static_cast<unsigned>(cluster));
  cfg.blockDim = dim3(static_cast<unsigned>(threads));
  cfg.dynamicSmemBytes = dynamic_smem;
  cudaLaunchAttribute attr[1];
  attr[0].id = cudaLaunchAttributeClusterDimension;
  attr[0].val.clusterDim.x = static_cast<unsigned>(cluster);
  attr[0].val.clusterDim.y = 1;
  attr[0].val.clusterDim.z = 1;
  cfg.attrs = attr;
  cfg.numAttrs = 1;
  int n = 0;
  if (cudaOccupancyMaxActiveClusters(&n, kernel, &cfg) != cudaSuccess) return 1;
  return n > 0 ? n : 1;
}
}  // namespace moe_ext
#else
// The emulator's implementation: csrc/simt/include/moe_emu/launch.h, found through the include
// path that only the emulator build adds (cmake/emu.cmake).
#include <moe_emu/launch.h>
#endif
