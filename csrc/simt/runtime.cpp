// The emulator's scheduler, barriers, warp collectives, shared memory and checkers (runtime.h).
#include "runtime.h"

#include <algorithm>
#include <cstring>
#include <sstream>
#include <thread>
#include <unordered_set>

namespace moe_simt {
namespace {

constexpr size_t kFiberStackBytes = 256 * 1024;
constexpr size_t kLogFlushThreshold = 1 << 16;
// Unaddressable bytes after each shared allocation (dynamic, then every static array), so that
// indexing just past one array is reported instead of landing silently in its neighbour.
constexpr size_t kSharedRedZone = 16;
constexpr size_t kMaxStaticArrays = 256;
constexpr size_t kSharedArena = kMaxSharedBytes + kSharedRedZone * (kMaxStaticArrays + 2) + 256;

thread_local Block* tl_block = nullptr;

std::mutex g_stats_mutex;
LaunchStats g_last_stats;
bool g_log_on = false;
std::vector<LoggedLaunch> g_log;

std::string fmt3(const uint3& v) {
  std::ostringstream s;
  s << "(" << v.x << "," << v.y << "," << v.z << ")";
  return s.str();
}

// Context for error messages: kernel, block and thread.
std::string where(const Block& b) {
  std::ostringstream s;
  s << "kernel " << b.launch->kernel_name << ", block " << fmt3(b.idx);
  if (b.cluster && b.cluster->blocks.size() > 1) s << " (cluster rank " << b.rank << ")";
  if (b.current) s << ", thread " << fmt3(b.current->idx);
  return s.str();
}

// Worker-owned resources reused across the blocks it runs.
struct Worker {
  std::vector<std::unique_ptr<FiberStack>> stacks;
  std::vector<std::unique_ptr<Block>> blocks;  // one per CTA of a cluster
  Cluster cluster;
};

void complete_cluster_phase(Cluster& c) {
  ++c.phase;
  c.arrived = 0;
  ++c.blocks[0]->stats.cluster_barriers;
}

// A CTA whose threads have all exited: its shared memory is gone. A peer that accessed it must
// have been ordered before the exit by a barrier.cluster phase this CTA waited for.
void block_exited(Block& b) {
  b.exited = true;
  for (size_t r = 0; r < b.peer_access.size(); ++r)
    if (b.peer_access[r] != 0 && b.cluster_waits_max < b.peer_access[r] && b.error.empty()) {
      std::ostringstream s;
      s << where(b) << ": CTA exited while cluster peer rank " << r
        << " may still access its shared memory (" << b.peer_access_kind[r]
        << " not ordered before the exit by a barrier.cluster wait: missing cluster sync at exit)";
      b.error = s.str();
    }
}

void release_barrier(Block& b) {
  for (auto& t : b.threads)
    if (t.state == ThreadState::kAtBarrier) t.state = ThreadState::kRunnable;
  b.at_barrier = 0;
  b.barrier_site = nullptr;
  ++b.epoch;
  ++b.stats.barriers;
}

// ---------------------------------------------------------------- warp-level memory statistics
// Groups one warp's logged accesses by instruction (sequence number) and folds them into the
// counters: 32-byte sectors for global memory, bank-conflict wavefronts for shared memory.
void count_phase(uint8_t phase, LaunchStats& st) {
  if (phase == kTcTurn) ++st.tc_turn_requests;
  if (phase == kTcAfterTurn) ++st.epilogue_requests;
}

void fold_global(std::vector<MemRecord>& log, size_t n, LaunchStats& st) {
  std::stable_sort(log.begin(), log.begin() + n,
                   [](const MemRecord& a, const MemRecord& b) { return a.seq < b.seq; });
  std::unordered_set<uintptr_t> sectors;
  for (size_t i = 0; i < n;) {
    size_t j = i;
    sectors.clear();
    for (; j < n && log[j].seq == log[i].seq; ++j)
      for (uintptr_t s = log[j].addr / 32; s <= (log[j].addr + log[j].bytes - 1) / 32; ++s)
        sectors.insert(s);
    ++st.global_requests;
    st.global_sectors += sectors.size();
    count_phase(log[i].tc_phase, st);
    i = j;
  }
}

void fold_shared(std::vector<MemRecord>& log, size_t n, LaunchStats& st) {
  std::stable_sort(log.begin(), log.begin() + n,
                   [](const MemRecord& a, const MemRecord& b) { return a.seq < b.seq; });
  for (size_t i = 0; i < n;) {
    size_t j = i;
    while (j < n && log[j].seq == log[i].seq) ++j;
    // Accesses wider than 4 bytes are served in phases of 128 bytes (8-byte: half-warps,
    // 16-byte: quarter-warps); within a phase, a bank serves one distinct 4-byte word per pass.
    const uint32_t width = std::max<uint32_t>(4, log[i].bytes);
    const int lanes_per_phase = static_cast<int>(std::max<uint32_t>(1, 128 / width));
    uint64_t wavefronts = 0, phases = 0;
    for (int phase = 0; phase < kWarpSize / lanes_per_phase; ++phase) {
      std::vector<std::unordered_set<uintptr_t>> bank(32);
      bool any = false;
      for (size_t r = i; r < j; ++r) {
        if (log[r].lane / lanes_per_phase != phase) continue;
        any = true;
        for (uintptr_t w = log[r].addr / 4; w <= (log[r].addr + log[r].bytes - 1) / 4; ++w)
          bank[w % 32].insert(w);
      }
      if (!any) continue;
      size_t worst = 1;
      for (auto& words : bank) worst = std::max(worst, words.size());
      wavefronts += worst;
      ++phases;
    }
    ++st.shared_requests;
    count_phase(log[i].tc_phase, st);
    st.shared_wavefronts += wavefronts;
    st.bank_conflicts += wavefronts - phases;
    i = j;
  }
}

// Folds the records of instructions every live lane of the warp has already passed.
void flush_warp_logs(Block& b, int warp, bool all) {
  uint64_t gmin = UINT64_MAX, smin = UINT64_MAX;
  if (!all) {
    for (int l = 0; l < kWarpSize; ++l) {
      const size_t id = static_cast<size_t>(warp) * kWarpSize + l;
      if (id >= b.threads.size()) break;
      const Thread& t = b.threads[id];
      if (t.state == ThreadState::kExited) continue;
      gmin = std::min(gmin, t.global_seq);
      smin = std::min(smin, t.shared_seq);
    }
  }
  auto flush = [&](std::vector<MemRecord>& log, uint64_t limit, bool global) {
    auto mid = std::stable_partition(log.begin(), log.end(),
                                     [&](const MemRecord& r) { return r.seq < limit; });
    const size_t n = static_cast<size_t>(mid - log.begin());
    if (n == 0) return;
    if (global)
      fold_global(log, n, b.stats);
    else
      fold_shared(log, n, b.stats);
    log.erase(log.begin(), log.begin() + n);
  };
  flush(b.global_log[warp], gmin, true);
  flush(b.shared_log[warp], smin, false);
}

void thread_entry(void* arg) {
  auto* t = static_cast<Thread*>(arg);
  Block& b = *t->block;
  try {
    b.launch->body();
    if (!t->cp_open.empty() || !t->cp_groups.empty())
      fail("thread exited with cp.async copies never waited for (cp.async.wait_group missing)");
    // a store whose source reads were never waited for may read freed shared memory; the rest
    // land (the grid completes after its bulk writes)
    bool unread = !t->bulk_open.empty();
    for (const auto& group : t->bulk_groups)
      for (const auto& op : group) unread = unread || !op.read;
    if (unread)
      fail(
          "thread exited with TMA stores never waited for (cp.async.bulk.commit_group / "
          "wait_group.read missing): their shared source may be gone");
    for (auto& group : t->bulk_groups)
      for (auto& op : group) op.complete();
    t->bulk_groups.clear();
  } catch (const std::exception& e) {
    if (b.error.empty()) b.error = e.what();
  }
  t->state = ThreadState::kExited;
  --b.live;
  if (b.at_barrier > 0 && b.at_barrier == b.live) release_barrier(b);
  Cluster& c = *b.cluster;
  if (t->cluster_arrivals > c.phase) --c.arrived;
  --c.live;
  if (c.arrived > 0 && c.arrived == c.live) complete_cluster_phase(c);
  if (b.live == 0) block_exited(b);
  fiber_switch(t->ctx, b.scheduler);
  __builtin_unreachable();
}

const Mbarrier* find_mbarrier(const Block& b, size_t off) {
  for (const auto& [o, m] : b.mbarriers)
    if (o == off) return &m;
  return nullptr;
}

// Whether the phase of parity `parity` of the mbarrier at `off` has completed.
bool mbarrier_done(const Block& b, size_t off, uint32_t parity) {
  const Mbarrier* m = find_mbarrier(b, off);
  return m != nullptr && (m->phase & 1u) != (parity & 1u);
}

std::string describe_deadlock(const Block& b) {
  std::ostringstream s;
  s << "deadlock in " << where(b) << ": no thread can proceed;";
  int shown = 0;
  for (const auto& t : b.threads) {
    if (t.state == ThreadState::kExited || shown >= 8) continue;
    s << " thread " << fmt3(t.idx);
    if (t.state == ThreadState::kAtActivemask) {
      s << " waits at __activemask";
    } else if (t.state == ThreadState::kAtMbarrier) {
      const Mbarrier* m = find_mbarrier(b, t.mbar_offset);
      s << " waits on the mbarrier" << (t.mbar_site ? " " : "") << (t.mbar_site ? t.mbar_site : "")
        << " at shared offset " << t.mbar_offset << " for phase parity " << t.mbar_parity;
      if (m) s << " (" << m->pending << " arrivals and " << m->tx << " tx bytes missing)";
    } else if (t.state == ThreadState::kAtClusterBarrier) {
      s << " waits at barrier.cluster.wait (" << (t.cluster_site ? t.cluster_site : "?")
        << ") for phase " << t.cluster_arrivals << "; " << b.cluster->arrived << " of "
        << b.cluster->live << " live cluster threads arrived";
    } else if (t.state == ThreadState::kAtBarrier) {
      s << " waits at __syncthreads (" << (b.barrier_site ? b.barrier_site : "?") << ")";
    } else {
      s << " waits at a warp collective";
      if (t.collective) {
        // Lanes of the mask that have exited can never arrive: the usual cause.
        uint32_t gone = 0;
        for (int l = 0; l < kWarpSize; ++l) {
          const size_t id = static_cast<size_t>(t.warp) * kWarpSize + l;
          if ((t.collective->mask >> l & 1) && id < b.threads.size() &&
              b.threads[id].state == ThreadState::kExited)
            gone |= 1u << l;
        }
        s << " (mask 0x" << std::hex << t.collective->mask << std::dec << " at "
          << t.collective->site;
        if (gone) s << "; lanes 0x" << std::hex << gone << std::dec << " of its mask have exited";
        s << ")";
      }
    }
    s << ";";
    ++shown;
  }
  int exited = 0;
  for (const auto& t : b.threads) exited += t.state == ThreadState::kExited;
  s << " " << exited << " of " << b.threads.size() << " threads have exited";
  return s.str();
}

// Releases the __activemask() waiters of every warp none of whose lanes can run; each gets the
// set of lanes waiting at its call site. Returns whether any was released.
bool release_activemask(Block& b) {
  bool released = false;
  const int nthreads = static_cast<int>(b.threads.size());
  for (int w0 = 0; w0 < nthreads; w0 += kWarpSize) {
    const int w1 = std::min(nthreads, w0 + kWarpSize);
    bool runnable = false, waiting = false;
    for (int i = w0; i < w1; ++i) {
      runnable |= b.threads[i].state == ThreadState::kRunnable;
      waiting |= b.threads[i].state == ThreadState::kAtActivemask;
    }
    if (runnable || !waiting) continue;
    for (int i = w0; i < w1; ++i) {
      Thread& t = b.threads[i];
      if (t.state != ThreadState::kAtActivemask) continue;
      uint32_t lanes = 0;
      for (int j = w0; j < w1; ++j) {
        const Thread& o = b.threads[j];
        if (o.state == ThreadState::kAtActivemask &&
            std::strcmp(o.activemask_site, t.activemask_site) == 0)
          lanes |= 1u << o.lane;
      }
      for (int j = w0; j < w1; ++j) {
        Thread& o = b.threads[j];
        if (!(lanes >> o.lane & 1)) continue;
        o.activemask_result = lanes;
        o.state = ThreadState::kRunnable;
        --b.at_activemask;
      }
    }
    released = true;
  }
  return released;
}

void setup_block(Worker& w, Block& b, const LaunchConfig& cfg, uint3 idx, size_t stack0) {
  b.idx = idx;
  b.launch = &cfg;
  b.stats = LaunchStats{};
  const int nthreads = static_cast<int>(cfg.block.x * cfg.block.y * cfg.block.z);
  const int nwarps = (nthreads + kWarpSize - 1) / kWarpSize;
  // Shared memory: poison the bytes the previous block used, reset their shadow state.
  std::fill(b.shared.begin(), b.shared.begin() + b.shared_used, 0xA5);
  std::fill(b.shadow.begin(), b.shadow.begin() + (b.shared_used + 3) / 4, SharedShadow{});
  b.shared_used = (cfg.dynamic_shared + 15) / 16 * 16 + kSharedRedZone;
  b.static_shared.clear();
  b.epoch = 1;
  b.live = nthreads;
  b.at_barrier = 0;
  b.barrier_site = nullptr;
  b.at_activemask = 0;
  b.pending.clear();
  b.mbarriers.clear();
  b.warp_gen.assign(nwarps, 0);
  b.warp_full_sync.assign(nwarps, 0);
  b.pair_sync.assign(nwarps, {});
  b.global_log.assign(nwarps, {});
  b.shared_log.assign(nwarps, {});
  b.error.clear();
  b.current = nullptr;
  b.exited = false;
  b.cluster_waits_max = 0;
  b.threads.assign(nthreads, Thread{});
  while (w.stacks.size() < stack0 + nthreads)
    w.stacks.push_back(std::make_unique<FiberStack>(kFiberStackBytes));
  for (int i = 0; i < nthreads; ++i) {
    Thread& t = b.threads[i];
    t.idx = uint3{static_cast<unsigned>(i % cfg.block.x),
                  static_cast<unsigned>((i / cfg.block.x) % cfg.block.y),
                  static_cast<unsigned>(i / (cfg.block.x * cfg.block.y))};
    t.linear = i;
    t.lane = i % kWarpSize;
    t.warp = i / kWarpSize;
    t.block = &b;
    fiber_init(t.ctx, *w.stacks[stack0 + i], &thread_entry, &t);
  }
}

// Runs the CTAs of cluster `linear_cluster` together: one scheduling pass visits every thread
// of every CTA, so CTAs can wait on each other; the cluster deadlocks when no thread can run.
void run_cluster(Worker& w, const LaunchConfig& cfg, uint64_t linear_cluster) {
  const dim3 cd = cfg.cluster;
  const uint64_t ncx = cfg.grid.x / cd.x, ncy = cfg.grid.y / cd.y;
  const uint3 cid{static_cast<unsigned>(linear_cluster % ncx),
                  static_cast<unsigned>((linear_cluster / ncx) % ncy),
                  static_cast<unsigned>(linear_cluster / (ncx * ncy))};
  const int size = static_cast<int>(cd.x * cd.y * cd.z);
  const int nthreads = static_cast<int>(cfg.block.x * cfg.block.y * cfg.block.z);
  Cluster& c = w.cluster;
  c.dims = cd;
  c.id = cid;
  c.phase = 0;
  c.arrived = 0;
  c.live = size * nthreads;
  c.blocks.clear();
  for (int r = 0; r < size; ++r) {
    Block& b = *w.blocks[r];
    const uint3 local{static_cast<unsigned>(r % cd.x), static_cast<unsigned>((r / cd.x) % cd.y),
                      static_cast<unsigned>(r / (cd.x * cd.y))};
    b.cluster = &c;
    b.rank = static_cast<uint32_t>(r);
    b.cluster_idx = local;
    b.peer_access.assign(size, 0);
    b.peer_access_kind.assign(size, nullptr);
    c.blocks.push_back(&b);
    setup_block(w, b, cfg,
                uint3{cid.x * cd.x + local.x, cid.y * cd.y + local.y, cid.z * cd.z + local.z},
                static_cast<size_t>(r) * nthreads);
  }
  auto failed = [&] {
    for (Block* b : c.blocks)
      if (!b->error.empty()) return true;
    return false;
  };
  while (c.live > 0 && !failed()) {
    bool ran = false;
    for (Block* bp : c.blocks) {
      Block& b = *bp;
      if (b.live == 0) continue;
      tl_block = &b;
      for (auto& t : b.threads) {
        if (t.state == ThreadState::kAtMbarrier && mbarrier_done(b, t.mbar_offset, t.mbar_parity))
          t.state = ThreadState::kRunnable;
        if (t.state == ThreadState::kAtClusterBarrier && c.phase >= t.cluster_arrivals)
          t.state = ThreadState::kRunnable;
        if (t.state != ThreadState::kRunnable) continue;
        b.current = &t;
        ++b.stats.fiber_switches;
        fiber_switch(b.scheduler, t.ctx);
        ran = true;
        if (!b.error.empty()) break;
      }
      b.current = nullptr;
      if (b.at_activemask > 0 && b.error.empty() && release_activemask(b)) ran = true;
      if (!b.error.empty()) break;
    }
    if (!ran && c.live > 0 && !failed()) {
      std::string e;
      for (Block* b : c.blocks)
        if (b->live > 0) e += (e.empty() ? "" : " | ") + describe_deadlock(*b);
      c.blocks[0]->error = e;
    }
  }
  tl_block = nullptr;
  for (Block* b : c.blocks) {
    const int nwarps = (nthreads + kWarpSize - 1) / kWarpSize;
    if (b->error.empty())
      for (int wi = 0; wi < nwarps; ++wi) flush_warp_logs(*b, wi, /*all=*/true);
    ++b->stats.blocks;
    b->stats.threads += nthreads;
  }
}

}  // namespace

[[noreturn]] void fail(const std::string& what) {
  throw SimtError(tl_block ? where(*tl_block) + ": " + what : what);
}

LaunchStats run_launch(const LaunchConfig& cfg) {
  const uint64_t nblocks = uint64_t{cfg.grid.x} * cfg.grid.y * cfg.grid.z;
  const uint64_t nthreads = uint64_t{cfg.block.x} * cfg.block.y * cfg.block.z;
  if (nthreads == 0 || nthreads > 1024)
    throw SimtError("kernel " + cfg.kernel_name + ": block of " + std::to_string(nthreads) +
                    " threads; CUDA allows 1..1024");
  if (cfg.dynamic_shared > kMaxSharedBytes)
    throw SimtError("kernel " + cfg.kernel_name + ": " + std::to_string(cfg.dynamic_shared) +
                    " bytes of dynamic shared memory exceed the 227 KB per-block limit");
  const dim3 cd = cfg.cluster;
  const uint64_t csize = uint64_t{cd.x} * cd.y * cd.z;
  if (csize == 0 || csize > 8 || cfg.grid.x % cd.x || cfg.grid.y % cd.y || cfg.grid.z % cd.z)
    throw SimtError("kernel " + cfg.kernel_name + ": cluster dims " +
                    fmt3(uint3{cd.x, cd.y, cd.z}) + " must hold 1..8 CTAs and divide the grid " +
                    fmt3(uint3{cfg.grid.x, cfg.grid.y, cfg.grid.z}));
  const uint64_t nclusters = nblocks / csize;
  LaunchStats total;
  std::string error;
  std::mutex mu;
  std::atomic<uint64_t> next{0};
  auto work = [&] {
    Worker w;
    for (uint64_t r = 0; r < csize; ++r) {
      w.blocks.push_back(std::make_unique<Block>());
      w.blocks.back()->shared.assign(kSharedArena, 0xA5);
      w.blocks.back()->shadow.assign(kSharedArena / 4, SharedShadow{});
      w.blocks.back()->shared_used = 0;
    }
    LaunchStats mine;
    for (uint64_t cl; (cl = next.fetch_add(1)) < nclusters;) {
      run_cluster(w, cfg, cl);
      std::string err;
      for (uint64_t r = 0; r < csize; ++r) {
        mine.add(w.blocks[r]->stats);
        if (err.empty()) err = w.blocks[r]->error;
      }
      if (!err.empty()) {
        std::lock_guard<std::mutex> g(mu);
        if (error.empty()) error = err;
        next.store(nclusters);  // stop handing out clusters
        break;
      }
    }
    std::lock_guard<std::mutex> g(mu);
    total.add(mine);
  };
  const unsigned hw = std::max(1u, std::thread::hardware_concurrency());
  const uint64_t nworkers = std::min<uint64_t>(hw, nclusters);
  std::vector<std::thread> pool;
  for (uint64_t i = 1; i < nworkers; ++i) pool.emplace_back(work);
  if (nclusters > 0) work();
  for (auto& th : pool) th.join();
  {
    std::lock_guard<std::mutex> g(g_stats_mutex);
    g_last_stats = total;
    if (g_log_on && g_log.size() < kMaxLoggedLaunches) g_log.push_back({cfg.kernel_name, total});
  }
  if (!error.empty()) throw SimtError(error);
  return total;
}

LaunchStats last_launch_stats() {
  std::lock_guard<std::mutex> g(g_stats_mutex);
  return g_last_stats;
}

void start_launch_log() {
  std::lock_guard<std::mutex> g(g_stats_mutex);
  g_log.clear();
  g_log_on = true;
}

std::vector<LoggedLaunch> stop_launch_log() {
  std::lock_guard<std::mutex> g(g_stats_mutex);
  g_log_on = false;
  return std::move(g_log);
}

Thread& this_thread() {
  if (!tl_block || !tl_block->current) throw SimtError("moe_simt: no kernel is running here");
  return *tl_block->current;
}

void set_tensor_core_phase(TensorCorePhase phase) { this_thread().tc_phase = phase; }

void syncthreads(const char* site) {
  Thread& t = this_thread();
  Block& b = *t.block;
  if (b.at_barrier == 0) {
    b.barrier_site = site;
  } else if (std::strcmp(b.barrier_site, site) != 0) {
    fail(std::string("divergent __syncthreads: this thread waits at ") + site +
         " while others wait at " + b.barrier_site);
  }
  ++b.at_barrier;
  if (b.at_barrier == b.live) {
    release_barrier(b);
    for (int wi = 0; wi < static_cast<int>(b.global_log.size()); ++wi)
      flush_warp_logs(b, wi, false);
    return;
  }
  t.state = ThreadState::kAtBarrier;
  fiber_switch(t.ctx, b.scheduler);
}

void threadfence() {}

unsigned activemask(const char* site) {
  Thread& t = this_thread();
  Block& b = *t.block;
  t.activemask_site = site;
  t.state = ThreadState::kAtActivemask;
  ++b.at_activemask;
  fiber_switch(t.ctx, b.scheduler);
  return t.activemask_result;
}  // the emulator's memory is coherent: every store is visible at once

std::shared_ptr<Collective> warp_collective(uint32_t mask, const void* in, size_t in_bytes,
                                            const void* ptr, void (*compute)(Collective&, void*),
                                            void* ctx, const char* site, int instructions) {
  Thread& t = this_thread();
  Block& b = *t.block;
  const uint32_t bit = 1u << t.lane;
  if (!(mask & bit))
    fail("warp collective at " + std::string(site) + " called by lane " + std::to_string(t.lane) +
         ", which is not in its mask");
  const size_t lanes = std::min<size_t>(kWarpSize, b.threads.size() - t.warp * kWarpSize);
  if (lanes < kWarpSize && (mask >> lanes) != 0)
    fail("warp collective mask names lanes beyond the block's last thread");
  std::shared_ptr<Collective> c;
  for (auto& p : b.pending)
    if (p->warp == t.warp && p->mask == mask && !(p->arrived & bit)) {
      c = p;
      break;
    }
  if (!c) {
    c = std::make_shared<Collective>();
    c->warp = t.warp;
    c->mask = mask;
    c->site = site;
    b.pending.push_back(c);
  } else if (std::strcmp(c->site, site) != 0) {
    fail(std::string("divergent warp collective: lane waits at ") + site +
         " while lanes of the same mask wait at " + c->site);
  }
  if (in_bytes > sizeof(c->in[0])) fail("warp collective operand too large");
  if (in_bytes) std::memcpy(c->in[t.lane], in, in_bytes);
  c->ptr[t.lane] = ptr;
  c->arrived |= bit;
  t.collective = c;
  if (c->arrived == mask) {
    if (compute) compute(*c, ctx);
    ++b.stats.warp_collectives;
    b.stats.collective_instrs += static_cast<uint64_t>(instructions);
    const uint64_t gen = ++b.warp_gen[t.warp];
    // Record which lanes this collective ordered, for the race check (Block::synced_after).
    const size_t warp_lanes = std::min<size_t>(kWarpSize, b.threads.size() - t.warp * kWarpSize);
    const uint32_t all = warp_lanes == kWarpSize ? 0xffffffffu : (1u << warp_lanes) - 1;
    if (mask == all) {
      b.warp_full_sync[t.warp] = gen;
    } else {
      auto& ps = b.pair_sync[t.warp];
      if (ps.empty()) ps.assign(kWarpSize * kWarpSize, 0);
      for (int x = 0; x < kWarpSize; ++x)
        if (mask >> x & 1)
          for (int y = 0; y < kWarpSize; ++y)
            if (mask >> y & 1) ps[x * kWarpSize + y] = gen;
    }
    b.pending.erase(std::find(b.pending.begin(), b.pending.end(), c));
    for (int l = 0; l < kWarpSize; ++l) {
      if (!(mask >> l & 1) || l == t.lane) continue;
      Thread& o = b.threads[t.warp * kWarpSize + l];
      if (o.state == ThreadState::kAtCollective) o.state = ThreadState::kRunnable;
    }
    if (mask == 0xffffffffu) flush_warp_logs(b, t.warp, false);
  } else {
    t.state = ThreadState::kAtCollective;
    fiber_switch(t.ctx, b.scheduler);
  }
  auto result = std::move(t.collective);
  t.collective.reset();
  return result;
}

void* shared_static(const void* key, size_t bytes, size_t align) {
  Block& b = *this_thread().block;
  for (const auto& a : b.static_shared)
    if (a.key == key) return b.shared.data() + a.offset;
  const size_t off = (b.shared_used + align - 1) / align * align;
  size_t total = b.launch->dynamic_shared + bytes;  // what the kernel asked for, no red zones
  for (const auto& a : b.static_shared) total += a.bytes;
  if (total > kMaxSharedBytes)
    fail("static + dynamic shared memory (" + std::to_string(total) +
         " bytes) exceeds the 227 KB per-block limit");
  if (b.static_shared.size() >= kMaxStaticArrays || off + bytes + kSharedRedZone > kSharedArena)
    fail("more than " + std::to_string(kMaxStaticArrays) + " static shared arrays");
  b.shared_used = off + bytes + kSharedRedZone;
  b.static_shared.push_back(SharedArray{key, off, bytes});
  return b.shared.data() + off;
}

void* shared_dynamic() { return this_thread().block->shared.data(); }

bool is_shared(const void* p) {
  const Block& b = *this_thread().block;
  auto a = reinterpret_cast<uintptr_t>(p), base = reinterpret_cast<uintptr_t>(b.shared.data());
  return a >= base && a < base + b.shared.size();
}

void check_global(const void* p, size_t bytes, bool write, const char* kind, bool bulk) {
  Thread& t = this_thread();
  Block& b = *t.block;
  const auto a = reinterpret_cast<uintptr_t>(p);
  const Buffer* hit = nullptr;
  for (const auto& buf : b.launch->buffers)
    if (a >= buf.begin && a + bytes <= buf.end) {
      hit = &buf;
      break;
    }
  if (!hit) {
    std::ostringstream s;
    s << "out-of-bounds global " << kind << " of " << bytes << " bytes at 0x" << std::hex << a
      << std::dec << ", outside every buffer of the launch";
    for (const auto& buf : b.launch->buffers)
      if (a + bytes > buf.begin && a < buf.end + 4096)
        s << " (near " << buf.name << ": byte offset " << static_cast<int64_t>(a - buf.begin)
          << " of " << (buf.end - buf.begin) << ")";
    fail(s.str());
  }
  if (write && !hit->writable)
    fail(std::string("global ") + kind + " writes to read-only buffer " + hit->name);
  (write ? b.stats.global_bytes_written : b.stats.global_bytes_read) += bytes;
  if (bulk) {  // a copy-engine transfer: one request over its sectors, not a lane's access
    ++b.stats.global_requests;
    b.stats.global_sectors += (a + bytes - 1) / 32 - a / 32 + 1;
    return;
  }
  auto& log = b.global_log[t.warp];
  log.push_back(MemRecord{t.global_seq++, a, static_cast<uint32_t>(bytes),
                          static_cast<uint8_t>(t.lane), t.tc_phase});
  if (log.size() > kLogFlushThreshold) flush_warp_logs(b, t.warp, false);
}

void check_shared(const void* p, size_t bytes, bool write, const char* kind, bool atomic) {
  Thread& t = this_thread();
  Block& b = *t.block;
  const auto a = reinterpret_cast<uintptr_t>(p);
  const auto base = reinterpret_cast<uintptr_t>(b.shared.data());
  if (a < base || a + bytes > base + b.shared_used) {
    std::ostringstream s;
    s << "out-of-bounds shared " << kind << " of " << bytes << " bytes at offset "
      << static_cast<int64_t>(a - base) << ", past the block's shared memory (dynamic [0, "
      << b.launch->dynamic_shared << ")";
    for (const auto& arr : b.static_shared)
      s << ", static [" << arr.offset << ", " << arr.offset + arr.bytes << ")";
    s << ")";
    fail(s.str());
  }
  const size_t off = a - base;
  // The access must lie within one allocation: the dynamic array or one static array. Indexing
  // past an array into its neighbour (or the alignment gap between them) is out of bounds too.
  bool inside = off + bytes <= b.launch->dynamic_shared;
  for (size_t i = 0; !inside && i < b.static_shared.size(); ++i)
    inside = off >= b.static_shared[i].offset &&
             off + bytes <= b.static_shared[i].offset + b.static_shared[i].bytes;
  if (!inside) {
    std::ostringstream s;
    s << "out-of-bounds shared " << kind << " of " << bytes << " bytes at offset " << off
      << ", outside every shared array (dynamic [0, " << b.launch->dynamic_shared << ")";
    for (const auto& arr : b.static_shared)
      s << ", static [" << arr.offset << ", " << arr.offset + arr.bytes << ")";
    s << ")";
    fail(s.str());
  }
  const uint64_t gen = b.warp_gen[t.warp];
  const bool checks = b.launch->check_races || b.launch->check_uninitialized;
  for (size_t word = off / 4; checks && word <= (off + bytes - 1) / 4; ++word) {
    SharedShadow& s = b.shadow[word];
    const size_t lo = std::max(off, word * 4), hi = std::min(off + bytes, word * 4 + 4);
    const auto m = static_cast<uint8_t>(((1u << (hi - lo)) - 1) << (lo - word * 4));
    if ((!write || atomic) && b.launch->check_uninitialized && (s.init_mask & m) != m)
      fail(std::string("shared ") + kind + " reads uninitialized shared memory at offset " +
           std::to_string(lo));
    if (write) s.init_mask |= m;
    if (!b.launch->check_races || atomic) continue;
    if (s.epoch != b.epoch) {
      s.epoch = b.epoch;
      s.writer = s.reader = s.reader_warp = -1;
      s.reader_lanes = 0;
      s.writer_bytes = s.reader_bytes = 0;
    }
    // Another thread's access at warp generation other_gen happened before this one.
    auto ordered = [&](int other, uint64_t other_gen) {
      return other == t.linear || (other / kWarpSize == t.warp &&
                                   b.synced_after(t.warp, other % kWarpSize, t.lane, other_gen));
    };
    auto race = [&](const char* what, int other) {
      std::ostringstream e;
      e << "shared-memory race (" << what << ") at offset " << word * 4 << ": thread " << other
        << " and thread " << t.linear
        << " access it in the same barrier interval with no __syncthreads/__syncwarp between";
      fail(e.str());
    };
    if (s.writer >= 0 && (s.writer_bytes & m) && !ordered(s.writer, s.writer_sync))
      race(write ? "write after write" : "read after write", s.writer);
    if (write && s.reader != -1 && (s.reader_bytes & m)) {
      // Every earlier reader other than this thread must share its warp and a later collective.
      bool ok = s.reader_warp == t.warp;
      for (int l = 0; ok && l < kWarpSize; ++l)
        if ((s.reader_lanes >> l & 1) && l != t.lane)
          ok = b.synced_after(t.warp, l, t.lane, s.reader_sync);
      if (!ok) race("write after read", s.reader >= 0 ? s.reader : -1);
    }
    if (write) {
      s.writer_bytes = s.writer == t.linear ? (s.writer_bytes | m) : m;
      s.writer = t.linear;
      s.writer_sync = gen;
      s.reader = s.reader_warp = -1;
      s.reader_lanes = 0;
      s.reader_bytes = 0;
    } else {
      s.reader = (s.reader == -1 || s.reader == t.linear) ? t.linear : -2;
      s.reader_warp = (s.reader_warp == -1 || s.reader_warp == t.warp) ? t.warp : -2;
      s.reader_lanes |= 1u << t.lane;
      s.reader_bytes |= m;
      s.reader_sync = gen;
    }
  }
  if (!write) b.stats.shared_bytes_read += bytes;
  auto& log = b.shared_log[t.warp];
  log.push_back(MemRecord{t.shared_seq++, a, static_cast<uint32_t>(bytes),
                          static_cast<uint8_t>(t.lane), t.tc_phase});
  if (log.size() > kLogFlushThreshold) flush_warp_logs(b, t.warp, false);
}

void poison_shared(const void* p, size_t bytes) {
  Block& b = *this_thread().block;
  const auto a = reinterpret_cast<uintptr_t>(p);
  const auto base = reinterpret_cast<uintptr_t>(b.shared.data());
  if (a < base || a + bytes > base + b.shared_used)
    fail("out-of-bounds shared write of " + std::to_string(bytes) + " bytes at offset " +
         std::to_string(static_cast<int64_t>(a - base)) + "; the block has " +
         std::to_string(b.shared_used) + " bytes of shared memory");
  const size_t off = a - base;
  std::memset(b.shared.data() + off, 0xA5, bytes);
  for (size_t word = off / 4; bytes && word <= (off + bytes - 1) / 4; ++word) {
    const size_t lo = std::max(off, word * 4), hi = std::min(off + bytes, word * 4 + 4);
    const auto m = static_cast<uint8_t>(((1u << (hi - lo)) - 1) << (lo - word * 4));
    b.shadow[word].init_mask &= static_cast<uint8_t>(~m);
  }
}

}  // namespace moe_simt

