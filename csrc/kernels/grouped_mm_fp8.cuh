// grouped_mm_fp8_kernel: the block-FP8 grouped GEMM (grouped_mm_fp8.h) on 16-bit tensor cores
// (mma.sync m16n8k16 f16, sm_80 and later; the emulator runs the same source).
//
//   out[m, n] = sum_kb a_scale[m, kb] * b_scale[g, n / 128, kb] * sum_{k in kb} a[m, k] b[g, n, k]
//
// Why f16 MMAs on e4m3 data: every e4m3 value is exactly an f16 value (3 mantissa bits <= 10,
// exponents 2^-9 .. 2^8 inside f16's range), an f16 x f16 product is exact in the MMA's fp32
// accumulator, so a 128-wide K block summed by f16 MMAs is the exact block dot product up to
// fp32 accumulation -- the same numbers an e4m3 MMA gives, on every arch from sm_80 on (A100
// runs FP8 checkpoints; sm_89/sm_90 e4m3 instructions would double the rate, not change the
// result). The conversion is integer arithmetic on the bytes (no fp8 cvt on sm_80): byte
// s.eeee.mmm becomes the f16 s.0eeee.mmm0000000, which is the e4m3 value times 2^-8 for normals
// and subnormals alike (the exponent bias drops from 15 to 7); the 2^16 of the two operands is
// folded into B's scale. (e4m3fn NaN bytes are not special-cased: a NaN code comes from a NaN
// input, whose group scale is NaN too, and the scale carries it into the output.)
//
// On sm_89+ (kE4m3Mma, Fp8Mma in the .h) the bytes go to m16n8k32 e4m3 MMAs as they are: the
// same fragment loads, one k32 MMA where the f16 way issues two k16 ones after converting, and
// B's scale without the 2^16 (Ada: native fp8 HMMA; sm_90a: ptxas unpacks e4m3 to f16 in
// hardware, F2FP, for f16 HMMAs -- 128 F2FP per slice instead of ~700 integer ops). Hopper's fp8
// tensor cores add products with fewer bits than fp32 inside an instruction; the per-block
// promotion below bounds what that can lose to one 128-wide block (the emulator adds exactly).
//
// Two-level accumulation (DeepSeek-V3): one K slice of the pipeline is one 128-wide scale block;
// its MMAs accumulate into `blk` (fp32, zeroed per slice), which is then promoted into `acc` with
// acc += blk * (a_scale[row] * b_scale[n block] * 2^16). fp8 products never accumulate across
// blocks at a block's scale, so there is no drift however long K is.
//
// Tiles: 128 x 64 outputs x 128 K bytes per slice, 8 warps as 4 (m) x 2 (n) of 32 x 32 (32 fp32
// accumulators + 32 block accumulators per thread; 64 x 32 warp tiles, 128 of them, spill at
// 255 registers); a tile's 64 columns lie in one B scale block. A run-time 2..4-stage cp.async
// pipeline of (A tile, B tile, the A tile rows' scales, the B block's scale), 25 KB per stage,
// one __syncthreads per slice as in the bf16 kernel (tensor_core.cuh); one CTA per SM (214-220
// registers). Each operand row is 128 bytes = 8 chunks of 16 stored at chunk c ^ f(r & 7),
// f(r) = (r & 3) << 1 | (r >> 2) & 1, so the cp.async writes (one row per 8 lanes) and the
// fragment reads are bank-conflict-free.
//
// Fragment loads without ldmatrix: the order of k inside a block does not change a dot product
// as long as A and B agree, so thread (g = lane / 4, t = lane % 4) takes the 8 consecutive bytes
// [32 q + 8 t, + 8) of quarter q of its row with one 8-byte shared load and uses bytes 4 s ..
// 4 s + 3 as its k slots {2t, 2t+1, 2t+8, 2t+9} of the quarter's k16 step s (s = 0, 1) -- for
// A's rows g and g + 8 and B's column g alike. One LDS.64 per row per 2 MMA k-steps: the
// shared-memory bytes per MMA of ldmatrix on bf16. A half-warp's 16 loads (4 rows x 4 threads)
// cover the 32 banks once.
//
// Edges and forms: as the bf16 kernel -- the persistent TileScheduler over ragged-M groups (plus
// the zero-filled rows past offs[-1]) or batched problems, cp.async src-size zero-fill past M, N
// and K (a block past K reads zeros and any scale), element loads where a row pitch or origin is
// not 16-byte aligned (K % 16 != 0), gathered A rows (moe_mlp_fp8: rows and their scales read
// through a_gather), and the shared epilogue (epilogue.cuh: activation, row scale, dtype).
#pragma once

