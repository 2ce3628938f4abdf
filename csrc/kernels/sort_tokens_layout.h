// Grid and workspace layout of the token sort (kernels/sort_tokens.cuh), shared with code that
// must not include the CUDA headers (the op registration's workspace-size query).
#pragma once

#include <cstdint>

#include "../common/portable.h"

namespace moe_ext {

constexpr int kSortMaxExperts = 1024;
constexpr int kSortWarps = 4;         // warps per block in the scatter pass
constexpr int64_t kSortChunk = 4096;  // assignments per block
constexpr int64_t kSortMaxBlocks = 1024;

inline int64_t sort_tokens_blocks(int64_t n) {
  const int64_t b = ceil_div(n, kSortChunk);
  return b < 1 ? 1 : b < kSortMaxBlocks ? b : kSortMaxBlocks;
}

// Workspace (int32 elements): per-block bucket counts and bases [blocks][E+1] x 2, expert starts
// [E], per-block dropped bases [blocks], and the kept total.
inline int64_t sort_tokens_workspace_ints(int64_t n, int64_t e) {
  const int64_t nb = sort_tokens_blocks(n);
  return 2 * nb * (e + 1) + e + nb + 1;
}

}  // namespace moe_ext
