// Emulator instantiation of the block-FP8 grouped GEMM and its launcher
// (moe_ext::launch_grouped_mm_fp8<Target::kEmu>): the same source as csrc/cuda/grouped_mm_fp8.cu,
// compiled by g++ against csrc/simt. Torch-free.
#include "../kernels/grouped_mm_fp8.cuh"
