// Host-side interface of the emulator's execution-model self-test kernels (csrc/emu/
// selftest_exec.cpp, tests/test_emu_exec.py). Torch-free: the binding turns tensors into an
// ExecTestParams and calls launch_exec_selftest by kernel name.
#pragma once

#include <cuda_runtime_api.h>

#include <cstdint>

namespace moe_ext {

struct ExecTestParams {
  static constexpr int kMaxBuffers = 6;
  static constexpr int kMaxArgs = 8;
  const void* in[kMaxBuffers] = {};  // read-only inputs, in the order the test passes them
  void* out[kMaxBuffers] = {};       // written outputs
  int64_t n[kMaxArgs] = {};          // integer arguments; their meaning is per kernel
  dim3 grid, block;
  size_t dynamic_smem = 0;
};

namespace emu {
// Runs the self-test kernel `name` on the emulator; returns false if no kernel has that name.
// Throws moe_simt::SimtError on a checker error.
bool launch_exec_selftest(const char* name, const ExecTestParams& p);
}  // namespace emu

}  // namespace moe_ext
