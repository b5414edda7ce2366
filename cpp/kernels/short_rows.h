// Short rows (inner == 1, at most kShortClasses classes): the softmax-shaped passes run across
// rows instead of along them. A row of 2..32 classes is shorter than the work a row costs to set
// up (a max and a sum reduced across a vector's lanes, a log1p, the per-row bookkeeping: ~40 ns
// a row against ~2 ns for its bytes), so a block of rows is transposed into a C x B slab in
// cache (lane l = row l of the block, class c = slab row c) and every step then handles W rows
// at once with plain vector arithmetic: no reduction across lanes, no per-row branch.
//
// The numerics are row_softmax.h's (the same `others` without the maximum's 1, the same scaled
// shifted exps); the per-class sums of a lane are compensated (Kahan) in T, which for C <= 32
// terms keeps them as exact as the double sums of the long-row path, and everything formed once
// per row (log1p, the loss, the gradient coefficients) is computed in double lanes.
//
// Like everything over the vector layer, this header is compiled once per instruction set.
#pragma once

#include <algorithm>
#include <limits>
#include <type_traits>

#include "kernels/row_softmax.h"

namespace logitops {
namespace LO_TARGET {

// Rows of at most this many classes take the short-row path (measured: at 32 classes it is still
// ~2x the row path; beyond, the row path's per-row cost is amortized).
constexpr int64_t kShortClasses = 32;

inline bool is_short_row(int64_t classes) { return classes > 0 && classes <= kShortClasses; }

// A block of at most B rows, transposed.
template <class T>
struct ShortBlock {
  static constexpr int64_t W = Simd<T>::W;
  // Rows a block: 16 vectors of lanes (128 floats / 64 doubles with AVX2).
  static constexpr int64_t B = 16 * W;
  int64_t rows = 0;   // rows in this block
  int64_t lanes = 0;  // rows rounded up to whole vectors (the padding lanes hold zeros)
  int64_t classes = 0;
  T x[kShortClasses * B];  // x[c * B + l]: class c of row l
  T e[kShortClasses * B];  // exp(d) per element (the gradient is formed in place here)
  T m[B];                  // row maximum
  double others[B];        // Z - 1, row_softmax.h's definition
  double gsum[B];          // sum_c g_c (backwards of the primitives)
  double gdot[B];          // sum_c g_c exp(d_c)
};

// f(classes) with `classes` a compile-time constant (std::integral_constant) for the counts
// worth unrolling, else the plain int64_t: the transposes' inner loop of 2-10 elements is then
// straight-line code instead of a loop whose overhead is most of its cost.
template <class F>
LO_INLINE void with_class_count(int64_t C, F f) {
  switch (C) {
#define LO_SHORT_CASE(k)                     \
  case k:                                    \
    f(std::integral_constant<int64_t, k>{}); \
    return;
    LO_SHORT_CASE(2)
    LO_SHORT_CASE(3)
    LO_SHORT_CASE(4)
    LO_SHORT_CASE(5)
    LO_SHORT_CASE(6)
    LO_SHORT_CASE(7)
    LO_SHORT_CASE(8)
    LO_SHORT_CASE(10)
#undef LO_SHORT_CASE
    default:
      f(C);
  }
}

// Transposes rows [0, n) of `src` (n x C, row-major) into slab `dst` (C x B), zero padding the
// lanes up to whole vectors.
template <class T>
inline void short_transpose_in(const T* src, int64_t n, int64_t classes, int64_t lanes, T* dst) {
  constexpr int64_t B = ShortBlock<T>::B;
  with_class_count(classes, [&](auto C) {
    for (int64_t l = 0; l < n; ++l)
      for (int64_t c = 0; c < C; ++c) dst[c * B + l] = src[l * C + c];
    for (int64_t c = 0; c < C; ++c) std::fill(dst + c * B + n, dst + c * B + lanes, T(0));
  });
}

// The inverse: slab `src` (C x B) into rows [0, n) of `dst` (n x C).
template <class T>
inline void short_transpose_out(const T* src, int64_t n, int64_t classes, T* dst) {
  constexpr int64_t B = ShortBlock<T>::B;
  with_class_count(classes, [&](auto C) {
    for (int64_t l = 0; l < n; ++l)
      for (int64_t c = 0; c < C; ++c) dst[l * C + c] = src[c * B + l];
  });
}

template <class T>
inline void short_load(ShortBlock<T>& b, const T* rows, int64_t n, int64_t C) {
  b.rows = n;
  b.classes = C;
  b.lanes = (n + b.W - 1) / b.W * b.W;
  short_transpose_in(rows, n, C, b.lanes, b.x);
}

// Kahan sum per lane, state in registers.
template <class T>
struct LaneSum {
  using S = Simd<T>;
  typename S::V s = S::zero(), c = S::zero();
  LO_INLINE void add(typename S::V v) {
    const auto y = v - c;
    const auto t = s + y;
    // An infinite sum's compensation is inf - inf = NaN: drop it (a NaN term keeps s NaN).
    const auto cn = (t - s) - y;
    c = S::select(S::isnan(cn), S::zero(), cn);
    s = t;
  }
  // For terms whose sum cannot overflow (the scaled exps: each at most 2^k, at most
  // kShortClasses of them): no compensation to drop (a NaN term still makes the sum NaN).
  LO_INLINE void add_bounded(typename S::V v) {
    const auto y = v - c;
    const auto t = s + y;
    c = (t - s) - y;
    s = t;
  }
  LO_INLINE typename S::V value() const { return s - c; }
};

// m and others for every lane of the block; with StoreE the exps exp(d) go to b.e, and with a
// slab G of upstream gradients (C x B like x) also gsum and gdot.
template <class T, bool StoreE, bool WithG>
inline void short_stats(ShortBlock<T>& b, const T* G = nullptr) {
  using S = Simd<T>;
  using V = typename S::V;
  constexpr int64_t B = ShortBlock<T>::B;
  const int64_t C = b.classes;
  const V unscale = S::set(exp_unscale<T>());
  const V one = S::set(T(1));
  alignas(64) T sum[B], ties[B], gs[B], gd[B];
  for (int64_t l = 0; l < b.lanes; l += S::W) {
    V m = S::load(b.x + l);
    for (int64_t c = 1; c < C; ++c) m = S::max(m, S::load(b.x + c * B + l));
    LaneSum<T> acc, gsa, gda;
    V nties = S::zero();
    for (int64_t c = 0; c < C; ++c) {
      const V xv = S::load(b.x + c * B + l);
      const auto tie = S::eq(xv, m);
      // shifted_exp takes m finite; for m = +inf its d is -inf and its result 0, as the limit.
      const V e = shifted_exp<T>(xv, m);
      acc.add_bounded(S::select(tie, S::zero(), e));
      nties = nties + S::select(tie, one, S::zero());
      if constexpr (StoreE || WithG) {
        const V eu = S::select(tie, one, e * unscale);
        if constexpr (StoreE) S::store(b.e + c * B + l, eu);
        if constexpr (WithG) {
          const V gv = S::load(G + c * B + l);
          gsa.add(gv);
          gda.add(gv * eu);
        }
      }
    }
    S::store(b.m + l, m);
    S::store(sum + l, acc.value());
    S::store(ties + l, nties);
    if constexpr (WithG) {
      S::store(gs + l, gsa.value());
      S::store(gd + l, gda.value());
    }
  }
  const double back = static_cast<double>(exp_unscale<T>());
  for (int64_t l = 0; l < b.lanes; ++l) {
    b.others[l] = static_cast<double>(sum[l]) * back + (static_cast<double>(ties[l]) - 1.0);
    if constexpr (WithG) {
      b.gsum[l] = static_cast<double>(gs[l]);
      b.gdot[l] = static_cast<double>(gd[l]);
    }
  }
}

// f(l, r) over the block's rows in vectors of doubles (r as in vec_loop).
template <class F>
LO_INLINE void short_rows_double(int64_t rows, F f) {
  vec_loop<double>(rows, f);
}

}  // namespace LO_TARGET
}  // namespace logitops
