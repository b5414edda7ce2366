// Binary cross-entropy kernels (see binary.h), written once over the vector layer; this file is
// compiled once per instruction set with LO_TARGET naming it.
//
// One driver (run_range) serves both losses and every operation: it walks the elements in
// blocks, resolves each broadcast weight to a contiguous pointer once per block, and applies a
// loss policy (LogitLoss or ProbLoss: the elementwise formulas) to one vector at a time, so the
// reduction, the weights, the upstream gradient and the fused loss + gradient are shared.
#include "kernels/binary.h"

#include <algorithm>
#include <type_traits>

#include "kernels/loops.h"
#include "simd/vmath.h"

namespace logitops {
namespace LO_TARGET {
namespace {

// Elements per block: broadcast weights are resolved to a contiguous pointer once per block.
constexpr int64_t kBlock = 512;

// Hands out the weights of a block of elements as a contiguous array, without an input-sized
// copy: a pointer into the weight itself where its layout allows, else a block-sized buffer.
template <class T>
class WeightCursor {
 public:
  explicit WeightCursor(const BroadcastView<T>& v) : v_(v) {
    if (!v_.data) return;
    if (v_.period == 1) {
      std::fill(buf_, buf_ + kBlock, v_.data[0]);
      mode_ = Mode::constant;
    } else if (v_.block == 1 && v_.period < kBlock) {
      // A short trailing vector (pos_weight (C,)): tiled once; a block at i starts at i % period.
      for (int64_t m = 0; m < kBlock + v_.period; ++m) buf_[m] = v_.data[m % v_.period];
      mode_ = Mode::tiled;
    }
  }

  // The weights of elements [i, i + len), len <= kBlock.
  const T* at(int64_t i, int64_t len) {
    if (mode_ == Mode::constant) return buf_;
    if (mode_ == Mode::tiled) return buf_ + i % v_.period;
    if (v_.block == 1) {
      const int64_t off = i % v_.period;
      if (off + len <= v_.period) return v_.data + off;
    } else if ((i + len - 1) / v_.block == i / v_.block) {
      const int64_t j = (i / v_.block) % v_.period;  // one weight for the whole block
      if (j != filled_) {
        std::fill(buf_, buf_ + kBlock, v_.data[j]);
        filled_ = j;
      }
      return buf_;
    }
    // The block straddles a boundary of the weight's layout: gather it.
    filled_ = -1;
    int64_t in_run = i % v_.block, j = (i / v_.block) % v_.period;
    for (int64_t m = 0; m < len; ++m) {
      buf_[m] = v_.data[j];
      if (++in_run == v_.block) {
        in_run = 0;
        if (++j == v_.period) j = 0;
      }
    }
    return buf_;
  }

 private:
  enum class Mode { constant, tiled, general };
  BroadcastView<T> v_;
  Mode mode_ = Mode::general;
  int64_t filled_ = -1;  // which weight buf_ holds throughout (general mode), -1 if none
  T buf_[2 * kBlock];
};

template <class T>
using VecOf = typename Simd<T>::V;

// c * v, but exactly 0 where c == 0 even for infinite v: the limit of a vanishing term. A NaN
// v stays NaN (min(0, |v|) is 0, or NaN for NaN v: min returns its second operand on NaN).
template <class T>
inline VecOf<T> mul0(VecOf<T> c, VecOf<T> v) {
  using S = Simd<T>;
  return S::select(S::eq(c, S::zero()), S::min(S::zero(), S::abs(v)), c * v);
}

// BCE with logits (formulas and derivation in binary.h). q is pos_weight (1 when absent).
template <class T, bool HasPW>
struct LogitLoss {
  using S = Simd<T>;
  using V = VecOf<T>;
  static constexpr bool checks_range = false;
  static constexpr bool takes_pos_weight = true;

  static V c1_of(V t, V q) {  // the factor of sp(-x)
    if constexpr (HasPW)
      return q * t;
    else
      return t;
  }
  // exp(-|x|), subnormal results included: there the loss term (log1p(e) = e, e.g. t = 0 and
  // x < -87.3 in float32) and the gradient (sigmoid(-|x|) = e) are that subnormal, and a weight
  // or pos_weight > 1 can lift it back into the normal range (with the subnormal's precision).
  static V e_of(V x) { return vexp_nonpos<T>(-S::abs(x)); }

