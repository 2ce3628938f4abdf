// Native CPU router: scores (softmax / sigmoid / sqrt(softplus)) -> optional group-limited
// selection -> top-k.
//
// One token per task of at::parallel_for; scores are computed in fp32 (fp64 for fp64 logits)
// exactly as reference.route specifies. Selection order is "key descending, expert id ascending",
// so ties go to the lower expert id and the ids of a token come out in descending key order.
// NaN logits (and NaN correction_bias) raise; so does a softmax row whose scores are undefined
// (+inf present, or every logit -inf) and a renormalised sqrtsoftplus row holding +inf (score
// +inf, weights inf / inf).
#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>
#include <ATen/OpMathType.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <numeric>
#include <vector>

#include "../kernels/route.h"  // kRenormEps
#include "cpu_ops.h"

namespace moe_ext {

RouteScore parse_route_score(c10::string_view score_func) {
  return score_func == "softmax"   ? RouteScore::kSoftmax
         : score_func == "sigmoid" ? RouteScore::kSigmoid
                                   : RouteScore::kSqrtSoftplus;
}

namespace {

// Strict weak order used for every selection: larger key first, then lower index.
template <typename acc_t>
struct KeyDescIdAsc {
  const acc_t* key;
  bool operator()(int32_t i, int32_t j) const {
    return key[i] > key[j] || (key[i] == key[j] && i < j);
  }
};

using Score = RouteScore;

// The scores of a whole [T, E] tensor in the accumulation dtype, as reference.scores.
at::Tensor score_tensor(const at::Tensor& x, Score score) {
  switch (score) {
    case Score::kSoftmax: return at::softmax(x, -1);
    case Score::kSigmoid: return at::sigmoid(x);
    case Score::kSqrtSoftplus: return at::sqrt(at::softplus(x));
  }
  return x;
}

template <typename scalar_t>
void route_kernel_cpu(const at::Tensor& logits, int64_t top_k, Score score_fn, bool renormalize,
                      const at::Tensor* bias, int64_t num_groups, int64_t topk_groups,
                      double scaling, at::Tensor& weights, at::Tensor& ids) {
  using acc_t = at::opmath_type<scalar_t>;
  const int64_t T = logits.size(0), E = logits.size(1);
  const scalar_t* in = logits.const_data_ptr<scalar_t>();
  const int64_t row_stride = logits.stride(0), col_stride = logits.stride(1);
  std::vector<acc_t> bias_v(E, acc_t(0));
  if (bias) {
    at::Tensor b = bias->to(c10::CppTypeToScalarType<acc_t>::value).contiguous();
    std::copy_n(b.const_data_ptr<acc_t>(), E, bias_v.begin());
  }
  acc_t* w_out = weights.data_ptr<acc_t>();
  int32_t* id_out = ids.data_ptr<int32_t>();
  const int64_t gsize = E / num_groups;
  constexpr acc_t kNegInf = -std::numeric_limits<acc_t>::infinity();

  at::parallel_for(0, T, std::max<int64_t>(1, 4096 / E), [&](int64_t begin, int64_t end) {
    std::vector<acc_t> score(E), key(E), gscore(num_groups);
    std::vector<int32_t> idx(E), gidx(num_groups);
    for (int64_t t = begin; t < end; ++t) {
      const scalar_t* row = in + t * row_stride;
      acc_t mx = kNegInf;
      for (int64_t e = 0; e < E; ++e) {
        acc_t v = static_cast<acc_t>(row[e * col_stride]);
        TORCH_CHECK(!std::isnan(v), "moe_ext.route: logits contain NaN (token ", t, ", expert ", e,
                    ")");
        score[e] = v;
        mx = std::max(mx, v);
      }
      if (score_fn == Score::kSoftmax) {
        TORCH_CHECK(std::isfinite(mx), "moe_ext.route: logits row ", t,
                    mx > 0 ? " contains +inf" : " is entirely -inf",
                    ", so its softmax is undefined");
        acc_t sum = 0;
        for (int64_t e = 0; e < E; ++e) sum += (score[e] = std::exp(score[e] - mx));
        for (int64_t e = 0; e < E; ++e) score[e] /= sum;
      } else if (score_fn == Score::kSigmoid) {
        for (int64_t e = 0; e < E; ++e) score[e] = acc_t(1) / (acc_t(1) + std::exp(-score[e]));
      } else {
        TORCH_CHECK(!renormalize || mx < std::numeric_limits<acc_t>::infinity(),
                    "moe_ext.route: logits row ", t,
                    " contains +inf, so its sqrtsoftplus score is +inf and the renormalised "
                    "weights are undefined");
        // softplus with torch's threshold: x for x > 20
        for (int64_t e = 0; e < E; ++e) {
          const acc_t v = score[e];
          score[e] = std::sqrt(v > acc_t(20) ? v : std::log1p(std::exp(v)));
        }
      }
      for (int64_t e = 0; e < E; ++e) key[e] = score[e] + bias_v[e];

      if (num_groups > 1) {
        // Group score = sum of the group's two largest keys (DeepSeek-V3); keep topk_groups.
        for (int64_t g = 0; g < num_groups; ++g) {
          const acc_t* k = key.data() + g * gsize;
          acc_t first = kNegInf, second = kNegInf;
          for (int64_t e = 0; e < gsize; ++e) {
            if (k[e] > first) {
              second = first;
              first = k[e];
            } else if (k[e] > second) {
              second = k[e];
            }
          }
          gscore[g] = first + second;
        }
        std::iota(gidx.begin(), gidx.end(), 0);
        std::partial_sort(gidx.begin(), gidx.begin() + topk_groups, gidx.end(),
                          KeyDescIdAsc<acc_t>{gscore.data()});
        std::vector<bool> keep(num_groups, false);
        for (int64_t g = 0; g < topk_groups; ++g) keep[gidx[g]] = true;
        for (int64_t e = 0; e < E; ++e)
          if (!keep[e / gsize]) key[e] = kNegInf;
      }

      std::iota(idx.begin(), idx.end(), 0);
      std::partial_sort(idx.begin(), idx.begin() + top_k, idx.end(),
                        KeyDescIdAsc<acc_t>{key.data()});
      acc_t* w = w_out + t * top_k;
      int32_t* id = id_out + t * top_k;
      acc_t sum = 0;
      for (int64_t j = 0; j < top_k; ++j) {
        id[j] = idx[j];
        w[j] = score[idx[j]];
        sum += w[j];
      }
      const acc_t denom = renormalize ? sum + acc_t(kRenormEps) : acc_t(1);
      for (int64_t j = 0; j < top_k; ++j) w[j] = w[j] / denom * acc_t(scaling);
    }
  });
}

}  // namespace

std::tuple<at::Tensor, at::Tensor> route_cpu(const at::Tensor& logits, int64_t top_k,
                                             c10::string_view score_func, bool renormalize,
                                             const std::optional<at::Tensor>& correction_bias,
                                             int64_t num_groups, int64_t topk_groups,
                                             double scaling_factor) {
  const auto acc = logits.scalar_type() == at::kDouble ? at::kDouble : at::kFloat;
  const int64_t T = logits.size(0);
  auto weights = at::empty({T, top_k}, logits.options().dtype(acc));
  auto ids = at::empty({T, top_k}, logits.options().dtype(at::kInt));
  if (T == 0) return {weights, ids};
  const at::Tensor* bias = correction_bias ? &*correction_bias : nullptr;
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kBFloat16, at::kHalf, logits.scalar_type(), "route_cpu", [&] {
    route_kernel_cpu<scalar_t>(logits, top_k, parse_route_score(score_func), renormalize, bias,
                               num_groups, topk_groups, scaling_factor, weights, ids);
  });
  return {weights, ids};
}

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor> route_with_stats_cpu(
    const at::Tensor& logits, int64_t top_k, c10::string_view score_func, bool renormalize,
    const std::optional<at::Tensor>& correction_bias, int64_t num_groups, int64_t topk_groups,
    double scaling_factor) {
  auto [weights, ids] = route_cpu(logits, top_k, score_func, renormalize, correction_bias,
                                  num_groups, topk_groups, scaling_factor);
  const int64_t T = logits.size(0), E = logits.size(1);
  const auto acc = logits.scalar_type() == at::kDouble ? at::kDouble : at::kFloat;
  // integer counts: exact, and independent of the order the assignments are visited in
  const auto counts = at::bincount(ids.reshape({-1}).to(at::kLong), {}, E).to(at::kInt);
  const auto x = logits.to(acc);
  const auto scores = score_tensor(x, parse_route_score(score_func));
  // T = 0: the mean of no scores is 0 (not NaN)
  const auto mean_prob = T > 0 ? scores.mean(0) : at::zeros({E}, logits.options().dtype(acc));
  return {weights, ids, counts, mean_prob};
}

