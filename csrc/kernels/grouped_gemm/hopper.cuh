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
//     64 K register file; ptxas spills the gather at 56, the ragged-K map rewrites at 40), and
//     the consumers inc to 216 (they need no more: 0 spills); thread 0 waits for a
//     free stage (empty[s]), arms full[s] with the stage's TMA bytes and issues the tile loads,
//     all with the 128-byte swizzle: a K-major operand as boxes of 64 k x rows (A: one 64x128 box;
//     B: two 64x64 boxes -- rows n0.. and n0 + 64.., or, gated, the gate rows n0.. and the up rows
//     n + n0.. of the concatenated [gate; up] weight), an MN-major one as two boxes of 64
//     contiguous m (n) x 64 k rows. Maps: A 2-D over a (3-D [G, ...] batched), B 3-D over b
//     viewed [G, N, K] or [G, K, N] (the HF [E, N, K] weights read in place either way);
//   * ragged K (dB = aᵀ dC per group): a TMA box cannot stop at a group's last token, so the
//     producer gives each pipeline stage its own pair of tensor maps in global memory (per-CTA
//     workspace) whose token extent is the group's end, rewritten on the device when a stage
//     first serves a new group: tensormap.replace in a shared copy, tensormap.cp_fenceproxy to
//     the stage's slot (release), fence.proxy.tensormap acquire; the slot's previous load has
//     landed (its stage came back through empty[s]), so no load in flight reads a changing map.
//     The rows past the group then arrive as TMA zero fill. No host sync, CUDA-graph safe;
//   * kGather (moe_mlp): TMA cannot gather rows, so all 128 producer threads load A with 16-byte
//     cp.async, row r of the tile from x[order[row] / top_k] (each thread owns 8 rows, one 16-byte
//     chunk column; 8 lanes cover one row's 128 bytes), writing the same 128-byte-swizzled layout
//     TMA would. A thread signals full[s] only when its copies have landed: it keeps kGatherLag
//     cp.async groups in flight (and drains them at the end of each tile), then wait_group,
//     fence.proxy.async (its generic-proxy writes become visible to wgmma's async-proxy reads)
//     and mbarrier.arrive, so full[s] completes on 128 arrivals + the TMA arrival and B's
//     transaction bytes;
//   * warpgroups 1, 2 = consumers (setmaxnreg.inc 216): each owns 64 of the tile's 128
//     rows, waits full[s], issues 4 wgmma.m64n128k16 (K step 64 = one 128-byte swizzle atom;
//     K-major descriptors advance 32 bytes per k16, MN-major ones 16 k rows = 2 KB, with the
//     instruction's transpose bit) and commits them as one group; it waits for the previous
//     step's group only (wgmma.wait_group 1: one step's MMAs overlap the next barrier wait) and
//     then releases that step's stage (one arrival per consumer warp on empty[s]); the tile's
//     last stage is released after wait_group 0, before the epilogue;
//   * epilogue per consumer warp (no CTA barrier, so the producer keeps prefetching the next tile
//     meanwhile): bias, activation or act(gate) * up (gated tiles are 64 output columns wide,
//     gate in accumulator columns 0..63 and up in 64..127), row scale and the output dtype are
//     applied to the accumulator fragments in registers; the warp's 16 x 128 output tile goes to
//     its shared staging as 128-byte-swizzled boxes (conflict-free fragment writes) and one lane
//     stores them with TMA (cp.async.bulk.tensor, bulk_group), which clips at c's edges (N, and M
//     or a batch's rows). A ragged-M box that reaches past its group's last row (a group's last
//     < 16 rows, at most one box per warp and group) would overwrite the next group's rows, so
//     the warp stores that one with 16-byte st.global from the same staging instead of
//     rewriting a per-group map on the device (which would cost a full bulk wait plus a map
//     publish at every group change -- nearly every tile with many small experts). The next
//     tile's staging writes wait for the store's shared reads (bulk wait_group.read), so the
//     store overlaps the next mainloop. Outputs TMA cannot address (unaligned pitch/base) take
//     the fp32 staging + 16-byte st.global path of epilogue.cuh (store_tile).
// Tiles: 128x128x64, 4 stages of 32 KB = 128 KB + 8 x 9 KB staging + 2 tensor maps = 202
// KB of shared memory (227 KB available): deep enough to cover HBM latency with one CTA per SM,
// and 128x128 keeps the skewed/small-expert tiles of MoE shapes from wasting a 256-wide tile.
// No 2-CTA cluster: the persistent scheduler hands consecutive tiles of one expert to different
// CTAs at different times, so a multicast pair would have to be co-scheduled on the same expert
// and n-block; with 128x128 tiles and B re-read from L2 (each expert's B block is shared by the
// CTAs working on its m-tiles at the same time, m-tile fastest), the measured gain must come
// first (a GPU session) -- see the issue note.
// Ragged rows: an A box may run past its group into the next one's rows (or past M, zero-filled
// by TMA); those rows' results are not stored, so one A map serves every group, built on the host
// once per launch from shapes only. Gathered rows past the group, and order entries outside
// [0, M) (never produced by sort_tokens), are zero rows: nothing is read out of bounds. The
// ragged-N form, fp32, mixed (MN-major a, K-major b) operands and operands TMA cannot address
// use the Ampere kernel.
// Not modelled by the emulator: wgmma's asynchrony (see ptx_sm90.h; TMA stores are modelled as in
// flight until waited for); the kernel releases a stage only after wait_group has retired the
// wgmma group that read it, which is what makes that safe on hardware.
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
constexpr int kBoxBytes = 64 * BK * 2;  // one 64-row (or 64-column) box of a stage
constexpr int kBHalf = BN / 2;          // B rows per TMA box (a gated tile's gate / up half)
constexpr int kProducerThreads = 128;
constexpr int kGatherRows = BM * (BK / 8) / kProducerThreads;  // A rows per gathering thread
constexpr int kGatherLag = kStages - 2;  // cp.async groups a gathering thread keeps in flight
using WarpStaging = EpilogueStaging<16, BN>;
constexpr int kWarpStagingBytes = 9 * 1024;  // >= WarpStaging::kBytes, 1024-aligned (swizzle)
constexpr int kStoreRows = 16;               // a consumer warp's rows: one TMA store box height
constexpr int kBoxRowBytes = 128;            // TMA store box width in bytes (the swizzle span)
constexpr int kMapBytes = 128;               // a CUtensorMap
// shared: stages | 8 warp stagings | the producer's tensor maps (A, B) | mbarriers
constexpr size_t kStagingOffset = size_t{kStages} * kStageBytes;
constexpr size_t kMapsOffset = kStagingOffset + 8 * kWarpStagingBytes;
constexpr size_t kBarrierOffset = kMapsOffset + 2 * kMapBytes;
constexpr size_t kSmemBytes = 1024 + kBarrierOffset + 2 * kStages * 8;
// global workspace per CTA (ragged K): the A and B maps of each stage
constexpr int kWorkspaceMaps = 2 * kStages;
static_assert(kWorkspaceMaps * kMapBytes == kGroupedGemmWorkspacePerCta, "see grouped_gemm.h");
static_assert(WarpStaging::kBytes <= kWarpStagingBytes && kStoreRows * BN * 4 <= kWarpStagingBytes);
static_assert(sizeof(TmaDescriptor) == kMapBytes, "a tensor map is 128 bytes");
static_assert(kGatherLag < kStages, "a producer must signal stage it - lag before reusing it");
}  // namespace sm90

