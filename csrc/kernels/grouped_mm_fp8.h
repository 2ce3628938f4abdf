// Host-side interface of the block-FP8 grouped GEMM (grouped_mm_fp8.cuh; DESIGN.md "Contract
// additions", grouped_mm_fp8): DeepSeek-V3's scaling, one fp32 scale per row (A) or per 128
// columns (B) and per 128-wide K block, each block's partial sum kept in fp32 and promoted with
// its two scales. Torch-free.
//
//   out[m, n] = sum_kb a_scale[m, kb] * b_scale[g, n / 128, kb] * sum_{k in kb} a[m, k] * b[g, n,
//   k]
//
// The problem reuses GroupedGemmParams (grouped_gemm.h) for what the bf16 GEMM also has -- the
// form (kRaggedM with offs, or kBatched), extents, strides (in elements = bytes of e4m3), the
// output, the optional gathered A rows and the epilogue (activation, row scale) -- and adds the
// scales. Both operands are K-major (a[M, K], b[G, N, K], HF/vLLM weight layout).
#pragma once

#include <cstdint>

#include "../common/launcher.h"
#include "grouped_gemm/grouped_gemm.h"

namespace moe_ext {

constexpr int kFp8ScaleBlock = 128;  // the K block and B's N block of one scale

// Which tensor-core instruction multiplies the e4m3 tiles (MOE_EXT_FP8_MMA=auto|f16|e4m3):
// kFp8MmaF16 converts them to f16 in registers (exact) for m16n8k16 f16 MMAs, every arch;
// kFp8MmaE4m3 issues m16n8k32 e4m3 MMAs (sm_89+: native on Ada, twice the f16 rate there;
// on sm_90a ptxas lowers them to hardware e4m3 -> f16 unpacks (F2FP) + f16 HMMA, fewer
// instructions than the integer conversion -- Hopper's fp8 tensor-core rate needs wgmma; a
// build without the instruction for the running arch, e.g. the compute_80 PTX JIT-compiled on
// sm_89, computes the f16 way); kFp8MmaAuto: e4m3 from compute capability 8.9 on.
enum Fp8Mma : int32_t { kFp8MmaAuto = 0, kFp8MmaF16 = 1, kFp8MmaE4m3 = 2 };

struct GroupedMmFp8Params {
  GroupedGemmParams gemm;  // a, b: float8_e4m3fn bits; a_k_major = b_k_major = true
  const float* a_scale;    // [(G,) M, ceil(K / 128)], unit stride along the K blocks; with
  int64_t a_scale_stride_g, a_scale_stride_m;  // gemm.a_gather: indexed like a's rows
  const float* b_scale;                        // [G, ceil(N / 128), ceil(K / 128)], unit along K
  int64_t b_scale_stride_g, b_scale_stride_n;
  int32_t mma = kFp8MmaAuto;  // Fp8Mma
};

inline const char* can_implement(const GroupedMmFp8Params& p) {
  const GroupedGemmParams& g = p.gemm;
  if (g.form != GroupedGemmForm::kRaggedM && g.form != GroupedGemmForm::kBatched)
    return "the FP8 grouped GEMM takes the ragged-M (2D x 3D) and batched (3D x 3D) forms";
  if (!g.a_k_major || !g.b_k_major) return "the FP8 grouped GEMM needs K-major a and b";
  if (g.gated) return "the FP8 grouped GEMM has no gated epilogue";
  if (g.a_gather != nullptr && (g.form != GroupedGemmForm::kRaggedM || g.a_gather_div <= 0))
    return "a gathered A needs the ragged-M form and a positive gather divisor";
  return nullptr;
}

// The FP8 grouped GEMM on `stream` (kCuda) or the emulator (kEmu); see common/launcher.h.
template <Target T>
cudaError_t launch_grouped_mm_fp8(const GroupedMmFp8Params& params, cudaStream_t stream);

}  // namespace moe_ext
