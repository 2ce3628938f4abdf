// The CPU SIMT emulator's implementation of common/launch.h (launch_kernel runs the grid on the
// CPU; the device limits of the modelled 2-SM sm_90): the non-__CUDACC__ side of that header.
// Only the emulator's build puts csrc/simt/include on the include path (cmake/emu.cmake).
#pragma once

#include "../../launch.h"

namespace moe_ext {
using ::moe_simt::launch_kernel;
using ::moe_simt::launch_kernel_cluster;

inline DeviceLimits device_limits() { return {2, 227 * 1024, 228 * 1024, 9, 0}; }

template <typename... KArgs>
cudaError_t allow_dynamic_smem(void (*)(KArgs...), size_t) {
  return cudaSuccess;
}

// Shared memory is the only per-SM limit the emulator models (1 KB reserved per block, as sm_90).
template <typename... KArgs>
int max_active_blocks(void (*)(KArgs...), int /*threads*/, size_t dynamic_smem) {
  const size_t per_block = dynamic_smem + 1024;
  const int n = static_cast<int>(device_limits().smem_per_sm / per_block);
  return n < 1 ? 1 : (n > 32 ? 32 : n);
}

// The emulator runs a cluster's CTAs together whatever its SM count: at least one cluster.
template <typename... KArgs>
int max_active_clusters(void (*kernel)(KArgs...), int threads, size_t dynamic_smem, int cluster) {
  const int n = device_limits().sm_count * max_active_blocks(kernel, threads, dynamic_smem);
  return n / cluster < 1 ? 1 : n / cluster;
}
}  // namespace moe_ext
