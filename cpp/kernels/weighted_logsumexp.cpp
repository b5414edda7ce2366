// Weighted log-sum-exp kernels (see weighted_logsumexp.h), over the vector layer; compiled once
// per instruction set with LO_TARGET naming it.
//
// A row goes through two passes (the second from cache):
//   1. m = max x_j over the kept terms (b_j != 0), and max |b_j|, which sets a power-of-two
//      scale 2^-sigma with max |b_j| 2^-sigma in [1, 2): the products b_j 2^-sigma exp(d_j) 2^k
//      (exps scaled as in row_softmax.h) then neither overflow nor, for any term that can matter
//      next to the largest one, underflow in T;
//   2. the sum of those products over every kept term but the first maximum, in double lanes
//      (the backward also stores them, unscaled, into its output row).
// Rows with an infinite maximum or an infinite b take the scalar path (rare).
#include "kernels/weighted_logsumexp.h"

#include <cmath>
#include <limits>

#include "kernels/row_softmax.h"

namespace logitops {
namespace LO_TARGET {
namespace {

template <class T>
constexpr T kInf = std::numeric_limits<T>::infinity();
template <class T>
constexpr T kNaN = std::numeric_limits<T>::quiet_NaN();

template <class T>
struct WeightedRow {
  T m;            // max x_j over kept terms (-inf: none; NaN: a NaN maximum)
  T bmax;         // max |b_j| over the row
  int64_t jmax;   // first kept j with x_j == m (cols if none)
  int sigma;      // b is scaled by 2^-sigma
  double t;       // b at jmax, scaled units: b_jmax 2^(k - sigma)
  double others;  // sum of the other kept terms, scaled units
  bool slow;      // infinite m or infinite b: the scalar path
};

// Pass 1 and the position of the first maximum.
template <class T>
WeightedRow<T> row_scan(const T* x, const T* b, int64_t n) {
  using S = Simd<T>;
  using V = typename S::V;
  const V ninf = S::set(-kInf<T>), zero = S::zero();
  V mx = ninf, mb = zero;
  vec_loop<T>(n, [&](int64_t i, auto r) {
    const V bv = load_n<T>(b + i, r, T(0));
    const V xv = S::select(S::eq(bv, zero), ninf, load_n<T>(x + i, r, -kInf<T>));
    mx = S::max(mx, xv);
    mb = S::max(mb, S::abs(bv));
  });
  WeightedRow<T> w{};
  w.m = S::reduce_max(mx);
  w.bmax = S::reduce_max(mb);
  // The first kept maximum: a vector compare per step, then the lanes of the one that holds it.
  const V mv = S::set(w.m);
  int64_t i = 0;
  for (; i + S::W <= n; i += S::W)
    if (S::any(S::mask_and(S::eq(S::load(x + i), mv), S::mask_not(S::eq(S::load(b + i), zero))))) break;
  w.jmax = n;
  for (; i < n; ++i)
    if (x[i] == w.m && b[i] != T(0)) {
      w.jmax = i;
      break;
    }
  w.slow = !(std::fabs(w.m) <= std::numeric_limits<T>::max()) || !(w.bmax <= std::numeric_limits<T>::max());
  constexpr int lo_exp = std::numeric_limits<T>::min_exponent - 1;  // 2^-sigma stays representable
  w.sigma = w.bmax > T(0) && !w.slow ? std::max(std::ilogb(w.bmax), lo_exp) : 0;
  return w;
}

// Pass 2 over a row with finite m: w.t and w.others; E (the backward's output row) receives the
// unscaled products b_j 2^-sigma exp(d_j) when given.
template <class T>
void row_products(const T* x, const T* b, int64_t n, WeightedRow<T>& w, T* E, const T* next_x, const T* next_b) {
  using S = Simd<T>;
  using V = typename S::V;
  constexpr int64_t W = S::W;
  const V mv = S::set(w.m), zero = S::zero();
  const V bscale = S::set(std::ldexp(T(1), -w.sigma));
  const V unscale = S::set(exp_unscale<T>());
  T lane[W];
  for (int64_t l = 0; l < W; ++l) lane[l] = static_cast<T>(l);
  const V lanes = S::load(lane);
  auto acc = S::acc_zero();
  // One vector of products at i with r lanes (stored unscaled into E when given).
  auto products = [&](int64_t i, auto r) {
    const V bv = load_n<T>(b + i, r, T(0));
    const V e = shifted_exp<T>(load_n<T>(x + i, r, -kInf<T>), mv);  // scaled by 2^k
    // A dropped term is 0 even where its exp is inf or NaN (x_j > m or NaN).
    V p = S::select(S::eq(bv, zero), zero, (bv * bscale) * e);
    if (E) store_n<T>(E + i, r, p * unscale);
    if (static_cast<uint64_t>(w.jmax - i) < static_cast<uint64_t>(W))
      p = S::select(S::eq(lanes, S::set(static_cast<T>(w.jmax - i))), zero, p);
    return p;
  };
  // Blocks of four vectors summed in T (each product is at most 2^(k+1): no overflow) before
  // the double accumulator, as row_others does; then the rest.
  constexpr int64_t B = 4 * W;
  int64_t i = 0;
  constexpr int64_t line = 64 / sizeof(T);
  if (!next_x) next_x = x;  // harmless prefetch targets: no branch in the loop
  if (!next_b) next_b = b;
  for (; i + B <= n; i += B) {
    // This pass runs from cache and is compute-bound: meanwhile the next row comes in.
    for (int64_t q = 0; q < B; q += line) {
      __builtin_prefetch(next_x + i + q, 0, 3);
      __builtin_prefetch(next_b + i + q, 0, 3);
    }
    const V p0 = products(i, Full{}), p1 = products(i + W, Full{});
    const V p2 = products(i + 2 * W, Full{}), p3 = products(i + 3 * W, Full{});
    S::acc_add(acc, (p0 + p1) + (p2 + p3));
  }
  vec_loop<T>(n - i, [&](int64_t j, auto r) { S::acc_add(acc, products(i + j, r)); });
  w.others = S::acc_sum(acc);
  w.t = std::ldexp(static_cast<double>(b[w.jmax]), ExpScale<T>::k - w.sigma);
}

struct ValueSign {
  double value, sign;
};

// log|s| + m and sign(s) of a finite-m row (scaled units: s = t + others).
template <class T>
ValueSign finite_value(const WeightedRow<T>& w, const T* b) {
  const double q = w.others / w.t;
  if (w.t != 0.0 && q > -0.5)  // no cancellation: log|s| = log|b_jmax| + log1p(q)
    return {static_cast<double>(w.m) + std::log(std::fabs(static_cast<double>(b[w.jmax]))) + std::log1p(q),
            w.t > 0 ? 1.0 : -1.0};
  const double s = w.t + w.others;
  const double shift = static_cast<double>(w.sigma - ExpScale<T>::k) * 0.693147180559945309;
  const double sign = s > 0 ? 1.0 : s < 0 ? -1.0 : s == 0 ? 0.0 : std::numeric_limits<double>::quiet_NaN();
  return {static_cast<double>(w.m) + std::log(std::fabs(s)) + shift, sign};
}

// The scalar path: m = +-inf or an infinite b. Infinite terms (a kept x_j = +inf, or b_j = +-inf
// at a finite x_j) are sign(b_j) inf; inf * 0 (b_j = +-inf at x_j = -inf) and NaN are NaN.
template <class T>
ValueSign slow_value(const T* x, const T* b, int64_t n, T m, bool* pos_out = nullptr, double* tie_sum = nullptr) {
  const double nan = std::numeric_limits<double>::quiet_NaN();
  bool pos = false, neg = false, bad = false;
  double ties = 0.0;
  for (int64_t j = 0; j < n; ++j) {
    if (b[j] == T(0)) continue;
    if (std::isnan(x[j]) || std::isnan(b[j])) bad = true;
    const bool infinite = x[j] == kInf<T> || (std::isinf(b[j]) && x[j] != -kInf<T>);
    if (std::isinf(b[j]) && x[j] == -kInf<T>) bad = true;
    if (infinite) {
      (b[j] > 0 ? pos : neg) = true;
      ties += static_cast<double>(b[j]);
    }
  }
  if (pos_out) *pos_out = pos;
  if (tie_sum) *tie_sum = ties;
  if (bad || (pos && neg)) return {nan, nan};
  if (!pos && !neg) return {-std::numeric_limits<double>::infinity(), 0.0};  // m = -inf: s = 0
  (void)m;
  return {std::numeric_limits<double>::infinity(), pos ? 1.0 : -1.0};
}

template <class T>
void forward_rows(const T* x, const T* b, int64_t b_stride, int64_t rows, int64_t cols, T* value, T* sign) {
  for (int64_t r = 0; r < rows; ++r) {
    const T* xr = x + r * cols;
    const T* br = b + r * b_stride;
    WeightedRow<T> w = row_scan(xr, br, cols);
    ValueSign vs;
    if (std::isnan(w.m)) {
      vs = {std::numeric_limits<double>::quiet_NaN(), std::numeric_limits<double>::quiet_NaN()};
    } else if (w.slow || w.bmax == T(0) || w.jmax == cols) {
      vs = slow_value(xr, br, cols, w.m);
    } else {
      const bool more = r + 1 < rows;
      row_products(xr, br, cols, w, static_cast<T*>(nullptr), more ? xr + cols : nullptr,
                   more && b_stride ? br + b_stride : nullptr);
      vs = finite_value(w, br);
    }
    if (sign)
      sign[r] = static_cast<T>(vs.sign);
    else if (vs.sign < 0)
      vs.value = std::numeric_limits<double>::quiet_NaN();  // SciPy: the log of a negative sum
    value[r] = static_cast<T>(vs.value);
  }
}

template <class T>
void backward_rows(const T* grad, const T* x, const T* b, int64_t b_stride, int64_t rows, int64_t cols, bool want_sign,
                   T* out) {
  using S = Simd<T>;
  using V = typename S::V;
  for (int64_t r = 0; r < rows; ++r) {
    const T* xr = x + r * cols;
    const T* br = b + r * b_stride;
    T* o = out + r * cols;
    const double g = static_cast<double>(grad[r]);
    WeightedRow<T> w = row_scan(xr, br, cols);
    auto fill_kept = [&](T v) {
      for (int64_t j = 0; j < cols; ++j) o[j] = br[j] == T(0) ? T(0) : v;
    };
    if (std::isnan(w.m)) {
      fill_kept(kNaN<T>);
      continue;
    }
    if (w.slow || w.bmax == T(0) || w.jmax == cols) {
      bool pos = false;
      double ties = 0.0;
      const ValueSign vs = slow_value(xr, br, cols, w.m, &pos, &ties);
      if (std::isnan(vs.value) || vs.sign == 0.0 || (vs.sign < 0 && !want_sign) || w.bmax == kInf<T>) {
        fill_kept(kNaN<T>);  // no limit (or none we give): NaN at the kept terms
        continue;
      }
      // m = +inf: the +inf terms share the gradient in proportion to their b.
      for (int64_t j = 0; j < cols; ++j)
        o[j] = br[j] != T(0) && xr[j] == kInf<T> ? static_cast<T>(g * static_cast<double>(br[j]) / ties) : T(0);
      continue;
    }
    const bool more = r + 1 < rows;
    row_products(xr, br, cols, w, o, more ? xr + cols : nullptr, more && b_stride ? br + b_stride : nullptr);
    const ValueSign vs = finite_value(w, br);
    if (vs.sign < 0 && !want_sign) {
      fill_kept(kNaN<T>);
      continue;
    }
    // d value / d x_j = g p_j / s with p_j the stored unscaled product and s = (t + others) 2^-k.
    const double s_unscaled = (w.t + w.others) * static_cast<double>(exp_unscale<T>());
    const V coef = S::set(static_cast<T>(g / s_unscaled));
    map_unary(o, cols, o, [&](V p) { return p * coef; });
  }
}

template <class T>
constexpr WeightedLogsumexpKernels<T> make_kernels() {
  return {forward_rows<T>, backward_rows<T>};
}

}  // namespace

const WeightedLogsumexpTable& weighted_logsumexp_table() {
  static const WeightedLogsumexpTable table{make_kernels<float>(), make_kernels<double>()};
  return table;
}

}  // namespace LO_TARGET
}  // namespace logitops
