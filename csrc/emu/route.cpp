// Emulator instantiation of the router kernels and launchers (moe_ext::emu::launch_route*).
#include "../kernels/route.cuh"
