// Cross-entropy and NLL kernels (see cross_entropy.h), written once over the vector layer and
// compiled once per instruction set with LO_TARGET naming it.
//
// One unit of work is a row (inner == 1) or a block of lanes (inner > 1). Either way a group of
// consecutive samples goes through the same steps:
//   1. statistics per sample: m, (sum_j a_j d_j and S), x_y, others; the fused and backward
//      calls store exp(d_j) into the gradient buffer on the way (pass 2), after x_y and the
//      dot pass have read the logits, so the buffer may be the input itself;
//   2. finalize: L = log1p(others) for the whole group at once (double lanes), the loss of
//      each sample, and the per-sample gradient coefficients;
//   3. the gradient pass over the buffer, in place: e_j * coef - sub * a_j, then the target
//      element, whose p_y - 1 is formed without cancellation.
#include "kernels/cross_entropy.h"

#include <algorithm>
#include <vector>

#include "kernels/cross_entropy_parts.h"
#include "kernels/short_rows.h"

namespace logitops {
namespace LO_TARGET {
namespace {

// Where ce_rows reads its rows and writes their gradients.
// DirectRows: the arrays themselves; pass 2 stores the exps into the gradient row, which the
//   gradient pass then turns into the gradient in place.
// LowRows<F>: 16-bit input and gradient (F: the format's loads and stores). The max pass widens
//   the row into a float32 scratch row as it reads it, pass 2 stores the exps there, and the
//   gradient pass rounds its results straight into the 16-bit output: each 16-bit byte is read
//   once and written once and the float32 row never leaves the cache (no separate widening and
//   rounding passes around the float32 kernel, cpp/bind/low_precision.h).
template <class T>
struct DirectRows {
  using S = Simd<T>;
  using V = typename S::V;
  static constexpr bool direct = true;
  const CeArgs<T>& a;
  // Row r (the k-th of its group) and its maximum.
  const T* read(int64_t r, int64_t /*k*/, T* m) const {
    const T* x = a.input + r * a.classes;
    *m = row_max(x, a.classes);
    return x;
  }
  T* exps(int64_t r, int64_t /*k*/) const { return a.grad_out + r * a.classes; }
  // The next row, even across a chunk boundary (a read-only prefetch hint; the chunk may be
  // another thread's).
  const T* next(int64_t r) const { return r + 1 < a.outer ? a.input + (r + 1) * a.classes : nullptr; }
  // The gradient row r, and stores into it.
  T* grad_row(int64_t r) const { return a.grad_out + r * a.classes; }
  template <class R>
  static void store(T* o, int64_t j, R rr, V v) {
    store_n<T>(o + j, rr, v);
  }
  static void store_one(T* o, int64_t j, T v) { o[j] = v; }
  void zero_row(T* o) const { std::fill(o, o + a.classes, T(0)); }
};

struct Bf16 {
  static Simd<float>::V load(const uint16_t* p) { return Simd<float>::load_bf16(p); }
  static void store(uint16_t* p, Simd<float>::V v) { Simd<float>::store_bf16(p, v); }
  static float widen(uint16_t h) { return bf16_to_f32(h); }
  static uint16_t round(float f) { return f32_to_bf16(f); }
};
struct F16 {
  static Simd<float>::V load(const uint16_t* p) { return Simd<float>::load_f16(p); }
  static void store(uint16_t* p, Simd<float>::V v) { Simd<float>::store_f16(p, v); }
  static float widen(uint16_t h) { return f16_to_f32(h); }
  static uint16_t round(float f) { return f32_to_f16(f); }
};

template <class F>
struct LowRows {
  using S = Simd<float>;
  using V = S::V;
  static constexpr bool direct = false;
  const CeArgs<float>& a;
  const uint16_t* input;  // (rows, C), rows as a's
  uint16_t* grad_out;     // like input, or null
  float* scratch;         // a group's rows, C floats each
  const float* read(int64_t r, int64_t k, float* m) const {
    const int64_t C = a.classes;
    const uint16_t* src = input + r * C;
    float* dst = scratch + k * C;
    // row_max over the widened values as they are stored.
    *m = row_max_by<float>(
        C,
        [&](int64_t i) {
          const V v = F::load(src + i);
          S::store(dst + i, v);
          return v;
        },
        [&](int64_t i, int64_t rest) {
          for (int64_t j = i; j < i + rest; ++j) dst[j] = F::widen(src[j]);
          return S::load_tail(dst + i, rest, -std::numeric_limits<float>::infinity());
        });
    return dst;
  }
  float* exps(int64_t /*r*/, int64_t k) const { return scratch + k * a.classes; }
  // The next 16-bit row, read as floats: the hint covers it and the row after it.
  const float* next(int64_t r) const {
    return r + 1 < a.outer ? reinterpret_cast<const float*>(input + (r + 1) * a.classes) : nullptr;
  }
  uint16_t* grad_row(int64_t r) const { return grad_out + r * a.classes; }
  static void store(uint16_t* o, int64_t j, Full, V v) { F::store(o + j, v); }
  static void store(uint16_t* o, int64_t j, int64_t rr, V v) {
    alignas(64) float b[S::W];
    S::store(b, v);
    for (int64_t l = 0; l < rr; ++l) o[j + l] = F::round(b[l]);
  }
  static void store_one(uint16_t* o, int64_t j, float v) { o[j] = F::round(v); }
  void zero_row(uint16_t* o) const { std::fill(o, o + a.classes, uint16_t{0}); }  // +0 in both formats
};

// Rows per group: enough to amortize the group's bookkeeping, few enough that the rows are
// still in cache when the gradient pass comes back to them.
inline int64_t row_group(int64_t classes, int64_t itemsize) {
  return std::clamp<int64_t>((32 << 10) / std::max<int64_t>(1, classes * itemsize), 1, K);
}

template <class T, class Md, class Io>
void ce_rows_io(LossOp op, const CeArgs<T>& a, const Io& io, int64_t begin, int64_t end, double* loss_sum) {
  using S = Simd<T>;
  using V = typename S::V;
  const int64_t C = a.classes;
  const bool grad = op == LossOp::grad_input || op == LossOp::loss_and_grad;
  const bool want_loss = op == LossOp::loss || op == LossOp::loss_and_grad;
  const Params<T> pr = params(a);
  const V al = S::set(pr.alpha), be = S::set(pr.beta);
  const int64_t G = row_group(C, sizeof(T));
  Group<T> g;
  for (int64_t r0 = begin; r0 < end; r0 += G) {
    g.count = std::min(G, end - r0);
    g.s0 = r0;
    for (int64_t k = 0; k < g.count; ++k) {
      const int64_t r = r0 + k;
      g.others[k] = g.dot[k] = g.asum[k] = 0.0;
      g.m[k] = g.xy[k] = T(0);
      g.y[k] = Md::prob ? 0 : read_target(a, r);
      g.valid[k] = Md::prob || counts_target(a, g.y[k]);
      if (!g.valid[k]) continue;
      T m;
      const T* xr = io.read(r, k, &m);
      g.m[k] = m;
      if (Md::dot) row_dot<T, Md>(xr, a.weight, Md::prob ? a.probs + r * C : nullptr, C, m, pr, &g.dot[k], &g.asum[k]);
      if (!Md::prob) g.xy[k] = xr[g.y[k]];
      // x_y and the dot pass have read the row: pass 2 may overwrite it.
      T* E = grad ? io.exps(r, k) : nullptr;
      g.others[k] = row_others<T>(xr, C, m, E, nullptr, nullptr, nullptr, io.next(r));
    }
    finalize<T, Md>(op, a, pr, g, want_loss, loss_sum);
    if (grad) {
      for (int64_t k = 0; k < g.count; ++k) {
        const int64_t r = r0 + k;
        const auto o = io.grad_row(r);
        if (!g.valid[k]) {
          io.zero_row(o);
          continue;
        }
        const T* e = io.exps(r, k);
        const double ey = Md::prob ? 0.0 : static_cast<double>(e[g.y[k]]);
        const V coef = S::set(g.coef[k]), sub = S::set(g.sub[k]);
        const T* t = Md::prob ? a.probs + r * C : nullptr;
        vec_loop<T>(C, [&](int64_t j, auto rr) {
          V v = load_n<T>(e + j, rr, T(0)) * coef;
          if constexpr (Md::dot) {
            const V wv = Md::weighted ? load_n<T>(a.weight + j, rr, T(0)) : S::zero();
            const V tv = Md::prob ? load_n<T>(t + j, rr, T(0)) : S::zero();
            v = v - sub * class_coef<Md, T>(wv, tv, al, be);
          }
          Io::store(o, j, rr, v);
        });
        if (!Md::prob) Io::store_one(o, g.y[k], target_grad<T, Md>(a, g, k, ey));
      }
    }
    if constexpr (Io::direct) {
      if (op == LossOp::grad_target) {
        for (int64_t k = 0; k < g.count; ++k) {
          const int64_t r = r0 + k;
          const T* xr = a.input + r * C;
          T* o = a.grad_out + r * C;
          const V mv = S::set(g.m[k]), Lv = S::set(g.Lt[k]), cv = S::set(g.coef[k]);
          vec_loop<T>(C, [&](int64_t j, auto rr) {
            const V wv = Md::weighted ? load_n<T>(a.weight + j, rr, T(0)) : S::set(T(1));
            store_n<T>(o + j, rr, (cv * wv) * (Lv - shifted<T>(load_n<T>(xr + j, rr, T(0)), mv)));
          });
        }
      }
    }
  }
}

template <class T, class Md>
void ce_rows(LossOp op, const CeArgs<T>& a, int64_t begin, int64_t end, double* loss_sum) {
  ce_rows_io<T, Md>(op, a, DirectRows<T>{a}, begin, end, loss_sum);
}

// ----------------------------------------------------------------------------- softcap (rows)

// c(x) = s tanh(x / s) and, with Slope, c'(x) = sech^2(x / s). One call uses one of the two
// forms throughout (the maximum, x_y and pass 2 agree bit for bit, so ties stay ties).
template <class T>
struct Softcap {
  using S = Simd<T>;
  using V = typename S::V;
  V s, inv_s;
  explicit Softcap(double cap) : s(S::set(static_cast<T>(cap))), inv_s(S::set(static_cast<T>(1.0 / cap))) {}
  template <bool Slope>
  LO_INLINE V apply(V x, V& slope) const {
    if constexpr (Slope) {
      V t;
      vtanh_sech2<T>(x * inv_s, t, slope);
      return s * t;
    } else {
      slope = S::zero();
      return s * vtanh<T>(x * inv_s);
    }
  }
  // One element through the vector path.
  template <bool Slope>
  T one(T x, T* slope) const {
    T c[S::W], sl[S::W];
    V vs;
    S::store(c, apply<Slope>(S::set(x), vs));
    S::store(sl, vs);
    *slope = sl[0];
    return c[0];
  }
};

template <class T>
T first_lane(typename Simd<T>::V v) {
  T b[Simd<T>::W];
  Simd<T>::store(b, v);
  return b[0];
}

// Pass 2 over a capped row (row_others' definition of `others` over c(x)): m is c(max x), jmax
// the index of the first raw maximum (also a capped one). With Md::dot also sum_j a_j d_j and
// S; with StoreE, E[j] = exp(d_j) c'(x_j) (E may alias x).
template <class T, class Md, bool Slope, bool StoreE>
double capped_others(const Softcap<T>& cap, const T* x, const T* w, const T* t, int64_t n, T m, int64_t jmax,
                     const Params<T>& pr, T* E, double* dot, double* asum, const T* next) {
  using S = Simd<T>;
  using V = typename S::V;
  constexpr int64_t W = S::W;
  if (!next) next = x;
  const V mv = S::set(m), al = S::set(pr.alpha), be = S::set(pr.beta);
  const V unscale = S::set(exp_unscale<T>());
  T lane[W];
  for (int64_t l = 0; l < W; ++l) lane[l] = static_cast<T>(l);
  const V lanes = S::load(lane);
  auto acc = S::acc_zero(), acc_d = S::acc_zero(), acc_s = S::acc_zero();
  vec_loop<T>(n, [&](int64_t i, auto r) {
    __builtin_prefetch(next + i, 0, 3);
    V slope;
    const V c = cap.template apply<Slope>(load_n<T>(x + i, r, T(0)), slope);
    V e = keep_lanes<T>(shifted_exp<T>(c, mv), r);  // scaled by 2^k
    if constexpr (StoreE) store_n<T>(E + i, r, (e * unscale) * slope);
    if (static_cast<uint64_t>(jmax - i) < static_cast<uint64_t>(W))
      e = S::select(S::eq(lanes, S::set(static_cast<T>(jmax - i))), S::zero(), e);
    S::acc_add(acc, e);
    if constexpr (Md::dot) {
      const V wv = Md::weighted ? load_n<T>(w + i, r, T(0)) : S::zero();
      const V tv = Md::prob ? load_n<T>(t + i, r, T(0)) : S::zero();
      const V av = keep_lanes<T>(class_coef<Md, T>(wv, tv, al, be), r);
      S::acc_add(acc_d, weighted_shift<T>(av, shifted<T>(c, mv)));
      if (Md::prob) S::acc_add(acc_s, av);
    }
  });
  if constexpr (Md::dot) {
    *dot = S::acc_sum(acc_d);
    *asum = S::acc_sum(acc_s);
  }
  // The first maximum's exp(0) = 1 was left out: others = Z - 1 (ties add 1 each).
  return S::acc_sum(acc) * static_cast<double>(exp_unscale<T>());
}

// ce_rows with a softcap (cross_entropy.h, "LLM heads"). Slope: the call writes an input
// gradient, so every capped value comes from vtanh_sech2 (the loss-only call uses vtanh).
template <class T, class Md, bool Slope>
void ce_rows_capped_impl(LossOp op, const CeArgs<T>& a, int64_t begin, int64_t end, double* loss_sum) {
  using S = Simd<T>;
  using V = typename S::V;
  const int64_t C = a.classes;
  const bool grad = Slope;
  const bool want_loss = op == LossOp::loss || op == LossOp::loss_and_grad;
  const Params<T> pr = params(a);
  const V al = S::set(pr.alpha), be = S::set(pr.beta);
  const V unscale = S::set(exp_unscale<T>());
  const Softcap<T> cap(a.softcap);
  const int64_t G = row_group(C, sizeof(T));
  Group<T> g;
  T slope_y[K], e_y[K];
  for (int64_t r0 = begin; r0 < end; r0 += G) {
    g.count = std::min(G, end - r0);
    g.s0 = r0;
    for (int64_t k = 0; k < g.count; ++k) {
      const int64_t r = r0 + k;
      const T* xr = a.input + r * C;
      g.others[k] = g.dot[k] = g.asum[k] = 0.0;
      g.m[k] = g.xy[k] = T(0);
      slope_y[k] = e_y[k] = T(0);
      g.y[k] = Md::prob ? 0 : read_target(a, r);
      g.valid[k] = Md::prob || counts_target(a, g.y[k]);
      if (!g.valid[k]) continue;
      const T mraw = row_max(xr, C);
      T unused;
      const T m = cap.template one<Slope>(mraw, &unused);
      g.m[k] = m;
      if (!Md::prob) {
        g.xy[k] = cap.template one<Slope>(xr[g.y[k]], &slope_y[k]);
        e_y[k] = first_lane<T>(shifted_exp<T>(S::set(g.xy[k]), S::set(m)) * unscale);
      }
      const T* t = Md::prob ? a.probs + r * C : nullptr;
      const T* next = r + 1 < a.outer ? xr + C : nullptr;
      const int64_t jmax = first_equal(xr, C, mraw);
      if (grad && !Md::dot)
        g.others[k] = capped_others<T, Md, Slope, true>(cap, xr, a.weight, t, C, m, jmax, pr, a.grad_out + r * C,
                                                        &g.dot[k], &g.asum[k], next);
      else
        g.others[k] = capped_others<T, Md, Slope, false>(cap, xr, a.weight, t, C, m, jmax, pr, nullptr, &g.dot[k],
                                                         &g.asum[k], next);
    }
    finalize<T, Md>(op, a, pr, g, want_loss, loss_sum);
    if (grad) {
      for (int64_t k = 0; k < g.count; ++k) {
        const int64_t r = r0 + k;
        T* o = a.grad_out + r * C;
        if (!g.valid[k]) {
          std::fill(o, o + C, T(0));
          continue;
        }
        const V coef = S::set(g.coef[k]), sub = S::set(g.sub[k]);
        if constexpr (!Md::dot) {
          vec_loop<T>(C, [&](int64_t j, auto rr) { store_n<T>(o + j, rr, load_n<T>(o + j, rr, T(0)) * coef); });
        } else {
          // exp(d_j) and c'(x_j) again from the input (read before written when o is x).
          const T* xr = a.input + r * C;
          const T* t = Md::prob ? a.probs + r * C : nullptr;
          const V mv = S::set(g.m[k]);
          vec_loop<T>(C, [&](int64_t j, auto rr) {
            V slope;
            const V c = cap.template apply<true>(load_n<T>(xr + j, rr, T(0)), slope);
            const V e = shifted_exp<T>(c, mv) * unscale;
            const V wv = Md::weighted ? load_n<T>(a.weight + j, rr, T(0)) : S::zero();
            const V tv = Md::prob ? load_n<T>(t + j, rr, T(0)) : S::zero();
            store_n<T>(o + j, rr, (e * coef - sub * class_coef<Md, T>(wv, tv, al, be)) * slope);
          });
        }
        if (!Md::prob)
          o[g.y[k]] = static_cast<T>(static_cast<double>(target_grad<T, Md>(a, g, k, static_cast<double>(e_y[k]))) *
                                     static_cast<double>(slope_y[k]));
      }
    }
    if (op == LossOp::grad_target) {
      for (int64_t k = 0; k < g.count; ++k) {
        const int64_t r = r0 + k;
        const T* xr = a.input + r * C;
        T* o = a.grad_out + r * C;
        const V mv = S::set(g.m[k]), Lv = S::set(g.Lt[k]), cv = S::set(g.coef[k]);
        vec_loop<T>(C, [&](int64_t j, auto rr) {
          V unused;
          const V c = cap.template apply<false>(load_n<T>(xr + j, rr, T(0)), unused);
          const V wv = Md::weighted ? load_n<T>(a.weight + j, rr, T(0)) : S::set(T(1));
          store_n<T>(o + j, rr, (cv * wv) * (Lv - shifted<T>(c, mv)));
        });
      }
    }
  }
}

template <class T, class Md>
void ce_rows_capped(LossOp op, const CeArgs<T>& a, int64_t begin, int64_t end, double* loss_sum) {
  if (op == LossOp::grad_input || op == LossOp::loss_and_grad)
    ce_rows_capped_impl<T, Md, true>(op, a, begin, end, loss_sum);
  else
    ce_rows_capped_impl<T, Md, false>(op, a, begin, end, loss_sum);
}

// ----------------------------------------------------------------------------- short rows

// Class targets over rows of at most kShortClasses classes without label smoothing (short_rows.h):
// a block of rows is transposed into a slab and then taken W rows a vector end to end in lanes of
// T: the statistics, the target's logit and exp (selected by class masks: nothing is indexed by a
// target, so one changed by another thread mid-call is ignored or used, never out of bounds), the
// loss and the gradient, formed in the slab and transposed back. finalize's formulas; float32
// rows in float lanes keep the 4-ulp contract (log1p within 2 ulp, the loss a sum of two
// non-negative terms, no cancellation anywhere; measured: tests/test_accuracy.py). The block is
// read whole before anything is written, so the gradient buffer may be the input.
template <class T, class Md>
void ce_short_rows(LossOp op, const CeArgs<T>& a, int64_t begin, int64_t end, double* loss_sum) {
  static_assert(!Md::prob && !Md::dot, "probability targets take the row path, label smoothing its own");
  using S = Simd<T>;
  using V = typename S::V;
  using M = typename S::M;
  constexpr int64_t B = ShortBlock<T>::B, W = S::W;
  const int64_t C = a.classes;
  const bool grad = op == LossOp::grad_input || op == LossOp::loss_and_grad;
  const bool want_loss = op == LossOp::loss || op == LossOp::loss_and_grad;
  const V zero = S::zero(), one = S::set(T(1)), nan = S::set(std::numeric_limits<T>::quiet_NaN());
  const V unscale = S::set(exp_unscale<T>()), no_limit_max = S::set(-std::numeric_limits<T>::infinity());
  const V g_all = S::set(static_cast<T>(a.grad_scale));
  const M none = S::lt(zero, zero);
  const int64_t ignore[1] = {a.ignore_index};
  const T* gout = grad && a.grad_output ? a.grad_output : nullptr;
  T* loss_o = want_loss ? a.loss_out : nullptr;
  ShortBlock<T> b;
  auto sum = S::acc_zero();
  for (int64_t r0 = begin; r0 < end; r0 += B) {
    const int64_t n = std::min(B, end - r0);
    short_load(b, a.input + r0 * C, n, C);
    vec_loop<T>(b.lanes, [&](int64_t l, auto) {  // (lanes is whole vectors: always Full)
      // The last vector's targets through a padded copy: target C never counts.
      int64_t y_tail[W];
      const int64_t* y = a.target + r0 + l;
      const int64_t r = std::min(W, n - l);
      if (r < W) {
        for (int64_t k = 0; k < W; ++k) y_tail[k] = k < r ? read_target(a, r0 + l + k) : C;
        y = y_tail;
      }
      M is_ignored[1], is_class[kShortClasses];
      S::eq_i64(y, ignore, is_ignored);
      V m = S::load(b.x + l);
      for (int64_t c = 1; c < C; ++c) m = S::max(m, S::load(b.x + c * B + l));
      LaneSum<T> acc;
      V ties = zero, x_y = zero, e_y = zero, w_y = one;
      M counts = none;
      for (int64_t c = 0; c < C; ++c) {
        const int64_t cv[1] = {c};
        M is_cv[1];
        S::eq_i64(y, cv, is_cv);
        const M is_c = is_class[c] = is_cv[0];
        counts = S::mask_or(counts, is_c);
        const V xv = S::load(b.x + c * B + l);
        const M tie = S::eq(xv, m);
        // shifted_exp takes m finite; for m = +inf its d is -inf and its result 0, as the limit.
        const V e = shifted_exp<T>(xv, m);
        acc.add_bounded(S::select(tie, zero, e));
        ties = ties + S::select(tie, one, zero);
        x_y = S::select(is_c, xv, x_y);
        if constexpr (Md::weighted) w_y = S::select(is_c, S::set(a.weight[c]), w_y);
        if (grad) {
          const V eu = S::select(tie, one, e * unscale);
          S::store(b.e + c * B + l, eu);
          e_y = S::select(is_c, eu, e_y);
        }
      }
      const M valid = S::mask_and(counts, S::mask_not(is_ignored[0]));
      const V others = acc.value() * unscale + (ties - one);  // Z - 1, row_softmax.h's definition
      const M no_limit = S::eq(m, no_limit_max);              // a row of -inf
      const M y_is_max = S::eq(x_y, m);
      const V dy = S::select(y_is_max, zero, x_y - m), Z = one + others;
      if (want_loss) {
        V ls = vlog1p<T>(others) - dy;
        if constexpr (Md::weighted) ls = w_y * ls;
        ls = S::select(valid, S::select(no_limit, nan, ls), zero);
        if (loss_o)
          store_n<T>(loss_o + r0 + l, r, ls);
        else
          S::acc_add(sum, ls);
      }
      if (!grad) return;
      const V g = gout ? load_n<T>(gout + r0 + l, r, T(0)) * g_all : g_all;
      const V A = Md::weighted ? w_y * g : g;
      // A / (1 + others) with the rounding error z_lo of Z = 1 + others (TwoSum) taken back: half
      // an ulp off every gradient element (the worst of test_accuracy.py's short rows: 3.7 -> 3.4 ulp).
      const V z_b = Z - one, z_lo = (one - (Z - z_b)) + (others - z_b), q = A / Z;
      const V cf = S::select(valid, S::select(no_limit, nan, S::fma(-q, z_lo / Z, q)), zero);
      const V pm1 = S::select(y_is_max, -others, -(one + (others - e_y))) / Z;  // p_y - 1
      const V at_y = S::select(no_limit, nan, A * pm1);
      for (int64_t c = 0; c < C; ++c) {
        T* e = b.e + c * B + l;
        // ignored rows get exactly 0, even where exp(d) is NaN
        S::store(e, S::select(S::mask_and(valid, is_class[c]), at_y, S::select(valid, S::load(e) * cf, zero)));
      }
    });
    if (grad) short_transpose_out(b.e, n, C, a.grad_out + r0 * C);
  }
  if (want_loss && !a.loss_out) *loss_sum += S::acc_sum(sum);
}

// The same with label smoothing, whose loss and gradient terms cancel: the statistics in lanes of
// T, the coefficients in double lanes (finalize's formulas), rounded once.
template <class T, class Md>
void ce_short_rows_smoothed(LossOp op, const CeArgs<T>& a, int64_t begin, int64_t end, double* loss_sum) {
  static_assert(!Md::prob && Md::dot, "probability targets take the row path");
  using S = Simd<T>;
  using D = Simd<double>;
  using V = typename S::V;
  using VD = typename D::V;
  constexpr int64_t B = ShortBlock<T>::B;
  const int64_t C = a.classes;
  const bool grad = op == LossOp::grad_input || op == LossOp::loss_and_grad;
  const bool want_loss = op == LossOp::loss || op == LossOp::loss_and_grad;
  const Params<T> pr = params(a);
  const double W = a.weight_total;
  const double nan = std::numeric_limits<double>::quiet_NaN();
  ShortBlock<T> b;
  alignas(64) double md[B], xy[B], wy[B], valid[B], gk[B], ey[B], dot[B], loss[B], coef_d[B], sub_d[B], tg[B];
  alignas(64) T coef[B], sub[B], keep[B];
  int64_t y[B];
  auto sum = D::acc_zero();
  for (int64_t r0 = begin; r0 < end; r0 += B) {
    const int64_t n = std::min(B, end - r0);
    short_load(b, a.input + r0 * C, n, C);
    for (int64_t l = 0; l < b.lanes; ++l) {
      const int64_t yl = l < n ? read_target(a, r0 + l) : a.ignore_index;
      const bool v = l < n && counts_target(a, yl);
      y[l] = v ? yl : -1;
      valid[l] = v ? 1.0 : 0.0;
      xy[l] = v ? static_cast<double>(b.x[yl * B + l]) : 0.0;
      wy[l] = v ? (Md::weighted ? static_cast<double>(a.weight[yl]) : 1.0) : 0.0;
    }
    if (grad) {
      for (int64_t l = 0; l < b.lanes; ++l)
        gk[l] = a.grad_output && l < n ? static_cast<double>(a.grad_output[r0 + l]) * a.grad_scale : a.grad_scale;
    }
    if (grad)
      short_stats<T, true, false>(b);
    else
      short_stats<T, false, false>(b);
    for (int64_t l = 0; l < b.lanes; ++l) md[l] = static_cast<double>(b.m[l]);
    if (grad)
      for (int64_t l = 0; l < b.lanes; ++l) ey[l] = y[l] >= 0 ? static_cast<double>(b.e[y[l] * B + l]) : 0.0;
    {  // sum_j a_j d_j, a_j = w_j (1 without weight)
      alignas(64) T dt[B];
      for (int64_t l = 0; l < b.lanes; l += S::W) {
        const V mv = S::load(b.m + l);
        LaneSum<T> acc;
        for (int64_t c = 0; c < C; ++c) {
          const V av = S::set(Md::weighted ? a.weight[c] : T(1));
          acc.add(weighted_shift<T>(av, shifted<T>(S::load(b.x + c * B + l), mv)));
        }
        S::store(dt + l, acc.value());
      }
      for (int64_t l = 0; l < b.lanes; ++l) dot[l] = static_cast<double>(dt[l]);
    }
    // finalize's formulas, W rows at a time.
    short_rows_double(b.lanes, [&](int64_t l, auto r) {
      const VD others = load_n<double>(b.others + l, r, 0.0), m = load_n<double>(md + l, r, 0.0);
      const VD x_y = load_n<double>(xy + l, r, 0.0), w_y = load_n<double>(wy + l, r, 0.0);
      const auto ok = D::gt(load_n<double>(valid + l, r, 0.0), D::zero());
      const auto no_limit = D::eq(m, D::set(-std::numeric_limits<double>::infinity()));  // all -inf
      const VD L = vlog1p<double>(others), Z = D::set(1.0) + others;
      const auto y_is_max = D::eq(x_y, m);
      const VD dy = D::select(y_is_max, D::zero(), x_y - m);
      VD ls =
          D::set(pr.keep) * (w_y * (L - dy)) + D::set(pr.spread) * (D::set(W) * L - load_n<double>(dot + l, r, 0.0));
      ls = D::select(no_limit, D::set(nan), ls);
      store_n<double>(loss + l, r, D::select(ok, ls, D::zero()));
      if (!grad) return;
      const VD g = load_n<double>(gk + l, r, 0.0);
      const VD A = D::set(pr.keep) * w_y * g;
      const VD Bc = D::set(pr.spread) * g;
      VD cf = (A + Bc * D::set(W)) / Z;
      const VD e_y = load_n<double>(ey + l, r, 0.0);
      const VD pm1 = D::select(y_is_max, -others, -(D::set(1.0) + (others - e_y))) / Z;
      VD t = A * pm1;
      t = t + Bc * (D::set(W) * (e_y / Z) - w_y);
      cf = D::select(no_limit, D::set(nan), cf);
      store_n<double>(coef_d + l, r, D::select(ok, cf, D::zero()));
      store_n<double>(sub_d + l, r, D::select(ok, D::select(no_limit, D::set(nan), Bc), D::zero()));
      store_n<double>(tg + l, r, D::select(no_limit, D::set(nan), t));
    });
    if (want_loss) {
      if (a.loss_out) {
        for (int64_t l = 0; l < n; ++l) a.loss_out[r0 + l] = static_cast<T>(loss[l]);
      } else {
        short_rows_double(n, [&](int64_t l, auto r) { D::acc_add(sum, load_n<double>(loss + l, r, 0.0)); });
      }
    }
    if (!grad) continue;
    for (int64_t l = 0; l < b.lanes; ++l) {
      coef[l] = static_cast<T>(coef_d[l]);
      sub[l] = static_cast<T>(sub_d[l]);
      keep[l] = y[l] >= 0 ? T(1) : T(0);
    }
    for (int64_t l = 0; l < b.lanes; l += S::W) {
      const V cf = S::load(coef + l), sb = S::load(sub + l);
      const auto kp = S::gt(S::load(keep + l), S::zero());
      for (int64_t c = 0; c < C; ++c) {
        T* e = b.e + c * B + l;
        V v = S::load(e) * cf;
        v = v - sb * S::set(Md::weighted ? a.weight[c] : T(1));
        S::store(e, S::select(kp, v, S::zero()));  // ignored rows get exactly 0, even where exp(d) is NaN
      }
    }
    T* o = a.grad_out + r0 * C;
    short_transpose_out(b.e, n, C, o);
    for (int64_t l = 0; l < n; ++l)
      if (y[l] >= 0) o[l * C + y[l]] = static_cast<T>(tg[l]);
  }
  if (want_loss && !a.loss_out) *loss_sum += D::acc_sum(sum);
}

// ----------------------------------------------------------------------------- two classes

// Class targets over rows of two classes (the [batch, 2] logits of a binary classifier): with
// z = x_o - x_y (o the other class) the row is a logistic loss,
//   nll_y = softplus(z),  nll_o = softplus(-z),  p_o = sigmoid(z),  p_y - 1 = -p_o,
// one exp and one log1p of e = exp(-|z|) a row, in lanes across rows (a row a lane: the pairs
// deinterleaved, the targets compared as masks, nothing indexed by a target): no max, no sum,
// no transpose. As in row_softmax.h, tied logits (inf ones included) give z = 0 and a row of
// -inf has no limit (NaN).
// Loss, keep = 1 - eps and spread = eps / 2 (both parts weighted as in finalize):
//   c_y nll_y + c_o nll_o,  c_y = w_y (keep + spread) (w_y without smoothing),  c_o = spread w_o;
// gradient (times g, the upstream gradient and the mean's divisor), A = keep w_y g, B = spread g:
//   at o:  A p_o + B (W p_o - w_o),   at y:  -A p_o + B (W p_y - w_y)   (W = w_0 + w_1).
template <class T, class Md>
void ce_two_classes(LossOp op, const CeArgs<T>& a, int64_t begin, int64_t end, double* loss_sum) {
  static_assert(!Md::prob, "probability targets take the row path");
  // The lanes: float32 rows in float lanes (W rows a vector, every result within 3.2 ulp,
  // measured), except with label smoothing, whose gradient terms cancel: double lanes there
  // (and for float64), where float32 results are rounded once (within 0.5 ulp).
  using L = std::conditional_t<std::is_same_v<T, float> && !Md::dot, float, double>;
  using S = Simd<L>;
  using V = typename S::V;
  using M = typename S::M;
  constexpr int64_t W = S::W;
  constexpr L inf = std::numeric_limits<L>::infinity();
  const bool grad = op == LossOp::grad_input || op == LossOp::loss_and_grad;
  const bool want_loss = op == LossOp::loss || op == LossOp::loss_and_grad;
  const L keep = static_cast<L>(1.0 - a.label_smoothing), spread = static_cast<L>(a.label_smoothing / 2.0);
  const L keep_spread = static_cast<L>(1.0 - a.label_smoothing / 2.0);
  const V zero = S::zero(), one = S::set(L(1)), nan = S::set(std::numeric_limits<L>::quiet_NaN());
  const V g_all = S::set(static_cast<L>(a.grad_scale));
  const V w0 = S::set(Md::weighted ? static_cast<L>(a.weight[0]) : L(1));
  const V w1 = S::set(Md::weighted ? static_cast<L>(a.weight[1]) : L(1));
  // A target counts when it is 0 or 1 and not ignore_index (counts_target); other values,
  // from another thread writing the targets during the call, are ignored.
  const int64_t classes_and_ignore[3] = {0, 1, a.ignore_index};
  auto sum = S::acc_zero();
  // W rows: logits x (2W values), targets y (W), per-sample upstream gradient gout (W, or
  // null), outputs loss_o (W, when per sample) and grad_o (2W).
  auto rows = [&](const T* x, const int64_t* y, const T* gout, T* loss_o, T* grad_o) {
    M is[3];
    S::eq_i64(y, classes_and_ignore, is);
    const M y_is_1 = is[1], valid = S::mask_and(S::mask_or(is[0], is[1]), S::mask_not(is[2]));
    V x0, x1;
    S::load_pairs(x, x0, x1);
    const V vy = S::select(y_is_1, x1, x0), vo = S::select(y_is_1, x0, x1);
    const M tie = S::eq(vy, vo);
    // z = x_o - x_y = z_hi + z_lo: float lanes keep the rounding error of the difference
    // (TwoSum), which exp(-|z|) would otherwise magnify by |z| (to ~40 ulp at z = -80); in double
    // lanes float32 logits give z exactly, and float64 ones take e from shifted_exp, where the
    // error stays below its ulp.
    const V diff = vo - vy;
    V z = S::select(tie, zero, diff), z_lo = zero, e;  // e = exp(-|z|)
    if constexpr (std::is_same_v<L, float>) {
      const V bv = diff - vo;
      const V err = (vo - (diff - bv)) + (-vy - bv);
      // none at a tie or an infinite z (err is NaN there)
      z_lo = S::select(S::mask_and(S::mask_not(tie), S::lt(S::abs(diff), S::set(inf))), err, zero);
      const V e_hi = vexp_nonpos<L>(-S::abs(z));
      // exp(-|z_hi + z_lo|) = e_hi (1 -+ z_lo), |z_lo| <= 2^-24 |z|: the square is far below an ulp.
      e = S::fma(e_hi, S::select(S::lt(z, zero), z_lo, -z_lo), e_hi);
    } else if constexpr (std::is_same_v<T, float>) {
      e = vexp_nonpos<L>(-S::abs(z));
    } else {
      const V scaled = shifted_exp<L>(S::min(vy, vo), S::max(vy, vo)) * S::set(exp_unscale<L>());
      e = S::select(tie, one, scaled);
    }
    // No limit (both -inf) or a NaN logit: the row's loss and gradient are NaN (ignored rows 0).
    const M undefined = S::mask_or(S::eq(S::max(vy, vo), S::set(-inf)), S::isnan(z));
    const V L1 = vlog1p_unit<L>(e);
    const M pos = S::gt(z, zero), neg = S::lt(z, zero);
    const V w_y = Md::weighted ? S::select(y_is_1, w1, w0) : one;
    const V w_o = Md::weighted ? S::select(y_is_1, w0, w1) : one;
    if (want_loss) {
      // nll_y = softplus(z) = max(z, 0) + log1p(e), nll_o = softplus(-z), z's two parts added last
      const V nll_y = S::select(pos, z, zero) + (S::select(pos, z_lo, zero) + L1);
      V ls = (Md::dot ? w_y * S::set(keep_spread) : w_y) * nll_y;
      if constexpr (Md::dot) {
        const V nll_o = S::select(neg, -z, zero) + (S::select(neg, -z_lo, zero) + L1);
        // c_o nll_o is 0 where c_o is (a zero weight at a -inf logit), weighted_shift's limit.
        ls = ls + weighted_shift<L>(w_o * S::set(spread), nll_o);
      }
      ls = S::select(valid, S::select(undefined, nan, ls), zero);
      if (loss_o)
        S::store(loss_o, ls);
      else
        S::acc_add(sum, ls);
    }
    if (!grad) return;
    const SigmoidPair<L> p = sigmoid_pair_from_exp<L>(z, e);  // pos = p_o, neg = p_y
    const V g = gout ? S::load(gout) * g_all : g_all;
    const V A = Md::dot ? S::set(keep) * w_y * g : w_y * g;
    V at_o = A * p.pos, at_y = -(A * p.pos);
    if constexpr (Md::dot) {
      const V Bc = S::set(spread) * g, Wt = S::set(static_cast<L>(a.weight_total));
      at_o = at_o + Bc * (Wt * p.pos - w_o);
      at_y = at_y + Bc * (Wt * p.neg - w_y);
    }
    at_o = S::select(valid, S::select(undefined, nan, at_o), zero);
    at_y = S::select(valid, S::select(undefined, nan, at_y), zero);
    S::store_pairs(grad_o, S::select(y_is_1, at_o, at_y), S::select(y_is_1, at_y, at_o));
  };
  const T* gout = grad && a.grad_output ? a.grad_output : nullptr;
  T* loss_o = want_loss ? a.loss_out : nullptr;
  int64_t r = begin;
  for (; r + W <= end; r += W)
    rows(a.input + 2 * r, a.target + r, gout ? gout + r : nullptr, loss_o ? loss_o + r : nullptr,
         grad ? a.grad_out + 2 * r : nullptr);
  if (r < end) {  // the last rows through a padded copy: target 2 never counts, logits 0 are finite
    const int64_t n = end - r;
    T x[2 * W] = {}, gb[W] = {}, lb[W], ob[2 * W];
    int64_t y[W];
    for (int64_t l = 0; l < W; ++l) y[l] = l < n ? read_target(a, r + l) : 2;
    std::copy(a.input + 2 * r, a.input + 2 * end, x);
    if (gout) std::copy(gout + r, gout + end, gb);
    rows(x, y, gout ? gb : nullptr, loss_o ? lb : nullptr, ob);
    if (loss_o) std::copy(lb, lb + n, loss_o + r);
    if (grad) std::copy(ob, ob + 2 * n, a.grad_out + 2 * r);
  }
  if (want_loss && !a.loss_out) *loss_sum += S::acc_sum(sum);
}

// ----------------------------------------------------------------------------- lanes (inner > 1)

// The lanes of one unit: x points at class 0 of lane 0; element (c, l) is x[c * inner + l].
template <class T>
void lanes_max(const T* x, int64_t C, int64_t inner, int64_t nl, T* m) {
  using S = Simd<T>;
  const T ninf = -std::numeric_limits<T>::infinity();
  std::fill(m, m + nl, ninf);
  for (int64_t c = 0; c < C; ++c) {
    const T* row = x + c * inner;
    vec_loop<T>(nl, [&](int64_t l, auto r) {
      store_n<T>(m + l, r, S::max(load_n<T>(m + l, r, ninf), load_n<T>(row + l, r, ninf)));
    });
  }
}

template <class T, class Md>
void lanes_dot(const CeArgs<T>& a, const T* x, const T* t, int64_t nl, const T* m, const Params<T>& pr, double* dot,
               double* asum) {
  using S = Simd<T>;
  using V = typename S::V;
  const int64_t C = a.classes, inner = a.inner;
  T ds[K], dc[K], ss[K], sc[K];
  std::fill(ds, ds + nl, T(0));
  std::fill(dc, dc + nl, T(0));
  std::fill(ss, ss + nl, T(0));
  std::fill(sc, sc + nl, T(0));
  const V al = S::set(pr.alpha), be = S::set(pr.beta);
  for (int64_t c = 0; c < C; ++c) {
    const T* row = x + c * inner;
    const T* trow = Md::prob ? t + c * inner : nullptr;
    const V wv = S::set(Md::weighted ? a.weight[c] : T(1));
    vec_loop<T>(nl, [&](int64_t l, auto r) {
      const V tv = Md::prob ? load_n<T>(trow + l, r, T(0)) : S::zero();
      const V av = class_coef<Md, T>(wv, tv, al, be);
      const V d = shifted<T>(load_n<T>(row + l, r, T(0)), load_n<T>(m + l, r, T(0)));
      kahan_add<T>(ds, dc, l, r, weighted_shift<T>(av, d));
      if (Md::prob) kahan_add<T>(ss, sc, l, r, av);
    });
  }
  for (int64_t l = 0; l < nl; ++l) {
    dot[l] = static_cast<double>(ds[l]) - static_cast<double>(dc[l]);
    asum[l] = static_cast<double>(ss[l]) - static_cast<double>(sc[l]);
  }
}

// others per lane (row_others' definition, ties counted per lane); stores exp(d) into E when
// given (E may alias x: each element is read before it is written).
template <class T>
void lanes_exp(const T* x, int64_t C, int64_t inner, int64_t nl, const T* m, T* E, double* others) {
  using S = Simd<T>;
  using V = typename S::V;
  T es[K], ec[K], ties[K];
  std::fill(es, es + nl, T(0));
  std::fill(ec, ec + nl, T(0));
  std::fill(ties, ties + nl, T(0));
  const V unscale = S::set(exp_unscale<T>());
  for (int64_t c = 0; c < C; ++c) {
    const T* row = x + c * inner;
    T* erow = E ? E + c * inner : nullptr;
    vec_loop<T>(nl, [&](int64_t l, auto r) {
      const V xv = load_n<T>(row + l, r, T(0));
      const V mv = load_n<T>(m + l, r, T(0));
      const auto tie = S::eq(xv, mv);
      const V e = shifted_exp<T>(xv, mv);  // scaled by 2^k
      kahan_add<T>(es, ec, l, r, S::select(tie, S::zero(), e));
      store_n<T>(ties + l, r, load_n<T>(ties + l, r, T(0)) + S::select(tie, S::set(T(1)), S::zero()));
      if (erow) store_n<T>(erow + l, r, S::select(tie, S::set(T(1)), e * unscale));
    });
  }
  const double back = static_cast<double>(exp_unscale<T>());
  for (int64_t l = 0; l < nl; ++l)
    others[l] = (static_cast<double>(es[l]) - static_cast<double>(ec[l])) * back + (static_cast<double>(ties[l]) - 1.0);
}

template <class T, class Md>
void ce_lanes(LossOp op, const CeArgs<T>& a, int64_t begin, int64_t end, double* loss_sum) {
  using S = Simd<T>;
  using V = typename S::V;
  const int64_t C = a.classes, inner = a.inner;
  const int64_t B = ce_lane_block(C, inner, sizeof(T));
  const int64_t nb = (inner + B - 1) / B;
  const bool grad = op == LossOp::grad_input || op == LossOp::loss_and_grad;
  const bool want_loss = op == LossOp::loss || op == LossOp::loss_and_grad;
  const Params<T> pr = params(a);
  const V al = S::set(pr.alpha), be = S::set(pr.beta);
  Group<T> g;
  double ey[K];
  for (int64_t u = begin; u < end; ++u) {
    const int64_t n = u / nb, i0 = (u % nb) * B, nl = std::min(B, inner - i0);
    const int64_t off = n * C * inner + i0;
    const T* x = a.input + off;
    const T* t = Md::prob ? a.probs + off : nullptr;
    T* E = grad ? a.grad_out + off : nullptr;
    g.count = nl;
    g.s0 = n * inner + i0;
    for (int64_t l = 0; l < nl; ++l) {
      g.y[l] = Md::prob ? 0 : read_target(a, g.s0 + l);
      g.valid[l] = Md::prob || counts_target(a, g.y[l]);
    }
    lanes_max(x, C, inner, nl, g.m);
    if (Md::dot) lanes_dot<T, Md>(a, x, t, nl, g.m, pr, g.dot, g.asum);
    for (int64_t l = 0; l < nl; ++l) g.xy[l] = !Md::prob && g.valid[l] ? x[g.y[l] * inner + l] : T(0);
    lanes_exp(x, C, inner, nl, g.m, E, g.others);
    finalize<T, Md>(op, a, pr, g, want_loss, loss_sum);
    if (grad) {
      for (int64_t l = 0; l < nl; ++l)
        ey[l] = !Md::prob && g.valid[l] ? static_cast<double>(E[g.y[l] * inner + l]) : 0.0;
      for (int64_t c = 0; c < C; ++c) {
        T* orow = E + c * inner;
        const T* trow = Md::prob ? t + c * inner : nullptr;
        const V wv = S::set(Md::weighted ? a.weight[c] : T(1));
        vec_loop<T>(nl, [&](int64_t l, auto r) {
          V v = load_n<T>(orow + l, r, T(0)) * load_n<T>(g.coef + l, r, T(0));
          if constexpr (Md::dot) {
            const V tv = Md::prob ? load_n<T>(trow + l, r, T(0)) : S::zero();
            v = v - load_n<T>(g.sub + l, r, T(0)) * class_coef<Md, T>(wv, tv, al, be);
          }
          // Ignored samples get exactly 0, even where exp(d) is NaN.
          const auto keep = S::gt(load_n<T>(g.keep + l, r, T(0)), S::zero());
          store_n<T>(orow + l, r, S::select(keep, v, S::zero()));
        });
      }
      if (!Md::prob)
        for (int64_t l = 0; l < nl; ++l)
          if (g.valid[l]) E[g.y[l] * inner + l] = target_grad<T, Md>(a, g, l, ey[l]);
    }
    if (op == LossOp::grad_target) {
      T* o = a.grad_out + off;
      for (int64_t c = 0; c < C; ++c) {
        const T* row = x + c * inner;
        T* orow = o + c * inner;
        const V wv = S::set(Md::weighted ? a.weight[c] : T(1));
        vec_loop<T>(nl, [&](int64_t l, auto r) {
          const V d = shifted<T>(load_n<T>(row + l, r, T(0)), load_n<T>(g.m + l, r, T(0)));
          const V cv = load_n<T>(g.coef + l, r, T(0)) * wv;
          store_n<T>(orow + l, r, cv * (load_n<T>(g.Lt + l, r, T(0)) - d));
        });
      }
    }
  }
}

// ----------------------------------------------------------------------------- entry points

template <class T, class F>
void with_mode(const CeArgs<T>& a, F f) {
  const bool w = a.weight != nullptr, prob = a.probs != nullptr, smooth = a.label_smoothing != 0.0;
  if (prob) {
    if (w)
      f(Mode<true, true, false>{});
    else
      f(Mode<false, true, false>{});
  } else if (smooth) {
    if (w)
      f(Mode<true, false, true>{});
    else
      f(Mode<false, false, true>{});
  } else {
    if (w)
      f(Mode<true, false, false>{});
    else
      f(Mode<false, false, false>{});
  }
}

template <class T>
void cross_entropy_units(LossOp op, const CeArgs<T>& a, int64_t begin, int64_t end, double* loss_sum) {
  with_mode(a, [&](auto md) {
    using Md = decltype(md);
    if constexpr (!Md::prob) {
      // The short-row kernels know neither LLM head: z_loss or a softcap takes the row kernels.
      if (a.inner == 1 && a.classes == 2 && a.z_loss == 0.0 && a.softcap == 0.0)
        return ce_two_classes<T, Md>(op, a, begin, end, loss_sum);
      if (a.inner == 1 && is_short_row(a.classes) && a.z_loss == 0.0 && a.softcap == 0.0) {
        if constexpr (Md::dot)
          return ce_short_rows_smoothed<T, Md>(op, a, begin, end, loss_sum);
        else
          return ce_short_rows<T, Md>(op, a, begin, end, loss_sum);
      }
    }
    if (a.inner == 1 && a.softcap > 0.0)
      ce_rows_capped<T, Md>(op, a, begin, end, loss_sum);
    else if (a.inner == 1)
      ce_rows<T, Md>(op, a, begin, end, loss_sum);
    else
      ce_lanes<T, Md>(op, a, begin, end, loss_sum);
  });
}

// The rows cross_entropy_units gives ce_rows, with class targets.
bool takes_low_rows(LossOp op, const CeArgs<float>& a) {
  if (a.inner != 1 || !a.target || a.softcap != 0.0 || op == LossOp::grad_target) return false;
  return !(is_short_row(a.classes) && a.z_loss == 0.0);
}

// 16-bit rows through LowRows (cross_entropy.h).
void cross_entropy_low_rows(LowFormat fmt, LossOp op, const CeArgs<float>& a, const uint16_t* input, uint16_t* grad_out,
                            int64_t begin, int64_t end, double* loss_sum) {
  thread_local std::vector<float> scratch;  // a group of float32 rows, kept for the thread's life
  const size_t need = static_cast<size_t>(row_group(a.classes, sizeof(float)) * a.classes);
  if (scratch.size() < need) scratch.resize(need);
  with_mode(a, [&](auto md) {
    using Md = decltype(md);
    if constexpr (!Md::prob) {
      if (fmt == LowFormat::bf16)
        ce_rows_io<float, Md>(op, a, LowRows<Bf16>{a, input, grad_out, scratch.data()}, begin, end, loss_sum);
      else
        ce_rows_io<float, Md>(op, a, LowRows<F16>{a, input, grad_out, scratch.data()}, begin, end, loss_sum);
    }
  });
}

// NLL reads one element per sample: loss -w_y x_y; the gradient is zero but -g w_y at y.
template <class T>
void nll_units(LossOp op, const CeArgs<T>& a, int64_t begin, int64_t end, double* loss_sum) {
  const int64_t C = a.classes, inner = a.inner;
  const int64_t B = inner == 1 ? 1 : ce_lane_block(C, inner, sizeof(T));
  const int64_t nb = (inner + B - 1) / B;
  const bool grad = op == LossOp::grad_input || op == LossOp::loss_and_grad;
  const bool want_loss = op == LossOp::loss || op == LossOp::loss_and_grad;
  double wy[K];
  int64_t ys[K];
  double sum = 0.0;
  for (int64_t u = begin; u < end; ++u) {
    const int64_t n = u / nb, i0 = (u % nb) * B, nl = std::min(B, inner - i0);
    const int64_t off = n * C * inner + i0, s0 = n * inner + i0;
    for (int64_t l = 0; l < nl; ++l) {
      const int64_t y = read_target(a, s0 + l);
      const bool valid = counts_target(a, y);
      ys[l] = valid ? y : -1;
      wy[l] = valid ? (a.weight ? static_cast<double>(a.weight[y]) : 1.0) : 0.0;
      if (!want_loss) continue;
      // Read before the gradient below overwrites the slab (out may be the input).
      const double loss = valid ? -wy[l] * static_cast<double>(a.input[off + y * inner + l]) : 0.0;
      if (a.loss_out)
        a.loss_out[s0 + l] = static_cast<T>(loss);
      else
        sum += loss;
    }
    if (!grad) continue;
    for (int64_t c = 0; c < C; ++c) std::fill(a.grad_out + off + c * inner, a.grad_out + off + c * inner + nl, T(0));
    for (int64_t l = 0; l < nl; ++l) {
      if (ys[l] < 0) continue;
      const double gk = (a.grad_output ? static_cast<double>(a.grad_output[s0 + l]) : 1.0) * a.grad_scale;
      a.grad_out[off + ys[l] * inner + l] = static_cast<T>(-wy[l] * gk);
    }
  }
  *loss_sum += sum;
}

// Weighted: sum weight[y] in sample order; without weight the sum of 1s is the count itself
// (exact below 2^53), so the loop carries no floating-point chain. The count of non-ignored
// samples is also z_loss's divisor.
template <class T, bool Weighted>
int64_t check_targets_impl(const CeArgs<T>& a, int64_t begin, int64_t end, double* weight_sum) {
  double s = 0.0;
  int64_t bad = -1, counted = 0;
  const uint64_t classes = static_cast<uint64_t>(a.classes);
  const int64_t ignore = a.ignore_index;
  auto first_bad = [&](int64_t from, int64_t to) {
    for (int64_t i = from; i < to; ++i) {
      const int64_t y = read_target(a, i);
      if (y == ignore) continue;
      if (static_cast<uint64_t>(y) >= classes) return i;  // negative or >= C
      if constexpr (Weighted) s += static_cast<double>(a.weight[y]);
      ++counted;
    }
    return int64_t{-1};
  };
  if constexpr (Weighted) {
    bad = first_bad(begin, end);
  } else {
    // Unweighted, blocks of targets are counted and checked without branches (the compiler
    // vectorizes the loop); a block with a bad target is read again to name the first. Which
    // value a target another thread is changing has here does not matter: the kernels read
    // each target again, once, and ignore one outside [0, C) (counts_target).
    constexpr int64_t kBlock = 512;
    for (int64_t b = begin; b < end && bad < 0; b += kBlock) {
      const int64_t e = std::min(end, b + kBlock);
      int64_t block_counted = 0;
      uint64_t any_bad = 0;
      for (int64_t i = b; i < e; ++i) {
        const int64_t y = a.target[i];
        const uint64_t counts = y != ignore;
        block_counted += static_cast<int64_t>(counts);
        any_bad |= counts & static_cast<uint64_t>(static_cast<uint64_t>(y) >= classes);
      }
      if (any_bad)
        bad = first_bad(b, e);
      else
        counted += block_counted;
    }
  }
  *weight_sum += Weighted ? s : static_cast<double>(counted);
  if (a.z_loss != 0.0) weight_sum[1] += static_cast<double>(counted);
  return bad;
}

template <class T>
int64_t check_targets(const CeArgs<T>& a, int64_t begin, int64_t end, double* weight_sum) {
  return a.weight ? check_targets_impl<T, true>(a, begin, end, weight_sum)
                  : check_targets_impl<T, false>(a, begin, end, weight_sum);
}

// W = sum_c weight[c], in class order (its rounding does not depend on the thread count).
template <class T>
double class_weight_sum(const T* weight, int64_t classes) {
  double s = 0.0;
  for (int64_t c = 0; c < classes; ++c) s += static_cast<double>(weight[c]);
  return s;
}

template <class T>
constexpr CrossEntropyKernels<T> make_kernels() {
  return {check_targets<T>, class_weight_sum<T>, cross_entropy_units<T>, nll_units<T>};
}

}  // namespace

const CrossEntropyTable& cross_entropy_table() {
  static const CrossEntropyTable table{make_kernels<float>(), make_kernels<double>(), takes_low_rows,
                                       cross_entropy_low_rows};
  return table;
}

}  // namespace LO_TARGET
}  // namespace logitops
