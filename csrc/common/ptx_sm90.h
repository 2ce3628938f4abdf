// sm_90 (Hopper) PTX the Hopper grouped GEMM needs, one spelling for both paths (as ptx.h):
//
//   TmaDescriptor, make_tma_descriptor(...)  (host) a tiled tensor map: CUtensorMap encoded by the
//       driver's cuTensorMapEncodeTiled (reached through cudaGetDriverEntryPoint, so nothing links
//       libcuda at build time); on the emulator a plain struct with the same fields.
//   mbarrier_init / mbarrier_arrive / mbarrier_arrive_expect_tx / mbarrier_wait(parity, site, rep)
//       mbarrier.{init,arrive,arrive.expect_tx,try_wait.parity}.shared::cta.b64; the wait is
//       bounded (MOE_EXT_WAIT_TIMEOUT_NS): past it the GPU writes `site`, block, thread,
//       barrier and parity to `rep` (wait_timeout.h) and traps; the emulator names `site` in its deadlock report
//   fence_barrier_init()       fence.mbarrier_init.release.cluster (init visible to the copy engine)
//   fence_proxy_async_shared() fence.proxy.async.shared::cta (generic-proxy writes -> async proxy)
//   tma_load_2d / tma_load_3d  cp.async.bulk.tensor.{2,3}d.shared::cluster.global.tile
//                              .mbarrier::complete_tx::bytes (box at the given coordinates,
//                              innermost first; out-of-range elements are zero-filled)
//   tma_store_2d / tma_store_3d  cp.async.bulk.tensor.{2,3}d.global.shared::cta.bulk_group (the
//                              box from shared memory; elements outside the tensor are dropped)
//   bulk_commit_group / bulk_wait_group<N> / bulk_wait_group_read<N>
//                              cp.async.bulk.{commit_group,wait_group[.read]} (bulk stores)
//   tensormap_replace_global_dim<ord>(smem_map, size)
//       tensormap.replace.tile.global_dim.shared::cta.b1024.b32 (edit a map copied to shared)
//   tensormap_publish(gmem_map, smem_map)   tensormap.cp_fenceproxy.global.shared::cta
//       .tensormap::generic.release.gpu.sync.aligned (warp-collective copy + release)
//   tensormap_acquire(gmem_map)   fence.proxy.tensormap::generic.acquire.gpu (before its TMA use)
//   wgmma_desc(smem, lbo, sbo, swizzle128)   a shared-memory matrix descriptor
//   wgmma_fence / wgmma_commit / wgmma_wait<N>   wgmma.{fence,commit_group,wait_group}.sync.aligned
//   wgmma_m64n128k16<T, kTransA, kTransB>(d, desc_a, desc_b, accumulate)
//       wgmma.mma_async.sync.aligned.m64n128k16.f32.{bf16,f16}: D[64x128] (+)= A[64x16] B[16x128]
//       with A and B K-major in shared memory, or MN-major where kTransA / kTransB (the
//       instruction's transpose immediates); warp w of the warpgroup holds rows 16w..16w+15,
//       d[4j + e] = (row 16w + lane/4 + 8(e/2), column 8j + 2(lane%4) + e%2) -- the mma.m16n8
//       C layout for each 8-column block j.
//   setmaxnreg_inc<N>() / setmaxnreg_dec<N>()   setmaxnreg.{inc,dec}.sync.aligned.u32
//
// Layouts (the emulator computes with exactly these): the 128-byte swizzle maps shared byte
// address a to a ^ (((a >> 7) & 7) << 4) (16-byte chunk c of a 128-byte row r of a 1024-byte-
// aligned atom lands at chunk c ^ (r % 8)), for TMA writes and wgmma reads alike. A K-major
// operand with the 128-byte swizzle: element (row r, k) at start + (r / 8) * SBO + (r % 8) * 128
// + 2k before the swizzle (LBO unused; the k16 steps of a 64-wide atom advance `start` by 32
// bytes). Without swizzle: 8x8 core matrices of 128 contiguous bytes, element (r, k) at
// start + (r / 8) * SBO + (k / 8) * LBO + (r % 8) * 16 + 2 (k % 8). An MN-major operand (the
// canonical layouts of the PTX ISA's matrix-descriptor section) with the 128-byte swizzle:
// element (mn, k) at start + (mn / 64) * LBO + (k / 8) * SBO + (k % 8) * 128 + 2 (mn % 64) --
// k rows of 64 contiguous mn, as a TMA box of 64 x k writes them; without swizzle at
// start + (mn / 8) * SBO + (k / 8) * LBO + (k % 8) * 16 + 2 (mn % 8).
//
// Emulator semantics: the copy engine and wgmma are the asynchronous proxy -- their shared
// accesses skip the race check (mbarriers and wgmma waits order them) but are bounds-checked and
// require initialised data. A TMA copy lands and completes its transaction bytes at issue. A TMA
// store checks its map and (initialised) source at issue, fails if either has changed when
// wait_group.read retires it, and writes global memory only at the full wait_group or the
// thread's exit; a thread that exits before its stores' reads are retired is an error. A tensor
// map is the emulator's descriptor struct: edited in shared memory (global_dim 0 is an error),
// published by lane 0 (128-byte alignment checked) with a fresh publication number, which a
// thread must acquire before its TMA ops use the map (else an error; conservatively also for a
// map an earlier launch published); a map in shared memory is rejected by TMA ops (one in a
// thread's local memory is not). fence.proxy.async is a no-op (a missing one is not caught). A
// wgmma reads its operands and updates D at issue (the fence/commit/wait calls are then no-ops, so a kernel that
// overwrites an operand stage before wgmma_wait is not caught); setmaxnreg is a no-op. mbarrier
// waits block the thread (fiber) until the phase completes; a wait that can never complete is
// reported as a deadlock with the barrier's missing arrivals and bytes.
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <cstdint>
#include <type_traits>

