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

#include "kernels/row_softmax.h"

namespace logitops {
namespace LO_TARGET {
namespace {

constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();
constexpr int64_t K = kCeMaxLanes;  // samples per group at most

// ----------------------------------------------------------------------------- loop helpers

// The width of a full vector as a type, so full-width bodies compile without masks.
struct Full {};

template <class T>
inline typename Simd<T>::V load_n(const T* p, Full, T) { return Simd<T>::load(p); }
template <class T>
inline typename Simd<T>::V load_n(const T* p, int64_t r, T fill) { return Simd<T>::load_tail(p, r, fill); }
template <class T>
inline void store_n(T* p, Full, typename Simd<T>::V v) { Simd<T>::store(p, v); }
template <class T>
inline void store_n(T* p, int64_t r, typename Simd<T>::V v) { Simd<T>::store_tail(p, r, v); }
// v in the first r lanes, 0 in the others.
template <class T>
inline typename Simd<T>::V keep_lanes(typename Simd<T>::V v, Full) { return v; }
template <class T>
inline typename Simd<T>::V keep_lanes(typename Simd<T>::V v, int64_t r) {
  using S = Simd<T>;
  T ones[S::W];
  for (auto& o : ones) o = T(1);
  return S::select(S::gt(S::load_tail(ones, r, T(0)), S::zero()), v, S::zero());
}

// f(i, Full{}) for each full vector of [0, n), then f(i, r) for the r-lane tail.
template <class T, class F>
inline void vec_loop(int64_t n, F f) {
  constexpr int64_t W = Simd<T>::W;
  int64_t i = 0;
  for (; i + W <= n; i += W) f(i, Full{});
  if (i < n) f(i, n - i);
}

// The shifted exps and the second row pass (shifted_exp, row_others) live in row_softmax.h,
// shared with the primitives.

// ----------------------------------------------------------------------------- per-class terms

// What a call needs besides the logits and class targets: which terms exist is known at
// compile time, so the hot loops carry none of the others.
template <bool Weighted, bool Prob, bool Smooth>
struct Mode {
  static constexpr bool weighted = Weighted;
  static constexpr bool prob = Prob;
  // The loss has a sum_j a_j d_j term and the gradient an a_j term.
  static constexpr bool dot = Prob || Smooth;
};

// a_j = w_j q_j: w_j (1 without weight) times, for probability targets, q_j = t_j alpha + beta
// (alpha = 1 - e, beta = e/C). For class targets with smoothing a_j = w_j.
template <class Md, class T>
inline typename Simd<T>::V class_coef(typename Simd<T>::V w, typename Simd<T>::V t, typename Simd<T>::V alpha,
                                      typename Simd<T>::V beta) {
  using S = Simd<T>;
  const auto q = Md::prob ? S::fma(t, alpha, beta) : S::set(T(1));
  if constexpr (Md::weighted) return Md::prob ? w * q : w;
  return q;
}

// d = x - m, 0 where x == m (the limit at an infinite maximum).
template <class T>
inline typename Simd<T>::V shifted(typename Simd<T>::V x, typename Simd<T>::V m) {
  using S = Simd<T>;
  return S::select(S::eq(x, m), S::zero(), x - m);
}

// a * d, 0 where a == 0 (the limit where d = -inf).
template <class T>
inline typename Simd<T>::V weighted_shift(typename Simd<T>::V a, typename Simd<T>::V d) {
  using S = Simd<T>;
  return S::select(S::eq(a, S::zero()), S::zero(), a * d);
}

// Compensated (Kahan) sums per lane, state in memory: for the lane layout, where the vector
// layer's double accumulators (which only sum across lanes) do not apply.
template <class T, class R>
inline void kahan_add(T* sum, T* comp, int64_t l, R r, typename Simd<T>::V v) {
  const auto s = load_n<T>(sum + l, r, T(0));
  const auto c = load_n<T>(comp + l, r, T(0));
  const auto y = v - c;
  const auto t = s + y;
  // Once a sum is infinite its compensation is inf - inf = NaN: drop it, the infinity stands
  // (a NaN term still makes the sum NaN).
  const auto cn = (t - s) - y;
  store_n<T>(comp + l, r, Simd<T>::select(Simd<T>::isnan(cn), Simd<T>::zero(), cn));
  store_n<T>(sum + l, r, t);
}

// ----------------------------------------------------------------------------- a group of samples

template <class T>
struct Group {
  int64_t count = 0;  // samples s0 .. s0 + count - 1
  int64_t s0 = 0;
  T m[K];             // maximum logit
  T xy[K];            // logit at the target (class targets)
  int64_t y[K];
  bool valid[K];      // not ignored
  double others[K];   // Z - 1
  double dot[K];      // sum_j a_j d_j
  double asum[K];     // S = sum_j a_j (probability targets)
  double L[K];        // log1p(others)
  // Gradient coefficients (finalize): e_j * coef - sub * a_j; for the target element
  // A (p_y - 1) + B (W p_y - w_y); grad_target: coef (L - d_j) w_j.
  T coef[K], sub[K], keep[K], Lt[K];
  double A[K], B[K];
};

template <class T>
struct Params {
  T alpha, beta;     // q = t alpha + beta
  double keep;       // 1 - e
  double spread;     // e / C
};

template <class T>
Params<T> params(const CeArgs<T>& a) {
  const double e = a.label_smoothing;
  const double spread = a.classes > 0 ? e / static_cast<double>(a.classes) : 0.0;
  return {static_cast<T>(1.0 - e), static_cast<T>(spread), 1.0 - e, spread};
}

// Step 2 of the file comment. Writes or sums the losses when want_loss.
template <class T, class Md>
void finalize(CeOp op, const CeArgs<T>& a, const Params<T>& pr, Group<T>& g, bool want_loss, double* loss_sum) {
  vec_loop<double>(g.count, [&](int64_t k, auto r) {
    store_n<double>(g.L + k, r, vlog1p<double>(load_n<double>(g.others + k, r, 0.0)));
  });
  const double W = a.weight_total;
  double sum = 0.0;
  for (int64_t k = 0; k < g.count; ++k) {
    const int64_t s = g.s0 + k;
    double loss = 0.0, coef = 0.0, sub = 0.0, A = 0.0, B = 0.0;
    if (g.valid[k]) {
      const double gk = (a.grad_output ? static_cast<double>(a.grad_output[s]) : 1.0) * a.grad_scale;
      const double L = g.L[k], Z = 1.0 + g.others[k];
      if (g.m[k] == -std::numeric_limits<T>::infinity() && a.classes > 0) {
        loss = coef = sub = A = B = kNaN;  // all -inf: no limit
      } else if (op == CeOp::grad_target) {
        coef = gk * pr.keep;
      } else if (Md::prob) {
        loss = (g.asum[k] == 0.0 ? 0.0 : g.asum[k] * L) - g.dot[k];
        coef = gk * g.asum[k] / Z;
        sub = gk;
      } else {
        const double dy = g.xy[k] == g.m[k] ? 0.0 : static_cast<double>(g.xy[k]) - static_cast<double>(g.m[k]);
        const double wy = Md::weighted ? static_cast<double>(a.weight[g.y[k]]) : 1.0;
        const double nll = L - dy;
        if (Md::dot) {
          loss = pr.keep * wy * nll + pr.spread * (W * L - g.dot[k]);
          A = pr.keep * wy * gk;
          B = pr.spread * gk;
        } else {
          loss = wy * nll;
          A = wy * gk;
        }
        // Without smoothing B is 0 and W (which sums every class's weight, NaN ones included)
        // must not enter: torch's gradient never touches the weights of other classes.
        coef = (Md::dot ? A + B * W : A) / Z;
        sub = B;
      }
    }
    if (want_loss) {
      if (a.loss_out) a.loss_out[s] = static_cast<T>(loss); else sum += loss;
    }
    g.coef[k] = static_cast<T>(coef);
    g.sub[k] = static_cast<T>(sub);
    g.keep[k] = g.valid[k] ? T(1) : T(0);
    g.Lt[k] = static_cast<T>(g.L[k]);
    g.A[k] = A;
    g.B[k] = B;
  }
  *loss_sum += sum;
}

// The gradient at the target class: A (p_y - 1) + B (W p_y - w_y), with e_y = exp(d_y) as
// stored by pass 2. When y is a maximum e_y = 1 and p_y - 1 = -others / Z exactly; otherwise
// Z - e_y = 1 + (others - e_y) >= 1 does not cancel either.
template <class T, class Md>
T target_grad(const CeArgs<T>& a, const Group<T>& g, int64_t k, double ey) {
  const double others = g.others[k], Z = 1.0 + others;
  const double pm1 = (g.xy[k] == g.m[k] ? -others : -(1.0 + (others - ey))) / Z;
  double v = g.A[k] * pm1;
  if (Md::dot) {
    const double wy = Md::weighted ? static_cast<double>(a.weight[g.y[k]]) : 1.0;
    v += g.B[k] * (a.weight_total * (ey / Z) - wy);
  }
  return static_cast<T>(v);
}

// ----------------------------------------------------------------------------- rows (inner == 1)

// sum_j a_j d_j and S = sum_j a_j over a row with maximum m.
template <class T, class Md>
void row_dot(const T* x, const T* w, const T* t, int64_t n, T m, const Params<T>& pr, double* dot, double* asum) {
  using S = Simd<T>;
  using V = typename S::V;
  const V mv = S::set(m), al = S::set(pr.alpha), be = S::set(pr.beta);
  auto acc_d = S::acc_zero(), acc_s = S::acc_zero();
  vec_loop<T>(n, [&](int64_t i, auto r) {
    const V wv = Md::weighted ? load_n<T>(w + i, r, T(0)) : S::zero();
    const V tv = Md::prob ? load_n<T>(t + i, r, T(0)) : S::zero();
    const V av = keep_lanes<T>(class_coef<Md, T>(wv, tv, al, be), r);
    S::acc_add(acc_d, weighted_shift<T>(av, shifted<T>(load_n<T>(x + i, r, m), mv)));
    if (Md::prob) S::acc_add(acc_s, av);
  });
  *dot = S::acc_sum(acc_d);
  *asum = S::acc_sum(acc_s);
}

// Rows per group: enough to amortize the group's bookkeeping, few enough that the rows are
// still in cache when the gradient pass comes back to them.
inline int64_t row_group(int64_t classes, int64_t itemsize) {
  return std::clamp<int64_t>((32 << 10) / std::max<int64_t>(1, classes * itemsize), 1, K);
}

template <class T, class Md>
void ce_rows(CeOp op, const CeArgs<T>& a, int64_t begin, int64_t end, double* loss_sum) {
  using S = Simd<T>;
  using V = typename S::V;
  const int64_t C = a.classes;
  const bool grad = op == CeOp::grad_input || op == CeOp::loss_and_grad;
  const bool want_loss = op == CeOp::loss || op == CeOp::loss_and_grad;
  const Params<T> pr = params(a);
  const V al = S::set(pr.alpha), be = S::set(pr.beta);
  const int64_t G = row_group(C, sizeof(T));
  Group<T> g;
  for (int64_t r0 = begin; r0 < end; r0 += G) {
    g.count = std::min(G, end - r0);
    g.s0 = r0;
    for (int64_t k = 0; k < g.count; ++k) {
      const int64_t r = r0 + k;
      const T* xr = a.input + r * C;
      g.others[k] = g.dot[k] = g.asum[k] = 0.0;
      g.m[k] = g.xy[k] = T(0);
      g.y[k] = Md::prob ? 0 : a.target[r];
      g.valid[k] = Md::prob || g.y[k] != a.ignore_index;
      if (!g.valid[k]) continue;
      const T m = row_max(xr, C);
      g.m[k] = m;
      if (Md::dot) row_dot<T, Md>(xr, a.weight, Md::prob ? a.probs + r * C : nullptr, C, m, pr, &g.dot[k], &g.asum[k]);
      if (!Md::prob) g.xy[k] = xr[g.y[k]];
      // x_y and the dot pass have read the row: pass 2 may overwrite it.
      T* E = grad ? a.grad_out + r * C : nullptr;
      // The next row, even across a chunk boundary (a read-only hint; the chunk may be another thread's).
      const T* next = r + 1 < a.outer ? xr + C : nullptr;
      g.others[k] = row_others<T>(xr, C, m, E, nullptr, nullptr, nullptr, next);
    }
    finalize<T, Md>(op, a, pr, g, want_loss, loss_sum);
    if (grad) {
      for (int64_t k = 0; k < g.count; ++k) {
        T* o = a.grad_out + (r0 + k) * C;
        if (!g.valid[k]) {
          std::fill(o, o + C, T(0));
          continue;
        }
        const double ey = Md::prob ? 0.0 : static_cast<double>(o[g.y[k]]);
        const V coef = S::set(g.coef[k]), sub = S::set(g.sub[k]);
        const T* t = Md::prob ? a.probs + (r0 + k) * C : nullptr;
        vec_loop<T>(C, [&](int64_t j, auto r) {
          V v = load_n<T>(o + j, r, T(0)) * coef;
          if constexpr (Md::dot) {
            const V wv = Md::weighted ? load_n<T>(a.weight + j, r, T(0)) : S::zero();
            const V tv = Md::prob ? load_n<T>(t + j, r, T(0)) : S::zero();
            v = v - sub * class_coef<Md, T>(wv, tv, al, be);
          }
          store_n<T>(o + j, r, v);
        });
        if (!Md::prob) o[g.y[k]] = target_grad<T, Md>(a, g, k, ey);
      }
    }
    if (op == CeOp::grad_target) {
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
void lanes_dot(const CeArgs<T>& a, const T* x, const T* t, int64_t nl, const T* m, const Params<T>& pr,
               double* dot, double* asum) {
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
void ce_lanes(CeOp op, const CeArgs<T>& a, int64_t begin, int64_t end, double* loss_sum) {
  using S = Simd<T>;
  using V = typename S::V;
  const int64_t C = a.classes, inner = a.inner;
  const int64_t B = ce_lane_block(C, inner, sizeof(T));
  const int64_t nb = (inner + B - 1) / B;
  const bool grad = op == CeOp::grad_input || op == CeOp::loss_and_grad;
  const bool want_loss = op == CeOp::loss || op == CeOp::loss_and_grad;
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
      g.y[l] = Md::prob ? 0 : a.target[g.s0 + l];
      g.valid[l] = Md::prob || g.y[l] != a.ignore_index;
    }
    lanes_max(x, C, inner, nl, g.m);
    if (Md::dot) lanes_dot<T, Md>(a, x, t, nl, g.m, pr, g.dot, g.asum);
    for (int64_t l = 0; l < nl; ++l) g.xy[l] = !Md::prob && g.valid[l] ? x[g.y[l] * inner + l] : T(0);
    lanes_exp(x, C, inner, nl, g.m, E, g.others);
    finalize<T, Md>(op, a, pr, g, want_loss, loss_sum);
    if (grad) {
      for (int64_t l = 0; l < nl; ++l) ey[l] = !Md::prob && g.valid[l] ? static_cast<double>(E[g.y[l] * inner + l]) : 0.0;
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
    if (op == CeOp::grad_target) {
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
    if (w) f(Mode<true, true, false>{}); else f(Mode<false, true, false>{});
  } else if (smooth) {
    if (w) f(Mode<true, false, true>{}); else f(Mode<false, false, true>{});
  } else {
    if (w) f(Mode<true, false, false>{}); else f(Mode<false, false, false>{});
  }
}

template <class T>
void cross_entropy_units(CeOp op, const CeArgs<T>& a, int64_t begin, int64_t end, double* loss_sum) {
  with_mode(a, [&](auto md) {
    using Md = decltype(md);
    if (a.inner == 1) ce_rows<T, Md>(op, a, begin, end, loss_sum); else ce_lanes<T, Md>(op, a, begin, end, loss_sum);
  });
}

// NLL reads one element per sample: loss -w_y x_y; the gradient is zero but -g w_y at y.
template <class T>
void nll_units(CeOp op, const CeArgs<T>& a, int64_t begin, int64_t end, double* loss_sum) {
  const int64_t C = a.classes, inner = a.inner;
  const int64_t B = inner == 1 ? 1 : ce_lane_block(C, inner, sizeof(T));
  const int64_t nb = (inner + B - 1) / B;
  const bool grad = op == CeOp::grad_input || op == CeOp::loss_and_grad;
  const bool want_loss = op == CeOp::loss || op == CeOp::loss_and_grad;
  double wy[K];
  double sum = 0.0;
  for (int64_t u = begin; u < end; ++u) {
    const int64_t n = u / nb, i0 = (u % nb) * B, nl = std::min(B, inner - i0);
    const int64_t off = n * C * inner + i0, s0 = n * inner + i0;
    for (int64_t l = 0; l < nl; ++l) {
      const int64_t y = a.target[s0 + l];
      const bool valid = y != a.ignore_index;
      wy[l] = valid ? (a.weight ? static_cast<double>(a.weight[y]) : 1.0) : 0.0;
      if (!want_loss) continue;
      // Read before the gradient below overwrites the slab (out may be the input).
      const double loss = valid ? -wy[l] * static_cast<double>(a.input[off + y * inner + l]) : 0.0;
      if (a.loss_out) a.loss_out[s0 + l] = static_cast<T>(loss); else sum += loss;
    }
    if (!grad) continue;
    for (int64_t c = 0; c < C; ++c) std::fill(a.grad_out + off + c * inner, a.grad_out + off + c * inner + nl, T(0));
    for (int64_t l = 0; l < nl; ++l) {
      const int64_t y = a.target[s0 + l];
      if (y == a.ignore_index) continue;
      const double gk = (a.grad_output ? static_cast<double>(a.grad_output[s0 + l]) : 1.0) * a.grad_scale;
      a.grad_out[off + y * inner + l] = static_cast<T>(-wy[l] * gk);
    }
  }
  *loss_sum += sum;
}

template <class T>
int64_t check_targets(const CeArgs<T>& a, int64_t begin, int64_t end, double* weight_sum) {
  double s = 0.0;
  int64_t bad = -1;
  for (int64_t i = begin; i < end; ++i) {
    const int64_t y = a.target[i];
    if (y == a.ignore_index) continue;
    if (y < 0 || y >= a.classes) {
      bad = i;
      break;
    }
    s += a.weight ? static_cast<double>(a.weight[y]) : 1.0;
  }
  *weight_sum += s;
  return bad;
}

template <class T>
constexpr CrossEntropyKernels<T> make_kernels() {
  return {check_targets<T>, cross_entropy_units<T>, nll_units<T>};
}

}  // namespace

const CrossEntropyTable& cross_entropy_table() {
  static const CrossEntropyTable table{make_kernels<float>(), make_kernels<double>()};
  return table;
}

}  // namespace LO_TARGET
}  // namespace logitops
