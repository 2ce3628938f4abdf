// nvcc instantiation of the router kernels and launchers (moe_ext::cuda::launch_route*).
#include "../kernels/route.cuh"
