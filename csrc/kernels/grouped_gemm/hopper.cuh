// grouped_gemm_sm90_kernel: the bf16/fp16 grouped GEMM on Hopper (sm_90a): TMA + wgmma,
// warp-specialized and persistent; the forward (ragged-M / batched), both backward GEMMs (dA:
// ragged-M with an MN-major b; dB: ragged-K with MN-major a and b), and moe_mlp's first GEMM (x
// gathered through the sorted order, SwiGLU/GeGLU epilogue) and second (routing-weight row scale).
//
// Why: on H100 the mma.sync path (tensor_core.cuh) cannot pass ~70 % of peak; wgmma reads both
// operands straight from shared memory (no ldmatrix, no register staging), and the copy engine
// moves tiles in and out without occupying threads.
//
// Structure (384 threads, one CTA per SM, persistent over the same TileScheduler as the Ampere
// kernel -- each warp walks the identical tile sequence, so the roles never exchange indices):
//   * warpgroup 0 = producer: setmaxnreg.dec to 72 registers (128 x 72 + 256 x 216 = 63 K of the
//     64 K register file; ptxas spills the gather at 56), and the consumers inc to 216 (ptxas
//     compiles every role under the 168 registers of 384 threads: 0 spills); thread 0 waits for a
//     free stage (empty[s]), arms full[s] with the stage's TMA bytes and issues the tile loads,
//     all with the 128-byte swizzle: a K-major operand as boxes of 64 k x rows (A: one 64x128 box;
//     B: two 64x64 boxes -- rows n0.. and n0 + 64.., or, gated, the gate rows n0.. and the up rows
//     n + n0.. of the concatenated [gate; up] weight), an MN-major one as two boxes of 64
//     contiguous m (n) x 64 k rows. Maps: A 2-D over a (3-D [G, ...] batched), B 3-D over b
//     viewed [G, N, K] or [G, K, N] (the HF [E, N, K] weights read in place either way);
//   * ragged K (dB = aᵀ dC per group): a TMA box cannot stop at a group's last token, so a
//     prologue kernel (sm90_group_maps.cuh) writes each group's A and B maps, cut at the group's
//     end, into the workspace before this kernel runs; the TMA-issuing thread acquires a group's
//     pair (fence.proxy.tensormap acquire) when its tile sequence enters the group -- two fences
//     per group change, no map edits on the producer's path. The rows past the group then arrive
//     as TMA zero fill. No host sync, CUDA-graph safe;
//   * kGather (moe_mlp): TMA cannot gather rows, so all 128 producer threads load A with 16-byte
//     cp.async, row r of the tile from x[order[row] / top_k] (each thread owns 8 rows, one 16-byte
//     chunk column; 8 lanes cover one row's 128 bytes), writing the same 128-byte-swizzled layout
//     TMA would. A thread signals full[s] only when its copies have landed: it keeps kGatherLag
//     cp.async groups in flight (and drains them at the end of each tile), then wait_group,
//     fence.proxy.async (its generic-proxy writes become visible to wgmma's async-proxy reads)
//     and mbarrier.arrive, so full[s] completes on 128 arrivals + the TMA arrival and B's
//     transaction bytes;
//   * warpgroups 1, 2 = consumers (setmaxnreg.inc 216), PING-PONG: the CTA's tiles alternate
//     between them (warpgroup 1 takes its 1st, 3rd, ... tile, warpgroup 2 the 2nd, 4th, ...),
//     and each owns its whole 128 x 128 tile (two 64-row halves sharing B: 8 x
//     wgmma.m64n128k16 per 64-k step, a 128-float accumulator per thread). The mainloops take
//     turns through two mbarriers (turn[c]: warpgroup c may start; the other arrives once it has
//     issued its tile's last MMAs), so while one warpgroup runs its epilogue the other's MMAs
//     keep the tensor cores busy. Chosen over a dedicated epilogue warpgroup because handing a
//     128 x 128 fp32 accumulator over costs 64 KB of shared memory and a round trip per tile,
//     and over cooperative (both warpgroups on one tile) because there both stop issuing MMAs for
//     the same epilogue (bias/activation/row scale, the SiLU's exp and divide: ~11-20 % of the
//     tile time by the review's reading of the SASS). Per k step a warpgroup waits full[s],
//     issues its 8 MMAs as one group, waits for the previous step's group only
//     (wgmma.wait_group 1) and releases that stage (one arrival per warp on empty[s]); the
//     stages flow in the producer's order, the mainloops being serialised;
//   * epilogue per consumer warp (no CTA barrier, so the producer keeps prefetching): the warp's
//     32 rows of the tile as two 16-row halves (rows 16 w.. and 64 + 16 w..) through one
//     staging buffer. The routing weights of those rows (two dependent global loads) are loaded
//     at the tile's start, before the turn wait, into 32 shared floats per warp -- in flight
//     under the other warpgroup's MMAs, and no registers held across the mainloop (the
//     accumulator leaves none: the kernel compiles under the 168-register limit of 384 threads,
//     so the problem and the lane are also re-read after the mainloop). Then bias, activation or
//     act(gate) * up (gated tiles are 64 output columns wide,
//     gate in accumulator columns 0..63 and up in 64..127), row scale and the output dtype are
//     applied to the accumulator fragments in registers; each 16 x 128 half goes to the warp's
//     shared staging as 128-byte-swizzled boxes (conflict-free fragment writes) and one lane
//     stores them with TMA (cp.async.bulk.tensor, bulk_group), which clips at c's edges (N, and M
//     or a batch's rows). A ragged-M box that reaches past its group's last row (a group's last
//     < 16 rows, at most one box per warp and group) would overwrite the next group's rows, so
//     the warp stores that one with 16-byte st.global from the same staging instead of
//     rewriting a per-group map on the device (which would cost a full bulk wait plus a map
//     publish at every group change -- nearly every tile with many small experts). The next
//     half's staging writes wait for the store's shared reads (bulk wait_group.read). Outputs
//     TMA cannot address (unaligned pitch/base) take the fp32 staging + 16-byte st.global path
//     of epilogue.cuh (store_tile).
// Tiles: 128x128x64, 4 stages of 32 KB = 128 KB + 8 x 9 KB staging + 1 KB row scales = 202 KB of
// shared memory (227
// KB available): deep enough to cover HBM latency with one CTA per SM, and 128x128 keeps the
// skewed/small-expert tiles of MoE shapes from wasting a 256-wide tile.
// kCluster (MOE_EXT_GEMM_CONFIG=sm90_cluster, or the auto choice at >= 4 m-tiles per group):
// 2x2 clusters of these CTAs on a 2x2 block of tiles of one group, each loading half of its A
// and B tiles and multicasting them to the partner that shares them -- half the L2 bytes per
// FLOP, the ping-pong kept; the layout of every stage is unchanged (sm90_cluster.cuh). Ragged rows:
// an A box may run past its group into the next one's rows (or past M, zero-filled by TMA); those
// rows' results are not stored, so one A map serves every group, built on the host once per launch
// from shapes only. Gathered rows past the group, and order entries outside [0, M) (never produced
// by sort_tokens), are zero rows: nothing is read out of bounds. The ragged-N form, fp32, mixed
// (MN-major a, K-major b) operands and operands TMA cannot address use the Ampere kernel. Not
// modelled by the emulator: wgmma's asynchrony (see ptx_sm90.h; TMA stores are modelled as in
// flight until waited for); the kernel releases a stage only after wait_group has retired the
// wgmma group that read it, which is what makes that safe on hardware.
//
// Files (split as CUTLASS splits a collective): sm90_config.cuh (tile shape, stages, shared
// layout), sm90_cluster.cuh (the 2x2 cluster: tiles, multicast masks, releases),
// sm90_producer.cuh (a stage's TMA loads, the gathered-A cp.async copies and their
// full[] signalling), sm90_group_maps.cuh (the ragged-K prologue), sm90_mainloop.cuh (the
// consumer's wgmma k loop), sm90_epilogue.cuh (fragment epilogue, swizzled staging, st.global
// fallback), sm90_launch.cuh (problem checks, tensor-map encoding, launch); this file is the kernel
// that composes them: roles (produce, consume), barriers, the tile loop and the store. (Moving the
// loops into force-inlined functions kept the registers and the mainloop's HGMMA/DEPBAR/arrive
// sequence; ptxas scheduled a few integer instructions differently: one more BRA/BSSY pair per
// kernel, +-10 IMAD/LEA/ULEA.)
#pragma once

