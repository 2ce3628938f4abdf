// nvcc instantiation of the block-FP8 grouped GEMM and its launcher
// (moe_ext::launch_grouped_mm_fp8<Target::kCuda>), built for every arch in MOE_EXT_CUDA_ARCHS.
// Torch-free.
#include "../kernels/grouped_mm_fp8.cuh"