#include "portable.h"
#include "ptx.h"
#include "swizzle.h"  // swizzle128: the 128-byte swizzle TMA and wgmma apply
#include "wait_timeout.h"

#if defined(__CUDACC__)
#include <cuda.h>
#else
#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "../simt/runtime.h"
#endif

// Everything is in moe_ext::cuda / moe_ext::emu (MOE_KERNEL_NS): the descriptor type and its
// host-side encoder differ between the two builds, which link into one library.
#if defined(__CUDACC__)
#define MOE_GRID_CONSTANT __grid_constant__
#else
#define MOE_GRID_CONSTANT
#endif

namespace moe_ext::MOE_KERNEL_NS {

// Address of a shared-memory pointer in the shared window (GPU) / offset in the block's shared
// memory (emulator): what alignment rules (1024 bytes for 128-byte swizzled tiles) refer to.
MOE_DEVICE MOE_FORCEINLINE uint32_t shared_address(const void* p) {
#if defined(__CUDACC__)
  return smem_u32(p);
#else
  return static_cast<uint32_t>(reinterpret_cast<uintptr_t>(p) -
                               reinterpret_cast<uintptr_t>(::moe_simt::this_thread().block->shared.data()));
#endif
}

enum class TmaSwizzle : int { kNone = 0, k128B = 128 };

#if defined(__CUDACC__)
struct TmaDescriptor {  // CUtensorMap is itself 128-byte aligned
  CUtensorMap map;
};
#else
struct alignas(128) TmaDescriptor {
  const void* base;
  int rank;
  int elem_bytes;
  uint64_t dims[3];
  uint64_t strides[3];  // bytes; strides[0] is the element size
  uint32_t box[3];
  TmaSwizzle swizzle;
  // 0 for a map encoded on the host; a map published on the device (tensormap_publish) gets a
  // fresh number, which a thread must acquire (tensormap_acquire) before a TMA op uses the map
  uint64_t published;
};
#endif

// Encodes a tiled tensor map over `base` (dims innermost first; strides_bytes[i] is dim i+1's
// stride, a multiple of 16). Host code. Returns false when the driver (or the emulator's
// model of its rules) rejects the description.
inline bool make_tma_descriptor(TmaDescriptor* out, const void* base, int elem_bytes, int rank,
                                const uint64_t* dims, const uint64_t* strides_bytes,
                                const uint32_t* box, TmaSwizzle swizzle) {
  if (rank < 1 || rank > 3 || reinterpret_cast<uintptr_t>(base) % 16) return false;
  for (int i = 0; i + 1 < rank; ++i)
    if (strides_bytes[i] % 16) return false;
  for (int i = 0; i < rank; ++i)
    if (box[i] == 0 || box[i] > 256) return false;
#if defined(__CUDACC__)
  using Encode = CUresult (*)(CUtensorMap*, CUtensorMapDataType, cuuint32_t, void*,
                              const cuuint64_t*, const cuuint64_t*, const cuuint32_t*,
                              const cuuint32_t*, CUtensorMapInterleave, CUtensorMapSwizzle,
                              CUtensorMapL2promotion, CUtensorMapFloatOOBfill);
  static const Encode encode = [] {
    void* fn = nullptr;
    cudaDriverEntryPointQueryResult status{};
    if (cudaGetDriverEntryPointByVersion("cuTensorMapEncodeTiled", &fn, 12000, cudaEnableDefault,
                                         &status) != cudaSuccess ||
        status != cudaDriverEntryPointSuccess)
      return static_cast<Encode>(nullptr);
    return reinterpret_cast<Encode>(fn);
  }();
  if (encode == nullptr) return false;
  const CUtensorMapDataType type = elem_bytes == 2   ? CU_TENSOR_MAP_DATA_TYPE_UINT16
                                   : elem_bytes == 4 ? CU_TENSOR_MAP_DATA_TYPE_UINT32
                                                     : CU_TENSOR_MAP_DATA_TYPE_UINT8;
  const cuuint32_t element_strides[3] = {1, 1, 1};
  return encode(&out->map, type, static_cast<cuuint32_t>(rank), const_cast<void*>(base), dims,
                strides_bytes, box, element_strides, CU_TENSOR_MAP_INTERLEAVE_NONE,
                swizzle == TmaSwizzle::k128B ? CU_TENSOR_MAP_SWIZZLE_128B : CU_TENSOR_MAP_SWIZZLE_NONE,
                CU_TENSOR_MAP_L2_PROMOTION_L2_128B, CU_TENSOR_MAP_FLOAT_OOB_FILL_NONE) == CUDA_SUCCESS;
#else
  if (swizzle == TmaSwizzle::k128B && box[0] * static_cast<uint64_t>(elem_bytes) != 128) return false;
  *out = TmaDescriptor{};
  out->base = base;
  out->rank = rank;
  out->elem_bytes = elem_bytes;
  out->swizzle = swizzle;
  out->strides[0] = static_cast<uint64_t>(elem_bytes);
  for (int i = 0; i < rank; ++i) {
    out->dims[i] = dims[i];
    out->box[i] = box[i];
    if (i > 0) out->strides[i] = strides_bytes[i - 1];
  }
  return true;
#endif
}

#if defined(__CUDACC__)
// ======================================================================== GPU: inline PTX

MOE_DEVICE MOE_FORCEINLINE void mbarrier_init(uint64_t* bar, int count) {
  asm volatile("mbarrier.init.shared::cta.b64 [%0], %1;\n" ::"r"(smem_u32(bar)), "r"(count) : "memory");
}
MOE_DEVICE MOE_FORCEINLINE void fence_barrier_init() {
  asm volatile("fence.mbarrier_init.release.cluster;\n" ::: "memory");
}
MOE_DEVICE MOE_FORCEINLINE void fence_proxy_async_shared() {
  asm volatile("fence.proxy.async.shared::cta;\n" ::: "memory");
}
MOE_DEVICE MOE_FORCEINLINE void mbarrier_arrive(uint64_t* bar) {
  asm volatile("{\n.reg .b64 state;\nmbarrier.arrive.shared::cta.b64 state, [%0];\n}\n"
               ::"r"(smem_u32(bar)) : "memory");
}
MOE_DEVICE MOE_FORCEINLINE void mbarrier_arrive_expect_tx(uint64_t* bar, uint32_t bytes) {
  asm volatile("{\n.reg .b64 state;\nmbarrier.arrive.expect_tx.shared::cta.b64 state, [%0], %1;\n}\n"
               ::"r"(smem_u32(bar)), "r"(bytes) : "memory");
}
// mbarrier_wait(bar, parity, site, report): a wait that cannot complete (a lost arrive, a wrong
// parity, a TMA whose bytes never land) would spin until the GPU lease runs out, so it is
// bounded. The fast path is one try_wait and a predicated branch, as an unbounded spin; only a
// wait that is not done at once enters the cold loop, which reads %globaltimer and, past
// MOE_EXT_WAIT_TIMEOUT_NS (default 4 s; no legitimate wait in these kernels comes near it),
// writes site, block, thread, barrier and parity into `report` (mapped host memory, see
// wait_timeout.h: readable after the trap) and traps. No call and no local memory: a call
// inside the kernel would serialise its wgmma pipeline (ptxas C7510) and void setmaxnreg.
#ifndef MOE_EXT_WAIT_TIMEOUT_NS
#define MOE_EXT_WAIT_TIMEOUT_NS 4000000000ull
#endif
static __device__ unsigned int g_wait_timeout_claimed;  // one report per module

MOE_DEVICE MOE_FORCEINLINE bool mbarrier_try_wait(uint32_t bar, uint32_t parity) {
  uint32_t done;
  asm volatile(
      "{\n.reg .pred p;\nmbarrier.try_wait.parity.shared::cta.b64 p, [%1], %2;\n"
      "selp.u32 %0, 1, 0, p;\n}\n" : "=r"(done) : "r"(bar), "r"(parity) : "memory");
  return done != 0;
}
MOE_DEVICE MOE_FORCEINLINE unsigned long long globaltimer_ns() {
  unsigned long long t;
  asm volatile("mov.u64 %0, %%globaltimer;\n" : "=l"(t));
  return t;
}
MOE_DEVICE MOE_FORCEINLINE void mbarrier_wait(uint64_t* bar, uint32_t parity, WaitSite site,
                                              WaitTimeoutReport* report) {
  const uint32_t addr = smem_u32(bar);
  if (__builtin_expect(mbarrier_try_wait(addr, parity), 1)) return;
  const unsigned long long t0 = globaltimer_ns();
  while (!mbarrier_try_wait(addr, parity)) {
    const unsigned long long ns = globaltimer_ns() - t0;
    if (__builtin_expect(ns > MOE_EXT_WAIT_TIMEOUT_NS, 0)) {
      if (report != nullptr && atomicCAS(&g_wait_timeout_claimed, 0u, 1u) == 0u) {
        volatile WaitTimeoutReport* r = report;
        r->site = site;
        r->block = blockIdx.x;
        r->thread = threadIdx.x;
        r->bar = addr;
        r->parity = parity;
        r->ns = ns;
        __threadfence_system();
        r->written = 1;
        __threadfence_system();
      }
      __trap();
    }
  }
}
MOE_DEVICE MOE_FORCEINLINE void tma_load_2d(void* smem, const TmaDescriptor* desc, int c0, int c1,
                                            uint64_t* bar) {
  asm volatile(
      "cp.async.bulk.tensor.2d.shared::cluster.global.tile.mbarrier::complete_tx::bytes "
      "[%0], [%1, {%2, %3}], [%4];\n" ::"r"(smem_u32(smem)), "l"(desc), "r"(c0), "r"(c1),
      "r"(smem_u32(bar)) : "memory");
}
MOE_DEVICE MOE_FORCEINLINE void tma_load_3d(void* smem, const TmaDescriptor* desc, int c0, int c1,
                                            int c2, uint64_t* bar) {
  asm volatile(
      "cp.async.bulk.tensor.3d.shared::cluster.global.tile.mbarrier::complete_tx::bytes "
      "[%0], [%1, {%2, %3, %4}], [%5];\n" ::"r"(smem_u32(smem)), "l"(desc), "r"(c0), "r"(c1),
      "r"(c2), "r"(smem_u32(bar)) : "memory");
}
MOE_DEVICE MOE_FORCEINLINE void tma_store_2d(const TmaDescriptor* desc, const void* smem, int c0,
                                             int c1) {
  asm volatile("cp.async.bulk.tensor.2d.global.shared::cta.bulk_group [%0, {%2, %3}], [%1];\n"
               ::"l"(desc), "r"(smem_u32(smem)), "r"(c0), "r"(c1) : "memory");
}
MOE_DEVICE MOE_FORCEINLINE void tma_store_3d(const TmaDescriptor* desc, const void* smem, int c0,
                                             int c1, int c2) {
  asm volatile("cp.async.bulk.tensor.3d.global.shared::cta.bulk_group [%0, {%2, %3, %4}], [%1];\n"
               ::"l"(desc), "r"(smem_u32(smem)), "r"(c0), "r"(c1), "r"(c2) : "memory");
}
MOE_DEVICE MOE_FORCEINLINE void bulk_commit_group() {
  asm volatile("cp.async.bulk.commit_group;\n" ::: "memory");
}
template <int N>
MOE_DEVICE MOE_FORCEINLINE void bulk_wait_group_read() {
  asm volatile("cp.async.bulk.wait_group.read %0;\n" ::"n"(N) : "memory");
}
template <int N>
MOE_DEVICE MOE_FORCEINLINE void bulk_wait_group() {
  asm volatile("cp.async.bulk.wait_group %0;\n" ::"n"(N) : "memory");
}
template <int kOrd>
MOE_DEVICE MOE_FORCEINLINE void tensormap_replace_global_dim(void* smem_map, uint32_t size) {
  asm volatile("tensormap.replace.tile.global_dim.shared::cta.b1024.b32 [%0], %1, %2;\n"
               ::"r"(smem_u32(smem_map)), "n"(kOrd), "r"(size) : "memory");
}
MOE_DEVICE MOE_FORCEINLINE void tensormap_publish(TmaDescriptor* gmem_map, const void* smem_map) {
  asm volatile(
      "tensormap.cp_fenceproxy.global.shared::cta.tensormap::generic.release.gpu.sync.aligned "
      "[%0], [%1], 128;\n" ::"l"(gmem_map), "r"(smem_u32(smem_map)) : "memory");
}
MOE_DEVICE MOE_FORCEINLINE void tensormap_acquire(const TmaDescriptor* gmem_map) {
  asm volatile("fence.proxy.tensormap::generic.acquire.gpu [%0], 128;\n" ::"l"(gmem_map) : "memory");
}
MOE_DEVICE MOE_FORCEINLINE uint64_t wgmma_desc(const void* smem, uint32_t lbo, uint32_t sbo,
                                               bool swizzle128) {
  const uint64_t addr = (smem_u32(smem) & 0x3FFFF) >> 4;
  return addr | (uint64_t{(lbo & 0x3FFFF) >> 4} << 16) | (uint64_t{(sbo & 0x3FFFF) >> 4} << 32) |
         (uint64_t{swizzle128 ? 1u : 0u} << 62);
}
MOE_DEVICE MOE_FORCEINLINE void wgmma_fence() {
  asm volatile("wgmma.fence.sync.aligned;\n" ::: "memory");
}
MOE_DEVICE MOE_FORCEINLINE void wgmma_commit() {
  asm volatile("wgmma.commit_group.sync.aligned;\n" ::: "memory");
}
template <int N>
MOE_DEVICE MOE_FORCEINLINE void wgmma_wait() {
  asm volatile("wgmma.wait_group.sync.aligned %0;\n" ::"n"(N) : "memory");
}
#define MOE_WGMMA_M64N128K16(TYPE)                                                              \
  asm volatile("{\n.reg .pred p;\nsetp.ne.b32 p, %66, 0;\n"                                     \
               "wgmma.mma_async.sync.aligned.m64n128k16.f32." TYPE "." TYPE " "                      \
               "{%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, %16, %17, %18, %19, %20, %21, %22, %23, %24, %25, %26, %27, %28, %29, %30, %31, %32, %33, %34, %35, %36, %37, %38, %39, %40, %41, %42, %43, %44, %45, %46, %47, %48, %49, %50, %51, %52, %53, %54, %55, %56, %57, %58, %59, %60, %61, %62, %63}, %64, %65, p, 1, 1, %67, %68;\n}\n"                                       \
               : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3]), "+f"(d[4]), "+f"(d[5]), "+f"(d[6]), "+f"(d[7]), "+f"(d[8]), "+f"(d[9]), "+f"(d[10]), "+f"(d[11]), "+f"(d[12]), "+f"(d[13]), "+f"(d[14]), "+f"(d[15]), "+f"(d[16]), "+f"(d[17]), "+f"(d[18]), "+f"(d[19]), "+f"(d[20]), "+f"(d[21]), "+f"(d[22]), "+f"(d[23]), "+f"(d[24]), "+f"(d[25]), "+f"(d[26]), "+f"(d[27]), "+f"(d[28]), "+f"(d[29]), "+f"(d[30]), "+f"(d[31]), "+f"(d[32]), "+f"(d[33]), "+f"(d[34]), "+f"(d[35]), "+f"(d[36]), "+f"(d[37]), "+f"(d[38]), "+f"(d[39]), "+f"(d[40]), "+f"(d[41]), "+f"(d[42]), "+f"(d[43]), "+f"(d[44]), "+f"(d[45]), "+f"(d[46]), "+f"(d[47]), "+f"(d[48]), "+f"(d[49]), "+f"(d[50]), "+f"(d[51]), "+f"(d[52]), "+f"(d[53]), "+f"(d[54]), "+f"(d[55]), "+f"(d[56]), "+f"(d[57]), "+f"(d[58]), "+f"(d[59]), "+f"(d[60]), "+f"(d[61]), "+f"(d[62]), "+f"(d[63])                                                                              \
               : "l"(desc_a), "l"(desc_b), "r"(static_cast<int>(accumulate)), "n"(kTransA ? 1 : 0), \
                 "n"(kTransB ? 1 : 0))
