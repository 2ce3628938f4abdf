// The epilogue of the sm_90a grouped GEMM (hopper.cuh), per consumer warp: bias, activation or
// act(gate) * up, row scale and the output dtype applied to the warp's accumulator fragments,
// staged as 128-byte-swizzled TMA store boxes (swizzle128, common/swizzle.h), and the st.global
// fallback for a ragged-M box that would reach into the next group's rows. (The TMA stores
// themselves and the fp32 staging path for outputs TMA cannot address are in the kernel body
// and epilogue.cuh.)
#pragma once

#include "../../common/memory.h"
#include "../../common/ptx_sm90.h"
#include "../../common/shared.h"
#include "../../common/swizzle.h"
#include "epilogue.cuh"
#include "grouped_gemm.h"
#include "sm90_config.cuh"

namespace moe_ext::MOE_KERNEL_NS {

namespace sm90_detail {

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

// The routing weights of a consumer warp's 32 rows of the tile (lane l: row m0 + l for l < 16,
// m0 + 64 + l - 16 after: the warp's rows of both halves) into `scales` (shared, 32 floats):
// p.row_scale[p.row_scale_index[row]], 0 past the problem or for an index outside [0, M).
// Called at the tile's start, before the warpgroup waits for its mainloop turn: the two
// dependent global loads complete while the other warpgroup's MMAs run, and nothing stays in
// registers across the mainloop (a 128 x 128 accumulator leaves none to spare).
MOE_DEVICE MOE_FORCEINLINE void stage_row_scales(float* scales, const GroupedGemmParams& p,
                                                 const GroupProblem& q, int64_t m0, int lane) {
  const int64_t r = m0 + (lane < 16 ? lane : 48 + lane);
  float v = 0.f;
  if (r < q.m) {
    const int32_t idx = ld_global_nc(p.row_scale_index + q.start + r);
    if (idx >= 0 && idx < p.m) v = load_as_float(p.row_scale, idx, p.row_scale_type);
  }
  st_shared(scales + lane, v);
  __syncwarp();
}

// The staged routing weights of the fragment rows lane / 4 (+ 8) of half h (1 without a scale).
MOE_DEVICE MOE_FORCEINLINE void row_scales(float (&scale)[2], const float* scales,
                                           const GroupedGemmParams& p, int h, int lane) {
  MOE_UNROLL for (int e = 0; e < 2; ++e) scale[e] =
      p.row_scale == nullptr ? 1.f : ld_shared(scales + 16 * h + lane / 4 + 8 * e);
}

// The epilogue applied to a consumer warp's accumulator fragments (16 rows from m0 of problem
// q, output columns from n0; d as wgmma_m64n128k16 lays it out), staged as TMA store boxes.
// kActivate: p.activation is applied (moe_mlp's first GEMM only; compiled out elsewhere, since
// 64 unrolled copies of every activation double the kernel's code: 12 k vs 5.5 k instructions).
template <bool kGated, bool kActivate>
MOE_DEVICE void stage_output(const float (&d)[64], const float (&scale)[2], unsigned char* staged,
                             const GroupedGemmParams& p, const GroupProblem& q, int64_t n0,
                             int lane) {
  constexpr int kOutN = kGated ? sm90::BN / 2 : sm90::BN;
  const int g = lane / 4, t = lane % 4;
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
          v[e] = gated_activate(d[4 * j + 2 * h + e], d[4 * (j + kOutN / 8) + 2 * h + e], p);
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

}  // namespace moe_ext::MOE_KERNEL_NS
