// The per-row pieces of every softmax-shaped kernel (primitives and cross-entropy share them).
//
// For a row x of n elements with maximum m, d_j = x_j - m, except d_j = 0 wherever x_j == m
// (so +inf maxima take their limit instead of inf - inf = NaN). `others` is
//   sum over x_j != m of exp(d_j)  +  (#{x_j == m} - 1)
// the normaliser Z = sum_j exp(d_j) minus one maximum's exp(0) = 1. Keeping that 1 out of the
// sum is what lets log(Z) = log1p(others) stay exact when one logit dominates: a float32 or
// float64 sum 1 + tiny would lose `tiny` entirely.
#pragma once

#include "kernels/loops.h"
#include <algorithm>
#include <type_traits>

#include "simd/vmath.h"

namespace logitops {
namespace LO_TARGET {

template <class T>
struct RowStats {
  T max;          // m
  double others;  // Z - 1 as above; -1 for an empty row
  double log_z() const { return std::log1p(others); }
  double lse() const { return static_cast<double>(max) + std::log1p(others); }
};

// row_others for a row whose maximum m is +inf or -inf, one element at a time (rare):
// elements equal to m are the ties (exp(d) = 1), the rest have exp(x - m) = 0, or NaN.
template <class T>
inline double row_others_infinite_max(const T* x, int64_t n, T m, T* E, const T* G, double* g_dot_e, double* g_sum) {
  double sum = 0.0, ties = 0.0, dot = 0.0, gs = 0.0;
  for (int64_t j = 0; j < n; ++j) {
    const bool tie = x[j] == m;
    const T e = tie ? T(1) : std::exp(x[j] - m);
    if (tie)
      ties += 1.0;
    else
      sum += static_cast<double>(e);
    if (E) E[j] = e;
    if (G) {
      dot += static_cast<double>(G[j]) * static_cast<double>(e);
      gs += static_cast<double>(G[j]);
    }
  }
  if (G) {
    *g_dot_e = dot;
    *g_sum = gs;
  }
  return sum + (ties - 1.0);
}

// exp(x - m) * 2^k for x <= m (m finite), with k = ExpScale<T>::k.
// - A sum of exps far below FLT_MIN (DBL_MIN) can itself be a normal number (1000 terms of
//   exp(-90) in float32): flushing each term would lose the loss of a very confident row. Scaled
//   by 2^k (k is folded into the magic number's bias, so it costs nothing) every term down to
//   d = -156 (float; -1332 double) is normal, and sums are scaled back by 2^-k exactly in double.
//   Below that, 0 (-inf included); NaN for NaN.
// - x - m rounds when x and m are far apart (opposite signs, a large margin), which would cost
//   exp(d) a relative error of |d| eps / 2 (~40 ulp near d = -87): the rounding error lo is
//   recovered exactly (Fast2Sum) and joins the reduced argument, exp(d + lo).
template <class T>
struct ExpScale;
template <>
struct ExpScale<float> {
  static constexpr int k = 100;
};
template <>
struct ExpScale<double> {
  static constexpr int k = 900;
};
template <class T>
constexpr T exp_unscale() {  // 2^-k
  T v = T(1);
  for (int i = 0; i < ExpScale<T>::k; ++i) v *= T(0.5);
  return v;
}

template <class T>
LO_INLINE typename Simd<T>::V shifted_exp(typename Simd<T>::V x, typename Simd<T>::V m) {
  using S = Simd<T>;
  using C = MathConst<T>;
  using V = typename S::V;
  constexpr int k = ExpScale<T>::k;
  // Fast2Sum of x and -m with the larger magnitude first: as x <= m, that is min(-m, x) (for
  // m >= 0 and x > -m it is -m, otherwise x). The operand order keeps a NaN x.
  const V nm = -m;
  const V a = S::min(nm, x), b = S::max(nm, x);
  const V d = a + b;
  const V lo = b - (d - a);
  const V magic = S::set(T(1.5) / std::numeric_limits<T>::epsilon() + T(C::bias + k));
  const V t = S::fma(d, S::set(C::log2e), magic);  // n + bias + k in the low bits
  const V n = t - magic;
  V r = S::fma(n, S::set(-C::ln2_hi), d);
  r = S::fma(n, S::set(-C::ln2_lo), r) + lo;
  const V e = exp_small_poly<T>(r) * S::low_bits_to_exponent(t);
  const T dmin = C::exp_min_normal_arg - T(k) * T(0.693147180559945309);
  return S::select(S::lt(d, S::set(dmin)), S::zero(), e);
}

// Index of the first element equal to m (n if none).
template <class T>
inline int64_t first_equal(const T* x, int64_t n, T m) {
  using S = Simd<T>;
  const auto mv = S::set(m);
  int64_t i = 0;
  for (; i + S::W <= n; i += S::W)
    if (S::any(S::eq(S::load(x + i), mv))) break;
  for (; i < n; ++i)
    if (x[i] == m) return i;
  return n;
}

// Second pass over a row with maximum m (from row_max). Returns `others`; when E is non-null
// also stores exp(d_j) in E[j] (E may alias x: each element is read before it is written), and
// when G is non-null sets *g_dot_e = sum_j G[j] * exp(d_j) and *g_sum = sum_j G[j].
// - The first maximum is left out of the sum by its index, in the one block of vectors that holds
//   it (the other ties add exp(0) = 1 each), instead of a compare on every element.
// - Blocks of four vectors of exps are added in T, pairwise, before the double accumulator
//   (at most 1 ulp, and a quarter of the widening, which costs as much as a third of the exp).
// - This pass is compute-bound and runs from cache; meanwhile `next` (the next row, same length,
//   or null) is prefetched, so that row's first pass does not wait on memory, and `warm` (the
//   row's output, or null) is prefetched for writing, so that a later pass writing it finds its
//   lines in cache instead of reading them in then.
// (StoreE and WithG say at compile time whether E and G are given: the hot loop carries no
// branch for them.)
template <class T, bool StoreE, bool WithG>
inline double row_others_impl(const T* x, int64_t n, T m, T* E, const T* G, double* g_dot_e, double* g_sum,
                              const T* next, T* warm) {
  using S = Simd<T>;
  using V = typename S::V;
  constexpr int64_t W = S::W;
  if (!next) next = x;  // a harmless prefetch target: no branch in the loop
  const int64_t jmax = first_equal(x, n, m);
  const V mv = S::set(m);
  const V unscale = S::set(exp_unscale<T>());  // stored exps are exp(d), gradually underflowing
  T lane[W];
  for (int64_t l = 0; l < W; ++l) lane[l] = static_cast<T>(l);
  const V lanes = S::load(lane);
  // e without the lane of x[jmax], for the vector starting at i.
  auto skip_max = [&](V e, int64_t i) {
    return S::select(S::eq(lanes, S::set(static_cast<T>(jmax - i))), S::zero(), e);
  };
  auto acc = S::acc_zero(), dot = S::acc_zero(), gs = S::acc_zero();
  // One vector of exps (scaled by 2^k) at i with r lanes: stored and the gradient sums taken.
  auto exps = [&](int64_t i, auto r) {
    const V e = shifted_exp<T>(load_n<T>(x + i, r, -std::numeric_limits<T>::infinity()), mv);
    if constexpr (StoreE || WithG) {
      const V eu = e * unscale;
      if constexpr (StoreE) store_n<T>(E + i, r, eu);
      if constexpr (WithG) {
        const V gv = load_n<T>(G + i, r, T(0));
        S::acc_add(dot, gv * eu);
        S::acc_add(gs, gv);
      }
    }
    return e;
  };
  constexpr int kVectors = 4;               // vectors a block, summed in T pairwise below
  constexpr int64_t B = kVectors * W;       // elements a block
  constexpr int64_t line = 64 / sizeof(T);  // elements a cache line
  auto block = [&](int64_t i, bool holds_max) {
    for (int64_t p = 0; p < B; p += line) __builtin_prefetch(next + i + p, 0, 3);
    if (warm)
      for (int64_t p = 0; p < B; p += line) __builtin_prefetch(warm + i + p, 1, 3);
    V e[kVectors];
    for (int k = 0; k < kVectors; ++k) {
      e[k] = exps(i + k * W, Full{});
      if (holds_max) e[k] = skip_max(e[k], i + k * W);
    }
    S::acc_add(acc, (e[0] + e[1]) + (e[2] + e[3]));
  };
  const int64_t full = n - n % B, bmax = jmax - jmax % B;
  int64_t i = 0;
  for (; i < std::min(bmax, full); i += B) block(i, false);
  if (bmax < full) block(i, true), i += B;
  for (; i < full; i += B) block(i, false);
  // The rest (fewer than B elements): full vectors, then the tail.
  vec_loop<T>(n - i, [&](int64_t k, auto r) {
    V e = exps(i + k, r);
    if (static_cast<uint64_t>(jmax - (i + k)) < static_cast<uint64_t>(W)) e = skip_max(e, i + k);
    S::acc_add(acc, e);
  });
  if constexpr (WithG) {
    *g_dot_e = S::acc_sum(dot);
    *g_sum = S::acc_sum(gs);
  }
  return S::acc_sum(acc) * static_cast<double>(exp_unscale<T>());
}

template <class T>
inline double row_others(const T* x, int64_t n, T m, T* E = nullptr, const T* G = nullptr, double* g_dot_e = nullptr,
                         double* g_sum = nullptr, const T* next = nullptr, T* warm = nullptr) {
  if (!(std::fabs(m) <= std::numeric_limits<T>::max())) return row_others_infinite_max(x, n, m, E, G, g_dot_e, g_sum);
  if (G) return row_others_impl<T, true, true>(x, n, m, E, G, g_dot_e, g_sum, next, warm);  // backward: E is given too
  if (E) return row_others_impl<T, true, false>(x, n, m, E, G, g_dot_e, g_sum, next, warm);
  return row_others_impl<T, false, false>(x, n, m, E, G, g_dot_e, g_sum, next, warm);
}

template <class T>
inline RowStats<T> row_stats(const T* x, int64_t n, const T* next = nullptr, T* warm = nullptr) {
  const T m = row_max(x, n);
  return {m, row_others<T>(x, n, m, nullptr, nullptr, nullptr, nullptr, next, warm)};
}

}  // namespace LO_TARGET
}  // namespace logitops
