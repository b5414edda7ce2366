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

// exp(d) for the lanes of x, with d as defined above; `tie` marks the lanes equal to m.
template <class T>
inline typename Simd<T>::V exp_shifted(typename Simd<T>::V x, typename Simd<T>::V m, typename Simd<T>::M& tie) {
  using S = Simd<T>;
  tie = S::eq(x, m);
  return S::select(tie, S::set(T(1)), vexp<T>(x - m));
}

// Second pass over a row. Computes `others`; when E is non-null also stores exp(d_j) in E[j]
// (E may alias x), and when G is non-null sets *g_dot_e = sum_j G[j] * exp(d_j) and
// *g_sum = sum_j G[j]. Sums are accumulated in double lanes.
template <class T>
inline double row_others(const T* x, int64_t n, T m, T* E = nullptr, const T* G = nullptr,
                         double* g_dot_e = nullptr, double* g_sum = nullptr) {
  using S = Simd<T>;
  using V = typename S::V;
  using M = typename S::M;
  const V mv = S::set(m);
  const V one = S::set(T(1));
  auto acc = S::acc_zero(), ties = S::acc_zero(), dot = S::acc_zero(), gs = S::acc_zero();
  // `valid` masks the lanes past the end of the row in the tail step.
  auto step = [&](V xv, V gv, M valid) {
    M tie;
    V e = exp_shifted<T>(xv, mv, tie);
    e = S::select(valid, e, S::zero());
    tie = S::mask_and(tie, valid);
    S::acc_add(acc, S::select(tie, S::zero(), e));
    S::acc_add(ties, S::select(tie, one, S::zero()));
    if (G) {
      S::acc_add(dot, gv * e);
      S::acc_add(gs, gv);
    }
    return e;
  };
  const M all = S::eq(one, one);
  int64_t i = 0;
  for (; i + S::W <= n; i += S::W) {
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
  return S::acc_sum(acc) + (S::acc_sum(ties) - 1.0);
}

template <class T>
inline RowStats<T> row_stats(const T* x, int64_t n) {
  const T m = row_max(x, n);
  return {m, row_others(x, n, m)};
}

}  // namespace LO_TARGET
}  // namespace logitops