  // (1 - t) sp(x) + q t sp(-x) given L = log1p(exp(-|x|)); every term >= 0 for t in [0, 1], q >= 0.
  static V loss_from(V x, V t, V q, V L) {
    const V c0 = S::set(T(1)) - t;
    const V c1 = c1_of(t, q);
    const V lin = mul0<T>(c0, S::max(S::zero(), x)) + mul0<T>(c1, S::max(S::zero(), -x));
    if constexpr (HasPW)
      return lin + (c0 + c1) * L;
    else
      return lin + L;  // (1 - t) + t = 1
  }
  // (1 - t) sigmoid(x) - q t sigmoid(-x) given e = exp(-|x|).
  static V grad_from(V x, V t, V q, V e) {
    const SigmoidPair<T> sg = sigmoid_pair_from_exp<T>(x, e);
    return (S::set(T(1)) - t) * sg.pos - c1_of(t, q) * sg.neg;
  }

  static V loss(V x, V t, V q) { return loss_from(x, t, q, vlog1p_unit<T>(e_of(x))); }
  static V grad_input(V x, V t, V q) {
    const V e = e_of(x);
    return grad_from(x, t, q, e);
  }
  static V grad_target(V x, V t, V q) {
    (void)t;
    if constexpr (HasPW) {
      // q sp(-x) - sp(x): the max terms are exact (-x for q = 1), the L term small.
      const V L = vlog1p_unit<T>(e_of(x));
      return (mul0<T>(q, S::max(S::zero(), -x)) - S::max(S::zero(), x)) + (q - S::set(T(1))) * L;
    } else {
      (void)q;
      return -x;
    }
  }
  static void loss_and_grad(V x, V t, V q, V& l, V& g) {
    const V e = e_of(x);
    l = loss_from(x, t, q, vlog1p_unit<T>(e));
    g = grad_from(x, t, q, e);
  }
};

// BCE on probabilities, with torch's clamps (binary.h).
template <class T, bool HasPW>
struct ProbLoss {
  using S = Simd<T>;
  using V = VecOf<T>;
  static constexpr bool checks_range = true;
  static constexpr bool takes_pos_weight = false;

  static V loss(V p, V t, V) {
    const V lo = S::set(T(-100));
    return (t - S::set(T(1))) * S::max(lo, vlog1p<T>(-p)) - t * S::max(lo, vlog<T>(p));
  }
  static V grad_input(V p, V t, V) {
    // torch's clamp is the float 1e-12f, for double too.
    return (p - t) / S::max(S::set(static_cast<T>(1e-12f)), (S::set(T(1)) - p) * p);
  }
  static V grad_target(V p, V, V) { return vlog1p<T>(-p) - vlog<T>(p); }
  static void loss_and_grad(V p, V t, V q, V& l, V& g) {
    l = loss(p, t, q);
    g = grad_input(p, t, q);
  }
};

// Soft margin: sp(-y x) (binary.h). For y = +-1 this is LogitLoss's loss at t = (y + 1)/2; it
// is its own policy because torch's number for other y is sp(-y x).
template <class T, bool HasPW>
struct SoftMarginLoss {
  using S = Simd<T>;
  using V = VecOf<T>;
  static constexpr bool checks_range = false;
  static constexpr bool takes_pos_weight = false;

