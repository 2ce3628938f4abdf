// grouped_gemm_sm90_kernel: the bf16/fp16 grouped GEMM on Hopper (sm_90a): TMA + wgmma,
// warp-specialized and persistent.
//
// Why: on H100 the mma.sync path (tensor_core.cuh) cannot pass ~70 % of peak; wgmma reads both
// operands straight from shared memory (no ldmatrix, no register staging), and the copy engine
// moves tiles without occupying threads.
//
// Structure (384 threads, one CTA per SM, persistent over the same TileScheduler as the Ampere
// kernel -- each warp walks the identical tile sequence, so the roles never exchange indices):
//   * warpgroup 0 = producer: setmaxnreg.dec to 40 registers; lane 0 of warp 0 waits for a free
//     stage (empty[s]), arms full[s] with the stage's bytes and issues two TMA tile loads (A box
//     64x128 from a 2-D map over a[M, K] -- 3-D [G, M, K] for the batched form; B box 64x128 from
//     a 3-D map over b viewed [G, N, K], i.e. the HF [E, N, K] weights read in place);
//   * warpgroups 1, 2 = consumers: setmaxnreg.inc to 232; each owns 64 of the tile's 128 rows,
//     waits full[s], issues 4 wgmma.m64n128k16 (K step 64 = one 128-byte swizzle atom per row,
//     descriptors advanced 32 bytes per k16), waits for them and releases the stage (one arrival
//     per consumer warp on empty[s]);
//   * epilogue per consumer warp: its 16x128 fp32 accumulators staged in its own shared region
//     (no CTA barrier, so the producer keeps prefetching the next tile meanwhile) and stored by
//     epilogue.cuh's store_tile (bias, activation, row scale, dtype, 16-byte stores).
// Tiles: 128x128x64, 4 stages of 32 KB = 128 KB + 8 x 8.5 KB staging = 198 KB of shared memory
// (227 KB available): deep enough to cover HBM latency with one CTA per SM, and 128x128 keeps the
// skewed/small-expert tiles of MoE shapes from wasting a 256-wide tile.
// Ragged rows: an A box may run past its group into the next one's rows (or past M, zero-filled
// by TMA); those rows' results are simply not stored, so one tensor map serves every group, built
// on the host once per launch from shapes only (no host sync, CUDA-graph safe). The ragged-N and
// ragged-K forms, M-/N-major operands, moe_mlp's first GEMM (gathered A, gated epilogue; its
// second GEMM runs here) and operands TMA cannot address (unaligned pitch/base) use the Ampere
// kernel.
// Not modelled by the emulator: wgmma's asynchrony (see ptx_sm90.h); the kernel waits for its
// wgmma groups before releasing a stage, which is what makes that safe on hardware.
#pragma once

#include "../../common/launch.h"
#include "../../common/memory.h"
#include "../../common/ptx_sm90.h"
#include "../../common/shared.h"
#include "epilogue.cuh"
#include "grouped_gemm.h"
#include "persistent.cuh"
#include "scheduler.cuh"

