// Compile-time dispatch in one place (STYLE.md rule 5), for the launchers in csrc/kernels/:
//
//   dispatch_dtype<float, __nv_bfloat16, __half>(p.dtype, [&](auto tag) {
//     using T = decltype(tag);  ...  return launch_kernel(..., my_kernel<T>, ...);
//   });                          // cudaErrorInvalidValue for a dtype outside the list
//
//   bool_switch(p.ids_are_int64, [&](auto is64) { using Id = std::conditional_t<is64, ...>; });
//   bool_switch(a, b, [&](auto ka, auto kb) { return launch<ka, kb>(...); });
//
// The lambda receives a value-initialised element (dtype) or std::bool_constant (bools); each
// listed alternative instantiates the callee once (FlashAttention's BOOL_SWITCH, vLLM's
// dispatch_utils.h, as templates instead of macros).
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <type_traits>

#include "dtype.h"
#include "launcher.h"

namespace moe_ext {

template <typename T>
constexpr FloatDtype dtype_of() {
  if constexpr (std::is_same_v<T, float>) return FloatDtype::kFloat32;
  if constexpr (std::is_same_v<T, __nv_bfloat16>) return FloatDtype::kBFloat16;
  if constexpr (std::is_same_v<T, __half>) return FloatDtype::kFloat16;
  if constexpr (std::is_same_v<T, double>) return FloatDtype::kFloat64;
}

template <typename... Ts, typename F>
cudaError_t dispatch_dtype(FloatDtype dtype, F&& f) {
  cudaError_t err = cudaErrorInvalidValue;
  const bool found = ((dtype == dtype_of<Ts>() ? (err = f(Ts{}), true) : false) || ...);
  (void)found;
  return err;
}

template <typename F>
decltype(auto) bool_switch(bool b, F&& f) {
  return b ? f(std::true_type{}) : f(std::false_type{});
}

template <typename F>
decltype(auto) bool_switch(bool a, bool b, F&& f) {
  return bool_switch(a,
                     [&](auto ka) { return bool_switch(b, [&](auto kb) { return f(ka, kb); }); });
}

}  // namespace moe_ext
