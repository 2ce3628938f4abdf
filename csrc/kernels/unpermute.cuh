// unpermute_kernel: weighted combine of expert rows back to token order.
//
//   y[t, :] = sum_j weights[t, j] * yp[slot[t*k + j], :]   over kept assignments (slot >= 0)
//
// A gather, not a scatter: one CTA per token row (grid-stride over tokens; the token's k slots and
// weights staged once in shared memory), each thread owns
// kVec consecutive columns, loaded as one 16/8/4/2-byte vector per source row -- kBatch (8) rows'
// loads issued back to back through the read-only path (ld.global.nc: yp is never written by
// the kernel, y is a separate buffer) before the first is used, so a token's k rows are in
// flight together instead of one 16-byte load at a time -- and accumulates
// in fp32 (fp64 for fp64) in j order -- the same order as the CPU op, so results are
// deterministic and need no atomics. Dropped assignments contribute nothing, and so do slots
// outside [-1, N) (malformed input, unchecked on the device unless MOE_EXT_DEBUG=1): they are
// never read. The vector width is the widest that divides H, the row stride and both base
// addresses (any H works; H = 7 runs with kVec = 1). Row offsets are int64. Traffic: each kept
// yp row is read once, y written once.
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <algorithm>
#include <type_traits>

#include "../common/convert.h"
#include "../common/dispatch.h"
#include "../common/launch.h"
#include "../common/memory.h"
#include "../common/vec.h"
#include "../common/shared.h"
#include "unpermute.h"

namespace moe_ext::MOE_KERNEL_NS {

namespace unpermute_detail {

constexpr int kThreads = 128;
constexpr int kBatch = 8;  // source-row loads a thread keeps in flight (top_k <= 8: all of them)

}  // namespace unpermute_detail

template <typename T, int kVec>
__global__ void __launch_bounds__(unpermute_detail::kThreads) unpermute_kernel(UnpermuteParams p) {
  using namespace unpermute_detail;
  using V = Vec<T, kVec>;
  using A = acc_type_t<T>;
  const int k = p.top_k;
  const int64_t vecs = p.hidden / kVec, src_stride = p.yp_row_stride / kVec;
  const V* yp = static_cast<const V*>(p.yp);
  V* y = static_cast<V*>(p.y);
  // The token's k slots and weights are read from global memory once, into shared memory.
  MOE_SHARED_DYNAMIC(unsigned char, smem);
  int32_t* s_slot = reinterpret_cast<int32_t*>(smem);
  A* s_weight = reinterpret_cast<A*>(smem + (k * sizeof(int32_t) + 15) / 16 * 16);
  for (int64_t t = blockIdx.x; t < p.tokens; t += gridDim.x) {
    __syncthreads();  // every thread is done with the previous token's slots
    for (int j = threadIdx.x; j < k; j += blockDim.x) {
      st_shared(s_slot + j, ld_global_nc(p.slot + t * k + j));
      st_shared(s_weight + j, ld_global_nc(static_cast<const A*>(p.weights) + t * k + j));
    }
    __syncthreads();
    for (int64_t c = threadIdx.x; c < vecs; c += blockDim.x) {
      A acc[kVec];
      MOE_UNROLL for (int i = 0; i < kVec; ++i) acc[i] = A(0);
      // kBatch source rows at a time: every load of the batch is issued before the first
      // is consumed (memory-level parallelism), then they are accumulated in j order
      for (int j0 = 0; j0 < k; j0 += kBatch) {
        V v[kBatch];
        bool live[kBatch];
        MOE_UNROLL for (int b = 0; b < kBatch; ++b) {
          const int32_t s = j0 + b < k ? ld_shared(s_slot + j0 + b) : -1;
          live[b] = s >= 0 && s < p.num_rows;  // dropped / out-of-range slots are never read
          if (live[b]) v[b] = ld_global_nc(yp + static_cast<int64_t>(s) * src_stride + c);
        }
        MOE_UNROLL for (int b = 0; b < kBatch; ++b) {
          if (!live[b]) continue;
          const A w = ld_shared(s_weight + j0 + b);
          MOE_UNROLL for (int i = 0; i < kVec; ++i) acc[i] += w * to_acc(v[b].v[i]);
        }
      }
      V out;
      MOE_UNROLL for (int i = 0; i < kVec; ++i) out.v[i] = from_acc<T>(acc[i]);
      st_global(y + t * vecs + c, out);
    }
  }
}

namespace unpermute_detail {

template <typename T, int kVec>
cudaError_t launch_with(const UnpermuteParams& p, cudaStream_t stream) {
  const int64_t vecs = p.hidden / kVec;
  const int threads = static_cast<int>(std::clamp<int64_t>((vecs + 31) / 32 * 32, 32, kThreads));
  const int64_t blocks = std::min<int64_t>(p.tokens, int64_t{1} << 16);
  using A = acc_type_t<T>;
  const size_t smem = (p.top_k * sizeof(int32_t) + 15) / 16 * 16 + p.top_k * sizeof(A);
  return launch_kernel("unpermute_kernel", unpermute_kernel<T, kVec>,
                       dim3(static_cast<unsigned>(blocks)), dim3(threads), smem, stream, p);
}

// Widest vector (in elements, at most 16 bytes) dividing H, the row stride and the addresses.
template <typename T>
cudaError_t launch_typed(const UnpermuteParams& p, cudaStream_t stream) {
  const uint64_t bits = static_cast<uint64_t>(p.hidden * sizeof(T)) |
                        static_cast<uint64_t>(p.yp_row_stride * sizeof(T)) |
                        reinterpret_cast<uintptr_t>(p.yp) | reinterpret_cast<uintptr_t>(p.y);
  return with_vector_width<T>(
      bits, [&](auto n) { return launch_with<T, decltype(n)::value>(p, stream); });
}

}  // namespace unpermute_detail

}  // namespace moe_ext::MOE_KERNEL_NS

// The launcher (declared in the .h), for the target this translation unit compiles.
namespace moe_ext {

template <>
cudaError_t launch_unpermute<kKernelTarget>(const UnpermuteParams& p, cudaStream_t stream) {
  using namespace MOE_KERNEL_NS;
  using namespace unpermute_detail;
  if (p.tokens == 0 || p.hidden == 0) return cudaSuccess;
  return dispatch_dtype<float, __nv_bfloat16, __half, double>(
      p.dtype, [&](auto tag) { return launch_typed<decltype(tag)>(p, stream); });
}

}  // namespace moe_ext
