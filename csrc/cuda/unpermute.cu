// nvcc instantiation of the unpermute kernel and launcher (moe_ext::cuda::launch_unpermute).
#include "../kernels/unpermute.cuh"
