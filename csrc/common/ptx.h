// The PTX wrapper header: every tensor-core and async-copy instruction a kernel uses, behind one
// set of functions that compiles on both paths (DESIGN.md principle 3, STYLE.md rule 6: these are
// the `cute/arch/` layer; tiling and layouts live in the kernels).
//
//   mma_m16n8k16_bf16(d, a, b, c)  mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32
//   mma_m16n8k16_f16(d, a, b, c)   mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32
//   mma_m16n8k8_tf32(d, a, b, c)   mma.sync.aligned.m16n8k8.row.col.f32.tf32.tf32.f32
//   mma_m16n8k32_e4m3(d, a, b, c)  mma.sync.aligned.m16n8k32.row.col.f32.e4m3.e4m3.f32 (sm_89+;
//       four e4m3 bytes per register; on older archs a trap: callers guard it, see
//       MOE_HAS_FP8_MMA)
//       D[16x8] = A[16xK] * B[Kx8] + C, one warp; per-lane fragments (a: 4 regs, b: 2, c/d: 4)
//       in the PTX ISA layouts (`ptx_layout` below; pinned by shared/golden/ptx_fragments.json,
//       the 8-bit ones by tests/golden/ptx_fragments_fp8.json).
//   ldmatrix_x{1,2,4}[_trans](r, smem_row)   ldmatrix.sync.aligned.m8n8.x{1,2,4}[.trans].shared.b16
//       Loads 1/2/4 8x8 matrices of 16-bit elements from shared memory; each lane passes the
//       address of one 16-byte row (lanes 0-7: rows of matrix 0, 8-15: matrix 1, ...; x1 uses
//       lanes 0-7's addresses, x2 lanes 0-15's). Register i of every lane holds part of matrix i:
//       row lane/4, columns 2*(lane%4) and +1 (with .trans: the transposed matrix).
//   cp_async<Bytes>(smem_dst, gmem_src, src_bytes = Bytes)   cp.async.{ca (4, 8), cg (16)}
//       Asynchronous global->shared copy of Bytes bytes (4, 8 or 16; both addresses aligned to
//       Bytes). Only src_bytes (0..Bytes) are read, the rest of the destination is zero-filled;
//       src_bytes == 0 reads nothing, so out-of-bounds tile rows are passed with 0, not skipped.
//   cp_async_commit()        cp.async.commit_group: closes a group of the copies issued so far.
//   cp_async_wait<N>()       cp.async.wait_group N: until at most N committed groups are pending.
//   cp_async_wait_all()      cp.async.wait_all (== commit + wait_group 0).
//   cvt_rna_tf32(x)          cvt.rna.tf32.f32: round an fp32 to tf32 (nearest, ties away).
//
// Why one header: kernels never write PTX themselves, so the same kernel source runs on the GPU
// (nvcc: inline asm below, exactly as in the PTX ISA) and on the CPU SIMT emulator (g++:
// csrc/simt/include/moe_emu/ptx.h), which can then check what the GPU cannot report:
// out-of-bounds and misaligned addresses, shared-memory races, reads of shared memory no one
// wrote, bank conflicts.
//
// Emulator semantics:
//   * mma and ldmatrix are warp collectives (moe_simt::warp_collective) over the full warp, as
//     .sync.aligned requires: all 32 lanes deposit their operands, the last lane to arrive
//     computes, every lane reads its result back. A lane missing (divergence, early exit)
//     deadlocks and is reported. Each mma adds 1 to LaunchStats::mma (per warp instruction).
//   * mma arithmetic: inputs are widened to fp32 (tf32 inputs first rounded like cvt.rna.tf32;
//     the ISA expects .tf32 operands already in tf32 format and the hardware does not round an
//     unrounded fp32 that way, so kernels convert with cvt_rna_tf32 to match on both paths), then
//     d[m][n] = fmaf(a[m][k], b[k][n], d) for k = 0, 1, ..., K-1 in order, starting from c.
//     Products of bf16/fp16/tf32/e4m3 values are exact in fp32, so this equals a sequential
//     fp32 sum of exact products. Hardware adds the K products with at least fp32 precision in an
//     unspecified order, so GPU and emulator agree to fp32 rounding, not bit for bit.
//   * ldmatrix: each participating lane reads its own 16-byte row through check_shared (bounds,
//     16-byte alignment, races, uninitialised bytes), so the 8 rows of one matrix form one
//     quarter-warp request in the bank-conflict statistics, as on the GPU.
//   * cp.async completes LATE, on purpose: at issue the source is bounds-checked (check_global of
//     src_bytes) and the destination is poisoned (0xA5 bytes, marked unwritten); the bytes land
//     in shared memory only when the issuing thread's cp_async_wait retires the group (written
//     through check_shared). A kernel that reads a stage before waiting for it therefore reads
//     "uninitialized" shared memory and the launch fails; a thread that exits with copies never
//     waited for fails too (runtime.cpp, thread_entry). The source is read at landing time.
//   Not modelled: the timing of asynchronous copies, cache levels (.ca/.cg/L2 hints), and the
//   hardware's exact accumulation order / internal precision inside an mma (Hopper's fp8
//   tensor cores keep fewer bits than fp32 while adding products, DeepGEMM's reason for
//   promoting every 128-wide K block; the emulator adds them in fp32).
#pragma once

