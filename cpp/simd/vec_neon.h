// AArch64 Advanced SIMD (NEON) implementation of the vector layer (see vec.h): 4 floats or 2
// doubles a register, fused multiply-add. Advanced SIMD and FMA are baseline on AArch64, so
// this ISA needs no compiler flags; it is compiled only for aarch64 targets (CMakeLists.txt).
//
// Only arm_neon.h's intrinsics (ACLE), nothing GCC-specific beyond the + - * / operators on
// vector types that vec_avx2.h uses too, so GCC and Clang (Apple's toolchain) both accept it.
//
// Each lane computes what vec_avx2.h's lanes compute, operation for operation: min/max/compare
// with x86's NaN rules (NEON's own vminq/vmaxq would return NaN for either operand, and order
// +-0 differently), round to nearest even, IEEE division, so an elementwise kernel gives the
// AVX2 path's bits; only the sums differ, by their lane count.
#pragma once

#include <arm_neon.h>

#include "simd/lowp_scalar.h"

namespace logitops {
namespace LO_TARGET {

template <class T>
struct Simd;

template <>
struct Simd<float> {
  using V = float32x4_t;
  using M = uint32x4_t;
  // Four float lanes, summed in two double registers (lanes 0-1, 2-3): exact enough (see
  // vec_scalar.h).
  struct Acc {
    float64x2_t lo, hi;
  };
  static constexpr int64_t W = 4;

  static V load(const float* p) { return vld1q_f32(p); }
  static void store(float* p, V a) { vst1q_f32(p, a); }
  // No masked loads: lane by lane, so nothing past p[n-1] is touched (it may be unmapped).
  static V load_tail(const float* p, int64_t n, float fill) {
    V v = vdupq_n_f32(fill);
    if (n > 0) v = vld1q_lane_f32(p, v, 0);
    if (n > 1) v = vld1q_lane_f32(p + 1, v, 1);
    if (n > 2) v = vld1q_lane_f32(p + 2, v, 2);
    return v;
  }
  static void store_tail(float* p, int64_t n, V a) {
    if (n > 0) vst1q_lane_f32(p, a, 0);
    if (n > 1) vst1q_lane_f32(p + 1, a, 1);
    if (n > 2) vst1q_lane_f32(p + 2, a, 2);
  }
  static V set(float a) { return vdupq_n_f32(a); }
  static V zero() { return vdupq_n_f32(0.0f); }
  static V fma(V a, V b, V c) { return vfmaq_f32(c, a, b); }
  static V min(V a, V b) { return vbslq_f32(vcltq_f32(a, b), a, b); }
  static V max(V a, V b) { return vbslq_f32(vcgtq_f32(a, b), a, b); }
  static V abs(V a) { return vabsq_f32(a); }
  static M lt(V a, V b) { return vcltq_f32(a, b); }
  static M le(V a, V b) { return vcleq_f32(a, b); }
  static M gt(V a, V b) { return vcgtq_f32(a, b); }
  static M ge(V a, V b) { return vcgeq_f32(a, b); }
  static M eq(V a, V b) { return vceqq_f32(a, b); }
  static M isnan(V a) { return vmvnq_u32(vceqq_f32(a, a)); }
  static M mask_and(M a, M b) { return vandq_u32(a, b); }
  static M mask_or(M a, M b) { return vorrq_u32(a, b); }
  static M mask_not(M a) { return vmvnq_u32(a); }
  static bool any(M a) { return vmaxvq_u32(a) != 0; }
  static V select(M m, V a, V b) { return vbslq_f32(m, a, b); }
  static V round_int(V a) { return vrndnq_f32(a); }
  // Rows of two values (vec.h): p[2l] -> a, p[2l + 1] -> b for lanes l.
  static void load_pairs(const float* p, V& a, V& b) {
    const float32x4x2_t v = vld2q_f32(p);
    a = v.val[0];
    b = v.val[1];
  }
  static void store_pairs(float* p, V a, V b) {
    float32x4x2_t v;
    v.val[0] = a;
    v.val[1] = b;
    vst2q_f32(p, v);
  }
  template <size_t K>
  static void eq_i64(const int64_t* p, const int64_t (&values)[K], M (&masks)[K]) {
    const int64x2_t lo = vld1q_s64(p), hi = vld1q_s64(p + 2);
    for (size_t k = 0; k < K; ++k) {
      const int64x2_t v = vdupq_n_s64(values[k]);
      masks[k] = vcombine_u32(vmovn_u64(vceqq_s64(lo, v)), vmovn_u64(vceqq_s64(hi, v)));
    }
  }
  static V pow2i(V n) {
    const int32x4_t e = vaddq_s32(vcvtnq_s32_f32(n), vdupq_n_s32(127));
    return vreinterpretq_f32_s32(vshlq_n_s32(e, 23));
  }
  static V low_bits_to_exponent(V t) { return vreinterpretq_f32_u32(vshlq_n_u32(vreinterpretq_u32_f32(t), 23)); }
  static V exponent(V x) {
    const int32x4_t e = vreinterpretq_s32_u32(vshrq_n_u32(vreinterpretq_u32_f32(x), 23));
    return vcvtq_f32_s32(vsubq_s32(e, vdupq_n_s32(127)));
  }
  static V mantissa(V x) {
    const uint32x4_t b = vandq_u32(vreinterpretq_u32_f32(x), vdupq_n_u32(0x007fffffu));
    return vreinterpretq_f32_u32(vorrq_u32(b, vdupq_n_u32(0x3f800000u)));
  }
  // Halves, then the last pair, with the layer's max (not FMAXV, whose NaN and +-0 rules differ).
  static float reduce_max(V a) {
    const V m = max(a, vextq_f32(a, a, 2));
    return vgetq_lane_f32(max(m, vextq_f32(m, m, 1)), 0);
  }
  static float reduce_add(V a) {
    const float32x2_t s = vadd_f32(vget_low_f32(a), vget_high_f32(a));
    return vget_lane_f32(vpadd_f32(s, s), 0);
  }

