// The host launcher of the sm_90a grouped GEMM (hopper.cuh): which problems the Hopper kernel
// takes (launch_grouped_gemm_sm90, else cudaErrorNotSupported and the Ampere kernel), the TMA
// tensor-map encoding of A, B (128-byte swizzle, boxes of BK x 64/128 rows or 64 x BK) and C
// (boxes of kStoreRows x 128 bytes), the template variant per operand majorness / gather / gate,
// single CTAs or 2x2 clusters (p.config, else sm90_cluster_pays), and the persistent launch.
// Included at the end of hopper.cuh (it names the kernel).
#pragma once

#include "../../common/launch.h"
#include "../../common/ptx_sm90.h"
#include "grouped_gemm.h"
#include "persistent.cuh"
#include "sm90_config.cuh"

namespace moe_ext::MOE_KERNEL_NS {

namespace grouped_gemm_detail {

// Whether TMA can address an operand: 16-byte aligned base and row pitches.
inline bool tma_addressable(const void* base, int64_t pitch_bytes, int64_t group_bytes) {
  return reinterpret_cast<uintptr_t>(base) % 16 == 0 && pitch_bytes % 16 == 0 &&
         group_bytes % 16 == 0;
}

// The map of an operand tile: K-major [G,] rows x K as boxes of BK x box_rows, MN-major
// [G,] K x rows as boxes of 64 x BK (dims innermost first).
inline bool make_operand_map(TmaDescriptor* map, const void* base, bool k_major, int64_t rows,
                             int64_t k, int64_t pitch, int64_t group_stride, int64_t groups,
                             int rank, uint32_t box_rows) {
  using namespace sm90;
  const uint64_t inner = static_cast<uint64_t>(k_major ? k : rows);
  const uint64_t outer = static_cast<uint64_t>(k_major ? rows : k);
  const uint64_t dims[3] = {inner, outer, static_cast<uint64_t>(groups)};
  const uint64_t strides[2] = {static_cast<uint64_t>(pitch) * 2,
                               static_cast<uint64_t>(group_stride) * 2};
  const uint32_t box[3] = {static_cast<uint32_t>(k_major ? BK : 64), k_major ? box_rows : BK, 1};
  return tma_addressable(base, int64_t(strides[0]), rank == 3 ? int64_t(strides[1]) : 0) &&
         make_tma_descriptor(map, base, 2, rank, dims, strides, box, TmaSwizzle::k128B);
}

template <typename T, bool kAKMajor, bool kBKMajor, bool kGather, bool kGated, bool kCluster>
cudaError_t launch_sm90_typed(const GroupedGemmParams& p, cudaStream_t stream) {
  using namespace sm90;
  const bool batched = p.form == GroupedGemmForm::kBatched;
  const bool ragged_k = p.form == GroupedGemmForm::kRaggedK;
  const bool has_workspace = p.workspace != nullptr &&
                             p.workspace_bytes >= grouped_gemm_workspace_bytes(p.num_groups) &&
                             reinterpret_cast<uintptr_t>(p.workspace) % 128 == 0;
  if (ragged_k && !has_workspace) return cudaErrorNotSupported;
  TmaDescriptor ta, tb, tc;
  // b: [G, N, K] (K-major; gated: 2n rows, [gate; up]) or [G, K, N]; ragged K: one [K, N]
  const int64_t b_rows = kGated ? 2 * p.n : p.n;
  if (!make_operand_map(&tb, p.b, kBKMajor, b_rows, p.k, kBKMajor ? p.b_stride_n : p.b_stride_k,
                        p.b_stride_g, p.num_groups, ragged_k ? 2 : 3, kBHalf))
    return cudaErrorNotSupported;
  if (kGather) {
    ta = tb;  // unused: A is gathered with cp.async
  } else if (!make_operand_map(&ta, p.a, kAKMajor, p.m, p.k, kAKMajor ? p.a_stride_m : p.a_stride_k,
                               p.a_stride_g, p.num_groups, batched ? 3 : 2,
                               kCluster ? BM / 2 : BM)) {  // (a cluster CTA loads half)
    return cudaErrorNotSupported;
  }
  // c through TMA: 2-D [M, N] for ragged M, else 3-D [G, M, N]
  const int ob = gemm_elem_bytes(p.out_type);
  const bool ragged_m = p.form == GroupedGemmForm::kRaggedM;
  const uint64_t c_dims[3] = {static_cast<uint64_t>(p.n), static_cast<uint64_t>(p.m),
                              static_cast<uint64_t>(p.num_groups)};
  const uint64_t c_strides[2] = {static_cast<uint64_t>(p.c_stride_m) * ob,
                                 static_cast<uint64_t>(p.c_stride_g) * ob};
  const uint32_t c_box[3] = {static_cast<uint32_t>(kBoxRowBytes / ob), kStoreRows, 1};
  const bool tma_store =
      tma_addressable(p.c, int64_t(c_strides[0]), ragged_m ? 0 : int64_t(c_strides[1])) &&
      make_tma_descriptor(&tc, p.c, ob, ragged_m ? 2 : 3, c_dims, c_strides, c_box,
                          TmaSwizzle::k128B);
  if (!tma_store) tc = tb;  // unused
  if (ragged_k) {           // the per-group maps first (sm90_group_maps.cuh), in stream order
    const cudaError_t err = launch_kernel(
        "build_group_maps_sm90_kernel", build_group_maps_sm90_kernel<kAKMajor, kBKMajor>,
        dim3(static_cast<unsigned>(ceil_div(p.num_groups, kGroupMapWarps))),
        dim3(kGroupMapWarps * 32), kGroupMapSmemBytes, stream, ta, tb, p);
    if (err != cudaSuccess) return err;
  }
  GroupedGemmParams q = p;
  q.wait_report = wait_timeout_report_buffer(stream);
  auto* kernel = grouped_gemm_sm90_kernel<T, kAKMajor, kBKMajor, kGather, kGated, kCluster>;
  const int tile_n = kGated ? BN / 2 : BN;
  if constexpr (kCluster)  // 2x2 blocks of tiles, one per cluster of 4 CTAs (sm90_cluster.cuh)
    return launch_persistent_clusters("grouped_gemm_sm90_kernel", kernel, kThreads, kSmemBytes,
                                      max_tiles(p, 2 * BM, 2 * tile_n), kClusterCtas, stream, ta,
                                      tb, tc, q, tma_store);
  return launch_persistent("grouped_gemm_sm90_kernel", kernel, kThreads, kSmemBytes,
                           max_tiles(p, BM, tile_n), stream, ta, tb, tc, q, tma_store);
}

template <typename T, bool kCluster>
cudaError_t launch_sm90_variant(const GroupedGemmParams& p, cudaStream_t stream) {
  if (p.a_gather != nullptr) {
    if (!p.a_k_major || !p.b_k_major) return cudaErrorNotSupported;
    return p.gated ? launch_sm90_typed<T, true, true, true, true, kCluster>(p, stream)
                   : launch_sm90_typed<T, true, true, true, false, kCluster>(p, stream);
  }
  if (p.a_k_major && p.b_k_major)
    return launch_sm90_typed<T, true, true, false, false, kCluster>(p, stream);
  if (p.a_k_major) return launch_sm90_typed<T, true, false, false, false, kCluster>(p, stream);
  if (!p.b_k_major) return launch_sm90_typed<T, false, false, false, false, kCluster>(p, stream);
  return cudaErrorNotSupported;  // MN-major a with K-major b: the Ampere kernel
}

template <typename T>
cudaError_t launch_sm90_config(const GroupedGemmParams& p, cudaStream_t stream) {
  const bool cluster =
      p.config == kGemmConfigSm90Cluster || (p.config == kGemmConfigAuto && sm90_cluster_pays(p));
  return cluster ? launch_sm90_variant<T, true>(p, stream)
                 : launch_sm90_variant<T, false>(p, stream);
}

}  // namespace grouped_gemm_detail

// The Hopper path, or cudaErrorNotSupported when the problem needs the Ampere kernel.
cudaError_t launch_grouped_gemm_sm90(const GroupedGemmParams& p, cudaStream_t stream) {
  using namespace grouped_gemm_detail;
  const bool form_ok = p.form == GroupedGemmForm::kRaggedM || p.form == GroupedGemmForm::kBatched ||
                       p.form == GroupedGemmForm::kRaggedK;
  const bool type_ok = p.in_type == GemmElem::kBF16 || p.in_type == GemmElem::kF16;
  const bool gather = p.a_gather != nullptr;
  // (an activation exists for moe_mlp's gathered first GEMM only; see stage_output)
  // (a gathered B: TMA cannot gather rows on sm_90, the Ampere kernel's cp.async does)
  if (!form_ok || !type_ok || p.b_gather != nullptr || (p.gated && !gather) ||
      (gather && p.a_gather_div <= 0) || (gather && p.form != GroupedGemmForm::kRaggedM) ||
      (!gather && p.activation != GemmActivation::kNone) || p.k <= 0 || p.num_groups <= 0 ||
      p.m > INT32_MAX || p.n > INT32_MAX / 2 || p.k > INT32_MAX ||
      // what the gathered A's 16-byte cp.async needs (the TMA maps check their own operands)
      (gather && !tma_addressable(p.a, p.a_stride_m * 2, 0)))
    return cudaErrorNotSupported;
  return p.in_type == GemmElem::kBF16 ? launch_sm90_config<__nv_bfloat16>(p, stream)
                                      : launch_sm90_config<__half>(p, stream);
}

}  // namespace moe_ext::MOE_KERNEL_NS
