// torch.ops.moe_ext_emu_test.cluster_run: runs one of the thread-block-cluster self-test kernels
// (csrc/kernels/testing/cluster_kernels.cuh) on the emulator by name, for
// tests/test_emu_cluster.py. The input is registered as the read-only buffer "in", the output as
// the writable buffer "out".
#include <torch/library.h>

#include <string>
#include <vector>

#include "../kernels/testing/cluster_kernels.h"
#include "../simt/launch.h"

namespace moe_ext {
namespace {

constexpr const char* kOp = "moe_ext_emu_test.cluster_run";

dim3 to_dim3(c10::IntArrayRef v, const char* what) {
  TORCH_CHECK(!v.empty() && v.size() <= 3, kOp, ": ", what, " must have 1 to 3 entries, got ",
              v.size());
  for (int64_t x : v) TORCH_CHECK(x >= 1, kOp, ": ", what, " entries must be >= 1, got ", v);
  return dim3(static_cast<unsigned>(v[0]), v.size() > 1 ? static_cast<unsigned>(v[1]) : 1u,
              v.size() > 2 ? static_cast<unsigned>(v[2]) : 1u);
}

void cluster_run(const std::string& kernel, const at::Tensor& input, const at::Tensor& output,
                 c10::IntArrayRef grid, c10::IntArrayRef block, c10::IntArrayRef cluster,
                 c10::IntArrayRef args) {
  TORCH_CHECK(args.size() <= ClusterTestParams::kMaxArgs, kOp, ": at most ",
              ClusterTestParams::kMaxArgs, " args, got ", args.size());
  for (const at::Tensor* t : {&input, &output})
    TORCH_CHECK(t->device().is_cpu() && t->is_contiguous(), kOp,
                ": input and output must be contiguous CPU tensors");
  ClusterTestParams p;
  p.in = input.const_data_ptr();
  p.out = output.data_ptr();
  for (size_t i = 0; i < args.size(); ++i) p.n[i] = args[i];
  p.grid = to_dim3(grid, "grid");
  p.block = to_dim3(block, "block");
  p.cluster = to_dim3(cluster, "cluster");
  const auto in0 = reinterpret_cast<uintptr_t>(p.in), out0 = reinterpret_cast<uintptr_t>(p.out);
  const moe_simt::BufferScope scope(
      {{"in", in0, in0 + static_cast<uintptr_t>(input.nbytes()), false},
       {"out", out0, out0 + static_cast<uintptr_t>(output.nbytes()), true}});
  bool found = false;
  try {
    found = emu::launch_cluster_selftest(kernel.c_str(), p);
  } catch (const moe_simt::SimtError& e) {
    TORCH_CHECK(false, kOp, ": emulator: ", e.what());
  }
  TORCH_CHECK(found, kOp, ": no cluster self-test kernel named '", kernel,
              "' (or its tensor map was rejected)");
}

}  // namespace
}  // namespace moe_ext

TORCH_LIBRARY_FRAGMENT(moe_ext_emu_test, m) {
  // Runs cluster self-test kernel `kernel` on the emulator; `output` is written in place.
  m.def(
      "cluster_run(str kernel, Tensor input, Tensor(a!) output, int[] grid, int[] block, "
      "int[] cluster, int[] args) -> ()");
}

TORCH_LIBRARY_IMPL(moe_ext_emu_test, CPU, m) { m.impl("cluster_run", &moe_ext::cluster_run); }