#include <algorithm>

#include "../common/launch.h"
#include "../common/memory.h"
#include "../common/ptx.h"
#include "../common/shared.h"
#include "grouped_gemm/epilogue.cuh"
#include "grouped_gemm/persistent.cuh"
#include "grouped_gemm/scheduler.cuh"
#include "grouped_gemm/cp_async_pipeline.cuh"
#include "grouped_mm_fp8.h"

namespace moe_ext::MOE_KERNEL_NS {

struct Fp8Tile {
  static constexpr int BM = 128, BN = 64, BK = kFp8ScaleBlock;  // BK: one scale block
  static constexpr int kWarpsM = 4, kWarpsN = 2, kThreads = 32 * kWarpsM * kWarpsN;
  static constexpr int kWarpM = BM / kWarpsM, kWarpN = BN / kWarpsN;
  static constexpr int kMmaM = kWarpM / 16, kMmaN = kWarpN / 8;
  static constexpr int kABytes = BM * BK, kBBytes = BN * BK;
  static constexpr int kScaleOffset = kABytes + kBBytes;  // a_scale[BM] floats, then b_scale
  static constexpr int kStageBytes = kScaleOffset + BM * 4 + 128;
  static constexpr int kMaxStages = 4;
  static_assert(BK == 128 && kStageBytes % 128 == 0, "128-byte rows, aligned stages");
  static_assert(kFp8ScaleBlock % BN == 0, "a tile's columns share one B scale block");
};

// Byte offset of 16-byte chunk c of row r in a tile of 128-byte rows (see the doc block).
MOE_DEVICE MOE_FORCEINLINE int fp8_chunk(int r, int c) {
  const int f = ((r & 3) << 1) | ((r >> 2) & 1);
  return r * 128 + ((c ^ f) << 4);
}

// Four e4m3 bytes b3 b2 b1 b0 -> the f16 pairs (b1, b0) and (b3, b2), each value times 2^-8.
MOE_DEVICE MOE_FORCEINLINE void e4m3x4_to_f16x2_scaled(uint32_t w, uint32_t& lo, uint32_t& hi) {
  lo = ((w & 0x80u) << 8) | ((w & 0x7fu) << 7) | ((w & 0x8000u) << 16) | ((w & 0x7f00u) << 15);
  hi = ((w & 0x800000u) >> 8) | ((w & 0x7f0000u) >> 9) | (w & 0x80000000u) |
       ((w & 0x7f000000u) >> 1);
}
constexpr float kFp8F16Unscale = 65536.f;  // 2^8 per operand

// Rows x 128 bytes of a K-major e4m3 operand into a stage: row r from src + r * pitch, or with
// `rows` (the gathered A) from base + rows[r] * pitch, rows[r] < 0 a zero row; rows >= rows_left
// and bytes >= k_left zero-filled.
template <int Rows, int Threads>
MOE_DEVICE MOE_FORCEINLINE void load_fp8_tile(unsigned char* smem, const unsigned char* src,
                                              int64_t pitch, int rows_left, int k_left, bool vec_ok,
                                              int tid, const int64_t* rows) {
  auto row_start = [&](int r, bool& live) -> const unsigned char* {
    if (rows == nullptr) return src + r * pitch;
    const int64_t idx = ld_shared(rows + r);
    live = live && idx >= 0;
    return src + (idx >= 0 ? idx : 0) * pitch;
  };
  if (vec_ok) {
    constexpr int kChunks = Rows * 8;
    static_assert(kChunks % Threads == 0, "whole chunks per thread");
    MOE_UNROLL for (int j = 0; j < kChunks / Threads; ++j) {
      const int i = tid + j * Threads, r = i / 8, c = i % 8;
      const int left = k_left - c * 16;
      bool live = r < rows_left && left > 0;
      const unsigned char* row = row_start(r < rows_left ? r : 0, live);
      const int bytes = live ? (left >= 16 ? 16 : left) : 0;
      cp_async<16>(smem + fp8_chunk(r, c), bytes ? row + c * 16 : src, bytes);
    }
  } else {
    for (int i = tid; i < Rows * 128; i += Threads) {
      const int r = i / 128, col = i % 128;
      bool live = r < rows_left && col < k_left;
      const unsigned char* row = row_start(r < rows_left ? r : 0, live);
      const unsigned char v = live ? ld_global(row + col) : static_cast<unsigned char>(0);
      st_shared(smem + fp8_chunk(r, col / 16) + col % 16, v);
    }
  }
}

template <bool kE4m3Mma>
__global__ void __launch_bounds__(Fp8Tile::kThreads, 1)
    grouped_mm_fp8_kernel(GroupedMmFp8Params fp, int stages) {
  // the e4m3 instruction where this compilation has it, else the f16 conversion (same result)
  constexpr bool kNativeE4m3 = kE4m3Mma && MOE_HAS_FP8_MMA;
  using Tile = Fp8Tile;
  constexpr int BM = Tile::BM, BN = Tile::BN, BK = Tile::BK, kThreads = Tile::kThreads;
  using Staging = EpilogueStaging<BM, BN>;
  const GroupedGemmParams& p = fp.gemm;
  MOE_SHARED_DYNAMIC(unsigned char, smem);
  const int tid = static_cast<int>(threadIdx.x), lane = tid % 32, warp = tid / 32;
  const int g = lane / 4, t = lane % 4;
  const int warp_m0 = (warp / Tile::kWarpsN) * Tile::kWarpM;
  const int warp_n0 = (warp % Tile::kWarpsN) * Tile::kWarpN;
  const bool gather = p.a_gather != nullptr;
  const int main_bytes =
      stages * Tile::kStageBytes > Staging::kBytes ? stages * Tile::kStageBytes : Staging::kBytes;
  int64_t* gathered_rows = reinterpret_cast<int64_t*>(smem + main_bytes);

  TileScheduler<BM, BN> scheduler(p);
  TileCoord tc;
  for (int tile = static_cast<int>(blockIdx.x); scheduler.find(tile, tc); tile += gridDim.x) {
    const unsigned char *a_tile, *b_tile;
    const float *a_scale_tile, *b_scale_tile;
    int m_left, n_left;
    int64_t k_total;
    bool a_vec, b_vec;
    {
      const GroupProblem q = group_problem(p, tc.problem);
      const int64_t m0 = static_cast<int64_t>(tc.tile_m) * BM,
                    n0 = static_cast<int64_t>(tc.tile_n) * BN;
      const auto* a_group = static_cast<const unsigned char*>(p.a) + (gather ? 0 : q.a_off);
      const auto* b_group = static_cast<const unsigned char*>(p.b) + q.b_off;
      a_vec =
          ((reinterpret_cast<uintptr_t>(a_group) | static_cast<uint64_t>(p.a_stride_m)) % 16) == 0;
      b_vec =
          ((reinterpret_cast<uintptr_t>(b_group) | static_cast<uint64_t>(p.b_stride_n)) % 16) == 0;
      a_tile = gather ? a_group : a_group + m0 * p.a_stride_m;
      b_tile = b_group + n0 * p.b_stride_n;
      if (gather) {
        a_scale_tile = fp.a_scale;
      } else if (p.form == GroupedGemmForm::kBatched) {
        a_scale_tile = fp.a_scale + tc.problem * fp.a_scale_stride_g + m0 * fp.a_scale_stride_m;
      } else {
        a_scale_tile = fp.a_scale + (q.start + m0) * fp.a_scale_stride_m;
      }
      // the tail problem (rows past offs[-1], k = 0) reads no scale
      const int64_t group = tc.problem < p.num_groups ? tc.problem : 0;
      b_scale_tile =
          fp.b_scale + group * fp.b_scale_stride_g + (n0 / kFp8ScaleBlock) * fp.b_scale_stride_n;
      m_left = static_cast<int>(q.m - m0 < BM ? q.m - m0 : BM);
      n_left = static_cast<int>(q.n - n0 < BN ? q.n - n0 : BN);
      k_total = q.k;
      if (gather) {  // the previous tile ended with a barrier: the table is free
        for (int r = tid; r < BM; r += kThreads) {
          const int32_t src = r < m_left ? ld_global_nc(p.a_gather + q.start + m0 + r) : -1;
          // entries outside [0, M) (never produced by sort_tokens) are zero rows
          st_shared(gathered_rows + r,
                    src >= 0 && src < p.m ? int64_t{src / p.a_gather_div} : int64_t{-1});
        }
        __syncthreads();
      }
    }
    const int k_tiles = static_cast<int>((k_total + BK - 1) / BK);

    auto load_stage = [&](int stage, int kt) {
      unsigned char* sa = smem + stage * Tile::kStageBytes;
      const int64_t k0 = static_cast<int64_t>(kt) * BK;
      const int k_left = static_cast<int>(k_total - k0 < BK ? k_total - k0 : BK);
      load_fp8_tile<BM, kThreads>(sa, a_tile + k0, p.a_stride_m, m_left, k_left, a_vec, tid,
                                  gather ? gathered_rows : nullptr);
      load_fp8_tile<BN, kThreads>(sa + Tile::kABytes, b_tile + k0, p.b_stride_n, n_left, k_left,
                                  b_vec, tid, nullptr);
      float* scales = reinterpret_cast<float*>(sa + Tile::kScaleOffset);
      if (tid < BM) {  // this row's scale of block kt (zeros past the tile's rows)
        int64_t row = tid;
        bool live = tid < m_left;
        if (gather) {
          row = ld_shared(gathered_rows + tid);
          live = live && row >= 0;
        }
        const float* src = a_scale_tile + (live ? row : 0) * fp.a_scale_stride_m + kt;
        cp_async<4>(scales + tid, live ? src : fp.a_scale, live ? 4 : 0);
      } else if (tid < BM + 32) {  // the next warp: B's scale in lane 0 (warp-uniform copies)
        const bool live = tid == BM;
        cp_async<4>(scales + tid, live ? b_scale_tile + kt : fp.b_scale, live ? 4 : 0);
      }
    };

    float acc[Tile::kMmaM][Tile::kMmaN][4];
    MOE_UNROLL for (int i = 0; i < Tile::kMmaM; ++i)
        MOE_UNROLL for (int j = 0; j < Tile::kMmaN; ++j) MOE_UNROLL for (int e = 0; e < 4; ++e)
            acc[i][j][e] = 0.f;

    cp_async_pipeline(stages, k_tiles, load_stage, [&](int stage, int) {
      const unsigned char* sa = smem + stage * Tile::kStageBytes;
      const unsigned char* sb = sa + Tile::kABytes;
      const float* scales = reinterpret_cast<const float*>(sa + Tile::kScaleOffset);

      float blk[Tile::kMmaM][Tile::kMmaN][4];
      MOE_UNROLL for (int i = 0; i < Tile::kMmaM; ++i)
          MOE_UNROLL for (int j = 0; j < Tile::kMmaN; ++j) MOE_UNROLL for (int e = 0; e < 4; ++e)
              blk[i][j][e] = 0.f;
      MOE_UNROLL for (int q = 0; q < 4; ++q) {  // 32 K bytes: thread t's are 32 q + 8 t ..
        uint2 ra[Tile::kMmaM][2], rb[Tile::kMmaN];
        const int chunk = 2 * q + (t >> 1), byte = (t & 1) * 8;
        MOE_UNROLL for (int mt = 0; mt < Tile::kMmaM; ++mt)
            MOE_UNROLL for (int rh = 0; rh < 2; ++rh) {
          const int row = warp_m0 + mt * 16 + g + rh * 8;
          ra[mt][rh] = ld_shared(reinterpret_cast<const uint2*>(sa + fp8_chunk(row, chunk) + byte));
        }
        MOE_UNROLL for (int nt = 0; nt < Tile::kMmaN; ++nt) {
          const int row = warp_n0 + nt * 8 + g;
          rb[nt] = ld_shared(reinterpret_cast<const uint2*>(sb + fp8_chunk(row, chunk) + byte));
        }
        if constexpr (kNativeE4m3) {  // one k32 MMA: bytes 0-3 the k slots 4t.., 4-7 16 + 4t..
          MOE_UNROLL for (int mt = 0; mt < Tile::kMmaM; ++mt) {
            const uint32_t fa[4] = {ra[mt][0].x, ra[mt][1].x, ra[mt][0].y, ra[mt][1].y};
            MOE_UNROLL for (int nt = 0; nt < Tile::kMmaN; ++nt) {
              const uint32_t fb[2] = {rb[nt].x, rb[nt].y};
              mma_m16n8k32_e4m3(blk[mt][nt], fa, fb, blk[mt][nt]);
            }
          }
          continue;  // (the next quarter)
        }
        MOE_UNROLL for (int s = 0; s < 2; ++s) {  // k16 step: bytes 4 s .. 4 s + 3 of the 8
          uint32_t fa[Tile::kMmaM][4], fb[Tile::kMmaN][2];
          MOE_UNROLL for (int mt = 0; mt < Tile::kMmaM; ++mt) {
            // row g: k slots 2t.. and 2t+8..; row g + 8 likewise
            e4m3x4_to_f16x2_scaled(s ? ra[mt][0].y : ra[mt][0].x, fa[mt][0], fa[mt][2]);
            e4m3x4_to_f16x2_scaled(s ? ra[mt][1].y : ra[mt][1].x, fa[mt][1], fa[mt][3]);
          }
          MOE_UNROLL for (int nt = 0; nt < Tile::kMmaN; ++nt)
              e4m3x4_to_f16x2_scaled(s ? rb[nt].y : rb[nt].x, fb[nt][0], fb[nt][1]);
          MOE_UNROLL for (int mt = 0; mt < Tile::kMmaM; ++mt)
              MOE_UNROLL for (int nt = 0; nt < Tile::kMmaN; ++nt)
                  mma_m16n8k16_f16(blk[mt][nt], fa[mt], fb[nt], blk[mt][nt]);
        }
      }
      // promote the block: acc += blk * a_scale[row] * b_scale * 2^16
      const float b_scale = ld_shared(scales + BM) * (kNativeE4m3 ? 1.f : kFp8F16Unscale);
      MOE_UNROLL for (int mt = 0; mt < Tile::kMmaM; ++mt)
          MOE_UNROLL for (int rh = 0; rh < 2; ++rh) {
        const float s = ld_shared(scales + warp_m0 + mt * 16 + g + rh * 8) * b_scale;
        MOE_UNROLL for (int nt = 0; nt < Tile::kMmaN; ++nt) MOE_UNROLL for (int e = 0; e < 2; ++e)
            acc[mt][nt][2 * rh + e] += blk[mt][nt][2 * rh + e] * s;
      }
    });
    // (the pipeline ends with a barrier: every warp is done with the stages, reuse them)

    float* staged = reinterpret_cast<float*>(smem);
    MOE_UNROLL for (int mt = 0; mt < Tile::kMmaM; ++mt)
        MOE_UNROLL for (int nt = 0; nt < Tile::kMmaN; ++nt)
            MOE_UNROLL for (int rh = 0; rh < 2; ++rh) {
      const int row = warp_m0 + mt * 16 + g + rh * 8, col = warp_n0 + nt * 8 + 2 * t;
      st_shared(reinterpret_cast<float2*>(staged + Staging::index(row, col)),
                float2{acc[mt][nt][2 * rh], acc[mt][nt][2 * rh + 1]});
    }
    __syncthreads();
    store_tile<BM, BN, kThreads>(staged, p, group_problem(p, tc.problem),
                                 static_cast<int64_t>(tc.tile_m) * BM,
                                 static_cast<int64_t>(tc.tile_n) * BN, tid);
    __syncthreads();  // the next tile's prologue overwrites the staging area
  }
}

}  // namespace moe_ext::MOE_KERNEL_NS

