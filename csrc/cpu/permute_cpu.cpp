// Native CPU row gather (permute) and weighted combine (unpermute).
//
// permute:   xp[i] = x[order[i] / k], or zeros when assignment order[i] was dropped
//            (slot[order[i]] == -1). A byte copy per row, so one code path serves every dtype.
// unpermute: y[t] = sum_j w[t,j] * yp[slot[t*k+j]] over kept assignments, accumulated in fp32
//            (fp64 for fp64) in j order: a gather, deterministic, no atomics.
// Row offsets are int64 (row * H can pass 2^31).
#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <ATen/Parallel.h>

#include <cstring>
#include <vector>

#include "cpu_ops.h"

namespace moe_ext {

at::Tensor permute_cpu(const at::Tensor& x, const at::Tensor& order, const at::Tensor& slot,
                       int64_t top_k) {
  const int64_t N = order.size(0), H = x.size(1);
  auto xp = at::empty({N, H}, x.options());
  if (N == 0 || H == 0) return xp;
  auto xc = x.stride(1) == 1 ? x : x.contiguous();
  auto order_c = order.contiguous(), slot_c = slot.contiguous();
  const int32_t* ord = order_c.const_data_ptr<int32_t>();
  const int32_t* slt = slot_c.const_data_ptr<int32_t>();
  const int64_t esize = x.element_size(), row_bytes = H * esize;
  const int64_t src_stride = xc.stride(0) * esize;
  const char* src = static_cast<const char*>(xc.const_data_ptr());
  char* dst = static_cast<char*>(xp.data_ptr());
  at::parallel_for(0, N, std::max<int64_t>(1, 65536 / row_bytes), [&](int64_t b, int64_t e) {
    for (int64_t i = b; i < e; ++i) {
      const int64_t a = ord[i];
      char* out = dst + i * row_bytes;
      if (slt[a] < 0) {
        std::memset(out, 0, row_bytes);
      } else {
        std::memcpy(out, src + (a / top_k) * src_stride, row_bytes);
      }
    }
  });
  return xp;
}

at::Tensor unpermute_cpu(const at::Tensor& yp, const at::Tensor& slot, const at::Tensor& weights) {
  const int64_t T = weights.size(0), k = weights.size(1), H = yp.size(1);
  auto y = at::empty({T, H}, yp.options());
  if (T == 0 || H == 0) return y;
  const auto acc = yp.scalar_type() == at::kDouble ? at::kDouble : at::kFloat;
  auto w = weights.to(acc).contiguous();
  auto ypc = yp.stride(1) == 1 ? yp : yp.contiguous();
  auto slot_c = slot.contiguous();
  const int32_t* slt = slot_c.const_data_ptr<int32_t>();
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kBFloat16, at::kHalf, yp.scalar_type(), "unpermute_cpu", [&] {
    using acc_t = at::opmath_type<scalar_t>;
    const acc_t* wp = w.const_data_ptr<acc_t>();
    const scalar_t* in = ypc.const_data_ptr<scalar_t>();
    const int64_t in_stride = ypc.stride(0);
    scalar_t* out = y.data_ptr<scalar_t>();
    at::parallel_for(0, T, std::max<int64_t>(1, 16384 / (H * k)), [&](int64_t b, int64_t e) {
      std::vector<acc_t> sum(H);
      for (int64_t t = b; t < e; ++t) {
        std::fill(sum.begin(), sum.end(), acc_t(0));
        for (int64_t j = 0; j < k; ++j) {
          const int64_t s = slt[t * k + j];
          if (s < 0) continue;
          const acc_t wj = wp[t * k + j];
          const scalar_t* row = in + s * in_stride;
          for (int64_t h = 0; h < H; ++h) sum[h] += wj * static_cast<acc_t>(row[h]);
        }
        scalar_t* o = out + t * H;
        for (int64_t h = 0; h < H; ++h) o[h] = static_cast<scalar_t>(sum[h]);
      }
    });
  });
  return y;
}

std::tuple<at::Tensor, at::Tensor> unpermute_backward_cpu(const at::Tensor& grad_y,
                                                          const at::Tensor& yp,
                                                          const at::Tensor& order,
                                                          const at::Tensor& slot,
                                                          const at::Tensor& weights) {
  const int64_t N = yp.size(0), H = yp.size(1), k = weights.size(1), T = weights.size(0);
  const auto acc = yp.scalar_type() == at::kDouble ? at::kDouble : at::kFloat;
  auto grad_yp = at::empty({N, H}, yp.options());
  auto grad_w = at::zeros({T, k}, weights.options().dtype(acc));
  auto w = weights.to(acc).contiguous();
  auto dy = grad_y.contiguous();
  auto ypc = yp.stride(1) == 1 ? yp : yp.contiguous();
  auto order_c = order.contiguous(), slot_c = slot.contiguous();
  const int32_t* ord = order_c.const_data_ptr<int32_t>();
  const int32_t* slt = slot_c.const_data_ptr<int32_t>();
  AT_DISPATCH_FLOATING_TYPES_AND2(
      at::kBFloat16, at::kHalf, yp.scalar_type(), "unpermute_backward_cpu", [&] {
        using acc_t = at::opmath_type<scalar_t>;
        const acc_t* wp = w.const_data_ptr<acc_t>();
        const scalar_t* g = dy.const_data_ptr<scalar_t>();
        const scalar_t* y = ypc.const_data_ptr<scalar_t>();
        const int64_t y_stride = ypc.stride(0);
        scalar_t* out = grad_yp.data_ptr<scalar_t>();
        acc_t* gw = grad_w.data_ptr<acc_t>();
        at::parallel_for(0, N, std::max<int64_t>(1, 16384 / std::max<int64_t>(H, 1)),
                         [&](int64_t b, int64_t e) {
                           for (int64_t i = b; i < e; ++i) {
                             const int64_t a = ord[i];
                             const bool kept = a >= 0 && a < T * k && slt[a] >= 0;
                             scalar_t* o = out + i * H;
                             if (!kept) {
                               std::fill(o, o + H, scalar_t(0));
                               continue;
                             }
                             const acc_t wa = wp[a];
                             const scalar_t* gr = g + (a / k) * H;
                             const scalar_t* yr = y + i * y_stride;
                             acc_t dot = 0;
                             for (int64_t h = 0; h < H; ++h) {
                               const acc_t gv = static_cast<acc_t>(gr[h]);
                               o[h] = static_cast<scalar_t>(wa * gv);
                               dot += gv * static_cast<acc_t>(yr[h]);
                             }
                             gw[a] = dot;
                           }
                         });
      });
  return {grad_yp, grad_w.to(weights.scalar_type())};
}

}  // namespace moe_ext
