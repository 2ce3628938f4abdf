// sm_90 (Hopper) PTX the Hopper grouped GEMM needs, one spelling for both paths (as ptx.h):
//
//   TmaDescriptor, make_tma_descriptor(...)  (host) a tiled tensor map: CUtensorMap encoded by the
//       driver's cuTensorMapEncodeTiled (reached through cudaGetDriverEntryPoint, so nothing links
//       libcuda at build time); on the emulator a plain struct with the same fields.
//   mbarrier_init / mbarrier_arrive / mbarrier_arrive_expect_tx / mbarrier_wait(parity, site, rep)
//       mbarrier.{init,arrive,arrive.expect_tx,try_wait.parity}.shared::cta.b64; the wait is
//       bounded (MOE_EXT_WAIT_TIMEOUT_NS): past it the GPU writes `site`, block, thread,
//       barrier and parity to `rep` (wait_timeout.h) and traps; the emulator names `site` in its
//       deadlock report
//   fence_barrier_init()       fence.mbarrier_init.release.cluster (init visible to the copy
//   engine) fence_proxy_async_shared() fence.proxy.async.shared::cta (generic-proxy writes -> async
//   proxy) tma_load_2d / tma_load_3d  cp.async.bulk.tensor.{2,3}d.shared::cluster.global.tile
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
//   wgmma_m64n256k16<T, kTransA, kTransB>(d[128], ...)   the same for D[64x256] (32 column blocks)
//   wgmma_m64n128k32_e4m3(d, desc_a, desc_b, accumulate)
//       wgmma.mma_async.sync.aligned.m64n128k32.f32.e4m3.e4m3: D[64x128] (+)= A[64x32] B[32x128],
//       both K-major (a 32-byte column of the 128-byte swizzle atom per instruction), d as above
//   setmaxnreg_inc<N>() / setmaxnreg_dec<N>()   setmaxnreg.{inc,dec}.sync.aligned.u32
//   tensor_core_turn_begin() / tensor_core_turn_end()   no instruction: mark where a consumer
//       warp takes and hands on the MMA turn, so the emulator can count the memory instructions
//       issued while holding it (LaunchStats::tc_turn_requests) and after (epilogue_requests)
//
// Thread-block clusters (launched with launch_kernel_cluster, common/launch.h):
//   cluster_ctarank() / cluster_nctarank()   %cluster_ctarank / %cluster_nctarank
//   cluster_dims() / cluster_id() / cluster_ctaid()   %cluster_nctaid / %clusterid / %cluster_ctaid
//   mapa_shared(p, rank)   mapa.shared::cluster.u32: the shared::cluster address of p's offset
//                          in CTA `rank`'s shared memory
//   ld_shared_cluster_u32(addr) / st_shared_cluster_u32(addr, v)   ld/st.shared::cluster.u32
//   mbarrier_arrive_cluster(addr)   mbarrier.arrive.release.cluster.shared::cluster.b64 (an
//                          arrival on a peer's mbarrier, addr from mapa_shared)
//   cluster_arrive() / cluster_arrive_relaxed() / cluster_wait() / cluster_sync()
//                          barrier.cluster.arrive[.relaxed].aligned / barrier.cluster.wait.aligned
//   tma_load_2d_multicast / tma_load_3d_multicast(smem, desc, coords..., bar, cta_mask)
//       cp.async.bulk.tensor.{2,3}d.shared::cluster.global.mbarrier::complete_tx::bytes
//       .multicast::cluster: the box lands at smem's offset in every CTA of cta_mask (bit r =
//       rank r) and completes its bytes on the mbarrier at bar's offset in each of them.
//   (fence_barrier_init() above is fence.mbarrier_init.release.cluster: mbarrier inits visible
//   to the cluster before the cluster barrier that publishes them.)
// Emulator: the CTAs of a cluster run together (one scheduler over all their fibers). A peer's
// shared memory may be touched (mapa, ld/st, remote arrive, multicast) only after the thread has
// completed a barrier.cluster wait, and never after the peer exited; a CTA that exits while a
// peer's access to its shared memory is not ordered before the exit by a cluster barrier it
// waited for is an error (missing cluster sync at start / at exit). DSMEM accesses to a peer are
// bounds- and initialisation-checked but not race-checked. Counters: dsmem_bytes,
// tma_multicast_bytes (per destination CTA; the global read counts once), cluster_barriers.
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
// wgmma reads its operands and updates D at issue (the fence/commit/wait calls are then no-ops, so
// a kernel that overwrites an operand stage before wgmma_wait is not caught); setmaxnreg is a
// no-op. mbarrier waits block the thread (fiber) until the phase completes; a wait that can never
// complete is reported as a deadlock with the barrier's missing arrivals and bytes.
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
  return ptx_emu::shared_address(p);  // moe_emu/ptx.h
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
  using Encode =
      CUresult (*)(CUtensorMap*, CUtensorMapDataType, cuuint32_t, void*, const cuuint64_t*,
                   const cuuint64_t*, const cuuint32_t*, const cuuint32_t*, CUtensorMapInterleave,
                   CUtensorMapSwizzle, CUtensorMapL2promotion, CUtensorMapFloatOOBfill);
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
  return encode(
             &out->map, type, static_cast<cuuint32_t>(rank), const_cast<void*>(base), dims,
             strides_bytes, box, element_strides, CU_TENSOR_MAP_INTERLEAVE_NONE,
             swizzle == TmaSwizzle::k128B ? CU_TENSOR_MAP_SWIZZLE_128B : CU_TENSOR_MAP_SWIZZLE_NONE,
             CU_TENSOR_MAP_L2_PROMOTION_L2_128B, CU_TENSOR_MAP_FLOAT_OOB_FILL_NONE) == CUDA_SUCCESS;
