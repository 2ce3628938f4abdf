// Vector units for memory-bound kernels (permute, unpermute, unpermute_backward): Vec<T, N> is N
// elements loaded and stored as one aligned access (16 bytes = one LDG.128 for N * sizeof(T) = 16),
// and widest_vector_bytes picks the widest unit that every row size, stride and base address of a
// launch allows, so a row whose byte size is not a multiple of 16 still works at a narrower unit.
#pragma once

#include <cstddef>
#include <cstdint>
#include <type_traits>

#include "portable.h"

namespace moe_ext {

template <typename T, int N>
struct alignas(sizeof(T) * N) Vec {
  T v[N];
};

// The largest power of two in [min_bytes, 16] dividing `bits` (the OR of the byte sizes, strides
// and addresses the unit must divide); min_bytes when none does.
MOE_HOST_DEVICE constexpr size_t widest_vector_bytes(uint64_t bits, size_t min_bytes = 1) {
  size_t bytes = 16;
  while (bytes > min_bytes && bits % bytes != 0) bytes /= 2;
  return bytes;
}

// Calls f(std::integral_constant<int, N>) with N the widest element count of T (8, 4, 2 or 1; at
// most 16 bytes) that widest_vector_bytes(bits) allows: one Vec<T, N> kernel per admissible N.
template <typename T, typename F>
decltype(auto) with_vector_width(uint64_t bits, F&& f) {
  switch (widest_vector_bytes(bits, sizeof(T)) / sizeof(T)) {
    case 8:
      if constexpr (sizeof(T) <= 2) return f(std::integral_constant<int, 8>{});
      break;
    case 4:
      if constexpr (sizeof(T) <= 4) return f(std::integral_constant<int, 4>{});
      break;
    case 2: return f(std::integral_constant<int, 2>{});
    default: break;
  }
  return f(std::integral_constant<int, 1>{});
}

}  // namespace moe_ext