#include "../../common/launch.h"
#include "../../common/memory.h"
#include "../../common/ptx_sm90.h"
#include "../../common/shared.h"
#include "../../common/swizzle.h"
#include "../../common/warp.h"
#include "epilogue.cuh"
#include "grouped_gemm.h"
#include "persistent.cuh"
#include "scheduler.cuh"
#include "sm90_cluster.cuh"
#include "sm90_config.cuh"
#include "sm90_epilogue.cuh"
#include "sm90_group_maps.cuh"
#include "sm90_mainloop.cuh"
#include "sm90_producer.cuh"

namespace moe_ext::MOE_KERNEL_NS {

namespace sm90_detail {

// Warpgroup 0: the stage loads of every tile of this CTA (thread 0's TMA; all 128 threads'
// cp.async with kGather).
template <bool kAKMajor, bool kBKMajor, bool kGather, bool kGated, bool kCluster>
MOE_DEVICE MOE_FORCEINLINE void produce(unsigned char* smem, uint64_t* full, uint64_t* empty,
                                        const TmaDescriptor& tma_a, const TmaDescriptor& tma_b,
                                        const GroupedGemmParams& p) {
  using namespace sm90;
  constexpr int kTileN = kGated ? BN / 2 : BN;  // output columns per tile
  using Tiles = Sm90Tiles<kCluster, kTileN>;
  const bool ragged_k = p.form == GroupedGemmForm::kRaggedK;
  const bool ragged_m = p.form == GroupedGemmForm::kRaggedM;
  const int a_rank = p.form == GroupedGemmForm::kBatched ? 3 : 2, b_rank = ragged_k ? 2 : 3;
  const int ptid = static_cast<int>(threadIdx.x);  // 0..127
  const int lane = ptid % 32;
  Tiles tiles(p);
  TileCoord tc;
  int it = 0;        // k steps issued so far (all tiles): stage it % kStages, use it / kStages
  int signaled = 0;  // kGather: k steps this thread has reported landed on full[]
  const TmaDescriptor* map_a = &tma_a;  // ragged K: the current group's maps (prologue-built)
  const TmaDescriptor* map_b = &tma_b;
  for (int tile = Tiles::first(); tiles.find(tile, tc); tile += Tiles::stride()) {
    const GroupProblem q = group_problem(p, tc.problem);
    const int k_tiles = static_cast<int>((q.k + BK - 1) / BK);
    const int64_t m0 = int64_t{tc.tile_m} * BM;
    const int a_row = static_cast<int>((ragged_m ? q.start : 0) + m0);
    const int n0 = tc.tile_n * kTileN;
    const int b_up = kGated ? static_cast<int>(p.n) + n0 : n0 + kBHalf;
    const int k_base = ragged_k ? static_cast<int>(q.start) : 0;
    if (ragged_k && map_a != group_maps(p, tc.problem)) {
      map_a = group_maps(p, tc.problem), map_b = map_a + 1;
      if (ptid == 0) tensormap_acquire(map_a), tensormap_acquire(map_b);  // the TMA issuer
    }
    int32_t src_row[kGatherRows];  // kGather: x rows of this thread's tile rows, -1: zero row
    if constexpr (kGather) gather_sources(src_row, p, q, m0, ptid);
    for (int kt = 0; kt < k_tiles; ++kt, ++it) {
      const int s = it % kStages, use = it / kStages;
      unsigned char* sa = smem + s * kStageBytes;  // (BM, BK) of stage s
      if (kGather || lane == 0) {
        if (use > 0) mbarrier_wait(&empty[s], (use - 1) & 1, kWaitSm90ProducerEmpty, p.wait_report);
      }
      if (ptid == 0) {
        const int k = k_base + kt * BK;
        // (with kCluster this includes the partners' halves, multicast into this CTA)
        mbarrier_arrive_expect_tx(&full[s], kGather ? kBBytes : kStageBytes);
        load_stage<kAKMajor, kBKMajor, !kGather, kCluster>(sa, map_a, map_b, a_rank, b_rank, k,
                                                           a_row, n0, b_up, tc.problem, &full[s]);
      }
      if constexpr (kGather) {
        gather_stage(sa, src_row, p, q, kt, ptid);
        gather_signal<kGatherLag>(full, it + 1, signaled);
      } else {
        __syncwarp();
      }
    }
    // the tile's last steps: now, not after the next tile's loads
    if constexpr (kGather) gather_signal<0>(full, it, signaled);
  }
}

// Warpgroups 1 and 2: every other tile of this CTA each (ping-pong), mainloop and epilogue.
template <typename T, bool kAKMajor, bool kBKMajor, bool kGather, bool kGated, bool kCluster>
MOE_DEVICE MOE_FORCEINLINE void consume(unsigned char* smem, uint64_t* full, uint64_t* empty,
                                        uint64_t* turn, const TmaDescriptor& tma_c,
                                        const GroupedGemmParams& p, bool tma_store) {
  using namespace sm90;
  constexpr int kTileN = kGated ? BN / 2 : BN;  // output columns per tile
  using Tiles = Sm90Tiles<kCluster, kTileN>;
  const bool ragged_m = p.form == GroupedGemmForm::kRaggedM;
  const int warp = static_cast<int>(threadIdx.x) / 32, lane = static_cast<int>(threadIdx.x) % 32;
  const int consumer_warp = warp - 4;  // 0..7
  const int wg = consumer_warp / 4;    // this warpgroup takes the CTA's tiles wg, wg + 2, ...
  unsigned char* staged =
      smem + kStagingOffset + consumer_warp * kWarpStagingBytes;  // (kStoreRows, BN)
  float* scales = reinterpret_cast<float*>(smem + kScalesOffset) + 32 * consumer_warp;
  Tiles tiles(p);
  TileCoord tc;
  int it = 0;     // k steps of every tile so far (both warpgroups'): the stage ring position
  int local = 0;  // tiles of this CTA so far
  for (int tile = Tiles::first(); tiles.find(tile, tc); tile += Tiles::stride(), ++local) {
    const GroupProblem q = group_problem(p, tc.problem);
    const int k_tiles = static_cast<int>((q.k + BK - 1) / BK);
    if (local % 2 != wg) {  // the other warpgroup's tile
      it += k_tiles;
      continue;
    }
    if (p.row_scale != nullptr)  // loaded ahead
      stage_row_scales(scales, p, q, int64_t{tc.tile_m} * BM + 16 * (consumer_warp % 4), lane);
    float d[2][64];  // (128, BN): rows 64 h.. in d[h], wgmma_m64n128k16 layout
    MOE_UNROLL for (int h = 0; h < 2; ++h) MOE_UNROLL for (int i = 0; i < 64; ++i) d[h][i] = 0.f;
    // the other warpgroup has issued its previous tile's MMAs (its handoff): the mainloops
    // take turns, so one warpgroup's epilogue runs under the other's MMAs
    if (local > 0)
      mbarrier_wait(&turn[wg], ((local - 1) / 2) & 1, kWaitSm90ConsumerTurn, p.wait_report);
    tensor_core_turn_begin();  // (the emulator's overlap proxy; no instruction)
    it = mma_tile<T, kAKMajor, kBKMajor, kCluster>(d, smem, full, empty, &turn[1 - wg], it, k_tiles,
                                                   lane, p);
    tensor_core_turn_end();
    // the problem again (offs from L1) rather than held across the mainloop: the 128 x 128
    // accumulator leaves no registers to spare under the 168-register compile limit
    const GroupProblem qe = group_problem(p, tc.problem);
    const int el = lane_id();  // (not kept across the mainloop either)
    const int64_t m0 = int64_t{tc.tile_m} * BM + 16 * (consumer_warp % 4);  // + 64 h
    const int64_t n0 = int64_t{tc.tile_n} * kTileN;
    MOE_UNROLL for (int h = 0; h < 2; ++h) {
      const int64_t mh = m0 + 64 * h;
      if (mh >= qe.m) break;  // none of this warp's rows exist (nor the next half's)
      if (tma_store) {
        float scale[2];
        row_scales(scale, scales, p, h, el);
        if (el == 0) bulk_wait_group_read<0>();  // the previous store has read the staging
        __syncwarp();
        stage_output<kGated, kGather>(d[h], scale, staged, p, qe, n0, el);
        // the map clips at N and at c's last row: a ragged-M box reaching into the next group
        // (its last rows) goes out with st.global instead
        if (!ragged_m || qe.m - mh >= kStoreRows || qe.start + qe.m == p.m) {
          fence_proxy_async_shared();  // the staging writes -> the copy engine's reads
          __syncwarp();
          if (el == 0) {
            const int box_cols = kBoxRowBytes / gemm_elem_bytes(p.out_type);
            for (int c = 0; c < kTileN && n0 + c < qe.n; c += box_cols) {
              unsigned char* box = staged + (c / box_cols) * (kStoreRows * kBoxRowBytes);
              if (ragged_m)
                tma_store_2d(&tma_c, box, static_cast<int>(n0 + c),
                             static_cast<int>(qe.start + mh));
              else
                tma_store_3d(&tma_c, box, static_cast<int>(n0 + c), static_cast<int>(mh),
                             tc.problem);
            }
            bulk_commit_group();
          }
        } else {
          __syncwarp();
          store_staged_rows<kTileN>(staged, p, qe, mh, n0, el);
          __syncwarp();  // the next staging writes come after every lane's reads
        }
      } else {
        float* staged_f = reinterpret_cast<float*>(staged);
        const int g = el / 4, t = el % 4;
        MOE_UNROLL for (int j = 0; j < 16; ++j) MOE_UNROLL for (int half = 0; half < 2; ++half)
            st_shared(reinterpret_cast<float2*>(staged_f +
                                                WarpStaging::index(g + 8 * half, 8 * j + 2 * t)),
                      float2{d[h][4 * j + 2 * half], d[h][4 * j + 2 * half + 1]});
        __syncwarp();
        store_tile<16, BN, 32, kGated>(staged_f, p, qe, mh, n0, el);
        __syncwarp();  // the next staging writes come after every lane's reads
      }
    }
  }
  if (tma_store && lane == 0) bulk_wait_group<0>();  // the staging outlives the stores' reads
}

}  // namespace sm90_detail

template <typename T, bool kAKMajor, bool kBKMajor, bool kGather, bool kGated, bool kCluster>
__global__ void __launch_bounds__(sm90::kThreads, 1)
    grouped_gemm_sm90_kernel(const MOE_GRID_CONSTANT TmaDescriptor tma_a,
                             const MOE_GRID_CONSTANT TmaDescriptor tma_b,
                             const MOE_GRID_CONSTANT TmaDescriptor tma_c, GroupedGemmParams p,
                             bool tma_store) {
  using namespace sm90;
  using namespace sm90_detail;
  static_assert(!kGated || kGather, "gated tiles exist for moe_mlp's gathered first GEMM");
  static_assert(!kGather || (kAKMajor && kBKMajor), "the gather reads K-major x and weights");
  MOE_SHARED_DYNAMIC(unsigned char, smem_raw);
  unsigned char* smem = smem_raw + (1024 - shared_address(smem_raw) % 1024) % 1024;
  uint64_t* full = reinterpret_cast<uint64_t*>(smem + kBarrierOffset);  // (kStages)
  uint64_t* empty = full + kStages;                                     // (kStages)
  uint64_t* turn = empty + kStages;  // (2) consumer warpgroup c may start its next mainloop
  const int warp = static_cast<int>(threadIdx.x) / 32;
  if (threadIdx.x == 0) {
    for (int s = 0; s < kStages; ++s) {
      mbarrier_init(&full[s], kGather ? 1 + kProducerThreads : 1);
      mbarrier_init(&empty[s], kEmptyArrivals<kCluster>);
    }
    for (int c = 0; c < 2; ++c) mbarrier_init(&turn[c], 4);  // one arrival per handing-off warp
    fence_barrier_init();
  }
  if constexpr (kCluster)
    cluster_sync();  // the peers' barriers exist before any multicast or remote arrive
  else
    __syncthreads();

  if (warp < 4) {
    setmaxnreg_dec<72>();
    if (kGather || warp == 0)
      produce<kAKMajor, kBKMajor, kGather, kGated, kCluster>(smem, full, empty, tma_a, tma_b, p);
  } else {
    setmaxnreg_inc<216>();
    consume<T, kAKMajor, kBKMajor, kGather, kGated, kCluster>(smem, full, empty, turn, tma_c, p,
                                                              tma_store);
  }
  // no CTA of a cluster exits while a peer may still arrive on its barriers
  if constexpr (kCluster) cluster_sync();
}

}  // namespace moe_ext::MOE_KERNEL_NS

#include "sm90_launch.cuh"  // launch_grouped_gemm_sm90 (names the kernel above)