namespace moe_simt {
std::vector<Buffer>& pending_buffers() {
  thread_local std::vector<Buffer> buffers;
  return buffers;
}
}  // namespace moe_simt

// ------------------------------------------------------------ sm_90 asynchronous proxy, mbarrier
namespace moe_simt {
namespace {
size_t shared_offset_checked(const Block& b, const void* p, size_t bytes, const char* kind) {
  const auto a = reinterpret_cast<uintptr_t>(p);
  const auto base = reinterpret_cast<uintptr_t>(b.shared.data());
  if (a < base || a + bytes > base + b.launch->dynamic_shared) {
    std::ostringstream s;
    s << kind << " of " << bytes << " bytes at shared offset " << static_cast<int64_t>(a - base)
      << " is outside the dynamic shared memory [0, " << b.launch->dynamic_shared << ")";
    fail(s.str());
  }
  return a - base;
}
}  // namespace

void async_shared_write(const void* p, size_t bytes, const char* kind) {
  Block& b = *this_thread().block;
  const size_t off = shared_offset_checked(b, p, bytes, kind);
  for (size_t word = off / 4; bytes && word <= (off + bytes - 1) / 4; ++word) {
    const size_t lo = std::max(off, word * 4), hi = std::min(off + bytes, word * 4 + 4);
    b.shadow[word].init_mask |= static_cast<uint8_t>(((1u << (hi - lo)) - 1) << (lo - word * 4));
  }
}

void async_shared_read(const void* p, size_t bytes, const char* kind) {
  Block& b = *this_thread().block;
  const size_t off = shared_offset_checked(b, p, bytes, kind);
  if (!b.launch->check_uninitialized) return;
  for (size_t word = off / 4; bytes && word <= (off + bytes - 1) / 4; ++word) {
    const size_t lo = std::max(off, word * 4), hi = std::min(off + bytes, word * 4 + 4);
    const auto m = static_cast<uint8_t>(((1u << (hi - lo)) - 1) << (lo - word * 4));
    if ((b.shadow[word].init_mask & m) != m)
      fail(std::string(kind) + " reads uninitialized shared memory at offset " +
           std::to_string(lo));
  }
}

Mbarrier& mbarrier_at(const void* p, const char* kind) {
  Block& b = *this_thread().block;
  if (reinterpret_cast<uintptr_t>(p) % 8) fail(std::string(kind) + ": mbarrier not 8-byte aligned");
  const size_t off = shared_offset_checked(b, p, 8, kind);
  for (auto& [o, m] : b.mbarriers)
    if (o == off) return m;
  fail(std::string(kind) + " on shared offset " + std::to_string(off) +
       ", which holds no initialised mbarrier (mbarrier.init missing or not yet executed)");
}

void mbarrier_init(const void* p, int count) {
  Block& b = *this_thread().block;
  if (reinterpret_cast<uintptr_t>(p) % 8) fail("mbarrier.init: address not 8-byte aligned");
  if (count < 1) fail("mbarrier.init: count must be >= 1");
  const size_t off = shared_offset_checked(b, p, 8, "mbarrier.init");
  async_shared_write(p, 8, "mbarrier.init");
  for (auto& [o, m] : b.mbarriers)
    if (o == off) {
      m = Mbarrier{count, count, 0, 0};
      return;
    }
  b.mbarriers.push_back({off, Mbarrier{count, count, 0, 0}});
}

namespace {
void mbarrier_maybe_complete(Mbarrier& m) {
  if (m.pending == 0 && m.tx == 0) {
    ++m.phase;
    m.pending = m.count;
  }
}
}  // namespace

void mbarrier_arrive(const void* p, int64_t expect_tx_bytes) {
  Mbarrier& m = mbarrier_at(p, "mbarrier.arrive");
  m.tx += expect_tx_bytes;
  if (m.pending <= 0) fail("mbarrier.arrive: more arrivals than the barrier's count in one phase");
  --m.pending;
  mbarrier_maybe_complete(m);
}

void mbarrier_complete_tx(const void* p, int64_t bytes) {
  Mbarrier& m = mbarrier_at(p, "complete_tx");
  m.tx -= bytes;
  mbarrier_maybe_complete(m);
}

void mbarrier_wait(const void* p, uint32_t parity, const char* site) {
  Thread& t = this_thread();
  Block& b = *t.block;
  mbarrier_at(p, "mbarrier.try_wait");
  const size_t off = reinterpret_cast<uintptr_t>(p) - reinterpret_cast<uintptr_t>(b.shared.data());
  if (mbarrier_done(b, off, parity)) return;
  t.mbar_offset = off;
  t.mbar_parity = parity;
  t.mbar_site = site;
  t.state = ThreadState::kAtMbarrier;
  fiber_switch(t.ctx, b.scheduler);
}

}  // namespace moe_simt

