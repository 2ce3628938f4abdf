// Emulator instantiation of unpermute's backward kernel
// (moe_ext::launch_unpermute_backward<Target::kEmu>).
#include "../kernels/unpermute_backward.cuh"
