// AVX2 + FMA implementation of the vector layer (see vec.h): 8 floats or 4 doubles a register.
// Compiled only into the kernel objects built with -mavx2 -mfma.
#pragma once

#include <immintrin.h>

#include "simd/lowp_scalar.h"

namespace logitops {
namespace LO_TARGET {

template <class T>
struct Simd;

namespace detail {
// Lane masks for the last n lanes: row n of this table has n leading all-ones 32-bit words.
alignas(32) static const int32_t tail_mask32[16] = {-1, -1, -1, -1, -1, -1, -1, -1, 0, 0, 0, 0, 0, 0, 0, 0};
inline __m256i tail_mask_ps(int64_t n) {
  return _mm256_loadu_si256(reinterpret_cast<const __m256i*>(tail_mask32 + 8 - n));
}
inline __m256i tail_mask_pd(int64_t n) {
  return _mm256_loadu_si256(reinterpret_cast<const __m256i*>(tail_mask32 + 8 - 2 * n));
}
}  // namespace detail

template <>
struct Simd<float> {
  using V = __m256;
  using M = __m256;
  struct Acc {
    __m256d lo, hi;
  };
  static constexpr int64_t W = 8;

  static V load(const float* p) { return _mm256_loadu_ps(p); }
  static void store(float* p, V a) { _mm256_storeu_ps(p, a); }
  static V load_tail(const float* p, int64_t n, float fill) {
    const __m256i m = detail::tail_mask_ps(n);
    return _mm256_blendv_ps(_mm256_set1_ps(fill), _mm256_maskload_ps(p, m), _mm256_castsi256_ps(m));
  }
  static void store_tail(float* p, int64_t n, V a) { _mm256_maskstore_ps(p, detail::tail_mask_ps(n), a); }
  static V set(float a) { return _mm256_set1_ps(a); }
  static V zero() { return _mm256_setzero_ps(); }
  static V fma(V a, V b, V c) { return _mm256_fmadd_ps(a, b, c); }
  static V min(V a, V b) { return _mm256_min_ps(a, b); }
  static V max(V a, V b) { return _mm256_max_ps(a, b); }
  static V abs(V a) { return _mm256_andnot_ps(_mm256_set1_ps(-0.0f), a); }
  static M lt(V a, V b) { return _mm256_cmp_ps(a, b, _CMP_LT_OQ); }
  static M le(V a, V b) { return _mm256_cmp_ps(a, b, _CMP_LE_OQ); }
  static M gt(V a, V b) { return _mm256_cmp_ps(a, b, _CMP_GT_OQ); }
  static M ge(V a, V b) { return _mm256_cmp_ps(a, b, _CMP_GE_OQ); }
  static M eq(V a, V b) { return _mm256_cmp_ps(a, b, _CMP_EQ_OQ); }
  static M isnan(V a) { return _mm256_cmp_ps(a, a, _CMP_UNORD_Q); }
  static M mask_and(M a, M b) { return _mm256_and_ps(a, b); }
  static M mask_or(M a, M b) { return _mm256_or_ps(a, b); }
  static M mask_not(M a) { return _mm256_xor_ps(a, _mm256_castsi256_ps(_mm256_set1_epi32(-1))); }
  static bool any(M a) { return _mm256_movemask_ps(a) != 0; }
  static V select(M m, V a, V b) { return _mm256_blendv_ps(b, a, m); }
  static V round_int(V a) { return _mm256_round_ps(a, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC); }
  // Rows of two values (vec.h): p[2l] -> a, p[2l + 1] -> b for lanes l.
  static void load_pairs(const float* p, V& a, V& b) {
    const __m256 lo = _mm256_loadu_ps(p), hi = _mm256_loadu_ps(p + 8);  // rows 0-3 | rows 4-7
    // shuffle: rows (0 1 4 5 | 2 3 6 7); the 64-bit permute puts them in order
    a = _mm256_castpd_ps(_mm256_permute4x64_pd(_mm256_castps_pd(_mm256_shuffle_ps(lo, hi, 0x88)), 0xD8));
    b = _mm256_castpd_ps(_mm256_permute4x64_pd(_mm256_castps_pd(_mm256_shuffle_ps(lo, hi, 0xDD)), 0xD8));
  }
  static void store_pairs(float* p, V a, V b) {
    const __m256 lo = _mm256_unpacklo_ps(a, b), hi = _mm256_unpackhi_ps(a, b);  // rows (0 1 | 4 5), (2 3 | 6 7)
    _mm256_storeu_ps(p, _mm256_permute2f128_ps(lo, hi, 0x20));
    _mm256_storeu_ps(p + 8, _mm256_permute2f128_ps(lo, hi, 0x31));
  }
  template <size_t K>
  static void eq_i64(const int64_t* p, const int64_t (&values)[K], M (&masks)[K]) {
    const __m256i lo = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p));
    const __m256i hi = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p + 4));
    for (size_t k = 0; k < K; ++k) {
      const __m256i v = _mm256_set1_epi64x(values[k]);
      // each 64-bit mask's low half, rows (0 1 4 5 | 2 3 6 7), put in order as in load_pairs
      const __m256 m = _mm256_shuffle_ps(_mm256_castsi256_ps(_mm256_cmpeq_epi64(lo, v)),
                                         _mm256_castsi256_ps(_mm256_cmpeq_epi64(hi, v)), 0x88);
      masks[k] = _mm256_castpd_ps(_mm256_permute4x64_pd(_mm256_castps_pd(m), 0xD8));
    }
  }
  static V pow2i(V n) {
    const __m256i e = _mm256_add_epi32(_mm256_cvtps_epi32(n), _mm256_set1_epi32(127));
    return _mm256_castsi256_ps(_mm256_slli_epi32(e, 23));
  }
  static V low_bits_to_exponent(V t) { return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_castps_si256(t), 23)); }
  static V exponent(V x) {
    const __m256i e = _mm256_srli_epi32(_mm256_castps_si256(x), 23);
    return _mm256_cvtepi32_ps(_mm256_sub_epi32(e, _mm256_set1_epi32(127)));
  }
  static V mantissa(V x) {
    const __m256i b = _mm256_and_si256(_mm256_castps_si256(x), _mm256_set1_epi32(0x007fffff));
    return _mm256_castsi256_ps(_mm256_or_si256(b, _mm256_set1_epi32(0x3f800000)));
  }
  static float reduce_max(V a) {
    __m128 m = _mm_max_ps(_mm256_castps256_ps128(a), _mm256_extractf128_ps(a, 1));
    m = _mm_max_ps(m, _mm_movehl_ps(m, m));
    m = _mm_max_ss(m, _mm_movehdup_ps(m));
    return _mm_cvtss_f32(m);
  }
  static float reduce_add(V a) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(a), _mm256_extractf128_ps(a, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
  }

  static Acc acc_zero() { return {_mm256_setzero_pd(), _mm256_setzero_pd()}; }
  static void acc_add(Acc& acc, V a) {
    acc.lo = _mm256_add_pd(acc.lo, _mm256_cvtps_pd(_mm256_castps256_ps128(a)));
    acc.hi = _mm256_add_pd(acc.hi, _mm256_cvtps_pd(_mm256_extractf128_ps(a, 1)));
  }
  static double acc_sum(Acc acc) {
    const __m256d s4 = _mm256_add_pd(acc.lo, acc.hi);
    __m128d s = _mm_add_pd(_mm256_castpd256_pd128(s4), _mm256_extractf128_pd(s4, 1));
    s = _mm_add_sd(s, _mm_unpackhi_pd(s, s));
    return _mm_cvtsd_f64(s);
  }

  // float16 by F16C (-mf16c; the avx2 probe requires it), bfloat16 by integer shifts.
  static V load_f16(const uint16_t* p) { return _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p))); }
  static V load_bf16(const uint16_t* p) {
    const __m256i w = _mm256_cvtepu16_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
    return _mm256_castsi256_ps(_mm256_slli_epi32(w, 16));
  }
  static void store_f16(uint16_t* p, V a) {
    _mm_storeu_si128(reinterpret_cast<__m128i*>(p), _mm256_cvtps_ph(a, _MM_FROUND_TO_NEAREST_INT));
  }
  static void store_bf16(uint16_t* p, V a) {
    const __m256i u = _mm256_castps_si256(a);
    const __m256i lsb = _mm256_and_si256(_mm256_srli_epi32(u, 16), _mm256_set1_epi32(1));
    const __m256i rounded =
        _mm256_srli_epi32(_mm256_add_epi32(u, _mm256_add_epi32(_mm256_set1_epi32(0x7fff), lsb)), 16);
    const __m256i quiet = _mm256_or_si256(_mm256_srli_epi32(u, 16), _mm256_set1_epi32(0x40));  // NaN stays NaN
    const __m256i r = _mm256_blendv_epi8(rounded, quiet, _mm256_castps_si256(_mm256_cmp_ps(a, a, _CMP_UNORD_Q)));
    // Each 32-bit lane holds 16 bits: pack (per 128-bit half) and gather the two halves' words.
    const __m256i packed = _mm256_permute4x64_epi64(_mm256_packus_epi32(r, r), 0x08);
    _mm_storeu_si128(reinterpret_cast<__m128i*>(p), _mm256_castsi256_si128(packed));
  }
};

