// wgmma_gemm_kernel: C[M,N] (fp32) = A[M,K] @ B[N,K]^T on Hopper's asynchronous pipeline: TMA
// tile loads into 128-byte-swizzled shared memory completing on mbarriers, a producer warp and
// one consumer warpgroup issuing wgmma.m64n128k16 (or m64n256k16: block_n = 256) from
// shared-memory descriptors.
//
// The test vehicle of the sm_90 PTX layer (common/ptx_sm90.h) -- tests/test_emu_hopper.py runs it
// on the emulator against torch, and with planted faults (a skipped barrier wait, a producer
// that never loads) that the emulator must report -- and the skeleton the Hopper grouped GEMM
// (issue 10) grows from:
//   * CTA tile 64 x BN (BN = 128 or 256), K step 64 (one 128-byte swizzle atom per row),
//     `stages` buffers;
//   * 160 threads: warps 0-3 = consumer warpgroup, warp 4 = producer (lane 0 issues TMA);
//   * full[s] (1 arrival + the stage's bytes) and empty[s] (4 arrivals, one per consumer warp)
//     mbarriers; use u of stage s waits full[s] parity u & 1 and empty[s] parity (u - 1) & 1;
//   * per K step, 4 wgmma (k16 each, descriptors advanced by 32 bytes inside the atom),
//     committed and waited before the stage is released;
//   * epilogue: st.global from the fragments, or (tma_store) each warp's 16 rows in BN / 64
//     64-column parts through one 4 KB staging buffer (two 128-byte-swizzled boxes of 16 x 32
//     fp32), stored with TMA; each part waits for the previous store's shared reads.
//   * cluster_m = 2: CTA pairs along M (a 2-CTA cluster) share their B tile -- each CTA's
//     producer loads its own A box and half of B, multicast into both CTAs' stage (the peer's half
//     completes on the same-offset full[s] barrier); a stage is free again only when both CTAs'
//     consumers are done with it, so empty[s] takes 8 arrivals (4 local warps, 4 of the peer by
//     remote arrive); a cluster barrier after the barrier inits and one before exit order every
//     remote access. Global bytes per FLOP: (64 + BN / 2) / (64 BN) instead of (64 + BN) / (64 BN).
//   * fp8 (kFp8): e4m3 operands, the same bytes per stage (a 128-byte row is 128 elements, K step
//     128), 4 wgmma.m64n128k32.e4m3 per step at the same 32-byte descriptor advance.
// Preconditions (launcher): M % 64 == 0 (M % 128 with cluster_m 2), N % BN == 0, K % 64 == 0
// (K % 128 for fp8).
#pragma once

#include "../../common/launch.h"
#include "../../common/memory.h"
#include "../../common/ptx_sm90.h"
#include "../../common/shared.h"
#include "../../common/swizzle.h"
#include "wgmma_gemm.h"

