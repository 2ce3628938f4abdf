// torch.ops.moe_ext_emu_test.exec_run: runs one of the emulator's execution-model self-test
// kernels (csrc/emu/selftest_exec.cpp) by name, for tests/test_emu_exec.py. Every tensor is
// registered as a bounds-checked buffer named in<i> (read-only) or out<i> (writable), the way
// the emulator backend registers an op's tensors.
#include <torch/library.h>

#include <string>
#include <vector>

#include "../emu/selftest_exec.h"
#include "../simt/launch.h"

namespace moe_ext {
namespace {

constexpr const char* kOp = "moe_ext_emu_test.exec_run";
const char* const kInNames[] = {"in0", "in1", "in2", "in3", "in4", "in5"};
const char* const kOutNames[] = {"out0", "out1", "out2", "out3", "out4", "out5"};

moe_simt::Buffer region(const char* name, const at::Tensor& t, bool writable) {
  const auto begin = reinterpret_cast<uintptr_t>(t.const_data_ptr());
  return {name, begin, begin + static_cast<uintptr_t>(t.nbytes()), writable};
}

dim3 to_dim3(c10::IntArrayRef v, const char* what) {
  TORCH_CHECK(!v.empty() && v.size() <= 3, kOp, ": ", what, " must have 1 to 3 entries, got ",
              v.size());
  for (int64_t x : v) TORCH_CHECK(x >= 1, kOp, ": ", what, " entries must be >= 1, got ", v);
  return dim3(static_cast<unsigned>(v[0]), v.size() > 1 ? static_cast<unsigned>(v[1]) : 1u,
              v.size() > 2 ? static_cast<unsigned>(v[2]) : 1u);
}

void exec_run(const std::string& kernel, const std::vector<at::Tensor>& inputs,
              const std::vector<at::Tensor>& outputs, c10::IntArrayRef grid, c10::IntArrayRef block,
              int64_t dynamic_smem, c10::IntArrayRef args) {
  TORCH_CHECK(
      inputs.size() <= ExecTestParams::kMaxBuffers && outputs.size() <= ExecTestParams::kMaxBuffers,
      kOp, ": at most ", ExecTestParams::kMaxBuffers, " inputs and outputs");
  TORCH_CHECK(args.size() <= ExecTestParams::kMaxArgs, kOp, ": at most ", ExecTestParams::kMaxArgs,
              " args, got ", args.size());
  TORCH_CHECK(dynamic_smem >= 0, kOp, ": dynamic_smem must be >= 0");
  ExecTestParams p;
  std::vector<moe_simt::Buffer> regions;
  for (size_t i = 0; i < inputs.size(); ++i) {
    TORCH_CHECK(inputs[i].device().is_cpu() && inputs[i].is_contiguous(), kOp, ": input ", i,
                " must be a contiguous CPU tensor");
    p.in[i] = inputs[i].const_data_ptr();
    regions.push_back(region(kInNames[i], inputs[i], false));
  }
  for (size_t i = 0; i < outputs.size(); ++i) {
    TORCH_CHECK(outputs[i].device().is_cpu() && outputs[i].is_contiguous(), kOp, ": output ", i,
                " must be a contiguous CPU tensor");
    p.out[i] = outputs[i].data_ptr();
    regions.push_back(region(kOutNames[i], outputs[i], true));
  }
  for (size_t i = 0; i < args.size(); ++i) p.n[i] = args[i];
  p.grid = to_dim3(grid, "grid");
  p.block = to_dim3(block, "block");
  p.dynamic_smem = static_cast<size_t>(dynamic_smem);
  const moe_simt::BufferScope scope(std::move(regions));
  bool found = false;
  try {
    found = emu::launch_exec_selftest(kernel.c_str(), p);
  } catch (const moe_simt::SimtError& e) {
    TORCH_CHECK(false, kOp, ": emulator: ", e.what());
  }
  TORCH_CHECK(found, kOp, ": no self-test kernel named '", kernel, "'");
}

}  // namespace
}  // namespace moe_ext

TORCH_LIBRARY_FRAGMENT(moe_ext_emu_test, m) {
  // Runs self-test kernel `kernel` on the emulator; `outputs` are written in place.
  m.def(
      "exec_run(str kernel, Tensor[] inputs, Tensor(a!)[] outputs, int[] grid, int[] block, "
      "int dynamic_smem, int[] args) -> ()");
}

TORCH_LIBRARY_IMPL(moe_ext_emu_test, CPU, m) { m.impl("exec_run", &moe_ext::exec_run); }
