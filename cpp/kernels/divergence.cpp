// kl_div and sigmoid_focal_loss kernels (see divergence.h), written once over the vector layer;
// this file is compiled once per instruction set with LO_TARGET naming it.
//
// One driver (run_range) serves both losses and every operation: it walks the elements in
// blocks, widens a float32 block to double (a float64 block is used in place), applies a loss
// policy (KlDiv or Focal: the formulas) to one double vector at a time, and rounds the block's
// results back to the storage type once.
#include "kernels/divergence.h"

#include <algorithm>
#include <type_traits>

#include "kernels/loops.h"
#include "simd/vmath.h"

namespace logitops {
namespace LO_TARGET {
namespace {

using D = Simd<double>;
using V = D::V;

// Elements per block: the double buffers of a float32 block stay in L1.
constexpr int64_t kBlock = 256;

// The elements p[0, n) as doubles: p itself for double data, else widened into buf.
template <class T>
const double* widen(const T* p, int64_t n, double* buf) {
  if constexpr (std::is_same_v<T, double>) {
    (void)n;
    (void)buf;
    return p;
  } else {
    for (int64_t i = 0; i < n; ++i) buf[i] = static_cast<double>(p[i]);
    return buf;
  }
}

// Where a block's double results go: p itself for double data, else buf (then narrow()).
template <class T>
double* result_block(T* p, double* buf) {
  if constexpr (std::is_same_v<T, double>) {
    (void)buf;
    return p;
  } else {
    (void)p;
    return buf;
  }
}

template <class T>
void narrow(const double* buf, int64_t n, T* p) {
  if constexpr (!std::is_same_v<T, double>)
    for (int64_t i = 0; i < n; ++i) p[i] = static_cast<T>(buf[i]);
}

// c * v, but exactly 0 where c == 0 even for infinite v; NaN v stays NaN (as binary.cpp).
inline V mul0(V c, V v) { return D::select(D::eq(c, D::zero()), D::min(D::zero(), D::abs(v)), c * v); }

inline D::M no_lanes() { return D::lt(D::set(1.0), D::zero()); }

// kl_div (divergence.h). Log: log_target.
template <bool Log>
struct KlDiv {
  static constexpr bool checks_target = false;
  explicit KlDiv(const void*) {}

  V loss(V x, V t) const {
    if constexpr (Log) {
      return vexp<double>(t) * (t - x);
    } else {
      // 0 - t x at t = 0 (torch's xlogy(0, 0) - 0 x: nan for x = +-inf).
      return D::select(D::eq(t, D::zero()), D::zero() - t * x, t * (vlog<double>(t) - x));
    }
  }
  V grad_input(V, V t) const {
    if constexpr (Log)
      return -vexp<double>(t);
    else
      return -t;
  }
  V grad_target(V x, V t) const {
    const V one = D::set(1.0);
    if constexpr (Log) {
      // (t - x) + 1 with the rounding error of t - x added back (two-sum): no cancellation.
      const V d = t - x;
      const V bv = d - t;
      V err = (t - (d - bv)) + (-x - bv);
      err = D::select(D::isnan(err), D::zero(), err);  // d infinite (d itself keeps a NaN)
      return vexp<double>(t) * ((d + one) + err);
    } else {
      return vlog<double>(t) + (one - x);  // -inf at t = 0
    }
  }
  void loss_and_grad(V x, V t, V& l, V& g) const {
    if constexpr (Log) {
      const V et = vexp<double>(t);
      l = et * (t - x);
      g = -et;
    } else {
      l = loss(x, t);
      g = -t;
    }
  }
  D::M bad_target(V) const { return no_lanes(); }
};

// sigmoid_focal_loss (divergence.h).
struct Focal {
  static constexpr bool checks_target = true;
  V alpha, one_minus_alpha, gamma;
  bool use_alpha, gamma_zero;

  template <class A>
  explicit Focal(const A* a)
      : alpha(D::set(a->alpha)),
        one_minus_alpha(D::set(1.0 - a->alpha)),
        gamma(D::set(a->gamma)),
        use_alpha(a->alpha >= 0),
        gamma_zero(a->gamma == 0) {}

  // Everything one element needs, from x and t.
  struct Parts {
    V C, F, at, dC, r;
  };
  template <bool Grad>
  Parts parts(V x, V t) const {
    const V one = D::set(1.0);
    const V ax = D::abs(x);
    const V e = vexp_nonpos<double>(-ax);
    const V L = vlog1p_unit<double>(e);
    const V omt = one - t;
    const auto nonneg = D::ge(x, D::zero());
    const V a = D::select(nonneg, t, omt);
    const V b = D::select(nonneg, omt, t);
    Parts p;
    p.C = mul0(omt, D::max(D::zero(), x)) + mul0(t, D::max(D::zero(), -x)) + L;
    if (gamma_zero) {
      p.F = one;
    } else {
      // log(a e + b) is -|x| for b = 0 (listed so it never underflows) and 0 for b = 1; the log
      // is taken only for vectors holding a soft target (0 < b < 1).
      V inner = D::select(D::eq(b, D::zero()), -ax, D::zero());
      const auto soft = D::mask_and(D::gt(b, D::zero()), D::lt(b, one));
      if (D::any(soft)) inner = D::select(soft, vlog<double>(D::fma(a, e, b)), inner);
      p.F = vexp_nonpos<double>(gamma * (inner - L));
    }
    p.at = use_alpha ? alpha * t + one_minus_alpha * omt : one;
    if constexpr (Grad) {
      const SigmoidPair<double> sg = sigmoid_pair_from_exp<double>(x, e);
      p.dC = omt * sg.pos - t * sg.neg;
      const V s = one / (one + e);
      p.r = s / (a + mul0(b, one / e));
    }
    return p;
  }
  V loss_of(const Parts& p) const { return mul0(p.at * p.F, p.C); }
  V grad_of(const Parts& p, V t) const {
    const V term = mul0(gamma * (D::set(1.0) - (t + t)) * p.r, p.C);
    return (p.at * p.F) * (p.dC + term);
  }

