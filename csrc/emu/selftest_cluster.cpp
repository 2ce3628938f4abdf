// Emulator instantiation of the thread-block-cluster self-test kernels
// (moe_ext::emu::launch_cluster_selftest); bound in csrc/binding/emu_selftest_cluster.cpp.
#include "../kernels/testing/cluster_kernels.cuh"
