// wgmma_gemm_kernel: C[M,N] (fp32) = A[M,K] @ B[N,K]^T on Hopper's asynchronous pipeline: TMA
// tile loads into 128-byte-swizzled shared memory completing on mbarriers, a producer warp and
// one consumer warpgroup issuing wgmma.m64n128k16 from shared-memory descriptors.
//
// The test vehicle of the sm_90 PTX layer (common/ptx_sm90.h) -- tests/test_emu_hopper.py runs it
// on the emulator against torch, and with planted faults (a skipped barrier wait, a producer
// that never loads) that the emulator must report -- and the skeleton the Hopper grouped GEMM
// (issue 10) grows from:
//   * CTA tile 64x128, K step 64 (one 128-byte swizzle atom per row), `stages` buffers;
//   * 160 threads: warps 0-3 = consumer warpgroup, warp 4 = producer (lane 0 issues TMA);
//   * full[s] (1 arrival + the stage's bytes) and empty[s] (4 arrivals, one per consumer warp)
//     mbarriers; use u of stage s waits full[s] parity u & 1 and empty[s] parity (u - 1) & 1;
//   * per K step, 4 wgmma (k16 each, descriptors advanced by 32 bytes inside the atom),
//     committed and waited before the stage is released.
// Preconditions (launcher): M % 64 == 0, N % 128 == 0, K % 64 == 0.
#pragma once

#include "../../common/launch.h"
#include "../../common/memory.h"
#include "../../common/ptx_sm90.h"
#include "../../common/shared.h"
#include "wgmma_gemm.h"

namespace moe_ext::MOE_KERNEL_NS {

namespace wgmma_gemm {
constexpr int kBM = 64, kBN = 128, kBK = 64, kThreads = 160;
constexpr int kABytes = kBM * kBK * 2, kBBytes = kBN * kBK * 2, kStageBytes = kABytes + kBBytes;
constexpr int kMaxStages = 4;
// 1024 bytes of alignment slack + stages + 2 mbarriers per stage
constexpr size_t smem_bytes(int stages) { return 1024 + stages * kStageBytes + 16 * stages; }
}  // namespace wgmma_gemm

__global__ void __launch_bounds__(wgmma_gemm::kThreads, 1)
    wgmma_gemm_kernel(const MOE_GRID_CONSTANT TmaDescriptor tma_a,
                      const MOE_GRID_CONSTANT TmaDescriptor tma_b, WgmmaGemmParams p) {
  using namespace wgmma_gemm;
  MOE_SHARED_DYNAMIC(unsigned char, smem_raw);
  unsigned char* smem = smem_raw + (1024 - shared_address(smem_raw) % 1024) % 1024;
  uint64_t* full = reinterpret_cast<uint64_t*>(smem + p.stages * kStageBytes);
  uint64_t* empty = full + p.stages;
  const int warp = static_cast<int>(threadIdx.x) / 32, lane = static_cast<int>(threadIdx.x) % 32;
  const int k_tiles = static_cast<int>(p.k / kBK);
  const int m0 = static_cast<int>(blockIdx.y) * kBM, n0 = static_cast<int>(blockIdx.x) * kBN;
  if (threadIdx.x == 0) {
    for (int s = 0; s < p.stages; ++s) {
      mbarrier_init(&full[s], 1);
      mbarrier_init(&empty[s], 4);
    }
    fence_barrier_init();
  }
  __syncthreads();

  if (warp == 4) {  // producer
    if (lane == 0 && p.fault != 2) {
      for (int kt = 0; kt < k_tiles; ++kt) {
        const int s = kt % p.stages, use = kt / p.stages;
        if (use > 0) mbarrier_wait(&empty[s], (use - 1) & 1);
        unsigned char* stage = smem + s * kStageBytes;
        mbarrier_arrive_expect_tx(&full[s], kStageBytes);
        tma_load_2d(stage, &tma_a, kt * kBK, m0, &full[s]);
        tma_load_2d(stage + kABytes, &tma_b, kt * kBK, n0, &full[s]);
      }
    }
    return;
  }

  float d[64];
  MOE_UNROLL for (int i = 0; i < 64; ++i) d[i] = 0.f;
  for (int kt = 0; kt < k_tiles; ++kt) {
    const int s = kt % p.stages, use = kt / p.stages;
    if (p.fault != 1) mbarrier_wait(&full[s], use & 1);
    const unsigned char* stage = smem + s * kStageBytes;
    wgmma_fence();
    MOE_UNROLL for (int ks = 0; ks < kBK / 16; ++ks) {
      const uint64_t da = wgmma_desc(stage + ks * 32, 16, 1024, true);
      const uint64_t db = wgmma_desc(stage + kABytes + ks * 32, 16, 1024, true);
      wgmma_m64n128k16<__nv_bfloat16>(d, da, db, kt > 0 || ks > 0);
    }
    wgmma_commit();
    wgmma_wait<0>();
    if (lane == 0) mbarrier_arrive(&empty[s]);
  }
  const int g = lane / 4, t = lane % 4;
  MOE_UNROLL for (int j = 0; j < 16; ++j)
    MOE_UNROLL for (int half = 0; half < 2; ++half) {
      const int64_t row = m0 + 16 * warp + g + 8 * half, col = n0 + 8 * j + 2 * t;
      st_global(reinterpret_cast<float2*>(p.c + row * p.n + col),
                float2{d[4 * j + 2 * half], d[4 * j + 2 * half + 1]});
    }
}

cudaError_t launch_wgmma_gemm(const WgmmaGemmParams& p, cudaStream_t stream) {
  using namespace wgmma_gemm;
  if (p.m % kBM || p.n % kBN || p.k % kBK || p.stages < 1 || p.stages > kMaxStages)
    return cudaErrorInvalidValue;
  if (p.m == 0 || p.n == 0) return cudaSuccess;
  TmaDescriptor ta, tb;
  const uint64_t dims_a[2] = {static_cast<uint64_t>(p.k), static_cast<uint64_t>(p.m)};
  const uint64_t dims_b[2] = {static_cast<uint64_t>(p.k), static_cast<uint64_t>(p.n)};
  const uint64_t pitch[1] = {static_cast<uint64_t>(p.k) * 2};
  const uint32_t box_a[2] = {kBK, kBM}, box_b[2] = {kBK, kBN};
  if (!make_tma_descriptor(&ta, p.a, 2, 2, dims_a, pitch, box_a, TmaSwizzle::k128B) ||
      !make_tma_descriptor(&tb, p.b, 2, 2, dims_b, pitch, box_b, TmaSwizzle::k128B))
    return cudaErrorInvalidValue;
  const size_t smem = smem_bytes(p.stages);
  const cudaError_t err = allow_dynamic_smem(wgmma_gemm_kernel, smem);
  if (err != cudaSuccess) return err;
  const dim3 grid(static_cast<unsigned>(p.n / kBN), static_cast<unsigned>(p.m / kBM));
  return launch_kernel("wgmma_gemm_kernel", wgmma_gemm_kernel, grid, dim3(kThreads), smem, stream,
                       ta, tb, p);
}

}  // namespace moe_ext::MOE_KERNEL_NS
