// Self-test kernels of the thread-block-cluster PTX layer (common/ptx_sm90.h): cluster ids and
// ranks, distributed shared memory (mapa + ld/st.shared::cluster), remote mbarrier arrivals and
// multicast TMA. tests/test_emu_cluster.py runs them on the emulator against expectations
// computed in Python, and with a `variant` that plants a synchronisation bug the emulator's
// cluster checkers must report (1: no cluster sync after the mbarrier/shared initialisation,
// 2: no cluster sync before exit; 0 is the correct program). The nvcc instantiation (sm_90a)
// exists so the tests can check the multicast TMA's SASS. Torch-free.
#pragma once

#include <cstring>

#include "../../common/launch.h"
#include "../../common/memory.h"
#include "../../common/ptx_sm90.h"
#include "../../common/shared.h"
#include "cluster_kernels.h"

namespace moe_ext::MOE_KERNEL_NS {

namespace cluster_test {
constexpr int kIdsPerBlock = 10;
MOE_DEVICE MOE_FORCEINLINE int64_t block_linear() {
  return (int64_t{blockIdx.z} * gridDim.y + blockIdx.y) * gridDim.x + blockIdx.x;
}
}  // namespace cluster_test

// out[block][10] int32 = ctarank, nctarank, clusterid.xyz, cluster_ctaid.xyz, cluster_nctaid.xy
__global__ void cluster_ids_kernel(ClusterTestParams p) {
  if (threadIdx.x != 0) return;
  int32_t* o = static_cast<int32_t*>(p.out) + cluster_test::block_linear() * 10;
  const dim3 id = cluster_id(), cta = cluster_ctaid(), dims = cluster_dims();
  const int32_t v[10] = {int32_t(cluster_ctarank()),
                         int32_t(cluster_nctarank()),
                         int32_t(id.x),
                         int32_t(id.y),
                         int32_t(id.z),
                         int32_t(cta.x),
                         int32_t(cta.y),
                         int32_t(cta.z),
                         int32_t(dims.x),
                         int32_t(dims.y)};
  for (int i = 0; i < 10; ++i) st_global(&o[i], v[i]);
}

// DSMEM exchange, blockDim.x threads: thread i writes mine[i] = 1000 * rank + i, then (after a
// cluster sync) reads the next rank's mine[i] and stores it into the next-but-one rank's
// theirs[i] via st.shared::cluster; after a second sync out[block][i] = theirs[i].
// n[0] = variant.
__global__ void cluster_dsmem_kernel(ClusterTestParams p) {
  MOE_SHARED_ARRAY(uint32_t, mine, 256);
  MOE_SHARED_ARRAY(uint32_t, theirs, 256);
  const int i = static_cast<int>(threadIdx.x);
  const uint32_t rank = cluster_ctarank(), n = cluster_nctarank();
  st_shared(&mine[i], 1000 * rank + i);
  if (p.n[0] != 1) cluster_sync();
  const uint32_t v = ld_shared_cluster_u32(mapa_shared(&mine[i], (rank + 1) % n));
  st_shared_cluster_u32(mapa_shared(&theirs[i], (rank + 2) % n), v);
  if (p.n[0] != 2) cluster_sync();
  if (p.n[0] != 2) {
    uint32_t* o = static_cast<uint32_t*>(p.out) + cluster_test::block_linear() * blockDim.x;
    st_global(&o[i], ld_shared(&theirs[i]));
  }
}

// Remote mbarrier arrivals, one warp: each CTA's mbarrier expects one arrival per peer; lane r
// of every CTA writes 100 * rank + r into slot[rank] of peer r (r != rank) and arrives on peer
// r's mbarrier (release orders the store); each CTA waits on its own mbarrier and writes
// out[block][r] = slot[r] (its own slot: -1). n[0] = variant.
__global__ void cluster_remote_arrive_kernel(ClusterTestParams p) {
  MOE_SHARED_DYNAMIC(uint64_t, bar);  // [0]: the mbarrier, then 8 uint32 slots
  uint32_t* slot = reinterpret_cast<uint32_t*>(bar + 2);
  const uint32_t rank = cluster_ctarank(), n = cluster_nctarank(), lane = threadIdx.x;
  if (lane == 0) {
    mbarrier_init(&bar[0], static_cast<int>(n - 1));
    fence_barrier_init();
  }
  if (lane < 8) st_shared(&slot[lane], 0xFFFFFFFFu);
  if (p.n[0] != 1) cluster_sync();
  __syncwarp();
  if (lane < n && lane != rank) {
    st_shared_cluster_u32(mapa_shared(&slot[rank], lane), 100 * rank + lane);
    mbarrier_arrive_cluster(mapa_shared(&bar[0], lane));
  }
  mbarrier_wait(&bar[0], 0, kWaitTestClusterArrive, nullptr);
  if (lane < n) {
    uint32_t* o = static_cast<uint32_t*>(p.out) + cluster_test::block_linear() * 8;
    st_global(&o[lane], ld_shared(&slot[lane]));
  }
  if (p.n[0] != 2) cluster_sync();
}

// Multicast TMA: the CTAs of a 2-CTA cluster each load one half of a tile -- rows
// [4 r, 4 r + 4) of an 8 x 32 bf16 box (2D) or z-slice r of a 2 x 4 x 32 box (3D) -- and
// multicast it to both, so each ends up with the whole tile, whose 512 bytes complete on its
// own mbarrier. One warp; out[block][256] bf16 = the CTA's tile. n[0] = rank of the map (2, 3),
// n[1] = variant, n[2..4] = box origin (x, y, z).
__global__ void cluster_multicast_kernel(const MOE_GRID_CONSTANT TmaDescriptor map,
                                         ClusterTestParams p) {
  MOE_SHARED_DYNAMIC(unsigned char, smem_raw);
  unsigned char* tile = smem_raw + (128 - shared_address(smem_raw) % 128) % 128;
  uint64_t* full = reinterpret_cast<uint64_t*>(tile + 512);
  const uint32_t rank = cluster_ctarank();
  const int x = static_cast<int>(p.n[2]), y = static_cast<int>(p.n[3]);
  const int z = static_cast<int>(p.n[4]);
  if (threadIdx.x == 0) {
    mbarrier_init(full, 1);
    fence_barrier_init();
  }
  if (p.n[1] != 1) cluster_sync();
  if (threadIdx.x == 0) {
    mbarrier_arrive_expect_tx(full, 512);
    if (p.n[0] == 2)
      tma_load_2d_multicast(tile + 256 * rank, &map, x, y + 4 * static_cast<int>(rank), full, 0x3);
    else
      tma_load_3d_multicast(tile + 256 * rank, &map, x, y, z + static_cast<int>(rank), full, 0x3);
  }
  mbarrier_wait(full, 0, kWaitTestClusterMulticast, nullptr);
  uint32_t* o = static_cast<uint32_t*>(p.out) + cluster_test::block_linear() * 128;
  for (int i = static_cast<int>(threadIdx.x); i < 128; i += 32)
    st_global(&o[i], ld_shared(reinterpret_cast<const uint32_t*>(tile) + i));
  if (p.n[1] != 2) cluster_sync();
}

bool launch_cluster_selftest(const char* name, const ClusterTestParams& p) {
  auto is = [&](const char* k) { return std::strcmp(name, k) == 0; };
  if (is("ids"))
    return launch_kernel_cluster("cluster_ids_kernel", &cluster_ids_kernel, p.grid, p.block,
                                 p.cluster, 0, nullptr, p) == cudaSuccess;
  if (is("dsmem"))
    return launch_kernel_cluster("cluster_dsmem_kernel", &cluster_dsmem_kernel, p.grid, p.block,
                                 p.cluster, 0, nullptr, p) == cudaSuccess;
  if (is("remote_arrive"))
    return launch_kernel_cluster("cluster_remote_arrive_kernel", &cluster_remote_arrive_kernel,
                                 p.grid, p.block, p.cluster, 64, nullptr, p) == cudaSuccess;
  if (is("multicast")) {
    // the tensor: n[5..7] = its dims (x, y, z), bf16, rows contiguous
    const int rank = static_cast<int>(p.n[0]);
    const uint64_t dims[3] = {uint64_t(p.n[5]), uint64_t(p.n[6]), uint64_t(p.n[7])};
    const uint64_t strides[2] = {dims[0] * 2, dims[0] * dims[1] * 2};
    const uint32_t box2[2] = {32, 4}, box3[3] = {32, 4, 1};
    TmaDescriptor map;
    if (!make_tma_descriptor(&map, p.in, 2, rank, dims, strides, rank == 2 ? box2 : box3,
                             TmaSwizzle::kNone))
      return false;
    return launch_kernel_cluster("cluster_multicast_kernel", &cluster_multicast_kernel, p.grid,
                                 p.block, p.cluster, 1024, nullptr, map, p) == cudaSuccess;
  }
  return false;
}

}  // namespace moe_ext::MOE_KERNEL_NS
