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
#define __syncwarp(...) ::moe_simt::syncwarp(MOE_SIMT_SITE __VA_OPT__(, ) __VA_ARGS__)
#define __threadfence() ::moe_simt::threadfence()
#define __threadfence_block() ::moe_simt::threadfence()
#define __shfl_sync(...) ::moe_simt::shfl(MOE_SIMT_SITE, ::moe_simt::ShflMode::kIdx, __VA_ARGS__)
#define __shfl_up_sync(...) ::moe_simt::shfl(MOE_SIMT_SITE, ::moe_simt::ShflMode::kUp, __VA_ARGS__)
#define __shfl_down_sync(...) \
  ::moe_simt::shfl(MOE_SIMT_SITE, ::moe_simt::ShflMode::kDown, __VA_ARGS__)
#define __shfl_xor_sync(...) \
  ::moe_simt::shfl(MOE_SIMT_SITE, ::moe_simt::ShflMode::kXor, __VA_ARGS__)
#define __ballot_sync(mask, pred) ::moe_simt::ballot(MOE_SIMT_SITE, mask, pred)
#define __any_sync(mask, pred) (::moe_simt::ballot(MOE_SIMT_SITE, mask, pred) != 0u)
#define __all_sync(mask, pred) \
  (::moe_simt::ballot(MOE_SIMT_SITE, mask, pred) == static_cast<unsigned>(mask))
#define __activemask() ::moe_simt::activemask(MOE_SIMT_SITE)
// redux.sync (sm_80+): unsigned max / min over the lanes of `mask`, one warp instruction.
#define __reduce_max_sync(mask, value) \
  ::moe_simt::reduce_u32<true>(MOE_SIMT_SITE, mask, static_cast<unsigned>(value))
#define __reduce_min_sync(mask, value) \
  ::moe_simt::reduce_u32<false>(MOE_SIMT_SITE, mask, static_cast<unsigned>(value))

// Integer intrinsics (bit counts) with their CUDA names.
inline int __popc(unsigned x) { return __builtin_popcount(x); }
inline int __popcll(unsigned long long x) { return __builtin_popcountll(x); }
inline int __clz(int x) { return x == 0 ? 32 : __builtin_clz(static_cast<unsigned>(x)); }
inline int __ffs(int x) { return __builtin_ffs(x); }

// __ldg: a read-only (non-coherent cache) load on the GPU; a checked load here.
template <typename T>
inline T __ldg(const T* p) {
  ::moe_simt::check_global(p, sizeof(T), false, "load");
  return *p;
}

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
  if (width < 1 || width > kWarpSize || (width & (width - 1)) != 0)
    fail(std::string("shuffle at ") + site + ": width " + std::to_string(width) +
         " is not a power of two in [1, 32]");
  const int lane = this_thread().lane;
  const int seg = lane & ~(width - 1), pos = lane & (width - 1);
  int src = lane;
  switch (mode) {
    case ShflMode::kIdx: src = seg + (arg & (width - 1)); break;
    case ShflMode::kUp: src = pos >= arg ? lane - arg : lane; break;
    case ShflMode::kDown: src = pos + arg < width ? lane + arg : lane; break;
    // PTX shfl.bfly: a source in an earlier segment is read; one past the caller's segment
    // (a later segment, or beyond lane 31) yields the caller's own value.
    case ShflMode::kXor:
      src = (lane ^ arg) >= 0 && (lane ^ arg) < seg + width ? (lane ^ arg) : lane;
      break;
  }
  ShflIn in{};
  std::memcpy(in.value, &var, sizeof(T));
  in.src = src;
  auto c = warp_collective(mask, &in, sizeof(in), nullptr, &shfl_compute, nullptr, site,
                           static_cast<int>((sizeof(T) + 3) / 4));  // SHFL moves 32 bits
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

template <bool kMax>
inline void reduce_u32_compute(Collective& c, void*) {
  unsigned r = kMax ? 0u : ~0u;
  for (int l = 0; l < kWarpSize; ++l) {
    if (!(c.mask >> l & 1)) continue;
    unsigned v;
    std::memcpy(&v, c.in[l], sizeof(v));
    r = kMax ? (v > r ? v : r) : (v < r ? v : r);
  }
  for (int l = 0; l < kWarpSize; ++l) std::memcpy(c.out[l], &r, sizeof(r));
}

