// Emulator instantiation of the router kernels and launchers
// (moe_ext::launch_route*<Target::kEmu>).
#include "../kernels/route.cuh"