template <>
struct Simd<double> {
  using V = __m256d;
  using M = __m256d;
  // Sums of doubles are compensated (TwoSum per lane): a plain sum of n terms drifts by
  // ~n/2 ulp, which a float64 row of a thousand classes would show.
  struct Acc {
    __m256d s, c;
  };
  static constexpr int64_t W = 4;

  static V load(const double* p) { return _mm256_loadu_pd(p); }
  static void store(double* p, V a) { _mm256_storeu_pd(p, a); }
  static V load_tail(const double* p, int64_t n, double fill) {
    const __m256i m = detail::tail_mask_pd(n);
    return _mm256_blendv_pd(_mm256_set1_pd(fill), _mm256_maskload_pd(p, m), _mm256_castsi256_pd(m));
  }
  static void store_tail(double* p, int64_t n, V a) { _mm256_maskstore_pd(p, detail::tail_mask_pd(n), a); }
  static V set(double a) { return _mm256_set1_pd(a); }
  static V zero() { return _mm256_setzero_pd(); }
  static V fma(V a, V b, V c) { return _mm256_fmadd_pd(a, b, c); }
  static V min(V a, V b) { return _mm256_min_pd(a, b); }
  static V max(V a, V b) { return _mm256_max_pd(a, b); }
  static V abs(V a) { return _mm256_andnot_pd(_mm256_set1_pd(-0.0), a); }
  static M lt(V a, V b) { return _mm256_cmp_pd(a, b, _CMP_LT_OQ); }
  static M le(V a, V b) { return _mm256_cmp_pd(a, b, _CMP_LE_OQ); }
  static M gt(V a, V b) { return _mm256_cmp_pd(a, b, _CMP_GT_OQ); }
  static M ge(V a, V b) { return _mm256_cmp_pd(a, b, _CMP_GE_OQ); }
  static M eq(V a, V b) { return _mm256_cmp_pd(a, b, _CMP_EQ_OQ); }
  static M isnan(V a) { return _mm256_cmp_pd(a, a, _CMP_UNORD_Q); }
  static M mask_and(M a, M b) { return _mm256_and_pd(a, b); }
  static M mask_or(M a, M b) { return _mm256_or_pd(a, b); }
  static M mask_not(M a) { return _mm256_xor_pd(a, _mm256_castsi256_pd(_mm256_set1_epi64x(-1))); }
  static bool any(M a) { return _mm256_movemask_pd(a) != 0; }
  static V select(M m, V a, V b) { return _mm256_blendv_pd(b, a, m); }
  static V round_int(V a) { return _mm256_round_pd(a, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC); }
  // Rows of two values (vec.h): p[2l] -> a, p[2l + 1] -> b for lanes l.
  static void load_pairs(const float* p, V& a, V& b) {  // widened exactly
    const __m256 v = _mm256_permutevar8x32_ps(_mm256_loadu_ps(p), _mm256_setr_epi32(0, 2, 4, 6, 1, 3, 5, 7));
    a = _mm256_cvtps_pd(_mm256_castps256_ps128(v));
    b = _mm256_cvtps_pd(_mm256_extractf128_ps(v, 1));
  }
  static void store_pairs(float* p, V a, V b) {  // each rounded once
    const __m256 ab = _mm256_set_m128(_mm256_cvtpd_ps(b), _mm256_cvtpd_ps(a));
    _mm256_storeu_ps(p, _mm256_permutevar8x32_ps(ab, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7)));
  }
  static V load(const float* p) { return _mm256_cvtps_pd(_mm_loadu_ps(p)); }
  static void store(float* p, V a) { _mm_storeu_ps(p, _mm256_cvtpd_ps(a)); }
  static void load_pairs(const double* p, V& a, V& b) {
    const __m256d lo = _mm256_loadu_pd(p), hi = _mm256_loadu_pd(p + 4);  // rows 0 1 | rows 2 3
    a = _mm256_permute4x64_pd(_mm256_unpacklo_pd(lo, hi), 0xD8);         // (0 2 | 1 3) -> 0 1 2 3
    b = _mm256_permute4x64_pd(_mm256_unpackhi_pd(lo, hi), 0xD8);
  }
  static void store_pairs(double* p, V a, V b) {
    const __m256d a2 = _mm256_permute4x64_pd(a, 0xD8), b2 = _mm256_permute4x64_pd(b, 0xD8);  // 0 2 1 3
    _mm256_storeu_pd(p, _mm256_unpacklo_pd(a2, b2));
    _mm256_storeu_pd(p + 4, _mm256_unpackhi_pd(a2, b2));
  }
  template <size_t K>
  static void eq_i64(const int64_t* p, const int64_t (&values)[K], M (&masks)[K]) {
    const __m256i v = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p));
    for (size_t k = 0; k < K; ++k) masks[k] = _mm256_castsi256_pd(_mm256_cmpeq_epi64(v, _mm256_set1_epi64x(values[k])));
  }
  // 2^n: adding 1.5*2^52 puts the integer n in the low mantissa bits; add the bias and
  // shift it into the exponent field (AVX2 has no int64 <-> double conversion).
  static V pow2i(V n) {
    const __m256i t = _mm256_castpd_si256(_mm256_add_pd(n, _mm256_set1_pd(6755399441055744.0)));
    return _mm256_castsi256_pd(_mm256_slli_epi64(_mm256_add_epi64(t, _mm256_set1_epi64x(1023)), 52));
  }
  static V low_bits_to_exponent(V t) { return _mm256_castsi256_pd(_mm256_slli_epi64(_mm256_castpd_si256(t), 52)); }
  // The biased exponent, OR-ed into the mantissa of 2^52, is read back as 2^52 + e.
  static V exponent(V x) {
    const __m256i e = _mm256_srli_epi64(_mm256_castpd_si256(x), 52);
    const __m256d two52 = _mm256_set1_pd(4503599627370496.0);
    const __m256d f = _mm256_castsi256_pd(_mm256_or_si256(e, _mm256_castpd_si256(two52)));
    return _mm256_sub_pd(f, _mm256_set1_pd(4503599627370496.0 + 1023.0));
  }
  static V mantissa(V x) {
    const __m256i b = _mm256_and_si256(_mm256_castpd_si256(x), _mm256_set1_epi64x(0x000fffffffffffffLL));
    return _mm256_castsi256_pd(_mm256_or_si256(b, _mm256_set1_epi64x(0x3ff0000000000000LL)));
  }
  static double reduce_max(V a) {
    __m128d m = _mm_max_pd(_mm256_castpd256_pd128(a), _mm256_extractf128_pd(a, 1));
    m = _mm_max_sd(m, _mm_unpackhi_pd(m, m));
    return _mm_cvtsd_f64(m);
  }
  static double reduce_add(V a) {
    __m128d s = _mm_add_pd(_mm256_castpd256_pd128(a), _mm256_extractf128_pd(a, 1));
    s = _mm_add_sd(s, _mm_unpackhi_pd(s, s));
    return _mm_cvtsd_f64(s);
  }

  static Acc acc_zero() { return {_mm256_setzero_pd(), _mm256_setzero_pd()}; }
  static void acc_add(Acc& acc, V a) {
    const __m256d t = _mm256_add_pd(acc.s, a);
    const __m256d bp = _mm256_sub_pd(t, acc.s);
    const __m256d err = _mm256_add_pd(_mm256_sub_pd(acc.s, _mm256_sub_pd(t, bp)), _mm256_sub_pd(a, bp));
    acc.c = _mm256_add_pd(acc.c, err);
    acc.s = t;
  }
  static double acc_sum(Acc acc) {
    alignas(32) double s[4], c[4];
    _mm256_store_pd(s, acc.s);
    _mm256_store_pd(c, acc.c);
    double hi = 0.0, lo = 0.0;
    for (int l = 0; l < 4; ++l) {  // TwoSum across the lanes too
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
