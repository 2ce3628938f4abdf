// The tensors a kernel launch touches, named. The CUDA backend ignores the list; the emulator
// registers each as a buffer so that any access outside them is reported as out of bounds.
#pragma once

#include <ATen/ATen.h>

#include <vector>

namespace moe_ext {

struct DeviceBuffer {
  const char* name;
  at::Tensor tensor;
  bool writable;
};
using DeviceBuffers = std::vector<DeviceBuffer>;

}  // namespace moe_ext
