// The grouped GEMM's tuning table: per problem class, the kernel choice (path, tile config,
// pipeline depth) that benchmarks/tune_grouped_gemm.py measured fastest on a GPU. Loaded from
// Python (moe_ext.load_gemm_tuning, or MOE_EXT_GEMM_TUNING=path at import); consulted by the
// device bindings where no MOE_EXT_GEMM_* override is set, before the launcher's heuristic.
//
// Key: "2x3:E:K:N:bucket" for the ragged-M form (the expert GEMMs), bucket = the power of two
// just above the mean rows per expert (M / E) -- what the host knows without reading offs. For
// moe_mlp's gated first GEMM, N is the weight's 2I rows, as the tuner measures it.
#pragma once

#include <string>

#include "../kernels/grouped_gemm/grouped_gemm.h"

namespace moe_ext {

struct GemmTuningChoice {
  int32_t path;    // GemmPath
  int32_t config;  // GemmConfigId
  int32_t stages;  // 0: by shared memory
};

void set_gemm_tuning(const std::string& key, const GemmTuningChoice& choice);
void clear_gemm_tuning();
std::string gemm_tuning_key(const GroupedGemmParams& p);  // "" for forms the table does not hold
// Applies the table's choice to p when p carries no override (auto path and config, stages 0).
void apply_gemm_tuning(GroupedGemmParams& p);

}  // namespace moe_ext
