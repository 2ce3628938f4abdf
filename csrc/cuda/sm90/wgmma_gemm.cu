// nvcc instantiation of the Hopper test GEMM (moe_ext::cuda::launch_wgmma_gemm); sm_90a only.
#include "../../kernels/testing/wgmma_gemm.cuh"
