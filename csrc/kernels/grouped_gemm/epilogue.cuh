// Epilogue of the grouped GEMM kernels: the fp32 accumulator tile staged in shared memory, then
// written to c with the bias, the activation (or the gated SwiGLU/GeGLU product) and the row
// scale (routing weights) applied, in the output dtype.
//
// Staging: every mainloop (tensor-core or SIMT) writes its accumulators into a BM x (BN + 8)
// fp32 array in shared memory (the pipeline buffers, reused), then the CTA copies it out row by
// row: thread i takes 8 consecutive columns of one row, adds bias[n] (fp32), converts, and
// issues one 16-byte store (bf16/fp16; two for fp32), consecutive threads on consecutive columns,
// so every warp writes whole 128-byte lines. Tails (rows past m, columns past n) and output
// addresses that are not 16-byte aligned (odd N, column offsets of the ragged-N form) fall back
// to element stores.
//
// Bank conflicts: fragment writes are float2 at (row g, column 2t) for g < 8, t < 4; the +8
// float pad puts rows 0..3 of a 16-lane phase 8 banks apart (conflict-free). Copy-out reads two
// float4 per thread (columns c..c+3, c+4..c+7 with c = 8j): unswizzled, threads j and j+4 of a
// quarter-warp would hit the same banks, so float4 q of a row is stored at q ^ ((q >> 3) & 1),
// which makes both reads conflict-free and keeps each fragment's float2 inside one float4.
#pragma once

#include <cmath>
#include <cstring>

#include "../../common/convert.h"
#include "../../common/fast_math.h"
#include "../../common/memory.h"
#include "../activation.cuh"
#include "grouped_gemm.h"
#include "scheduler.cuh"

