// Host-side interface of the token sort (counting sort by expert): params, workspace size,
// launchers. Torch-free.
#pragma once

#include "../common/launcher.h"

#include <cstdint>

#include "sort_tokens_layout.h"

namespace moe_ext {

struct SortTokensParams {
  const void* ids;  // [N] expert ids, int32 or int64 (ids_are_int64); -1 = not routed here
  bool ids_are_int64;
  int64_t num_assignments;  // N = T * k
  int32_t num_experts;      // E
  int64_t capacity;         // per-expert limit; INT64_MAX when none
  int32_t* order;           // [N] out
  int32_t* slot;            // [N] out
  int32_t* offsets;         // [E] out, cumulative ends
  int32_t* workspace;       // sort_tokens_workspace_ints(N, E) int32, any contents
};

inline const char* can_implement(const SortTokensParams& p) {
  if (p.num_experts < 1 || p.num_experts > kSortMaxExperts)
    return "the device sort takes 1 to kSortMaxExperts (1024) experts";
  return nullptr;
}

// The counting sort (sort_tokens.cuh) on `stream` (kCuda) or the emulator (kEmu).
template <Target T>
cudaError_t launch_sort_tokens(const SortTokensParams& params, cudaStream_t stream);

}  // namespace moe_ext
