// nvcc instantiation of the unpermute kernel and launcher
// (moe_ext::launch_unpermute<Target::kCuda>).
#include "../kernels/unpermute.cuh"