// d logits from d weights (and d mean_prob): the scores recomputed from the logits, then
//   renormalised: w_j = s_j / D with D = sum_i s_i + eps  =>  ds_i = g_i / D - <g, s_sel> / D^2
//   mean_prob[e] = mean_t s[t, e]                           =>  ds[t, e] += g_mean[e] / T
//   softmax: dx = s * (ds - <ds, s>);  sigmoid: dx = ds * s * (1 - s)
//   sqrtsoftplus: dx = ds * softplus'(x) / (2 s), softplus' = sigmoid(x) (1 for x > 20, torch's
//     threshold), and 0 where s = 0 (the limit; the chain rule through sqrt would give 0 / 0)
at::Tensor route_backward_cpu(const at::Tensor& grad_weights, const at::Tensor& logits,
                              const at::Tensor& ids, c10::string_view score_func, bool renormalize,
                              double scaling_factor,
                              const std::optional<at::Tensor>& grad_mean_prob) {
  const auto acc = logits.scalar_type() == at::kDouble ? at::kDouble : at::kFloat;
  const auto x = logits.to(acc);
  const Score score = parse_route_score(score_func);
  const auto s = score_tensor(x, score);
  const auto idx = ids.to(at::kLong);
  auto g = grad_weights.to(acc) * scaling_factor;
  if (renormalize) {
    const auto s_sel = s.gather(1, idx);
    const auto denom = s_sel.sum(-1, true) + kRenormEps;
    g = g / denom - (g * s_sel).sum(-1, true) / (denom * denom);
  }
  auto ds = at::zeros_like(s);
  if (grad_mean_prob) ds = ds + (grad_mean_prob->to(acc) / s.size(0)).unsqueeze(0);
  ds = ds.scatter_add(1, idx, g);
  at::Tensor dx;
  if (score == Score::kSoftmax) {
    dx = s * (ds - (ds * s).sum(-1, true));
  } else if (score == Score::kSigmoid) {
    dx = ds * s * (1 - s);
  } else {
    const auto dsp = at::where(x > 20, at::ones_like(x), at::sigmoid(x));
    dx = at::where(s > 0, ds * dsp / (2 * s), at::zeros_like(s));
  }
  return dx.to(logits.scalar_type());
}

// route_weights: score(logits) gathered at the given ids, renormalised in j order (+1e-20) if
// asked, times scaling_factor (DeepSeek-V4 hash layers).
at::Tensor route_weights_cpu(const at::Tensor& logits, const at::Tensor& ids,
                             c10::string_view score_func, bool renormalize, double scaling_factor) {
  const auto acc = logits.scalar_type() == at::kDouble ? at::kDouble : at::kFloat;
  at::Tensor w =
      score_tensor(logits.to(acc), parse_route_score(score_func)).gather(1, ids.to(at::kLong));
  if (renormalize && w.size(1) > 0) {
    // summed in j order (the order route sums its choices), not by a tree reduction
    at::Tensor sum = w.select(1, 0).clone();
    for (int64_t j = 1; j < w.size(1); ++j) sum += w.select(1, j);
    w = w / (sum + kRenormEps).unsqueeze(1);
  }
  return w * scaling_factor;
}

}  // namespace moe_ext