// kTransA / kTransB: the operand is MN-major in shared memory (the instruction's transpose bits;
// 16-bit types only).
template <typename T, bool kTransA = false, bool kTransB = false>
MOE_DEVICE MOE_FORCEINLINE void wgmma_m64n128k16(float (&d)[64], uint64_t desc_a, uint64_t desc_b,
                                                 bool accumulate) {
  if constexpr (std::is_same_v<T, __nv_bfloat16>) {
    MOE_WGMMA_M64N128K16("bf16");
  } else {
    MOE_WGMMA_M64N128K16("f16");
  }
}
#undef MOE_WGMMA_M64N128K16
template <int N>
MOE_DEVICE MOE_FORCEINLINE void setmaxnreg_inc() {
  asm volatile("setmaxnreg.inc.sync.aligned.u32 %0;\n" ::"n"(N));
}
template <int N>
MOE_DEVICE MOE_FORCEINLINE void setmaxnreg_dec() {
  asm volatile("setmaxnreg.dec.sync.aligned.u32 %0;\n" ::"n"(N));
}

#else
// ======================================================================== CPU SIMT emulator

namespace sm90_emu {

inline size_t shared_offset(const void* p) {
  const auto& b = *::moe_simt::this_thread().block;
  return reinterpret_cast<uintptr_t>(p) - reinterpret_cast<uintptr_t>(b.shared.data());
}
inline unsigned char* shared_at(size_t off) {
  return ::moe_simt::this_thread().block->shared.data() + off;
}
// Walks the box of a TMA copy at `coord` with shared side `smem`: calls f(row, x_lo, x_hi,
// shared_row) for each box row, `row` being the global address of the row's element x = 0
// (nullptr where the row lies outside the tensor), [x_lo, x_hi) its in-range elements (possibly
// empty) and `shared_row` the row's unswizzled shared offset. Returns the box's bytes.
template <typename F>
size_t for_each_box_row(const TmaDescriptor& d, const void* smem, const int* coord,
                        const char* kind, F&& f) {
  if (shared_offset(smem) % (d.swizzle == TmaSwizzle::k128B ? 1024 : 128))
    ::moe_simt::fail(std::string(kind) + ": shared side not aligned (1024 bytes for the 128-byte "
                     "swizzle, else 128)");
  const uint32_t b0 = d.box[0], b1 = d.rank > 1 ? d.box[1] : 1, b2 = d.rank > 2 ? d.box[2] : 1;
  const size_t row_bytes = size_t{b0} * d.elem_bytes;
  if (d.swizzle == TmaSwizzle::k128B && row_bytes != 128)
    ::moe_simt::fail(std::string(kind) + ": the 128-byte swizzle needs 128-byte box rows");
  const size_t base = shared_offset(smem);
  auto* gbase = static_cast<unsigned char*>(const_cast<void*>(d.base));
  for (uint32_t z = 0; z < b2; ++z)
    for (uint32_t y = 0; y < b1; ++y) {
      const int64_t gy = int64_t{coord[1]} + y, gz = int64_t{coord[2]} + z;
      const bool row_inside = (d.rank < 2 || (gy >= 0 && uint64_t(gy) < d.dims[1])) &&
                              (d.rank < 3 || (gz >= 0 && uint64_t(gz) < d.dims[2]));
      const int64_t x_lo = std::max<int64_t>(0, -int64_t{coord[0]});
      const int64_t x_hi = std::min<int64_t>(b0, int64_t(d.dims[0]) - coord[0]);
      unsigned char* row = row_inside ? gbase + (d.rank > 1 ? gy * int64_t(d.strides[1]) : 0) +
                                            (d.rank > 2 ? gz * int64_t(d.strides[2]) : 0) +
                                            int64_t{coord[0]} * d.elem_bytes
                                      : nullptr;
      f(row, x_lo, x_hi, base + (size_t{z} * b1 + y) * row_bytes);
    }
  return row_bytes * b1 * b2;
}

// A TMA op's tensor map must live in global/param memory and, if rewritten on the device, have
// been acquired by the issuing thread since its last publication.
inline void check_map_use(const TmaDescriptor* desc, const char* kind) {
  if (::moe_simt::is_shared(desc))
    ::moe_simt::fail(std::string(kind) + ": the tensor map is in shared memory (TMA reads it from "
                     "global, constant or parameter memory)");
  if (desc->published != 0) {
    const auto& acquired = ::moe_simt::this_thread().acquired_maps;
    const auto it = acquired.find(desc);
    if (it == acquired.end() || it->second != desc->published)
      ::moe_simt::fail(std::string(kind) + ": uses a tensor map rewritten on the device without "
                       "fence.proxy.tensormap::generic.acquire after its publication");
  }
}

// The shared address of element x of a box row at unswizzled offset `shared_row`.
inline unsigned char* box_elem(const TmaDescriptor& d, size_t shared_row, int64_t x) {
  size_t off = shared_row + size_t(x) * d.elem_bytes;
  if (d.swizzle == TmaSwizzle::k128B) off = swizzle128(off);
  return shared_at(off);
}

}  // namespace sm90_emu