namespace moe_ext::MOE_KERNEL_NS {

template <int BM, int BN>
struct EpilogueStaging {
  static constexpr int kStride = BN + 8;  // floats per staged row
  static constexpr int kBytes = BM * kStride * 4;
  static_assert(BN % 8 == 0, "the copy-out moves 8 columns per thread");
  MOE_DEVICE static MOE_FORCEINLINE int index(int row, int col) {
    return row * kStride + ((((col >> 2) ^ ((col >> 5) & 1)) << 2) | (col & 3));
  }
};

MOE_DEVICE MOE_FORCEINLINE float load_as_float(const void* base, int64_t i, GemmElem type) {
  switch (type) {
    case GemmElem::kBF16: return to_acc(ld_global_nc(static_cast<const __nv_bfloat16*>(base) + i));
    case GemmElem::kF16: return to_acc(ld_global_nc(static_cast<const __half*>(base) + i));
    default: return ld_global_nc(static_cast<const float*>(base) + i);
  }
}

template <typename T>
MOE_DEVICE MOE_FORCEINLINE uint32_t pack2(float lo, float hi) {
  const T l = from_acc<T>(lo), h = from_acc<T>(hi);
  uint16_t bl, bh;
  memcpy(&bl, &l, 2);
  memcpy(&bh, &h, 2);
  return static_cast<uint32_t>(bl) | (static_cast<uint32_t>(bh) << 16);
}

// Eight consecutive outputs at a 16-byte-aligned address.
MOE_DEVICE MOE_FORCEINLINE void store8(char* dst, const float (&v)[8], GemmElem type) {
  if (type == GemmElem::kF32) {
    st_global(reinterpret_cast<float4*>(dst), float4{v[0], v[1], v[2], v[3]});
    st_global(reinterpret_cast<float4*>(dst) + 1, float4{v[4], v[5], v[6], v[7]});
  } else if (type == GemmElem::kBF16) {
    st_global(reinterpret_cast<uint4*>(dst),
              uint4{pack2<__nv_bfloat16>(v[0], v[1]), pack2<__nv_bfloat16>(v[2], v[3]),
                    pack2<__nv_bfloat16>(v[4], v[5]), pack2<__nv_bfloat16>(v[6], v[7])});
  } else {
    st_global(reinterpret_cast<uint4*>(dst),
              uint4{pack2<__half>(v[0], v[1]), pack2<__half>(v[2], v[3]), pack2<__half>(v[4], v[5]),
                    pack2<__half>(v[6], v[7])});
  }
}

MOE_DEVICE MOE_FORCEINLINE void store1(char* dst, float v, GemmElem type) {
  if (type == GemmElem::kF32)
    st_global(reinterpret_cast<float*>(dst), v);
  else if (type == GemmElem::kBF16)
    st_global(reinterpret_cast<__nv_bfloat16*>(dst), from_acc<__nv_bfloat16>(v));
  else
    st_global(reinterpret_cast<__half*>(dst), from_acc<__half>(v));
}

// act(gate) * up, with the clamp of p.act_limit when it is set (see GemmActivation).
MOE_DEVICE MOE_FORCEINLINE float gated_activate(float gate, float up, const GroupedGemmParams& p) {
  return gated_activate(gate, up, p.activation, p.act_limit);
}

// Copies the staged tile (rows m0.., output columns n0.. of problem q) to c. Call after a
// barrier that follows the staging writes; the caller syncs again before reusing the staging
// memory. kGated: the staged tile holds BN/2 gate columns then BN/2 up columns, and c gets
// act(gate) * up (BN/2 columns); otherwise c gets act(acc + bias). Then the row scale.
template <int BM, int BN, int Threads, bool kGated = false>
MOE_DEVICE void store_tile(const float* staged, const GroupedGemmParams& p, const GroupProblem& q,
                           int64_t m0, int64_t n0, int tid) {
  using Staging = EpilogueStaging<BM, BN>;
  constexpr int kOutN = kGated ? BN / 2 : BN;
  const int64_t rows = q.m - m0 < BM ? q.m - m0 : BM;
  const int64_t cols = q.n - n0 < kOutN ? q.n - n0 : kOutN;
  const int out_bytes = gemm_elem_bytes(p.out_type);
  char* c = static_cast<char*>(p.c) + (q.c_off + m0 * p.c_stride_m + n0) * out_bytes;
  const int64_t row_bytes = p.c_stride_m * out_bytes;
  const bool vec_ok =
      ((reinterpret_cast<uintptr_t>(c) | static_cast<uint64_t>(row_bytes)) % 16) == 0;
  constexpr int kPerRow = kOutN / 8;
  for (int i = tid; i < BM * kPerRow; i += Threads) {
    const int r = i / kPerRow, col = (i % kPerRow) * 8;
    // every thread reads (the whole tile is staged), only valid positions are stored: the
    // shared-memory reads stay warp-uniform
    const float4 lo = ld_shared(reinterpret_cast<const float4*>(staged + Staging::index(r, col)));
    const float4 hi =
        ld_shared(reinterpret_cast<const float4*>(staged + Staging::index(r, col + 4)));
    float v[8] = {lo.x, lo.y, lo.z, lo.w, hi.x, hi.y, hi.z, hi.w};
    if constexpr (kGated) {
      const float4 ulo =
          ld_shared(reinterpret_cast<const float4*>(staged + Staging::index(r, col + kOutN)));
      const float4 uhi =
          ld_shared(reinterpret_cast<const float4*>(staged + Staging::index(r, col + kOutN + 4)));
      const float up[8] = {ulo.x, ulo.y, ulo.z, ulo.w, uhi.x, uhi.y, uhi.z, uhi.w};
      MOE_UNROLL for (int e = 0; e < 8; ++e) v[e] = gated_activate(v[e], up[e], p);
    }
    if (r >= rows || col >= cols) continue;
    const int valid = cols - col < 8 ? static_cast<int>(cols - col) : 8;
    if (!kGated && q.bias_off >= 0) {
      MOE_UNROLL for (int e = 0; e < 8; ++e) {  // constant indices: v stays in registers
        if (e < valid) v[e] += load_as_float(p.bias, q.bias_off + n0 + col + e, p.bias_type);
      }
    }
    if (!kGated && p.activation != GemmActivation::kNone) {
      MOE_UNROLL for (int e = 0; e < 8; ++e) v[e] = activate(v[e], p.activation);
    }
    if (p.row_scale != nullptr) {
      const int64_t row = q.start + m0 + r;                       // the sorted row (kRaggedM)
      const int32_t idx = ld_global_nc(p.row_scale_index + row);  // in [0, M) from sort_tokens
      const float scale =
          idx >= 0 && idx < p.m ? load_as_float(p.row_scale, idx, p.row_scale_type) : 0.f;
      MOE_UNROLL for (int e = 0; e < 8; ++e) v[e] *= scale;
    }
    char* dst = c + r * row_bytes + static_cast<int64_t>(col) * out_bytes;
    if (vec_ok && valid == 8) {
      store8(dst, v, p.out_type);
    } else {
      MOE_UNROLL for (int e = 0; e < 8; ++e) {
        if (e < valid) store1(dst + e * out_bytes, v[e], p.out_type);
      }
    }
  }
}

}  // namespace moe_ext::MOE_KERNEL_NS