namespace moe_ext::MOE_KERNEL_NS {

namespace wgmma_gemm {
constexpr int kBM = 64, kRowBytes = 128, kThreads = 160;  // a stage row: one 128-byte atom
constexpr int kABytes = kBM * kRowBytes;
constexpr int kMaxStages = 4;
constexpr int kStagingBytes = 4096;  // per consumer warp: 16 rows x 64 fp32 columns
template <int BN>
constexpr int stage_bytes() {
  return kABytes + BN * kRowBytes;
}
// 1024 bytes of alignment slack + stages + 4 warp stagings + 2 mbarriers per stage
template <int BN>
constexpr size_t smem_bytes(int stages) {
  return 1024 + stages * stage_bytes<BN>() + 4 * kStagingBytes + 16 * stages;
}
}  // namespace wgmma_gemm

template <int kBN, bool kFp8 = false>
__global__ void __launch_bounds__(wgmma_gemm::kThreads, 1)
    wgmma_gemm_kernel(const MOE_GRID_CONSTANT TmaDescriptor tma_a,
                      const MOE_GRID_CONSTANT TmaDescriptor tma_b,
                      const MOE_GRID_CONSTANT TmaDescriptor tma_c, WgmmaGemmParams p) {
  using namespace wgmma_gemm;
  constexpr int kStageBytes = stage_bytes<kBN>();
  constexpr int kBK = kFp8 ? kRowBytes : kRowBytes / 2;  // elements of K per stage
  MOE_SHARED_DYNAMIC(unsigned char, smem_raw);
  unsigned char* smem = smem_raw + (1024 - shared_address(smem_raw) % 1024) % 1024;
  uint64_t* full = reinterpret_cast<uint64_t*>(smem + p.stages * kStageBytes + 4 * kStagingBytes);
  uint64_t* empty = full + p.stages;
  const int warp = static_cast<int>(threadIdx.x) / 32, lane = static_cast<int>(threadIdx.x) % 32;
  const int k_tiles = static_cast<int>(p.k / kBK);
  const int m0 = static_cast<int>(blockIdx.y) * kBM, n0 = static_cast<int>(blockIdx.x) * kBN;
  const bool pair = p.cluster_m == 2;
  const uint32_t rank = pair ? cluster_ctarank() : 0, peer = rank ^ 1;
  if (threadIdx.x == 0) {
    for (int s = 0; s < p.stages; ++s) {
      mbarrier_init(&full[s], 1);
      mbarrier_init(&empty[s], pair ? 8 : 4);
    }
    fence_barrier_init();
  }
  if (pair)
    cluster_sync();  // the peer's barriers are initialised before anything of ours reaches them
  else
    __syncthreads();

  if (warp == 4) {  // producer
    if (lane == 0 && p.fault != 2) {
      for (int kt = 0; kt < k_tiles; ++kt) {
        const int s = kt % p.stages, use = kt / p.stages;
        if (use > 0) mbarrier_wait(&empty[s], (use - 1) & 1, kWaitTestProducerEmpty, p.wait_report);
        unsigned char* stage = smem + s * kStageBytes;
        mbarrier_arrive_expect_tx(&full[s], kStageBytes);  // (the peer's half of B included)
        tma_load_2d(stage, &tma_a, kt * kBK, m0, &full[s]);
        if (pair) {
          constexpr int kHalf = kBN / 2;
          tma_load_2d_multicast(stage + kABytes + rank * kHalf * kRowBytes, &tma_b, kt * kBK,
                                n0 + static_cast<int>(rank) * kHalf, &full[s], 0x3);
        } else {
          tma_load_2d(stage + kABytes, &tma_b, kt * kBK, n0, &full[s]);
        }
      }
    }
    if (pair) cluster_sync();  // (the consumers' exit barrier)
    return;
  }

  float d[kBN / 2];
  MOE_UNROLL for (int i = 0; i < kBN / 2; ++i) d[i] = 0.f;
  for (int kt = 0; kt < k_tiles; ++kt) {
    const int s = kt % p.stages, use = kt / p.stages;
    if (p.fault != 1) mbarrier_wait(&full[s], use & 1, kWaitTestConsumerFull, p.wait_report);
    const unsigned char* stage = smem + s * kStageBytes;
    wgmma_fence();
    MOE_UNROLL for (int ks = 0; ks < 4; ++ks) {  // 32 bytes of K per instruction
      const uint64_t da = wgmma_desc(stage + ks * 32, 16, 1024, true);
      const uint64_t db = wgmma_desc(stage + kABytes + ks * 32, 16, 1024, true);
      if constexpr (kFp8)
        wgmma_m64n128k32_e4m3(d, da, db, kt > 0 || ks > 0);
      else if constexpr (kBN == 256)
        wgmma_m64n256k16<__nv_bfloat16>(d, da, db, kt > 0 || ks > 0);
      else
        wgmma_m64n128k16<__nv_bfloat16>(d, da, db, kt > 0 || ks > 0);
    }
    wgmma_commit();
    wgmma_wait<0>();
    if (lane == 0) {
      mbarrier_arrive(&empty[s]);
      if (pair) mbarrier_arrive_cluster(mapa_shared(&empty[s], peer));  // the peer's B half too
    }
  }
  // no CTA of a pair exits while its peer may still arrive on its barriers or multicast into it
  if (pair) cluster_sync();
  const int g = lane / 4, t = lane % 4;
  if (p.tma_store) {
    unsigned char* staged = smem + p.stages * kStageBytes + warp * kStagingBytes;
    MOE_UNROLL for (int half = 0; half < kBN / 64; ++half) {
      if (half > 0 && p.fault != 3 && lane == 0) bulk_wait_group_read<0>();
      __syncwarp();
      MOE_UNROLL for (int j = 0; j < 8; ++j) MOE_UNROLL for (int h = 0; h < 2; ++h) {
        // column c of the half: box c / 32, 128-byte row g + 8h, 16-byte chunk swizzled by row
        const int c = 8 * j + 2 * t;
        const int off = swizzle128((c / 32) * 2048 + (g + 8 * h) * 128 + (c % 32) * 4);
        st_shared(reinterpret_cast<float2*>(staged + off),
                  float2{d[4 * (8 * half + j) + 2 * h], d[4 * (8 * half + j) + 2 * h + 1]});
      }
      fence_proxy_async_shared();
      if (p.fault != 5) __syncwarp();
      if (lane == 0) {
        for (int box = 0; box < 2; ++box)
          tma_store_2d(&tma_c, staged + box * 2048, n0 + 64 * half + 32 * box, m0 + 16 * warp);
        bulk_commit_group();
      }
    }
    if (p.fault != 4 && lane == 0) bulk_wait_group<0>();
    return;
  }
  MOE_UNROLL for (int j = 0; j < kBN / 8; ++j) MOE_UNROLL for (int half = 0; half < 2; ++half) {
    const int64_t row = m0 + 16 * warp + g + 8 * half, col = n0 + 8 * j + 2 * t;
    st_global(reinterpret_cast<float2*>(p.c + row * p.n + col),
              float2{d[4 * j + 2 * half], d[4 * j + 2 * half + 1]});
  }
}

template <int kBN, bool kFp8 = false>
cudaError_t launch_wgmma_gemm_bn(const WgmmaGemmParams& p, cudaStream_t stream) {
  using namespace wgmma_gemm;
  constexpr int kBK = kFp8 ? kRowBytes : kRowBytes / 2, kElem = kFp8 ? 1 : 2;
  if ((p.cluster_m != 1 && p.cluster_m != 2) || p.m % (kBM * p.cluster_m) || p.n % kBN ||
      p.k % kBK || p.stages < 1 || p.stages > kMaxStages)
    return cudaErrorInvalidValue;
  if (p.m == 0 || p.n == 0) return cudaSuccess;
  TmaDescriptor ta, tb, tc;
  const uint64_t dims_a[2] = {static_cast<uint64_t>(p.k), static_cast<uint64_t>(p.m)};
  const uint64_t dims_b[2] = {static_cast<uint64_t>(p.k), static_cast<uint64_t>(p.n)};
  const uint64_t pitch[1] = {static_cast<uint64_t>(p.k) * kElem};
  const uint32_t box_a[2] = {kBK, kBM}, box_b[2] = {kBK, static_cast<uint32_t>(kBN / p.cluster_m)};
  const uint64_t dims_c[2] = {static_cast<uint64_t>(p.n), static_cast<uint64_t>(p.m)};
  const uint64_t pitch_c[1] = {static_cast<uint64_t>(p.n) * 4};
  const uint32_t box_c[2] = {32, 16};
  if (!make_tma_descriptor(&ta, p.a, kElem, 2, dims_a, pitch, box_a, TmaSwizzle::k128B) ||
      !make_tma_descriptor(&tb, p.b, kElem, 2, dims_b, pitch, box_b, TmaSwizzle::k128B) ||
      !make_tma_descriptor(&tc, p.c, 4, 2, dims_c, pitch_c, box_c, TmaSwizzle::k128B))
    return cudaErrorInvalidValue;
  const size_t smem = smem_bytes<kBN>(p.stages);
  auto* kernel = wgmma_gemm_kernel<kBN, kFp8>;
  const cudaError_t err = allow_dynamic_smem(kernel, smem);
  if (err != cudaSuccess) return err;
  const dim3 grid(static_cast<unsigned>(p.n / kBN), static_cast<unsigned>(p.m / kBM));
  WgmmaGemmParams q = p;
  q.wait_report = wait_timeout_report_buffer(stream);
  if (p.cluster_m == 2)
    return launch_kernel_cluster("wgmma_gemm_kernel", kernel, grid, dim3(kThreads), dim3(1, 2, 1),
                                 smem, stream, ta, tb, tc, q);
  return launch_kernel("wgmma_gemm_kernel", kernel, grid, dim3(kThreads), smem, stream, ta, tb, tc,
                       q);
}

cudaError_t launch_wgmma_gemm(const WgmmaGemmParams& p, cudaStream_t stream) {
  if (p.fp8)
    return p.block_n == 128 ? launch_wgmma_gemm_bn<128, true>(p, stream) : cudaErrorInvalidValue;
  if (p.block_n == 256) return launch_wgmma_gemm_bn<256>(p, stream);
  if (p.block_n == 128) return launch_wgmma_gemm_bn<128>(p, stream);
  return cudaErrorInvalidValue;
}

}  // namespace moe_ext::MOE_KERNEL_NS
