// The targets an op binding (csrc/binding/<op>.cpp) is instantiated for, and how a device kernel
// is launched on each. A binding is `template <Target T> Out op(args...)`: for Target::kCpu it
// checks the arguments and calls the native CPU implementation (csrc/cpu/), for kCuda and kEmu it
// checks them, fills the kernel's params struct and calls launch_on<T>(op, launch_<op><T>, params,
// buffers). DeviceBackend<kCuda> (backend_cuda.h) launches on the current CUDA stream;
// DeviceBackend<kEmu> (backend_emu.h) runs the same kernel on the CPU SIMT emulator with every
// tensor registered as a bounds-checked buffer. ops.h declares the bindings and instantiates them
// for the targets this build has (MOE_EXT_INSTANTIATE).
#pragma once

#include <type_traits>
#include <variant>

#include "../common/launcher.h"
#include "checks.h"
#include "device_buffers.h"

namespace moe_ext {

// static void launch(const char* op, cudaError_t (*launcher)(const Params&, cudaStream_t),
//                    const Params&, const DeviceBuffers&)
template <Target T>
struct DeviceBackend;

#if defined(MOE_EXT_WITH_CUDA) || defined(MOE_EXT_WITH_EMU)
// Why a launcher returns an error code, for the messages of both device targets.
inline const char* launch_error_hint(cudaError_t err) {
  switch (err) {
    case cudaErrorInvalidValue: return "the launcher rejected its arguments";
    case cudaErrorInvalidConfiguration:
      return "the launch needs more shared memory or a larger grid than the device has";
    case cudaErrorNotSupported:
      return "MOE_EXT_GEMM_PATH=sm90 forces the Hopper kernel on a problem it does not take "
             "(MOE_EXT_GEMM_PATH=auto runs it on the Ampere kernel)";
    default: return "";
  }
}
#endif

// Value checks (checks.h: value_checks_enabled) as the target wants them while it lives: always
// for kCpu, only under MOE_EXT_DEBUG=1 for the device targets (a check would sync the GPU; the
// emulator, standing for the GPU, exercises the kernels' own handling of bad values).
template <Target T>
struct CheckScope {
  std::conditional_t<T == Target::kCpu, std::monostate, DeviceBackendScope> scope;
};

// The kernel's can_implement (kernels/<op>.h) first, so a problem the launcher would reject is an
// error saying why; then the target's launch.
template <Target T, typename Params>
void launch_on(const char* op, cudaError_t (*launcher)(const Params&, cudaStream_t),
               const Params& p, const DeviceBuffers& buffers) {
  if (const char* why = can_implement(p)) {
    MOE_CHECK(op, false, "the device kernel does not take these arguments: ", why);
  }
  DeviceBackend<T>::launch(op, launcher, p, buffers);
}

}  // namespace moe_ext

#ifdef MOE_EXT_WITH_CUDA
#include "backend_cuda.h"
#endif
#ifdef MOE_EXT_WITH_EMU
#include "backend_emu.h"
#endif
