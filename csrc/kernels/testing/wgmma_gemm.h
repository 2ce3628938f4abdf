// Host-side interface of the Hopper test GEMM (wgmma_gemm.cuh). Torch-free.
#pragma once

#include <cuda_runtime_api.h>

#include <cstdint>

namespace moe_ext {

struct WaitTimeoutReport;  // common/wait_timeout.h

struct WgmmaGemmParams {
  const void* a;  // [M, K] bf16 (or e4m3, fp8) row-major
  const void* b;  // [N, K] bf16 (or e4m3) (n-major)
  float* c;       // [M, N] fp32
  int64_t m, n, k;
  int stages;         // 1..4 pipeline stages
  int fault;          // self-test of the checkers: 0 none, 1 consumers skip the full-barrier wait,
                      // 2 the producer never loads (consumers wait forever), 3 (tma_store) the
                      // staging is rewritten before the first store has read it, 4 (tma_store) the
                      // warps exit without waiting for their stores, 5 (tma_store) lane 0 issues a
                      // store without the __syncwarp that orders the other lanes' staging writes
  bool tma_store;     // epilogue: per warp, two 64-column halves through one swizzled staging
                      // buffer stored with TMA (else: st.global from the fragments)
  int block_n = 128;  // CTA tile columns: 128 (wgmma m64n128k16) or 256 (m64n256k16)
  int cluster_m = 1;  // 2: CTA pairs along M multicast their shared B tile (2-CTA clusters)
  bool fp8 = false;   // a and b float8_e4m3fn (wgmma m64n128k32 e4m3; block_n 128, K % 128 == 0)
  WaitTimeoutReport* wait_report = nullptr;  // set by the launcher (bounded mbarrier waits)
};

namespace cuda {
cudaError_t launch_wgmma_gemm(const WgmmaGemmParams& p, cudaStream_t stream);
}
namespace emu {
cudaError_t launch_wgmma_gemm(const WgmmaGemmParams& p, cudaStream_t stream);
}

}  // namespace moe_ext
