// Vectorized exp, log1p and log over the vector layer, written once for float and double.
//
// Contract (proved by tests/test_vmath.py against float64 / mpmath over the whole range):
//   vexp_nonpos(d)  as vexp for d <= 0: the same ulp bound for normal results, a subnormal
//             result within one subnormal spacing (rounded once), 0 below; NaN -> NaN.
//   vexp(x)   float: <= 1 ulp on [-87.3, 88.72] (normal results), correctly underflows
//             to subnormals and 0 below, +inf above 88.7228; double: <= 1 ulp on
//             [-708.39, 709.78], subnormal/0 below, +inf above.  exp(0) == 1 exactly,
//             exp(-inf) = 0, exp(+inf) = inf, NaN -> NaN. The scalar path has no fused
//             multiply-add: there vexp is <= 1.5 ulp (measured 1.19 float, 1.11 double).
//   vlog1p(x) <= 2 ulp for x > -1; log1p(-1) = -inf, x < -1 -> NaN, +inf -> +inf,
//             NaN -> NaN, signed zeros and tiny x returned exactly.
//   vsoftplus(z) = log(1 + exp(z)) <= 2 ulp where the result is normal, within one subnormal
//             spacing where it is subnormal; vlog1p_unit(e) is log1p for e in [0, 1] only (no
//             special values but NaN).
//   vlog(x)   <= 2 ulp for positive normal and subnormal x; log(0) = -inf, x < 0 -> NaN,
//             +inf -> +inf, NaN -> NaN.
//   vtanh(u)  (bound: VMATH_ULP in tests/_tolerances.py) tanh(+-0) = +-0, +-inf -> +-1, NaN -> NaN.
//   vtanh_sech2(u, t, s2)  t bit for bit as vtanh, and s2 = sech(u)^2 = 1 - tanh(u)^2 without the
//             cancellation of 1 - t*t (the softcap's chain factor).
//
// exp: x = n*ln2 + r with |r| <= ln2/2 (Cody-Waite split of ln2 so n*ln2_hi is exact),
// exp(r) by its Taylor polynomial (degree 7 for float, 13 for double: truncation below
// 0.1 ulp), then scaled by 2^n in two halves so 2^n never leaves the normal range and
// a subnormal result is rounded once.
// log: u = m * 2^k with m in [sqrt(1/2), sqrt(2)), f = m - 1 exactly, s = f/(2+f),
// log(1+f) = f - f^2/2 + s*(f^2/2 + R(s^2)) where R is the atanh series
// 2z/3 + 2z^2/5 + ... (fdlibm's arrangement: the large terms f and f^2/2 are exact-ish, the
// rounded s only enters a small correction). For log1p, u = 1 + x is rounded and the
// rounding error c = (1 + x) - u is added back as c/u.
#pragma once

#include <type_traits>

#include "simd/vec.h"

