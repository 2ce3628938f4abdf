// CUDA launch target for the shared device bindings: runs a kernel launcher on the tensors'
// device and current stream; a failed launch becomes an exception naming the op.
#pragma once

#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>

#include "checks.h"
#include "device_buffers.h"

namespace moe_ext {

template <typename Params>
auto cuda_launcher(cudaError_t (*launch)(const Params&, cudaStream_t)) {
  return [launch](const char* op, const Params& p, const DeviceBuffers& buffers) {
    // the launch runs on the device of its (first) tensor, on that device's current stream
    const c10::cuda::CUDAGuard guard(buffers.front().tensor.device());
    const cudaError_t err = launch(p, c10::cuda::getCurrentCUDAStream());
    MOE_CHECK(op, err == cudaSuccess, "CUDA launch failed: ", cudaGetErrorString(err));
  };
}

}  // namespace moe_ext
