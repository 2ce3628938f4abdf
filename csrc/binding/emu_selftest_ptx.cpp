// torch.ops.moe_ext_emu_test.ptx_*: the PTX-wrapper self-test kernels (csrc/emu/selftest_ptx.h)
// run on the CPU SIMT emulator, for tests/test_emu_ptx.py. Every tensor a kernel touches is
// registered as a bounds-checked buffer (as permute_emu.cpp does); checker errors become
// RuntimeError. ptx_fragment_map exposes the lane -> element layouts the emulator computes with.
#include <torch/library.h>

#include <string>
#include <utility>
#include <vector>

#include "../common/ptx.h"
#include "../emu/selftest_ptx.h"
#include "../simt/launch.h"
#include "checks.h"
#include "device_buffers.h"

namespace moe_ext {
namespace {

namespace pt = ptx_selftest;

// Registers `buffers` for the launch run by `launch()` and turns emulator errors into
// RuntimeError naming the op.
template <typename Fn>
void run_emu(const char* op, const DeviceBuffers& buffers, Fn&& launch) {
  std::vector<moe_simt::Buffer> regions;
  for (const auto& b : buffers) {
    const auto begin = reinterpret_cast<uintptr_t>(b.tensor.const_data_ptr());
    const auto bytes = static_cast<uintptr_t>(b.tensor.storage().nbytes()) -
                       static_cast<uintptr_t>(b.tensor.storage_offset() * b.tensor.element_size());
    regions.push_back({b.name, begin, begin + bytes, b.writable});
  }
  const moe_simt::BufferScope scope(std::move(regions));
  try {
    launch();
  } catch (const moe_simt::SimtError& e) {
    MOE_CHECK(op, false, "emulator: ", e.what());
  }
}

void check_cpu_contig(const char* op, const char* name, const at::Tensor& t, at::ScalarType dt,
                      int64_t numel) {
  MOE_CHECK(op,
            t.device().is_cpu() && t.is_contiguous() && t.scalar_type() == dt &&
                (numel < 0 || t.numel() == numel),
            name, " must be a contiguous CPU ", c10::toString(dt), " tensor",
            numel >= 0 ? " of " + std::to_string(numel) + " elements" : std::string(), ", got ",
            describe(t));
}

// [32, E, 2] (mma: row, col) or [32, E, 3] (ldmatrix: matrix, row, col), keyed like
// shared/golden/ptx_fragments.json.
at::Tensor ptx_fragment_map(c10::string_view key_view) {
  const std::string key(key_view);
  using Fn = ptx_layout::Coord (*)(int, int);
  Fn fn = nullptr;
  int elems = 0;
  bool ldm = false, trans = false;
  if (key == "m16n8k16.A")
    fn = &ptx_layout::mma_m16n8k16_a, elems = 8;
  else if (key == "m16n8k16.B")
    fn = &ptx_layout::mma_m16n8k16_b, elems = 4;
  else if (key == "m16n8k16.C" || key == "m16n8k8.tf32.C")
    fn = &ptx_layout::mma_m16n8_c, elems = 4;
  else if (key == "m16n8k8.tf32.A")
    fn = &ptx_layout::mma_m16n8k8_tf32_a, elems = 4;
  else if (key == "m16n8k8.tf32.B")
    fn = &ptx_layout::mma_m16n8k8_tf32_b, elems = 2;
  else if (key == "m16n8k32.e4m3.A")
    fn = &ptx_layout::mma_m16n8k32_8bit_a, elems = 16;
  else if (key == "m16n8k32.e4m3.B")
    fn = &ptx_layout::mma_m16n8k32_8bit_b, elems = 8;
  else if (key == "m16n8k32.e4m3.C")
    fn = &ptx_layout::mma_m16n8_c, elems = 4;
  else if (key == "ldmatrix.x4")
    ldm = true, elems = 8;
  else if (key == "ldmatrix.x4.trans")
    ldm = trans = true, elems = 8;
  else {
    MOE_CHECK("ptx_fragment_map", false, "unknown fragment key '", key, "'");
  }
  at::Tensor out = at::empty({32, elems, ldm ? 3 : 2}, at::kLong);
  auto acc = out.accessor<int64_t, 3>();
  for (int lane = 0; lane < 32; ++lane)
    for (int e = 0; e < elems; ++e) {
      const auto c = ldm ? ptx_layout::ldmatrix_elem(lane, e, trans) : fn(lane, e);
      int j = 0;
      if (ldm) acc[lane][e][j++] = c.matrix;
      acc[lane][e][j++] = c.row;
      acc[lane][e][j] = c.col;
    }
  return out;
}

at::Tensor ptx_mma_fragments(int64_t kind, const at::Tensor& a, const at::Tensor& b,
                             const at::Tensor& c) {
  const char* op = "ptx_mma_fragments";
  MOE_CHECK(op, kind >= 0 && kind <= 3,
            "kind must be 0 (bf16), 1 (f16), 2 (tf32) or 3 (e4m3, m16n8k32), got ", kind);
  check_cpu_contig(op, "a", a, at::kInt, 32 * 4);
  check_cpu_contig(op, "b", b, at::kInt, 32 * 2);
  check_cpu_contig(op, "c", c, at::kFloat, 32 * 4);
  at::Tensor d = at::empty({32, 4}, at::kFloat);
  pt::MmaFragParams p{static_cast<pt::MmaKind>(kind),
                      reinterpret_cast<const uint32_t*>(a.const_data_ptr<int32_t>()),
                      reinterpret_cast<const uint32_t*>(b.const_data_ptr<int32_t>()),
                      c.const_data_ptr<float>(), d.mutable_data_ptr<float>()};
  run_emu(op, {{"a", a, false}, {"b", b, false}, {"c", c, false}, {"d", d, true}},
          [&] { pt::emu::launch_mma_frag(p, nullptr); });
  return d;
}

at::Tensor ptx_ldmatrix(const at::Tensor& tile, int64_t num, bool trans) {
  const char* op = "ptx_ldmatrix";
  MOE_CHECK(op, num == 1 || num == 2 || num == 4, "num must be 1, 2 or 4, got ", num);
  check_cpu_contig(op, "tile", tile, at::kShort, 32 * 8);
  at::Tensor out = at::empty({32, num}, at::kInt);
  pt::LdmatrixParams p{reinterpret_cast<const uint16_t*>(tile.const_data_ptr<int16_t>()),
                       reinterpret_cast<uint32_t*>(out.mutable_data_ptr<int32_t>()),
                       static_cast<int32_t>(num), trans};
  run_emu(op, {{"tile", tile, false}, {"out", out, true}},
          [&] { pt::emu::launch_ldmatrix(p, nullptr); });
  return out;
}

at::Tensor ptx_ldmatrix_banks(int64_t stride_bytes, bool swizzle) {
  const char* op = "ptx_ldmatrix_banks";
  MOE_CHECK(op,
            stride_bytes == 16 || stride_bytes == 32 || stride_bytes == 64 || stride_bytes == 128,
            "stride_bytes must be 16, 32, 64 or 128, got ", stride_bytes);
  at::Tensor out = at::empty({32, 4}, at::kInt);
  pt::LdmatrixBankParams p{static_cast<int32_t>(stride_bytes), swizzle,
                           reinterpret_cast<uint32_t*>(out.mutable_data_ptr<int32_t>())};
  run_emu(op, {{"out", out, true}}, [&] { pt::emu::launch_ldmatrix_bank(p, nullptr); });
  return out;
}

at::Tensor ptx_gemm(const at::Tensor& a, const at::Tensor& b, bool b_kmajor, int64_t num_warps,
                    int64_t bug) {
  const char* op = "ptx_gemm";
  const auto dt = a.scalar_type();
  MOE_CHECK(op, dt == at::kBFloat16 || dt == at::kHalf || dt == at::kFloat,
            "a must be bfloat16, float16 or float32 (tf32), got ", describe(a));
  check_cpu_contig(op, "a", a, dt, -1);
  check_cpu_contig(op, "b", b, dt, -1);
  MOE_CHECK(op, a.dim() == 2 && b.dim() == 2, "a and b must be 2-D, got ", describe(a), " and ",
            describe(b));
  const int64_t m = a.size(0), k = a.size(1), n = b_kmajor ? b.size(1) : b.size(0);
  MOE_CHECK(op, (b_kmajor ? b.size(0) : b.size(1)) == k, "b ", describe(b), " does not match a ",
            describe(a), " (b_kmajor=", b_kmajor, ")");
  const int64_t bk = dt == at::kFloat ? 8 : 16;
  MOE_CHECK(op, num_warps >= 1 && num_warps <= 8, "num_warps must be in [1, 8], got ", num_warps);
  MOE_CHECK(op,
            m % 16 == 0 && n % 8 == 0 && k % bk == 0 && m > 0 && n > 0 && k > 0 && m <= 64 &&
                n <= 64 && (m / 16) * (n / 8) <= 32 * num_warps,
            "needs M % 16 == 0, N % 8 == 0, K % ", bk,
            " == 0, 0 < M, N <= 64, at most 32 tiles per warp; got M=", m, " N=", n, " K=", k);
  at::Tensor d = at::empty({m, n}, at::kFloat);
  const auto kind = dt == at::kBFloat16 ? pt::MmaKind::kBf16
                    : dt == at::kHalf   ? pt::MmaKind::kF16
                                        : pt::MmaKind::kTf32;
  pt::GemmParams p{kind,
                   static_cast<int32_t>(m),
                   static_cast<int32_t>(n),
                   static_cast<int32_t>(k),
                   a.const_data_ptr(),
                   b.const_data_ptr(),
                   b_kmajor,
                   static_cast<int32_t>(num_warps),
                   static_cast<int32_t>(bug),
                   d.mutable_data_ptr<float>()};
  run_emu(op, {{"a", a, false}, {"b", b, false}, {"d", d, true}},
          [&] { pt::emu::launch_gemm(p, nullptr); });
  return d;
}

at::Tensor ptx_cp_async(const at::Tensor& src, const at::Tensor& src_bytes, int64_t bytes,
                        int64_t mode) {
  const char* op = "ptx_cp_async";
  MOE_CHECK(op, bytes == 4 || bytes == 8 || bytes == 16, "bytes must be 4, 8 or 16, got ", bytes);
  MOE_CHECK(op, mode >= 0 && mode <= 3, "mode must be in [0, 3], got ", mode);
  check_cpu_contig(op, "src", src, at::kByte, -1);
  check_cpu_contig(op, "src_bytes", src_bytes, at::kInt, 64);
  at::Tensor dst = at::full({64 * bytes}, 0xEE, at::kByte);  // every byte must be written
  pt::CpAsyncParams p{static_cast<int32_t>(bytes), src.const_data_ptr<uint8_t>(),
                      src_bytes.const_data_ptr<int32_t>(), dst.mutable_data_ptr<uint8_t>(),
                      static_cast<int32_t>(mode)};
  run_emu(op, {{"src", src, false}, {"src_bytes", src_bytes, false}, {"dst", dst, true}},
          [&] { pt::emu::launch_cp_async(p, nullptr); });
  return dst;
}

}  // namespace
}  // namespace moe_ext

