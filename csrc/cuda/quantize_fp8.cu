// nvcc instantiation of the FP8 quantization kernel and its launcher
// (moe_ext::launch_quantize_fp8<Target::kCuda>), built for every arch in MOE_EXT_CUDA_ARCHS.
// Torch-free.
#include "../kernels/quantize_fp8.cuh"
