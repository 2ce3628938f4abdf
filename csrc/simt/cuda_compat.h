// What a CUDA kernel source sees when compiled by g++ for the emulator: the CUDA built-in
// variables, barriers, warp shuffles/votes, atomics and fences, implemented on runtime.h.
// The host CUDA headers supply the types (dim3, uint4, __half, __nv_bfloat16 with host math);
// they define __global__/__device__/__shared__ as nothing outside nvcc.
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime_api.h>
#include <vector_types.h>

#include <cstring>
#include <type_traits>

#include "runtime.h"

#define MOE_SIMT_STR2(x) #x
#define MOE_SIMT_STR(x) MOE_SIMT_STR2(x)
// A unique, readable identifier of a call site ("file:line"), for barrier divergence checks.
#define MOE_SIMT_SITE (__FILE__ ":" MOE_SIMT_STR(__LINE__))

#ifndef __launch_bounds__
#define __launch_bounds__(...)
#endif
#ifndef __forceinline__
#define __forceinline__ inline
#endif

#define threadIdx (::moe_simt::this_thread().idx)
#define blockIdx (::moe_simt::this_thread().block->idx)
#define blockDim (::moe_simt::this_thread().block->launch->block)
#define gridDim (::moe_simt::this_thread().block->launch->grid)
#ifndef warpSize
#define warpSize 32
#endif

#define __syncthreads() ::moe_simt::syncthreads(MOE_SIMT_SITE)
#define __syncwarp(...) ::moe_simt::syncwarp(MOE_SIMT_SITE __VA_OPT__(,) __VA_ARGS__)
#define __threadfence() ::moe_simt::threadfence()
#define __threadfence_block() ::moe_simt::threadfence()
#define __shfl_sync(...) ::moe_simt::shfl(MOE_SIMT_SITE, ::moe_simt::ShflMode::kIdx, __VA_ARGS__)
#define __shfl_up_sync(...) ::moe_simt::shfl(MOE_SIMT_SITE, ::moe_simt::ShflMode::kUp, __VA_ARGS__)
#define __shfl_down_sync(...) \
  ::moe_simt::shfl(MOE_SIMT_SITE, ::moe_simt::ShflMode::kDown, __VA_ARGS__)
#define __shfl_xor_sync(...) ::moe_simt::shfl(MOE_SIMT_SITE, ::moe_simt::ShflMode::kXor, __VA_ARGS__)
#define __ballot_sync(mask, pred) ::moe_simt::ballot(MOE_SIMT_SITE, mask, pred)
#define __any_sync(mask, pred) (::moe_simt::ballot(MOE_SIMT_SITE, mask, pred) != 0u)
#define __all_sync(mask, pred) \
  (::moe_simt::ballot(MOE_SIMT_SITE, mask, pred) == static_cast<unsigned>(mask))
#define __activemask() ::moe_simt::activemask()