TORCH_LIBRARY_FRAGMENT(moe_ext_emu_test, m) {
  // (Ops without tensor inputs are registered backend-free, with their schema.)
  // Lane -> element layout the emulator uses, for a shared/golden/ptx_fragments.json key.
  m.def("ptx_fragment_map(str key) -> Tensor", &moe_ext::ptx_fragment_map);
  // One mma on per-lane fragments: kind 0 bf16, 1 f16 (m16n8k16), 2 tf32 (m16n8k8),
  // 3 e4m3 (m16n8k32); d[32,4].
  m.def("ptx_mma_fragments(int kind, Tensor a, Tensor b, Tensor c) -> Tensor");
  // ldmatrix_x{num}[_trans] of a 32x8 int16 tile: registers [32, num] int32.
  m.def("ptx_ldmatrix(Tensor tile, int num, bool trans) -> Tensor");
  // ldmatrix_x4 from a 32-row tile at stride_bytes, optionally swizzled: registers [32, 4].
  m.def("ptx_ldmatrix_banks(int stride_bytes, bool swizzle) -> Tensor",
        &moe_ext::ptx_ldmatrix_banks);
  // Multistage cp.async + ldmatrix + mma GEMM: fp32 [M, N]; bug=1 plants an early read.
  m.def("ptx_gemm(Tensor a, Tensor b, bool b_kmajor, int num_warps=1, int bug=0) -> Tensor");
  // Two rounds of cp.async<bytes> with per-chunk src_bytes [64]: dst uint8 [64 * bytes].
  m.def("ptx_cp_async(Tensor src, Tensor src_bytes, int bytes, int mode=0) -> Tensor");
}

TORCH_LIBRARY_IMPL(moe_ext_emu_test, CPU, m) {
  m.impl("ptx_mma_fragments", &moe_ext::ptx_mma_fragments);
  m.impl("ptx_ldmatrix", &moe_ext::ptx_ldmatrix);
  m.impl("ptx_gemm", &moe_ext::ptx_gemm);
  m.impl("ptx_cp_async", &moe_ext::ptx_cp_async);
}
