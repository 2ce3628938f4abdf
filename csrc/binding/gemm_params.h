// Tensors -> GroupedGemmParams pieces shared by the grouped_mm and moe_mlp bindings: operand
// majors and strides, the MOE_EXT_GEMM_* overrides, the Hopper ragged-K workspace.
#pragma once

#include <cstdlib>
#include <cstring>

#include "../kernels/grouped_gemm/grouped_gemm.h"
#include "../kernels/grouped_mm_fp8.h"  // Fp8Mma
#include "checks.h"
#include "gemm_tuning.h"

namespace moe_ext {

namespace grouped_mm_binding {

// Tile config / pipeline depth overrides from the environment (read per call; tests, tuning).
inline int32_t config_from_env(const char* op) {
  const char* v = std::getenv("MOE_EXT_GEMM_CONFIG");
  if (v == nullptr || *v == '\0' || std::strcmp(v, "auto") == 0) return kGemmConfigAuto;
  if (std::strcmp(v, "large") == 0) return kGemmConfigLarge;
  if (std::strcmp(v, "small_m") == 0) return kGemmConfigSmallM;
  if (std::strcmp(v, "swap_ab") == 0) return kGemmConfigSwapAb;
  if (std::strcmp(v, "sm90") == 0) return kGemmConfigSm90;
  if (std::strcmp(v, "sm90_cluster") == 0) return kGemmConfigSm90Cluster;
  MOE_CHECK(
      op, false,
      "MOE_EXT_GEMM_CONFIG must be auto, large, small_m, swap_ab, sm90 or sm90_cluster, got '", v,
      "'");
  return kGemmConfigAuto;
}

inline int32_t stages_from_env(const char* op) {
  const char* v = std::getenv("MOE_EXT_GEMM_STAGES");
  if (v == nullptr || *v == '\0') return 0;
  const int s = std::atoi(v);
  MOE_CHECK(op, s >= 2 && s <= 5, "MOE_EXT_GEMM_STAGES must be 2..5, got '", v, "'");
  return s;
}

inline int32_t path_from_env(const char* op) {
  const char* v = std::getenv("MOE_EXT_GEMM_PATH");
  if (v == nullptr || *v == '\0' || std::strcmp(v, "auto") == 0) return kGemmPathAuto;
  if (std::strcmp(v, "sm80") == 0) return kGemmPathSm80;
  if (std::strcmp(v, "sm90") == 0) return kGemmPathSm90;
  MOE_CHECK(op, false, "MOE_EXT_GEMM_PATH must be auto, sm80 or sm90, got '", v, "'");
  return kGemmPathAuto;
}

// MOE_EXT_FP8_MMA=auto|f16|e4m3: the FP8 kernel's MMA (Fp8Mma, grouped_mm_fp8.h).
inline int32_t fp8_mma_from_env(const char* op) {
  const char* v = std::getenv("MOE_EXT_FP8_MMA");
  if (v == nullptr || *v == '\0' || std::strcmp(v, "auto") == 0) return kFp8MmaAuto;
  if (std::strcmp(v, "f16") == 0) return kFp8MmaF16;
  if (std::strcmp(v, "e4m3") == 0) return kFp8MmaE4m3;
  MOE_CHECK(op, false, "MOE_EXT_FP8_MMA must be auto, f16 or e4m3, got '", v, "'");
  return kFp8MmaAuto;
}

inline GemmElem gemm_elem(at::ScalarType t) {
  return t == at::kBFloat16 ? GemmElem::kBF16 : t == at::kHalf ? GemmElem::kF16 : GemmElem::kF32;
}

// A matrix operand viewed as (rows, cols) = its last two dims. The kernels read either
// orientation in place (one of the two dims has unit stride, or size <= 1); anything else is
// copied to contiguous memory first.
struct Operand {
  at::Tensor t;
  bool cols_unit;  // the last dim is the unit-stride one
};

inline Operand as_operand(const at::Tensor& t) {
  const int64_t rd = t.dim() - 2, cd = t.dim() - 1;
  if (t.stride(cd) == 1 || t.size(cd) <= 1) return {t, true};
  if (t.stride(rd) == 1 || t.size(rd) <= 1) return {t, false};
  return {t.contiguous(), true};
}

// Stride of dim d, as the kernels use it: the unit dim of an operand is exactly 1.
inline int64_t stride_of(const Operand& o, int64_t d, bool is_unit) {
  return is_unit ? 1 : o.t.stride(d);
}

// The Hopper kernel's tensor-map scratch (GroupedGemmParams::workspace), for 16-bit ragged-K
// problems that may run on it; an undefined tensor (and no workspace) otherwise. From the
// caching allocator: stream-ordered and CUDA-graph safe, nothing to initialise.
inline at::Tensor gemm_workspace(GroupedGemmParams& p, const at::TensorOptions& options) {
  if (p.form != GroupedGemmForm::kRaggedK || p.in_type == GemmElem::kF32 ||
      p.path == kGemmPathSm80 || (p.config != kGemmConfigAuto && !is_sm90_config(p.config)))
    return {};
  const int64_t bytes = grouped_gemm_workspace_bytes(p.num_groups);
  at::Tensor w = at::empty({bytes + 128}, options.dtype(at::kByte));
  const auto base = reinterpret_cast<uintptr_t>(w.data_ptr());
  p.workspace = reinterpret_cast<void*>((base + 127) / 128 * 128);  // (CPU tensors: 64-aligned)
  p.workspace_bytes = bytes;
  return w;
}

}  // namespace grouped_mm_binding

}  // namespace moe_ext
