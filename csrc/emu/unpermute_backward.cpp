// Emulator instantiation of unpermute's backward kernel (moe_ext::emu::launch_unpermute_backward).
#include "../kernels/unpermute_backward.cuh"
