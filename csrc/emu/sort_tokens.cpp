// Emulator instantiation of the token sort kernels and launcher (moe_ext::emu::launch_sort_tokens).
#include "../kernels/sort_tokens.cuh"
