// nvcc instantiation of unpermute's backward kernel (moe_ext::cuda::launch_unpermute_backward). Torch-free.
#include "../kernels/unpermute_backward.cuh"