template <bool kMax>
inline unsigned reduce_u32(const char* site, unsigned mask, unsigned value) {
  auto c = warp_collective(mask, &value, sizeof(value), nullptr, &reduce_u32_compute<kMax>, nullptr,
                           site);
  unsigned r;
  std::memcpy(&r, c->out[this_thread().lane], sizeof(r));
  return r;
}

// Atomics: blocks run concurrently on host threads, so these are real host atomics.
template <typename T>
T atomic_rmw(T* p, const char* kind, T (*op)(T, T), T v) {
  if (is_shared(p))
    check_shared(p, sizeof(T), true, kind, true);
  else
    check_global(p, sizeof(T), true, kind);
  T old = __atomic_load_n(p, __ATOMIC_RELAXED);
  while (!__atomic_compare_exchange_n(p, &old, op(old, v), false, __ATOMIC_SEQ_CST,
                                      __ATOMIC_RELAXED)) {
  }
  return old;
}

}  // namespace moe_simt

template <typename T>
inline T moe_simt_add(T a, T b) {
  return a + b;
}
template <typename T>
inline T moe_simt_sub(T a, T b) {
  return a - b;
}
template <typename T>
inline T moe_simt_max(T a, T b) {
  return a < b ? b : a;
}
template <typename T>
inline T moe_simt_min(T a, T b) {
  return b < a ? b : a;
}
template <typename T>
inline T moe_simt_exch(T, T b) {
  return b;
}
template <typename T>
inline T moe_simt_and(T a, T b) {
  return a & b;
}
template <typename T>
inline T moe_simt_or(T a, T b) {
  return a | b;
}
template <typename T>
inline T moe_simt_xor(T a, T b) {
  return a ^ b;
}
inline unsigned moe_simt_inc(unsigned old, unsigned limit) { return old >= limit ? 0u : old + 1u; }
inline unsigned moe_simt_dec(unsigned old, unsigned limit) {
  return (old == 0u || old > limit) ? limit : old - 1u;
}

namespace moe_simt {
// Floating-point read-modify-write: compare-exchange on the bit pattern.
template <typename F, typename U>
F atomic_float_rmw(F* p, const char* kind, F (*op)(F, F), F v) {
  static_assert(sizeof(F) == sizeof(U));
  if (is_shared(p))
    check_shared(p, sizeof(F), true, kind, true);
  else
    check_global(p, sizeof(F), true, kind);
  auto* u = reinterpret_cast<U*>(p);
  U old = __atomic_load_n(u, __ATOMIC_RELAXED), next;
  do {
    F f;
    std::memcpy(&f, &old, sizeof(F));
    f = op(f, v);
    std::memcpy(&next, &f, sizeof(F));
  } while (!__atomic_compare_exchange_n(u, &old, next, false, __ATOMIC_SEQ_CST, __ATOMIC_RELAXED));
  F r;
  std::memcpy(&r, &old, sizeof(F));
  return r;
}
}  // namespace moe_simt

