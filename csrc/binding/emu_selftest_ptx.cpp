// placeholder: torch.ops.moe_ext_emu_test.* bindings of the emulator self-test kernels
#include <torch/library.h>