inline void mbarrier_init(uint64_t* bar, int count) { ::moe_simt::mbarrier_init(bar, count); }
inline void fence_barrier_init() {}
inline void fence_proxy_async_shared() {}
inline void mbarrier_arrive(uint64_t* bar) { ::moe_simt::mbarrier_arrive(bar, 0); }
inline void mbarrier_arrive_expect_tx(uint64_t* bar, uint32_t bytes) {
  ::moe_simt::mbarrier_arrive(bar, bytes);
}
// The emulator reports a wait that cannot complete as a deadlock (naming the site): no buffer.
inline WaitTimeoutReport* wait_timeout_report_buffer(cudaStream_t) { return nullptr; }
inline void mbarrier_wait(uint64_t* bar, uint32_t parity, WaitSite site, WaitTimeoutReport*) {
  ::moe_simt::mbarrier_wait(bar, parity, wait_site_name(site));
}


inline void tma_load(void* smem, const TmaDescriptor* desc, const int* coord, uint64_t* bar) {
  const TmaDescriptor& d = *desc;
  const char* kind = "cp.async.bulk.tensor";
  sm90_emu::check_map_use(desc, kind);
  const size_t total = sm90_emu::for_each_box_row(d, smem, coord, kind, [](auto...) {});
  ::moe_simt::async_shared_write(smem, total, kind);
  sm90_emu::for_each_box_row(d, smem, coord, kind, [&](unsigned char* row, int64_t x_lo,
                                                       int64_t x_hi, size_t shared_row) {
    // the in-range elements of a box row are contiguous in global memory: one bulk read
    if (row != nullptr && x_hi > x_lo)
      ::moe_simt::check_global(row + x_lo * d.elem_bytes, (x_hi - x_lo) * d.elem_bytes, false,
                               "cp.async.bulk.tensor read", /*bulk=*/true);
    for (int64_t x = 0; x < int64_t{d.box[0]}; ++x) {
      unsigned char* dst = sm90_emu::box_elem(d, shared_row, x);
      if (row != nullptr && x >= x_lo && x < x_hi) std::memcpy(dst, row + x * d.elem_bytes, d.elem_bytes);
      else std::memset(dst, 0, d.elem_bytes);
    }
  });
  ::moe_simt::mbarrier_complete_tx(bar, static_cast<int64_t>(total));
}
inline void tma_load_2d(void* smem, const TmaDescriptor* desc, int c0, int c1, uint64_t* bar) {
  const int c[3] = {c0, c1, 0};
  tma_load(smem, desc, c, bar);
}
inline void tma_load_3d(void* smem, const TmaDescriptor* desc, int c0, int c1, int c2,
                        uint64_t* bar) {
  const int c[3] = {c0, c1, c2};
  tma_load(smem, desc, c, bar);
}

