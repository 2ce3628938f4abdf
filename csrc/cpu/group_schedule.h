// Running independent per-group (per-expert) work on the CPU's intra-op threads.
//
// MoE groups are many and small (Qwen3-30B-A3B at T = 1024: 128 experts of ~64 rows): a
// multithreaded at::mm per group spends much of its time forking and joining threads. Here each
// group runs on one thread (ATen/MKL/oneDNN calls inside an at::parallel_for region run single-
// threaded), threads take groups from a shared counter, largest first, so skewed routing stays
// balanced; a group too big to balance (more work than one thread's fair share) runs alone
// first, with every thread inside its own calls. Each group's result depends only on its own
// inputs, so outputs do not depend on the thread count or the schedule.
#pragma once

#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <ATen/ThreadLocalState.h>

#include <algorithm>
#include <atomic>
#include <numeric>
#include <vector>

namespace moe_ext {

// Row ranges of the groups of an expert-sorted buffer of `rows` rows from their cumulative ends
// (`offsets`, sort_tokens'): group g owns [start[g], start[g + 1]), clamped to [0, rows] and
// monotone, so malformed offsets cannot reach outside the buffer. start[groups] is the kept rows.
inline std::vector<int64_t> group_row_starts(const at::Tensor& offsets, int64_t rows) {
  const int64_t groups = offsets.size(0);
  std::vector<int64_t> start(groups + 1, 0);
  const auto ends = offsets.to(at::kLong).contiguous();
  const int64_t* end = ends.const_data_ptr<int64_t>();
  for (int64_t g = 0; g < groups; ++g) start[g + 1] = std::clamp(end[g], start[g], rows);
  return start;
}

// work(g): a cost estimate of group g (0: nothing to do); run(g): does group g.
template <typename Work, typename Run>
void run_groups_balanced(int64_t groups, const Work& work, const Run& run) {
  std::vector<int64_t> cost(groups), by_cost(groups);
  for (int64_t g = 0; g < groups; ++g) cost[g] = work(g);
  std::iota(by_cost.begin(), by_cost.end(), 0);
  std::stable_sort(by_cost.begin(), by_cost.end(),
                   [&](int64_t a, int64_t b) { return cost[a] > cost[b]; });
  while (!by_cost.empty() && cost[by_cost.back()] == 0) by_cost.pop_back();
  const int64_t threads = at::get_num_threads();
  const int64_t total = std::accumulate(cost.begin(), cost.end(), int64_t{0});
  const int64_t fair = total / std::max<int64_t>(threads, 1);
  size_t first_shared = 0;  // groups before this one run alone, each with every thread
  while (first_shared < by_cost.size() && (threads == 1 || cost[by_cost[first_shared]] > fair)) {
    run(by_cost[first_shared++]);
  }
  if (first_shared == by_cost.size()) return;
  std::atomic<size_t> next{first_shared};
  // run() dispatches ATen ops: the worker threads need the caller's thread-local dispatch state
  // (below-autograd key exclusions, grad mode, ...), which at::parallel_for does not carry
  const at::ThreadLocalState caller;
  at::parallel_for(0, threads, 1, [&](int64_t, int64_t) {
    const at::ThreadLocalStateGuard state(caller);
    for (size_t i = next++; i < by_cost.size(); i = next++) run(by_cost[i]);
  });
}

}  // namespace moe_ext
