// Loop skeletons over the vector layer shared by every kernel family: a full-width body and
// one masked tail, so no kernel writes its own remainder loop.
#pragma once

#include "simd/vec.h"

namespace logitops {
namespace LO_TARGET {

// The one remainder idiom: vec_loop<T>(n, f) calls f(i, Full{}) for each full vector of [0, n)
// and f(i, r) once for the r-lane tail. Bodies written over load_n/store_n/keep_lanes with that
// `r` compile to plain loads and stores for Full and to masked ones for the tail.
struct Full {};

template <class T>
LO_INLINE typename Simd<T>::V load_n(const T* p, Full, T) {
  return Simd<T>::load(p);
}
template <class T>
LO_INLINE typename Simd<T>::V load_n(const T* p, int64_t r, T fill) {
  return Simd<T>::load_tail(p, r, fill);
}
template <class T>
LO_INLINE void store_n(T* p, Full, typename Simd<T>::V v) {
  Simd<T>::store(p, v);
}
template <class T>
LO_INLINE void store_n(T* p, int64_t r, typename Simd<T>::V v) {
  Simd<T>::store_tail(p, r, v);
}
// v in the first r lanes, 0 in the others (before a tail vector reaches a sum).
template <class T>
LO_INLINE typename Simd<T>::V keep_lanes(typename Simd<T>::V v, Full) {
  return v;
}
template <class T>
LO_INLINE typename Simd<T>::V keep_lanes(typename Simd<T>::V v, int64_t r) {
  using S = Simd<T>;
  T ones[S::W];
  for (auto& o : ones) o = T(1);
  return S::select(S::gt(S::load_tail(ones, r, T(0)), S::zero()), v, S::zero());
}

template <class T, class F>
LO_INLINE void vec_loop(int64_t n, F f) {
  constexpr int64_t W = Simd<T>::W;
  int64_t i = 0;
  for (; i + W <= n; i += W) f(i, Full{});
  if (i < n) f(i, n - i);
}

// out[i] = f(x[i]) for i < n. out may alias x.
template <class T, class F>
inline void map_unary(const T* x, int64_t n, T* out, F f) {
  vec_loop<T>(n, [&](int64_t i, auto r) { store_n<T>(out + i, r, f(load_n<T>(x + i, r, T(0)))); });
}

// out[i] = f(a[i], b[i]) for i < n. out may alias a or b.
template <class T, class F>
inline void map_binary(const T* a, const T* b, int64_t n, T* out, F f) {
  vec_loop<T>(
      n, [&](int64_t i, auto r) { store_n<T>(out + i, r, f(load_n<T>(a + i, r, T(0)), load_n<T>(b + i, r, T(0)))); });
}

// Largest element of x[0..n); -inf for n == 0. With NaN in the row the result may or may not be
// NaN (max returns its second operand on NaN): the callers' sums make such a row NaN either way.
// Four accumulators hide the max latency. row_max_by: the same over the vectors load(i) (i a
// multiple of W) and the last r < W values tail(i, r) (-inf in the other lanes).
template <class T, class Load, class Tail>
inline T row_max_by(int64_t n, Load load, Tail tail) {
  using S = Simd<T>;
  using V = typename S::V;
  const V ninf = S::set(-std::numeric_limits<T>::infinity());
  V m0 = ninf, m1 = ninf, m2 = ninf, m3 = ninf;
  int64_t i = 0;
  for (; i + 4 * S::W <= n; i += 4 * S::W) {
    m0 = S::max(m0, load(i));
    m1 = S::max(m1, load(i + S::W));
    m2 = S::max(m2, load(i + 2 * S::W));
    m3 = S::max(m3, load(i + 3 * S::W));
  }
  for (; i + S::W <= n; i += S::W) m0 = S::max(m0, load(i));
  if (i < n) m1 = S::max(m1, tail(i, n - i));
  return S::reduce_max(S::max(S::max(m0, m1), S::max(m2, m3)));
}
template <class T>
inline T row_max(const T* x, int64_t n) {
  return row_max_by<T>(
      n, [&](int64_t i) { return Simd<T>::load(x + i); },
      [&](int64_t i, int64_t r) { return Simd<T>::load_tail(x + i, r, -std::numeric_limits<T>::infinity()); });
}

}  // namespace LO_TARGET
}  // namespace logitops
