// torch.ops.moe_ext_emu_test.tile_gemm: the test tile GEMM (csrc/kernels/testing/tile_gemm.cuh)
// on the emulator, for the end-to-end mma/ldmatrix/cp.async test and the emulator speed figure.
#include <torch/library.h>

#include "../kernels/testing/tile_gemm.h"
#include "../kernels/testing/wgmma_gemm.h"
#include "backend.h"

namespace moe_ext {
namespace {

// c[M, N] fp32 = a[M, K] @ b[N, K]^T for bf16 a, b (M, N multiples of 64, K of 32).
at::Tensor tile_gemm_emu(const at::Tensor& a, const at::Tensor& b) {
  const char* op = "tile_gemm";
  const bool fp8 = a.scalar_type() == at::kFloat8_e4m3fn;
  MOE_CHECK(op, (a.scalar_type() == at::kBFloat16 || fp8) && b.scalar_type() == a.scalar_type(),
            "a and b must both be bfloat16 or both float8_e4m3fn, got ", describe(a), " and ",
            describe(b));
  check_dim(op, "a", a, 2);
  check_dim(op, "b", b, 2);
  MOE_CHECK(op, a.size(1) == b.size(1), "a [M, K] and b [N, K] must share K, got ", describe(a),
            " and ", describe(b));
  auto ac = a.contiguous(), bc = b.contiguous();
  auto c = at::empty({a.size(0), b.size(0)}, a.options().dtype(at::kFloat));
  TileGemmParams p{ac.const_data_ptr(), bc.const_data_ptr(), c.data_ptr<float>(),
                   a.size(0),           b.size(0),           a.size(1)};
  DeviceBackend<Target::kEmu>::launch(op, &emu::launch_tile_gemm, p,
                                      {{"a", ac, false}, {"b", bc, false}, {"c", c, true}});
  return c;
}

// c[M, N] fp32 = a[M, K] @ b[N, K]^T through the Hopper test GEMM (TMA, mbarriers, wgmma); M % 64,
// N % block_n, K % 64 == 0 (block_n 256: wgmma.m64n256k16); `fault` plants a synchronisation bug
// the emulator must report; `tma_store` stores c through shared staging and TMA.
at::Tensor wgmma_gemm_emu(const at::Tensor& a, const at::Tensor& b, int64_t stages, int64_t fault,
                          bool tma_store, int64_t block_n, int64_t cluster_m) {
  const char* op = "wgmma_gemm";
  const bool fp8 = a.scalar_type() == at::kFloat8_e4m3fn;
  MOE_CHECK(op, (a.scalar_type() == at::kBFloat16 || fp8) && b.scalar_type() == a.scalar_type(),
            "a and b must both be bfloat16 or both float8_e4m3fn, got ", describe(a), " and ",
            describe(b));
  check_dim(op, "a", a, 2);
  check_dim(op, "b", b, 2);
  MOE_CHECK(op, a.size(1) == b.size(1), "a [M, K] and b [N, K] must share K, got ", describe(a),
            " and ", describe(b));
  auto ac = a.contiguous(), bc = b.contiguous();
  auto c = at::empty({a.size(0), b.size(0)}, a.options().dtype(at::kFloat));
  WgmmaGemmParams p{
      ac.const_data_ptr(), bc.const_data_ptr(),      c.data_ptr<float>(),     a.size(0), b.size(0),
      a.size(1),           static_cast<int>(stages), static_cast<int>(fault), tma_store};
  MOE_CHECK(op, block_n == 128 || block_n == 256, "block_n must be 128 or 256, got ", block_n);
  p.block_n = static_cast<int>(block_n);
  MOE_CHECK(op, cluster_m == 1 || cluster_m == 2, "cluster_m must be 1 or 2, got ", cluster_m);
  MOE_CHECK(op, a.size(0) % (64 * cluster_m) == 0, "a's rows must be a multiple of ",
            64 * cluster_m, " with cluster_m ", cluster_m, ", got ", describe(a));
  p.cluster_m = static_cast<int>(cluster_m);
  p.fp8 = fp8;
  MOE_CHECK(op, !fp8 || (block_n == 128 && a.size(1) % 128 == 0),
            "the e4m3 test GEMM takes block_n 128 and K % 128 == 0, got ", describe(a));
  DeviceBackend<Target::kEmu>::launch(op, &emu::launch_wgmma_gemm, p,
                                      {{"a", ac, false}, {"b", bc, false}, {"c", c, true}});
  return c;
}

}  // namespace
}  // namespace moe_ext

TORCH_LIBRARY_FRAGMENT(moe_ext_emu_test, m) {
  // Test tile GEMM on the emulator: c = a @ b.T (bf16 in, fp32 out).
  m.def("tile_gemm(Tensor a, Tensor b) -> Tensor");
  // Hopper test GEMM on the emulator (TMA + mbarrier + wgmma): c = a @ b.T, bf16 (or e4m3:
  // wgmma m64n128k32) in, fp32 out.
  m.def(
      "wgmma_gemm(Tensor a, Tensor b, int stages=2, int fault=0, bool tma_store=False, "
      "int block_n=128, int cluster_m=1) -> Tensor");
}

TORCH_LIBRARY_IMPL(moe_ext_emu_test, CPU, m) {
  m.impl("tile_gemm", &moe_ext::tile_gemm_emu);
  m.impl("wgmma_gemm", &moe_ext::wgmma_gemm_emu);
}