  V loss(V x, V t) const { return loss_of(parts<false>(x, t)); }
  V grad_input(V x, V t) const { return grad_of(parts<true>(x, t), t); }
  V grad_target(V, V) const { return D::zero(); }  // not offered (the binding refuses it)
  void loss_and_grad(V x, V t, V& l, V& g) const {
    const Parts p = parts<true>(x, t);
    l = loss_of(p);
    g = grad_of(p, t);
  }
  D::M bad_target(V t) const { return D::mask_or(D::lt(t, D::zero()), D::gt(t, D::set(1.0))); }
};

// The driver. Ext: grad_output is an array (gradient ops) / the loss is stored per element
// (loss ops); otherwise the upstream gradient is the scalar grad_scale / the loss is summed.
template <class T, class Loss, LossOp op, bool Ext>
int run_range(const DivergenceArgs<T>& a, int64_t begin, int64_t end, double* loss_sum) {
  constexpr bool want_loss = computes_loss(op);
  constexpr bool want_grad = computes_grad(op);
  constexpr bool has_g = Ext && !want_loss;
  constexpr bool store_loss = Ext && want_loss;
  const Loss loss(&a);
  const V scale = D::set(a.grad_scale);
  alignas(64) double xb[kBlock], tb[kBlock], gb[kBlock], lb[kBlock], ob[kBlock];
  D::Acc acc = D::acc_zero();
  D::M bad = no_lanes();

  for (int64_t b = begin; b < end; b += kBlock) {
    const int64_t len = std::min(kBlock, end - b);
    const double* x = widen<T>(a.input + b, len, xb);
    const double* t = widen<T>(a.target + b, len, tb);
    const double* go = has_g ? widen<T>(a.grad_output + b, len, gb) : nullptr;
    double* lo = store_loss ? result_block<T>(a.loss_out + b, lb) : nullptr;
    double* gout = want_grad ? result_block<T>(a.grad_out + b, ob) : nullptr;
    vec_loop<double>(len, [&](int64_t j, auto r) {
      const V xv = load_n<double>(x + j, r, 0.0);
      const V tv = load_n<double>(t + j, r, 0.5);  // the fill is a valid target of both losses
      if constexpr (Loss::checks_target) bad = D::mask_or(bad, loss.bad_target(tv));
      V l = D::zero(), g = D::zero();
      if constexpr (op == LossOp::loss) l = loss.loss(xv, tv);
      if constexpr (op == LossOp::loss_and_grad) loss.loss_and_grad(xv, tv, l, g);
      if constexpr (op == LossOp::grad_input) g = loss.grad_input(xv, tv);
      if constexpr (op == LossOp::grad_target) g = loss.grad_target(xv, tv);
      if constexpr (want_grad) {
        V gs = scale;
        if constexpr (has_g) gs = gs * load_n<double>(go + j, r, 0.0);
        store_n<double>(gout + j, r, g * gs);  // after every load of element j: grad_out may be input
      }
      if constexpr (store_loss) store_n<double>(lo + j, r, l);
      if constexpr (want_loss && !store_loss) D::acc_add(acc, keep_lanes<double>(l, r));
    });
    if constexpr (want_grad) narrow<T>(ob, len, a.grad_out + b);
    if constexpr (store_loss) narrow<T>(lb, len, a.loss_out + b);
  }
  if constexpr (want_loss && !store_loss) *loss_sum += D::acc_sum(acc);
  return D::any(bad) ? kDivergenceBadTarget : 0;
}

template <class T, class Loss, LossOp op>
int run_op(const DivergenceArgs<T>& a, int64_t begin, int64_t end, double* loss_sum) {
  const bool ext = takes_grad_output(op) ? a.grad_output != nullptr : a.loss_out != nullptr;
  return ext ? run_range<T, Loss, op, true>(a, begin, end, loss_sum)
             : run_range<T, Loss, op, false>(a, begin, end, loss_sum);
}

template <class T, class Loss>
int run(LossOp op, const DivergenceArgs<T>& a, int64_t begin, int64_t end, double* loss_sum) {
  return with_loss_op(op, [&](auto o) { return run_op<T, Loss, decltype(o)::value>(a, begin, end, loss_sum); });
}

template <class T>
int kl_div(LossOp op, const DivergenceArgs<T>& a, int64_t begin, int64_t end, double* loss_sum) {
  return a.log_target ? run<T, KlDiv<true>>(op, a, begin, end, loss_sum)
                      : run<T, KlDiv<false>>(op, a, begin, end, loss_sum);
}

template <class T>
int check_unit_target(const T* target, int64_t n) {
  for (int64_t i = 0; i < n; ++i)
    if (target[i] < T(0) || target[i] > T(1)) return kDivergenceBadTarget;
  return 0;
}

template <class T>
constexpr DivergenceKernels<T> make_kernels() {
  return {kl_div<T>, run<T, Focal>, check_unit_target<T>};
}

}  // namespace

const DivergenceTable& divergence_table() {
  static const DivergenceTable table{make_kernels<float>(), make_kernels<double>()};
  return table;
}

}  // namespace LO_TARGET
}  // namespace logitops
