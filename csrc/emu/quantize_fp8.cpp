// Emulator instantiation of the FP8 quantization kernel and its launcher
// (moe_ext::launch_quantize_fp8<Target::kEmu>): the same source as csrc/cuda/quantize_fp8.cu,
// compiled by g++ against csrc/simt. Torch-free.
#include "../kernels/quantize_fp8.cuh"
