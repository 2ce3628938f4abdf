// Element conversions used by every kernel: load-side widening to the accumulation type (fp32,
// fp64 for fp64) and store-side narrowing with round-to-nearest-even. Both paths.
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <type_traits>

#include "portable.h"

namespace moe_ext {

// Accumulation type of an element type: fp64 for fp64, fp32 otherwise.
template <typename T>
using acc_type_t = std::conditional_t<std::is_same_v<T, double>, double, float>;

MOE_DEVICE MOE_FORCEINLINE float to_acc(float x) { return x; }
MOE_DEVICE MOE_FORCEINLINE double to_acc(double x) { return x; }
MOE_DEVICE MOE_FORCEINLINE float to_acc(__nv_bfloat16 x) { return __bfloat162float(x); }
MOE_DEVICE MOE_FORCEINLINE float to_acc(__half x) { return __half2float(x); }

template <typename T>
MOE_DEVICE MOE_FORCEINLINE T from_acc(acc_type_t<T> x) {
  if constexpr (std::is_same_v<T, __nv_bfloat16>) {
    return __float2bfloat16(x);
  } else if constexpr (std::is_same_v<T, __half>) {
    return __float2half(x);
  } else {
    return x;
  }
}

}  // namespace moe_ext
