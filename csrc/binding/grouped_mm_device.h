// The device-side binding of grouped_mm, shared by the CUDA and emulator backends: checks,
// tensors -> GroupedGemmParams (form, strides, operand majors), then `launch(params, buffers)`.
#pragma once

#include <cstdlib>
#include <cstring>

#include "../kernels/grouped_gemm/grouped_gemm.h"
#include "checks.h"
#include "device_buffers.h"
#include "gemm_tuning.h"

namespace moe_ext {

namespace grouped_mm_binding {

// Tile config / pipeline depth overrides from the environment (read per call; tests, tuning).
inline int32_t config_from_env(const char* op) {
  const char* v = std::getenv("MOE_EXT_GEMM_CONFIG");
  if (v == nullptr || *v == '\0' || std::strcmp(v, "auto") == 0) return kGemmConfigAuto;
  if (std::strcmp(v, "large") == 0) return kGemmConfigLarge;
  if (std::strcmp(v, "small_m") == 0) return kGemmConfigSmallM;
  MOE_CHECK(op, false, "MOE_EXT_GEMM_CONFIG must be auto, large or small_m, got '", v, "'");
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
      p.path == kGemmPathSm80 || p.config != kGemmConfigAuto)
    return {};
  at::Tensor w = at::empty({kGroupedGemmWorkspaceBytes + 128}, options.dtype(at::kByte));
  const auto base = reinterpret_cast<uintptr_t>(w.data_ptr());
  p.workspace = reinterpret_cast<void*>((base + 127) / 128 * 128);  // (CPU tensors: 64-aligned)
  p.workspace_bytes = kGroupedGemmWorkspaceBytes;
  return w;
}

}  // namespace grouped_mm_binding

template <typename Launch>
at::Tensor grouped_mm_device(const at::Tensor& a, const at::Tensor& b,
                             const std::optional<at::Tensor>& offs,
                             const std::optional<at::Tensor>& bias,
                             std::optional<at::ScalarType> out_dtype, Launch&& launch) {
  using namespace grouped_mm_binding;
  const char* op = "grouped_mm";
  const DeviceBackendScope device_checks;
  const GroupedForm form = check_grouped_mm_args(a, b, offs, bias, out_dtype);
  MOE_CHECK(op, a.scalar_type() != at::kDouble,
            "float64 is supported on CPU tensors only, got a: ", describe(a));
  const auto od = out_dtype.value_or(a.scalar_type());
  MOE_CHECK(op, od != at::kDouble, "out_dtype=float64 is supported on CPU tensors only");
  if (bias) {
    MOE_CHECK(op, bias->scalar_type() != at::kDouble,
              "float64 bias is supported on CPU tensors only, got bias: ", describe(*bias));
  }

  GroupedGemmParams p{};
  const Operand A = as_operand(a), B = as_operand(b);
  at::Tensor out;
  switch (form) {
    case GroupedForm::k2Dx3D:
      p.form = GroupedGemmForm::kRaggedM;
      p.m = a.size(0), p.k = a.size(1), p.n = b.size(2), p.num_groups = static_cast<int32_t>(b.size(0));
      out = at::empty({p.m, p.n}, a.options().dtype(od));
      break;
    case GroupedForm::k3Dx2D:
      p.form = GroupedGemmForm::kRaggedN;
      p.m = a.size(1), p.k = a.size(2), p.n = b.size(1), p.num_groups = static_cast<int32_t>(a.size(0));
      out = at::empty({p.m, p.n}, a.options().dtype(od));
      break;
    case GroupedForm::k2Dx2D:
      p.form = GroupedGemmForm::kRaggedK;
      p.m = a.size(0), p.k = a.size(1), p.n = b.size(1), p.num_groups = static_cast<int32_t>(offs->size(0));
      out = at::empty({p.num_groups, p.m, p.n}, a.options().dtype(od));
      break;
    case GroupedForm::k3Dx3D:
      p.form = GroupedGemmForm::kBatched;
      p.m = a.size(1), p.k = a.size(2), p.n = b.size(2), p.num_groups = static_cast<int32_t>(a.size(0));
      out = at::empty({p.num_groups, p.m, p.n}, a.options().dtype(od));
      break;
  }
  if (out.numel() == 0) return out;

  p.in_type = gemm_elem(a.scalar_type());
  p.out_type = gemm_elem(od);
  p.a = A.t.const_data_ptr();
  p.a_stride_g = a.dim() == 3 ? A.t.stride(0) : 0;
  p.a_k_major = A.cols_unit;
  p.a_stride_m = stride_of(A, A.t.dim() - 2, !A.cols_unit);
  p.a_stride_k = stride_of(A, A.t.dim() - 1, A.cols_unit);
  p.b = B.t.const_data_ptr();
  p.b_stride_g = b.dim() == 3 ? B.t.stride(0) : 0;
  p.b_k_major = !B.cols_unit;  // b is (k, n): k-major when its rows dim has unit stride
  p.b_stride_k = stride_of(B, B.t.dim() - 2, !B.cols_unit);
  p.b_stride_n = stride_of(B, B.t.dim() - 1, B.cols_unit);
  p.c = out.data_ptr();
  p.c_stride_g = out.dim() == 3 ? out.stride(0) : 0;
  p.c_stride_m = out.stride(out.dim() - 2);
  at::Tensor offs_c, bias_c;
  if (offs) {
    offs_c = offs->contiguous();
    p.offs = offs_c.const_data_ptr<int32_t>();
  }
  if (bias) {
    bias_c = bias->stride(1) == 1 ? *bias : bias->contiguous();
    p.bias = bias_c.const_data_ptr();
    p.bias_type = gemm_elem(bias_c.scalar_type());
    p.bias_stride_g = bias_c.stride(0);
  }
  p.config = config_from_env(op);
  p.stages = stages_from_env(op);
  p.path = path_from_env(op);
  apply_gemm_tuning(p);
  const at::Tensor workspace = gemm_workspace(p, a.options());
  launch(op, p,
         DeviceBuffers{{"a", A.t, false}, {"b", B.t, false}, {"offs", offs_c, false},
                       {"bias", bias_c, false}, {"out", out, true}, {"workspace", workspace, true}});
  return out;
}

}  // namespace moe_ext
