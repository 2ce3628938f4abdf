// nvcc instantiation of the token sort kernels and launcher (moe_ext::cuda::launch_sort_tokens).
#include "../kernels/sort_tokens.cuh"
