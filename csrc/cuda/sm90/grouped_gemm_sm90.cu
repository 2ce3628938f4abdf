// nvcc instantiation of the Hopper grouped GEMM (moe_ext::cuda::launch_grouped_gemm_sm90);
// sm_90a only. Torch-free.
#include "../../kernels/grouped_gemm/hopper.cuh"