// CUDA declares these as overloads for fixed types (not templates), so an argument converts to
// the pointee type as in `atomicAdd(unsigned_ptr, 1)`; the value parameter is not deduced here.
#define MOE_SIMT_ATOMIC(name, fn, T) \
  inline T name(T* p, T v) { return moe_simt::atomic_rmw<T>(p, #name, &fn<T>, v); }
MOE_SIMT_ATOMIC(atomicAdd, moe_simt_add, int)
MOE_SIMT_ATOMIC(atomicAdd, moe_simt_add, unsigned)
MOE_SIMT_ATOMIC(atomicAdd, moe_simt_add, unsigned long long)
MOE_SIMT_ATOMIC(atomicSub, moe_simt_sub, int)
MOE_SIMT_ATOMIC(atomicSub, moe_simt_sub, unsigned)
MOE_SIMT_ATOMIC(atomicMax, moe_simt_max, int)
MOE_SIMT_ATOMIC(atomicMax, moe_simt_max, unsigned)
MOE_SIMT_ATOMIC(atomicMax, moe_simt_max, long long)
MOE_SIMT_ATOMIC(atomicMax, moe_simt_max, unsigned long long)
MOE_SIMT_ATOMIC(atomicMin, moe_simt_min, int)
MOE_SIMT_ATOMIC(atomicMin, moe_simt_min, unsigned)
MOE_SIMT_ATOMIC(atomicMin, moe_simt_min, long long)
MOE_SIMT_ATOMIC(atomicMin, moe_simt_min, unsigned long long)
MOE_SIMT_ATOMIC(atomicExch, moe_simt_exch, int)
MOE_SIMT_ATOMIC(atomicExch, moe_simt_exch, unsigned)
MOE_SIMT_ATOMIC(atomicExch, moe_simt_exch, unsigned long long)
MOE_SIMT_ATOMIC(atomicAnd, moe_simt_and, int)
MOE_SIMT_ATOMIC(atomicAnd, moe_simt_and, unsigned)
MOE_SIMT_ATOMIC(atomicAnd, moe_simt_and, unsigned long long)
MOE_SIMT_ATOMIC(atomicOr, moe_simt_or, int)
MOE_SIMT_ATOMIC(atomicOr, moe_simt_or, unsigned)
MOE_SIMT_ATOMIC(atomicOr, moe_simt_or, unsigned long long)
MOE_SIMT_ATOMIC(atomicXor, moe_simt_xor, int)
MOE_SIMT_ATOMIC(atomicXor, moe_simt_xor, unsigned)
MOE_SIMT_ATOMIC(atomicXor, moe_simt_xor, unsigned long long)
#undef MOE_SIMT_ATOMIC
inline unsigned atomicInc(unsigned* p, unsigned v) {
  return moe_simt::atomic_rmw<unsigned>(p, "atomicInc", &moe_simt_inc, v);
}
inline unsigned atomicDec(unsigned* p, unsigned v) {
  return moe_simt::atomic_rmw<unsigned>(p, "atomicDec", &moe_simt_dec, v);
}
inline float atomicAdd(float* p, float v) {
  return moe_simt::atomic_float_rmw<float, unsigned>(p, "atomicAdd", &moe_simt_add<float>, v);
}
inline double atomicAdd(double* p, double v) {
  return moe_simt::atomic_float_rmw<double, unsigned long long>(p, "atomicAdd",
                                                                &moe_simt_add<double>, v);
}
inline float atomicExch(float* p, float v) {
  return moe_simt::atomic_float_rmw<float, unsigned>(p, "atomicExch", &moe_simt_exch<float>, v);
}
template <typename T>
inline T moe_simt_atomic_cas(T* p, T compare, T v) {
  if (moe_simt::is_shared(p))
    moe_simt::check_shared(p, sizeof(T), true, "atomicCAS", true);
  else
    moe_simt::check_global(p, sizeof(T), true, "atomicCAS");
  __atomic_compare_exchange_n(p, &compare, v, false, __ATOMIC_SEQ_CST, __ATOMIC_SEQ_CST);
  return compare;
}
inline int atomicCAS(int* p, int compare, int v) { return moe_simt_atomic_cas(p, compare, v); }
inline unsigned atomicCAS(unsigned* p, unsigned compare, unsigned v) {
  return moe_simt_atomic_cas(p, compare, v);
}
inline unsigned long long atomicCAS(unsigned long long* p, unsigned long long compare,
                                    unsigned long long v) {
  return moe_simt_atomic_cas(p, compare, v);
}
inline unsigned short atomicCAS(unsigned short* p, unsigned short compare, unsigned short v) {
  return moe_simt_atomic_cas(p, compare, v);
}
// Block-scope variants: on the emulator every atomic is at least block-scoped.
#define atomicAdd_block atomicAdd
#define atomicSub_block atomicSub
#define atomicMax_block atomicMax
#define atomicMin_block atomicMin
#define atomicExch_block atomicExch
#define atomicCAS_block atomicCAS
#define atomicAnd_block atomicAnd
#define atomicOr_block atomicOr
#define atomicXor_block atomicXor
