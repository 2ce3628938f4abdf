// grouped_gemm_sm90_kernel: the bf16/fp16 grouped GEMM on Hopper (sm_90a): TMA + wgmma,
// warp-specialized and persistent; also moe_mlp's first GEMM (x gathered through the sorted
// order, SwiGLU/GeGLU epilogue) and second (routing-weight row scale).
//
// Why: on H100 the mma.sync path (tensor_core.cuh) cannot pass ~70 % of peak; wgmma reads both
// operands straight from shared memory (no ldmatrix, no register staging), and the copy engine
// moves tiles without occupying threads.
//
// Structure (384 threads, one CTA per SM, persistent over the same TileScheduler as the Ampere
// kernel -- each warp walks the identical tile sequence, so the roles never exchange indices):
//   * warpgroup 0 = producer: setmaxnreg.dec to 40 registers (72 when gathering: 128 x 72 + 256 x
//     216 = 63 K of the 64 K register file; ptxas spills the gather at 56); thread 0 waits for a
//     free stage (empty[s]), arms full[s] with the stage's TMA bytes and issues the tile loads: A
//     box 64x128 from a 2-D map over a[M, K] (3-D [G, M, K] for the batched form), B as two 64x64
//     boxes from a 3-D map over b viewed [G, N, K] (the HF [E, N, K] weights read in place) -- rows
//     n0.. and n0 + 64.., or, gated, the gate rows n0.. and the up rows n + n0.. of the
//     concatenated [gate; up] weight;
//   * kGather (moe_mlp): TMA cannot gather rows, so all 128 producer threads load A with 16-byte
//     cp.async, row r of the tile from x[order[row] / top_k] (each thread owns 8 rows, one 16-byte
//     chunk column; 8 lanes cover one row's 128 bytes), writing the same 128-byte-swizzled layout
//     TMA would. A thread signals full[s] only when its copies have landed: it keeps kGatherLag
//     cp.async groups in flight (and drains them at the end of each tile), then wait_group,
//     fence.proxy.async (its generic-proxy writes become visible to wgmma's async-proxy reads)
//     and mbarrier.arrive, so full[s] completes on 128 arrivals + the TMA arrival and B's
//     transaction bytes;
//   * warpgroups 1, 2 = consumers: setmaxnreg.inc to 232 (216); each owns 64 of the tile's 128
//     rows, waits full[s], issues 4 wgmma.m64n128k16 (K step 64 = one 128-byte swizzle atom per
//     row, descriptors advanced 32 bytes per k16) and commits them as one group; it waits for
//     the previous step's group only (wgmma.wait_group 1: one step's MMAs overlap the next
//     barrier wait) and then releases that step's stage (one arrival per consumer warp on
//     empty[s]); the tile's last stage is released after wait_group 0, before the epilogue;
//   * epilogue per consumer warp: its 16x128 fp32 accumulators staged in its own shared region (no
//     CTA barrier, so the producer keeps prefetching the next tile meanwhile) and stored by
//     epilogue.cuh's store_tile (bias, activation or act(gate) * up -- gated tiles are 64 output
//     columns wide, gate in accumulator columns 0..63 and up in 64..127 --, row scale, dtype,
//     16-byte stores).
// Tiles: 128x128x64, 4 stages of 32 KB = 128 KB + 8 x 8.5 KB staging = 198 KB of shared memory
// (227 KB available): deep enough to cover HBM latency with one CTA per SM, and 128x128 keeps the
// skewed/small-expert tiles of MoE shapes from wasting a 256-wide tile.
// Ragged rows: an A box may run past its group into the next one's rows (or past M, zero-filled
// by TMA); those rows' results are simply not stored, so one tensor map serves every group, built
// on the host once per launch from shapes only (no host sync, CUDA-graph safe). Gathered rows
// past the group, and order entries outside [0, M) (never produced by sort_tokens), are zero
// rows: nothing is read out of bounds. The ragged-N and ragged-K forms, M-/N-major operands and
// operands TMA cannot address (unaligned pitch/base) use the Ampere kernel.
// Not modelled by the emulator: wgmma's asynchrony (see ptx_sm90.h); the kernel releases a stage
// only after wait_group has retired the wgmma group that read it, which is what makes that safe
// on hardware.
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
constexpr int kBHalf = BN / 2;            // B rows per TMA box (a gated tile's gate / up half)
constexpr int kProducerThreads = 128;
constexpr int kGatherRows = BM * (BK / 8) / kProducerThreads;  // A rows per gathering thread
constexpr int kGatherLag = kStages - 2;   // cp.async groups a gathering thread keeps in flight
using WarpStaging = EpilogueStaging<16, BN>;
constexpr size_t kSmemBytes =
    1024 + size_t{kStages} * kStageBytes + 8 * WarpStaging::kBytes + 2 * kStages * 8;
