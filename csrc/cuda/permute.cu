// nvcc instantiation of the permute kernel and its launcher (moe_ext::cuda::launch_permute),
// built for every arch in MOE_EXT_CUDA_ARCHS. Torch-free.
#include "../kernels/permute.cuh"