  static Acc acc_zero() { return {vdupq_n_f64(0.0), vdupq_n_f64(0.0)}; }
  static void acc_add(Acc& acc, V a) {
    acc.lo = vaddq_f64(acc.lo, vcvt_f64_f32(vget_low_f32(a)));
    acc.hi = vaddq_f64(acc.hi, vcvt_high_f64_f32(a));
  }
  static double acc_sum(Acc acc) {
    const float64x2_t s = vaddq_f64(acc.lo, acc.hi);
    return vgetq_lane_f64(s, 0) + vgetq_lane_f64(s, 1);
  }

  // float16 by FCVTL / FCVTN (IEEE half, round to nearest even under the default FPCR; a NaN is
  // quieted with its payload's top bits kept, as lowp_scalar.h does), bfloat16 by integer
  // shifts (BFCVTN is not baseline AArch64).
  static V load_f16(const uint16_t* p) { return vcvt_f32_f16(vreinterpret_f16_u16(vld1_u16(p))); }
  static V load_bf16(const uint16_t* p) { return vreinterpretq_f32_u32(vshll_n_u16(vld1_u16(p), 16)); }
  static void store_f16(uint16_t* p, V a) { vst1_u16(p, vreinterpret_u16_f16(vcvt_f16_f32(a))); }
  static void store_bf16(uint16_t* p, V a) {
    const uint32x4_t u = vreinterpretq_u32_f32(a);
    const uint32x4_t lsb = vandq_u32(vshrq_n_u32(u, 16), vdupq_n_u32(1));
    const uint32x4_t rounded = vshrq_n_u32(vaddq_u32(u, vaddq_u32(vdupq_n_u32(0x7fffu), lsb)), 16);
    const uint32x4_t quiet = vorrq_u32(vshrq_n_u32(u, 16), vdupq_n_u32(0x40u));  // NaN stays NaN
    vst1_u16(p, vmovn_u32(vbslq_u32(isnan(a), quiet, rounded)));
  }
};

template <>
struct Simd<double> {
  using V = float64x2_t;
  using M = uint64x2_t;
  // Compensated per lane (TwoSum), as vec_avx2.h says why.
  struct Acc {
    float64x2_t s, c;
  };
  static constexpr int64_t W = 2;

