// grouped_gemm_tc_kernel: the bf16/fp16 grouped GEMM on tensor cores (mma.sync, sm_80 and later).
//
// Per output tile (BM x BN of one problem, from the persistent TileScheduler):
//   * mainloop: a `stages`-deep cp.async pipeline (run-time depth, 2..5, chosen by the launcher
//     from the device's shared memory) of BK-wide slices of A and B; one __syncthreads per
//     slice: wait for slice kt, barrier, refill the stage read in the previous iteration with
//     slice kt + stages - 1, compute slice kt. Warps tile the block kWarpsM x kWarpsN; each warp
//     owns kWarpM x kWarpN of fp32 accumulators in registers and issues m16n8k16 mma.sync.
//   * operand layouts: each operand tile keeps its global unit-stride dim contiguous in shared
//     memory (16-byte cp.async chunks), so a K-major operand is stored rows = m (or n) and read
//     with ldmatrix, an M/N-major one (aᵀ, b[K,N]) rows = k and read with ldmatrix.trans: one
//     template flag per operand, no transposing copies anywhere.
//   * swizzle (common/swizzle.h, swizzled<RowBytes>): chunk c of row r sits at c ^ (r & 7) (rows
//     of >= 128 bytes) or c ^ ((r >> 1) & 3) (64-byte rows), so the 8 row addresses of each
//     ldmatrix phase hit 8 distinct 16-byte bank groups: no bank conflicts (the emulator counts
//     them; tests assert 0).
//   * edges: chunks past the problem's m/n/k extents are zero-filled by cp.async's src-size
//     (predicated tails, any M, N, K); where a problem's operand origin or row pitch is not
//     16-byte aligned (odd K, a group starting at an odd row of an M-major aᵀ, ...) that operand
//     is loaded element by element instead (correct, slower; decided per problem at run time).
//   * epilogue (epilogue.cuh): accumulators staged through shared memory, bias, dtype, 16-byte
//     coalesced stores.
// Configs (launcher): kGemmConfigLarge 128x128x32, 2x2 warps of 64x64 (128 fp32 accumulators
// per thread, the CUTLASS sm80 default shape); kGemmConfigSmallM 32x128x32, 1x4 warps of 32x32,
// for decode-sized groups (few rows per expert: the weights stream, wasted rows are cheap);
// kGemmConfigSwapAb 16x128x64, 1x4 warps of 16x32, with the operands swapped (below).
//
// Swap-AB (decode: <= 16 rows per expert): an m16n8k16 MMA's M side is 16 rows, its N side 8,
// so a tile of 1-16 tokens on the M side wastes most of every MMA (small_m: 32-row MMAs for
// typically 1-8 rows). Swapped, the tile computes Cᵀ = Bᵀ Aᵀ: the weights' 128 columns are the
// MMA's M side (B's tile is read as the MMA's A operand) and the 16 tokens its N side (two n8
// tiles), so a warp issues 4 MMAs per k16 step for 32 columns x 16 rows where small_m issues 8
// for 32 x 32 -- half the tensor work and half the A tile per output column, with the same weight
// stream. Nothing else changes: the loads, the k pipeline and the epilogue (bias, activation,
// gated halves, row scale, gather) are the normal kernel's; only the accumulators are written
// transposed into the staging tile. Needs a K-major A (the token tile must be the MMA's
// K-contiguous B operand); the launcher runs small_m for other layouts.
#pragma once

#include "../../common/launch.h"
#include "../../common/memory.h"
#include "../../common/ptx.h"
#include "../../common/shared.h"
#include "../../common/swizzle.h"
#include "cp_async_pipeline.cuh"
#include "epilogue.cuh"
#include "grouped_gemm.h"
#include "scheduler.cuh"