#else
  if (swizzle == TmaSwizzle::k128B && box[0] * static_cast<uint64_t>(elem_bytes) != 128)
    return false;
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
  asm volatile("mbarrier.init.shared::cta.b64 [%0], %1;\n" ::"r"(smem_u32(bar)), "r"(count)
               : "memory");
}
MOE_DEVICE MOE_FORCEINLINE void fence_barrier_init() {
  asm volatile("fence.mbarrier_init.release.cluster;\n" ::: "memory");
}
MOE_DEVICE MOE_FORCEINLINE void fence_proxy_async_shared() {
  asm volatile("fence.proxy.async.shared::cta;\n" ::: "memory");
}
MOE_DEVICE MOE_FORCEINLINE void mbarrier_arrive(uint64_t* bar) {
  asm volatile(
      "{\n.reg .b64 state;\nmbarrier.arrive.shared::cta.b64 state, [%0];\n}\n" ::"r"(smem_u32(bar))
      : "memory");
}
MOE_DEVICE MOE_FORCEINLINE void mbarrier_arrive_expect_tx(uint64_t* bar, uint32_t bytes) {
  asm volatile(
      "{\n.reg .b64 state;\nmbarrier.arrive.expect_tx.shared::cta.b64 state, [%0], %1;\n}\n" ::"r"(
          smem_u32(bar)),
      "r"(bytes)
      : "memory");
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
      "selp.u32 %0, 1, 0, p;\n}\n"
      : "=r"(done)
      : "r"(bar), "r"(parity)
      : "memory");
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
      "[%0], [%1, {%2, %3}], [%4];\n" ::"r"(smem_u32(smem)),
      "l"(desc), "r"(c0), "r"(c1), "r"(smem_u32(bar))
      : "memory");
}
MOE_DEVICE MOE_FORCEINLINE void tma_load_3d(void* smem, const TmaDescriptor* desc, int c0, int c1,
                                            int c2, uint64_t* bar) {
  asm volatile(
      "cp.async.bulk.tensor.3d.shared::cluster.global.tile.mbarrier::complete_tx::bytes "
      "[%0], [%1, {%2, %3, %4}], [%5];\n" ::"r"(smem_u32(smem)),
      "l"(desc), "r"(c0), "r"(c1), "r"(c2), "r"(smem_u32(bar))
      : "memory");
}
MOE_DEVICE MOE_FORCEINLINE void tma_store_2d(const TmaDescriptor* desc, const void* smem, int c0,
                                             int c1) {
  asm volatile(
      "cp.async.bulk.tensor.2d.global.shared::cta.bulk_group [%0, {%2, %3}], [%1];\n" ::"l"(desc),
      "r"(smem_u32(smem)), "r"(c0), "r"(c1)
      : "memory");
}
MOE_DEVICE MOE_FORCEINLINE void tma_store_3d(const TmaDescriptor* desc, const void* smem, int c0,
                                             int c1, int c2) {
  asm volatile(
      "cp.async.bulk.tensor.3d.global.shared::cta.bulk_group [%0, {%2, %3, %4}], [%1];\n" ::"l"(
          desc),
      "r"(smem_u32(smem)), "r"(c0), "r"(c1), "r"(c2)
      : "memory");
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
  asm volatile("tensormap.replace.tile.global_dim.shared::cta.b1024.b32 [%0], %1, %2;\n" ::"r"(
                   smem_u32(smem_map)),
               "n"(kOrd), "r"(size)
               : "memory");
}
MOE_DEVICE MOE_FORCEINLINE void tensormap_publish(TmaDescriptor* gmem_map, const void* smem_map) {
  asm volatile(
      "tensormap.cp_fenceproxy.global.shared::cta.tensormap::generic.release.gpu.sync.aligned "
      "[%0], [%1], 128;\n" ::"l"(gmem_map),
      "r"(smem_u32(smem_map))
      : "memory");
}
MOE_DEVICE MOE_FORCEINLINE void tensormap_acquire(const TmaDescriptor* gmem_map) {
  asm volatile("fence.proxy.tensormap::generic.acquire.gpu [%0], 128;\n" ::"l"(gmem_map)
               : "memory");
}
MOE_DEVICE MOE_FORCEINLINE uint64_t wgmma_desc(const void* smem, uint32_t lbo, uint32_t sbo,
                                               bool swizzle128) {
  const uint64_t addr = (smem_u32(smem) & 0x3FFFF) >> 4;
  return addr | (uint64_t{(lbo & 0x3FFFF) >> 4} << 16) | (uint64_t{(sbo & 0x3FFFF) >> 4} << 32) |
         (uint64_t{swizzle128 ? 1u : 0u} << 62);
}
MOE_DEVICE MOE_FORCEINLINE void tensor_core_turn_begin() {}
MOE_DEVICE MOE_FORCEINLINE void tensor_core_turn_end() {}
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
#define MOE_WGMMA_M64N128K16(TYPE)                                                                 \
  asm volatile(                                                                                    \
      "{\n.reg .pred p;\nsetp.ne.b32 p, %66, 0;\n"                                                 \
      "wgmma.mma_async.sync.aligned.m64n128k16.f32." TYPE "." TYPE                                 \
      " "                                                                                          \
      "{%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, %16, %17, %18, "     \
      "%19, %20, %21, %22, %23, %24, %25, %26, %27, %28, %29, %30, %31, %32, %33, %34, %35, %36, " \
      "%37, %38, %39, %40, %41, %42, %43, %44, %45, %46, %47, %48, %49, %50, %51, %52, %53, %54, " \
      "%55, %56, %57, %58, %59, %60, %61, %62, %63}, %64, %65, p, 1, 1, %67, %68;\n}\n"            \
      : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3]), "+f"(d[4]), "+f"(d[5]), "+f"(d[6]),        \
        "+f"(d[7]), "+f"(d[8]), "+f"(d[9]), "+f"(d[10]), "+f"(d[11]), "+f"(d[12]), "+f"(d[13]),    \
        "+f"(d[14]), "+f"(d[15]), "+f"(d[16]), "+f"(d[17]), "+f"(d[18]), "+f"(d[19]), "+f"(d[20]), \
        "+f"(d[21]), "+f"(d[22]), "+f"(d[23]), "+f"(d[24]), "+f"(d[25]), "+f"(d[26]), "+f"(d[27]), \
        "+f"(d[28]), "+f"(d[29]), "+f"(d[30]), "+f"(d[31]), "+f"(d[32]), "+f"(d[33]), "+f"(d[34]), \
        "+f"(d[35]), "+f"(d[36]), "+f"(d[37]), "+f"(d[38]), "+f"(d[39]), "+f"(d[40]), "+f"(d[41]), \
        "+f"(d[42]), "+f"(d[43]), "+f"(d[44]), "+f"(d[45]), "+f"(d[46]), "+f"(d[47]), "+f"(d[48]), \
        "+f"(d[49]), "+f"(d[50]), "+f"(d[51]), "+f"(d[52]), "+f"(d[53]), "+f"(d[54]), "+f"(d[55]), \
        "+f"(d[56]), "+f"(d[57]), "+f"(d[58]), "+f"(d[59]), "+f"(d[60]), "+f"(d[61]), "+f"(d[62]), \
        "+f"(d[63])                                                                                \
      : "l"(desc_a), "l"(desc_b), "r"(static_cast<int>(accumulate)), "n"(kTransA ? 1 : 0),         \
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
#define MOE_WGMMA_M64N256K16(TYPE)                                                                 \
  asm volatile(                                                                                    \
      "{\n.reg .pred p;\nsetp.ne.b32 p, %130, 0;\n"                                                \
      "wgmma.mma_async.sync.aligned.m64n256k16.f32." TYPE "." TYPE                                 \
      " {"                                                                                         \
      "%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, "                     \
      "%16, %17, %18, %19, %20, %21, %22, %23, %24, %25, %26, %27, %28, %29, %30, %31, "           \
      "%32, %33, %34, %35, %36, %37, %38, %39, %40, %41, %42, %43, %44, %45, %46, %47, "           \
      "%48, %49, %50, %51, %52, %53, %54, %55, %56, %57, %58, %59, %60, %61, %62, %63, "           \
      "%64, %65, %66, %67, %68, %69, %70, %71, %72, %73, %74, %75, %76, %77, %78, %79, "           \
      "%80, %81, %82, %83, %84, %85, %86, %87, %88, %89, %90, %91, %92, %93, %94, %95, "           \
      "%96, %97, %98, %99, %100, %101, %102, %103, %104, %105, %106, %107, %108, %109, %110, "     \
      "%111, "                                                                                     \
      "%112, %113, %114, %115, %116, %117, %118, %119, %120, %121, %122, %123, %124, %125, %126, " \
      "%127"                                                                                       \
      "}, %128, %129, p, 1, 1, %131, %132;\n}\n"                                                   \
      : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3]), "+f"(d[4]), "+f"(d[5]), "+f"(d[6]),        \
        "+f"(d[7]), "+f"(d[8]), "+f"(d[9]), "+f"(d[10]), "+f"(d[11]), "+f"(d[12]), "+f"(d[13]),    \
        "+f"(d[14]), "+f"(d[15]), "+f"(d[16]), "+f"(d[17]), "+f"(d[18]), "+f"(d[19]), "+f"(d[20]), \
        "+f"(d[21]), "+f"(d[22]), "+f"(d[23]), "+f"(d[24]), "+f"(d[25]), "+f"(d[26]), "+f"(d[27]), \
        "+f"(d[28]), "+f"(d[29]), "+f"(d[30]), "+f"(d[31]), "+f"(d[32]), "+f"(d[33]), "+f"(d[34]), \
        "+f"(d[35]), "+f"(d[36]), "+f"(d[37]), "+f"(d[38]), "+f"(d[39]), "+f"(d[40]), "+f"(d[41]), \
        "+f"(d[42]), "+f"(d[43]), "+f"(d[44]), "+f"(d[45]), "+f"(d[46]), "+f"(d[47]), "+f"(d[48]), \
        "+f"(d[49]), "+f"(d[50]), "+f"(d[51]), "+f"(d[52]), "+f"(d[53]), "+f"(d[54]), "+f"(d[55]), \
        "+f"(d[56]), "+f"(d[57]), "+f"(d[58]), "+f"(d[59]), "+f"(d[60]), "+f"(d[61]), "+f"(d[62]), \
        "+f"(d[63]), "+f"(d[64]), "+f"(d[65]), "+f"(d[66]), "+f"(d[67]), "+f"(d[68]), "+f"(d[69]), \
        "+f"(d[70]), "+f"(d[71]), "+f"(d[72]), "+f"(d[73]), "+f"(d[74]), "+f"(d[75]), "+f"(d[76]), \
        "+f"(d[77]), "+f"(d[78]), "+f"(d[79]), "+f"(d[80]), "+f"(d[81]), "+f"(d[82]), "+f"(d[83]), \
        "+f"(d[84]), "+f"(d[85]), "+f"(d[86]), "+f"(d[87]), "+f"(d[88]), "+f"(d[89]), "+f"(d[90]), \
        "+f"(d[91]), "+f"(d[92]), "+f"(d[93]), "+f"(d[94]), "+f"(d[95]), "+f"(d[96]), "+f"(d[97]), \
        "+f"(d[98]), "+f"(d[99]), "+f"(d[100]), "+f"(d[101]), "+f"(d[102]), "+f"(d[103]),          \
        "+f"(d[104]), "+f"(d[105]), "+f"(d[106]), "+f"(d[107]), "+f"(d[108]), "+f"(d[109]),        \
        "+f"(d[110]), "+f"(d[111]), "+f"(d[112]), "+f"(d[113]), "+f"(d[114]), "+f"(d[115]),        \
        "+f"(d[116]), "+f"(d[117]), "+f"(d[118]), "+f"(d[119]), "+f"(d[120]), "+f"(d[121]),        \
        "+f"(d[122]), "+f"(d[123]), "+f"(d[124]), "+f"(d[125]), "+f"(d[126]), "+f"(d[127])         \
      : "l"(desc_a), "l"(desc_b), "r"(static_cast<int>(accumulate)), "n"(kTransA ? 1 : 0),         \
        "n"(kTransB ? 1 : 0))
