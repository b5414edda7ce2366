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
inline double row_others_infinite_max(const T* x, int64_t n, T m, T* E, const T* G, double* g_dot_e,
                                      double* g_sum) {
  double sum = 0.0, ties = 0.0, dot = 0.0, gs = 0.0;
  for (int64_t j = 0; j < n; ++j) {
    const bool tie = x[j] == m;
    const T e = tie ? T(1) : std::exp(x[j] - m);
    if (tie) ties += 1.0; else sum += static_cast<double>(e);
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

// exp(x - m) for x <= m (m finite), accurate to the exp's own error. x - m is rounded whenever
// x and m are not within a factor of 2 of each other (opposite signs, a large margin), and
// exp(d) inherits that rounding as a relative error of |d| * eps / 2: up to ~40 ulp in float32
// near d = -87, ~350 ulp in float64 near d = -708. The rounding error lo is recovered exactly
// (Knuth's TwoSum) and applied to first order, exp(d + lo) = exp(d) * (1 + lo).
template <class T>
inline typename Simd<T>::V exp_shifted(typename Simd<T>::V x, typename Simd<T>::V m) {
  using S = Simd<T>;
  using V = typename S::V;
  const V d = x - m;
  const V mr = d - x;                   // -m as recovered from d
  V lo = (x - (d - mr)) - (m + mr);     // (x - m) - d exactly
  lo = S::select(S::eq(lo, lo), lo, S::zero());  // x = -inf gives NaN here; exp(d) is 0 then
  const V e = vexp_nonpos<T>(d);
  return S::fma(e, lo, e);
}

// `others` of a row with finite maximum m whose other terms are all tiny, one element at a time in
// long double, whose wider exponent keeps the terms that are subnormal (or zero) in T.
template <class T>
inline double row_others_tiny(const T* x, int64_t n, T m) {
  long double sum = 0.0L;
  int64_t ties = 0;
  for (int64_t j = 0; j < n; ++j) {
    if (x[j] == m) ++ties; else sum += std::exp(static_cast<long double>(x[j]) - static_cast<long double>(m));
  }
  return static_cast<double>(sum + static_cast<long double>(ties - 1));
}

// Second pass over a row with maximum m (from row_max). Returns `others`; when E is non-null
// also stores exp(d_j) in E[j] (E may alias x), and when G is non-null sets
// *g_dot_e = sum_j G[j] * exp(d_j) and *g_sum = sum_j G[j]. Sums are accumulated in double.
// This pass works from cache (the first pass just read the row) and is compute-bound; when
// `next` is given (the next row, same length), it is prefetched meanwhile, so that row's
// first pass does not wait on memory.
template <class T>
inline double row_others(const T* x, int64_t n, T m, T* E = nullptr, const T* G = nullptr,
                         double* g_dot_e = nullptr, double* g_sum = nullptr, const T* next = nullptr) {
  using S = Simd<T>;
  using V = typename S::V;
  using M = typename S::M;
  if (!(std::fabs(m) <= std::numeric_limits<T>::max()))
    return row_others_infinite_max(x, n, m, E, G, g_dot_e, g_sum);
  const V mv = S::set(m);
  auto acc = S::acc_zero(), dot = S::acc_zero(), gs = S::acc_zero();
  int64_t ties = 0;
  // m is finite here, so d = x - m is exactly 0 at the ties and exp(0) = 1 exactly.
  auto step = [&](V xv, V gv, M valid) {
    const V e = S::select(valid, exp_shifted<T>(xv, mv), S::zero());
    const M tie = S::mask_and(S::eq(xv, mv), valid);
    ties += S::count(tie);
    S::acc_add(acc, S::select(tie, S::zero(), e));
    if (G) {
      S::acc_add(dot, gv * e);
      S::acc_add(gs, gv);
    }
    return e;
  };
  const M all = S::eq(mv, mv);
  int64_t i = 0;
  for (; i + S::W <= n; i += S::W) {
    if (next) __builtin_prefetch(next + i, 0, 3);
    const V e = step(S::load(x + i), G ? S::load(G + i) : S::zero(), all);
    if (E) S::store(E + i, e);
  }
  if (i < n) {
    const int64_t r = n - i;
    T ones[S::W];
    for (auto& o : ones) o = T(1);
    const M valid = S::gt(S::load_tail(ones, r, T(0)), S::zero());
    const V e = step(S::load_tail(x + i, r, T(0)), G ? S::load_tail(G + i, r, T(0)) : S::zero(), valid);
    if (E) S::store_tail(E + i, r, e);
  }
  if (G) {
    *g_dot_e = S::acc_sum(dot);
    *g_sum = S::acc_sum(gs);
  }
  const double others = S::acc_sum(acc) + static_cast<double>(ties - 1);
  // vexp_nonpos flushes terms below the smallest normal number. Each lost term is below
  // T_MIN, so the sum can only be off by n * T_MIN: recompute the rare rows where that could
  // reach a few ulp of the sum (a single tie and every other term tiny: a very confident row).
  constexpr double guard = std::is_same_v<T, float> ? 0x1p26 : 0x1p55;
  if (others < static_cast<double>(n) * static_cast<double>(std::numeric_limits<T>::min()) * guard)
    return row_others_tiny(x, n, m);
  return others;
}

template <class T>
inline RowStats<T> row_stats(const T* x, int64_t n, const T* next = nullptr) {
  const T m = row_max(x, n);
  return {m, row_others<T>(x, n, m, nullptr, nullptr, nullptr, nullptr, next)};
}

}  // namespace LO_TARGET
}  // namespace logitops