namespace sm90_emu {

// The in-range source elements of a TMA store, in box order (each checked initialised).
inline std::vector<unsigned char> store_source(const TmaDescriptor& d, const void* smem,
                                               const int* coord) {
  std::vector<unsigned char> bytes;
  for_each_box_row(d, smem, coord, "cp.async.bulk.tensor (store)",
                   [&](unsigned char* row, int64_t x_lo, int64_t x_hi, size_t shared_row) {
    if (row == nullptr) return;
    for (int64_t x = x_lo; x < x_hi; ++x) {
      const unsigned char* src = box_elem(d, shared_row, x);
      ::moe_simt::async_shared_read(src, d.elem_bytes, "cp.async.bulk.tensor store source");
      bytes.insert(bytes.end(), src, src + d.elem_bytes);
    }
  });
  return bytes;
}

// A store in flight: the map and source as they were at issue.
struct PendingStore {
  const TmaDescriptor* map_at;  // where the op reads its map
  TmaDescriptor map;            // the map at issue
  const void* smem;
  int coord[3];
  std::vector<unsigned char> source;
};

inline void store_read_done(const PendingStore& st) {
  if (st.map_at->published != st.map.published)
    ::moe_simt::fail("cp.async.bulk.tensor (store): its tensor map was rewritten while the store "
                     "was in flight");
  if (store_source(st.map, st.smem, st.coord) != st.source)
    ::moe_simt::fail("cp.async.bulk.tensor (store): its shared source changed while the store was in "
                     "flight (rewritten before cp.async.bulk.wait_group.read retired it)");
}

inline void store_complete(const PendingStore& st) {
  const TmaDescriptor& d = st.map;
  size_t next = 0;
  for_each_box_row(d, st.smem, st.coord, "cp.async.bulk.tensor (store)",
                   [&](unsigned char* row, int64_t x_lo, int64_t x_hi, size_t) {
    if (row == nullptr || x_hi <= x_lo) return;
    const size_t bytes = size_t(x_hi - x_lo) * d.elem_bytes;
    ::moe_simt::check_global(row + x_lo * d.elem_bytes, bytes, true, "cp.async.bulk.tensor store",
                             /*bulk=*/true);
    std::memcpy(row + x_lo * d.elem_bytes, st.source.data() + next, bytes);
    next += bytes;
  });
}

// The copy engine's store of the box at `smem` (layout as tma_load writes it) to the elements of
// the box at `coord` inside the tensor (the rest is dropped). Hardware reads the source and the
// map at some moment between issue and the retiring wait_group.read, and writes global memory
// before the retiring wait_group: checked at issue (map use, source initialised), compared at
// .read (neither may change meanwhile), written at the full wait or the thread's exit.
inline void tma_store(const TmaDescriptor* desc, const void* smem, int c0, int c1, int c2) {
  check_map_use(desc, "cp.async.bulk.tensor (store)");
  auto st = std::make_shared<PendingStore>();
  st->map_at = desc;
  st->map = *desc;
  st->smem = smem;
  st->coord[0] = c0, st->coord[1] = c1, st->coord[2] = c2;
  st->source = store_source(st->map, smem, st->coord);
  ::moe_simt::this_thread().bulk_open.push_back(
      {[st] { store_read_done(*st); }, [st] { store_complete(*st); }});
}

}  // namespace sm90_emu