// e4m3 x e4m3 -> fp32, K = 32 per instruction (one 32-byte column of a 128-byte swizzle atom, as
// k16 of bf16): both operands K-major (fp8 wgmma has no transpose), d as in the bf16 form.
MOE_DEVICE MOE_FORCEINLINE void wgmma_m64n128k32_e4m3(float (&d)[64], uint64_t desc_a,
                                                      uint64_t desc_b, bool accumulate) {
  asm volatile(
      "{\n.reg .pred p;\nsetp.ne.b32 p, %66, 0;\n"
      "wgmma.mma_async.sync.aligned.m64n128k32.f32.e4m3.e4m3 "
      "{%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, %16, %17, %18, "
      "%19, %20, %21, %22, %23, %24, %25, %26, %27, %28, %29, %30, %31, %32, %33, %34, %35, %36, "
      "%37, %38, %39, %40, %41, %42, %43, %44, %45, %46, %47, %48, %49, %50, %51, %52, %53, %54, "
      "%55, %56, %57, %58, %59, %60, %61, %62, %63}, %64, %65, p, 1, 1;\n}\n"
      : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3]), "+f"(d[4]), "+f"(d[5]), "+f"(d[6]),
        "+f"(d[7]), "+f"(d[8]), "+f"(d[9]), "+f"(d[10]), "+f"(d[11]), "+f"(d[12]), "+f"(d[13]),
        "+f"(d[14]), "+f"(d[15]), "+f"(d[16]), "+f"(d[17]), "+f"(d[18]), "+f"(d[19]), "+f"(d[20]),
        "+f"(d[21]), "+f"(d[22]), "+f"(d[23]), "+f"(d[24]), "+f"(d[25]), "+f"(d[26]), "+f"(d[27]),
        "+f"(d[28]), "+f"(d[29]), "+f"(d[30]), "+f"(d[31]), "+f"(d[32]), "+f"(d[33]), "+f"(d[34]),
        "+f"(d[35]), "+f"(d[36]), "+f"(d[37]), "+f"(d[38]), "+f"(d[39]), "+f"(d[40]), "+f"(d[41]),
        "+f"(d[42]), "+f"(d[43]), "+f"(d[44]), "+f"(d[45]), "+f"(d[46]), "+f"(d[47]), "+f"(d[48]),
        "+f"(d[49]), "+f"(d[50]), "+f"(d[51]), "+f"(d[52]), "+f"(d[53]), "+f"(d[54]), "+f"(d[55]),
        "+f"(d[56]), "+f"(d[57]), "+f"(d[58]), "+f"(d[59]), "+f"(d[60]), "+f"(d[61]), "+f"(d[62]),
        "+f"(d[63])
      : "l"(desc_a), "l"(desc_b), "r"(static_cast<int>(accumulate)));
}
// The 256-column form (the 128x256 tile's per-warpgroup instruction): d[4j + e] as in the
// 128-column form, for 8-column blocks j = 0..31.
template <typename T, bool kTransA = false, bool kTransB = false>
MOE_DEVICE MOE_FORCEINLINE void wgmma_m64n256k16(float (&d)[128], uint64_t desc_a, uint64_t desc_b,
                                                 bool accumulate) {
  if constexpr (std::is_same_v<T, __nv_bfloat16>) {
    MOE_WGMMA_M64N256K16("bf16");
  } else {
    MOE_WGMMA_M64N256K16("f16");
  }
}
#undef MOE_WGMMA_M64N256K16
template <int N>
MOE_DEVICE MOE_FORCEINLINE void setmaxnreg_inc() {
  asm volatile("setmaxnreg.inc.sync.aligned.u32 %0;\n" ::"n"(N));
}
template <int N>
MOE_DEVICE MOE_FORCEINLINE void setmaxnreg_dec() {
  asm volatile("setmaxnreg.dec.sync.aligned.u32 %0;\n" ::"n"(N));
}

