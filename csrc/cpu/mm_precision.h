// Whether the CPU's oneDNN runs GEMMs natively in a reduced precision (grouped_mm_cpu.cpp).
// bf16/fp16 at::mm on CPU accumulates in fp32 but is only fast with hardware support (AVX-512
// BF16 / AMX / AVX512-FP16); elsewhere it is several times slower than fp32 GEMM, so the CPU ops
// form such products in fp32 there.
#pragma once

#include <ATen/ATen.h>

namespace moe_ext {

bool cpu_mm_is_native(at::ScalarType dt);

}  // namespace moe_ext