// ------------------------------------------------------------------- thread-block clusters
namespace moe_simt {

void cluster_arrive(const char* site) {
  Thread& t = this_thread();
  Cluster& c = *t.block->cluster;
  if (t.cluster_arrivals > t.cluster_waits)
    fail(std::string("barrier.cluster.arrive (") + site +
         ") twice without a barrier.cluster.wait in between");
  ++t.cluster_arrivals;
  t.cluster_site = site;
  if (++c.arrived == c.live) complete_cluster_phase(c);
}

void cluster_wait(const char* site) {
  Thread& t = this_thread();
  Block& b = *t.block;
  if (t.cluster_arrivals == t.cluster_waits)
    fail(std::string("barrier.cluster.wait (") + site + ") without a barrier.cluster.arrive");
  if (b.cluster->phase < t.cluster_arrivals) {
    t.cluster_site = site;
    t.state = ThreadState::kAtClusterBarrier;
    fiber_switch(t.ctx, b.scheduler);
  }
  t.cluster_waits = t.cluster_arrivals;
  b.cluster_waits_max = std::max(b.cluster_waits_max, t.cluster_waits);
}

Block& cluster_block(uint32_t rank, const char* kind, bool record) {
  Thread& t = this_thread();
  Block& b = *t.block;
  Cluster& c = *b.cluster;
  if (rank >= c.blocks.size())
    fail(std::string(kind) + ": CTA rank " + std::to_string(rank) + " outside the cluster of " +
         std::to_string(c.blocks.size()));
  Block& peer = *c.blocks[rank];
  if (&peer == &b) return b;
  if (t.cluster_waits == 0)
    fail(std::string(kind) + " touches the shared memory of cluster peer rank " +
         std::to_string(rank) +
         " before this thread's first barrier.cluster wait (missing cluster sync after launch: "
         "the peer's mbarriers and shared data may not be initialised yet)");
  if (peer.exited)
    fail(std::string(kind) + " targets cluster peer rank " + std::to_string(rank) +
         ", which has exited (missing cluster sync before its exit: its shared memory is gone)");
  if (record) {
    peer.peer_access[b.rank] = std::max(peer.peer_access[b.rank], t.cluster_arrivals + 1);
    peer.peer_access_kind[b.rank] = kind;
  }
  return peer;
}

namespace {
// The access must lie within one of target's shared arrays (dynamic or static).
void check_shared_region(const Block& target, size_t off, size_t bytes, const char* kind) {
  bool inside = off + bytes <= target.launch->dynamic_shared;
  for (size_t i = 0; !inside && i < target.static_shared.size(); ++i)
    inside = off >= target.static_shared[i].offset &&
             off + bytes <= target.static_shared[i].offset + target.static_shared[i].bytes;
  if (!inside)
    fail(std::string(kind) + " of " + std::to_string(bytes) + " bytes at shared offset " +
         std::to_string(off) + " of cluster rank " + std::to_string(target.rank) +
         " is outside every shared array of that CTA");
}
void mark_init(Block& target, size_t off, size_t bytes) {
  for (size_t word = off / 4; bytes && word <= (off + bytes - 1) / 4; ++word) {
    const size_t lo = std::max(off, word * 4), hi = std::min(off + bytes, word * 4 + 4);
    target.shadow[word].init_mask |=
        static_cast<uint8_t>(((1u << (hi - lo)) - 1) << (lo - word * 4));
  }
}
Mbarrier& mbarrier_in(Block& target, size_t off, const char* kind) {
  if (off % 8) fail(std::string(kind) + ": mbarrier not 8-byte aligned");
  for (auto& [o, m] : target.mbarriers)
    if (o == off) return m;
  fail(std::string(kind) + " on shared offset " + std::to_string(off) + " of cluster rank " +
       std::to_string(target.rank) + ", which holds no initialised mbarrier");
}
}  // namespace

void cluster_shared_access(Block& target, size_t off, void* data, size_t bytes, bool write,
                           const char* kind) {
  Block& b = *this_thread().block;
  unsigned char* p = target.shared.data() + off;
  if (&target == &b) {  // a shared::cluster address of the own CTA: an ordinary shared access
    check_shared(p, bytes, write, kind);
  } else {
    check_shared_region(target, off, bytes, kind);
    if (write) {
      mark_init(target, off, bytes);
    } else if (target.launch->check_uninitialized) {
      for (size_t word = off / 4; word <= (off + bytes - 1) / 4; ++word) {
        const size_t lo = std::max(off, word * 4), hi = std::min(off + bytes, word * 4 + 4);
        const auto m = static_cast<uint8_t>(((1u << (hi - lo)) - 1) << (lo - word * 4));
        if ((target.shadow[word].init_mask & m) != m)
          fail(std::string(kind) + " reads uninitialized shared memory at offset " +
               std::to_string(lo) + " of cluster rank " + std::to_string(target.rank));
      }
    }
    b.stats.dsmem_bytes += bytes;
  }
  if (write)
    std::memcpy(p, data, bytes);
  else
    std::memcpy(data, p, bytes);
}

void async_shared_write_at(Block& target, size_t off, size_t bytes, const char* kind) {
  if (off + bytes > target.launch->dynamic_shared)
    fail(std::string(kind) + " of " + std::to_string(bytes) + " bytes at shared offset " +
         std::to_string(off) + " is outside the dynamic shared memory of cluster rank " +
         std::to_string(target.rank));
  mark_init(target, off, bytes);
}

void mbarrier_arrive_at(Block& target, size_t off, int64_t expect_tx_bytes, const char* kind) {
  Mbarrier& m = mbarrier_in(target, off, kind);
  m.tx += expect_tx_bytes;
  if (m.pending <= 0) fail(std::string(kind) + ": more arrivals than the barrier's count");
  --m.pending;
  mbarrier_maybe_complete(m);
}

void mbarrier_complete_tx_at(Block& target, size_t off, int64_t bytes) {
  Mbarrier& m = mbarrier_in(target, off, "complete_tx (multicast)");
  m.tx -= bytes;
  mbarrier_maybe_complete(m);
}

}  // namespace moe_simt
