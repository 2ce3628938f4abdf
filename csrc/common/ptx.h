// The PTX wrapper header: every tensor-core and async-copy instruction a kernel uses, behind one
// set of functions that compiles on both paths (DESIGN.md principle 3, STYLE.md rule 6: these are
// the `cute/arch/` layer; tiling and layouts live in the kernels).
//
//   mma_m16n8k16_bf16(d, a, b, c)  mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32
//   mma_m16n8k16_f16(d, a, b, c)   mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32
//   mma_m16n8k8_tf32(d, a, b, c)   mma.sync.aligned.m16n8k8.row.col.f32.tf32.tf32.f32
//       D[16x8] = A[16xK] * B[Kx8] + C, one warp; per-lane fragments (a: 4 regs, b: 2, c/d: 4)
//       in the PTX ISA layouts (`ptx_layout` below; pinned by shared/golden/ptx_fragments.json).
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
// (nvcc: inline asm below, exactly as in the PTX ISA) and on the CPU SIMT emulator (g++: the
// `#else` branch), which can then check what the GPU cannot report: out-of-bounds and misaligned
// addresses, shared-memory races, reads of shared memory no one wrote, bank conflicts.
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
//     Products of bf16/fp16/tf32 values are exact in fp32, so this equals a sequential fp32 sum
//     of exact products. Hardware adds the K products with at least fp32 precision in an
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
//   hardware's exact accumulation order / internal precision inside an mma.
#pragma once

#include <cstdint>

#include "portable.h"

#if !defined(__CUDACC__)
#include <cmath>
#include <cstring>
#include <string>

#include "../simt/cuda_compat.h"
#endif

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
// ldmatrix m8n8 .b16: element e of a lane = half (e & 1) of register e >> 1 = matrix e >> 1.
MOE_HOST_DEVICE constexpr Coord ldmatrix_elem(int lane, int e, bool trans) {
  return trans ? Coord{e >> 1, 2 * (lane & 3) + (e & 1), lane >> 2}
               : Coord{e >> 1, lane >> 2, 2 * (lane & 3) + (e & 1)};
}

}  // namespace ptx_layout

#if defined(__CUDACC__)
// =========================================================================== GPU: inline PTX
// All of these need sm_80+ (the build's lowest arch).

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

#else
// ======================================================================= emulator (csrc/simt)
namespace ptx_emu {

constexpr unsigned kFullWarp = 0xffffffffu;

inline float bits_to_float(uint32_t u) {
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}
inline uint32_t float_to_bits(float f) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  return u;
}

inline float bf16_to_float(uint16_t h) { return bits_to_float(uint32_t{h} << 16); }

inline float f16_to_float(uint16_t h) {
  const uint32_t sign = (h & 0x8000u) << 16;
  const int exp = (h >> 10) & 0x1f;
  const uint32_t man = h & 0x3ffu;
  if (exp == 0x1f) return bits_to_float(sign | 0x7f800000u | (man << 13));  // inf / nan
  if (exp == 0) {                                                             // zero / subnormal
    const float f = std::ldexp(static_cast<float>(man), -24);
    return sign ? -f : f;
  }
  return bits_to_float(sign | (static_cast<uint32_t>(exp + 112) << 23) | (man << 13));
}

// cvt.rna.tf32.f32: keep 10 mantissa bits, round to nearest with ties away from zero (adding
// half an ulp to the magnitude bits and truncating); inf and nan pass through.
inline uint32_t round_tf32_bits(uint32_t u) {
  if ((u & 0x7f800000u) == 0x7f800000u) return u;
  return (u + 0x1000u) & 0xffffe000u;
}

enum class MmaKind { kBf16, kF16, kTf32 };

struct MmaIn {
  uint32_t a[4];
  uint32_t b[2];
  float c[4];
};

