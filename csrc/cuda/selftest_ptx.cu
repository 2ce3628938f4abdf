// nvcc instantiation of the PTX-wrapper self-test kernels (moe_ext::ptx_selftest::cuda::launch_*)
// for every arch in MOE_EXT_CUDA_ARCHS: proves that common/ptx.h's inline PTX (mma.sync, ldmatrix,
// cp.async) assembles for sm_80 and sm_90a. Not registered as ops. Torch-free.
#include "../kernels/testing/selftest_ptx_kernels.cuh"
