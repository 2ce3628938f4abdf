// CUDA backend entry points: the shared device binding, launched on the current stream.
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>

#include "ops.h"
#include "permute_device.h"

namespace moe_ext {
namespace {

// Launches on the tensors' device and current stream; a failed launch becomes an exception.
template <typename Params>
auto cuda_launcher(const at::Tensor& device_of, cudaError_t (*launch)(const Params&, cudaStream_t)) {
  return [&device_of, launch](const char* op, const Params& p, const DeviceBuffers&) {
    const c10::cuda::CUDAGuard guard(device_of.device());
    const cudaError_t err = launch(p, c10::cuda::getCurrentCUDAStream());
    MOE_CHECK(op, err == cudaSuccess, "CUDA launch failed: ", cudaGetErrorString(err));
  };
}

}  // namespace

at::Tensor permute_cuda(const at::Tensor& x, const at::Tensor& order, const at::Tensor& slot,
                        int64_t top_k) {
  return permute_device(x, order, slot, top_k, cuda_launcher(x, &cuda::launch_permute));
}

}  // namespace moe_ext