inline void tma_store_2d(const TmaDescriptor* desc, const void* smem, int c0, int c1) {
  sm90_emu::tma_store(desc, smem, c0, c1, 0);
}
inline void tma_store_3d(const TmaDescriptor* desc, const void* smem, int c0, int c1, int c2) {
  sm90_emu::tma_store(desc, smem, c0, c1, c2);
}
inline void bulk_commit_group() {
  auto& t = ::moe_simt::this_thread();
  if (!t.bulk_open.empty()) t.bulk_groups.push_back(std::move(t.bulk_open));  // (empty: nothing)
  t.bulk_open.clear();
}
// Retires the source reads of all but the N most recent bulk groups.
template <int N>
inline void bulk_wait_group_read() {
  static_assert(N >= 0, "cp.async.bulk.wait_group N needs N >= 0");
  auto& groups = ::moe_simt::this_thread().bulk_groups;
  for (size_t g = 0; g + N < groups.size(); ++g)
    for (auto& op : groups[g])
      if (!op.read) op.read_done(), op.read = true;
}
// Retires all but the N most recent bulk groups entirely (reads, then global writes).
template <int N>
inline void bulk_wait_group() {
  bulk_wait_group_read<N>();
  auto& groups = ::moe_simt::this_thread().bulk_groups;
  while (groups.size() > size_t{N}) {
    auto group = std::move(groups.front());
    groups.erase(groups.begin());
    for (auto& op : group) op.complete();
  }
}
// Device-side tensor-map update: the map in shared memory is the emulator's descriptor struct.
template <int kOrd>
inline void tensormap_replace_global_dim(void* smem_map, uint32_t size) {
  static_assert(kOrd >= 0 && kOrd < 3, "the emulator's tensor maps have rank <= 3");
  // (a one-lane operation: the warp-level bank statistics, which pair the lanes' n-th shared
  // accesses, do not log it)
  ::moe_simt::async_shared_read(smem_map, sizeof(TmaDescriptor), "tensormap.replace");
  if (sm90_emu::shared_offset(smem_map) % 128)
    ::moe_simt::fail("tensormap.replace: the shared tensor map must be 128-byte aligned");
  auto* map = static_cast<TmaDescriptor*>(smem_map);
  if (kOrd >= map->rank) ::moe_simt::fail("tensormap.replace: dimension past the map's rank");
  // the map stores size - 1: 0 would wrap to 2^32 and switch the clipping off
  if (size == 0) ::moe_simt::fail("tensormap.replace: global_dim 0 (a dimension is at least 1)");
  map->dims[kOrd] = size;
}
// Warp-collective (.sync.aligned): lane 0 copies, every lane synchronises.
inline void tensormap_publish(TmaDescriptor* gmem_map, const void* smem_map) {
  __syncwarp();
  if (::moe_simt::this_thread().lane == 0) {
    static std::atomic<uint64_t> publications{0};
    if (reinterpret_cast<uintptr_t>(gmem_map) % 128 || sm90_emu::shared_offset(smem_map) % 128)
      ::moe_simt::fail("tensormap.cp_fenceproxy: both tensor maps must be 128-byte aligned");
    ::moe_simt::async_shared_read(smem_map, sizeof(TmaDescriptor), "tensormap.cp_fenceproxy");
    ::moe_simt::check_global(gmem_map, sizeof(TmaDescriptor), true, "tensormap.cp_fenceproxy");
    std::memcpy(static_cast<void*>(gmem_map), smem_map, sizeof(TmaDescriptor));
    gmem_map->published = ++publications;
  }
  __syncwarp();
}
inline void tensormap_acquire(const TmaDescriptor* gmem_map) {
  ::moe_simt::this_thread().acquired_maps[gmem_map] = gmem_map->published;
}

