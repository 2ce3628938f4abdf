// The CUDA device backend of the op bindings: runs a kernel launcher on the tensors' device and
// its current stream; a failed launch becomes an exception naming the op. Never synchronises.
#pragma once

#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>

#include "backend.h"

namespace moe_ext {

template <>
struct DeviceBackend<Target::kCuda> {
  template <typename Params>
  static void launch(const char* op, cudaError_t (*launcher)(const Params&, cudaStream_t),
                     const Params& p, const DeviceBuffers& buffers) {
    // the launch runs on the device of its (first) tensor, on that device's current stream
    const c10::cuda::CUDAGuard guard(buffers.front().tensor.device());
    const cudaError_t err = launcher(p, c10::cuda::getCurrentCUDAStream());
    MOE_CHECK(op, err == cudaSuccess, "CUDA launch failed: ", cudaGetErrorName(err), " (",
              cudaGetErrorString(err), ") ", launch_error_hint(err));
  }
};

}  // namespace moe_ext
