// Emulator instantiation of the Hopper test GEMM (moe_ext::emu::launch_wgmma_gemm).
#include "../kernels/testing/wgmma_gemm.cuh"
