// quantize_fp8_kernel: per-token-group FP8 quantization (DESIGN.md, quantize_fp8):
//
//   amax[m, g]  = max(max |x[m, k]| over the group's columns k in [g G, min((g + 1) G, K)), 1e-10)
//   scale[m, g] = amax / 448                 (fp32; ue8m0: 2^ceil(log2 scale), common/fp8.h)
//   x_q[m, k]   = e4m3fn(saturate(x[m, k] / scale[m, g])), round to nearest even
//
// NaN propagates into a group's amax (as torch.amax does), so a NaN input makes its group's
// scale and every x_q of the group NaN, like the reference.
//
// Design: memory-bound (read K elements, write K bytes + K / G floats per row), so one warp per
// (row, group) with a grid-stride loop over them: the lanes read the group's elements at
// consecutive addresses (coalesced), reduce |x| with shuffles, lane 0 writes the scale, then the
// lanes write the bytes from the values they kept (groups of up to 32 vectors; longer groups
// re-read their elements, L1 hits). The e4m3 conversion is integer
// arithmetic on the float's bits (common/fp8.h): the same bits on sm_80 (no fp8 cvt), sm_90 and
// the emulator. The division is IEEE (x / scale, not x * (1 / scale)), as the reference's.
// Vectorised where the shapes allow (kVec4: 4 columns per lane per access, one vector per lane
// for a 128-column group), element by element otherwise; x rows of any stride.
//
// Activation mode (moe_mlp_fp8): the value quantized is act(x) or, gated, act(gate) * up from a
// row of 2K columns, computed in fp32 (kernels/activation.cuh, as the GEMM epilogue computes
// it) in both passes -- the activation of h and its quantization in one read of h, no fp32
// [N, I] tensor.
#pragma once

#include <algorithm>
#include <cmath>

#include "../common/convert.h"
#include "../common/dispatch.h"
#include "../common/fp8.h"
#include "../common/launch.h"
#include "../common/memory.h"
#include "../common/vec.h"
#include "../common/warp.h"
#include "activation.cuh"
#include "quantize_fp8.h"

