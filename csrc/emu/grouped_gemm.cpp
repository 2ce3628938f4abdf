// Emulator instantiation of the grouped GEMM kernels and their launcher
// (moe_ext::launch_grouped_gemm<Target::kEmu>): the same source as csrc/cuda/grouped_gemm.cu,
// compiled by g++ against csrc/simt. Torch-free.
#include "../kernels/grouped_gemm/grouped_gemm.cuh"
#include "../kernels/grouped_gemm/hopper.cuh"
