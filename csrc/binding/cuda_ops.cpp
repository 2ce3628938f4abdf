// CUDA backend entry points (torch.ops.moe_ext.* on CUDA tensors): the shared device bindings,
// launched on the tensors' device and current stream.
#include "cuda_launch.h"
#include "ops.h"
#include "grouped_mm_device.h"
#include "moe_mlp_device.h"
#include "permute_device.h"
#include "route_device.h"

#define MOE_BACKEND cuda
#define MOE_LAUNCHER cuda_launcher
#include "device_ops.inc"