static_assert(kGatherLag < kStages, "a producer must signal stage it - lag before reusing it");
}  // namespace sm90

template <typename T, bool kGather, bool kGated>
__global__ void __launch_bounds__(sm90::kThreads, 1)
    grouped_gemm_sm90_kernel(const MOE_GRID_CONSTANT TmaDescriptor tma_a,
                             const MOE_GRID_CONSTANT TmaDescriptor tma_b, GroupedGemmParams p) {
  using namespace sm90;
  constexpr int kTileN = kGated ? BN / 2 : BN;  // output columns per tile
  static_assert(!kGated || kGather, "gated tiles exist for moe_mlp's gathered first GEMM");
  MOE_SHARED_DYNAMIC(unsigned char, smem_raw);
  unsigned char* smem = smem_raw + (1024 - shared_address(smem_raw) % 1024) % 1024;
  float* staging = reinterpret_cast<float*>(smem + kStages * kStageBytes);
  uint64_t* full = reinterpret_cast<uint64_t*>(smem + kStages * kStageBytes + 8 * WarpStaging::kBytes);
  uint64_t* empty = full + kStages;
  const int warp = static_cast<int>(threadIdx.x) / 32, lane = static_cast<int>(threadIdx.x) % 32;
  const bool batched = p.form == GroupedGemmForm::kBatched;
  if (threadIdx.x == 0) {
    for (int s = 0; s < kStages; ++s) {
      mbarrier_init(&full[s], kGather ? 1 + kProducerThreads : 1);
      mbarrier_init(&empty[s], 8);  // one arrival per consumer warp
    }
    fence_barrier_init();
  }
  __syncthreads();

  if (warp < 4) {  // ------------------------------------------------------------- producer
    setmaxnreg_dec<kGather ? 72 : 40>();
    if (!kGather && warp != 0) return;
    const int ptid = static_cast<int>(threadIdx.x);  // 0..127
    TileScheduler<BM, kTileN> scheduler(p);
    TileCoord tc;
    int it = 0;  // k steps issued so far (all tiles): stage it % kStages, use it / kStages
    int signaled = 0;  // kGather: k steps this thread has reported landed on full[]
    for (int tile = static_cast<int>(blockIdx.x); scheduler.find(tile, tc); tile += gridDim.x) {
      const GroupProblem q = group_problem(p, tc.problem);
      const int k_tiles = static_cast<int>((q.k + BK - 1) / BK);
      const int64_t m0 = int64_t{tc.tile_m} * BM;
      const int a_row = static_cast<int>((batched ? 0 : q.start) + m0);
      const int n0 = tc.tile_n * kTileN;
      const int b_up = kGated ? static_cast<int>(p.n) + n0 : n0 + kBHalf;
      int32_t src_row[kGatherRows];  // kGather: x rows of this thread's tile rows, -1: zero row
      if constexpr (kGather) {
        MOE_UNROLL for (int j = 0; j < kGatherRows; ++j) {
          const int r = ptid / 8 + 16 * j;
          const int32_t src = m0 + r < q.m ? ld_global_nc(p.a_gather + q.start + m0 + r) : -1;
          src_row[j] = src >= 0 && src < p.m ? src / p.a_gather_div : -1;
        }
      }
      for (int kt = 0; kt < k_tiles; ++kt, ++it) {
        const int s = it % kStages, use = it / kStages;
        unsigned char* sa = smem + s * kStageBytes;
        unsigned char* sb = sa + kABytes;
        if (kGather || lane == 0) {
          if (use > 0) mbarrier_wait(&empty[s], (use - 1) & 1);
        }
        if (ptid == 0) {
          mbarrier_arrive_expect_tx(&full[s], kGather ? kBBytes : kStageBytes);
          if constexpr (!kGather) {
            if (batched) tma_load_3d(sa, &tma_a, kt * BK, a_row, tc.problem, &full[s]);
            else tma_load_2d(sa, &tma_a, kt * BK, a_row, &full[s]);
          }
          tma_load_3d(sb, &tma_b, kt * BK, n0, tc.problem, &full[s]);
          tma_load_3d(sb + kBBytes / 2, &tma_b, kt * BK, b_up, tc.problem, &full[s]);
        }
        if constexpr (kGather) {
          const int chunk = ptid % 8;
          const int64_t k0 = int64_t{kt} * BK + chunk * 8;
          const int64_t left = q.k - k0;
          const int bytes = left >= 8 ? 16 : (left > 0 ? static_cast<int>(left) * 2 : 0);
          MOE_UNROLL for (int j = 0; j < kGatherRows; ++j) {
            const int r = ptid / 8 + 16 * j;
            const bool live = src_row[j] >= 0 && bytes > 0;
            const char* src = static_cast<const char*>(p.a) +
                              (live ? (int64_t{src_row[j]} * p.a_stride_m + k0) * 2 : 0);
            cp_async<16>(sa + r * 128 + ((chunk ^ (r & 7)) << 4), src, live ? bytes : 0);
          }
          cp_async_commit();
          if (it + 1 - signaled > kGatherLag) {  // step it - lag has landed: hand it over
            cp_async_wait<kGatherLag>();
            fence_proxy_async_shared();
            mbarrier_arrive(&full[signaled++ % kStages]);
          }
        } else {
          __syncwarp();
        }
      }
      if constexpr (kGather) {  // the tile's last steps: now, not after the next tile's loads
        cp_async_wait<0>();
        fence_proxy_async_shared();
        while (signaled < it) mbarrier_arrive(&full[signaled++ % kStages]);
      }
    }
    return;
  }

  // --------------------------------------------------------------------------------- consumers
  setmaxnreg_inc<kGather ? 216 : 232>();
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
      // keep this step's wgmma group in flight while waiting for the next stage; the previous
      // step's group has now finished reading its stage, which is released
      wgmma_wait<1>();
      if (kt > 0 && lane == 0) mbarrier_arrive(&empty[(it - 1) % kStages]);
    }
    wgmma_wait<0>();  // the accumulators are read below; the last stage is free
    if (k_tiles > 0 && lane == 0) mbarrier_arrive(&empty[(it - 1) % kStages]);
    const int g = lane / 4, t = lane % 4;
    MOE_UNROLL for (int j = 0; j < 16; ++j)
      MOE_UNROLL for (int half = 0; half < 2; ++half)
        st_shared(reinterpret_cast<float2*>(staged + WarpStaging::index(g + 8 * half, 8 * j + 2 * t)),
                  float2{d[4 * j + 2 * half], d[4 * j + 2 * half + 1]});
    __syncwarp();
    const int64_t m0 = int64_t{tc.tile_m} * BM + wg_rows + 16 * (consumer_warp % 4);
    store_tile<16, BN, 32, kGated>(staged, p, q, m0, int64_t{tc.tile_n} * kTileN, lane);
    __syncwarp();  // the next tile's staging writes come after every lane's reads
  }
}

