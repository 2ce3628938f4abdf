// The XOR swizzle of shared-memory tiles: one formula for every kernel and for the emulator's
// model of TMA / wgmma. Both paths (nvcc and g++), torch-free.
//
//   swizzle_chunk<kBits, kRowShift>(row, chunk) = chunk ^ ((row >> kRowShift) % 2^kBits)
//
// 16-byte chunk `chunk` of shared-tile row `row` is stored at that chunk of the row (CuTe's
// Swizzle<kBits, 4, S> on the byte offset, S = log2(row bytes) - 4 + kRowShift). Why: the 8 row
// addresses of one ldmatrix phase, and the 8 rows of a 128-byte TMA / wgmma atom, then fall in 8
// distinct 16-byte bank groups, so neither the writes nor the reads conflict. Every other
// spelling below is this XOR, written so that it compiles to the expression each kernel had:
//
//   swizzle128(offset)  the 128-byte swizzle of TMA CU_TENSOR_MAP_SWIZZLE_128B and of the wgmma
//       descriptor's 128B mode, on a byte offset measured from a 1024-byte-aligned base: chunk c
//       of 128-byte row r lands at chunk c ^ (r % 8), i.e. a ^ (((a >> 7) & 7) << 4).
//   swizzled<RowBytes>(row, chunk)  the byte offset of the chunk in a tile of RowBytes-byte rows
//       (the ldmatrix kernels' index form), chunk < RowBytes / 16:
//         64-byte rows: chunk c of row r at c ^ ((r / 2) % 4) (two rows form one 128-byte line;
//             the same bits as TMA SWIZZLE_64B);
//         rows of 128 n bytes: chunk c of row r at c ^ (r % 8) (RowBytes = 128: swizzle128).
#pragma once

#include "portable.h"

namespace moe_ext {

template <int kBits, int kRowShift, typename I>
MOE_HOST_DEVICE MOE_FORCEINLINE constexpr I swizzle_chunk(I row, I chunk) {
  return chunk ^ ((row >> kRowShift) & ((I{1} << kBits) - 1));
}

// The chunk bits of `offset` XORed with those swizzle_chunk flips for its 128-byte row.
template <typename I>
MOE_HOST_DEVICE MOE_FORCEINLINE constexpr I swizzle128(I offset) {
  return offset ^ (swizzle_chunk<3, 0>(offset >> 7, I{0}) << 4);
}

template <int RowBytes>
MOE_HOST_DEVICE MOE_FORCEINLINE constexpr int swizzled(int row, int chunk) {
  static_assert(RowBytes == 64 || RowBytes % 128 == 0, "swizzle for 64-byte or 128n-byte rows");
  if constexpr (RowBytes == 64) {
    return row * 64 + (swizzle_chunk<2, 1>(row, chunk) << 4);
  } else {
    return row * RowBytes + (swizzle_chunk<3, 0>(row, chunk) << 4);
  }
}

}  // namespace moe_ext