#include <cstdint>

#include "portable.h"

namespace moe_ext {

// ------------------------------------------------------------------------------------------
// Fragment layouts, from the PTX ISA formulas (groupID = lane >> 2, threadID_in_group = lane % 4).
// `e` indexes a lane's fragment elements in register order; for 16-bit types two per register,
// low half first. The emulator computes with exactly these functions, and tests compare them with
// shared/golden/ptx_fragments.json.
namespace ptx_layout {

struct Coord {
  int matrix;  // ldmatrix: which 8x8 matrix (register index); 0 for mma fragments
  int row;
  int col;
};

// m16n8k16 (bf16/f16) A: 16x16 row-major, 8 elements (4 regs) per lane.
MOE_HOST_DEVICE constexpr Coord mma_m16n8k16_a(int lane, int e) {
  return {0, (lane >> 2) + 8 * ((e >> 1) & 1), 2 * (lane & 3) + (e & 1) + 8 * (e >> 2)};
}
// m16n8k16 B: 16x8 (k x n), 4 elements (2 regs) per lane.
MOE_HOST_DEVICE constexpr Coord mma_m16n8k16_b(int lane, int e) {
  return {0, 2 * (lane & 3) + (e & 1) + 8 * (e >> 1), lane >> 2};
}
// C/D of m16n8k16 and m16n8k8: 16x8 fp32, 4 elements per lane.
MOE_HOST_DEVICE constexpr Coord mma_m16n8_c(int lane, int e) {
  return {0, (lane >> 2) + 8 * (e >> 1), 2 * (lane & 3) + (e & 1)};
}
// m16n8k8 tf32 A: 16x8 row-major, 4 elements (one 32-bit reg each) per lane.
MOE_HOST_DEVICE constexpr Coord mma_m16n8k8_tf32_a(int lane, int e) {
  return {0, (lane >> 2) + 8 * (e & 1), (lane & 3) + 4 * (e >> 1)};
}
// m16n8k8 tf32 B: 8x8 (k x n), 2 elements per lane.
MOE_HOST_DEVICE constexpr Coord mma_m16n8k8_tf32_b(int lane, int e) {
  return {0, (lane & 3) + 4 * e, lane >> 2};
}
// m16n8k32 (8-bit types: e4m3, e5m2, s8) A: 16x32 row-major, 16 elements (4 regs of 4 bytes,
// low byte first) per lane: regs 0/2 row g, regs 1/3 row g + 8; columns 4t.. (regs 0, 1) and
// 16 + 4t.. (regs 2, 3).
MOE_HOST_DEVICE constexpr Coord mma_m16n8k32_8bit_a(int lane, int e) {
  return {0, (lane >> 2) + 8 * ((e >> 2) & 1), 4 * (lane & 3) + (e & 3) + 16 * (e >> 3)};
}
// m16n8k32 8-bit B: 32x8 (k x n), 8 elements (2 regs) per lane: k 4t.. (reg 0), 16 + 4t.. (reg 1).
MOE_HOST_DEVICE constexpr Coord mma_m16n8k32_8bit_b(int lane, int e) {
  return {0, 4 * (lane & 3) + (e & 3) + 16 * (e >> 2), lane >> 2};
}
// ldmatrix m8n8 .b16: element e of a lane = half (e & 1) of register e >> 1 = matrix e >> 1.
MOE_HOST_DEVICE constexpr Coord ldmatrix_elem(int lane, int e, bool trans) {
  return trans ? Coord{e >> 1, 2 * (lane & 3) + (e & 1), lane >> 2}
               : Coord{e >> 1, lane >> 2, 2 * (lane & 3) + (e & 1)};
}

}  // namespace ptx_layout

// Whether this compilation has the fp8 mma.sync (sm_89+; the emulator models an sm_90).
#if !defined(__CUDACC__) || (defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 890)
#define MOE_HAS_FP8_MMA 1
#else
#define MOE_HAS_FP8_MMA 0
#endif

#if defined(__CUDACC__)
// =========================================================================== GPU: inline PTX
// All of these need sm_80+ (the build's lowest arch), mma_m16n8k32_e4m3 sm_89+.

MOE_DEVICE MOE_FORCEINLINE uint32_t cvt_rna_tf32(float x) {
  uint32_t r;
  asm("cvt.rna.tf32.f32 %0, %1;\n" : "=r"(r) : "f"(x));
  return r;
}

MOE_DEVICE MOE_FORCEINLINE void mma_m16n8k16_bf16(float (&d)[4], const uint32_t (&a)[4],
                                                  const uint32_t (&b)[2], const float (&c)[4]) {
  asm volatile(
      "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 "
      "{%0, %1, %2, %3}, {%4, %5, %6, %7}, {%8, %9}, {%10, %11, %12, %13};\n"
      : "=f"(d[0]), "=f"(d[1]), "=f"(d[2]), "=f"(d[3])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]), "f"(c[0]), "f"(c[1]),
        "f"(c[2]), "f"(c[3]));
}

