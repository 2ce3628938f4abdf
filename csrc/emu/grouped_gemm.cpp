// Emulator instantiation of the grouped GEMM kernels and their launcher
// (moe_ext::emu::launch_grouped_gemm): the same source as csrc/cuda/grouped_gemm.cu, compiled by
// g++ against csrc/simt. Torch-free.
#include "../kernels/grouped_gemm/grouped_gemm.cuh"
#include "../kernels/grouped_gemm/hopper.cuh"
