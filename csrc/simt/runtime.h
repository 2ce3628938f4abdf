// The SIMT emulator's execution model: launches, blocks, threads, barriers, warp collectives,
// shared memory and the checkers/counters fed by the memory helpers.
//
// A launch runs its grid of blocks on a few host threads (blocks are independent, as on a GPU),
// a thread-block cluster's blocks together on one host thread (they may wait on each other).
// A block's threads are fibers (fiber.h) scheduled round-robin on one host thread: each runs until
// it blocks -- at __syncthreads, at a warp collective (shuffle, vote, __syncwarp, mma, ldmatrix)
// or at its end -- so barriers and warp-synchronous code behave as on hardware, including
// divergence. Threads that have exited count as arrived at later __syncthreads. When no thread
// can run but some have not finished, the block is deadlocked and the launch fails with the
// waiting threads named. Torch-free.
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <stdexcept>
#include <string>
#include <unordered_map>
#include <vector>

#include <vector_types.h>

#include "fiber.h"

namespace moe_simt {

constexpr int kWarpSize = 32;
constexpr size_t kMaxSharedBytes = 227 * 1024;  // sm_90's opt-in maximum per block

// A kernel-visible error found by a checker; the launch rethrows it with the kernel's name.
struct SimtError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

// Memory the kernel may touch: every pointer argument's buffer is registered before the launch.
struct Buffer {
  const char* name;
  uintptr_t begin;
  uintptr_t end;
  bool writable;
};

// Per-launch counters (summed over blocks). Warp-level statistics group the 32 lanes' accesses
// of one memory instruction by the per-lane instruction sequence number (lanes that execute
// the same code issue the same sequence of memory instructions).
// X-macro over the counters: the struct, its sum and the Python export list them once.
#define MOE_SIMT_LAUNCH_STATS(X)                                                                   \
  X(global_bytes_read)                                                                             \
  X(global_bytes_written)                                                                          \
  X(global_requests)     /* warp-level global memory instructions */                               \
  X(global_sectors)      /* distinct 32-byte sectors those instructions touched */                 \
  X(shared_requests)     /* warp-level shared memory instructions */                               \
  X(shared_wavefronts)   /* bank-conflict-serialised passes they needed */                         \
  X(bank_conflicts)      /* wavefronts - ideal wavefronts */                                       \
  X(barriers)            /* __syncthreads completed (per block) */                                 \
  X(warp_collectives)    /* shuffles, votes, reductions, matches (per warp) */                     \
  X(collective_instrs)   /* the SASS instructions they take: an 8-byte SHFL is 2 */                \
  X(mma)                 /* mma.sync instructions (per warp) */                                    \
  X(wgmma)               /* wgmma.mma_async instructions (per warpgroup) */                        \
  X(wgmma_shared_bytes)  /* operand bytes they read from shared (A + B, once) */                   \
  X(tma_load_bytes)      /* bytes TMA loads wrote into shared memory */                            \
  X(shared_bytes_read)   /* bytes of the threads' own shared loads */                              \
  X(tc_turn_requests)    /* memory instructions issued holding the MMA turn */                     \
  X(epilogue_requests)   /* memory instructions issued after releasing it */                       \
  X(tma_multicast_bytes) /* shared bytes multicast TMA delivered, summed over the destination CTAs \
                            (its global read counts once) */                                       \
  X(dsmem_bytes)         /* ld/st.shared::cluster bytes to a peer CTA's shared memory */           \
  X(cluster_barriers)    /* barrier.cluster phases completed (per cluster) */                      \
  X(fiber_switches)                                                                                \
  X(blocks)                                                                                        \
  X(threads)

struct LaunchStats {
#define MOE_SIMT_STATS_FIELD(name) uint64_t name = 0;
  MOE_SIMT_LAUNCH_STATS(MOE_SIMT_STATS_FIELD)
#undef MOE_SIMT_STATS_FIELD
  void add(const LaunchStats& o) {
#define MOE_SIMT_STATS_ADD(name) name += o.name;
    MOE_SIMT_LAUNCH_STATS(MOE_SIMT_STATS_ADD)
#undef MOE_SIMT_STATS_ADD
  }
};

struct Block;
struct Thread;

// One pending warp collective: lanes deposit, the last one to arrive computes, all read back.
struct Collective {
  int warp = 0;
  uint32_t mask = 0;
  uint32_t arrived = 0;
  const char* site = nullptr;  // "file:line" of the first lane, to catch divergent calls
  alignas(16) unsigned char in[kWarpSize][64];   // per-lane operands (up to 64 bytes)
  alignas(16) unsigned char out[kWarpSize][64];  // per-lane results
  const void* ptr[kWarpSize];                    // per-lane addresses (ldmatrix rows)
};

enum class ThreadState : uint8_t {
  kRunnable,
  kAtBarrier,
  kAtCollective,
  kAtActivemask,
  kAtMbarrier,
  kAtClusterBarrier,
  kExited
};

struct MemRecord {  // one lane's access, for warp-level coalescing / bank statistics
  uint64_t seq;
  uintptr_t addr;
  uint32_t bytes;
  uint8_t lane;
  uint8_t tc_phase;  // the thread's TensorCorePhase when it issued the access
};

struct CpAsyncCopy {
  void* dst;
  const void* src;
  uint32_t bytes;      // bytes written to dst
  uint32_t src_bytes;  // bytes read from src; the rest of dst is zero-filled
};

struct BulkOp {
  std::function<void()> read_done, complete;
  bool read = false;
};

struct Thread {
  uint3 idx;
  int linear = 0;
  int lane = 0;
  int warp = 0;
  ThreadState state = ThreadState::kRunnable;
  std::shared_ptr<Collective> collective;  // set while waiting at / reading back a collective
  const char* activemask_site = nullptr;   // set while waiting at __activemask()
  uint32_t activemask_result = 0;
  FiberContext ctx;
  Block* block = nullptr;
  uint64_t global_seq = 0, shared_seq = 0;  // memory-instruction sequence numbers
  uint8_t tc_phase = 0;                     // TensorCorePhase (tensor_core_turn_begin/end)
  size_t mbar_offset = 0;                   // while waiting at an mbarrier: its shared offset
  uint32_t mbar_parity = 0;                 //   and the phase parity waited for
  const char* mbar_site = nullptr;          //   and the wait's site (kernel, barrier)
  std::vector<std::vector<CpAsyncCopy>> cp_groups;  // committed, not yet waited
  std::vector<CpAsyncCopy> cp_open;                 // issued since the last commit
  // sm_90 bulk stores (TMA, shared -> global) not yet complete, by commit group: cp.async.bulk
  // .wait_group.read retires their shared-source reads (`read_done` checks the source and map
  // are as at issue), .wait_group (or the thread's exit) their global writes (`complete`)
  std::vector<std::vector<BulkOp>> bulk_groups;  // committed
  std::vector<BulkOp> bulk_open;                 // since the last commit
  // tensor maps rewritten on the device that this thread has acquired: map -> publication
  std::unordered_map<const void*, uint64_t> acquired_maps;
  // barrier.cluster: arrivals made and phases waited for (a wait waits for phase
  // cluster_arrivals; arriving twice without a wait in between is an error)
  uint64_t cluster_arrivals = 0, cluster_waits = 0;
  const char* cluster_site = nullptr;
};

// Shadow state of one 4-byte shared-memory word, for race and uninitialised-read checks.
// Within one barrier interval, accesses by different threads to overlapping bytes conflict unless
// both threads are in the same warp and a warp collective (e.g. __syncwarp) whose mask named both
// completed in between (Block::synced_after). Accesses to disjoint bytes of a word never conflict.
struct SharedShadow {
  uint64_t epoch = 0;         // barrier interval of the accesses recorded below (0 = none)
  int32_t writer = -1;        // linear id of the thread that wrote in that interval
  int32_t reader = -1;        // a thread that read in that interval (-2: several)
  int32_t reader_warp = -1;   // the readers' warp (-2: several warps)
  uint32_t reader_lanes = 0;  // the readers' lanes (when all are in reader_warp)
  uint64_t writer_sync = 0;   // the writer's warp generation at the write
  uint64_t reader_sync = 0;   // the readers' latest warp generation
  uint8_t writer_bytes = 0;   // bytes of the word the writer wrote
  uint8_t reader_bytes = 0;   // bytes of the word the readers read
  uint8_t init_mask = 0;      // bytes written at least once since the block started
};

// An mbarrier (sm_90 transaction barrier) in shared memory: its state lives here, keyed by the
// shared offset of its 8 bytes. A phase completes when `pending` arrivals and `tx` bytes reach 0.
struct Mbarrier {
  int count = 0;       // arrivals per phase (init)
  int pending = 0;     // arrivals still missing in the current phase
  int64_t tx = 0;      // expected transaction bytes not yet completed
  uint32_t phase = 0;  // phases completed so far (the current phase's parity is phase & 1)
};

// One static shared array (MOE_SHARED_ARRAY), keyed by its declaration.
struct SharedArray {
  const void* key;
  size_t offset;
  size_t bytes;
};

struct LaunchConfig;
struct Block;

// The CTAs of one thread-block cluster: they run as fibers on one host thread, so they can wait
// on each other (barrier.cluster, remote mbarrier arrivals). A barrier.cluster phase completes
// when every thread of the cluster that has not exited has arrived (exited threads count as
// arrived, as for __syncthreads).
struct Cluster {
  dim3 dims{1, 1, 1};
  uint3 id{0, 0, 0};
  std::vector<Block*> blocks;  // by rank
  uint64_t phase = 0;          // barrier.cluster phases completed
  int live = 0;                // threads of the cluster not yet exited
  int arrived = 0;             // live threads arrived in the current phase
};

struct Block {
  uint3 idx;
  const LaunchConfig* launch = nullptr;
  std::vector<Thread> threads;
  std::vector<unsigned char> shared;       // dynamic shared memory first, then static, each
                                           // followed by a red zone (runtime.cpp)
  std::vector<SharedShadow> shadow;        // one per 4-byte word of `shared`
  size_t shared_used = 0;                  // bytes handed out so far
  std::vector<SharedArray> static_shared;  // allocation order
  uint64_t epoch = 1;                      // barrier interval counter
  int live = 0;                            // threads not yet exited
  int at_barrier = 0;
  std::vector<std::shared_ptr<Collective>> pending;  // open collectives, any warp
  std::vector<uint64_t> warp_gen;                    // per warp: collectives completed
  std::vector<uint64_t> warp_full_sync;          // per warp: generation of the last whole-warp one
  std::vector<std::vector<uint64_t>> pair_sync;  // per warp, lazily [32 x 32]: the last
                                                 // partial-mask generation naming both lanes
  // Whether lanes a and b of `warp` took part in one warp collective completed after `gen`.
  bool synced_after(int warp, int a, int b, uint64_t gen) const {
    if (warp_full_sync[warp] > gen) return true;
    const auto& ps = pair_sync[warp];
    return !ps.empty() && ps[a * kWarpSize + b] > gen;
  }
  std::vector<std::pair<size_t, Mbarrier>> mbarriers;  // by shared offset (few per block)
  const char* barrier_site = nullptr;                  // call site of the barrier being gathered
  int at_activemask = 0;                               // threads waiting at __activemask()
  std::vector<std::vector<MemRecord>> global_log, shared_log;  // per warp
  LaunchStats stats;
  FiberContext scheduler;
  Thread* current = nullptr;
  std::string error;  // first checker error in this block
  // cluster membership (a launch without cluster dims runs clusters of one CTA)
  Cluster* cluster = nullptr;
  uint32_t rank = 0;               // %cluster_ctarank
  uint3 cluster_idx{0, 0, 0};      // %cluster_ctaid
  bool exited = false;             // every thread has exited (its shared memory is gone)
  uint64_t cluster_waits_max = 0;  // the latest barrier.cluster phase a thread of it waited for
  // per peer rank: 1 + the peer thread's barrier.cluster arrivals at its latest access to this
  // CTA's shared memory (0: none) -- this CTA may exit only after waiting for that phase
  std::vector<uint64_t> peer_access;
  std::vector<const char*> peer_access_kind;
};

struct LaunchConfig {
  std::string kernel_name;
  dim3 grid, block;
  dim3 cluster{1, 1, 1};  // cluster dims (the grid is a multiple of them)
  size_t dynamic_shared = 0;
  std::vector<Buffer> buffers;
  bool check_races = true;
  bool check_uninitialized = true;
  std::function<void()> body;  // runs the kernel for the current thread
};

// Runs a launch to completion; throws SimtError naming the kernel, block and thread on the
// first checker error or deadlock. Returns the launch's counters.
LaunchStats run_launch(const LaunchConfig& cfg);

// Counters of the most recent launch on any host thread (for tests and benchmarks).
LaunchStats last_launch_stats();

// The launch log: between start_launch_log() and stop_launch_log(), every launch's kernel name
// and counters are recorded in launch order (at most kMaxLoggedLaunches), so that a multi-kernel
// op (a sort's three passes, a layer's forward and backward) can be counted kernel by kernel.
struct LoggedLaunch {
  std::string kernel;
  LaunchStats stats;
};
constexpr size_t kMaxLoggedLaunches = 1 << 16;
void start_launch_log();
std::vector<LoggedLaunch> stop_launch_log();

// Kernel-side services (valid only inside a running kernel).
Thread& this_thread();
// A tensor-core warp's phase, for the epilogue-overlap proxy: kTcNone until it first takes the
// MMA turn, kTcTurn while it holds it (its memory instructions count as tc_turn_requests),
// kTcAfterTurn once it has handed it on (epilogue_requests).
enum TensorCorePhase : uint8_t { kTcNone = 0, kTcTurn = 1, kTcAfterTurn = 2 };
void set_tensor_core_phase(TensorCorePhase phase);
void syncthreads(const char* site);
void threadfence();
// __activemask(): the lanes of this warp that reach this call site together. The caller waits
// until no lane of its warp can run (each has exited or waits at a barrier, a collective or an
// __activemask), then gets the lanes waiting at the same site -- the emulator's model of the
// converged set, so the answer does not depend on the order in which fibers happen to run.
unsigned activemask(const char* site);
// Joins a warp collective over `mask`; `compute` runs once, on the last lane to arrive, with all
// lanes' inputs deposited. Returns the collective so the caller can read its result.
std::shared_ptr<Collective> warp_collective(uint32_t mask, const void* in, size_t in_bytes,
                                            const void* ptr, void (*compute)(Collective&, void*),
                                            void* ctx, const char* site, int instructions = 1);
void* shared_static(const void* key, size_t bytes, size_t align);
void* shared_dynamic();
// Checked accesses (bounds, races, uninitialised reads, counters). `kind` names the operation.
// `bulk`: a copy-engine (TMA) transfer of contiguous bytes, counted as one request over its
// sectors instead of a lane's access in the warp-level coalescing statistics.
void check_global(const void* p, size_t bytes, bool write, const char* kind, bool bulk = false);
// Atomics (atomic=true) are exempt from the race check: concurrent atomics are the point.
void check_shared(const void* p, size_t bytes, bool write, const char* kind, bool atomic = false);
bool is_shared(const void* p);
// Marks shared bytes as never written (poison value, shadow cleared): the destination of an
// in-flight cp.async, so reading it before the copy is waited for fails as uninitialised.
void poison_shared(const void* p, size_t bytes);
[[noreturn]] void fail(const std::string& what);

// sm_90 asynchronous-proxy services (ptx_sm90.h). Accesses by the copy engine (TMA) and the
// tensor cores (wgmma) are ordered by mbarriers and wgmma waits, not by __syncthreads, so they
// skip the race check: writes mark bytes initialised, reads require it; bounds are checked.
void async_shared_write(const void* p, size_t bytes, const char* kind);
void async_shared_read(const void* p, size_t bytes, const char* kind);
Mbarrier& mbarrier_at(const void* p, const char* kind);  // checked: an initialised mbarrier
void mbarrier_init(const void* p, int count);
void mbarrier_arrive(const void* p, int64_t expect_tx_bytes);  // arrive (+ expect_tx first)
void mbarrier_complete_tx(const void* p, int64_t bytes);
// Blocks the calling thread until the phase with parity `parity` has completed.
void mbarrier_wait(const void* p, uint32_t parity, const char* site = nullptr);

// Thread-block clusters (ptx_sm90.h). barrier.cluster.arrive / .wait (relaxed arrivals are
// modelled as release ones).
void cluster_arrive(const char* site);
void cluster_wait(const char* site);
// The CTA of `rank` in the calling thread's cluster, for `kind` touching its shared memory. For
// a peer (not the caller's own CTA) it checks the two cluster-sync rules: the calling thread
// must have completed a barrier.cluster wait since the launch (else the peer may not have
// initialised its mbarriers or shared data: missing cluster sync at start), and the peer must
// not have exited (missing cluster sync at exit); with `record` the access is remembered, and
// the peer fails when it exits without having waited for a barrier.cluster phase after it.
Block& cluster_block(uint32_t rank, const char* kind, bool record = true);
// Checked access to `bytes` at shared offset `off` of `target` (a cluster CTA): bounds (inside
// one of its shared arrays), initialised bytes for reads; not race-checked (cluster barriers and
// mbarriers order DSMEM traffic). Copies between `data` and the target's memory; counts
// dsmem_bytes when the target is a peer.
void cluster_shared_access(Block& target, size_t off, void* data, size_t bytes, bool write,
                           const char* kind);
// The copy engine writing `bytes` at offset `off` of `target` (multicast TMA): bounds-checked,
// marks them initialised.
void async_shared_write_at(Block& target, size_t off, size_t bytes, const char* kind);
void mbarrier_arrive_at(Block& target, size_t off, int64_t expect_tx_bytes, const char* kind);
void mbarrier_complete_tx_at(Block& target, size_t off, int64_t bytes);

}  // namespace moe_simt
