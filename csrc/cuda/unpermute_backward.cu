// nvcc instantiation of unpermute's backward kernel
// (moe_ext::launch_unpermute_backward<Target::kCuda>). Torch-free.
#include "../kernels/unpermute_backward.cuh"