namespace sm90_detail {

// A warp copies a tensor map into shared memory (4 bytes per lane), to be edited there.
MOE_DEVICE MOE_FORCEINLINE void copy_map_to_shared(unsigned char* dst, const TmaDescriptor& src,
                                                   int lane) {
  st_shared(reinterpret_cast<uint32_t*>(dst) + lane, reinterpret_cast<const uint32_t*>(&src)[lane]);
  __syncwarp();
}

// Warp-collective: sets dimension kOrd of the shared map to `size`, publishes it to `slot` in
// global memory (release in the tensor-map proxy) and acquires it for the warp's TMA ops (every
// lane: the copy is split across the lanes).
template <int kOrd>
MOE_DEVICE MOE_FORCEINLINE void rewrite_map(unsigned char* shared_map, TmaDescriptor* slot,
                                            uint32_t size, int lane) {
  if (lane == 0) tensormap_replace_global_dim<kOrd>(shared_map, size);
  __syncwarp();
  tensormap_publish(slot, shared_map);
  tensormap_acquire(slot);
  __syncwarp();
}

MOE_DEVICE MOE_FORCEINLINE void tma_load(void* smem, const TmaDescriptor* map, int rank, int c0,
                                         int c1, int g, uint64_t* bar) {
  if (rank == 3)
    tma_load_3d(smem, map, c0, c1, g, bar);
  else
    tma_load_2d(smem, map, c0, c1, bar);
}

// Shared byte offset of output element (r, col) in a warp's staging: 128-byte-swizzled boxes of
// 16 rows x kBoxRowBytes, box b holding columns [b, b + 1) * (128 / out_bytes).
MOE_DEVICE MOE_FORCEINLINE int staged_out_offset(int r, int col, int out_bytes) {
  const int box_cols = sm90::kBoxRowBytes / out_bytes;
  const int off = (col / box_cols) * (sm90::kStoreRows * sm90::kBoxRowBytes) +
                  r * sm90::kBoxRowBytes + (col % box_cols) * out_bytes;
  return swizzle128(off);
}

MOE_DEVICE MOE_FORCEINLINE void stage_pair(unsigned char* staged, int r, int col, float v0,
                                           float v1, GemmElem type) {
  const int off = staged_out_offset(r, col, gemm_elem_bytes(type));
  if (type == GemmElem::kF32)
    st_shared(reinterpret_cast<float2*>(staged + off), float2{v0, v1});
  else if (type == GemmElem::kBF16)
    st_shared(reinterpret_cast<uint32_t*>(staged + off), pack2<__nv_bfloat16>(v0, v1));
  else
    st_shared(reinterpret_cast<uint32_t*>(staged + off), pack2<__half>(v0, v1));
}

// The epilogue applied to a consumer warp's accumulator fragments (16 rows from m0 of problem
// q, output columns from n0; d as wgmma_m64n128k16 lays it out), staged as TMA store boxes.
// kActivate: p.activation is applied (moe_mlp's first GEMM only; compiled out elsewhere, since
// 64 unrolled copies of every activation double the kernel's code: 12 k vs 5.5 k instructions).
template <bool kGated, bool kActivate>
MOE_DEVICE void stage_output(const float (&d)[64], unsigned char* staged,
                             const GroupedGemmParams& p, const GroupProblem& q, int64_t m0,
                             int64_t n0, int lane) {
  constexpr int kOutN = kGated ? sm90::BN / 2 : sm90::BN;
  const int g = lane / 4, t = lane % 4;
  float scale[2] = {1.f, 1.f};
  if (p.row_scale != nullptr) {
    MOE_UNROLL for (int h = 0; h < 2; ++h) {
      const int64_t r = m0 + g + 8 * h;
      scale[h] = 0.f;
      if (r < q.m) {
        const int32_t idx = ld_global_nc(p.row_scale_index + q.start + r);
        if (idx >= 0 && idx < p.m) scale[h] = load_as_float(p.row_scale, idx, p.row_scale_type);
      }
    }
  }
  MOE_UNROLL for (int j = 0; j < kOutN / 8; ++j) {
    const int col = 8 * j + 2 * t;
    float bias[2] = {0.f, 0.f};
    if (!kGated && q.bias_off >= 0) {
      MOE_UNROLL for (int e = 0; e < 2; ++e) if (n0 + col + e < q.n) bias[e] =
          load_as_float(p.bias, q.bias_off + n0 + col + e, p.bias_type);
    }
    MOE_UNROLL for (int h = 0; h < 2; ++h) {
      float v[2];
      MOE_UNROLL for (int e = 0; e < 2; ++e) {
        if constexpr (kGated) {
          v[e] = activate(d[4 * j + 2 * h + e], p.activation) * d[4 * (j + kOutN / 8) + 2 * h + e];
        } else if constexpr (kActivate) {
          v[e] = activate(d[4 * j + 2 * h + e] + bias[e], p.activation);
        } else {
          v[e] = d[4 * j + 2 * h + e] + bias[e];
        }
        v[e] *= scale[h];
      }
      stage_pair(staged, g + 8 * h, col, v[0], v[1], p.out_type);
    }
  }
}

// A consumer warp's staged output rows m0.. of problem q (at most kStoreRows, those inside the
// problem) written with 16-byte st.global: the box TMA would clip wrongly (it knows c's end,
// not the group's).
template <int kTileN>
MOE_DEVICE void store_staged_rows(const unsigned char* staged, const GroupedGemmParams& p,
                                  const GroupProblem& q, int64_t m0, int64_t n0, int lane) {
  const int ob = gemm_elem_bytes(p.out_type), per_chunk = 16 / ob;
  const int chunks = kTileN * ob / 16;  // per row
  const int64_t rows = q.m - m0, cols = q.n - n0;
  char* c = static_cast<char*>(p.c) + (q.c_off + m0 * p.c_stride_m + n0) * ob;
  for (int i = lane; i < sm90::kStoreRows * chunks; i += 32) {
    const int r = i / chunks, col = (i % chunks) * per_chunk;
    // every lane reads (warp-uniform shared accesses), only rows and columns inside are stored
    const uint4 v =
        ld_shared(reinterpret_cast<const uint4*>(staged + staged_out_offset(r, col, ob)));
    if (r >= rows || col >= cols) continue;
    char* dst = c + (r * p.c_stride_m + col) * ob;
    if (col + per_chunk <= cols) {
      st_global(reinterpret_cast<uint4*>(dst), v);  // aligned: TMA-addressable c, 16-byte chunks
    } else {  // the columns left of N, element by element (constant indices: v stays in
              // registers); unreachable through the bindings (their c is contiguous, and a
              // 16-byte pitch then makes N a multiple of the chunk), kept for padded outputs
      const uint32_t w[4] = {v.x, v.y, v.z, v.w};
      MOE_UNROLL for (int e = 0; e < 8; ++e) {
        if (e >= cols - col) break;
        if (ob == 4) {
          if (e < 4) st_global(reinterpret_cast<uint32_t*>(dst) + e, w[e & 3]);
        } else {
          st_global(reinterpret_cast<uint16_t*>(dst) + e,
                    static_cast<uint16_t>(w[e / 2] >> (16 * (e % 2))));
        }
      }
    }
  }
}

}  // namespace sm90_detail