namespace grouped_gemm_detail {

// Whether TMA can address an operand: 16-byte aligned base and row pitches.
inline bool tma_addressable(const void* base, int64_t pitch_elems, int64_t group_elems) {
  return reinterpret_cast<uintptr_t>(base) % 16 == 0 && (pitch_elems * 2) % 16 == 0 &&
         (group_elems * 2) % 16 == 0;
}

template <typename T, bool kGather, bool kGated>
cudaError_t launch_sm90_typed(const GroupedGemmParams& p, cudaStream_t stream) {
  using namespace sm90;
  const bool batched = p.form == GroupedGemmForm::kBatched;
  TmaDescriptor ta, tb;
  const uint64_t groups = static_cast<uint64_t>(p.num_groups);
  const uint64_t a_dims[3] = {static_cast<uint64_t>(p.k), static_cast<uint64_t>(p.m), groups};
  const uint64_t a_strides[2] = {static_cast<uint64_t>(p.a_stride_m) * 2,
                                 static_cast<uint64_t>(p.a_stride_g) * 2};
  const uint32_t a_box[3] = {BK, BM, 1};
  // gated: b holds 2n rows per group, [gate; up]
  const uint64_t b_dims[3] = {static_cast<uint64_t>(p.k), static_cast<uint64_t>(kGated ? 2 * p.n : p.n),
                              groups};
  const uint64_t b_strides[2] = {static_cast<uint64_t>(p.b_stride_n) * 2,
                                 static_cast<uint64_t>(p.b_stride_g) * 2};
  const uint32_t b_box[3] = {BK, kBHalf, 1};
  if (!make_tma_descriptor(&tb, p.b, 2, 3, b_dims, b_strides, b_box, TmaSwizzle::k128B))
    return cudaErrorNotSupported;
  if (kGather) {
    ta = tb;  // unused: A is gathered with cp.async
  } else if (!make_tma_descriptor(&ta, p.a, 2, batched ? 3 : 2, a_dims, a_strides, a_box,
                                  TmaSwizzle::k128B)) {
    return cudaErrorNotSupported;
  }
  return launch_persistent("grouped_gemm_sm90_kernel", grouped_gemm_sm90_kernel<T, kGather, kGated>,
                           kThreads, kSmemBytes, max_tiles(p, BM, kGated ? BN / 2 : BN), stream, ta,
                           tb, p);
}

template <typename T>
cudaError_t launch_sm90_variant(const GroupedGemmParams& p, cudaStream_t stream) {
  if (p.a_gather == nullptr) return launch_sm90_typed<T, false, false>(p, stream);
  return p.gated ? launch_sm90_typed<T, true, true>(p, stream)
                 : launch_sm90_typed<T, true, false>(p, stream);
}

}  // namespace grouped_gemm_detail

