// grouped_gemm_simt_kernel: the fp32 grouped GEMM on CUDA cores (FFMA), full fp32 accuracy.
//
// fp32 inputs must give fp32 results (DESIGN.md: TF32 only when torch allows it, and never by
// default), so they skip the tensor cores. Classic shared-memory tiling: a 64x64 output tile per
// CTA, BK = 16 slices of A and B staged transposed-to-k-rows in shared memory (As[k][m],
// Bs[k][n], padded rows so float4 reads stay aligned), 256 threads each accumulating a 4x4
// block from two float4 loads per k. Global loads are element-wise and predicated (any shape,
// stride and alignment), with consecutive threads on the operand's contiguous dim (coalesced).
// Same persistent TileScheduler and epilogue as the tensor-core kernel.
#pragma once

#include <cmath>

#include "../../common/launch.h"
#include "../../common/memory.h"
#include "../../common/shared.h"
#include "epilogue.cuh"
#include "grouped_gemm.h"
#include "scheduler.cuh"

namespace moe_ext::MOE_KERNEL_NS {

struct SimtTile {
  static constexpr int BM = 64, BN = 64, BK = 16, kThreads = 256;
  static constexpr int kPitchA = BM + 4, kPitchB = BN + 4;  // floats per smem k-row
  static constexpr int kLoopBytes = BK * (kPitchA + kPitchB) * 4;
  static constexpr int kSmemBytes =
      kLoopBytes > EpilogueStaging<BM, BN>::kBytes ? kLoopBytes : EpilogueStaging<BM, BN>::kBytes;
};

// Stages a (rows m|n) x (BK k) operand slice as Sk[k][row]; `kKMajor`: k is the unit-stride dim.
template <int Rows, bool kKMajor>
MOE_DEVICE MOE_FORCEINLINE void load_simt_slice(float* s, int pitch, const float* src,
                                                int64_t row_stride, int64_t k_stride,
                                                int64_t rows_left, int64_t k_left, int tid) {
  constexpr int BK = SimtTile::BK;
  MOE_UNROLL for (int j = 0; j < Rows * BK / SimtTile::kThreads; ++j) {
    const int i = tid + j * SimtTile::kThreads;
    const int r = kKMajor ? i / BK : i % Rows, k = kKMajor ? i % BK : i / Rows;
    const float v =
        r < rows_left && k < k_left ? ld_global(src + r * row_stride + k * k_stride) : 0.f;
    st_shared(s + k * pitch + r, v);
  }
}

template <bool kAKMajor, bool kBKMajor>
__global__ void __launch_bounds__(SimtTile::kThreads)
    grouped_gemm_simt_kernel(GroupedGemmParams p) {
  constexpr int BM = SimtTile::BM, BN = SimtTile::BN, BK = SimtTile::BK;
  MOE_SHARED_DYNAMIC(float, smem);
  float* as = smem;
  float* bs = smem + BK * SimtTile::kPitchA;
  const int tid = static_cast<int>(threadIdx.x), tx = tid % 16, ty = tid / 16;
  const float* a = static_cast<const float*>(p.a);
  const float* b = static_cast<const float*>(p.b);

  TileScheduler<BM, BN> scheduler(p);
  TileCoord tc;
  for (int tile = static_cast<int>(blockIdx.x); scheduler.find(tile, tc); tile += gridDim.x) {
    const GroupProblem q = group_problem(p, tc.problem);
    const int64_t m0 = static_cast<int64_t>(tc.tile_m) * BM,
                  n0 = static_cast<int64_t>(tc.tile_n) * BN;
    const float* a_tile = a + q.a_off + m0 * p.a_stride_m;
    const float* b_tile = b + q.b_off + n0 * p.b_stride_n;
    float acc[4][4] = {};
    for (int64_t k0 = 0; k0 < q.k; k0 += BK) {
      load_simt_slice<BM, kAKMajor>(as, SimtTile::kPitchA, a_tile + k0 * p.a_stride_k, p.a_stride_m,
                                    p.a_stride_k, q.m - m0, q.k - k0, tid);
      load_simt_slice<BN, kBKMajor>(bs, SimtTile::kPitchB, b_tile + k0 * p.b_stride_k, p.b_stride_n,
                                    p.b_stride_k, q.n - n0, q.k - k0, tid);
      __syncthreads();
      MOE_UNROLL for (int k = 0; k < BK; ++k) {
        const float4 av =
            ld_shared(reinterpret_cast<const float4*>(as + k * SimtTile::kPitchA + ty * 4));
        const float4 bv =
            ld_shared(reinterpret_cast<const float4*>(bs + k * SimtTile::kPitchB + tx * 4));
        const float ar[4] = {av.x, av.y, av.z, av.w}, br[4] = {bv.x, bv.y, bv.z, bv.w};
        MOE_UNROLL for (int i = 0; i < 4; ++i) MOE_UNROLL for (int j = 0; j < 4; ++j) acc[i][j] =
            fmaf(ar[i], br[j], acc[i][j]);
      }
      __syncthreads();
    }
    using Staging = EpilogueStaging<BM, BN>;
    MOE_UNROLL for (int i = 0; i < 4; ++i)
        st_shared(reinterpret_cast<float4*>(smem + Staging::index(ty * 4 + i, tx * 4)),
                  float4{acc[i][0], acc[i][1], acc[i][2], acc[i][3]});
    __syncthreads();
    store_tile<BM, BN, SimtTile::kThreads>(smem, p, q, m0, n0, tid);
    __syncthreads();
  }
}

}  // namespace moe_ext::MOE_KERNEL_NS
