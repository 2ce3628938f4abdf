// The CPU SIMT emulator's implementation of common/ptx.h (mma, ldmatrix, cp.async, cvt): the
// non-__CUDACC__ side of that header, included by it at its end. Only the emulator's build puts
// csrc/simt/include on the include path (cmake/emu.cmake), so this is never seen by nvcc. The
// semantics (warp collectives, late-landing cp.async, checked accesses) are documented in
// common/ptx.h.
#pragma once

#include <cmath>
#include <cstdint>
#include <cstring>
#include <string>

#include "../../cuda_compat.h"
#include "../../runtime.h"
#include "../../../common/fp8.h"  // e4m3_to_f32

namespace moe_ext {

namespace ptx_emu {

constexpr unsigned kFullWarp = 0xffffffffu;

// ptx_sm90.h's shared_address: the offset of a shared-memory pointer in the block's shared memory.
inline uint32_t shared_address(const void* p) {
  const auto* base = ::moe_simt::this_thread().block->shared.data();
  return static_cast<uint32_t>(reinterpret_cast<uintptr_t>(p) - reinterpret_cast<uintptr_t>(base));
}

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
  if (exp == 0) {                                                           // zero / subnormal
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

enum class MmaKind { kBf16, kF16, kTf32, kE4m3 };

struct MmaIn {
  uint32_t a[4];
  uint32_t b[2];
  float c[4];
};

// The last lane of the warp to arrive computes the whole 16x8 tile from all lanes' fragments.
template <MmaKind Kind>
void mma_compute(::moe_simt::Collective& col, void*) {
  constexpr int K = Kind == MmaKind::kTf32 ? 8 : Kind == MmaKind::kE4m3 ? 32 : 16;
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
    } else if constexpr (Kind == MmaKind::kE4m3) {  // four bytes per register, low first
      for (int e = 0; e < 16; ++e) {
        const auto p = ptx_layout::mma_m16n8k32_8bit_a(lane, e);
        A[p.row][p.col] = e4m3_to_f32(static_cast<uint8_t>(in.a[e >> 2] >> (8 * (e & 3))));
      }
      for (int e = 0; e < 8; ++e) {
        const auto p = ptx_layout::mma_m16n8k32_8bit_b(lane, e);
        B[p.row][p.col] = e4m3_to_f32(static_cast<uint8_t>(in.b[e >> 2] >> (8 * (e & 3))));
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
inline void mma(float (&d)[4], const uint32_t (&a)[4], const uint32_t (&b)[2], const float (&c)[4],
                const char* site) {
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
      if (e & 1)
        r[e >> 1] |= uint32_t{h} << 16;
      else
        r[e >> 1] = h;
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

inline void mma_m16n8k32_e4m3(float (&d)[4], const uint32_t (&a)[4], const uint32_t (&b)[2],
                              const float (&c)[4]) {
  ptx_emu::mma<ptx_emu::MmaKind::kE4m3>(d, a, b, c, "mma.sync.m16n8k32.e4m3");
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

}  // namespace moe_ext