// The Hopper path, or cudaErrorNotSupported when the problem needs the Ampere kernel.
cudaError_t launch_grouped_gemm_sm90(const GroupedGemmParams& p, cudaStream_t stream) {
  using namespace grouped_gemm_detail;
  const bool form_ok = p.form == GroupedGemmForm::kRaggedM || p.form == GroupedGemmForm::kBatched;
  const bool type_ok = p.in_type == GemmElem::kBF16 || p.in_type == GemmElem::kF16;
  const bool gather = p.a_gather != nullptr;
  if (!form_ok || !type_ok || !p.a_k_major || !p.b_k_major || (p.gated && !gather) ||
      (gather && p.a_gather_div <= 0) || p.k <= 0 || p.num_groups <= 0 || p.m > INT32_MAX ||
      p.n > INT32_MAX / 2 || p.k > INT32_MAX ||
      // also what the gathered A's 16-byte cp.async needs (aligned base and row pitch)
      !tma_addressable(p.a, p.a_stride_m, p.form == GroupedGemmForm::kBatched ? p.a_stride_g : 0) ||
      !tma_addressable(p.b, p.b_stride_n, p.b_stride_g))
    return cudaErrorNotSupported;
  return p.in_type == GemmElem::kBF16 ? launch_sm90_variant<__nv_bfloat16>(p, stream)
                                      : launch_sm90_variant<__half>(p, stream);
}

}  // namespace moe_ext::MOE_KERNEL_NS
