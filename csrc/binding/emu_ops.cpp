// Emulator backend entry points (torch.ops.moe_ext_emu.*): the shared device bindings, run on the
// CPU SIMT emulator with every tensor registered as a bounds-checked buffer.
#include "emu_launch.h"
#include "ops.h"
#include "grouped_mm_device.h"
#include "moe_mlp_device.h"
#include "permute_device.h"
#include "route_device.h"

#define MOE_BACKEND emu
#define MOE_LAUNCHER emu_launcher
#include "device_ops.inc"