MOE_DEVICE MOE_FORCEINLINE void mma_m16n8k16_f16(float (&d)[4], const uint32_t (&a)[4],
                                                 const uint32_t (&b)[2], const float (&c)[4]) {
  asm volatile(
      "mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 "
      "{%0, %1, %2, %3}, {%4, %5, %6, %7}, {%8, %9}, {%10, %11, %12, %13};\n"
      : "=f"(d[0]), "=f"(d[1]), "=f"(d[2]), "=f"(d[3])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]), "f"(c[0]), "f"(c[1]),
        "f"(c[2]), "f"(c[3]));
}

MOE_DEVICE MOE_FORCEINLINE void mma_m16n8k8_tf32(float (&d)[4], const uint32_t (&a)[4],
                                                 const uint32_t (&b)[2], const float (&c)[4]) {
  asm volatile(
      "mma.sync.aligned.m16n8k8.row.col.f32.tf32.tf32.f32 "
      "{%0, %1, %2, %3}, {%4, %5, %6, %7}, {%8, %9}, {%10, %11, %12, %13};\n"
      : "=f"(d[0]), "=f"(d[1]), "=f"(d[2]), "=f"(d[3])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]), "f"(c[0]), "f"(c[1]),
        "f"(c[2]), "f"(c[3]));
}

MOE_DEVICE MOE_FORCEINLINE void mma_m16n8k32_e4m3(float (&d)[4], const uint32_t (&a)[4],
                                                  const uint32_t (&b)[2], const float (&c)[4]) {
#if MOE_HAS_FP8_MMA
  asm volatile(
      "mma.sync.aligned.m16n8k32.row.col.f32.e4m3.e4m3.f32 "
      "{%0, %1, %2, %3}, {%4, %5, %6, %7}, {%8, %9}, {%10, %11, %12, %13};\n"
      : "=f"(d[0]), "=f"(d[1]), "=f"(d[2]), "=f"(d[3])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]), "f"(c[0]), "f"(c[1]),
        "f"(c[2]), "f"(c[3]));
