// Host-side interface of the token sort (counting sort by expert): params, workspace size,
// launchers. Torch-free.
#pragma once

#include <cuda_runtime_api.h>

#include <cstdint>

namespace moe_ext {

struct SortTokensParams {
  const void* ids;       // [N] expert ids, int32 or int64 (ids_are_int64); -1 = not routed here
  bool ids_are_int64;
  int64_t num_assignments;  // N = T * k
  int32_t num_experts;      // E
  int64_t capacity;         // per-expert limit; INT64_MAX when none
  int32_t* order;           // [N] out
  int32_t* slot;            // [N] out
  int32_t* offsets;         // [E] out, cumulative ends
  int32_t* workspace;       // sort_tokens_workspace_ints(N, E) int32, any contents
};

constexpr int kSortMaxExperts = 1024;
constexpr int kSortWarps = 4;                // warps per block in the scatter pass
constexpr int64_t kSortChunk = 4096;         // assignments per block
constexpr int64_t kSortMaxBlocks = 1024;

inline int64_t sort_tokens_blocks(int64_t n) {
  const int64_t b = (n + kSortChunk - 1) / kSortChunk;
  return b < 1 ? 1 : b < kSortMaxBlocks ? b : kSortMaxBlocks;
}

// Workspace (int32 elements): per-block bucket counts and bases [blocks][E+1] x 2, expert starts
// [E], per-block dropped bases [blocks], and the kept total.
inline int64_t sort_tokens_workspace_ints(int64_t n, int64_t e) {
  const int64_t nb = sort_tokens_blocks(n);
  return 2 * nb * (e + 1) + e + nb + 1;
}

namespace cuda {
cudaError_t launch_sort_tokens(const SortTokensParams& params, cudaStream_t stream);
}
namespace emu {
cudaError_t launch_sort_tokens(const SortTokensParams& params, cudaStream_t stream);
}

}  // namespace moe_ext
