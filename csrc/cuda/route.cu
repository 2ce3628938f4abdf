// nvcc instantiation of the router kernels and launchers (moe_ext::launch_route*<Target::kCuda>).
#include "../kernels/route.cuh"
