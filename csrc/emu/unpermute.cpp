// Emulator instantiation of the unpermute kernel and launcher
// (moe_ext::launch_unpermute<Target::kEmu>).
#include "../kernels/unpermute.cuh"
