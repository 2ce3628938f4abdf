// Instantiates permute_kernel for every vector width and provides launch_permute. Torch-free:
// compiled by nvcc for every arch in MOE_EXT_CUDA_ARCHS.
#include <algorithm>

#include "../kernels/permute.cuh"

namespace moe_ext {

namespace {

template <typename Vec>
cudaError_t launch_with(const PermuteParams& p, cudaStream_t stream) {
  const int64_t units = p.hidden * p.elem_bytes / static_cast<int64_t>(sizeof(Vec));
  const int threads = static_cast<int>(std::clamp<int64_t>((units + 31) / 32 * 32, 32, 256));
  const int64_t blocks = std::min<int64_t>(p.num_rows, int64_t{1} << 16);
  permute_kernel<Vec><<<static_cast<unsigned>(blocks), threads, 0, stream>>>(p);
  return cudaGetLastError();
}

// Widest power-of-two byte unit dividing every byte quantity the kernel steps by.
int64_t vector_bytes(const PermuteParams& p) {
  const uint64_t bits = static_cast<uint64_t>(p.hidden * p.elem_bytes) |
                        static_cast<uint64_t>(p.x_row_stride * p.elem_bytes) |
                        reinterpret_cast<uintptr_t>(p.x) | reinterpret_cast<uintptr_t>(p.xp);
  int64_t v = 16;
  while (v > 1 && (bits % v) != 0) v /= 2;
  return v;
}

}  // namespace

cudaError_t launch_permute(const PermuteParams& p, cudaStream_t stream) {
  if (p.num_rows == 0 || p.hidden == 0) return cudaSuccess;
  switch (vector_bytes(p)) {
    case 16: return launch_with<uint4>(p, stream);
    case 8: return launch_with<uint2>(p, stream);
    case 4: return launch_with<uint32_t>(p, stream);
    case 2: return launch_with<uint16_t>(p, stream);
    default: return launch_with<uint8_t>(p, stream);
  }
}

}  // namespace moe_ext
