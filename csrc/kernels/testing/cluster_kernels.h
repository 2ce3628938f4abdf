// Host-side interface of the thread-block-cluster self-test kernels (cluster_kernels.cuh,
// tests/test_emu_cluster.py). Torch-free: the binding fills a ClusterTestParams and calls
// launch_cluster_selftest by kernel name.
#pragma once

#include <cuda_runtime_api.h>

#include <cstdint>

namespace moe_ext {

struct ClusterTestParams {
  static constexpr int kMaxArgs = 8;
  const void* in = nullptr;  // read-only input (the multicast kernels' tensor)
  void* out = nullptr;       // written output
  int64_t n[kMaxArgs] = {};  // integer arguments; their meaning is per kernel
  dim3 grid, block, cluster;
};

namespace emu {
// Runs cluster self-test kernel `name`; false if there is none. Throws moe_simt::SimtError on a
// checker error.
bool launch_cluster_selftest(const char* name, const ClusterTestParams& p);
}  // namespace emu
namespace cuda {
// The nvcc instantiation (sm_90a): built so tests/test_emu_cluster.py can read its SASS.
bool launch_cluster_selftest(const char* name, const ClusterTestParams& p);
}  // namespace cuda

}  // namespace moe_ext