namespace moe_ext::MOE_KERNEL_NS {

template <int BM_, int BN_, int BK_, int WarpsM, int WarpsN, int MinBlocks, bool SwapAB = false>
struct TensorCoreTile {
  static constexpr int BM = BM_, BN = BN_, BK = BK_;
  static constexpr int kMinBlocksPerSm = MinBlocks;  // __launch_bounds__: caps registers/thread
  static constexpr int kWarpsM = WarpsM, kWarpsN = WarpsN, kThreads = 32 * WarpsM * WarpsN;
  static constexpr int kWarpM = BM / WarpsM, kWarpN = BN / WarpsN;  // a warp's output block
  static constexpr bool kSwapAB = SwapAB;  // the MMA's M side is n (B's tile), its N side m
  // MMA tiles per warp along the MMA's M (16) and N (8) sides
  static constexpr int kMmaM = (SwapAB ? kWarpN : kWarpM) / 16;
  static constexpr int kMmaN = (SwapAB ? kWarpM : kWarpN) / 8;
  static constexpr int kABytes = BM * BK * 2, kStageBytes = (BM + BN) * BK * 2;
  static constexpr int kMaxStages = 5;
  static_assert(kWarpM % 16 == 0 && kWarpN % 16 == 0 && BK % 16 == 0, "mma tiling");
};
using TensorCoreLarge = TensorCoreTile<128, 128, 32, 2, 2, 2>;
using TensorCoreSmallM = TensorCoreTile<32, 128, 32, 1, 4, 3>;
using TensorCoreSwapAb = TensorCoreTile<16, 128, 64, 1, 4, 3, true>;

// Copies a Rows x Cols tile of 2-byte elements (Cols contiguous) into swizzled shared memory
// whose rows are SmemCols elements wide, at chunk column `chunk0` (a column half of a gated B
// tile; 0 otherwise). `src` is the tile's origin, `pitch` the global row pitch in bytes; rows
// >= rows_left and columns >= cols_left are zero-filled. With `row_offsets` (shared memory, the
// gathered A rows), row r starts at src + row_offsets[r] instead, and a negative offset is a
// zero row. With `gather` (global memory, the gathered B rows of a k slice: row r is row
// gather.idx[r] / gather.div of the operand), row r starts at src + that row * pitch.
struct RowGather {
  const int32_t* idx = nullptr;
  int32_t div = 1;
  int64_t rows = 0;  // idx / div must be in [0, rows), else a zero row
};

template <int Rows, int Cols, int Threads, int SmemCols = Cols>
MOE_DEVICE MOE_FORCEINLINE void load_tile(unsigned char* smem, const char* src, int64_t pitch,
                                          int rows_left, int cols_left, bool vec_ok, int tid,
                                          int chunk0 = 0, const int64_t* row_offsets = nullptr,
                                          RowGather gather = {}) {
  constexpr int kChunksPerRow = Cols / 8, kChunks = Rows * kChunksPerRow;
  static_assert(kChunks % Threads == 0, "whole chunks per thread");
  auto row_start = [&](int r, bool& live) -> const char* {
    if (gather.idx != nullptr) {
      const int32_t i = live ? ld_global_nc(gather.idx + r) : -1;
      const int64_t row = i >= 0 ? i / gather.div : -1;
      live = live && row >= 0 && row < gather.rows;
      return src + (live ? row : 0) * pitch;
    }
    if (row_offsets == nullptr) return src + r * pitch;
    const int64_t off = ld_shared(row_offsets + r);
    live = live && off >= 0;
    return src + (off >= 0 ? off : 0);
  };
  if (vec_ok) {
    MOE_UNROLL for (int j = 0; j < kChunks / Threads; ++j) {
      const int i = tid + j * Threads, r = i / kChunksPerRow, c = i % kChunksPerRow;
      const int left = cols_left - c * 8;
      bool live = r < rows_left && left > 0;
      const char* row = row_start(r < rows_left ? r : 0, live);
      const int bytes = live ? (left >= 8 ? 16 : left * 2) : 0;
      cp_async<16>(smem + swizzled<SmemCols * 2>(r, chunk0 + c), bytes ? row + c * 16 : src, bytes);
    }
  } else {
    for (int i = tid; i < Rows * Cols; i += Threads) {
      const int r = i / Cols, col = i % Cols;
      bool live = r < rows_left && col < cols_left;
      const char* row = row_start(r < rows_left ? r : 0, live);
      const uint16_t v =
          live ? ld_global(reinterpret_cast<const uint16_t*>(row + col * 2)) : uint16_t{0};
      st_shared(reinterpret_cast<uint16_t*>(smem + swizzled<SmemCols * 2>(r, chunk0 + col / 8) +
                                            (col % 8) * 2),
                v);
    }
  }
}

// The MMA's A operand (16 rows x 16 k of slice step ks, m16n8k16 register order) at rows row0..:
// from a tile stored with the MMA's rows as its rows and k contiguous (kKContig, RowBytes = BK * 2)
// or with k as its rows (RowBytes = the MMA rows' extent * 2; transposed while loading).
template <bool kKContig, int RowBytes>
MOE_DEVICE MOE_FORCEINLINE void mma_a_fragment(uint32_t (&f)[4], const unsigned char* s, int row0,
                                               int ks, int lane) {
  if constexpr (kKContig) {  // matrices (rows 0-7 | 8-15) x (k 0-7 | 8-15)
    const int row = row0 + (lane & 15), chunk = ks * 2 + (lane >> 4);
    ldmatrix_x4(f, s + swizzled<RowBytes>(row, chunk));
  } else {
    const int k = ks * 16 + (lane & 7) + ((lane >> 4) << 3);
    const int chunk = (row0 + (((lane >> 3) & 1) << 3)) / 8;
    ldmatrix_x4_trans(f, s + swizzled<RowBytes>(k, chunk));
  }
}

// Two of the MMA's B operands (16 k x 8 columns: columns col0.. into lo, col0 + 8.. into hi), from
// a tile stored with the MMA's columns as its rows (kKContig) or with k as its rows.
template <bool kKContig, int RowBytes>
MOE_DEVICE MOE_FORCEINLINE void mma_b_fragment_pair(uint32_t (&lo)[2], uint32_t (&hi)[2],
                                                    const unsigned char* s, int col0, int ks,
                                                    int lane) {
  uint32_t r[4];
  if constexpr (kKContig) {
    const int row = col0 + (lane & 7) + ((lane >> 4) << 3);
    const int chunk = ks * 2 + ((lane >> 3) & 1);
    ldmatrix_x4(r, s + swizzled<RowBytes>(row, chunk));
  } else {
    const int k = ks * 16 + (lane & 7) + (((lane >> 3) & 1) << 3);
    const int chunk = (col0 + ((lane >> 4) << 3)) / 8;
    ldmatrix_x4_trans(r, s + swizzled<RowBytes>(k, chunk));
  }
  lo[0] = r[0], lo[1] = r[1];
  hi[0] = r[2], hi[1] = r[3];
}

template <typename T>
MOE_DEVICE MOE_FORCEINLINE void mma_16816(float (&d)[4], const uint32_t (&a)[4],
                                          const uint32_t (&b)[2]) {
  if constexpr (std::is_same_v<T, __nv_bfloat16>) {
    mma_m16n8k16_bf16(d, a, b, d);
  } else {
    mma_m16n8k16_f16(d, a, b, d);
  }
}

template <typename T, typename Tile, bool kAKMajor, bool kBKMajor, bool kGated>
__global__ void __launch_bounds__(Tile::kThreads, Tile::kMinBlocksPerSm)
    grouped_gemm_tc_kernel(GroupedGemmParams p, int stages) {
  constexpr int BM = Tile::BM, BN = Tile::BN, BK = Tile::BK, kThreads = Tile::kThreads;
  constexpr int kTileN = kGated ? BN / 2 : BN;  // output columns per tile
  using Staging = EpilogueStaging<BM, BN>;
  static_assert(!kGated || kAKMajor, "the gated (fused MLP) kernel reads x row-major");
  constexpr bool kSwap = Tile::kSwapAB;
  static_assert(!kSwap || kAKMajor, "swap-AB reads the token tile as the MMA's K-contiguous B");
  // The MMA's operands: A's tile (rows m) x B's tile (columns n), or swapped B's x A's.
  constexpr bool kMmaAKContig = kSwap ? kBKMajor : kAKMajor;
  constexpr bool kMmaBKContig = kSwap ? kAKMajor : kBKMajor;
  constexpr int kMmaARowBytes = kMmaAKContig ? BK * 2 : (kSwap ? BN : BM) * 2;
  constexpr int kMmaBRowBytes = kMmaBKContig ? BK * 2 : (kSwap ? BM : BN) * 2;
  MOE_SHARED_DYNAMIC(unsigned char, smem);
  const int tid = static_cast<int>(threadIdx.x), lane = tid % 32, warp = tid / 32;
  const int warp_m0 = (warp / Tile::kWarpsN) * Tile::kWarpM;
  const int warp_n0 = (warp % Tile::kWarpsN) * Tile::kWarpN;
  const int64_t a_pitch =
      (kAKMajor ? p.a_stride_m : p.a_stride_k) * 2;  // bytes per smem row source
  const int64_t b_pitch = (kBKMajor ? p.b_stride_n : p.b_stride_k) * 2;

  // gathered A rows (moe_mlp): the tile's x-row byte offsets, after the pipeline/staging memory
  const bool gather = p.a_gather != nullptr;
  const bool b_gathered = !kBKMajor && p.b_gather != nullptr;  // (can_implement: rows k only)
  int64_t k_start = 0;  // the problem's first k (ragged K): where its b_gather entries begin
  const int main_bytes =
      stages * Tile::kStageBytes > Staging::kBytes ? stages * Tile::kStageBytes : Staging::kBytes;
  int64_t* row_offsets = reinterpret_cast<int64_t*>(smem + main_bytes);

  TileScheduler<BM, kTileN> scheduler(p);
  TileCoord tc;
  for (int tile = static_cast<int>(blockIdx.x); scheduler.find(tile, tc); tile += gridDim.x) {
    // What the mainloop needs of the problem, kept small (registers): tile origins and extents
    // left (clamped to the tile); the epilogue recomputes the problem.
    const char *a_tile, *b_tile;
    int m_left, n_left;
    int64_t k_total;
    bool a_vec, b_vec;
    {
      const GroupProblem q = group_problem(p, tc.problem);
      const int64_t m0 = static_cast<int64_t>(tc.tile_m) * BM,
                    n0 = static_cast<int64_t>(tc.tile_n) * kTileN;
      const char* a_group = static_cast<const char*>(p.a) + (gather ? 0 : q.a_off * 2);
      // (a gathered B: the rows come from b_gather, only the column offset applies)
      const char* b_group = static_cast<const char*>(p.b) + (b_gathered ? 0 : q.b_off * 2);
      a_vec = ((reinterpret_cast<uintptr_t>(a_group) | static_cast<uint64_t>(a_pitch)) % 16) == 0;
      b_vec = ((reinterpret_cast<uintptr_t>(b_group) | static_cast<uint64_t>(b_pitch)) % 16) == 0;
      a_tile = gather ? a_group : a_group + m0 * p.a_stride_m * 2;
      b_tile = b_group + n0 * p.b_stride_n * 2;
      m_left = static_cast<int>(q.m - m0 < BM ? q.m - m0 : BM);
      n_left = static_cast<int>(q.n - n0 < kTileN ? q.n - n0 : kTileN);
      k_total = q.k;
      k_start = q.start;
      if (gather) {  // the previous tile ended with a barrier: the table is free
        for (int r = tid; r < BM; r += kThreads) {
          const int32_t src = r < m_left ? ld_global_nc(p.a_gather + q.start + m0 + r) : -1;
          // entries outside [0, M) (never produced by sort_tokens) are zero rows, not OOB reads
          st_shared(row_offsets + r, src >= 0 && src < p.m
                                         ? (src / p.a_gather_div) * p.a_stride_m * 2
                                         : int64_t{-1});
        }
        __syncthreads();
      }
    }
    const int k_tiles = static_cast<int>((k_total + BK - 1) / BK);

    auto load_stage = [&](int stage, int kt) {
      unsigned char* sa = smem + stage * Tile::kStageBytes;
      unsigned char* sb = sa + Tile::kABytes;
      const int64_t k0 = static_cast<int64_t>(kt) * BK;
      const int k_left = static_cast<int>(k_total - k0 < BK ? k_total - k0 : BK);
      if constexpr (kAKMajor) {  // rows m, columns k
        load_tile<BM, BK, kThreads>(sa, a_tile + k0 * 2, a_pitch, m_left, k_left, a_vec, tid, 0,
                                    gather ? row_offsets : nullptr);
      } else {  // rows k, columns m
        load_tile<BK, BM, kThreads>(sa, a_tile + k0 * a_pitch, a_pitch, k_left, m_left, a_vec, tid);
      }
      if constexpr (kGated) {  // B columns [0, BN/2): gate n0.., [BN/2, BN): up n + n0..
        const char* up = b_tile + p.n * p.b_stride_n * 2;
        if constexpr (kBKMajor) {  // rows n: the halves are row ranges
          load_tile<kTileN, BK, kThreads>(sb, b_tile + k0 * 2, b_pitch, n_left, k_left, b_vec, tid);
          load_tile<kTileN, BK, kThreads>(sb + kTileN * BK * 2, up + k0 * 2, b_pitch, n_left,
                                          k_left, b_vec, tid);
        } else {  // rows k: the halves are chunk-column ranges of each row
          load_tile<BK, kTileN, kThreads, BN>(sb, b_tile + k0 * b_pitch, b_pitch, k_left, n_left,
                                              b_vec, tid);
          load_tile<BK, kTileN, kThreads, BN>(sb, up + k0 * b_pitch, b_pitch, k_left, n_left, b_vec,
                                              tid, kTileN / 8);
        }
      } else if constexpr (kBKMajor) {  // rows n, columns k
        load_tile<BN, BK, kThreads>(sb, b_tile + k0 * 2, b_pitch, n_left, k_left, b_vec, tid);
      } else if (b_gathered) {  // rows k read through b_gather
        const RowGather rg{p.b_gather + k_start + k0, p.b_gather_div, p.b_gather_rows};
        load_tile<BK, BN, kThreads>(sb, b_tile, b_pitch, k_left, n_left, b_vec, tid, 0, nullptr,
                                    rg);
      } else {  // rows k, columns n
        load_tile<BK, BN, kThreads>(sb, b_tile + k0 * b_pitch, b_pitch, k_left, n_left, b_vec, tid);
      }
    };

    float acc[Tile::kMmaM][Tile::kMmaN][4];
    MOE_UNROLL for (int i = 0; i < Tile::kMmaM; ++i)
        MOE_UNROLL for (int j = 0; j < Tile::kMmaN; ++j) MOE_UNROLL for (int e = 0; e < 4; ++e)
            acc[i][j][e] = 0.f;

    cp_async_pipeline(stages, k_tiles, load_stage, [&](int stage, int) {
      const unsigned char* sa = smem + stage * Tile::kStageBytes;
      const unsigned char* sb = sa + Tile::kABytes;
      MOE_UNROLL for (int ks = 0; ks < BK / 16; ++ks) {
        uint32_t fa[Tile::kMmaM][4], fb[Tile::kMmaN][2];
        const unsigned char* mma_a = kSwap ? sb : sa;
        const unsigned char* mma_b = kSwap ? sa : sb;
        const int row0 = kSwap ? warp_n0 : warp_m0, col0 = kSwap ? warp_m0 : warp_n0;
        MOE_UNROLL for (int mt = 0; mt < Tile::kMmaM; ++mt)
            mma_a_fragment<kMmaAKContig, kMmaARowBytes>(fa[mt], mma_a, row0 + mt * 16, ks, lane);
        MOE_UNROLL for (int np = 0; np < Tile::kMmaN / 2; ++np)  // two n8 tiles per ldmatrix
            mma_b_fragment_pair<kMmaBKContig, kMmaBRowBytes>(fb[2 * np], fb[2 * np + 1], mma_b,
                                                             col0 + np * 16, ks, lane);
        MOE_UNROLL for (int mt = 0; mt < Tile::kMmaM; ++mt)
            MOE_UNROLL for (int nt = 0; nt < Tile::kMmaN; ++nt)
                mma_16816<T>(acc[mt][nt], fa[mt], fb[nt]);
      }
    });
    // (the pipeline ends with a barrier: every warp is done with the stages, reuse them)

    float* staged = reinterpret_cast<float*>(smem);
    const int g = lane / 4, t = lane % 4;
    if constexpr (!kSwap) {
      MOE_UNROLL for (int mt = 0; mt < Tile::kMmaM; ++mt)
          MOE_UNROLL for (int nt = 0; nt < Tile::kMmaN; ++nt)
              MOE_UNROLL for (int half = 0; half < 2; ++half) {
        const int row = warp_m0 + mt * 16 + g + half * 8, col = warp_n0 + nt * 8 + 2 * t;
        st_shared(reinterpret_cast<float2*>(staged + Staging::index(row, col)),
                  float2{acc[mt][nt][2 * half], acc[mt][nt][2 * half + 1]});
      }
    } else {
      // acc[mt][nt][2 half + c] is c(m = warp_m0 + nt 8 + 2t + c, n = warp_n0 + mt 16 + g + 8
      // half): written transposed, one float per store. The pair c = 0, 1 goes out in two stores,
      // lanes with t >= 2 taking c the other way round, so that a store's rows (m = 0, 2, 5, 7 or
      // 1, 3, 4, 6, staged rows 8 banks apart) times 8 consecutive n cover 32 distinct banks.
      // (Selects between the two values: indexing acc by a run-time c put it on the stack.)
      const bool flip = (t >> 1) & 1;
      MOE_UNROLL for (int mt = 0; mt < Tile::kMmaM; ++mt)
          MOE_UNROLL for (int nt = 0; nt < Tile::kMmaN; ++nt)
              MOE_UNROLL for (int half = 0; half < 2; ++half) {
        const float v0 = acc[mt][nt][2 * half], v1 = acc[mt][nt][2 * half + 1];
        const int row = warp_m0 + nt * 8 + 2 * t, col = warp_n0 + mt * 16 + g + half * 8;
        float* at = staged + Staging::index(row, col);  // (row + 1: Staging::kStride further)
        st_shared(at + (flip ? Staging::kStride : 0), flip ? v1 : v0);
        st_shared(at + (flip ? 0 : Staging::kStride), flip ? v0 : v1);
      }
    }
    __syncthreads();
    store_tile<BM, BN, kThreads, kGated>(staged, p, group_problem(p, tc.problem),
                                         static_cast<int64_t>(tc.tile_m) * BM,
                                         static_cast<int64_t>(tc.tile_n) * kTileN, tid);
    __syncthreads();  // the next tile's prologue overwrites the staging area
  }
}

}  // namespace moe_ext::MOE_KERNEL_NS
