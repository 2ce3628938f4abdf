// The emulator device backend of the op bindings: registers every tensor the kernel receives as
// a bounds-checked buffer, runs the launcher on the CPU SIMT emulator (csrc/simt/), and turns a
// checker error into an exception naming the op.
#pragma once

#include <vector>

#include "../simt/launch.h"
#include "backend.h"

namespace moe_ext {

template <>
struct DeviceBackend<Target::kEmu> {
  template <typename Params>
  static void launch(const char* op, cudaError_t (*launcher)(const Params&, cudaStream_t),
                     const Params& p, const DeviceBuffers& buffers) {
    std::vector<moe_simt::Buffer> regions;
    for (const auto& b : buffers) {
      if (!b.tensor.defined()) continue;
      const auto begin = reinterpret_cast<uintptr_t>(b.tensor.const_data_ptr());
      const auto bytes =
          static_cast<uintptr_t>(b.tensor.storage().nbytes()) -
          static_cast<uintptr_t>(b.tensor.storage_offset() * b.tensor.element_size());
      regions.push_back({b.name, begin, begin + bytes, b.writable});
    }
    const moe_simt::BufferScope scope(std::move(regions));
    cudaError_t err;
    try {
      err = launcher(p, nullptr);
    } catch (const moe_simt::SimtError& e) {
      MOE_CHECK(op, false, "emulator: ", e.what());
    }
    MOE_CHECK(op, err == cudaSuccess, "emulated launch failed (CUDA error ", static_cast<int>(err),
              "): ", launch_error_hint(err));
  }
};

}  // namespace moe_ext
