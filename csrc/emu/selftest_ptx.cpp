// Emulator instantiation of the PTX-wrapper self-test kernels and their launchers
// (moe_ext::ptx_selftest::emu::launch_*): common/ptx.h's emulator branch, compiled by g++
// against csrc/simt. Torch-free; bound in csrc/binding/emu_selftest_ptx.cpp.
#include "../kernels/testing/selftest_ptx_kernels.cuh"