// ------------------------------------------------------------------- thread-block clusters
MOE_DEVICE MOE_FORCEINLINE uint32_t cluster_ctarank() {
  uint32_t r;
  asm volatile("mov.u32 %0, %%cluster_ctarank;\n" : "=r"(r));
  return r;
}
MOE_DEVICE MOE_FORCEINLINE uint32_t cluster_nctarank() {
  uint32_t r;
  asm volatile("mov.u32 %0, %%cluster_nctarank;\n" : "=r"(r));
  return r;
}
#define MOE_SREG_DIM3(NAME, REG)                          \
  MOE_DEVICE MOE_FORCEINLINE dim3 NAME() {                \
    uint32_t x, y, z;                                     \
    asm volatile("mov.u32 %0, %%" REG ".x;\n" : "=r"(x)); \
    asm volatile("mov.u32 %0, %%" REG ".y;\n" : "=r"(y)); \
    asm volatile("mov.u32 %0, %%" REG ".z;\n" : "=r"(z)); \
    return dim3(x, y, z);                                 \
  }
MOE_SREG_DIM3(cluster_dims, "cluster_nctaid")
MOE_SREG_DIM3(cluster_id, "clusterid")
MOE_SREG_DIM3(cluster_ctaid, "cluster_ctaid")
#undef MOE_SREG_DIM3
MOE_DEVICE MOE_FORCEINLINE uint32_t mapa_shared(const void* p, uint32_t rank) {
  uint32_t r;
  asm volatile("mapa.shared::cluster.u32 %0, %1, %2;\n" : "=r"(r) : "r"(smem_u32(p)), "r"(rank));
  return r;
}
MOE_DEVICE MOE_FORCEINLINE uint32_t ld_shared_cluster_u32(uint32_t addr) {
  uint32_t v;
  asm volatile("ld.shared::cluster.u32 %0, [%1];\n" : "=r"(v) : "r"(addr) : "memory");
  return v;
}
MOE_DEVICE MOE_FORCEINLINE void st_shared_cluster_u32(uint32_t addr, uint32_t v) {
  asm volatile("st.shared::cluster.u32 [%0], %1;\n" ::"r"(addr), "r"(v) : "memory");
}
MOE_DEVICE MOE_FORCEINLINE void mbarrier_arrive_cluster(uint32_t bar) {
  asm volatile("mbarrier.arrive.release.cluster.shared::cluster.b64 _, [%0];\n" ::"r"(bar)
               : "memory");
}
MOE_DEVICE MOE_FORCEINLINE void cluster_arrive() {
  asm volatile("barrier.cluster.arrive.aligned;\n" ::: "memory");
}
MOE_DEVICE MOE_FORCEINLINE void cluster_arrive_relaxed() {
  asm volatile("barrier.cluster.arrive.relaxed.aligned;\n" ::: "memory");
}
MOE_DEVICE MOE_FORCEINLINE void cluster_wait() {
  asm volatile("barrier.cluster.wait.aligned;\n" ::: "memory");
}
MOE_DEVICE MOE_FORCEINLINE void cluster_sync() {
  cluster_arrive();
  cluster_wait();
}
MOE_DEVICE MOE_FORCEINLINE void tma_load_2d_multicast(void* smem, const TmaDescriptor* desc, int c0,
                                                      int c1, uint64_t* bar, uint16_t cta_mask) {
  asm volatile(
      "cp.async.bulk.tensor.2d.shared::cluster.global.mbarrier::complete_tx::bytes"
      ".multicast::cluster [%0], [%1, {%4, %5}], [%2], %3;\n" ::"r"(smem_u32(smem)),
      "l"(desc), "r"(smem_u32(bar)), "h"(cta_mask), "r"(c0), "r"(c1)
      : "memory");
}
MOE_DEVICE MOE_FORCEINLINE void tma_load_3d_multicast(void* smem, const TmaDescriptor* desc, int c0,
                                                      int c1, int c2, uint64_t* bar,
                                                      uint16_t cta_mask) {
  asm volatile(
      "cp.async.bulk.tensor.3d.shared::cluster.global.mbarrier::complete_tx::bytes"
      ".multicast::cluster [%0], [%1, {%4, %5, %6}], [%2], %3;\n" ::"r"(smem_u32(smem)),
      "l"(desc), "r"(smem_u32(bar)), "h"(cta_mask), "r"(c0), "r"(c1), "r"(c2)
      : "memory");
}

#endif  // __CUDACC__

}  // namespace moe_ext::MOE_KERNEL_NS

#if !defined(__CUDACC__)
// The emulator's implementation of the functions above: csrc/simt/include/moe_emu/ptx_sm90.h,
// found through the include path that only the emulator build adds (cmake/emu.cmake).
#include <moe_emu/ptx_sm90.h>
#endif