namespace moe_ext::MOE_KERNEL_NS {

// max(a, b), NaN if either is (fmaxf would drop a NaN)
MOE_DEVICE MOE_FORCEINLINE float nan_max(float a, float b) { return (b > a || b != b) ? b : a; }

// kVec4: each lane takes 4 consecutive columns per step (one 8-byte bf16/fp16 or 16-byte fp32
// load, one 4-byte store of codes): the launcher's choice when groups, columns, the base and the
// row stride are multiples of 4 elements (a 128-column group is then one vector per lane).
template <typename T, bool kVec4>
__global__ void quantize_fp8_kernel(QuantizeFp8Params p) {
  constexpr int kV = kVec4 ? 4 : 1;
  const T* x = static_cast<const T*>(p.x);
  const int64_t groups = (p.cols + p.group_size - 1) / p.group_size;
  const int64_t items = p.rows * groups;
  const int lane = static_cast<int>(threadIdx.x) % 32, warp = static_cast<int>(threadIdx.x) / 32;
  const int warps = static_cast<int>(blockDim.x) / 32;
  for (int64_t item = static_cast<int64_t>(blockIdx.x) * warps + warp; item < items;
       item += static_cast<int64_t>(gridDim.x) * warps) {
    const int64_t row = item / groups, g = item % groups;
    const int64_t c0 = g * p.group_size;
    const int64_t c1 = std::min<int64_t>(c0 + p.group_size, p.cols);
    const T* src = x + row * p.x_row_stride;
    // the kV values at columns c.. (act(x), or act(gate) * up), in fp32
    auto values = [&](int64_t c, float (&v)[kV]) {
      const Vec<T, kV> xv = ld_global_nc(reinterpret_cast<const Vec<T, kV>*>(src + c));
      if (p.gated) {
        const Vec<T, kV> uv = ld_global_nc(reinterpret_cast<const Vec<T, kV>*>(src + p.cols + c));
        MOE_UNROLL for (int e = 0; e < kV; ++e) v[e] =
            gated_activate(to_acc(xv.v[e]), to_acc(uv.v[e]), p.act, 0.f);
      } else {
        MOE_UNROLL for (int e = 0; e < kV; ++e) v[e] = activate(to_acc(xv.v[e]), p.act);
      }
    };
    // a group of <= 32 kV columns (128 with kVec4) is one step per lane: its values stay in
    // registers for the second pass, x is read once
    const bool one_step = c1 - c0 <= 32 * kV;
    const int64_t c_lane = c0 + kV * lane;
    float kept[kV] = {};
    float amax = 0.f;
    if (one_step) {
      if (c_lane < c1) values(c_lane, kept);
      MOE_UNROLL for (int e = 0; e < kV; ++e) amax = nan_max(amax, fabsf(kept[e]));
    } else {
      for (int64_t c = c_lane; c < c1; c += 32 * kV) {
        float v[kV];
        values(c, v);
        MOE_UNROLL for (int e = 0; e < kV; ++e) amax = nan_max(amax, fabsf(v[e]));
      }
    }
    for (int o = 16; o > 0; o /= 2) amax = nan_max(amax, __shfl_xor_sync(0xffffffffu, amax, o));
    float scale = (amax > 1e-10f || amax != amax ? amax : 1e-10f) / kFp8E4m3Max;
    if (p.ue8m0 && scale == scale) scale = pow2_ceil(scale);
    if (lane == 0) st_global(p.scale + row * groups + g, scale);
    uint8_t* dst = p.x_q + row * p.cols;
    for (int64_t c = c_lane; c < c1; c += 32 * kV) {  // longer groups re-read (L1 hits)
      float v[kV];
      if (one_step) {
        MOE_UNROLL for (int e = 0; e < kV; ++e) v[e] = kept[e];
      } else {
        values(c, v);
      }
      if constexpr (kVec4) {
        uint32_t codes = 0;
        MOE_UNROLL for (int e = 0; e < 4; ++e) codes |=
            uint32_t{f32_to_e4m3_satfinite(v[e] / scale)} << (8 * e);
        st_global(reinterpret_cast<uint32_t*>(dst + c), codes);
      } else {
        st_global(dst + c, f32_to_e4m3_satfinite(v[0] / scale));
      }
    }
  }
}

}  // namespace moe_ext::MOE_KERNEL_NS

// The launcher (declared in the .h), for the target this translation unit compiles.
namespace moe_ext {

template <>
cudaError_t launch_quantize_fp8<kKernelTarget>(const QuantizeFp8Params& p, cudaStream_t stream) {
  using namespace MOE_KERNEL_NS;
  const int64_t groups = (p.cols + p.group_size - 1) / p.group_size;
  const int64_t items = p.rows * groups;
  if (items == 0) return cudaSuccess;
  constexpr int kThreads = 256;  // 8 warps, one (row, group) each
  const auto blocks = static_cast<unsigned>(std::min<int64_t>((items + 7) / 8, int64_t{1} << 16));
  return dispatch_dtype<float, __nv_bfloat16, __half>(p.dtype, [&](auto tag) {
    using T = decltype(tag);
    const bool vec4 = p.group_size % 4 == 0 && p.cols % 4 == 0 && p.x_row_stride % 4 == 0 &&
                      reinterpret_cast<uintptr_t>(p.x) % (4 * sizeof(T)) == 0 &&
                      reinterpret_cast<uintptr_t>(p.x_q) % 4 == 0;
    return vec4 ? launch_kernel("quantize_fp8_kernel", quantize_fp8_kernel<T, true>, dim3(blocks),
                                dim3(kThreads), 0, stream, p)
                : launch_kernel("quantize_fp8_kernel", quantize_fp8_kernel<T, false>, dim3(blocks),
                                dim3(kThreads), 0, stream, p);
  });
}

}  // namespace moe_ext
