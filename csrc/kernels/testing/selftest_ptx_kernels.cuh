// Self-test kernels of the PTX wrapper header (common/ptx.h): mma fragments, ldmatrix (all six
// forms, bank conflicts with and without swizzle), cp.async (zero fill, groups, planted bugs) and
// a small multistage tensor-core GEMM that strings them together the way real kernels do.
// Included once per backend: by csrc/emu/selftest_ptx.cpp (g++, emulator; registered as
// torch.ops.moe_ext_emu_test.ptx_* and run by tests/test_emu_ptx.py) and by
// csrc/cuda/selftest_ptx.cu (nvcc; compiled for every arch to prove the GPU path of ptx.h
// assembles, not registered). Interface and semantics: selftest_ptx.h.
#pragma once

#include <cstring>

#include "../../common/launch.h"
#include "../../common/memory.h"
#include "../../common/ptx.h"
#include "../../common/shared.h"
#include "../../emu/selftest_ptx.h"

namespace moe_ext::ptx_selftest::MOE_KERNEL_NS {

template <typename To, typename From>
MOE_DEVICE MOE_FORCEINLINE To bit_cast(const From& f) {
  static_assert(sizeof(To) == sizeof(From));
  To t;
  memcpy(&t, &f, sizeof(To));
  return t;
}

// ------------------------------------------------------------------------------------ mma
__global__ void mma_frag_kernel(MmaFragParams p) {
  const int lane = threadIdx.x;
  uint32_t a[4], b[2];
  float c[4], d[4];
  for (int i = 0; i < 4; ++i) a[i] = ld_global(p.a + lane * 4 + i);
  for (int i = 0; i < 2; ++i) b[i] = ld_global(p.b + lane * 2 + i);
  for (int i = 0; i < 4; ++i) c[i] = ld_global(p.c + lane * 4 + i);
  switch (p.kind) {
    case MmaKind::kBf16: mma_m16n8k16_bf16(d, a, b, c); break;
    case MmaKind::kF16: mma_m16n8k16_f16(d, a, b, c); break;
    case MmaKind::kTf32: mma_m16n8k8_tf32(d, a, b, c); break;
    case MmaKind::kE4m3: mma_m16n8k32_e4m3(d, a, b, c); break;  // traps before sm_89
  }
  for (int i = 0; i < 4; ++i) st_global(p.d + lane * 4 + i, d[i]);
}

// ------------------------------------------------------------------------------- ldmatrix
constexpr int kLdmRowStride = 48;  // bytes: 16 of data + 32 of padding (written, never read)

__global__ void ldmatrix_kernel(LdmatrixParams p) {
  MOE_SHARED_ARRAY(uint4, smem, 32 * kLdmRowStride / 16);  // (32 rows, 3 chunks), rows reversed
  const int lane = threadIdx.x;
  unsigned char* base = reinterpret_cast<unsigned char*>(smem);
  const uint4 row = ld_global(reinterpret_cast<const uint4*>(p.tile) + lane);
  unsigned char* my_row = base + (31 - lane) * kLdmRowStride;
  st_shared(reinterpret_cast<uint4*>(my_row), row);
  st_shared(reinterpret_cast<uint4*>(my_row) + 1, uint4{});
  st_shared(reinterpret_cast<uint4*>(my_row) + 2, uint4{});
  __syncwarp();
  const void* addr = lane < 8 * p.num ? my_row : nullptr;  // other lanes' addresses are ignored
  uint32_t r[4] = {0, 0, 0, 0};
  if (p.num == 1) {
    uint32_t (&r1)[1] = reinterpret_cast<uint32_t (&)[1]>(r);
    if (p.trans)
      ldmatrix_x1_trans(r1, addr);
    else
      ldmatrix_x1(r1, addr);
  } else if (p.num == 2) {
    uint32_t (&r2)[2] = reinterpret_cast<uint32_t (&)[2]>(r);
    if (p.trans)
      ldmatrix_x2_trans(r2, addr);
    else
      ldmatrix_x2(r2, addr);
  } else {
    if (p.trans)
      ldmatrix_x4_trans(r, addr);
    else
      ldmatrix_x4(r, addr);
  }
  for (int i = 0; i < p.num; ++i) st_global(p.out + lane * p.num + i, r[i]);
}

// XOR swizzle of 16-byte chunks: consecutive 8 rows of one ldmatrix phase land in 8 distinct
// 16-byte bank groups (chunks_per_row = stride / 16 in {1, 2, 4, 8}).
MOE_DEVICE MOE_FORCEINLINE int swizzle_chunk(int row, int chunk, int chunks_per_row) {
  return chunk ^ ((row / (8 / chunks_per_row)) % chunks_per_row);
}

__global__ void ldmatrix_bank_kernel(LdmatrixBankParams p) {
  MOE_SHARED_DYNAMIC(unsigned char, smem);  // (32 rows, stride_bytes)
  const int lane = threadIdx.x;
  const int chunks = p.stride_bytes / 16;
  // Fill: consecutive lanes write consecutive 16-byte chunks (conflict-free), so every bank
  // conflict the launch reports comes from the ldmatrix below.
  for (int i = lane; i < 32 * chunks; i += 32) {
    const int row = i / chunks, phys = i % chunks;
    const int logical = p.swizzle ? swizzle_chunk(row, phys, chunks) : phys;
    uint16_t v[8];
    for (int j = 0; j < 8; ++j) v[j] = static_cast<uint16_t>(row * 64 + logical * 8 + j);
    st_shared(reinterpret_cast<uint4*>(smem) + i, bit_cast<uint4>(v));
  }
  __syncwarp();
  const int phys0 = p.swizzle ? swizzle_chunk(lane, 0, chunks) : 0;
  uint32_t r[4];
  ldmatrix_x4(r, smem + lane * p.stride_bytes + phys0 * 16);
  for (int i = 0; i < 4; ++i) st_global(p.out + lane * 4 + i, r[i]);
}

// ----------------------------------------------------------------------------------- GEMM
constexpr int kStages = 3;
constexpr int kSliceBytes = 32;  // bytes of k per stage and row: 16 bf16/fp16 or 8 tf32
constexpr int kMaxTilesPerWarp = 32;

struct GemmSmem {
  unsigned char* a;      // (M, kSliceBytes, stage)
  unsigned char* b;      // k-major: (kBk, N * esize, stage); n-major: (N, kSliceBytes, stage)
  int a_stage, b_stage;  // bytes per stage
};

// Issues the cp.async copies of k-slice `kt` into stage `s` (16-byte chunks over all threads).
template <int Esize>
MOE_DEVICE void load_stage(const GemmParams& p, const GemmSmem& sm, int kt, int s) {
  constexpr int kBk = kSliceBytes / Esize;
  const int tid = threadIdx.x, nthreads = blockDim.x;
  const auto* a = static_cast<const unsigned char*>(p.a);
  const auto* b = static_cast<const unsigned char*>(p.b);
  const int64_t row_a = int64_t{p.k} * Esize;  // bytes per row of A and of n-major B
  for (int i = tid; i < p.m * 2; i += nthreads) {
    const int r = i / 2, ch = i % 2;
    cp_async<16>(sm.a + s * sm.a_stage + r * kSliceBytes + ch * 16,
                 a + r * row_a + kt * kSliceBytes + ch * 16);
  }
  if (p.b_kmajor) {
    const int row_bytes = p.n * Esize, chunks = row_bytes / 16;
    for (int i = tid; i < kBk * chunks; i += nthreads) {
      const int r = i / chunks, ch = i % chunks;
      cp_async<16>(sm.b + s * sm.b_stage + r * row_bytes + ch * 16,
                   b + int64_t{kt * kBk + r} * row_bytes + ch * 16);
    }
  } else {
    for (int i = tid; i < p.n * 2; i += nthreads) {
      const int r = i / 2, ch = i % 2;
      cp_async<16>(sm.b + s * sm.b_stage + r * kSliceBytes + ch * 16,
                   b + r * row_a + kt * kSliceBytes + ch * 16);
    }
  }
}

template <MmaKind Kind>
__global__ void gemm_kernel(GemmParams p) {
  constexpr int kEsize = Kind == MmaKind::kTf32 ? 4 : 2;
  constexpr int kBk = kSliceBytes / kEsize;
  MOE_SHARED_DYNAMIC(unsigned char, smem);
  GemmSmem sm;
  sm.a_stage = p.m * kSliceBytes;
  sm.b_stage = p.b_kmajor ? kBk * p.n * kEsize : p.n * kSliceBytes;
  sm.a = smem;
  sm.b = smem + kStages * sm.a_stage;
  const int lane = threadIdx.x % 32, warp = threadIdx.x / 32;
  const int tiles_n = p.n / 8, tiles = (p.m / 16) * tiles_n, k_tiles = p.k / kBk;
  float acc[kMaxTilesPerWarp][4] = {};  // (tile of this warp, fragment element)

  // Prologue: k-slices 0 .. kStages-2 in flight, one commit group each (empty past the end).
  for (int s = 0; s < kStages - 1; ++s) {
    if (s < k_tiles) load_stage<kEsize>(p, sm, s, s);
    cp_async_commit();
  }
  for (int kt = 0; kt < k_tiles; ++kt) {
    // Groups committed so far: kStages-1+kt; leaving kStages-2 pending retires slice kt.
    if (p.bug == 1)
      cp_async_wait<kStages - 1>();
    else
      cp_async_wait<kStages - 2>();
    __syncthreads();  // slice kt visible to all; everyone is done reading slice kt-1's stage
    const int next = kt + kStages - 1;
    if (next < k_tiles) load_stage<kEsize>(p, sm, next, next % kStages);
    cp_async_commit();
    const unsigned char* as = sm.a + (kt % kStages) * sm.a_stage;  // (M, kSliceBytes)
    const unsigned char* bs = sm.b + (kt % kStages) * sm.b_stage;
    for (int t = warp, i = 0; t < tiles; t += p.num_warps, ++i) {
      const int m0 = (t / tiles_n) * 16, n0 = (t % tiles_n) * 8;
      uint32_t a[4], b[2];
      // A (16 x kBk): lanes 0-15 rows m0.. at k-bytes 0-15, lanes 16-31 the same rows at 16-31:
      // matrices (rows 0-7, k lo), (rows 8-15, k lo), (rows 0-7, k hi), (rows 8-15, k hi).
      ldmatrix_x4(a, as + (m0 + lane % 16) * kSliceBytes + (lane / 16) * 16);
      if (!p.b_kmajor) {
        // B stored (N, K): matrices (n 0-7, k lo), (n 0-7, k hi) are already "col" fragments.
        ldmatrix_x2(b, bs + (n0 + lane % 8) * kSliceBytes + ((lane / 8) % 2) * 16);
      } else if constexpr (Kind != MmaKind::kTf32) {
        // B stored (K, N): rows are k, so transpose 8x8 blocks (k 0-7, k 8-15) on load.
        ldmatrix_x2_trans(b, bs + (lane % 16) * p.n * kEsize + n0 * kEsize);
      } else {
        // tf32 (K, N): .trans moves 16-bit elements only, so gather the two k rows directly.
        const float* bf = reinterpret_cast<const float*>(bs);
        b[0] = bit_cast<uint32_t>(ld_shared(bf + (lane % 4) * p.n + n0 + lane / 4));
        b[1] = bit_cast<uint32_t>(ld_shared(bf + (lane % 4 + 4) * p.n + n0 + lane / 4));
      }
      if constexpr (Kind == MmaKind::kTf32) {
        // mma expects operands in tf32 format: round them (cvt.rna) rather than pass fp32.
        for (auto& x : a) x = cvt_rna_tf32(bit_cast<float>(x));
        for (auto& x : b) x = cvt_rna_tf32(bit_cast<float>(x));
        mma_m16n8k8_tf32(acc[i], a, b, acc[i]);
      } else if constexpr (Kind == MmaKind::kBf16) {
        mma_m16n8k16_bf16(acc[i], a, b, acc[i]);
      } else {
        mma_m16n8k16_f16(acc[i], a, b, acc[i]);
      }
    }
  }
  cp_async_wait_all();  // only empty groups are left; retire them before exiting
  for (int t = warp, i = 0; t < tiles; t += p.num_warps, ++i) {
    const int m0 = (t / tiles_n) * 16, n0 = (t % tiles_n) * 8;
    for (int e = 0; e < 4; ++e) {
      const auto c = ptx_layout::mma_m16n8_c(lane, e);
      st_global(p.d + int64_t{m0 + c.row} * p.n + n0 + c.col, acc[i][e]);
    }
  }
}

// ------------------------------------------------------------------------------- cp.async
template <int Bytes>
__global__ void cp_async_kernel(CpAsyncParams p) {
  MOE_SHARED_ARRAY(uint4, smem, 64);  // 64 chunks of up to 16 bytes
  unsigned char* sm = reinterpret_cast<unsigned char*>(smem);
  const int lane = threadIdx.x, peer = (lane + 1) % 32;
  for (int round = 0; round < 2; ++round) {
    const int c = round * 32 + lane;
    cp_async<Bytes>(sm + c * Bytes, p.src + int64_t{c} * Bytes, ld_global(p.src_bytes + c));
    cp_async_commit();
  }
  if (p.mode == 2) return;      // planted bug: copies never waited for
  auto copy_out = [&](int c) {  // chunk c, read back from shared memory 4 bytes at a time
    for (int w = 0; w < Bytes / 4; ++w)
      st_global(reinterpret_cast<uint32_t*>(p.dst + c * Bytes) + w,
                ld_shared(reinterpret_cast<const uint32_t*>(sm + c * Bytes) + w));
  };
  if (p.mode == 1) copy_out(lane);       // planted bug: read before any wait
  cp_async_wait<1>();                    // round 0 landed, round 1 may still be in flight
  if (p.mode == 3) copy_out(32 + lane);  // planted bug: read round 1 too early
  __syncwarp();
  copy_out(peer);
  cp_async_wait<0>();
  __syncwarp();
  copy_out(32 + peer);
}

// ------------------------------------------------------------------------------ launchers
cudaError_t launch_mma_frag(const MmaFragParams& p, cudaStream_t s) {
  return launch_kernel("ptx_mma_frag_kernel", mma_frag_kernel, dim3(1), dim3(32), 0, s, p);
}

cudaError_t launch_ldmatrix(const LdmatrixParams& p, cudaStream_t s) {
  return launch_kernel("ptx_ldmatrix_kernel", ldmatrix_kernel, dim3(1), dim3(32), 0, s, p);
}

cudaError_t launch_ldmatrix_bank(const LdmatrixBankParams& p, cudaStream_t s) {
  return launch_kernel("ptx_ldmatrix_bank_kernel", ldmatrix_bank_kernel, dim3(1), dim3(32),
                       size_t{32} * p.stride_bytes, s, p);
}

cudaError_t launch_gemm(const GemmParams& p, cudaStream_t s) {
  const int esize = p.kind == MmaKind::kTf32 ? 4 : 2, bk = kSliceBytes / esize;
  const size_t smem =
      size_t{kStages} * (p.m * kSliceBytes + (p.b_kmajor ? bk * p.n * esize : p.n * kSliceBytes));
  const dim3 grid(1), block(32 * p.num_warps);
  switch (p.kind) {
    case MmaKind::kBf16:
      return launch_kernel("ptx_gemm_kernel<bf16>", gemm_kernel<MmaKind::kBf16>, grid, block, smem,
                           s, p);
    case MmaKind::kF16:
      return launch_kernel("ptx_gemm_kernel<f16>", gemm_kernel<MmaKind::kF16>, grid, block, smem, s,
                           p);
    default:
      return launch_kernel("ptx_gemm_kernel<tf32>", gemm_kernel<MmaKind::kTf32>, grid, block, smem,
                           s, p);
  }
}

cudaError_t launch_cp_async(const CpAsyncParams& p, cudaStream_t s) {
  const dim3 grid(1), block(32);
  switch (p.bytes) {
    case 4:
      return launch_kernel("ptx_cp_async_kernel<4>", cp_async_kernel<4>, grid, block, 0, s, p);
    case 8:
      return launch_kernel("ptx_cp_async_kernel<8>", cp_async_kernel<8>, grid, block, 0, s, p);
    default:
      return launch_kernel("ptx_cp_async_kernel<16>", cp_async_kernel<16>, grid, block, 0, s, p);
  }
}

}  // namespace moe_ext::ptx_selftest::MOE_KERNEL_NS
