// nvcc instantiation of the token sort kernels and launcher
// (moe_ext::launch_sort_tokens<Target::kCuda>).
#include "../kernels/sort_tokens.cuh"