// The last lane of the warp to arrive computes the whole 16x8 tile from all lanes' fragments.
template <MmaKind Kind>
void mma_compute(::moe_simt::Collective& col, void*) {
  constexpr int K = Kind == MmaKind::kTf32 ? 8 : 16;
  float A[16][K], B[K][8], D[16][8];
  for (int lane = 0; lane < ::moe_simt::kWarpSize; ++lane) {
    MmaIn in;
    std::memcpy(&in, col.in[lane], sizeof(in));
    if constexpr (Kind == MmaKind::kTf32) {
      for (int e = 0; e < 4; ++e) {
        const auto p = ptx_layout::mma_m16n8k8_tf32_a(lane, e);
        A[p.row][p.col] = bits_to_float(round_tf32_bits(in.a[e]));
      }
      for (int e = 0; e < 2; ++e) {
        const auto p = ptx_layout::mma_m16n8k8_tf32_b(lane, e);
        B[p.row][p.col] = bits_to_float(round_tf32_bits(in.b[e]));
      }
    } else {
      auto widen = [](uint32_t reg, int half) {
        const auto h = static_cast<uint16_t>(reg >> (16 * half));
        return Kind == MmaKind::kBf16 ? bf16_to_float(h) : f16_to_float(h);
      };
      for (int e = 0; e < 8; ++e) {
        const auto p = ptx_layout::mma_m16n8k16_a(lane, e);
        A[p.row][p.col] = widen(in.a[e >> 1], e & 1);
      }
      for (int e = 0; e < 4; ++e) {
        const auto p = ptx_layout::mma_m16n8k16_b(lane, e);
        B[p.row][p.col] = widen(in.b[e >> 1], e & 1);
      }
    }
    for (int e = 0; e < 4; ++e) {
      const auto p = ptx_layout::mma_m16n8_c(lane, e);
      D[p.row][p.col] = in.c[e];
    }
  }
  // Documented accumulation order: k ascending, one fused multiply-add per product.
  for (int m = 0; m < 16; ++m)
    for (int n = 0; n < 8; ++n)
      for (int k = 0; k < K; ++k) D[m][n] = std::fmaf(A[m][k], B[k][n], D[m][n]);
  for (int lane = 0; lane < ::moe_simt::kWarpSize; ++lane) {
    float d[4];
    for (int e = 0; e < 4; ++e) {
      const auto p = ptx_layout::mma_m16n8_c(lane, e);
      d[e] = D[p.row][p.col];
    }
    std::memcpy(col.out[lane], d, sizeof(d));
  }
  ++::moe_simt::this_thread().block->stats.mma;
}

template <MmaKind Kind>
inline void mma(float (&d)[4], const uint32_t (&a)[4], const uint32_t (&b)[2],
                const float (&c)[4], const char* site) {
  MmaIn in;
  std::memcpy(in.a, a, sizeof(in.a));
  std::memcpy(in.b, b, sizeof(in.b));
  std::memcpy(in.c, c, sizeof(in.c));
  auto col = ::moe_simt::warp_collective(kFullWarp, &in, sizeof(in), nullptr, &mma_compute<Kind>,
                                         nullptr, site);
  std::memcpy(d, col->out[::moe_simt::this_thread().lane], sizeof(d));
}

// ldmatrix: lane i*8+r deposits row r of matrix i (16 bytes, read by that lane through the
// checker); the computing lane redistributes 16-bit elements per ptx_layout::ldmatrix_elem.
template <int Num, bool Trans>
void ldmatrix_compute(::moe_simt::Collective& col, void*) {
  for (int lane = 0; lane < ::moe_simt::kWarpSize; ++lane) {
    uint32_t r[Num];
    for (int e = 0; e < 2 * Num; ++e) {
      const auto p = ptx_layout::ldmatrix_elem(lane, e, Trans);
      uint16_t h;
      std::memcpy(&h, col.in[p.matrix * 8 + p.row] + 2 * p.col, 2);
      if (e & 1) r[e >> 1] |= uint32_t{h} << 16; else r[e >> 1] = h;
    }
    std::memcpy(col.out[lane], r, sizeof(r));
  }
}

template <int Num, bool Trans>
inline void ldmatrix(uint32_t (&r)[Num], const void* smem_row, const char* site) {
  ::moe_simt::Thread& t = ::moe_simt::this_thread();
  alignas(16) unsigned char row[16] = {};
  if (t.lane < 8 * Num) {
    const auto a = reinterpret_cast<uintptr_t>(smem_row);
    if (!::moe_simt::is_shared(smem_row))
      ::moe_simt::fail(std::string(site) + ": lane " + std::to_string(t.lane) +
                       "'s row address is not in shared memory");
    if (a % 16 != 0)
      ::moe_simt::fail(std::string(site) + ": lane " + std::to_string(t.lane) +
                       "'s row address is not 16-byte aligned");
    ::moe_simt::check_shared(smem_row, 16, false, site);
    std::memcpy(row, smem_row, 16);
  } else {
    ++t.shared_seq;  // no row from this lane, but keep the warp's instruction numbering aligned
  }
  auto col = ::moe_simt::warp_collective(kFullWarp, row, sizeof(row), smem_row,
                                         &ldmatrix_compute<Num, Trans>, nullptr, site);
  std::memcpy(r, col->out[t.lane], sizeof(r));
}

// Lands one copy: the bytes read from global (src_bytes) and the zero fill, as a shared write.
inline void cp_async_land(const ::moe_simt::CpAsyncCopy& cp) {
  ::moe_simt::check_shared(cp.dst, cp.bytes, true, "cp.async");
  auto* dst = static_cast<unsigned char*>(cp.dst);
  if (cp.src_bytes) std::memcpy(dst, cp.src, cp.src_bytes);
  std::memset(dst + cp.src_bytes, 0, cp.bytes - cp.src_bytes);
}