inline uint64_t wgmma_desc(const void* smem, uint32_t lbo, uint32_t sbo, bool swizzle128) {
  const uint64_t addr = (sm90_emu::shared_offset(smem) & 0x3FFFF) >> 4;
  return addr | (uint64_t{(lbo & 0x3FFFF) >> 4} << 16) | (uint64_t{(sbo & 0x3FFFF) >> 4} << 32) |
         (uint64_t{swizzle128 ? 1u : 0u} << 62);
}
inline void wgmma_fence() {}
inline void wgmma_commit() {}
template <int N>
inline void wgmma_wait() {}
template <int N>
inline void setmaxnreg_inc() {}
template <int N>
inline void setmaxnreg_dec() {}

namespace sm90_emu {

// Shared offset of element (mn, k) of an operand described by `desc`: K-major (mn = the row)
// or MN-major (the canonical layouts, in 16-byte units T = 8 elements:
// 128-byte swizzle ((T,8,m),(8,k)):((1,T,LBO),(8T,SBO)), none ((T,1,m),(8,k)):((1,T,SBO),(1T,LBO))).
inline size_t wgmma_elem_offset(uint64_t desc, int mn, int k, bool mn_major) {
  const size_t start = (desc & 0x3FFF) << 4, lbo = ((desc >> 16) & 0x3FFF) << 4;
  const size_t sbo = ((desc >> 32) & 0x3FFF) << 4;
  const int mode = static_cast<int>(desc >> 62);
  if (mode != 0 && mode != 1) ::moe_simt::fail("wgmma: only the 128-byte swizzle and no swizzle are modelled");
  if (mn_major) {
    if (mode == 1)
      return swizzle128(start + (mn / 64) * lbo + (k / 8) * sbo + (k % 8) * 128 + 2 * (mn % 64));
    return start + (mn / 8) * sbo + (k / 8) * lbo + (k % 8) * 16 + 2 * (mn % 8);
  }
  if (mode == 1) return swizzle128(start + (mn / 8) * sbo + (mn % 8) * 128 + 2 * k);
  return start + (mn / 8) * sbo + (k / 8) * lbo + (mn % 8) * 16 + 2 * (k % 8);
}

struct WgmmaIn {
  uint64_t desc_a, desc_b;
  int accumulate;
  bool trans_a, trans_b;  // MN-major operands
};

// The warp's 16 rows of D = A B (+ D): the last lane computes, writing every lane's d.
template <bool Bf16>
void wgmma_compute(::moe_simt::Collective& col, void*) {
  WgmmaIn in;
  std::memcpy(&in, col.in[0], sizeof(in));
  const int w = col.warp % 4;
  auto elem = [](uint64_t desc, int mn, int k, bool mn_major) {
    const size_t off = wgmma_elem_offset(desc, mn, k, mn_major);
    ::moe_simt::async_shared_read(shared_at(off), 2, "wgmma operand");
    uint16_t h;
    std::memcpy(&h, shared_at(off), 2);
    return Bf16 ? ::moe_ext::ptx_emu::bf16_to_float(h) : ::moe_ext::ptx_emu::f16_to_float(h);
  };
  float A[16][16], B[16][128];
  for (int r = 0; r < 16; ++r)
    for (int k = 0; k < 16; ++k) A[r][k] = elem(in.desc_a, 16 * w + r, k, in.trans_a);
  for (int n = 0; n < 128; ++n)
    for (int k = 0; k < 16; ++k) B[k][n] = elem(in.desc_b, n, k, in.trans_b);
  for (int lane = 0; lane < ::moe_simt::kWarpSize; ++lane) {
    float* d = static_cast<float*>(const_cast<void*>(col.ptr[lane]));
    for (int j = 0; j < 16; ++j)
      for (int e = 0; e < 4; ++e) {
        const int r = lane / 4 + 8 * (e / 2), n = 8 * j + 2 * (lane % 4) + e % 2;
        float acc = in.accumulate ? d[4 * j + e] : 0.f;
        for (int k = 0; k < 16; ++k) acc = std::fma(A[r][k], B[k][n], acc);
        d[4 * j + e] = acc;
      }
  }
}

}  // namespace sm90_emu

template <typename T, bool kTransA = false, bool kTransB = false>
inline void wgmma_m64n128k16(float (&d)[64], uint64_t desc_a, uint64_t desc_b, bool accumulate) {
  const sm90_emu::WgmmaIn in{desc_a, desc_b, accumulate ? 1 : 0, kTransA, kTransB};
  constexpr bool kBf16 = std::is_same_v<T, __nv_bfloat16>;
  auto col = ::moe_simt::warp_collective(0xffffffffu, &in, sizeof(in), d,
                                         &sm90_emu::wgmma_compute<kBf16>, nullptr,
                                         "wgmma.mma_async.m64n128k16");
  (void)col;
}

#endif  // __CUDACC__

}  // namespace moe_ext::MOE_KERNEL_NS
