// The grouped GEMM's tuning table (gemm_tuning.h): a process-wide map, written rarely (loading a
// table), read on every device grouped GEMM call.
#include "gemm_tuning.h"

#include <mutex>
#include <shared_mutex>
#include <unordered_map>

namespace moe_ext {
namespace {

std::shared_mutex table_mutex;
std::unordered_map<std::string, GemmTuningChoice>& table() {
  static std::unordered_map<std::string, GemmTuningChoice> t;
  return t;
}

}  // namespace

void set_gemm_tuning(const std::string& key, const GemmTuningChoice& choice) {
  std::unique_lock lock(table_mutex);
  table()[key] = choice;
}

void clear_gemm_tuning() {
  std::unique_lock lock(table_mutex);
  table().clear();
}

std::string gemm_tuning_key(const GroupedGemmParams& p) {
  if (p.form != GroupedGemmForm::kRaggedM || p.num_groups <= 0) return "";
  const int64_t rows = p.m / p.num_groups;
  int bits = 0;
  while (bits < 62 && (rows >> bits) > 0) ++bits;
  const int64_t n = p.gated ? 2 * p.n : p.n;
  return "2x3:" + std::to_string(p.num_groups) + ":" + std::to_string(p.k) + ":" +
         std::to_string(n) + ":" + std::to_string(int64_t{1} << bits);
}

void apply_gemm_tuning(GroupedGemmParams& p) {
  if (p.config != kGemmConfigAuto || p.stages != 0 || p.path != kGemmPathAuto) return;
  std::shared_lock lock(table_mutex);
  if (table().empty()) return;
  const auto it = table().find(gemm_tuning_key(p));
  if (it == table().end()) return;
  p.path = it->second.path;
  p.config = it->second.config;
  p.stages = it->second.stages;
}

}  // namespace moe_ext