inline void cp_async_wait_groups(size_t keep) {
  auto& groups = ::moe_simt::this_thread().cp_groups;
  while (groups.size() > keep) {
    for (const auto& cp : groups.front()) cp_async_land(cp);
    groups.erase(groups.begin());
  }
}

}  // namespace ptx_emu

inline uint32_t cvt_rna_tf32(float x) {
  return ptx_emu::round_tf32_bits(ptx_emu::float_to_bits(x));
}

inline void mma_m16n8k16_bf16(float (&d)[4], const uint32_t (&a)[4], const uint32_t (&b)[2],
                              const float (&c)[4]) {
  ptx_emu::mma<ptx_emu::MmaKind::kBf16>(d, a, b, c, "mma.sync.m16n8k16.bf16");
}
inline void mma_m16n8k16_f16(float (&d)[4], const uint32_t (&a)[4], const uint32_t (&b)[2],
                             const float (&c)[4]) {
  ptx_emu::mma<ptx_emu::MmaKind::kF16>(d, a, b, c, "mma.sync.m16n8k16.f16");
}
inline void mma_m16n8k8_tf32(float (&d)[4], const uint32_t (&a)[4], const uint32_t (&b)[2],
                             const float (&c)[4]) {
  ptx_emu::mma<ptx_emu::MmaKind::kTf32>(d, a, b, c, "mma.sync.m16n8k8.tf32");
}

inline void ldmatrix_x1(uint32_t (&r)[1], const void* smem_row) {
  ptx_emu::ldmatrix<1, false>(r, smem_row, "ldmatrix.x1");
}
inline void ldmatrix_x2(uint32_t (&r)[2], const void* smem_row) {
  ptx_emu::ldmatrix<2, false>(r, smem_row, "ldmatrix.x2");
}
inline void ldmatrix_x4(uint32_t (&r)[4], const void* smem_row) {
  ptx_emu::ldmatrix<4, false>(r, smem_row, "ldmatrix.x4");
}
inline void ldmatrix_x1_trans(uint32_t (&r)[1], const void* smem_row) {
  ptx_emu::ldmatrix<1, true>(r, smem_row, "ldmatrix.x1.trans");
}
inline void ldmatrix_x2_trans(uint32_t (&r)[2], const void* smem_row) {
  ptx_emu::ldmatrix<2, true>(r, smem_row, "ldmatrix.x2.trans");
}
inline void ldmatrix_x4_trans(uint32_t (&r)[4], const void* smem_row) {
  ptx_emu::ldmatrix<4, true>(r, smem_row, "ldmatrix.x4.trans");
}

template <int Bytes>
inline void cp_async(void* smem_dst, const void* gmem_src, int src_bytes = Bytes) {
  static_assert(Bytes == 4 || Bytes == 8 || Bytes == 16, "cp.async copies 4, 8 or 16 bytes");
  auto fail = [](const std::string& why) {
    ::moe_simt::fail("cp.async." + std::to_string(Bytes) + ": " + why);
  };
  if (!::moe_simt::is_shared(smem_dst)) fail("destination is not in shared memory");
  const auto dst = reinterpret_cast<uintptr_t>(smem_dst);
  const auto src = reinterpret_cast<uintptr_t>(gmem_src);
  if (dst % Bytes || src % Bytes)
    fail("source and destination must be " + std::to_string(Bytes) + "-byte aligned");
  if (src_bytes < 0 || src_bytes > Bytes)
    fail("src_bytes " + std::to_string(src_bytes) + " outside [0, " + std::to_string(Bytes) + "]");
  if (src_bytes > 0) ::moe_simt::check_global(gmem_src, src_bytes, false, "cp.async read");
  ::moe_simt::poison_shared(smem_dst, Bytes);  // undefined until its group is waited for
  ::moe_simt::this_thread().cp_open.push_back(
      {smem_dst, gmem_src, static_cast<uint32_t>(Bytes), static_cast<uint32_t>(src_bytes)});
}

inline void cp_async_commit() {
  auto& t = ::moe_simt::this_thread();
  t.cp_groups.push_back(std::move(t.cp_open));  // an empty group is legal, as in PTX
  t.cp_open.clear();
}

template <int N>
inline void cp_async_wait() {
  static_assert(N >= 0, "cp.async.wait_group N needs N >= 0");
  ptx_emu::cp_async_wait_groups(N);
}

inline void cp_async_wait_all() {
  cp_async_commit();
  ptx_emu::cp_async_wait_groups(0);
}

#endif  // __CUDACC__

}  // namespace moe_ext
