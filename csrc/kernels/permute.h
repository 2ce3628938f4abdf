// Host-side interface of the permute kernel: a params struct and its launchers. Torch-free, so the
// binding (.cpp, host compiler) and the instantiations (.cu for nvcc, emu .cpp for g++) share it.
#pragma once

#include "../common/launcher.h"

#include <cstdint>

namespace moe_ext {

struct PermuteParams {
  const void* x;         // [T, H] rows, row stride x_row_stride elements, inner dim contiguous
  void* xp;              // [N, H] contiguous output
  const int32_t* order;  // [N] flat assignment index at each sorted row
  const int32_t* slot;   // [N] sorted row per flat assignment, -1 when dropped
  int64_t num_rows;      // N = T * top_k
  int64_t hidden;        // H
  int64_t x_row_stride;  // in elements
  int64_t elem_bytes;    // sizeof(element): the copy is dtype-agnostic
  int32_t top_k;
};

// Every problem is launchable (the launcher picks the vector width that the addresses allow).
inline const char* can_implement(const PermuteParams&) { return nullptr; }

// Launch the row gather on `stream` (kCuda) or run it on the CPU SIMT emulator (kEmu): see
// common/launcher.h. The CUDA launcher returns the launch status and never syncs; the emulator
// one throws on checker errors.
template <Target T>
cudaError_t launch_permute(const PermuteParams& params, cudaStream_t stream);

}  // namespace moe_ext
