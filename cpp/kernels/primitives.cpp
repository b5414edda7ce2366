// Primitive kernels (see primitives.h), written once over the vector layer; this file is
// compiled once per instruction set with LO_TARGET naming it.
#include "kernels/primitives.h"

#include "kernels/row_softmax.h"
#include "kernels/short_rows.h"

namespace logitops {
namespace LO_TARGET {
namespace {

// ----------------------------------------------------------------------------- short rows
// Rows of at most kShortClasses columns (short_rows.h): the same results, W rows at a time.

// Per row of the block: log(Z) = log1p(others) into L (T), from double lanes.
template <class T>
void short_log_z(const ShortBlock<T>& b, T* L) {
  alignas(64) double ld[ShortBlock<T>::B];
  short_rows_double(b.lanes, [&](int64_t l, auto r) {
    store_n<double>(ld + l, r, vlog1p<double>(load_n<double>(b.others + l, r, 0.0)));
  });
  for (int64_t l = 0; l < b.lanes; ++l) L[l] = static_cast<T>(ld[l]);
}

template <class T>
void logsumexp_short(const T* x, int64_t rows, int64_t C, T* out) {
  constexpr int64_t B = ShortBlock<T>::B;
  ShortBlock<T> b;
  alignas(64) double md[B], lse[B];
  for (int64_t r0 = 0; r0 < rows; r0 += B) {
    const int64_t n = std::min(B, rows - r0);
    short_load(b, x + r0 * C, n, C);
    short_stats<T, false, false>(b);
    for (int64_t l = 0; l < b.lanes; ++l) md[l] = static_cast<double>(b.m[l]);
    short_rows_double(b.lanes, [&](int64_t l, auto r) {
      store_n<double>(lse + l, r,
                      load_n<double>(md + l, r, 0.0) + vlog1p<double>(load_n<double>(b.others + l, r, 0.0)));
    });
    for (int64_t l = 0; l < n; ++l) out[r0 + l] = static_cast<T>(lse[l]);
  }
}

// The slab's output rows: f(l, c, V* out) for every whole vector of lanes; then NaN for rows of
// all -inf (no softmax, as torch) and the transpose back into out.
template <class T, class F>
void short_finish(ShortBlock<T>& b, T* out, F f) {
  using S = Simd<T>;
  constexpr int64_t B = ShortBlock<T>::B;
  const int64_t C = b.classes;
  for (int64_t l = 0; l < b.lanes; l += S::W) {
    const auto no_limit = S::eq(S::load(b.m + l), S::set(-std::numeric_limits<T>::infinity()));
    for (int64_t c = 0; c < C; ++c)
      S::store(b.e + c * B + l, S::select(no_limit, S::set(std::numeric_limits<T>::quiet_NaN()), f(l, c)));
  }
  short_transpose_out(b.e, b.rows, C, out);
}

template <class T>
void log_softmax_short(const T* x, int64_t rows, int64_t C, T* out) {
  using S = Simd<T>;
  constexpr int64_t B = ShortBlock<T>::B;
  ShortBlock<T> b;
  alignas(64) T L[B];
  for (int64_t r0 = 0; r0 < rows; r0 += B) {
    short_load(b, x + r0 * C, std::min(B, rows - r0), C);
    short_stats<T, false, false>(b);
    short_log_z(b, L);
    // d_j - log(Z), with d_j = 0 at the maximum (the limit when it is +inf).
    short_finish(b, out + r0 * C, [&](int64_t l, int64_t c) {
      const auto m = S::load(b.m + l);
      const auto xv = S::load(b.x + c * B + l);
      return S::select(S::eq(xv, m), S::zero(), xv - m) - S::load(L + l);
    });
  }
}

// out = exp(d_j) * scale_row / Z: softmax (scale 1) and logsumexp_backward (scale = grad).
template <class T>
void scaled_softmax_short(const T* x, const T* row_scale, int64_t rows, int64_t C, T* out) {
  using S = Simd<T>;
  constexpr int64_t B = ShortBlock<T>::B;
  ShortBlock<T> b;
  alignas(64) T scale[B];
  for (int64_t r0 = 0; r0 < rows; r0 += B) {
    const int64_t n = std::min(B, rows - r0);
    short_load(b, x + r0 * C, n, C);
    short_stats<T, true, false>(b);
    for (int64_t l = 0; l < b.lanes; ++l)
      scale[l] =
          static_cast<T>((row_scale && l < n ? static_cast<double>(row_scale[r0 + l]) : 1.0) / (1.0 + b.others[l]));
    short_finish(b, out + r0 * C, [&](int64_t l, int64_t c) { return S::load(b.e + c * B + l) * S::load(scale + l); });
  }
}

// The backwards of (log-)softmax, with the upstream gradient's slab G beside the logits':
// finish(l, c, g, e) forms the output from the row sums (b.gsum, b.gdot) and Z.
template <class T, class Coef, class Finish>
void softmax_backward_short_with(const T* grad, const T* x, int64_t rows, int64_t C, T* out, Coef coef, Finish finish) {
  using S = Simd<T>;
  constexpr int64_t B = ShortBlock<T>::B;
  ShortBlock<T> b;
  alignas(64) T G[kShortClasses * B];
  alignas(64) T k1[B], k2[B];
  for (int64_t r0 = 0; r0 < rows; r0 += B) {
    const int64_t n = std::min(B, rows - r0);
    short_load(b, x + r0 * C, n, C);
    short_transpose_in(grad + r0 * C, n, C, b.lanes, G);
    short_stats<T, true, true>(b, G);
    for (int64_t l = 0; l < b.lanes; ++l) coef(b, l, &k1[l], &k2[l]);
    short_finish(b, out + r0 * C, [&](int64_t l, int64_t c) {
      return finish(S::load(G + c * B + l), S::load(b.e + c * B + l), S::load(k1 + l), S::load(k2 + l));
    });
  }
}

template <class T>
void logsumexp_rows(const T* x, int64_t rows, int64_t cols, T* out) {
  if (is_short_row(cols)) return logsumexp_short(x, rows, cols, out);
  for (int64_t r = 0; r < rows; ++r) {
    const T* next = r + 1 < rows ? x + (r + 1) * cols : nullptr;
    out[r] = static_cast<T>(row_stats(x + r * cols, cols, next).lse());
  }
}

// A row of all -inf (or an empty row) has no softmax: torch gives NaN, and so do we.
template <class T>
void fill_nan(T* out, int64_t n) {
  for (int64_t j = 0; j < n; ++j) out[j] = std::numeric_limits<T>::quiet_NaN();
}

template <class T>
void log_softmax_rows(const T* x, int64_t rows, int64_t cols, T* out) {
  using S = Simd<T>;
  using V = typename S::V;
  if (is_short_row(cols)) return log_softmax_short(x, rows, cols, out);
  for (int64_t r = 0; r < rows; ++r) {
    const T* xr = x + r * cols;
    T* o = out + r * cols;
    const RowStats<T> st = row_stats(xr, cols, r + 1 < rows ? xr + cols : nullptr, o);
    if (st.max == -std::numeric_limits<T>::infinity()) {
      fill_nan(o, cols);
      continue;
    }
    const V mv = S::set(st.max);
    const V log_z = S::set(static_cast<T>(st.log_z()));
    if (st.max == std::numeric_limits<T>::infinity()) {
      // The limit: 0 - log(#ties) at the +inf entries, -inf elsewhere (NaN stays NaN).
      map_unary(xr, cols, o, [&](V xv) { return S::select(S::eq(xv, mv), S::zero(), xv - mv) - log_z; });
      continue;
    }
    map_unary(xr, cols, o, [&](V xv) { return (xv - mv) - log_z; });
  }
}

// The two passes every softmax-shaped row needs: the max, then exp(d_j) stored into the output
// row while summing (with the upstream gradient's sums when grad is given). The row is then
// handed to finish(r, g, o, others, g_dot_e, g_sum) with o holding exp(d_j) and Z = 1 + others.
// A row of all -inf (or an empty row) has no softmax: it is filled with NaN, as torch.
template <class T, class Finish>
void for_each_exp_row(const T* x, const T* grad, int64_t rows, int64_t cols, T* out, Finish finish) {
  for (int64_t r = 0; r < rows; ++r) {
    const T* xr = x + r * cols;
    const T* g = grad ? grad + r * cols : nullptr;
    T* o = out + r * cols;
    const T m = row_max(xr, cols);
    if (m == -std::numeric_limits<T>::infinity()) {
      fill_nan(o, cols);
      continue;
    }
    double g_dot_e = 0.0, g_sum = 0.0;
    const double others = row_others(xr, cols, m, o, g, &g_dot_e, &g_sum, r + 1 < rows ? xr + cols : nullptr);
    finish(r, g, o, others, g_dot_e, g_sum);
  }
}

// out = exp(d_j) * scale_row / Z: softmax (scale 1) and logsumexp_backward (scale = grad).
template <class T>
void scaled_softmax_rows(const T* x, const T* row_scale, int64_t rows, int64_t cols, T* out) {
  using S = Simd<T>;
  if (is_short_row(cols)) return scaled_softmax_short(x, row_scale, rows, cols, out);
  for_each_exp_row<T>(x, nullptr, rows, cols, out, [&](int64_t r, const T*, T* o, double others, double, double) {
    const double scale = (row_scale ? static_cast<double>(row_scale[r]) : 1.0) / (1.0 + others);
    const auto sv = S::set(static_cast<T>(scale));
    map_unary(o, cols, o, [&](typename S::V e) { return e * sv; });
  });
}

template <class T>
void softmax_rows(const T* x, int64_t rows, int64_t cols, T* out) {
  scaled_softmax_rows<T>(x, nullptr, rows, cols, out);
}

template <class T>
void logsumexp_backward_rows(const T* grad, const T* x, int64_t rows, int64_t cols, T* out) {
  scaled_softmax_rows<T>(x, grad, rows, cols, out);
}

// out = g - softmax * sum(g)
template <class T>
void log_softmax_backward_rows(const T* grad, const T* x, int64_t rows, int64_t cols, T* out) {
  using S = Simd<T>;
  if (is_short_row(cols))
    return softmax_backward_short_with(
        grad, x, rows, cols, out,
        [](const ShortBlock<T>& b, int64_t l, T* k1, T*) { *k1 = static_cast<T>(b.gsum[l] / (1.0 + b.others[l])); },
        [](auto g, auto e, auto k1, auto) { return g - e * k1; });
  for_each_exp_row<T>(x, grad, rows, cols, out, [&](int64_t, const T* g, T* o, double others, double, double g_sum) {
    const auto coef = S::set(static_cast<T>(g_sum / (1.0 + others)));
    map_binary(g, o, cols, o, [&](typename S::V gv, typename S::V e) { return gv - e * coef; });
  });
}

// out = softmax * (g - sum_k g_k softmax_k)
template <class T>
void softmax_backward_rows(const T* grad, const T* x, int64_t rows, int64_t cols, T* out) {
  using S = Simd<T>;
  if (is_short_row(cols))
    return softmax_backward_short_with(
        grad, x, rows, cols, out,
        [](const ShortBlock<T>& b, int64_t l, T* inv, T* gy) {
          const double inv_z = 1.0 / (1.0 + b.others[l]);
          *inv = static_cast<T>(inv_z);
          *gy = static_cast<T>(b.gdot[l] * inv_z);
        },
        [](auto g, auto e, auto inv, auto gy) { return (e * inv) * (g - gy); });
  for_each_exp_row<T>(x, grad, rows, cols, out, [&](int64_t, const T* g, T* o, double others, double g_dot_e, double) {
    const double inv_z = 1.0 / (1.0 + others);
    const auto inv = S::set(static_cast<T>(inv_z));
    const auto gy = S::set(static_cast<T>(g_dot_e * inv_z));
    map_binary(g, o, cols, o, [&](typename S::V gv, typename S::V e) { return (e * inv) * (gv - gy); });
  });
}

template <class T>
inline SigmoidPair<T> sigmoid_pair(typename Simd<T>::V x) {
  // sigmoid(-|x|) = e / (1 + e) is e itself once e is tiny: subnormal results are kept.
  return sigmoid_pair_from_exp<T>(x, vexp_nonpos<T>(-Simd<T>::abs(x)));
}

template <class T>
void log_sigmoid_n(const T* x, int64_t n, T* out) {
  using S = Simd<T>;
  map_unary(x, n, out, [](typename S::V v) { return -vsoftplus<T>(-v); });
}

template <class T>
void sigmoid_n(const T* x, int64_t n, T* out) {
  map_unary(x, n, out, [](typename Simd<T>::V v) { return sigmoid_pair<T>(v).pos; });
}

template <class T>
void log_sigmoid_backward_n(const T* grad, const T* x, int64_t n, T* out) {
  map_binary(grad, x, n, out, [](typename Simd<T>::V g, typename Simd<T>::V v) { return g * sigmoid_pair<T>(v).neg; });
}

// sigmoid'(x) = e / (1 + e)^2 with e = exp(-|x|): one division instead of two rounded
// sigmoids multiplied, which keeps float32 within 4 ulp.
template <class T>
void sigmoid_backward_n(const T* grad, const T* x, int64_t n, T* out) {
  using S = Simd<T>;
  map_binary(grad, x, n, out, [](typename S::V g, typename S::V v) {
    const auto e = vexp_nonpos<T>(-S::abs(v));  // e / (1 + e)^2 = e when e is subnormal
    const auto q = S::set(T(1)) + e;
    return g * (e / (q * q));
  });
}

template <class T>
constexpr PrimitiveKernels<T> make_kernels() {
  return {logsumexp_rows<T>,
          log_softmax_rows<T>,
          softmax_rows<T>,
          logsumexp_backward_rows<T>,
          log_softmax_backward_rows<T>,
          softmax_backward_rows<T>,
          log_sigmoid_n<T>,
          sigmoid_n<T>,
          log_sigmoid_backward_n<T>,
          sigmoid_backward_n<T>};
}

}  // namespace

const PrimitiveTable& primitive_table() {
  static const PrimitiveTable table{make_kernels<float>(), make_kernels<double>()};
  return table;
}

}  // namespace LO_TARGET
}  // namespace logitops
