// Emulator instantiation of the unpermute kernel and launcher (moe_ext::emu::launch_unpermute).
#include "../kernels/unpermute.cuh"
