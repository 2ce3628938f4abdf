// route_weights on CPU: the scores of the given experts (DeepSeek-V4 hash layers), with torch
// ops in fp32 (fp64 for fp64 logits): score(logits) gathered at ids, renormalised in j order
// (+1e-20) if asked, times scaling_factor.
#include "../kernels/route.h"
#include "cpu_ops.h"

namespace moe_ext {

at::Tensor route_scores_cpu(const at::Tensor& logits, c10::string_view score_func) {
  const auto acc = logits.scalar_type() == at::kDouble ? at::kDouble : at::kFloat;
  const at::Tensor x = logits.to(acc);
  if (score_func == "softmax") return at::softmax(x, -1);
  if (score_func == "sigmoid") return at::sigmoid(x);
  return at::softplus(x, 1, 20).sqrt();  // sqrtsoftplus (DeepSeek-V4)
}

at::Tensor route_weights_cpu(const at::Tensor& logits, const at::Tensor& ids,
                             c10::string_view score_func, bool renormalize, double scaling_factor) {
  at::Tensor w = route_scores_cpu(logits, score_func).gather(1, ids.to(at::kLong));
  if (renormalize && w.size(1) > 0) {
    // summed in j order (the order route sums its choices), not by a tree reduction
    at::Tensor sum = w.select(1, 0).clone();
    for (int64_t j = 1; j < w.size(1); ++j) sum += w.select(1, j);
    w = w / (sum + kRenormEps).unsqueeze(1);
  }
  return w * scaling_factor;
}

}  // namespace moe_ext