#else
  __trap();  // no fp8 mma before sm_89: callers take another path (MOE_HAS_FP8_MMA)
#endif
}

// ldmatrix: the shared-window address of this lane's row. No "memory" clobber (as in CUTLASS):
// kernels order shared stores before it with __syncthreads/__syncwarp, which are compiler fences.
MOE_DEVICE MOE_FORCEINLINE uint32_t smem_u32(const void* p) {
  return static_cast<uint32_t>(__cvta_generic_to_shared(p));
}

MOE_DEVICE MOE_FORCEINLINE void ldmatrix_x1(uint32_t (&r)[1], const void* smem_row) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x1.shared.b16 {%0}, [%1];\n"
               : "=r"(r[0])
               : "r"(smem_u32(smem_row)));
}
MOE_DEVICE MOE_FORCEINLINE void ldmatrix_x2(uint32_t (&r)[2], const void* smem_row) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x2.shared.b16 {%0, %1}, [%2];\n"
               : "=r"(r[0]), "=r"(r[1])
               : "r"(smem_u32(smem_row)));
}
MOE_DEVICE MOE_FORCEINLINE void ldmatrix_x4(uint32_t (&r)[4], const void* smem_row) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0, %1, %2, %3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(smem_u32(smem_row)));
}
MOE_DEVICE MOE_FORCEINLINE void ldmatrix_x1_trans(uint32_t (&r)[1], const void* smem_row) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x1.trans.shared.b16 {%0}, [%1];\n"
               : "=r"(r[0])
               : "r"(smem_u32(smem_row)));
}
MOE_DEVICE MOE_FORCEINLINE void ldmatrix_x2_trans(uint32_t (&r)[2], const void* smem_row) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x2.trans.shared.b16 {%0, %1}, [%2];\n"
               : "=r"(r[0]), "=r"(r[1])
               : "r"(smem_u32(smem_row)));
}
MOE_DEVICE MOE_FORCEINLINE void ldmatrix_x4_trans(uint32_t (&r)[4], const void* smem_row) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0, %1, %2, %3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(smem_u32(smem_row)));
}

// cp.async: .ca (L1 + L2) for 4/8 bytes, .cg (L2 only; 16 bytes is its only size) for 16.
template <int Bytes>
MOE_DEVICE MOE_FORCEINLINE void cp_async(void* smem_dst, const void* gmem_src,
                                         int src_bytes = Bytes) {
  static_assert(Bytes == 4 || Bytes == 8 || Bytes == 16, "cp.async copies 4, 8 or 16 bytes");
  if constexpr (Bytes == 16) {
    asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(smem_u32(smem_dst)),
                 "l"(gmem_src), "r"(src_bytes)
                 : "memory");
  } else {
    asm volatile("cp.async.ca.shared.global [%0], [%1], %2, %3;\n" ::"r"(smem_u32(smem_dst)),
                 "l"(gmem_src), "n"(Bytes), "r"(src_bytes)
                 : "memory");
  }
}

MOE_DEVICE MOE_FORCEINLINE void cp_async_commit() {
  asm volatile("cp.async.commit_group;\n" ::: "memory");
}

template <int N>
MOE_DEVICE MOE_FORCEINLINE void cp_async_wait() {
  static_assert(N >= 0, "cp.async.wait_group N needs N >= 0");
  asm volatile("cp.async.wait_group %0;\n" ::"n"(N) : "memory");
}

MOE_DEVICE MOE_FORCEINLINE void cp_async_wait_all() {
  asm volatile("cp.async.wait_all;\n" ::: "memory");
}

#endif  // __CUDACC__

}  // namespace moe_ext

#if !defined(__CUDACC__)
// The emulator's implementation of the functions above: csrc/simt/include/moe_emu/ptx.h, found
// through the include path that only the emulator build adds (cmake/emu.cmake).
#include <moe_emu/ptx.h>
#endif
