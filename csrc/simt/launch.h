// Host side of an emulated launch: which buffers the kernel may touch, and launch_kernel(),
// the emulator's counterpart of `kernel<<<grid, block, smem, stream>>>(args...)`.
#pragma once

#include <cuda_runtime_api.h>

#include <string>
#include <tuple>
#include <utility>
#include <vector>

#include "runtime.h"

namespace moe_simt {

// Buffers registered for the next launch on this host thread (set by the binding layer, which
// knows every tensor a kernel receives); launch_kernel consumes them.
std::vector<Buffer>& pending_buffers();

class BufferScope {
 public:
  explicit BufferScope(std::vector<Buffer> buffers) { pending_buffers() = std::move(buffers); }
  ~BufferScope() { pending_buffers().clear(); }
  BufferScope(const BufferScope&) = delete;
  BufferScope& operator=(const BufferScope&) = delete;
};

template <typename... KArgs, typename... Args>
cudaError_t launch_kernel(const char* name, void (*kernel)(KArgs...), dim3 grid, dim3 block,
                          size_t dynamic_smem, cudaStream_t /*stream*/, Args&&... args) {
  LaunchConfig cfg;
  cfg.kernel_name = name;
  cfg.grid = grid;
  cfg.block = block;
  cfg.dynamic_shared = dynamic_smem;
  cfg.buffers = pending_buffers();
  std::tuple<KArgs...> params(std::forward<Args>(args)...);  // by value, as a launch copies them
  cfg.body = [&] {
    std::tuple<KArgs...> mine = params;  // each thread gets its own copy of the parameters
    std::apply(kernel, mine);
  };
  run_launch(cfg);
  return cudaSuccess;
}

// launch_kernel with thread-block clusters of `cluster` CTAs (run together, see runtime.h).
template <typename... KArgs, typename... Args>
cudaError_t launch_kernel_cluster(const char* name, void (*kernel)(KArgs...), dim3 grid, dim3 block,
                                  dim3 cluster, size_t dynamic_smem, cudaStream_t /*stream*/,
                                  Args&&... args) {
  LaunchConfig cfg;
  cfg.kernel_name = name;
  cfg.grid = grid;
  cfg.block = block;
  cfg.cluster = cluster;
  cfg.dynamic_shared = dynamic_smem;
  cfg.buffers = pending_buffers();
  std::tuple<KArgs...> params(std::forward<Args>(args)...);
  cfg.body = [&] {
    std::tuple<KArgs...> mine = params;
    std::apply(kernel, mine);
  };
  run_launch(cfg);
  return cudaSuccess;
}

}  // namespace moe_simt
