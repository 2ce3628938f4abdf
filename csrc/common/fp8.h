// float8_e4m3fn conversions and the power-of-two (UE8M0) scale rounding, in integer arithmetic
// on the float's bits: the same result on every arch (sm_80 has no fp8 cvt instruction), on the
// emulator and on the host, equal bit for bit to torch's float -> float8_e4m3fn conversion of a
// value already clamped to [-448, 448] (round to nearest even, subnormals down to 2^-9, NaN kept).
// Both paths.
//
//   f32_to_e4m3_satfinite(f)  e4m3fn bits of f, saturated to +-448 (the cvt.rn.satfinite rule;
//                             inf -> 448), NaN -> 0x7f with f's sign
//   e4m3_to_f32(b)            the exact value of e4m3fn bits b
//   pow2_ceil(f)              2^ceil(log2 f) for a positive finite normal f: f itself when it is a
//                             power of two, else the next one (exponent + 1, mantissa 0)
#pragma once

#include <cstdint>
#include <cstring>

#include "portable.h"

namespace moe_ext {

MOE_HOST_DEVICE MOE_FORCEINLINE uint32_t fp8_float_bits(float f) {
  uint32_t u;
  memcpy(&u, &f, sizeof(u));
  return u;
}

MOE_HOST_DEVICE MOE_FORCEINLINE float fp8_bits_float(uint32_t u) {
  float f;
  memcpy(&f, &u, sizeof(f));
  return f;
}

constexpr float kFp8E4m3Max = 448.f;

MOE_HOST_DEVICE MOE_FORCEINLINE uint8_t f32_to_e4m3_satfinite(float f) {
  const uint32_t u = fp8_float_bits(f);
  const uint8_t sign = static_cast<uint8_t>((u >> 24) & 0x80);
  const uint32_t mag = u & 0x7fffffffu;
  if (mag > 0x7f800000u) return sign | 0x7f;      // NaN
  if (mag >= 0x43e00000u) return sign | 0x7e;     // >= 448 (inf included): 448
  if (mag < 0x3c800000u) {                        // < 2^-6: e4m3 subnormal range
    const float q = fp8_bits_float(mag) * 512.f;  // in units of 2^-9, exact
    uint32_t r = static_cast<uint32_t>(q);        // truncate, then round half even
    const float frac = q - static_cast<float>(r);
    if (frac > 0.5f || (frac == 0.5f && (r & 1))) ++r;  // r == 8 is 2^-6: bits 0x08
    return sign | static_cast<uint8_t>(r);
  }
  const int exp = static_cast<int>(mag >> 23) - 127;  // -6 .. 8
  uint32_t m3 = (mag >> 20) & 0x7;
  const uint32_t rest = mag & 0xfffff, half = 0x80000;
  int e = exp;
  if (rest > half || (rest == half && (m3 & 1))) {
    if (++m3 == 8) m3 = 0, ++e;
  }
  if (e > 8 || (e == 8 && m3 > 6)) return sign | 0x7e;  // rounded past 448: saturate
  return sign | static_cast<uint8_t>(((e + 7) << 3) | m3);
}

MOE_HOST_DEVICE MOE_FORCEINLINE float e4m3_to_f32(uint8_t b) {
  const uint32_t sign = static_cast<uint32_t>(b & 0x80) << 24;
  const uint32_t e = (b >> 3) & 0xf, m = b & 0x7;
  if (e == 0xf && m == 0x7) return fp8_bits_float(sign | 0x7fc00000u);  // NaN
  if (e == 0) return fp8_bits_float(sign | fp8_float_bits(static_cast<float>(m) / 512.f));
  return fp8_bits_float(sign | ((e - 7 + 127) << 23) | (m << 20));
}

MOE_HOST_DEVICE MOE_FORCEINLINE float pow2_ceil(float f) {
  const uint32_t u = fp8_float_bits(f);
  if ((u & 0x7fffffu) == 0) return f;                      // already a power of two
  return fp8_bits_float(((u & 0x7f800000u) + 0x800000u));  // next exponent, mantissa 0
}

}  // namespace moe_ext
