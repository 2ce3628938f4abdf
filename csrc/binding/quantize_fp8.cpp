// Binding of quantize_fp8 (per-token-group FP8 quantization, DESIGN.md "Contract additions"):
// checks, then the native CPU op or tensors -> QuantizeFp8Params and the kernel
// (kernels/quantize_fp8.cuh) on the device target; and moe_mlp_fp8's activation-quantizing pass
// through the same kernel.
#include <string>

#include "../cpu/cpu_ops.h"
#include "../kernels/quantize_fp8.h"
#include "backend.h"
#include "ops.h"

namespace moe_ext {
namespace {

// The kernel on x[M, K] (gated: x[M, 2K] holding gate | up, act applied first).
template <Target T>
std::tuple<at::Tensor, at::Tensor> quantize_fp8_device(const char* op, const at::Tensor& x,
                                                       int64_t group_size, bool ue8m0,
                                                       const MlpActivation& act) {
  const int64_t M = x.size(0), K = act.gated ? x.size(1) / 2 : x.size(1);
  const int64_t groups = (K + group_size - 1) / group_size;
  const auto xc = x.stride(1) == 1 || x.size(1) <= 1 ? x : x.contiguous();
  auto x_q = at::empty({M, K}, x.options().dtype(at::kFloat8_e4m3fn));
  auto scale = at::empty({M, groups}, x.options().dtype(at::kFloat));
  QuantizeFp8Params p{};
  p.x = xc.const_data_ptr();
  p.x_q = static_cast<uint8_t*>(x_q.data_ptr());
  p.scale = scale.data_ptr<float>();
  p.rows = M, p.cols = K;
  p.x_row_stride = xc.stride(0);
  p.group_size = static_cast<int32_t>(group_size);
  p.dtype = float_dtype(x);
  p.ue8m0 = ue8m0;
  p.act = act.act;
  p.gated = act.gated;
  launch_on<T>(op, &launch_quantize_fp8<T>, p,
               {{"x", xc, false}, {"x_q", x_q, true}, {"scale", scale, true}});
  return {x_q, scale};
}

}  // namespace

template <Target T>
std::tuple<at::Tensor, at::Tensor> quantize_fp8(const at::Tensor& x, int64_t group_size,
                                                c10::string_view scale_format) {
  const CheckScope<T> checks;
  const char* op = "quantize_fp8";
  check_float(op, "x", x, false);
  check_dim(op, "x", x, 2);
  MOE_CHECK(op, group_size >= 1 && group_size <= (int64_t{1} << 30),
            "group_size must be in [1, 2^30], got ", group_size);
  const std::string fmt(scale_format);
  MOE_CHECK(op, fmt == "float" || fmt == "ue8m0", "scale_format must be 'float' or 'ue8m0', got '",
            fmt, "'");
  const bool ue8m0 = fmt == "ue8m0";
  if constexpr (T == Target::kCpu)
    return quantize_fp8_cpu(x, group_size, ue8m0);
  else
    return quantize_fp8_device<T>(op, x, group_size, ue8m0, {GemmActivation::kNone, false});
}

template <Target T>
std::tuple<at::Tensor, at::Tensor> quantize_fp8_activated(const at::Tensor& h,
                                                          const MlpActivation& act) {
  static_assert(T != Target::kCpu, "the CPU composes torch ops (moe_mlp_fp8.cpp)");
  return quantize_fp8_device<T>("moe_mlp_fp8", h, 128, false, act);
}

MOE_EXT_INSTANTIATE(quantize_fp8)
MOE_EXT_INSTANTIATE_DEVICE(quantize_fp8_activated)

}  // namespace moe_ext
