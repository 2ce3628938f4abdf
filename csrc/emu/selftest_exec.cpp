// Self-test kernels of the SIMT emulator's execution model (tests/test_emu_exec.py).
//
// Each kernel exercises one part of the CUDA execution model the emulator must reproduce --
// built-in indices, static/dynamic shared memory, __syncthreads (including threads that exit
// early), warp shuffles/votes with partial masks and widths, atomics under contention -- or
// plants one bug a checker must catch (out-of-bounds global/shared access, read-only write,
// shared-memory races, uninitialised shared reads, deadlocks, divergent barriers). Kernels that
// plant a bug take a `variant` argument whose 0 is the correct program, so every checker is
// also tested for false positives. The tests compute every expectation independently in Python.
//
// The kernels are real CUDA (house conventions: ld_/st_global, ld_/st_shared, MOE_SHARED_*,
// launch_kernel), but only this emulator instantiation is built. Argument meaning is per kernel,
// documented at each kernel as `n[i]`; buffers are `in[i]` (read-only) and `out[i]` (written).
// Torch-free.
#include "selftest_exec.h"

#include <cstring>

#include "../common/launch.h"
#include "../common/memory.h"
#include "../common/shared.h"

namespace moe_ext::MOE_KERNEL_NS {
namespace {

MOE_DEVICE MOE_FORCEINLINE int64_t block_linear() {
  return (int64_t{blockIdx.z} * gridDim.y + blockIdx.y) * gridDim.x + blockIdx.x;
}
MOE_DEVICE MOE_FORCEINLINE int thread_linear() {
  return static_cast<int>((threadIdx.z * blockDim.y + threadIdx.y) * blockDim.x + threadIdx.x);
}
MOE_DEVICE MOE_FORCEINLINE int block_size() {
  return static_cast<int>(blockDim.x * blockDim.y * blockDim.z);
}
MOE_DEVICE MOE_FORCEINLINE int64_t global_linear() {
  return block_linear() * block_size() + thread_linear();
}
MOE_DEVICE MOE_FORCEINLINE int lane_id() { return thread_linear() % 32; }

// ------------------------------------------------------------------------------ built-ins
// out[0] int32 [threads_total, 12]: threadIdx, blockIdx, blockDim, gridDim (x, y, z each).
__global__ void builtins_kernel(ExecTestParams p) {
  int32_t* out = static_cast<int32_t*>(p.out[0]) + global_linear() * 12;
  const unsigned v[12] = {threadIdx.x, threadIdx.y, threadIdx.z, blockIdx.x, blockIdx.y, blockIdx.z,
                          blockDim.x,  blockDim.y,  blockDim.z,  gridDim.x,  gridDim.y,  gridDim.z};
  for (int i = 0; i < 12; ++i) st_global(out + i, static_cast<int32_t>(v[i]));
}

// ------------------------------------------------------------------------------ shared memory
// Two static arrays and a dynamic one (blockDim.x int32), rotated n[0] times with barriers in
// the loop: every round reads a neighbour's value, then overwrites its own. Values start from
// the block index, so a block that saw another block's shared memory produces wrong results.
// out[0] int32 [blocks, blockDim.x, 2] (static a, dynamic d); out[1] float [blocks, blockDim.x].
__global__ void shared_rotate_kernel(ExecTestParams p) {
  MOE_SHARED_ARRAY(int32_t, a, 256);
  MOE_SHARED_ARRAY(float, b, 256);
  MOE_SHARED_DYNAMIC(int32_t, d);
  const int n = block_size(), t = thread_linear();
  const int blk = static_cast<int>(block_linear());
  st_shared(a + t, blk * 1000 + t);
  st_shared(b + t, static_cast<float>(blk) + 0.5f * static_cast<float>(t));
  st_shared(d + t, blk * 7 + 3 * t);
  __syncthreads();
  for (int64_t k = 0; k < p.n[0]; ++k) {
    const int32_t va = ld_shared(a + (t + 1) % n);
    const float vb = ld_shared(b + (t + 1) % n);
    const int32_t vd = ld_shared(d + (t + n - 1) % n);
    __syncthreads();  // everyone has read before anyone overwrites
    st_shared(a + t, va + 1);
    st_shared(b + t, vb + 1.0f);
    st_shared(d + t, vd + 2);
    __syncthreads();
  }
  int32_t* out = static_cast<int32_t*>(p.out[0]) + (block_linear() * n + t) * 2;
  st_global(out, ld_shared(a + t));
  st_global(out + 1, ld_shared(d + t));
  st_global(static_cast<float*>(p.out[1]) + block_linear() * n + t, ld_shared(b + t));
}

// Tree reduction of in[0] int32 [blocks * blockDim.x] into out[0] int32 [blocks], in dynamic
// shared memory (blockDim.x ints, a power of two). n[0] = 1 drops the loop's __syncthreads.
__global__ void reduce_kernel(ExecTestParams p) {
  MOE_SHARED_DYNAMIC(int32_t, s);
  const int t = thread_linear(), n = block_size();
  st_shared(s + t, ld_global(static_cast<const int32_t*>(p.in[0]) + global_linear()));
  __syncthreads();
  for (int stride = n / 2; stride > 0; stride >>= 1) {
    if (t < stride) st_shared(s + t, ld_shared(s + t) + ld_shared(s + t + stride));
    if (p.n[0] == 0) __syncthreads();
  }
  if (t == 0) st_global(static_cast<int32_t*>(p.out[0]) + block_linear(), ld_shared(s));
}

// Threads of the upper half write shared memory and exit; the lower half then passes three
// barriers, which the exited threads must count as arrived at. s[u] = 3u + 1 initially;
// out[0] int32 [blocks, blockDim.x / 2]: out[t] = s'[h - 1 - t], s'[u] = s[u] + s[u + h].
__global__ void early_exit_kernel(ExecTestParams p) {
  MOE_SHARED_DYNAMIC(int32_t, s);
  const int t = thread_linear(), h = block_size() / 2;
  st_shared(s + t, 3 * t + 1);
  if (t >= h) return;
  __syncthreads();
  const int32_t v = ld_shared(s + t + h);  // written by a thread that has exited
  __syncthreads();
  st_shared(s + t, ld_shared(s + t) + v);
  __syncthreads();
  st_global(static_cast<int32_t*>(p.out[0]) + block_linear() * h + t, ld_shared(s + h - 1 - t));
}

// ------------------------------------------------------------------------------ warp collectives
// out[0][g] = shuffle of in[0][g] over lanes; n[0] mode (0 idx, 1 up, 2 down, 3 xor), n[1] the
// lane/delta/lane mask, n[2] width, n[3] member mask. Lanes outside the mask do not call it.
template <typename T>
__global__ void shfl_kernel(ExecTestParams p) {
  const int64_t g = global_linear();
  const T v = ld_global(static_cast<const T*>(p.in[0]) + g);
  const auto mask = static_cast<unsigned>(p.n[3]);
  const int arg = static_cast<int>(p.n[1]), width = static_cast<int>(p.n[2]);
  if (!((mask >> lane_id()) & 1u)) return;
  T r;
  switch (p.n[0]) {
    case 0: r = __shfl_sync(mask, v, arg, width); break;
    case 1: r = __shfl_up_sync(mask, v, static_cast<unsigned>(arg), width); break;
    case 2: r = __shfl_down_sync(mask, v, static_cast<unsigned>(arg), width); break;
    default: r = __shfl_xor_sync(mask, v, arg, width); break;
  }
  st_global(static_cast<T*>(p.out[0]) + g, r);
}

// Votes over mask n[0] with predicate in[0][g]; out[0] int32 [threads, 6]: __activemask() on
// entry, then (lanes in the mask only, after the others exited and a barrier) ballot, any, all,
// __activemask(), and 1 after a __syncwarp(mask).
__global__ void vote_kernel(ExecTestParams p) {
  const int64_t g = global_linear();
  int32_t* o = static_cast<int32_t*>(p.out[0]) + g * 6;
  st_global(o, static_cast<int32_t>(__activemask()));
  const int pred = ld_global(static_cast<const int32_t*>(p.in[0]) + g);
  const auto mask = static_cast<unsigned>(p.n[0]);
  if (!((mask >> lane_id()) & 1u)) return;
  __syncthreads();  // the lanes outside the mask have exited by now
  st_global(o + 1, static_cast<int32_t>(__ballot_sync(mask, pred)));
  st_global(o + 2, static_cast<int32_t>(__any_sync(mask, pred)));
  st_global(o + 3, static_cast<int32_t>(__all_sync(mask, pred)));
  st_global(o + 4, static_cast<int32_t>(__activemask()));
  __syncwarp(mask);
  st_global(o + 5, 1);
}

// Divergent halves run different collectives with their own masks. v = in[0][g];
// out[0] int32 [threads, 3]:
//   lanes 0-15:  xor-butterfly sum over the half-warp (width 16) and __activemask();
//   lanes 16-31: ballot of v & 1
//                over the upper half, then a shfl_down by 1 (lane 31 keeps its own value);
//   then all lanes __syncwarp(), and even lanes broadcast lane 0's v (mask 0x55555555) while
//   odd lanes swap v with lane ^ 2 (mask 0xaaaaaaaa).
__global__ void divergent_collectives_kernel(ExecTestParams p) {
  const int64_t g = global_linear();
  const int lane = lane_id();
  const int32_t v = ld_global(static_cast<const int32_t*>(p.in[0]) + g);
  int32_t* o = static_cast<int32_t*>(p.out[0]) + g * 3;
  if (lane < 16) {
    int32_t sum = v;
    for (int off = 8; off > 0; off >>= 1) sum += __shfl_xor_sync(0x0000ffffu, sum, off, 16);
    st_global(o, sum);
    st_global(o + 1, static_cast<int32_t>(__activemask()));  // this branch's lanes: 0x0000ffff
  } else {
    st_global(o, static_cast<int32_t>(__ballot_sync(0xffff0000u, v & 1)));
    st_global(o + 1, __shfl_down_sync(0xffff0000u, v, 1));
  }
  __syncwarp();
  if (lane % 2 == 0)
    st_global(o + 2, __shfl_sync(0x55555555u, v, 0));
  else
    st_global(o + 2, __shfl_xor_sync(0xaaaaaaaau, v, 2));
}

// Warp-synchronous shared-memory exchange, one warp. n[0] variant:
//   0: write own slot, __syncwarp, read the next lane's slot, __syncwarp, overwrite own slot,
//      __syncwarp, read the previous lane's (correct: the classic warp-synchronous pattern);
//   1: even lanes only (odd lanes exit), synchronised by __syncwarp(0x55555555) (correct);
//   2: variant 0 without its __syncwarps (race);
//   3: lane 0 writes, lanes 2 and 3 __syncwarp(0xc), lanes 1 and 3 __syncwarp(0xa), lane 1
//      reads lane 0's word: lanes 0 and 1 never synchronised (race);
//   4: as 3 but lanes 0 and 1 __syncwarp(0x3) before the read (correct).
// out[0] int32 [32].
__global__ void warp_sync_kernel(ExecTestParams p) {
  MOE_SHARED_ARRAY(int32_t, s, 32);
  const int lane = lane_id();
  int32_t* out = static_cast<int32_t*>(p.out[0]);
  const int64_t variant = p.n[0];
  st_shared(s + lane, -1);
  __syncthreads();
  if (variant == 0 || variant == 2) {
    st_shared(s + lane, 10 * lane);
    if (variant == 0) __syncwarp();
    const int32_t r = ld_shared(s + (lane + 1) % 32);
    if (variant == 0) __syncwarp();
    st_shared(s + lane, r + 1);
    if (variant == 0) __syncwarp();
    st_global(out + lane, ld_shared(s + (lane + 31) % 32));
  } else if (variant == 1) {
    if (lane % 2) return;
    st_shared(s + lane, 10 * lane);
    __syncwarp(0x55555555u);
    st_global(out + lane, ld_shared(s + (lane + 2) % 32));
  } else {
    if (lane == 0) st_shared(s, 42);
    if (variant == 4) {
      if (lane <= 1) __syncwarp(0x3u);
    } else {
      if (lane == 2 || lane == 3) __syncwarp(0xcu);
      if (lane == 1 || lane == 3) __syncwarp(0xau);
    }
    if (lane == 1) st_global(out + 1, ld_shared(s));
  }
}

// ------------------------------------------------------------------------------ atomics
// Every thread g of N updates shared counters (Python computes the expected values):
//   out[0] int32 [8 + 2N]: [0] += 1, [1] max key(g), [2] min key(g), [3] exch g (old value to
//          [8 + g]), [4] CAS-loop ticket counter (ticket to [8 + N + g]), [5] |= bit, [6] &= ~bit,
//          [7] ^= g; key(g) = (g * 7919) % 100003 - 50000, bit = 1 << (g % 31);
//   out[1] uint32 [4]: [0] += 2, [1] -= 1, [2] atomicInc(.., 9), [3] atomicDec(.., 6);
//   out[2] uint64 [2]: [0] += 1 << 33, [1] max g << 40;  out[3] float [1]: += 1;
//   out[4] double [1]: += 0.25.
__global__ void atomics_kernel(ExecTestParams p) {
  const int64_t g = global_linear();
  const int64_t n = int64_t{gridDim.x} * gridDim.y * gridDim.z * block_size();
  int32_t* c = static_cast<int32_t*>(p.out[0]);
  const int gi = static_cast<int>(g);
  const int key = static_cast<int>((g * 7919) % 100003) - 50000;
  atomicAdd(c, 1);
  atomicMax(c + 1, key);
  atomicMin(c + 2, key);
  st_global(c + 8 + g, atomicExch(c + 3, gi));
  // A CAS-based counter: each failed CAS returns the current value, so retries make progress
  // without waiting for any other thread.
  int expected = 0;
  for (;;) {
    const int prev = atomicCAS(c + 4, expected, expected + 1);
    if (prev == expected) break;
    expected = prev;
  }
  st_global(c + 8 + n + g, expected);
  atomicOr(c + 5, 1 << (g % 31));
  atomicAnd(c + 6, ~(1 << (g % 31)));
  atomicXor(c + 7, gi);
  auto* u = static_cast<unsigned*>(p.out[1]);
  atomicAdd(u, 2);  // an int argument converts to unsigned, as with CUDA's overloads
  atomicSub(u + 1, 1u);
  atomicInc(u + 2, 9u);
  atomicDec(u + 3, 6u);
  auto* ull = static_cast<unsigned long long*>(p.out[2]);
  atomicAdd(ull, 1ull << 33);
  atomicMax(ull + 1, static_cast<unsigned long long>(g) << 40);
  atomicAdd(static_cast<float*>(p.out[3]), 1.0f);
  atomicAdd(static_cast<double*>(p.out[4]), 0.25);
}

// Histogram of in[0] int32 [n[0]] into n[1] bins (value % bins) in shared memory with shared
// atomics, flushed to out[0] uint32 [bins] with global atomics. Grid-stride over the input.
__global__ void histogram_kernel(ExecTestParams p) {
  MOE_SHARED_DYNAMIC(unsigned, hist);
  const int t = thread_linear(), bs = block_size();
  const int64_t n = p.n[0], bins = p.n[1];
  for (int64_t i = t; i < bins; i += bs) st_shared(hist + i, 0u);
  __syncthreads();
  const int64_t stride = int64_t{gridDim.x} * bs;
  const auto* in = static_cast<const int32_t*>(p.in[0]);
  for (int64_t i = global_linear(); i < n; i += stride)
    atomicAdd(hist + ld_global(in + i) % bins, 1);
  __syncthreads();
  for (int64_t i = t; i < bins; i += bs) {
    const unsigned c = ld_shared(hist + i);
    if (c != 0) atomicAdd(static_cast<unsigned*>(p.out[0]) + i, c);
  }
}

// ------------------------------------------------------------------------------ planted bugs
// out[0][g] = g for g < n[0] + n[1]: n[1] = 1 is the classic off-by-one bound.
__global__ void oob_store_kernel(ExecTestParams p) {
  const int64_t g = global_linear();
  if (g < p.n[0] + p.n[1]) st_global(static_cast<int32_t*>(p.out[0]) + g, static_cast<int32_t>(g));
}

// Writes g to out[0][g], or with n[0] = 1 into the read-only input in[0] (casting const away).
__global__ void readonly_write_kernel(ExecTestParams p) {
  const int64_t g = global_linear();
  int32_t* dst = p.n[0] ? const_cast<int32_t*>(static_cast<const int32_t*>(p.in[0]))
                        : static_cast<int32_t*>(p.out[0]);
  st_global(dst + g, static_cast<int32_t>(g));
}

// Static s1[64], s2[64] and dynamic d[64] int32 (one thread per element, 64 threads); thread 63
// then stores out of its array's bounds for n[0] = 1 (s1[64]: inside s2's storage), 2 (s2[64]:
// past all shared memory), 3 (d[64]: inside a static array), 4 (s1[-1]: inside d); 0 is correct.
// out[0] int32 [64] = s1 + s2 + d.
__global__ void shared_oob_kernel(ExecTestParams p) {
  MOE_SHARED_DYNAMIC(int32_t, d);
  MOE_SHARED_ARRAY(int32_t, s1, 64);
  MOE_SHARED_ARRAY(int32_t, s2, 64);
  const int t = thread_linear();
  st_shared(s1 + t, t);
  st_shared(s2 + t, 2 * t);
  st_shared(d + t, 3 * t);
  if (t == 63) {
    switch (p.n[0]) {
      case 1: st_shared(s1 + 64, 0); break;
      case 2: st_shared(s2 + 64, 0); break;
      case 3: st_shared(d + 64, 0); break;
      case 4: st_shared(s1 - 1, 0); break;
      default: break;
    }
  }
  __syncthreads();
  st_global(static_cast<int32_t*>(p.out[0]) + t,
            ld_shared(s1 + t) + ld_shared(s2 + t) + ld_shared(d + t));
}

// Shared stores in one barrier interval, then a barrier and a read back. n[0] variant:
//   0: s[t] = t (correct); 1: s[t / 2] = t (write-write race between lanes 2i and 2i+1);
//   2: 16-bit stores h[t] = t (adjacent threads share a 4-byte word: correct);
//   3: 8-bit stores (correct); 4: h[t / 2] = t (16-bit write-write race).
// out[0] int32 [blockDim.x] = the element thread t wrote, read back after the barrier.
__global__ void shared_store_kernel(ExecTestParams p) {
  MOE_SHARED_ARRAY(int32_t, s, 256);
  MOE_SHARED_ARRAY(uint16_t, h, 256);
  MOE_SHARED_ARRAY(uint8_t, c, 256);
  const int t = thread_linear();
  const int64_t variant = p.n[0];
  int32_t* out = static_cast<int32_t*>(p.out[0]) + t;
  if (variant <= 1) {
    st_shared(s + (variant ? t / 2 : t), t);
    __syncthreads();
    st_global(out, ld_shared(s + t / (variant ? 2 : 1)));
  } else if (variant == 3) {
    st_shared(c + t, static_cast<uint8_t>(t));
    __syncthreads();
    st_global(out, static_cast<int32_t>(ld_shared(c + t)));
  } else {
    const int i = variant == 4 ? t / 2 : t;
    st_shared(h + i, static_cast<uint16_t>(t));
    __syncthreads();
    st_global(out, static_cast<int32_t>(ld_shared(h + i)));
  }
}

// s[t] = t, barrier, out[0][t] = s[(t + 1) % n]; n[0] = 1: the last thread never writes its slot;
// n[0] = 2: likewise but only in blocks other than block 0 (whose write must not carry over).
__global__ void uninit_kernel(ExecTestParams p) {
  MOE_SHARED_DYNAMIC(int32_t, s);
  const int t = thread_linear(), n = block_size();
  const bool skip = t == n - 1 && (p.n[0] == 1 || (p.n[0] == 2 && block_linear() > 0));
  if (!skip) st_shared(s + t, t);
  __syncthreads();
  st_global(static_cast<int32_t*>(p.out[0]) + t, ld_shared(s + (t + 1) % n));
}

// One warp per block; lanes 16-31 exit. n[0] variant: 1 the rest __syncwarp(0xffffffff);
// 2 the rest __shfl_sync(0xffffffff, ...) -- both name exited lanes, which never arrive;
// 0 / 3: the same with the correct mask 0x0000ffff. out[0] int32 [16] = shuffled lane ids.
__global__ void exited_lane_kernel(ExecTestParams p) {
  const int lane = lane_id();
  if (lane >= 16) return;
  const int64_t variant = p.n[0];
  const unsigned mask = (variant == 1 || variant == 2) ? 0xffffffffu : 0x0000ffffu;
  int32_t v = lane;
  if (variant == 0 || variant == 1)
    __syncwarp(mask);
  else
    v = __shfl_sync(mask, lane, 15 - lane);
  st_global(static_cast<int32_t*>(p.out[0]) + lane, v);
}

// Every lane __syncwarp()s, then __syncthreads(); with n[0] = 1 thread 0 skips the __syncwarp
// and waits at the barrier while the rest of its warp waits for it at the __syncwarp: neither
// can complete. out[0] int32 [threads] = 1.
__global__ void barrier_deadlock_kernel(ExecTestParams p) {
  if (!(p.n[0] == 1 && thread_linear() == 0)) __syncwarp();
  __syncthreads();
  st_global(static_cast<int32_t*>(p.out[0]) + thread_linear(), 1);
}

// n[0] = 1: the first warp and the rest wait at two different __syncthreads call sites.
__global__ void divergent_barrier_kernel(ExecTestParams p) {
  const int t = thread_linear();
  if (p.n[0] == 1) {
    if (t < 32)
      __syncthreads();
    else
      __syncthreads();
  } else {
    __syncthreads();
  }
  st_global(static_cast<int32_t*>(p.out[0]) + t, t);
}

// ------------------------------------------------------------------------------ counters
// out[0][g] = in[0][g * n[0]] (float): stride 1 is fully coalesced, stride 32 one sector per lane.
__global__ void strided_copy_kernel(ExecTestParams p) {
  const int64_t g = global_linear();
  st_global(static_cast<float*>(p.out[0]) + g,
            ld_global(static_cast<const float*>(p.in[0]) + g * p.n[0]));
}

// 32x32 float transpose through a shared tile of 32 + n[0] columns, block (32, 32): the column
// read has a 32-way bank conflict without padding and none with n[0] = 1.
__global__ void transpose_kernel(ExecTestParams p) {
  MOE_SHARED_DYNAMIC(float, tile);
  const int x = static_cast<int>(threadIdx.x), y = static_cast<int>(threadIdx.y);
  const int ld = 32 + static_cast<int>(p.n[0]);
  st_shared(tile + y * ld + x, ld_global(static_cast<const float*>(p.in[0]) + y * 32 + x));
  __syncthreads();
  st_global(static_cast<float*>(p.out[0]) + y * 32 + x, ld_shared(tile + x * ld + y));
}

// n[0] __syncthreads in a loop; out[0][g] = number of rounds. The speed microbenchmark.
__global__ void sync_loop_kernel(ExecTestParams p) {
  int32_t rounds = 0;
  for (int64_t i = 0; i < p.n[0]; ++i) {
    __syncthreads();
    ++rounds;
  }
  st_global(static_cast<int32_t*>(p.out[0]) + global_linear(), rounds);
}

using KernelFn = void (*)(ExecTestParams);

struct NamedKernel {
  const char* name;
  KernelFn fn;
};

// The shuffle kernel's instantiation for dtype code n[4] (0 int32, 1 float, 2 double, 3 half,
// 4 bfloat16, 5 uint64).
KernelFn shfl_for(int64_t dtype) {
  switch (dtype) {
    case 0: return shfl_kernel<int32_t>;
    case 1: return shfl_kernel<float>;
    case 2: return shfl_kernel<double>;
    case 3: return shfl_kernel<__half>;
    case 4: return shfl_kernel<__nv_bfloat16>;
    default: return shfl_kernel<unsigned long long>;
  }
}

constexpr NamedKernel kKernels[] = {
    {"builtins_kernel", builtins_kernel},
    {"shared_rotate_kernel", shared_rotate_kernel},
    {"reduce_kernel", reduce_kernel},
    {"early_exit_kernel", early_exit_kernel},
    {"shfl_kernel", nullptr},
    {"vote_kernel", vote_kernel},
    {"divergent_collectives_kernel", divergent_collectives_kernel},
    {"warp_sync_kernel", warp_sync_kernel},
    {"atomics_kernel", atomics_kernel},
    {"histogram_kernel", histogram_kernel},
    {"oob_store_kernel", oob_store_kernel},
    {"readonly_write_kernel", readonly_write_kernel},
    {"shared_oob_kernel", shared_oob_kernel},
    {"shared_store_kernel", shared_store_kernel},
    {"uninit_kernel", uninit_kernel},
    {"exited_lane_kernel", exited_lane_kernel},
    {"barrier_deadlock_kernel", barrier_deadlock_kernel},
    {"divergent_barrier_kernel", divergent_barrier_kernel},
    {"strided_copy_kernel", strided_copy_kernel},
    {"transpose_kernel", transpose_kernel},
    {"sync_loop_kernel", sync_loop_kernel},
};

}  // namespace

bool launch_exec_selftest(const char* name, const ExecTestParams& p) {
  for (const auto& k : kKernels) {
    if (std::strcmp(k.name, name) != 0) continue;
    const KernelFn fn = k.fn ? k.fn : shfl_for(p.n[4]);
    launch_kernel(k.name, fn, p.grid, p.block, p.dynamic_smem, nullptr, p);
    return true;
  }
  return false;
}

}  // namespace moe_ext::MOE_KERNEL_NS
