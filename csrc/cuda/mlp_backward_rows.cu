// nvcc instantiation of moe_mlp's fused backward row pass (moe_ext::launch_mlp_backward_rows
// <Target::kCuda>), built for every arch in MOE_EXT_CUDA_ARCHS. Torch-free.
#include "../kernels/mlp_backward_rows.cuh"
