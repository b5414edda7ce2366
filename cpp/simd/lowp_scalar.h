// float16 and bfloat16 <-> float32, one value at a time, bit for bit what the vector sets do
// (F16C's vcvtph2ps / vcvtps2ph, the AVX2 integer rounding of bfloat16): the scalar ISA uses
// these, and the vector kernels use them for their tails, so every ISA gives the same bits.
//   widening (f16, bf16 -> f32) is exact; a signaling NaN comes back quiet (F16C does so);
//   narrowing (f32 -> f16, bf16) rounds to nearest, ties to even, overflow to +-inf, float16
//   subnormals kept; a NaN stays a NaN (quiet, its sign and top payload bits kept).
// In LO_TARGET's namespace like the rest of the vector layer (vec.h says why).
#pragma once

#include <cstdint>
#include <cstring>

namespace logitops {
namespace LO_TARGET {

inline uint32_t f32_bits(float f) {
  uint32_t u;
  std::memcpy(&u, &f, sizeof u);
  return u;
}
inline float f32_from_bits(uint32_t u) {
  float f;
  std::memcpy(&f, &u, sizeof f);
  return f;
}

inline float bf16_to_f32(uint16_t h) { return f32_from_bits(static_cast<uint32_t>(h) << 16); }

inline uint16_t f32_to_bf16(float f) {
  const uint32_t u = f32_bits(f);
  if ((u & 0x7fffffffu) > 0x7f800000u) return static_cast<uint16_t>((u >> 16) | 0x40u);  // NaN: quiet
  // Adding 0x7fff plus the lowest kept bit rounds to nearest even; the carry may reach the
  // exponent (the next binade, or inf past the largest finite value).
  return static_cast<uint16_t>((u + 0x7fffu + ((u >> 16) & 1u)) >> 16);
}

inline float f16_to_f32(uint16_t h) {
  const uint32_t sign = static_cast<uint32_t>(h & 0x8000u) << 16;
  const uint32_t e = (h >> 10) & 0x1fu, m = h & 0x3ffu;
  if (e == 0x1f) return f32_from_bits(sign | 0x7f800000u | (m << 13) | (m ? 0x400000u : 0u));  // inf, NaN
  if (e != 0) return f32_from_bits(sign | ((e + 112) << 23) | (m << 13));
  // zero or subnormal: m * 2^-24, exact in float
  return f32_from_bits(sign | f32_bits(static_cast<float>(m) * 0x1p-24f));
}

inline uint16_t f32_to_f16(float f) {
  const uint32_t u = f32_bits(f);
  const uint32_t sign = (u >> 16) & 0x8000u, a = u & 0x7fffffffu;
  if (a > 0x7f800000u) return static_cast<uint16_t>(sign | 0x7e00u | ((a >> 13) & 0x3ffu));  // NaN: quiet
  if (a >= 0x477ff000u) return static_cast<uint16_t>(sign | 0x7c00u);  // >= 65520 (65504 + half an ulp): inf
  if (a >= 0x38800000u) {  // a float16 normal (>= 2^-14): rebias the exponent, round 13 bits away
    const uint32_t r = a - 0x38000000u;
    return static_cast<uint16_t>(sign | ((r + 0xfffu + ((r >> 13) & 1u)) >> 13));
  }
  if (a <= 0x33000000u) return static_cast<uint16_t>(sign);  // <= 2^-25: rounds to zero (2^-25 ties to even)
  // A float16 subnormal: the value in units of 2^-24 is the 24-bit significand >> (126 - e).
  const uint32_t e = a >> 23, m = (a & 0x7fffffu) | 0x800000u, shift = 126 - e;
  const uint32_t q = m >> shift, rem = m & ((1u << shift) - 1), half = 1u << (shift - 1);
  return static_cast<uint16_t>(sign | (q + ((rem > half || (rem == half && (q & 1u))) ? 1u : 0u)));
}

}  // namespace LO_TARGET
}  // namespace logitops
