// Loop skeletons over the vector layer shared by every kernel family: a full-width body and
// one masked tail, so no kernel writes its own remainder loop.
#pragma once

#include "simd/vec.h"

namespace logitops {
namespace LO_TARGET {

// out[i] = f(x[i]) for i < n. out may alias x.
template <class T, class F>
inline void map_unary(const T* x, int64_t n, T* out, F f) {
  using S = Simd<T>;
  int64_t i = 0;
  for (; i + S::W <= n; i += S::W) S::store(out + i, f(S::load(x + i)));
  if (i < n) S::store_tail(out + i, n - i, f(S::load_tail(x + i, n - i, T(0))));
}

// out[i] = f(a[i], b[i]) for i < n. out may alias a or b.
template <class T, class F>
inline void map_binary(const T* a, const T* b, int64_t n, T* out, F f) {
  using S = Simd<T>;
  int64_t i = 0;
  for (; i + S::W <= n; i += S::W) S::store(out + i, f(S::load(a + i), S::load(b + i)));
  if (i < n) {
    const int64_t r = n - i;
    S::store_tail(out + i, r, f(S::load_tail(a + i, r, T(0)), S::load_tail(b + i, r, T(0))));
  }
}

// Largest element of x[0..n); -inf for n == 0. With NaN in the row the result may or may not be
// NaN (max returns its second operand on NaN): the callers' sums make such a row NaN either way. Four accumulators hide the max latency.
template <class T>
inline T row_max(const T* x, int64_t n) {
  using S = Simd<T>;
  using V = typename S::V;
  const V ninf = S::set(-std::numeric_limits<T>::infinity());
  V m0 = ninf, m1 = ninf, m2 = ninf, m3 = ninf;
  int64_t i = 0;
  for (; i + 4 * S::W <= n; i += 4 * S::W) {
    m0 = S::max(m0, S::load(x + i));
    m1 = S::max(m1, S::load(x + i + S::W));
    m2 = S::max(m2, S::load(x + i + 2 * S::W));
    m3 = S::max(m3, S::load(x + i + 3 * S::W));
  }
  for (; i + S::W <= n; i += S::W) m0 = S::max(m0, S::load(x + i));
  if (i < n) m1 = S::max(m1, S::load_tail(x + i, n - i, -std::numeric_limits<T>::infinity()));
  return S::reduce_max(S::max(S::max(m0, m1), S::max(m2, m3)));
}

}  // namespace LO_TARGET
}  // namespace logitops
