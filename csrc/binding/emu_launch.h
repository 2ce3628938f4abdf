// Emulator launch target for the shared device bindings: registers every tensor the kernel
// receives as a bounds-checked buffer, runs the launcher on the CPU SIMT emulator, and turns a
// checker error into an exception naming the op.
#pragma once

#include "../simt/launch.h"
#include "checks.h"
#include "device_buffers.h"

namespace moe_ext {

template <typename Params>
auto emu_launcher(cudaError_t (*launch)(const Params&, cudaStream_t)) {
  return [launch](const char* op, const Params& p, const DeviceBuffers& buffers) {
    std::vector<moe_simt::Buffer> regions;
    for (const auto& b : buffers) {
      if (!b.tensor.defined()) continue;
      const auto begin = reinterpret_cast<uintptr_t>(b.tensor.const_data_ptr());
      const auto bytes = static_cast<uintptr_t>(b.tensor.storage().nbytes()) -
                         static_cast<uintptr_t>(b.tensor.storage_offset() * b.tensor.element_size());
      regions.push_back({b.name, begin, begin + bytes, b.writable});
    }
    const moe_simt::BufferScope scope(std::move(regions));
    cudaError_t err;
    try {
      err = launch(p, nullptr);
    } catch (const moe_simt::SimtError& e) {
      MOE_CHECK(op, false, "emulator: ", e.what());
    }
    MOE_CHECK(op, err == cudaSuccess, "launch rejected its arguments (", static_cast<int>(err), ")");
  };
}

}  // namespace moe_ext