namespace logitops {
namespace LO_TARGET {

template <class T>
struct MathConst;

template <>
struct MathConst<float> {
  static constexpr float log2e = 1.44269504088896341f;
  static constexpr float ln2_hi = 0.693359375f;
  static constexpr float ln2_lo = -2.12194440e-4f;
  static constexpr float exp_lo = -104.0f;                      // exp(x) rounds to 0 below this
  static constexpr float exp_hi = 89.0f;                        // exp(x) overflows above this
  static constexpr float exp_min_normal_arg = -87.3365447505f;  // log(FLT_MIN)
  static constexpr int exp_degree = 7;
  static constexpr int log_terms = 4;  // R(z) = sum_{k=1..4} 2 z^k / (2k+1)
  static constexpr int mant_bits = 23;
  static constexpr int bias = 127;
};

template <>
struct MathConst<double> {
  static constexpr double log2e = 1.44269504088896338700e+00;
  static constexpr double ln2_hi = 6.93147180369123816490e-01;
  static constexpr double ln2_lo = 1.90821492927058770002e-10;
  static constexpr double exp_lo = -746.0;
  static constexpr double exp_hi = 710.0;
  static constexpr double exp_min_normal_arg = -708.39641853226408;  // log(DBL_MIN)
  static constexpr int exp_degree = 13;
  static constexpr int log_terms = 11;
  static constexpr int mant_bits = 52;
  static constexpr int bias = 1023;
};

// exp(r) for |r| <= ln2/2 by its Taylor polynomial (Horner from the highest degree).
template <class T>
LO_INLINE typename Simd<T>::V exp_reduced_poly(typename Simd<T>::V r) {
  using S = Simd<T>;
  using C = MathConst<T>;
  T inv_fact[C::exp_degree + 1];  // 1/k!, folded to constants by the compiler
  inv_fact[0] = T(1);
  for (int k = 1; k <= C::exp_degree; ++k) inv_fact[k] = inv_fact[k - 1] / T(k);
  typename S::V p = S::set(inv_fact[C::exp_degree]);
  for (int k = C::exp_degree - 1; k >= 0; --k) p = S::fma(p, r, S::set(inv_fact[k]));
  return p;
}

// exp(r) for |r| <= ln2/2 with the fewest terms that stay well inside 1 ulp: for float a
// degree-6 polynomial 1 + r*q(r) fitted to exp by weighted least squares at Chebyshev nodes
// (max relative error 1.7e-8 = 0.15 ulp with these float coefficients); for double the Taylor
// polynomial.
template <class T>
LO_INLINE typename Simd<T>::V exp_small_poly(typename Simd<T>::V r) {
  using S = Simd<T>;
  if constexpr (std::is_same_v<T, float>) {
    typename S::V p = S::set(0.001385929063f);
    p = S::fma(p, r, S::set(0.008374763653f));
    p = S::fma(p, r, S::set(0.04166772589f));
    p = S::fma(p, r, S::set(0.1666642129f));
    p = S::fma(p, r, S::set(0.4999999404f));
    p = S::fma(p, r, S::set(1.0f));
    return S::fma(p, r, S::set(1.0f));
  } else {
    return exp_reduced_poly<T>(r);
  }
}

// n = round(x / ln2) and r = x - n*ln2 (Cody-Waite: n*ln2_hi is exact).
template <class T>
LO_INLINE typename Simd<T>::V exp_reduce(typename Simd<T>::V x, typename Simd<T>::V& n) {
  using S = Simd<T>;
  using C = MathConst<T>;
  n = S::round_int(x * S::set(C::log2e));
  const typename S::V r = S::fma(n, S::set(-C::ln2_hi), x);
  return S::fma(n, S::set(-C::ln2_lo), r);
}

// exp(x) over the whole range (see the contract above).
template <class T>
LO_INLINE typename Simd<T>::V vexp(typename Simd<T>::V x) {
  using S = Simd<T>;
  using C = MathConst<T>;
  using V = typename S::V;
  // Clamp; outside it the result is 0 or inf anyway. The bound goes first so a NaN x survives
  // (max/min return their second operand on NaN) and poisons the result.
  const V xc = S::min(S::set(C::exp_hi), S::max(S::set(C::exp_lo), x));
  V n;
  const V p = exp_reduced_poly<T>(exp_reduce<T>(xc, n));
  // 2^n = 2^n1 * 2^n2, both halves in the normal range, so a subnormal result is rounded once.
  const V n1 = S::round_int(n * S::set(T(0.5)) - S::set(T(0.25)));  // floor(n/2) for integer n
  return (p * S::pow2i(n1)) * S::pow2i(n - n1);
}

// exp(d) for d <= 0 (or NaN), subnormal results included: the exponentials of elementwise
// functions whose result is exp(d) itself where that is tiny (softplus(z) for z < -87.3 in
// float32, sigmoid(-|x|), sigmoid'(x), BCE-with-logits). The hot path of those, so it is cut to
// the bone: n = round(d/ln2) comes out of one fma against the magic number 1.5*2^mant_bits
// (which also leaves n + bias + kShift in the low bits, ready to be shifted into 2^(n + kShift)),
// and the scaling is two multiplies: by 2^(n + kShift), normal for every n down to the underflow
// threshold, then by 2^-kShift, exact for a normal result and the one rounding of a subnormal
// one. (Flushing subnormals instead would cost a compare and a select in place of the second
// multiply.)
template <class T>
LO_INLINE typename Simd<T>::V vexp_nonpos(typename Simd<T>::V d) {
  using S = Simd<T>;
  using C = MathConst<T>;
  using V = typename S::V;
  constexpr int kShift = 64;  // n >= -150 (float) / -1076 (double) below: n + bias + kShift >= 1
  const V magic = S::set(T(1.5) / std::numeric_limits<T>::epsilon() + T(C::bias + kShift));
  const V dc = S::max(S::set(C::exp_lo), d);  // NaN d survives (max returns its second operand)
  const V t = S::fma(dc, S::set(C::log2e), magic);
  const V n = t - magic;
  V r = S::fma(n, S::set(-C::ln2_hi), dc);
  r = S::fma(n, S::set(-C::ln2_lo), r);
  return (exp_small_poly<T>(r) * S::low_bits_to_exponent(t)) * S::set(std::ldexp(T(1), -kShift));
}

// tanh from e = exp(-2|u|) and em1 = expm1(-2|u|) = e - 1, in the form where nothing cancels:
//   |u| <= 0.55 (|tanh u| <= 1/2):  |tanh u| = -em1 / (2 + em1),  sech^2 u = (1 - t)(1 + t) >= 3/4;
//   |u| >  0.55:  delta = 1 - |tanh u| = 2e / (1 + e) <= 1/2,  |tanh u| = 1 - delta,
//                 sech^2 u = delta (2 - delta)  (1 - t*t would cancel as t -> 1).
// One division either way. em1 is formed as 2^n expm1(r) + (2^n - 1) from the reduced argument
// r (expm1(r) by its Taylor polynomial without the constant: degree 8 float, 14 double, truncation
// below 0.02 ulp), e as 2^n (1 + expm1(r)) in two halves like vexp (a subnormal e rounded once).
template <class T>
LO_INLINE typename Simd<T>::V expm1_reduced_poly(typename Simd<T>::V r) {
  using S = Simd<T>;
  constexpr int degree = std::is_same_v<T, float> ? 8 : 14;
  T inv_fact[degree + 1];
  inv_fact[0] = T(1);
  for (int k = 1; k <= degree; ++k) inv_fact[k] = inv_fact[k - 1] / T(k);
  typename S::V p = S::set(inv_fact[degree]);
  for (int k = degree - 1; k >= 2; --k) p = S::fma(p, r, S::set(inv_fact[k]));
  return S::fma(p, r * r, r);  // r + r^2 (1/2 + r/6 + ...)
}

// |tanh u| (`a`) and, when WithSech2, sech^2 u; `big` is |u| > 0.55.
template <class T, bool WithSech2>
LO_INLINE void tanh_abs(typename Simd<T>::V u, typename Simd<T>::V& a, typename Simd<T>::V& s2) {
  using S = Simd<T>;
  using C = MathConst<T>;
  using V = typename S::V;
  const V one = S::set(T(1)), two = S::set(T(2));
  const V au = S::abs(u);
  // Clamped where e is 0 and em1 is -1 anyway; the bound goes first so a NaN u survives.
  const V x = S::max(S::set(C::exp_lo), S::set(T(-2)) * au);
  V n;
  const V p = expm1_reduced_poly<T>(exp_reduce<T>(x, n));
  // Below 2^-(mant_bits + 3), 2^n - 1 rounds to -1 and 2^n p vanishes: cap n where 2^n is normal.
  const V scale = S::pow2i(S::max(n, S::set(T(-(C::mant_bits + 3)))));
  const V em1 = S::fma(scale, p, scale - one);
  const V n1 = S::round_int(n * S::set(T(0.5)) - S::set(T(0.25)));  // floor(n/2)
  const V e = ((p + one) * S::pow2i(n1)) * S::pow2i(n - n1);
  const auto big = S::gt(au, S::set(T(0.55)));
  const V r = S::select(big, e + e, -em1) / S::select(big, one + e, two + em1);
  a = S::select(big, one - r, r);
  if constexpr (WithSech2) s2 = S::select(big, r * (two - r), (one - a) * (one + a));
}

// Keeps u's sign on |tanh u| (and +-0, NaN as they are).
template <class T>
LO_INLINE typename Simd<T>::V with_sign_of(typename Simd<T>::V u, typename Simd<T>::V a) {
  using S = Simd<T>;
  const typename S::V t = S::select(S::lt(u, S::zero()), -a, a);
  return S::select(S::eq(u, S::zero()), u, t);
}

template <class T>
LO_INLINE typename Simd<T>::V vtanh(typename Simd<T>::V u) {
  typename Simd<T>::V a, unused;
  tanh_abs<T, false>(u, a, unused);
  return with_sign_of<T>(u, a);
}

// tanh(u) (the same bits as vtanh) and sech(u)^2 = 1 - tanh(u)^2.
template <class T>
LO_INLINE void vtanh_sech2(typename Simd<T>::V u, typename Simd<T>::V& t, typename Simd<T>::V& s2) {
  typename Simd<T>::V a;
  tanh_abs<T, true>(u, a, s2);
  t = with_sign_of<T>(u, a);
}

// log(1 + f) + k*ln2 + c for f = m - 1, m in [sqrt(1/2), sqrt(2)), given s = f / (2 + f);
// shared by log, log1p and log1p_unit. An error of a few ulp in s moves the result by a
// small fraction of an ulp: s only enters the correction s*(hfsq + R), about f^3/4.
template <class T>
LO_INLINE typename Simd<T>::V log_reduced_s(typename Simd<T>::V f, typename Simd<T>::V s, typename Simd<T>::V k,
                                            typename Simd<T>::V c) {
  using S = Simd<T>;
  using C = MathConst<T>;
  using V = typename S::V;
  const V z = s * s;
  V R = S::set(T(2) / T(2 * C::log_terms + 1));
  for (int j = C::log_terms - 1; j >= 1; --j) R = S::fma(R, z, S::set(T(2) / T(2 * j + 1)));
  R = R * z;
  const V hfsq = S::set(T(0.5)) * f * f;
  // k*ln2_hi is exact; everything small is summed before it meets the large terms.
  const V small = S::fma(s, hfsq + R, S::fma(k, S::set(T(C::ln2_lo)), c));
  return S::fma(k, S::set(T(C::ln2_hi)), f - (hfsq - small));
}

template <class T>
LO_INLINE typename Simd<T>::V log_reduced(typename Simd<T>::V f, typename Simd<T>::V k, typename Simd<T>::V c) {
  using S = Simd<T>;
  return log_reduced_s<T>(f, f / (S::set(T(2)) + f), k, c);
}

// Splits positive normal u into m in [sqrt(1/2), sqrt(2)) and k with u = m * 2^k.
template <class T>
LO_INLINE void split_log_argument(typename Simd<T>::V u, typename Simd<T>::V& m, typename Simd<T>::V& k) {
  using S = Simd<T>;
  m = S::mantissa(u);
  k = S::exponent(u);
  const auto big = S::gt(m, S::set(T(1.41421356237309504880)));
  m = S::select(big, m * S::set(T(0.5)), m);
  k = S::select(big, k + S::set(T(1)), k);
}

template <class T>
LO_INLINE typename Simd<T>::V vlog1p(typename Simd<T>::V x) {
  using S = Simd<T>;
  using C = MathConst<T>;
  using V = typename S::V;
  const V one = S::set(T(1));
  const V u = one + x;
  // c = (1 + x) - u exactly (fdlibm): for u >= 2, u - x is exact; otherwise u - 1 is exact.
  const auto u_ge_2 = S::ge(u, S::set(T(2)));
  V c = S::select(u_ge_2, one - (u - x), x - (u - one));
  // Beyond 2^(mant_bits+2) the correction is below half an ulp of the result. (c/u needs a
  // true division: for tiny x, c/u is the whole result.)
  c = S::select(S::lt(u, S::set(std::ldexp(T(1), C::mant_bits + 2))), c / u, S::zero());
  V m, k;
  split_log_argument<T>(S::max(u, S::set(std::numeric_limits<T>::min())), m, k);
  V y = log_reduced<T>(m - one, k, c);
  // Special values.
  const T inf = std::numeric_limits<T>::infinity();
  y = S::select(S::eq(x, S::set(-T(1))), S::set(-inf), y);
  y = S::select(S::lt(x, S::set(-T(1))), S::set(std::numeric_limits<T>::quiet_NaN()), y);
  y = S::select(S::eq(x, S::set(inf)), x, y);
  y = S::select(S::eq(x, S::zero()), x, y);  // keeps -0
  return S::select(S::isnan(x), x, y);
}

template <class T>
LO_INLINE typename Simd<T>::V vlog(typename Simd<T>::V x) {
  using S = Simd<T>;
  using C = MathConst<T>;
  using V = typename S::V;
  // Subnormals: scale into the normal range first.
  const auto sub = S::lt(x, S::set(std::numeric_limits<T>::min()));
  const V scale = S::set(std::ldexp(T(1), C::mant_bits + 2));
  const V xs = S::select(sub, x * scale, x);
  V m, k;
  split_log_argument<T>(S::max(xs, S::set(std::numeric_limits<T>::min())), m, k);
  k = S::select(sub, k - S::set(T(C::mant_bits + 2)), k);
  V y = log_reduced<T>(m - S::set(T(1)), k, S::zero());
  const T inf = std::numeric_limits<T>::infinity();
  y = S::select(S::eq(x, S::zero()), S::set(-inf), y);
  y = S::select(S::lt(x, S::zero()), S::set(std::numeric_limits<T>::quiet_NaN()), y);
  y = S::select(S::eq(x, S::set(inf)), x, y);
  return S::select(S::isnan(x), x, y);
}

// log1p(e) for e in [0, 1] (or NaN): the tail of softplus. u = 1 + e lies in [1, 2], so the
// range reduction is one compare, there are no special values, and a single division serves
// both s = f/(2+f) and the rounding correction c/u (for tiny e, u = 1 and c/u = e exactly).
template <class T>
LO_INLINE typename Simd<T>::V vlog1p_unit(typename Simd<T>::V e) {
  using S = Simd<T>;
  using V = typename S::V;
  const V one = S::set(T(1));
  const V u = one + e;
  const V c = e - (u - one);  // (1 + e) - u, exact since u - 1 is
  const auto big = S::ge(u, S::set(T(1.41421356237309504880)));
  const V m = S::select(big, u * S::set(T(0.5)), u);
  const V k = S::select(big, one, S::zero());
  const V f = m - one;
  const V two_f = S::set(T(2)) + f;
  const V q = one / (two_f * u);
  return log_reduced_s<T>(f, (f * u) * q, k, (c * two_f) * q);
}

// softplus(z) = log(1 + exp(z)) = max(z, 0) + log1p(exp(-|z|)): never overflows, and exact
// (to rounding) for very negative z where it equals exp(z), subnormal results included
// (log1p_unit(e) = e exactly for tiny e). NaN -> NaN; +-inf -> inf, 0.
template <class T>
LO_INLINE typename Simd<T>::V vsoftplus(typename Simd<T>::V z) {
  using S = Simd<T>;
  return S::max(S::zero(), z) + vlog1p_unit<T>(vexp_nonpos<T>(-S::abs(z)));
}

// sigmoid(x) and sigmoid(-x) from e = exp(-|x|): r = 1/(1+e) is sigmoid(|x|) and e*r is
// sigmoid(-|x|), so neither overflows nor cancels.
template <class T>
struct SigmoidPair {
  typename Simd<T>::V pos;  // sigmoid(x)
  typename Simd<T>::V neg;  // sigmoid(-x)
};
template <class T>
LO_INLINE SigmoidPair<T> sigmoid_pair_from_exp(typename Simd<T>::V x, typename Simd<T>::V e) {
  using S = Simd<T>;
  const auto r = S::set(T(1)) / (S::set(T(1)) + e);
  const auto er = e * r;
  const auto nonneg = S::ge(x, S::zero());
  return {S::select(nonneg, r, er), S::select(nonneg, er, r)};
}

}  // namespace LO_TARGET
}  // namespace logitops
