// Symmetric cross-entropy kernels (see symmetric_ce.h), over the vector layer; compiled once
// per instruction set with LO_TARGET naming it. A row: row_max, row_others (storing exp(d_j)),
// the clamp pass over the stored exps, then, for a gradient, the gradient pass over them in
// place: the logits are read twice (max, exps) and the exps twice more, all from cache.
#include "kernels/symmetric_ce.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

#include "kernels/row_softmax.h"

namespace logitops {
namespace LO_TARGET {
namespace {

// One load of the target that every use sees (another thread may change it: see
// cross_entropy_parts.h, read_target).
inline int64_t read_target(const int64_t* t, int64_t r) { return __atomic_load_n(t + r, __ATOMIC_RELAXED); }

template <class T>
int64_t check_targets(const SceArgs<T>& a, int64_t begin, int64_t end) {
  for (int64_t r = begin; r < end; ++r) {
    const int64_t y = read_target(a.target, r);
    if (static_cast<uint64_t>(y) >= static_cast<uint64_t>(a.classes)) return r;
  }
  return -1;
}

template <class T>
void sce_rows(LossOp op, const SceArgs<T>& a, int64_t begin, int64_t end, double* loss_sum) {
  using S = Simd<T>;
  using V = typename S::V;
  const int64_t C = a.classes;
  const bool grad = computes_grad(op);
  const bool want_loss = computes_loss(op);
  const double nan = std::numeric_limits<double>::quiet_NaN();
  std::vector<T> scratch(grad ? 0 : static_cast<size_t>(C));
  const V eps = S::set(static_cast<T>(a.prob_eps)), zero = S::zero(), one = S::set(T(1));
  double sum = 0.0;
  for (int64_t r = begin; r < end; ++r) {
    const T* xr = a.input + r * C;
    T* E = grad ? a.grad_out + r * C : scratch.data();
    const int64_t y = read_target(a.target, r);
    if (static_cast<uint64_t>(y) >= static_cast<uint64_t>(C)) {
      // Changed by another thread since the check: nothing outside the row is touched.
      if (grad) std::fill(E, E + C, T(0));
      continue;
    }
    const T m = row_max(xr, C);
    const T xy = xr[y];  // read before the exps overwrite the row (E may be the input)
    const double others = row_others<T>(xr, C, m, E, nullptr, nullptr, nullptr, r + 1 < a.rows ? xr + C : nullptr);
    const double g = (a.grad_output ? static_cast<double>(a.grad_output[r]) : 1.0) * a.grad_scale;
    if (m == -std::numeric_limits<T>::infinity()) {  // all -inf: no limit
      if (want_loss) (a.loss_out ? void(a.loss_out[r] = static_cast<T>(nan)) : void(sum += nan));
      if (grad) std::fill(E, E + C, static_cast<T>(nan));
      continue;
    }
    const double Z = 1.0 + others;
    const double ey = static_cast<double>(E[y]);
    E[y] = T(0);  // out of the clamp sums; a clamped zero, taken back from the count below
    const V inv_z = S::set(static_cast<T>(1.0 / Z));
    auto keep_acc = S::acc_zero(), clamp_acc = S::acc_zero(), count_acc = S::acc_zero();
    vec_loop<T>(C, [&](int64_t j, auto rr) {
      const V e = load_n<T>(E + j, rr, T(0));
      const auto keep = S::ge(e * inv_z, eps);
      S::acc_add(keep_acc, S::select(keep, e, zero));
      S::acc_add(clamp_acc, S::select(keep, zero, e));
      S::acc_add(count_acc, keep_lanes<T>(S::select(keep, zero, one), rr));
    });
    const double e_keep = S::acc_sum(keep_acc), e_clamped = S::acc_sum(clamp_acc);
    const double n_clamped = S::acc_sum(count_acc) - 1.0;  // without y
    const double s_keep = e_keep / Z;
    if (want_loss) {
      const double dy = xy == m ? 0.0 : static_cast<double>(xy) - static_cast<double>(m);
      const double ce = std::log1p(others) - dy;
      const double rce = a.k * (s_keep + a.prob_eps * n_clamped);
      const double loss = a.alpha * ce + a.beta * rce;
      if (a.loss_out)
        a.loss_out[r] = static_cast<T>(loss);
      else
        sum += loss;
    }
    if (!grad) continue;
    const double one_minus_s = (ey + e_clamped) / Z;
    const V c_keep = S::set(static_cast<T>(g * (a.alpha + a.beta * a.k * one_minus_s) / Z));
    const V c_clamp = S::set(static_cast<T>(g * (a.alpha - a.beta * a.k * s_keep) / Z));
    map_unary(E, C, E, [&](V e) { return e * S::select(S::ge(e * inv_z, eps), c_keep, c_clamp); });
    const double py = ey / Z;
    const double one_minus_py = (xy == m ? others : 1.0 + (others - ey)) / Z;
    E[y] = static_cast<T>(-g * (a.alpha * one_minus_py + a.beta * a.k * py * s_keep));
  }
  *loss_sum += sum;
}

template <class T>
constexpr SymmetricCeKernels<T> make_kernels() {
  return {check_targets<T>, sce_rows<T>};
}

}  // namespace

const SymmetricCeTable& symmetric_ce_table() {
  static const SymmetricCeTable table{make_kernels<float>(), make_kernels<double>()};
  return table;
}

}  // namespace LO_TARGET
}  // namespace logitops
