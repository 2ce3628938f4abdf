// CUDA entry point of permute: checks, tensors -> PermuteParams, launch on the current stream.
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>

#include "../kernels/permute.h"
#include "checks.h"
#include "ops.h"

namespace moe_ext {

at::Tensor permute_cuda(const at::Tensor& x, const at::Tensor& order, const at::Tensor& slot,
                        int64_t top_k) {
  check_permute_args(x, order, slot, top_k);
  const c10::cuda::CUDAGuard guard(x.device());
  const int64_t N = order.size(0), H = x.size(1);
  auto xp = at::empty({N, H}, x.options());
  auto xc = x.stride(1) == 1 ? x : x.contiguous();
  auto order_c = order.contiguous(), slot_c = slot.contiguous();
  PermuteParams p{};
  p.x = xc.const_data_ptr();
  p.xp = xp.data_ptr();
  p.order = order_c.const_data_ptr<int32_t>();
  p.slot = slot_c.const_data_ptr<int32_t>();
  p.num_rows = N;
  p.hidden = H;
  p.x_row_stride = xc.stride(0);
  p.elem_bytes = xc.element_size();
  p.top_k = static_cast<int32_t>(top_k);
  const cudaError_t err = launch_permute(p, c10::cuda::getCurrentCUDAStream());
  MOE_CHECK("permute", err == cudaSuccess, "CUDA launch failed: ", cudaGetErrorString(err));
  return xp;
}

}  // namespace moe_ext
