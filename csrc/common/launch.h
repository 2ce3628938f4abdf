// launch_kernel(name, kernel, grid, block, dynamic_smem, stream, args...): one spelling of a
// kernel launch for both paths. With nvcc it is `kernel<<<...>>>(args...)` and returns the launch
// status (never synchronises); on the emulator it runs the grid on the CPU and throws on a
// checker error. `name` labels emulator diagnostics.
#pragma once

#include "portable.h"

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
}  // namespace moe_ext
#else
#include "../simt/launch.h"

namespace moe_ext {
using ::moe_simt::launch_kernel;
}  // namespace moe_ext
#endif