template <typename T, bool kAKMajor, bool kBKMajor, bool kGather, bool kGated>
__global__ void __launch_bounds__(sm90::kThreads, 1)
    grouped_gemm_sm90_kernel(const MOE_GRID_CONSTANT TmaDescriptor tma_a,
                             const MOE_GRID_CONSTANT TmaDescriptor tma_b,
                             const MOE_GRID_CONSTANT TmaDescriptor tma_c, GroupedGemmParams p,
                             bool tma_store) {
  using namespace sm90;
  using namespace sm90_detail;
  constexpr int kTileN = kGated ? BN / 2 : BN;  // output columns per tile
  static_assert(!kGated || kGather, "gated tiles exist for moe_mlp's gathered first GEMM");
  static_assert(!kGather || (kAKMajor && kBKMajor), "the gather reads K-major x and weights");
  MOE_SHARED_DYNAMIC(unsigned char, smem_raw);
  unsigned char* smem = smem_raw + (1024 - shared_address(smem_raw) % 1024) % 1024;
  unsigned char* maps = smem + kMapsOffset;
  uint64_t* full = reinterpret_cast<uint64_t*>(smem + kBarrierOffset);
  uint64_t* empty = full + kStages;
  TmaDescriptor* workspace = p.workspace == nullptr ? nullptr
                                                    : static_cast<TmaDescriptor*>(p.workspace) +
                                                          blockIdx.x * kWorkspaceMaps;
  const int warp = static_cast<int>(threadIdx.x) / 32, lane = static_cast<int>(threadIdx.x) % 32;
  const bool batched = p.form == GroupedGemmForm::kBatched;
  const bool ragged_k = p.form == GroupedGemmForm::kRaggedK;
  const bool ragged_m = p.form == GroupedGemmForm::kRaggedM;
  const int a_rank = batched ? 3 : 2, b_rank = ragged_k ? 2 : 3;
  if (threadIdx.x == 0) {
    for (int s = 0; s < kStages; ++s) {
      mbarrier_init(&full[s], kGather ? 1 + kProducerThreads : 1);
      mbarrier_init(&empty[s], 8);  // one arrival per consumer warp
    }
    fence_barrier_init();
  }
  __syncthreads();

  if (warp < 4) {  // ------------------------------------------------------------- producer
    setmaxnreg_dec<72>();
    if (!kGather && warp != 0) return;
    const int ptid = static_cast<int>(threadIdx.x);  // 0..127
    if (ragged_k) {  // warp 0: the per-stage maps are edited from these shared copies
      copy_map_to_shared(maps, tma_a, lane);
      copy_map_to_shared(maps + kMapBytes, tma_b, lane);
    }
    TileScheduler<BM, kTileN> scheduler(p);
    TileCoord tc;
    int it = 0;        // k steps issued so far (all tiles): stage it % kStages, use it / kStages
    int signaled = 0;  // kGather: k steps this thread has reported landed on full[]
    int group = -1, group_first_it = 0;  // ragged K: the current group and its first k step
    for (int tile = static_cast<int>(blockIdx.x); scheduler.find(tile, tc); tile += gridDim.x) {
      const GroupProblem q = group_problem(p, tc.problem);
      const int k_tiles = static_cast<int>((q.k + BK - 1) / BK);
      const int64_t m0 = int64_t{tc.tile_m} * BM;
      const int a_row = static_cast<int>((ragged_m ? q.start : 0) + m0);
      const int n0 = tc.tile_n * kTileN;
      const int b_up = kGated ? static_cast<int>(p.n) + n0 : n0 + kBHalf;
      const int k_base = ragged_k ? static_cast<int>(q.start) : 0;
      if (ragged_k && tc.problem != group) group = tc.problem, group_first_it = it;
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
          if (use > 0)
            mbarrier_wait(&empty[s], (use - 1) & 1, kWaitSm90ProducerEmpty, p.wait_report);
        }
        const TmaDescriptor* map_a = &tma_a;
        const TmaDescriptor* map_b = &tma_b;
        if (ragged_k) {  // (warp 0 only) this stage's maps, cut at the group's last token
          __syncwarp();
          if (it - kStages < group_first_it) {  // the slot still describes an earlier group
            const auto end = static_cast<uint32_t>(q.start + q.k);
            rewrite_map<kAKMajor ? 0 : 1>(maps, &workspace[s], end, lane);
            rewrite_map<kBKMajor ? 0 : 1>(maps + kMapBytes, &workspace[kStages + s], end, lane);
          }
          map_a = &workspace[s], map_b = &workspace[kStages + s];
        }
        if (ptid == 0) {
          const int k = k_base + kt * BK;
          mbarrier_arrive_expect_tx(&full[s], kGather ? kBBytes : kStageBytes);
          if constexpr (!kGather) {
            if constexpr (kAKMajor) {
              tma_load(sa, map_a, a_rank, k, a_row, tc.problem, &full[s]);
            } else {
              tma_load(sa, map_a, a_rank, a_row, k, tc.problem, &full[s]);
              tma_load(sa + kBoxBytes, map_a, a_rank, a_row + 64, k, tc.problem, &full[s]);
            }
          }
          if constexpr (kBKMajor) {
            tma_load(sb, map_b, b_rank, k, n0, tc.problem, &full[s]);
            tma_load(sb + kBoxBytes, map_b, b_rank, k, b_up, tc.problem, &full[s]);
          } else {
            tma_load(sb, map_b, b_rank, n0, k, tc.problem, &full[s]);
            tma_load(sb + kBoxBytes, map_b, b_rank, n0 + kBHalf, k, tc.problem, &full[s]);
          }
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
  setmaxnreg_inc<216>();
  const int consumer_warp = warp - 4;            // 0..7
  const int wg_rows = (consumer_warp / 4) * 64;  // this warpgroup's rows of the tile
  unsigned char* staged = smem + kStagingOffset + consumer_warp * kWarpStagingBytes;
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
      mbarrier_wait(&full[s], use & 1, kWaitSm90ConsumerFull, p.wait_report);
      const unsigned char* sa =
          smem + s * kStageBytes + (kAKMajor ? wg_rows * 128 : (wg_rows / 64) * kBoxBytes);
      const unsigned char* sb = smem + s * kStageBytes + kABytes;
      wgmma_fence();
      MOE_UNROLL for (int ks = 0; ks < BK / 16; ++ks) {
        // K-major: k16 = 32 bytes along the swizzled rows; MN-major: 16 k rows of 128 bytes,
        // LBO = the next 64 columns' box
        const uint64_t da = kAKMajor ? wgmma_desc(sa + ks * 32, 16, 1024, true)
                                     : wgmma_desc(sa + ks * 2048, kBoxBytes, 1024, true);
        const uint64_t db = kBKMajor ? wgmma_desc(sb + ks * 32, 16, 1024, true)
                                     : wgmma_desc(sb + ks * 2048, kBoxBytes, 1024, true);
        wgmma_m64n128k16<T, !kAKMajor, !kBKMajor>(d, da, db, kt > 0 || ks > 0);
      }
      wgmma_commit();
      // keep this step's wgmma group in flight while waiting for the next stage; the previous
      // step's group has now finished reading its stage, which is released
      wgmma_wait<1>();
      if (kt > 0 && lane == 0) mbarrier_arrive(&empty[(it - 1) % kStages]);
    }
    wgmma_wait<0>();  // the accumulators are read below; the last stage is free
    if (k_tiles > 0 && lane == 0) mbarrier_arrive(&empty[(it - 1) % kStages]);
    const int64_t m0 = int64_t{tc.tile_m} * BM + wg_rows + 16 * (consumer_warp % 4);
    const int64_t n0 = int64_t{tc.tile_n} * kTileN;
    if (tma_store) {
      if (m0 >= q.m) continue;                   // none of this warp's rows exist
      if (lane == 0) bulk_wait_group_read<0>();  // the previous store has read the staging
      __syncwarp();
      stage_output<kGated, kGather>(d, staged, p, q, m0, n0, lane);
      // the map clips at N and at c's last row: a ragged-M box reaching into the next group
      // (its last rows) goes out with st.global instead
      if (!ragged_m || q.m - m0 >= kStoreRows || q.start + q.m == p.m) {
        fence_proxy_async_shared();  // the staging writes -> the copy engine's reads
        __syncwarp();
        if (lane == 0) {
          const int box_cols = kBoxRowBytes / gemm_elem_bytes(p.out_type);
          for (int c = 0; c < kTileN && n0 + c < q.n; c += box_cols) {
            unsigned char* box = staged + (c / box_cols) * (kStoreRows * kBoxRowBytes);
            if (ragged_m)
              tma_store_2d(&tma_c, box, static_cast<int>(n0 + c), static_cast<int>(q.start + m0));
            else
              tma_store_3d(&tma_c, box, static_cast<int>(n0 + c), static_cast<int>(m0), tc.problem);
          }
          bulk_commit_group();
        }
      } else {
        __syncwarp();
        store_staged_rows<kTileN>(staged, p, q, m0, n0, lane);
        __syncwarp();  // the next tile's staging writes come after every lane's reads
      }
    } else {
      float* staged_f = reinterpret_cast<float*>(staged);
      const int g = lane / 4, t = lane % 4;
      MOE_UNROLL for (int j = 0; j < 16; ++j) MOE_UNROLL for (int half = 0; half < 2; ++half)
          st_shared(
              reinterpret_cast<float2*>(staged_f + WarpStaging::index(g + 8 * half, 8 * j + 2 * t)),
              float2{d[4 * j + 2 * half], d[4 * j + 2 * half + 1]});
      __syncwarp();
      store_tile<16, BN, 32, kGated>(staged_f, p, q, m0, n0, lane);
      __syncwarp();  // the next tile's staging writes come after every lane's reads
    }
  }
  if (tma_store && lane == 0) bulk_wait_group<0>();  // the staging outlives the stores' reads
}

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

