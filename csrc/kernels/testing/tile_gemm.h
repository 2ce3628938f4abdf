// Host-side interface of the test tile GEMM (tile_gemm.cuh): params and launchers. Torch-free.
#pragma once

#include <cuda_runtime_api.h>

#include <cstdint>

namespace moe_ext {

struct TileGemmParams {
  const void* a;  // [M, K] bf16 row-major
  const void* b;  // [N, K] bf16 (n-major)
  float* c;       // [M, N] fp32
  int64_t m, n, k;
};

namespace cuda {
cudaError_t launch_tile_gemm(const TileGemmParams& p, cudaStream_t stream);
}
namespace emu {
cudaError_t launch_tile_gemm(const TileGemmParams& p, cudaStream_t stream);
}

}  // namespace moe_ext
