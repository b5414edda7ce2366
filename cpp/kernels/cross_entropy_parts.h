// The pieces every softmax-shaped loss is built from (cross_entropy.cpp today; the fused
// linear cross-entropy, z-loss and softcap next): the per-class coefficients, a group of
// samples with its statistics, `finalize` (losses and gradient coefficients of a group), the
// gradient at the target class and the row dot. The formulas are cross_entropy.h's.
//
// Like everything over the vector layer, this header is compiled once per instruction set,
// inside namespace LO_TARGET.
#pragma once

#include <algorithm>
#include <limits>

#include "kernels/cross_entropy.h"
#include "kernels/row_softmax.h"

namespace logitops {
namespace LO_TARGET {

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

// Whether a sample's class target y counts: not ignore_index, and in [0, C). Each kernel reads
// a target once and uses only that copy. The call checked every target before the kernels ran,
// so one outside [0, C) here was changed by another thread since (the GIL is released): it is
// then ignored, so no read or write leaves the sample (the result is unspecified under such a
// race, as NumPy's is; memory stays safe).
//
// "Reads a target once" needs read_target: with a plain load the compiler may load the same
// element again for a later use of the copy (legal for memory no other thread writes), and a
// changed target then passed the check with one value and was used with another (found: a
// segfault in the lanes path). A relaxed atomic load is one load whose value every use sees;
// it costs nothing here (one per sample).
template <class T>
inline int64_t read_target(const CeArgs<T>& a, int64_t sample) {
  return __atomic_load_n(a.target + sample, __ATOMIC_RELAXED);
}

template <class T>
inline bool counts_target(const CeArgs<T>& a, int64_t y) {
  return y != a.ignore_index && static_cast<uint64_t>(y) < static_cast<uint64_t>(a.classes);
}

// Samples per group at most (a row group or a block of lanes).
constexpr int64_t K = kCeMaxLanes;

template <class T>
struct Group {
  int64_t count = 0;  // samples s0 .. s0 + count - 1
  int64_t s0 = 0;
  T m[K];   // maximum logit
  T xy[K];  // logit at the target (class targets)
  int64_t y[K];
  bool valid[K];     // not ignored
  double others[K];  // Z - 1
  double dot[K];     // sum_j a_j d_j
  double asum[K];    // S = sum_j a_j (probability targets)
  double L[K];       // log1p(others)
  // Gradient coefficients (finalize): e_j * coef - sub * a_j; for the target element
  // A (p_y - 1) + B (W p_y - w_y); grad_target: coef (L - d_j) w_j.
  T coef[K], sub[K], keep[K], Lt[K];
  double A[K], B[K];
  double zc[K];  // z_loss: the z part's gradient is zc p_j (zc = gz 2 z lse)
};

template <class T>
struct Params {
  T alpha, beta;  // q = t alpha + beta
  double keep;    // 1 - e
  double spread;  // e / C
};

template <class T>
Params<T> params(const CeArgs<T>& a) {
  const double e = a.label_smoothing;
  const double spread = a.classes > 0 ? e / static_cast<double>(a.classes) : 0.0;
  return {static_cast<T>(1.0 - e), static_cast<T>(spread), 1.0 - e, spread};
}

// Step 2 of the file comment. Writes or sums the losses when want_loss.
template <class T, class Md>
void finalize(LossOp op, const CeArgs<T>& a, const Params<T>& pr, Group<T>& g, bool want_loss, double* loss_sum) {
  vec_loop<double>(g.count, [&](int64_t k, auto r) {
    store_n<double>(g.L + k, r, vlog1p<double>(load_n<double>(g.others + k, r, 0.0)));
  });
  const double W = a.weight_total;
  const bool zl = a.z_loss != 0.0 && op != LossOp::grad_target;
  double sum = 0.0, zsum = 0.0;
  for (int64_t k = 0; k < g.count; ++k) {
    const int64_t s = g.s0 + k;
    double loss = 0.0, coef = 0.0, sub = 0.0, A = 0.0, B = 0.0, zpart = 0.0, zc = 0.0;
    if (g.valid[k]) {
      const double gk = (a.grad_output ? static_cast<double>(a.grad_output[s]) : 1.0) * a.grad_scale;
      const double L = g.L[k], Z = 1.0 + g.others[k];
      if (zl) {
        const double lse = static_cast<double>(g.m[k]) + L;
        zpart = a.z_loss * lse * lse;
        zc = (a.grad_output ? static_cast<double>(a.grad_output[s]) : 1.0) * a.z_grad_scale * 2.0 * a.z_loss * lse;
      }
      if (g.m[k] == -std::numeric_limits<T>::infinity() && a.classes > 0) {
        // all -inf: no limit
        loss = coef = sub = A = B = zpart = zc = std::numeric_limits<double>::quiet_NaN();
      } else if (op == LossOp::grad_target) {
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
      if (zl) coef += zc / Z;
    }
    if (want_loss) {
      if (a.loss_out)
        a.loss_out[s] = static_cast<T>(loss + zpart);
      else
        sum += loss, zsum += zpart;
    }
    g.coef[k] = static_cast<T>(coef);
    g.sub[k] = static_cast<T>(sub);
    g.keep[k] = g.valid[k] ? T(1) : T(0);
    g.Lt[k] = static_cast<T>(g.L[k]);
    g.A[k] = A;
    g.B[k] = B;
    g.zc[k] = zc;
  }
  *loss_sum += sum;
  if (zl) loss_sum[1] += zsum;
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
  if (a.z_loss != 0.0) v += g.zc[k] * (ey / Z);
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

}  // namespace LO_TARGET
}  // namespace logitops
