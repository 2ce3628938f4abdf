// CUDA launch target for the shared device bindings: runs a kernel launcher on the tensors'
// device and current stream; a failed launch becomes an exception naming the op.
#pragma once

#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>

#include "checks.h"
#include "device_buffers.h"

namespace moe_ext {

template <typename Params>
auto cuda_launcher(const at::Tensor& device_of, cudaError_t (*launch)(const Params&, cudaStream_t)) {
  return [&device_of, launch](const char* op, const Params& p, const DeviceBuffers&) {
    const c10::cuda::CUDAGuard guard(device_of.device());
    const cudaError_t err = launch(p, c10::cuda::getCurrentCUDAStream());
    MOE_CHECK(op, err == cudaSuccess, "CUDA launch failed: ", cudaGetErrorString(err));
  };
}

}  // namespace moe_ext
