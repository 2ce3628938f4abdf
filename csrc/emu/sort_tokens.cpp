// Emulator instantiation of the token sort kernels and launcher
// (moe_ext::launch_sort_tokens<Target::kEmu>).
#include "../kernels/sort_tokens.cuh"
