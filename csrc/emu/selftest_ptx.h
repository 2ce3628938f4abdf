// Host-side interface of the PTX-wrapper self-test kernels
// (csrc/kernels/testing/selftest_ptx_kernels.cuh): params structs and launchers. Torch-free,
// shared by the binding (emu_selftest_ptx.cpp), the emulator instantiation (selftest_ptx.cpp)
// and the nvcc one (csrc/cuda/selftest_ptx.cu, which only proves that common/ptx.h compiles to
// valid PTX for every arch; it is not registered).
#pragma once

#include <cuda_runtime_api.h>

#include <cstdint>

namespace moe_ext::ptx_selftest {

enum class MmaKind : int32_t { kBf16 = 0, kF16 = 1, kTf32 = 2, kE4m3 = 3 };

// One warp, one mma instruction on fragments given per lane (tests build them from the golden
// layouts): d[32][4] = mma(a[32][4], b[32][2], c[32][4]).
struct MmaFragParams {
  MmaKind kind;
  const uint32_t* a;  // [32][4] registers
  const uint32_t* b;  // [32][2]
  const float* c;     // [32][4]
  float* d;           // [32][4]
};

// One warp, one ldmatrix_x{num}[_trans] of a 32x8 b16 tile (matrix m = rows 8m..8m+7); the
// kernel stores the rows in shared memory in reverse order at a padded stride, so each lane's
// row address matters. Lanes past 8*num pass nullptr. out[32][num] = the registers.
struct LdmatrixParams {
  const uint16_t* tile;  // [32][8]
  uint32_t* out;         // [32][num]
  int32_t num;           // 1, 2 or 4
  bool trans;
};

// One warp, ldmatrix_x4 of rows 0..31 (16-byte chunk 0 of each) of a 32-row shared tile with
// `stride_bytes` per row (16, 32, 64 or 128), optionally XOR-swizzled by 16-byte chunk. The tile
// holds b16 value row*64 + col at logical (row, col). out[32][4] = the registers.
struct LdmatrixBankParams {
  int32_t stride_bytes;
  bool swizzle;
  uint32_t* out;
};

// D[M,N] (fp32) = A[M,K] * B through a 3-stage cp.async pipeline over 32-byte k-slices (16 bf16 /
// fp16 or 8 tf32 elements), ldmatrix fragments and mma. B is [K,N] (b_kmajor) or [N,K].
// M % 16 == 0, N % 8 == 0, K % (32 / element size) == 0, M, N <= 64, at most 32 16x8 tiles per
// warp. bug = 1 plants a pipeline bug: wait for one group too few before reading a stage.
struct GemmParams {
  MmaKind kind;
  int32_t m, n, k;
  const void* a;
  const void* b;
  bool b_kmajor;
  int32_t num_warps;
  int32_t bug;
  float* d;
};

// One warp; lane l copies chunk l and chunk 32+l (each `bytes` = 4, 8 or 16 bytes) of src into
// shared memory with cp_async(dst, src, src_bytes[i]), one commit group per round, then
// wait_group 1 / wait_group 0 and writes the chunks, read back from its neighbour lane, to dst.
// mode 1: read chunk l before any wait; 2: exit without waiting; 3: read chunk 32+l after only
// wait_group 1. All three must fail.
struct CpAsyncParams {
  int32_t bytes;
  const unsigned char* src;
  const int32_t* src_bytes;  // [64]
  unsigned char* dst;        // [64 * bytes]
  int32_t mode;
};

// Kernel launchers: `cuda` with nvcc (never registered; proves the GPU path compiles), `emu` on
// the CPU SIMT emulator (throws moe_simt::SimtError on checker errors).
#define MOE_PTX_SELFTEST_LAUNCHERS                                               \
  cudaError_t launch_mma_frag(const MmaFragParams& p, cudaStream_t s);           \
  cudaError_t launch_ldmatrix(const LdmatrixParams& p, cudaStream_t s);          \
  cudaError_t launch_ldmatrix_bank(const LdmatrixBankParams& p, cudaStream_t s); \
  cudaError_t launch_gemm(const GemmParams& p, cudaStream_t s);                  \
  cudaError_t launch_cp_async(const CpAsyncParams& p, cudaStream_t s);
namespace cuda {
MOE_PTX_SELFTEST_LAUNCHERS
}
namespace emu {
MOE_PTX_SELFTEST_LAUNCHERS
}
#undef MOE_PTX_SELFTEST_LAUNCHERS

}  // namespace moe_ext::ptx_selftest
