// Whether the CPU's oneDNN runs GEMMs natively in a reduced precision (grouped_mm_cpu.cpp).
// bf16/fp16 at::mm on CPU accumulates in fp32 but is only fast with hardware support (AVX-512
// BF16 / AMX / AVX512-FP16); elsewhere it is several times slower than fp32 GEMM, so the CPU ops
// form such products in fp32 there.
#pragma once

#include <ATen/ATen.h>

namespace moe_ext {

bool cpu_mm_is_native(at::ScalarType dt);

// out = a @ b: at::mm_out straight into out (a view) when a and b are in out's dtype, else the
// product in a's dtype, rounded into out by the copy.
inline void mm_into(at::Tensor out, const at::Tensor& a, const at::Tensor& b) {
  if (a.scalar_type() == out.scalar_type() && b.scalar_type() == out.scalar_type())
    at::mm_out(out, a, b);
  else
    out.copy_(at::mm(a, b));
}

}  // namespace moe_ext
