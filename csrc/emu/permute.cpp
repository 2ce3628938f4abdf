// Emulator instantiation of the permute kernel and its launcher
// (moe_ext::launch_permute<Target::kEmu>): the same source as csrc/cuda/permute.cu, compiled by g++
// against csrc/simt. Torch-free.
#include "../kernels/permute.cuh"
