// launch_grouped_gemm: picks the kernel, tile config, pipeline depth and persistent grid for a
// grouped GEMM (grouped_gemm.h) and launches it; no host synchronisation, no device allocation,
// so it is safe inside CUDA-graph capture.
//
//   * kernel: bf16/fp16 -> grouped_gemm_tc_kernel (tensor cores), fp32 -> grouped_gemm_simt_kernel
//     (FFMA, full fp32). One instantiation per (dtype, A major, B major, config), 4 operand
//     layouts because all occur: forward (a K-major, b N- or K-major), dA (dC K-major, bᵀ),
//     dB (aᵀ M-major, dC N-major).
//   * config (heuristic_gemm_config, grouped_gemm.h): swap-AB when groups average <= 16 rows
//     and A is K-major (decode; the average M / G is known on the host without reading offs),
//     the small-M tile up to 48, else the large one; `p.config` overrides (a forced swap-AB
//     with an M-major A runs small_m).
//   * pipeline depth and grid: launch_variants.cuh.
//   * variants: launch_variants.cuh launches one kernel instantiation; under nvcc each is
//     compiled in its own generated unit (scripts/generate_kernels.py, one per dtype x config)
//     and declared extern here (instances.h), so this file's unit compiles only the dispatch.
//   * path: on sm_90 (and on the emulator, which models one) the Hopper kernel (hopper.cuh,
//     TMA + wgmma; single CTAs or 2x2 clusters, sm90_launch.cuh) takes the problems it
//     supports; everything else runs here.
#pragma once

#include <algorithm>

#include "../../common/launch.h"
#include "grouped_gemm.h"
#include "instances.h"  // generated: the launch variants, instantiated in csrc/cuda/gemm_instances/
#include "launch_variants.cuh"

namespace moe_ext::MOE_KERNEL_NS {

namespace grouped_gemm_detail {

// One config's operand layouts. Swap-AB is built for a K-major A only (x, dC): its M-major-A
// variants do not exist (the config switch sends those problems to small_m).
template <typename T, typename Tile>
cudaError_t launch_tensor_core_layout(const GroupedGemmParams& p, cudaStream_t stream) {
  if (p.gated) {  // the fused MLP's first GEMM (x row-major)
    if (!p.a_k_major) return cudaErrorInvalidValue;
    return p.b_k_major ? launch_tensor_core<T, Tile, true, true, true>(p, stream)
                       : launch_tensor_core<T, Tile, true, false, true>(p, stream);
  }
  if (p.a_k_major) {
    return p.b_k_major ? launch_tensor_core<T, Tile, true, true>(p, stream)
                       : launch_tensor_core<T, Tile, true, false>(p, stream);
  }
  if constexpr (Tile::kSwapAB) {
    return cudaErrorInvalidValue;
  } else {
    return p.b_k_major ? launch_tensor_core<T, Tile, false, true>(p, stream)
                       : launch_tensor_core<T, Tile, false, false>(p, stream);
  }
}

template <typename T>
cudaError_t launch_tensor_core_config(const GroupedGemmParams& p, cudaStream_t stream) {
  const int config =
      p.config == kGemmConfigAuto || is_sm90_config(p.config) ? heuristic_gemm_config(p) : p.config;
  switch (config) {
    case kGemmConfigLarge: return launch_tensor_core_layout<T, TensorCoreLarge>(p, stream);
    case kGemmConfigSmallM: return launch_tensor_core_layout<T, TensorCoreSmallM>(p, stream);
    case kGemmConfigSwapAb:
      return p.a_k_major ? launch_tensor_core_layout<T, TensorCoreSwapAb>(p, stream)
                         : launch_tensor_core_layout<T, TensorCoreSmallM>(p, stream);
    default: return cudaErrorInvalidValue;
  }
}

}  // namespace grouped_gemm_detail

}  // namespace moe_ext::MOE_KERNEL_NS

// The launcher (declared in the .h), for the target this translation unit compiles.
namespace moe_ext {

template <>
cudaError_t launch_grouped_gemm<kKernelTarget>(const GroupedGemmParams& p, cudaStream_t stream) {
  using namespace MOE_KERNEL_NS;
  using namespace grouped_gemm_detail;
  if (p.m <= 0 || p.n <= 0) return cudaSuccess;  // c is empty
  if (can_implement(p) != nullptr) return cudaErrorInvalidValue;
#if !defined(__CUDACC__) || defined(MOE_EXT_WITH_SM90)  // the emulator models an sm_90
  // the Hopper kernel, unless an Ampere config is forced or the heuristic wants swap-AB
  // (decode); a forced sm90 path or config takes it regardless
  const bool swap_ab = p.in_type != GemmElem::kF32 && p.config == kGemmConfigAuto &&
                       heuristic_gemm_config(p) == kGemmConfigSwapAb;
  const bool hopper_config = p.config == kGemmConfigAuto || is_sm90_config(p.config);
  if (p.path != kGemmPathSm80 && hopper_config &&
      (!swap_ab || p.path == kGemmPathSm90 || is_sm90_config(p.config)) &&
      device_limits().cc_major == 9) {
    const cudaError_t err = launch_grouped_gemm_sm90(p, stream);
    if (err != cudaErrorNotSupported) return err;
  }
#endif
  if (p.path == kGemmPathSm90) return cudaErrorNotSupported;
  switch (p.in_type) {
    case GemmElem::kBF16: return launch_tensor_core_config<__nv_bfloat16>(p, stream);
    case GemmElem::kF16: return launch_tensor_core_config<__half>(p, stream);
    default:
      if (p.a_k_major)
        return p.b_k_major ? launch_simt<true, true>(p, stream)
                           : launch_simt<true, false>(p, stream);
      return p.b_k_major ? launch_simt<false, true>(p, stream)
                         : launch_simt<false, false>(p, stream);
  }
}

template <>
bool grouped_gemm_on_sm90<kKernelTarget>() {
#if !defined(__CUDACC__) || defined(MOE_EXT_WITH_SM90)
  return device_limits().cc_major == 9;
#else
  return false;
#endif
}

}  // namespace moe_ext
