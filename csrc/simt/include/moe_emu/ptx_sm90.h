// The CPU SIMT emulator's implementation of common/ptx_sm90.h (mbarrier, TMA loads/stores and
// tensor maps, wgmma): the non-__CUDACC__ side of that header, included by it at its end. Only
// the emulator's build puts csrc/simt/include on the include path (cmake/emu.cmake), so this is
// never seen by nvcc. The semantics are documented in common/ptx_sm90.h.
#pragma once

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "../../runtime.h"

namespace moe_ext::MOE_KERNEL_NS {

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
    ::moe_simt::fail(std::string(kind) +
                     ": shared side not aligned (1024 bytes for the 128-byte "
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
    ::moe_simt::fail(std::string(kind) +
                     ": the tensor map is in shared memory (TMA reads it from "
                     "global, constant or parameter memory)");
  if (desc->published != 0) {
    const auto& acquired = ::moe_simt::this_thread().acquired_maps;
    const auto it = acquired.find(desc);
    if (it == acquired.end() || it->second != desc->published)
      ::moe_simt::fail(std::string(kind) +
                       ": uses a tensor map rewritten on the device without "
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
  ::moe_simt::this_thread().block->stats.tma_load_bytes += total;
  sm90_emu::for_each_box_row(
      d, smem, coord, kind, [&](unsigned char* row, int64_t x_lo, int64_t x_hi, size_t shared_row) {
        // the in-range elements of a box row are contiguous in global memory: one bulk read
        if (row != nullptr && x_hi > x_lo)
          ::moe_simt::check_global(row + x_lo * d.elem_bytes, (x_hi - x_lo) * d.elem_bytes, false,
                                   "cp.async.bulk.tensor read", /*bulk=*/true);
        for (int64_t x = 0; x < int64_t{d.box[0]}; ++x) {
          unsigned char* dst = sm90_emu::box_elem(d, shared_row, x);
          if (row != nullptr && x >= x_lo && x < x_hi)
            std::memcpy(dst, row + x * d.elem_bytes, d.elem_bytes);
          else
            std::memset(dst, 0, d.elem_bytes);
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
                       ::moe_simt::async_shared_read(src, d.elem_bytes,
                                                     "cp.async.bulk.tensor store source");
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
    ::moe_simt::fail(
        "cp.async.bulk.tensor (store): its tensor map was rewritten while the store "
        "was in flight");
  if (store_source(st.map, st.smem, st.coord) != st.source)
    ::moe_simt::fail(
        "cp.async.bulk.tensor (store): its shared source changed while the store was in "
        "flight (rewritten before cp.async.bulk.wait_group.read retired it)");
}

inline void store_complete(const PendingStore& st) {
  const TmaDescriptor& d = st.map;
  size_t next = 0;
  for_each_box_row(d, st.smem, st.coord, "cp.async.bulk.tensor (store)",
                   [&](unsigned char* row, int64_t x_lo, int64_t x_hi, size_t) {
                     if (row == nullptr || x_hi <= x_lo) return;
                     const size_t bytes = size_t(x_hi - x_lo) * d.elem_bytes;
                     ::moe_simt::check_global(row + x_lo * d.elem_bytes, bytes, true,
                                              "cp.async.bulk.tensor store",
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
inline void tensor_core_turn_begin() { ::moe_simt::set_tensor_core_phase(::moe_simt::kTcTurn); }
inline void tensor_core_turn_end() { ::moe_simt::set_tensor_core_phase(::moe_simt::kTcAfterTurn); }
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
// 128-byte swizzle ((T,8,m),(8,k)):((1,T,LBO),(8T,SBO)), none
// ((T,1,m),(8,k)):((1,T,SBO),(1T,LBO))).
inline size_t wgmma_elem_offset(uint64_t desc, int mn, int k, bool mn_major, int elem_bytes = 2) {
  const size_t start = (desc & 0x3FFF) << 4, lbo = ((desc >> 16) & 0x3FFF) << 4;
  const size_t sbo = ((desc >> 32) & 0x3FFF) << 4;
  const int mode = static_cast<int>(desc >> 62);
  if (mode != 0 && mode != 1)
    ::moe_simt::fail("wgmma: only the 128-byte swizzle and no swizzle are modelled");
  if (mn_major) {
    if (mode == 1)
      return swizzle128(start + (mn / 64) * lbo + (k / 8) * sbo + (k % 8) * 128 + 2 * (mn % 64));
    return start + (mn / 8) * sbo + (k / 8) * lbo + (k % 8) * 16 + 2 * (mn % 8);
  }
  // K-major (1- or 2-byte elements: a 16-byte core-matrix row holds 16 / elem_bytes of k)
  const int per_chunk = 16 / elem_bytes;
  if (mode == 1) return swizzle128(start + (mn / 8) * sbo + (mn % 8) * 128 + elem_bytes * k);
  return start + (mn / 8) * sbo + (k / per_chunk) * lbo + (mn % 8) * 16 +
         elem_bytes * (k % per_chunk);
}

struct WgmmaIn {
  uint64_t desc_a, desc_b;
  int accumulate;
  bool trans_a, trans_b;  // MN-major operands
};

// The warp's 16 rows of D = A B (+ D): the last lane computes, writing every lane's d.
enum class WgmmaType { kBf16, kF16, kE4m3 };

template <WgmmaType Type, int N>
void wgmma_compute(::moe_simt::Collective& col, void*) {
  constexpr int kBytes = Type == WgmmaType::kE4m3 ? 1 : 2, K = 32 / kBytes;
  WgmmaIn in;
  std::memcpy(&in, col.in[0], sizeof(in));
  const int w = col.warp % 4;
  auto elem = [](uint64_t desc, int mn, int k, bool mn_major) {
    const size_t off = wgmma_elem_offset(desc, mn, k, mn_major, kBytes);
    ::moe_simt::async_shared_read(shared_at(off), kBytes, "wgmma operand");
    if constexpr (Type == WgmmaType::kE4m3) {
      uint8_t b;
      std::memcpy(&b, shared_at(off), 1);
      return ::moe_ext::e4m3_to_f32(b);
    } else {
      uint16_t h;
      std::memcpy(&h, shared_at(off), 2);
      return Type == WgmmaType::kBf16 ? ::moe_ext::ptx_emu::bf16_to_float(h)
                                      : ::moe_ext::ptx_emu::f16_to_float(h);
    }
  };
  // what the warpgroup's instruction reads from shared: this warp's 16 rows of A, and B once
  // (32 bytes of K per row for every type)
  auto& stats = ::moe_simt::this_thread().block->stats;
  stats.wgmma_shared_bytes += 16 * 32 + (w == 0 ? N * 32 : 0);
  if (w == 0) ++stats.wgmma;
  float A[16][K], B[K][N];
  for (int r = 0; r < 16; ++r)
    for (int k = 0; k < K; ++k) A[r][k] = elem(in.desc_a, 16 * w + r, k, in.trans_a);
  for (int n = 0; n < N; ++n)
    for (int k = 0; k < K; ++k) B[k][n] = elem(in.desc_b, n, k, in.trans_b);
  for (int lane = 0; lane < ::moe_simt::kWarpSize; ++lane) {
    float* d = static_cast<float*>(const_cast<void*>(col.ptr[lane]));
    for (int j = 0; j < N / 8; ++j)
      for (int e = 0; e < 4; ++e) {
        const int r = lane / 4 + 8 * (e / 2), n = 8 * j + 2 * (lane % 4) + e % 2;
        float acc = in.accumulate ? d[4 * j + e] : 0.f;
        for (int k = 0; k < K; ++k) acc = std::fma(A[r][k], B[k][n], acc);
        d[4 * j + e] = acc;
      }
  }
}

}  // namespace sm90_emu

template <typename T, bool kTransA = false, bool kTransB = false>
inline void wgmma_m64n128k16(float (&d)[64], uint64_t desc_a, uint64_t desc_b, bool accumulate) {
  const sm90_emu::WgmmaIn in{desc_a, desc_b, accumulate ? 1 : 0, kTransA, kTransB};
  constexpr auto kType =
      std::is_same_v<T, __nv_bfloat16> ? sm90_emu::WgmmaType::kBf16 : sm90_emu::WgmmaType::kF16;
  auto col = ::moe_simt::warp_collective(0xffffffffu, &in, sizeof(in), d,
                                         &sm90_emu::wgmma_compute<kType, 128>, nullptr,
                                         "wgmma.mma_async.m64n128k16");
  (void)col;
}

template <typename T, bool kTransA = false, bool kTransB = false>
inline void wgmma_m64n256k16(float (&d)[128], uint64_t desc_a, uint64_t desc_b, bool accumulate) {
  const sm90_emu::WgmmaIn in{desc_a, desc_b, accumulate ? 1 : 0, kTransA, kTransB};
  constexpr auto kType =
      std::is_same_v<T, __nv_bfloat16> ? sm90_emu::WgmmaType::kBf16 : sm90_emu::WgmmaType::kF16;
  auto col = ::moe_simt::warp_collective(0xffffffffu, &in, sizeof(in), d,
                                         &sm90_emu::wgmma_compute<kType, 256>, nullptr,
                                         "wgmma.mma_async.m64n256k16");
  (void)col;
}

inline void wgmma_m64n128k32_e4m3(float (&d)[64], uint64_t desc_a, uint64_t desc_b,
                                  bool accumulate) {
  const sm90_emu::WgmmaIn in{desc_a, desc_b, accumulate ? 1 : 0, false, false};
  auto col = ::moe_simt::warp_collective(0xffffffffu, &in, sizeof(in), d,
                                         &sm90_emu::wgmma_compute<sm90_emu::WgmmaType::kE4m3, 128>,
                                         nullptr, "wgmma.mma_async.m64n128k32.e4m3");
  (void)col;
}

// ------------------------------------------------------------------- thread-block clusters
namespace sm90_emu {
// A shared::cluster address: the own CTA's shared offsets (< 2^20) as they are, a peer's
// (mapa) tagged with bit 31 and the rank in bits 20..23.
constexpr uint32_t kClusterTag = 1u << 31;
inline ::moe_simt::Block& cluster_target(uint32_t addr, size_t* off, const char* kind,
                                         bool record = true) {
  auto& b = *::moe_simt::this_thread().block;
  if (!(addr & kClusterTag)) {
    *off = addr;
    return b;
  }
  *off = addr & 0xFFFFFu;
  return ::moe_simt::cluster_block((addr >> 20) & 0xFu, kind, record);
}
}  // namespace sm90_emu

inline uint32_t cluster_ctarank() { return ::moe_simt::this_thread().block->rank; }
inline uint32_t cluster_nctarank() {
  return static_cast<uint32_t>(::moe_simt::this_thread().block->cluster->blocks.size());
}
inline dim3 cluster_dims() { return ::moe_simt::this_thread().block->cluster->dims; }
inline dim3 cluster_id() {
  const uint3 i = ::moe_simt::this_thread().block->cluster->id;
  return dim3(i.x, i.y, i.z);
}
inline dim3 cluster_ctaid() {
  const uint3 i = ::moe_simt::this_thread().block->cluster_idx;
  return dim3(i.x, i.y, i.z);
}
inline uint32_t mapa_shared(const void* p, uint32_t rank) {
  ::moe_simt::Block& t = ::moe_simt::cluster_block(rank, "mapa.shared::cluster", false);
  const auto off = static_cast<uint32_t>(sm90_emu::shared_offset(p));
  if (&t == ::moe_simt::this_thread().block) return off;
  return sm90_emu::kClusterTag | (rank << 20) | off;
}
inline uint32_t ld_shared_cluster_u32(uint32_t addr) {
  size_t off;
  auto& t = sm90_emu::cluster_target(addr, &off, "ld.shared::cluster");
  uint32_t v;
  ::moe_simt::cluster_shared_access(t, off, &v, 4, false, "ld.shared::cluster");
  return v;
}
inline void st_shared_cluster_u32(uint32_t addr, uint32_t v) {
  size_t off;
  auto& t = sm90_emu::cluster_target(addr, &off, "st.shared::cluster");
  ::moe_simt::cluster_shared_access(t, off, &v, 4, true, "st.shared::cluster");
}
inline void mbarrier_arrive_cluster(uint32_t bar) {
  size_t off;
  auto& t = sm90_emu::cluster_target(bar, &off, "mbarrier.arrive.release.cluster");
  ::moe_simt::mbarrier_arrive_at(t, off, 0, "mbarrier.arrive.release.cluster");
}
inline void cluster_arrive() { ::moe_simt::cluster_arrive("barrier.cluster.arrive"); }
inline void cluster_arrive_relaxed() {
  ::moe_simt::cluster_arrive("barrier.cluster.arrive.relaxed");
}
inline void cluster_wait() { ::moe_simt::cluster_wait("barrier.cluster.wait"); }
inline void cluster_sync() {
  cluster_arrive();
  cluster_wait();
}

// Multicast TMA load: the box is read from global memory once and lands at the same shared
// offset in every CTA of `cta_mask`, completing its bytes on the mbarrier at bar's offset there.
inline void tma_load_multicast(void* smem, const TmaDescriptor* desc, const int* coord,
                               uint64_t* bar, uint16_t cta_mask) {
  const TmaDescriptor& d = *desc;
  const char* kind = "cp.async.bulk.tensor.multicast::cluster";
  sm90_emu::check_map_use(desc, kind);
  const size_t base = sm90_emu::shared_offset(smem);
  std::vector<unsigned char> img;
  const size_t total = sm90_emu::for_each_box_row(d, smem, coord, kind, [](auto...) {});
  img.assign(total, 0);
  sm90_emu::for_each_box_row(
      d, smem, coord, kind, [&](unsigned char* row, int64_t x_lo, int64_t x_hi, size_t shared_row) {
        if (row != nullptr && x_hi > x_lo)
          ::moe_simt::check_global(row + x_lo * d.elem_bytes, (x_hi - x_lo) * d.elem_bytes, false,
                                   "cp.async.bulk.tensor read", /*bulk=*/true);
        for (int64_t x = x_lo; row != nullptr && x < x_hi; ++x) {
          size_t off = shared_row + size_t(x) * d.elem_bytes;
          if (d.swizzle == TmaSwizzle::k128B) off = swizzle128(off);
          std::memcpy(img.data() + (off - base), row + x * d.elem_bytes, d.elem_bytes);
        }
      });
  auto& me = *::moe_simt::this_thread().block;
  const size_t bar_off = sm90_emu::shared_offset(bar);
  if (cta_mask == 0) ::moe_simt::fail(std::string(kind) + ": empty cta_mask");
  for (uint32_t r = 0; r < 16; ++r) {
    if (!(cta_mask >> r & 1)) continue;
    ::moe_simt::Block& t = ::moe_simt::cluster_block(r, kind);
    ::moe_simt::async_shared_write_at(t, base, total, kind);
    std::memcpy(t.shared.data() + base, img.data(), total);
    ::moe_simt::mbarrier_complete_tx_at(t, bar_off, static_cast<int64_t>(total));
    me.stats.tma_multicast_bytes += total;
  }
}
inline void tma_load_2d_multicast(void* smem, const TmaDescriptor* desc, int c0, int c1,
                                  uint64_t* bar, uint16_t cta_mask) {
  const int c[3] = {c0, c1, 0};
  tma_load_multicast(smem, desc, c, bar, cta_mask);
}
inline void tma_load_3d_multicast(void* smem, const TmaDescriptor* desc, int c0, int c1, int c2,
                                  uint64_t* bar, uint16_t cta_mask) {
  const int c[3] = {c0, c1, c2};
  tma_load_multicast(smem, desc, c, bar, cta_mask);
}

}  // namespace moe_ext::MOE_KERNEL_NS
