// nvcc instantiation of the grouped GEMM kernels (tensor-core bf16/fp16 and SIMT fp32) and
// their launcher (moe_ext::launch_grouped_gemm<Target::kCuda>), for every arch in
// MOE_EXT_CUDA_ARCHS. Torch-free.
#include "../kernels/grouped_gemm/grouped_gemm.cuh"