  static V load(const double* p) { return vld1q_f64(p); }
  static void store(double* p, V a) { vst1q_f64(p, a); }
  static V load_tail(const double* p, int64_t n, double fill) {
    V v = vdupq_n_f64(fill);
    if (n > 0) v = vld1q_lane_f64(p, v, 0);
    return v;
  }
  static void store_tail(double* p, int64_t n, V a) {
    if (n > 0) vst1q_lane_f64(p, a, 0);
  }
  static V set(double a) { return vdupq_n_f64(a); }
  static V zero() { return vdupq_n_f64(0.0); }
  static V fma(V a, V b, V c) { return vfmaq_f64(c, a, b); }
  static V min(V a, V b) { return vbslq_f64(vcltq_f64(a, b), a, b); }
  static V max(V a, V b) { return vbslq_f64(vcgtq_f64(a, b), a, b); }
  static V abs(V a) { return vabsq_f64(a); }
  static M lt(V a, V b) { return vcltq_f64(a, b); }
  static M le(V a, V b) { return vcleq_f64(a, b); }
  static M gt(V a, V b) { return vcgtq_f64(a, b); }
  static M ge(V a, V b) { return vcgeq_f64(a, b); }
  static M eq(V a, V b) { return vceqq_f64(a, b); }
  static M isnan(V a) { return mask_not(vceqq_f64(a, a)); }
  static M mask_and(M a, M b) { return vandq_u64(a, b); }
  static M mask_or(M a, M b) { return vorrq_u64(a, b); }
  static M mask_not(M a) { return vreinterpretq_u64_u32(vmvnq_u32(vreinterpretq_u32_u64(a))); }
  static bool any(M a) { return vmaxvq_u32(vreinterpretq_u32_u64(a)) != 0; }
  static V select(M m, V a, V b) { return vbslq_f64(m, a, b); }
  static V round_int(V a) { return vrndnq_f64(a); }
  // Rows of two values (vec.h): p[2l] -> a, p[2l + 1] -> b for lanes l.
  static void load_pairs(const float* p, V& a, V& b) {  // widened exactly
    const float32x2x2_t v = vld2_f32(p);
    a = vcvt_f64_f32(v.val[0]);
    b = vcvt_f64_f32(v.val[1]);
  }
  static void store_pairs(float* p, V a, V b) {  // each rounded once
    float32x2x2_t v;
    v.val[0] = vcvt_f32_f64(a);
    v.val[1] = vcvt_f32_f64(b);
    vst2_f32(p, v);
  }
  static V load(const float* p) { return vcvt_f64_f32(vld1_f32(p)); }
  static void store(float* p, V a) { vst1_f32(p, vcvt_f32_f64(a)); }
  static void load_pairs(const double* p, V& a, V& b) {
    const float64x2x2_t v = vld2q_f64(p);
    a = v.val[0];
    b = v.val[1];
  }
  static void store_pairs(double* p, V a, V b) {
    float64x2x2_t v;
    v.val[0] = a;
    v.val[1] = b;
    vst2q_f64(p, v);
  }
  template <size_t K>
  static void eq_i64(const int64_t* p, const int64_t (&values)[K], M (&masks)[K]) {
    const int64x2_t v = vld1q_s64(p);
    for (size_t k = 0; k < K; ++k) masks[k] = vceqq_s64(v, vdupq_n_s64(values[k]));
  }
  static V pow2i(V n) {
    const int64x2_t e = vaddq_s64(vcvtnq_s64_f64(n), vdupq_n_s64(1023));
    return vreinterpretq_f64_s64(vshlq_n_s64(e, 52));
  }
  static V low_bits_to_exponent(V t) { return vreinterpretq_f64_u64(vshlq_n_u64(vreinterpretq_u64_f64(t), 52)); }
  static V exponent(V x) {
    const int64x2_t e = vreinterpretq_s64_u64(vshrq_n_u64(vreinterpretq_u64_f64(x), 52));
    return vcvtq_f64_s64(vsubq_s64(e, vdupq_n_s64(1023)));
  }
  static V mantissa(V x) {
    const uint64x2_t b = vandq_u64(vreinterpretq_u64_f64(x), vdupq_n_u64(0x000fffffffffffffull));
    return vreinterpretq_f64_u64(vorrq_u64(b, vdupq_n_u64(0x3ff0000000000000ull)));
  }
  static double reduce_max(V a) { return vgetq_lane_f64(max(a, vextq_f64(a, a, 1)), 0); }
  static double reduce_add(V a) { return vgetq_lane_f64(a, 0) + vgetq_lane_f64(a, 1); }

  static Acc acc_zero() { return {vdupq_n_f64(0.0), vdupq_n_f64(0.0)}; }
  static void acc_add(Acc& acc, V a) {
    const float64x2_t t = vaddq_f64(acc.s, a);
    const float64x2_t bp = vsubq_f64(t, acc.s);
    const float64x2_t err = vaddq_f64(vsubq_f64(acc.s, vsubq_f64(t, bp)), vsubq_f64(a, bp));
    acc.c = vaddq_f64(acc.c, err);
    acc.s = t;
  }
  static double acc_sum(Acc acc) {
    const double s[2] = {vgetq_lane_f64(acc.s, 0), vgetq_lane_f64(acc.s, 1)};
    const double c[2] = {vgetq_lane_f64(acc.c, 0), vgetq_lane_f64(acc.c, 1)};
    double hi = 0.0, lo = 0.0;
    for (int l = 0; l < 2; ++l) {  // TwoSum across the lanes too
      const double t = hi + s[l];
      const double bp = t - hi;
      lo += (hi - (t - bp)) + (s[l] - bp) + c[l];
      hi = t;
    }
    // Once a sum is infinite its error terms are inf - inf = NaN: the infinity is the answer.
    return std::isfinite(hi) ? hi + lo : hi;
  }
};

}  // namespace LO_TARGET
}  // namespace logitops
