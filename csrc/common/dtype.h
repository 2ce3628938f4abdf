// The floating-point element types a kernel's params struct names (torch-free): one enum for
// every op, mapped from at::ScalarType by the bindings and to a C++ type by dispatch.h.
#pragma once

#include <cstdint>

namespace moe_ext {

enum class FloatDtype : int32_t { kFloat32, kBFloat16, kFloat16, kFloat64 };

}  // namespace moe_ext