// The launcher (declared in the .h), for the target this translation unit compiles.
namespace moe_ext {

template <>
cudaError_t launch_grouped_mm_fp8<kKernelTarget>(const GroupedMmFp8Params& p, cudaStream_t stream) {
  using namespace MOE_KERNEL_NS;
  using Tile = Fp8Tile;
  if (p.gemm.m <= 0 || p.gemm.n <= 0) return cudaSuccess;  // out is empty
  if (can_implement(p) != nullptr) return cudaErrorInvalidValue;
  const DeviceLimits lim = device_limits();
  const size_t staging = EpilogueStaging<Tile::BM, Tile::BN>::kBytes;
  const size_t table = p.gemm.a_gather != nullptr ? Tile::BM * sizeof(int64_t) : 0;
  // one CTA per SM (the registers of 256 threads with 128 accumulators each): the deepest
  // pipeline the per-block shared memory holds
  int stages = p.gemm.stages > 0 ? std::min(std::max<int>(p.gemm.stages, 2), Tile::kMaxStages)
                                 : Tile::kMaxStages;
  auto bytes = [&](int s) {
    return std::max<size_t>(static_cast<size_t>(s) * Tile::kStageBytes, staging) + table;
  };
  while (stages > 2 && bytes(stages) > lim.smem_per_block_optin) --stages;
  const bool e4m3 =
      p.mma == kFp8MmaE4m3 || (p.mma == kFp8MmaAuto && lim.cc_major * 10 + lim.cc_minor >= 89);
  const int64_t tiles = grouped_gemm_detail::max_tiles(p.gemm, Tile::BM, Tile::BN);
  return e4m3 ? grouped_gemm_detail::launch_persistent("grouped_mm_fp8_kernel",
                                                       grouped_mm_fp8_kernel<true>, Tile::kThreads,
                                                       bytes(stages), tiles, stream, p, stages)
              : grouped_gemm_detail::launch_persistent("grouped_mm_fp8_kernel",
                                                       grouped_mm_fp8_kernel<false>, Tile::kThreads,
                                                       bytes(stages), tiles, stream, p, stages);
}

}  // namespace moe_ext