  static V loss(V x, V y, V) { return vsoftplus<T>(-(y * x)); }
  // sigmoid(z) for z = -y x, given e = exp(-|z|).
  static V sigmoid_z(V z, V e) { return sigmoid_pair_from_exp<T>(z, e).pos; }
  static V grad_input(V x, V y, V) {
    const V z = -(y * x);
    return -(y * sigmoid_z(z, vexp_nonpos<T>(-S::abs(z))));
  }
  static V grad_target(V x, V y, V) {  // (torch has none; the binding never asks for it)
    const V z = -(y * x);
    return -(x * sigmoid_z(z, vexp_nonpos<T>(-S::abs(z))));
  }
  static void loss_and_grad(V x, V y, V, V& l, V& g) {
    const V z = -(y * x);
    const V e = vexp_nonpos<T>(-S::abs(z));
    l = S::max(S::zero(), z) + vlog1p_unit<T>(e);
    g = -(y * sigmoid_z(z, e));
  }
};

// Lanes of v outside [0, 1] or NaN.
template <class T>
inline typename Simd<T>::M outside_unit(VecOf<T> v) {
  using S = Simd<T>;
  return S::mask_not(S::mask_and(S::ge(v, S::zero()), S::le(v, S::set(T(1)))));
}

template <class T>
typename Simd<T>::M no_lanes() {
  using S = Simd<T>;
  return S::lt(S::set(T(1)), S::zero());
}

// The driver. Ext: grad_output is an array (gradient ops) / the loss is stored per element
// (loss ops); otherwise the upstream gradient is the scalar grad_scale / the loss is summed.
template <class T, template <class, bool> class Loss, LossOp op, bool HasW, bool HasPW, bool Ext>
int run_range(const BinaryArgs<T>& a, int64_t begin, int64_t end, double* loss_sum) {
  using S = Simd<T>;
  using V = typename S::V;
  using P = Loss<T, HasPW>;
  constexpr bool want_loss = op == LossOp::loss || op == LossOp::loss_and_grad;
  constexpr bool want_grad = op != LossOp::loss;
  constexpr bool has_g = Ext && !want_loss;
  constexpr bool store_loss = Ext && want_loss;

  WeightCursor<T> wc(HasW ? a.weight : BroadcastView<T>{nullptr, 1, 1});
  WeightCursor<T> qc(HasPW ? a.pos_weight : BroadcastView<T>{nullptr, 1, 1});
  const V scale = S::set(a.grad_scale);
  // What one vector hands back to the loop: its loss (for the sum; past-the-end lanes zero) and
  // its out-of-range lanes. The accumulators stay in the loop as plain locals (captured by
  // reference they were kept in memory: a store through T* may alias a vector type).
  struct Lanes {
    V loss;
    typename S::M bad_x, bad_t;
  };

  // One vector at element i = block start + j; r: Full, or the lanes of the tail (vec_loop).
  auto vec = [&](int64_t i, int64_t j, auto r, const T* w, const T* q) -> Lanes {
    Lanes out{S::zero(), no_lanes<T>(), no_lanes<T>()};
    const auto ld = [&](const T* p, T fill) { return load_n<T>(p, r, fill); };
    const auto st = [&](T* p, V v) { store_n<T>(p, r, v); };
    const V x = ld(a.input + i, T(0.5));  // the fills are valid probabilities
    const V t = ld(a.target + i, T(0.5));
    if constexpr (P::checks_range) {
      out.bad_x = outside_unit<T>(x);
      out.bad_t = outside_unit<T>(t);
    }
    V qv = S::set(T(1));
    if constexpr (HasPW) qv = ld(q + j, T(1));
    V l = S::zero(), g = S::zero();
    if constexpr (op == LossOp::loss) l = P::loss(x, t, qv);
    if constexpr (op == LossOp::loss_and_grad) P::loss_and_grad(x, t, qv, l, g);
    if constexpr (op == LossOp::grad_input) g = P::grad_input(x, t, qv);
    if constexpr (op == LossOp::grad_target) g = P::grad_target(x, t, qv);
    if constexpr (HasW) {
      const V wv = ld(w + j, T(0));
      if constexpr (want_loss) l = mul0<T>(wv, l);
      // The input gradient is always finite; the target gradient can be infinite.
      if constexpr (op == LossOp::grad_target) g = mul0<T>(wv, g);
      if constexpr (op == LossOp::grad_input || op == LossOp::loss_and_grad) g = wv * g;
    }
    if constexpr (want_grad) {
      V gs = scale;
      if constexpr (has_g) gs = gs * ld(a.grad_output + i, T(0));
      st(a.grad_out + i, g * gs);  // after every load of element i: grad_out may be input
    }
    if constexpr (store_loss) st(a.loss_out + i, l);
    if constexpr (want_loss && !store_loss) out.loss = keep_lanes<T>(l, r);
    return out;
  };

  typename S::Acc acc = S::acc_zero();
  auto bad_x = no_lanes<T>(), bad_t = no_lanes<T>();
  const auto collect = [&](const Lanes& o) {
    if constexpr (want_loss && !store_loss) S::acc_add(acc, o.loss);
    if constexpr (P::checks_range) {
      bad_x = S::mask_or(bad_x, o.bad_x);
      bad_t = S::mask_or(bad_t, o.bad_t);
    }
  };

  for (int64_t b = begin; b < end; b += kBlock) {
    const int64_t len = std::min(kBlock, end - b);
    const T* w = HasW ? wc.at(b, len) : nullptr;
    const T* q = HasPW ? qc.at(b, len) : nullptr;
    vec_loop<T>(len, [&](int64_t j, auto r) { collect(vec(b + j, j, r, w, q)); });
  }
  if constexpr (want_loss && !store_loss) *loss_sum += S::acc_sum(acc);
  return (S::any(bad_x) ? kBinaryBadInput : 0) | (S::any(bad_t) ? kBinaryBadTarget : 0);
}

template <class F>
int with_bool(bool b, F&& f) {
  return b ? f(std::true_type{}) : f(std::false_type{});
}

template <class T, template <class, bool> class Loss, LossOp op>
int run_op(const BinaryArgs<T>& a, int64_t begin, int64_t end, double* loss_sum) {
  constexpr bool grad_op = op == LossOp::grad_input || op == LossOp::grad_target;
  const bool ext = grad_op ? a.grad_output != nullptr : a.loss_out != nullptr;
  return with_bool(a.weight.data != nullptr, [&](auto w) {
    return with_bool(a.pos_weight.data != nullptr, [&](auto q) {
      return with_bool(ext, [&](auto x) {
        constexpr bool HasPW = std::decay_t<decltype(q)>::value;
        if constexpr (HasPW && !Loss<T, false>::takes_pos_weight) {
          return 0;  // the binding never passes a pos_weight to this loss
        } else {
          return run_range<T, Loss, op, std::decay_t<decltype(w)>::value, HasPW, std::decay_t<decltype(x)>::value>(
              a, begin, end, loss_sum);
        }
      });
    });
  });
}

template <class T, template <class, bool> class Loss>
int run(LossOp op, const BinaryArgs<T>& a, int64_t begin, int64_t end, double* loss_sum) {
  return with_loss_op(op, [&](auto o) { return run_op<T, Loss, decltype(o)::value>(a, begin, end, loss_sum); });
}

// Multilabel soft margin over rows of C elements (binary.h): each row's BCE-with-logits terms
// (LogitLoss without pos_weight, weights through a WeightCursor over the flat elements) summed
// in double lanes and divided by C; the upstream gradient is per row (Ext) or the scalar
// grad_scale, which holds 1/C (and 1/rows for "mean").
template <class T, LossOp op, bool HasW, bool Ext>
int run_rows(const BinaryArgs<T>& a, int64_t classes, int64_t row_begin, int64_t row_end, double* loss_sum) {
  using S = Simd<T>;
  using V = typename S::V;
  using P = LogitLoss<T, false>;
  constexpr bool want_loss = computes_loss(op);
  constexpr bool has_g = Ext && !want_loss;
  constexpr bool store_loss = Ext && want_loss;
  WeightCursor<T> wc(HasW ? a.weight : BroadcastView<T>{nullptr, 1, 1});
  const V one = S::set(T(1));
  double total = 0.0;
  for (int64_t row = row_begin; row < row_end; ++row) {
    const int64_t base = row * classes;
    T gs = a.grad_scale;
    if constexpr (has_g) gs *= a.grad_output[row];
    const V gv = S::set(gs);
    typename S::Acc acc = S::acc_zero();
    for (int64_t b = 0; b < classes; b += kBlock) {
      const int64_t len = std::min(kBlock, classes - b);
      const T* w = HasW ? wc.at(base + b, len) : nullptr;
      vec_loop<T>(len, [&](int64_t j, auto r) {
        const int64_t i = base + b + j;
        const V x = load_n<T>(a.input + i, r, T(0));
        const V t = load_n<T>(a.target + i, r, T(0));
        V l = S::zero(), g = S::zero();
        if constexpr (op == LossOp::loss) l = P::loss(x, t, one);
        if constexpr (op == LossOp::loss_and_grad) P::loss_and_grad(x, t, one, l, g);
        if constexpr (op == LossOp::grad_input) g = P::grad_input(x, t, one);
        if constexpr (op == LossOp::grad_target) g = P::grad_target(x, t, one);
        if constexpr (HasW) {
          const V wv = load_n<T>(w + j, r, T(0));
          if constexpr (want_loss) l = mul0<T>(wv, l);
          g = op == LossOp::grad_target ? mul0<T>(wv, g) : wv * g;
        }
        if constexpr (computes_grad(op)) store_n<T>(a.grad_out + i, r, g * gv);  // after the loads
        if constexpr (want_loss) S::acc_add(acc, keep_lanes<T>(l, r));
      });
    }
    if constexpr (want_loss) {
      const double row_loss = S::acc_sum(acc) / static_cast<double>(classes);  // 0/0 = nan for C = 0, as torch
      if constexpr (store_loss)
        a.loss_out[row] = static_cast<T>(row_loss);
      else
        total += row_loss;
    }
  }
  if constexpr (want_loss && !store_loss) *loss_sum += total;
  return 0;
}

template <class T, LossOp op>
int rows_op(const BinaryArgs<T>& a, int64_t classes, int64_t row_begin, int64_t row_end, double* loss_sum) {
  const bool ext = takes_grad_output(op) ? a.grad_output != nullptr : a.loss_out != nullptr;
  return with_bool(a.weight.data != nullptr, [&](auto w) {
    return with_bool(ext, [&](auto x) {
      return run_rows<T, op, std::decay_t<decltype(w)>::value, std::decay_t<decltype(x)>::value>(a, classes, row_begin,
                                                                                                 row_end, loss_sum);
    });
  });
}

template <class T>
int multilabel(LossOp op, const BinaryArgs<T>& a, int64_t classes, int64_t row_begin, int64_t row_end,
               double* loss_sum) {
  switch (op) {
    case LossOp::loss:
      return rows_op<T, LossOp::loss>(a, classes, row_begin, row_end, loss_sum);
    case LossOp::grad_input:
      return rows_op<T, LossOp::grad_input>(a, classes, row_begin, row_end, loss_sum);
    case LossOp::grad_target:
      return rows_op<T, LossOp::grad_target>(a, classes, row_begin, row_end, loss_sum);
    case LossOp::loss_and_grad:
      return rows_op<T, LossOp::loss_and_grad>(a, classes, row_begin, row_end, loss_sum);
  }
  return 0;
}

template <class T>
int check_probs(const T* input, const T* target, int64_t n) {
  using S = Simd<T>;
  auto bad_x = no_lanes<T>(), bad_t = no_lanes<T>();
  vec_loop<T>(n, [&](int64_t i, auto r) {  // the tail's fill, 0, is a valid probability
    bad_x = S::mask_or(bad_x, outside_unit<T>(load_n<T>(input + i, r, T(0))));
    bad_t = S::mask_or(bad_t, outside_unit<T>(load_n<T>(target + i, r, T(0))));
  });
  return (S::any(bad_x) ? kBinaryBadInput : 0) | (S::any(bad_t) ? kBinaryBadTarget : 0);
}

template <class T>
constexpr BinaryKernels<T> make_kernels() {
  return {run<T, ProbLoss>, run<T, LogitLoss>, run<T, SoftMarginLoss>, multilabel<T>, check_probs<T>};
}

}  // namespace

const BinaryTable& binary_table() {
  static const BinaryTable table{make_kernels<float>(), make_kernels<double>()};
  return table;
}

}  // namespace LO_TARGET
}  // namespace logitops
