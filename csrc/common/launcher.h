// What a kernel's host interface (csrc/kernels/<op>.h) needs to declare its launcher: the CUDA
// runtime's status and stream types, and the Target a launcher is specialised for. Torch-free.
//
// Every kernel has one launcher template, `template <Target T> cudaError_t launch_<op>(const
// <Op>Params&, cudaStream_t)`, declared in its .h and specialised once per device target by the
// translation unit that compiles the kernel: nvcc (csrc/cuda/) defines launch_<op><kCuda>, g++
// against the SIMT emulator (csrc/emu/) defines launch_<op><kEmu>, from the same .cuh source
// (`template <> cudaError_t launch_<op><kKernelTarget>(...)`). The bindings (csrc/binding/<op>.cpp)
// are templates on the same Target, so `grep launch_permute` finds every caller and definition.
//
// Each params struct also has a host-side `can_implement(params)` next to it: nullptr when the
// launcher takes the problem, else a static string saying why not. The bindings call it before
// launching and raise the reason (CUTLASS's can_implement), so a rejected launch is never a bare
// error code.
#pragma once

#if __has_include(<cuda_runtime_api.h>)
#include <cuda_runtime_api.h>
#else
// A CPU-only build (no CUDA headers) compiles the bindings' device branches as templates but never
// instantiates them for a device target: these two names only have to exist.
using cudaStream_t = struct CUstream_st*;
enum cudaError_t : int { cudaSuccess = 0 };
#endif

namespace moe_ext {

// The backends an op is implemented for: the native CPU ops (csrc/cpu/), the CUDA kernels on the
// GPU, and the same CUDA kernels on the CPU SIMT emulator (torch.ops.moe_ext_emu).
enum class Target { kCpu, kCuda, kEmu };

// The device target the current translation unit compiles kernels for (internal linkage: its value
// differs between the nvcc and the emulator builds of one kernel source).
#if defined(__CUDACC__)
constexpr Target kKernelTarget = Target::kCuda;
#else
constexpr Target kKernelTarget = Target::kEmu;
#endif

}  // namespace moe_ext