template <typename T, bool kAKMajor, bool kBKMajor, bool kGather, bool kGated>
cudaError_t launch_sm90_typed(const GroupedGemmParams& p, cudaStream_t stream) {
  using namespace sm90;
  const bool batched = p.form == GroupedGemmForm::kBatched;
  const bool ragged_k = p.form == GroupedGemmForm::kRaggedK;
  const bool has_workspace = p.workspace != nullptr &&
                             p.workspace_bytes >= kGroupedGemmWorkspacePerCta &&
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
                               p.a_stride_g, p.num_groups, batched ? 3 : 2, BM)) {
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
  const int64_t max_grid = ragged_k ? p.workspace_bytes / kGroupedGemmWorkspacePerCta : INT64_MAX;
  GroupedGemmParams q = p;
  q.wait_report = wait_timeout_report_buffer(stream);
  return launch_persistent_capped("grouped_gemm_sm90_kernel",
                                  grouped_gemm_sm90_kernel<T, kAKMajor, kBKMajor, kGather, kGated>,
                                  kThreads, kSmemBytes, max_tiles(p, BM, kGated ? BN / 2 : BN),
                                  max_grid, stream, ta, tb, tc, q, tma_store);
}

template <typename T>
cudaError_t launch_sm90_variant(const GroupedGemmParams& p, cudaStream_t stream) {
  if (p.a_gather != nullptr) {
    if (!p.a_k_major || !p.b_k_major) return cudaErrorNotSupported;
    return p.gated ? launch_sm90_typed<T, true, true, true, true>(p, stream)
                   : launch_sm90_typed<T, true, true, true, false>(p, stream);
  }
  if (p.a_k_major && p.b_k_major) return launch_sm90_typed<T, true, true, false, false>(p, stream);
  if (p.a_k_major) return launch_sm90_typed<T, true, false, false, false>(p, stream);    // dA
  if (!p.b_k_major) return launch_sm90_typed<T, false, false, false, false>(p, stream);  // dB
  return cudaErrorNotSupported;  // MN-major a with K-major b: the Ampere kernel
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
  if (!form_ok || !type_ok || (p.gated && !gather) || (gather && p.a_gather_div <= 0) ||
      (gather && p.form != GroupedGemmForm::kRaggedM) ||
      (!gather && p.activation != GemmActivation::kNone) || p.k <= 0 || p.num_groups <= 0 ||
      p.m > INT32_MAX || p.n > INT32_MAX / 2 || p.k > INT32_MAX ||
      // what the gathered A's 16-byte cp.async needs (the TMA maps check their own operands)
      (gather && !tma_addressable(p.a, p.a_stride_m * 2, 0)))
    return cudaErrorNotSupported;
  return p.in_type == GemmElem::kBF16 ? launch_sm90_variant<__nv_bfloat16>(p, stream)
                                      : launch_sm90_variant<__half>(p, stream);
}

}  // namespace moe_ext::MOE_KERNEL_NS