namespace moe_ext::MOE_KERNEL_NS {

namespace sm90 {
constexpr int BM = 128, BN = 128, BK = 64, kStages = 4, kThreads = 384;
constexpr int kABytes = BM * BK * 2, kBBytes = BN * BK * 2, kStageBytes = kABytes + kBBytes;
using WarpStaging = EpilogueStaging<16, BN>;
constexpr size_t kSmemBytes =
    1024 + size_t{kStages} * kStageBytes + 8 * WarpStaging::kBytes + 2 * kStages * 8;
}  // namespace sm90

template <typename T>
__global__ void __launch_bounds__(sm90::kThreads, 1)
    grouped_gemm_sm90_kernel(const MOE_GRID_CONSTANT TmaDescriptor tma_a,
                             const MOE_GRID_CONSTANT TmaDescriptor tma_b, GroupedGemmParams p) {
  using namespace sm90;
  constexpr int kTileN = BN;
  MOE_SHARED_DYNAMIC(unsigned char, smem_raw);
  unsigned char* smem = smem_raw + (1024 - shared_address(smem_raw) % 1024) % 1024;
  float* staging = reinterpret_cast<float*>(smem + kStages * kStageBytes);
  uint64_t* full = reinterpret_cast<uint64_t*>(smem + kStages * kStageBytes + 8 * WarpStaging::kBytes);
  uint64_t* empty = full + kStages;
  const int warp = static_cast<int>(threadIdx.x) / 32, lane = static_cast<int>(threadIdx.x) % 32;
  const bool batched = p.form == GroupedGemmForm::kBatched;
  if (threadIdx.x == 0) {
    for (int s = 0; s < kStages; ++s) {
      mbarrier_init(&full[s], 1);
      mbarrier_init(&empty[s], 8);  // one arrival per consumer warp
    }
    fence_barrier_init();
  }
  __syncthreads();

  if (warp < 4) {  // ------------------------------------------------------------- producer
    setmaxnreg_dec<40>();
    if (warp != 0) return;
    TileScheduler<BM, kTileN> scheduler(p);
    TileCoord tc;
    int it = 0;  // k steps issued so far (all tiles): stage it % kStages, use it / kStages
    for (int tile = static_cast<int>(blockIdx.x); scheduler.find(tile, tc); tile += gridDim.x) {
      const GroupProblem q = group_problem(p, tc.problem);
      const int k_tiles = static_cast<int>((q.k + BK - 1) / BK);
      const int a_row = static_cast<int>((batched ? 0 : q.start) + int64_t{tc.tile_m} * BM);
      const int n0 = tc.tile_n * kTileN;
      for (int kt = 0; kt < k_tiles; ++kt, ++it) {
        const int s = it % kStages, use = it / kStages;
        if (lane == 0) {
          if (use > 0) mbarrier_wait(&empty[s], (use - 1) & 1);
          unsigned char* sa = smem + s * kStageBytes;
          unsigned char* sb = sa + kABytes;
          mbarrier_arrive_expect_tx(&full[s], kStageBytes);
          if (batched) tma_load_3d(sa, &tma_a, kt * BK, a_row, tc.problem, &full[s]);
          else tma_load_2d(sa, &tma_a, kt * BK, a_row, &full[s]);
          tma_load_3d(sb, &tma_b, kt * BK, n0, tc.problem, &full[s]);
        }
        __syncwarp();
      }
    }
    return;
  }

  // --------------------------------------------------------------------------------- consumers
  setmaxnreg_inc<232>();
  const int consumer_warp = warp - 4;          // 0..7
  const int wg_rows = (consumer_warp / 4) * 64;  // this warpgroup's rows of the tile
  float* staged = staging + consumer_warp * (WarpStaging::kBytes / 4);
  TileScheduler<BM, kTileN> scheduler(p);
  TileCoord tc;
  int it = 0;
  for (int tile = static_cast<int>(blockIdx.x); scheduler.find(tile, tc); tile += gridDim.x) {
    const GroupProblem q = group_problem(p, tc.problem);
    const int k_tiles = static_cast<int>((q.k + BK - 1) / BK);
    float d[64];
    MOE_UNROLL for (int i = 0; i < 64; ++i) d[i] = 0.f;
    for (int kt = 0; kt < k_tiles; ++kt, ++it) {
      const int s = it % kStages, use = it / kStages;
      mbarrier_wait(&full[s], use & 1);
      const unsigned char* sa = smem + s * kStageBytes + wg_rows * 128;
      const unsigned char* sb = smem + s * kStageBytes + kABytes;
      wgmma_fence();
      MOE_UNROLL for (int ks = 0; ks < BK / 16; ++ks) {
        wgmma_m64n128k16<T>(d, wgmma_desc(sa + ks * 32, 16, 1024, true),
                            wgmma_desc(sb + ks * 32, 16, 1024, true), kt > 0 || ks > 0);
      }
      wgmma_commit();
      wgmma_wait<0>();
      if (lane == 0) mbarrier_arrive(&empty[s]);
    }
    const int g = lane / 4, t = lane % 4;
    MOE_UNROLL for (int j = 0; j < 16; ++j)
      MOE_UNROLL for (int half = 0; half < 2; ++half)
        st_shared(reinterpret_cast<float2*>(staged + WarpStaging::index(g + 8 * half, 8 * j + 2 * t)),
                  float2{d[4 * j + 2 * half], d[4 * j + 2 * half + 1]});
    __syncwarp();
    const int64_t m0 = int64_t{tc.tile_m} * BM + wg_rows + 16 * (consumer_warp % 4);
    store_tile<16, BN, 32>(staged, p, q, m0, int64_t{tc.tile_n} * kTileN, lane);
    __syncwarp();  // the next tile's staging writes come after every lane's reads
  }
}

namespace grouped_gemm_detail {

// Whether TMA can address an operand: 16-byte aligned base and row pitches.
inline bool tma_addressable(const void* base, int64_t pitch_elems, int64_t group_elems) {
  return reinterpret_cast<uintptr_t>(base) % 16 == 0 && (pitch_elems * 2) % 16 == 0 &&
         (group_elems * 2) % 16 == 0;
}

template <typename T>
cudaError_t launch_sm90_typed(const GroupedGemmParams& p, cudaStream_t stream) {
  using namespace sm90;
  const bool batched = p.form == GroupedGemmForm::kBatched;
  TmaDescriptor ta, tb;
  const uint64_t groups = static_cast<uint64_t>(p.num_groups);
  const uint64_t a_dims[3] = {static_cast<uint64_t>(p.k), static_cast<uint64_t>(p.m), groups};
  const uint64_t a_strides[2] = {static_cast<uint64_t>(p.a_stride_m) * 2,
                                 static_cast<uint64_t>(p.a_stride_g) * 2};
  const uint32_t a_box[3] = {BK, BM, 1};
  const uint64_t b_dims[3] = {static_cast<uint64_t>(p.k), static_cast<uint64_t>(p.n), groups};
  const uint64_t b_strides[2] = {static_cast<uint64_t>(p.b_stride_n) * 2,
                                 static_cast<uint64_t>(p.b_stride_g) * 2};
  const uint32_t b_box[3] = {BK, BN, 1};
  if (!make_tma_descriptor(&ta, p.a, 2, batched ? 3 : 2, a_dims, a_strides, a_box, TmaSwizzle::k128B) ||
      !make_tma_descriptor(&tb, p.b, 2, 3, b_dims, b_strides, b_box, TmaSwizzle::k128B))
    return cudaErrorNotSupported;
  return launch_persistent("grouped_gemm_sm90_kernel", grouped_gemm_sm90_kernel<T>, kThreads,
                           kSmemBytes, max_tiles(p, BM, BN), stream, ta, tb, p);
}

}  // namespace grouped_gemm_detail

// The Hopper path, or cudaErrorNotSupported when the problem needs the Ampere kernel.
cudaError_t launch_grouped_gemm_sm90(const GroupedGemmParams& p, cudaStream_t stream) {
  using namespace grouped_gemm_detail;
  const bool form_ok = p.form == GroupedGemmForm::kRaggedM || p.form == GroupedGemmForm::kBatched;
  const bool type_ok = p.in_type == GemmElem::kBF16 || p.in_type == GemmElem::kF16;
  if (!form_ok || !type_ok || !p.a_k_major || !p.b_k_major || p.a_gather != nullptr || p.gated ||
      p.k <= 0 ||
      p.num_groups <= 0 || p.m > INT32_MAX || p.n > INT32_MAX / 2 || p.k > INT32_MAX ||
      !tma_addressable(p.a, p.a_stride_m, p.form == GroupedGemmForm::kBatched ? p.a_stride_g : 0) ||
      !tma_addressable(p.b, p.b_stride_n, p.b_stride_g))
    return cudaErrorNotSupported;
  return p.in_type == GemmElem::kBF16 ? launch_sm90_typed<__nv_bfloat16>(p, stream)
                                      : launch_sm90_typed<__half>(p, stream);
}

}  // namespace moe_ext::MOE_KERNEL_NS
