// Emulator instantiation of the test tile GEMM (moe_ext::emu::launch_tile_gemm).
#include "../kernels/testing/tile_gemm.cuh"
