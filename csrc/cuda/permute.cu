// nvcc instantiation of the permute kernel and its launcher
// (moe_ext::launch_permute<Target::kCuda>), built for every arch in MOE_EXT_CUDA_ARCHS. Torch-free.
#include "../kernels/permute.cuh"