namespace moe_simt {

inline void syncwarp(const char* site, unsigned mask = 0xffffffffu) {
  warp_collective(mask, nullptr, 0, nullptr, nullptr, nullptr, site);
}

enum class ShflMode { kIdx, kUp, kDown, kXor };

struct ShflIn {
  unsigned char value[8];
  int src;  // source lane, already resolved for the mode and width
};

inline void shfl_compute(Collective& c, void*) {
  for (int l = 0; l < kWarpSize; ++l) {
    if (!(c.mask >> l & 1)) continue;
    ShflIn in;
    std::memcpy(&in, c.in[l], sizeof(in));
    if (!(c.mask >> in.src & 1))
      fail("__shfl_sync: lane " + std::to_string(l) + " reads lane " + std::to_string(in.src) +
           ", which is not in the mask (its value is undefined on a GPU)");
    ShflIn src;
    std::memcpy(&src, c.in[in.src], sizeof(src));
    std::memcpy(c.out[l], src.value, sizeof(src.value));
  }
}

template <typename T>
T shfl(const char* site, ShflMode mode, unsigned mask, T var, int arg, int width = 32) {
  static_assert(sizeof(T) <= 8 && std::is_trivially_copyable_v<T>, "shuffle of a >8-byte type");
  const int lane = this_thread().lane;
  const int seg = lane & ~(width - 1), pos = lane & (width - 1);
  int src = lane;
  switch (mode) {
    case ShflMode::kIdx: src = seg + (arg & (width - 1)); break;
    case ShflMode::kUp: src = pos >= arg ? lane - arg : lane; break;
    case ShflMode::kDown: src = pos + arg < width ? lane + arg : lane; break;
    case ShflMode::kXor: src = ((lane ^ arg) & ~(width - 1)) == seg ? (lane ^ arg) : lane; break;
  }
  ShflIn in{};
  std::memcpy(in.value, &var, sizeof(T));
  in.src = src;
  auto c = warp_collective(mask, &in, sizeof(in), nullptr, &shfl_compute, nullptr, site);
  T out;
  std::memcpy(&out, c->out[lane], sizeof(T));
  return out;
}

inline void ballot_compute(Collective& c, void*) {
  unsigned bits = 0;
  for (int l = 0; l < kWarpSize; ++l)
    if ((c.mask >> l & 1) && c.in[l][0]) bits |= 1u << l;
  for (int l = 0; l < kWarpSize; ++l) std::memcpy(c.out[l], &bits, sizeof(bits));
}

inline unsigned ballot(const char* site, unsigned mask, bool pred) {
  const unsigned char p = pred ? 1 : 0;
  auto c = warp_collective(mask, &p, 1, nullptr, &ballot_compute, nullptr, site);
  unsigned bits;
  std::memcpy(&bits, c->out[this_thread().lane], sizeof(bits));
  return bits;
}

// Lanes of this warp that have not exited (the emulator's notion of "converged").
inline unsigned activemask() {
  const Thread& t = this_thread();
  unsigned m = 0;
  const auto& threads = t.block->threads;
  for (int l = 0; l < kWarpSize; ++l) {
    const size_t id = static_cast<size_t>(t.warp) * kWarpSize + l;
    if (id < threads.size() && threads[id].state != ThreadState::kExited) m |= 1u << l;
  }
  return m;
}

// Atomics: blocks run concurrently on host threads, so these are real host atomics.
template <typename T>
T atomic_rmw(T* p, const char* kind, T (*op)(T, T), T v) {
  if (is_shared(p)) check_shared(p, sizeof(T), true, kind, true); else check_global(p, sizeof(T), true, kind);
  T old = __atomic_load_n(p, __ATOMIC_RELAXED);
  while (!__atomic_compare_exchange_n(p, &old, op(old, v), false, __ATOMIC_SEQ_CST,
                                      __ATOMIC_RELAXED)) {
  }
  return old;
}

}  // namespace moe_simt

template <typename T>
inline T moe_simt_add(T a, T b) { return a + b; }
template <typename T>
inline T moe_simt_max(T a, T b) { return a < b ? b : a; }
template <typename T>
inline T moe_simt_min(T a, T b) { return b < a ? b : a; }
template <typename T>
inline T moe_simt_exch(T, T b) { return b; }

template <typename T>
inline T atomicAdd(T* p, T v) { return moe_simt::atomic_rmw<T>(p, "atomicAdd", &moe_simt_add<T>, v); }
inline float atomicAdd(float* p, float v) {
  // floats: compare-exchange on the bit pattern
  static_assert(sizeof(float) == sizeof(unsigned));
  if (moe_simt::is_shared(p)) moe_simt::check_shared(p, 4, true, "atomicAdd", true);
  else moe_simt::check_global(p, 4, true, "atomicAdd");
  auto* u = reinterpret_cast<unsigned*>(p);
  unsigned old = __atomic_load_n(u, __ATOMIC_RELAXED), next;
  do {
    float f;
    std::memcpy(&f, &old, 4);
    f += v;
    std::memcpy(&next, &f, 4);
  } while (!__atomic_compare_exchange_n(u, &old, next, false, __ATOMIC_SEQ_CST, __ATOMIC_RELAXED));
  float r;
  std::memcpy(&r, &old, 4);
  return r;
}
template <typename T>
inline T atomicMax(T* p, T v) { return moe_simt::atomic_rmw<T>(p, "atomicMax", &moe_simt_max<T>, v); }
template <typename T>
inline T atomicMin(T* p, T v) { return moe_simt::atomic_rmw<T>(p, "atomicMin", &moe_simt_min<T>, v); }
template <typename T>
inline T atomicExch(T* p, T v) { return moe_simt::atomic_rmw<T>(p, "atomicExch", &moe_simt_exch<T>, v); }
template <typename T>
inline T atomicCAS(T* p, T compare, T v) {
  if (moe_simt::is_shared(p)) moe_simt::check_shared(p, sizeof(T), true, "atomicCAS", true);
  else moe_simt::check_global(p, sizeof(T), true, "atomicCAS");
  __atomic_compare_exchange_n(p, &compare, v, false, __ATOMIC_SEQ_CST, __ATOMIC_SEQ_CST);
  return compare;
}
// Block-scope variants: on the emulator every atomic is at least block-scoped.
#define atomicAdd_block atomicAdd
#define atomicMax_block atomicMax
#define atomicMin_block atomicMin
#define atomicExch_block atomicExch
#define atomicCAS_block atomicCAS
