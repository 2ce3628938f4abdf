// Emulator backend entry points (torch.ops.moe_ext_emu.*): the shared device binding, run on the
// CPU SIMT emulator with every tensor registered as a bounds-checked buffer.
#include "../simt/launch.h"
#include "ops.h"
#include "permute_device.h"

namespace moe_ext {
namespace {

template <typename Params>
auto emu_launcher(cudaError_t (*launch)(const Params&, cudaStream_t)) {
  return [launch](const char* op, const Params& p, const DeviceBuffers& buffers) {
    std::vector<moe_simt::Buffer> regions;
    for (const auto& b : buffers) {
      const auto begin = reinterpret_cast<uintptr_t>(b.tensor.const_data_ptr());
      const auto bytes = static_cast<uintptr_t>(b.tensor.storage().nbytes()) -
                         static_cast<uintptr_t>(b.tensor.storage_offset() * b.tensor.element_size());
      regions.push_back({b.name, begin, begin + bytes, b.writable});
    }
    const moe_simt::BufferScope scope(std::move(regions));
    try {
      launch(p, nullptr);
    } catch (const moe_simt::SimtError& e) {
      MOE_CHECK(op, false, "emulator: ", e.what());
    }
  };
}

}  // namespace

at::Tensor permute_emu(const at::Tensor& x, const at::Tensor& order, const at::Tensor& slot,
                       int64_t top_k) {
  return permute_device(x, order, slot, top_k, emu_launcher(&emu::launch_permute));
}

}  // namespace moe_ext
