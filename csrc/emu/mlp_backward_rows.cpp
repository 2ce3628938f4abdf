// Emulator instantiation of moe_mlp's fused backward row pass
// (moe_ext::launch_mlp_backward_rows<Target::kEmu>): the same source as
// csrc/cuda/mlp_backward_rows.cu, compiled by g++ against csrc/simt. Torch-free.
#include "../kernels/mlp_backward_rows.cuh"
