// tile_gemm_kernel: C[M,N] (fp32) = A[M,K] @ B[N,K]^T, bf16 in, fp32 accumulate, on tensor cores.
//
// A small, complete mma.sync GEMM used to test and time the emulator (tests/test_emu_gemm.py,
// benchmarks/emu_speed.py) and to check the PTX wrappers compile for every arch: the building
// blocks of the grouped GEMM (cp.async double buffering, XOR-swizzled shared memory read with
// ldmatrix, m16n8k16 mma) without its scheduling and edge handling.
//   * block tile 64x64, K step 32, 128 threads = 4 warps in 2x2, each warp 32x32 =
//     2 (m16) x 4 (n8) mma tiles, fp32 accumulators in registers (32 per thread);
//   * A is row-major [M][K], B is n-major [N][K] (the "col" operand of mma.row.col), so both
//     tiles are 64 rows x 64 bytes in shared memory and both fragments come from plain ldmatrix;
//   * 16-byte chunk c of row r is stored at chunk c ^ ((r >> 1) & 3) (swizzled<64>, swizzle.h):
//     the 8 rows one ldmatrix phase reads then fall in 8 distinct 16-byte bank groups (no bank
//     conflicts);
//   * preconditions (checked by the launcher): M, N multiples of 64, K a multiple of 32, rows
//     16-byte aligned.
#pragma once

#include "../../common/launch.h"
#include "../../common/memory.h"
#include "../../common/ptx.h"
#include "../../common/shared.h"
#include "../../common/swizzle.h"
#include "tile_gemm.h"

namespace moe_ext::MOE_KERNEL_NS {

namespace tile_gemm {
constexpr int kBlockM = 64, kBlockN = 64, kBlockK = 32, kStages = 2, kThreads = 128;
constexpr int kRowBytes = kBlockK * 2;           // 64 bytes per smem row
constexpr int kTileBytes = kBlockM * kRowBytes;  // 4 KB per operand per stage
}  // namespace tile_gemm

__global__ void __launch_bounds__(tile_gemm::kThreads) tile_gemm_kernel(TileGemmParams p) {
  using namespace tile_gemm;
  MOE_SHARED_ARRAY(unsigned char, smem_a, kStages* kTileBytes);  // (BLK_M, BLK_K, stage)
  MOE_SHARED_ARRAY(unsigned char, smem_b, kStages* kTileBytes);  // (BLK_N, BLK_K, stage)
  const int tid = threadIdx.x, lane = tid % 32, warp = tid / 32;
  const int warp_m = (warp / 2) * 32, warp_n = (warp % 2) * 32;
  const int64_t block_m = static_cast<int64_t>(blockIdx.y) * kBlockM;
  const int64_t block_n = static_cast<int64_t>(blockIdx.x) * kBlockN;
  const char* a = static_cast<const char*>(p.a);
  const char* b = static_cast<const char*>(p.b);
  const int64_t row_bytes = p.k * 2;

  // Each thread copies 2 of the 256 16-byte chunks of each operand tile per stage.
  auto load_stage = [&](int stage, int64_t k0) {
    for (int i = tid; i < kBlockM * 4; i += kThreads) {
      const int row = i / 4, chunk = i % 4;
      const int64_t col_bytes = k0 * 2 + chunk * 16;
      cp_async<16>(smem_a + stage * kTileBytes + swizzled<kRowBytes>(row, chunk),
                   a + (block_m + row) * row_bytes + col_bytes);
      cp_async<16>(smem_b + stage * kTileBytes + swizzled<kRowBytes>(row, chunk),
                   b + (block_n + row) * row_bytes + col_bytes);
    }
    cp_async_commit();
  };

  float acc[2][4][4] = {};  // (m16 tile, n8 tile, fragment)
  const int k_tiles = static_cast<int>(p.k / kBlockK);
  if (k_tiles > 0) load_stage(0, 0);
  for (int kt = 0; kt < k_tiles; ++kt) {
    if (kt + 1 < k_tiles) {
      load_stage((kt + 1) % kStages, static_cast<int64_t>(kt + 1) * kBlockK);
      cp_async_wait<1>();
    } else {
      cp_async_wait<0>();
    }
    __syncthreads();
    const unsigned char* sa = smem_a + (kt % kStages) * kTileBytes;
    const unsigned char* sb = smem_b + (kt % kStages) * kTileBytes;
    for (int ks = 0; ks < kBlockK / 16; ++ks) {
      uint32_t fa[2][4], fb[4][2];
      for (int mt = 0; mt < 2; ++mt) {  // x4: rows 0-15 at k 0-7 and 8-15
        const int row = warp_m + mt * 16 + lane % 16, chunk = ks * 2 + lane / 16;
        ldmatrix_x4(fa[mt], sa + swizzled<kRowBytes>(row, chunk));
      }
      for (int np = 0; np < 2; ++np) {  // x4: two n8 tiles, k 0-7 and 8-15 each
        const int row = warp_n + np * 16 + (lane & 7) + ((lane >> 4) << 3);
        const int chunk = ks * 2 + ((lane >> 3) & 1);
        uint32_t r[4];
        ldmatrix_x4(r, sb + swizzled<kRowBytes>(row, chunk));
        fb[np * 2][0] = r[0], fb[np * 2][1] = r[1], fb[np * 2 + 1][0] = r[2],
                fb[np * 2 + 1][1] = r[3];
      }
      for (int mt = 0; mt < 2; ++mt)
        for (int nt = 0; nt < 4; ++nt) mma_m16n8k16_bf16(acc[mt][nt], fa[mt], fb[nt], acc[mt][nt]);
    }
    __syncthreads();  // the stage is overwritten by the next iteration's loads
  }

  // Epilogue: fragment (row g / g+8, cols 2t, 2t+1) straight to global as float2.
  const int g = lane / 4, t = lane % 4;
  for (int mt = 0; mt < 2; ++mt)
    for (int nt = 0; nt < 4; ++nt)
      for (int half = 0; half < 2; ++half) {
        const int64_t row = block_m + warp_m + mt * 16 + g + half * 8;
        const int64_t col = block_n + warp_n + nt * 8 + 2 * t;
        st_global(reinterpret_cast<float2*>(p.c + row * p.n + col),
                  float2{acc[mt][nt][half * 2], acc[mt][nt][half * 2 + 1]});
      }
}

// Runs C = A @ B^T; returns cudaErrorInvalidValue when the shape preconditions fail.
cudaError_t launch_tile_gemm(const TileGemmParams& p, cudaStream_t stream) {
  using namespace tile_gemm;
  if (p.m % kBlockM || p.n % kBlockN || p.k % kBlockK) return cudaErrorInvalidValue;
  if (p.m == 0 || p.n == 0) return cudaSuccess;
  const dim3 grid(static_cast<unsigned>(p.n / kBlockN), static_cast<unsigned>(p.m / kBlockM));
  return launch_kernel("tile_gemm_kernel", tile_gemm_kernel, grid, dim3(kThreads), 0, stream, p);
}

}  // namespace moe_ext::MOE_KERNEL_NS
