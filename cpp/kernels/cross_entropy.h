// Multiclass losses: cross-entropy (class-index or probability targets, per-class weight,
// ignore_index, label smoothing) and NLL, forward, backward (input; target for probability
// targets) and loss + input gradient fused.
//
// Layout. The input is C-contiguous (outer, C, inner): torch's (N, C, d1..dk) with
// inner = d1*...*dk, (N, C) and (C,) with inner = 1. A sample is (n, i), numbered s = n*inner + i;
// targets, per-sample losses and upstream gradients are indexed by s. Element (n, c, i) of the
// input, probability target and gradient is at n*C*inner + c*inner + i.
//   inner == 1: rows. Each row is read by row_max, then by row_others (row_softmax.h) from
//     cache; the gradient pass follows while the row is still in cache.
//   inner > 1: lanes. Consecutive inner positions are vector lanes, the class loop walks the
//     strided class rows; no transposed copy. A block of `ce_lane_block` lanes is one unit of
//     work, its C x block slab small enough to stay in cache across the passes.
//
// Numerics, for a sample with logits x_j, m = max_j x_j, d_j = x_j - m (0 wherever x_j == m, so a
// +inf maximum takes its limit), others = sum_{x_j != m} exp(d_j) + (#ties - 1) (row_softmax.h),
// Z = 1 + others, L = log(Z) = log1p(others), p_j = exp(d_j) / Z, log p_j = d_j - L:
//   class target y, weight w (1 if absent), W = sum_c w_c, smoothing e, q_j = (1-e) [j==y] + e/C:
//     loss = (1-e) w_y (L - d_y) + (e/C) (W L - sum_j w_j d_j)
//     Both terms are sums of non-negative parts (d <= 0): nothing cancels. In particular, when y
//     is the maximum, d_y = 0 and the loss is log1p(sum_{j!=y} exp(x_j - x_y)) to within a few
//     ulp, where torch's lse - x_y returns 0 or a rounding error.
//     d/dx_j = g [(A + B W) p_j - A [j==y] - B w_j],  A = (1-e) w_y, B = e/C
//     At j = y, p_y - 1 = -others/Z when y is a maximum (no cancellation against the 1), and
//     -(1 + (others - e_y))/Z otherwise.
//   probability target t, a_j = w_j q_j with q_j = (1-e) t_j + e/C, S = sum_j a_j:
//     loss = S L - sum_j a_j d_j;  d/dx_j = g (S p_j - a_j);  d/dt_j = g (1-e) w_j (L - d_j)
//     A term with a_j == 0 counts 0 even where d_j = -inf (the limit; torch: 0 * inf = nan).
//   nll (input = log-probabilities): loss = -w_y x_y; d/dx_j = -g w_y [j==y].
//   A sample whose logits are all -inf has no limit: its loss and gradient are NaN (as torch).
//   NaN in a sample's logits makes its loss and gradient NaN.
//   Ignored samples (target == ignore_index) have loss 0 and gradient 0 and are not range-checked.
//   LLM heads (SPEC "LLM heads"), both off by default:
//   softcap s > 0: every logit x is replaced by c(x) = s tanh(x / s) first, so everything above
//     reads x_j as c(x_j), m as c(max_j x_j) (c is increasing), and the input gradient gets the
//     chain factor c'(x_j) = sech^2(x_j / s) = 1 - tanh^2. Capped logits are finite, so an
//     all -inf row is a uniform one (no NaN). Rows only (inner == 1; the Python layer moves the
//     class axis last for inner > 1).
//   z_loss z: loss += z lse^2 with lse = m + L, unweighted by w and by smoothing;
//     d/dx_j += gz 2 z lse p_j, where gz is the z part's own upstream gradient (its "mean"
//     divides by the number of non-ignored samples, not by sum w[y]).
//   With softcap, the loss-only call caps each element once in pass 2 (the max pass needs no
//   tanh); a gradient call without the a_j term stores e_j c'(x_j) in pass 2, so the gradient
//   pass is the usual multiply; with the a_j term (smoothing, probabilities) c'(x_j) is needed
//   beside e_j, and the gradient pass recomputes both from the input (pass 2 stores nothing, so
//   the input survives even when it is the output).
// Sums over classes accumulate in double (rows) or compensated (Kahan) in the input's type
// (lanes); the loss per sample is formed in double and rounded once.
// Accuracy (tests/test_cross_entropy.py): float32 per-sample loss within 4 ulp of the exact value.
#pragma once

#include <cstdint>

#include "isa_list.h"
#include "kernels/convert.h"
#include "kernels/loss_op.h"

namespace logitops {

template <class T>
struct CeArgs {
  const T* input;         // (outer, C, inner)
  const int64_t* target;  // class indices (outer*inner), or nullptr for probability targets
  const T* probs;         // probability targets like input, or nullptr
  const T* weight;        // (C,), or nullptr
  int64_t outer, classes, inner;
  int64_t ignore_index;
  double label_smoothing;  // e in [0, 1]
  double weight_total;     // W = sum_c weight[c] (C without weight)
  const T* grad_output;    // per-sample upstream gradient ("none"), or nullptr
  double grad_scale;       // multiplies every gradient (the scalar upstream gradient / the mean's divisor)
  T* loss_out;             // per-sample loss, or nullptr: losses are summed into *loss_sum
  T* grad_out;             // the gradient, like input (may be input itself)
  // LLM heads (0 = off). With z_loss != 0, *loss_sum and check_targets' *weight_sum point at two
  // doubles: [1] is the z part's sum (z lse^2) and the number of non-ignored samples.
  double z_loss;
  double z_grad_scale;  // gz without grad_output: the scalar upstream gradient / the z part's divisor
  double softcap;       // s > 0, or 0; rows only (inner == 1)
};

// Lanes per unit of work when inner > 1: at most kCeMaxLanes, fewer when C is large so the
// C x lanes slab stays in cache (at least 16, the cache line of floats, or all of inner).
constexpr int64_t kCeMaxLanes = 128;
inline int64_t ce_lane_block(int64_t classes, int64_t inner, int64_t itemsize) {
  int64_t b = kCeMaxLanes;
  // classes > budget / (b * itemsize), not b * classes * itemsize > budget: a zero-size input
  // may have 2**60 classes, and the product would overflow.
  while (b > 16 && classes > (96 << 10) / (b * itemsize)) b /= 2;
  return inner < b ? inner : b;
}
// Units of work: rows when inner == 1, else (n, lane block) pairs.
inline int64_t ce_units(int64_t outer, int64_t classes, int64_t inner, int64_t itemsize) {
  if (inner == 1) return outer;
  const int64_t b = ce_lane_block(classes, inner, itemsize);
  return b > 0 ? outer * ((inner + b - 1) / b) : 0;
}

template <class T>
struct CrossEntropyKernels {
  // Samples [begin, end): the first whose class target is neither ignore_index nor in [0, C),
  // or -1. Adds weight[target] (1 without weight) over the non-ignored samples to *weight_sum
  // (and, with z_loss, their number to weight_sum[1]).
  int64_t (*check_targets)(const CeArgs<T>& a, int64_t begin, int64_t end, double* weight_sum);
  // W = sum_c weight[c] (the label-smoothing term's total weight).
  double (*class_weight_sum)(const T* weight, int64_t classes);
  // Units [begin, end) of op (targets already checked): writes loss_out / grad_out there, or adds
  // the losses to *loss_sum. grad_target is for probability targets only.
  void (*cross_entropy)(LossOp op, const CeArgs<T>& a, int64_t begin, int64_t end, double* loss_sum);
  void (*nll_loss)(LossOp op, const CeArgs<T>& a, int64_t begin, int64_t end, double* loss_sum);
};

struct CrossEntropyTable {
  CrossEntropyKernels<float> f32;
  CrossEntropyKernels<double> f64;
  // 16-bit calls (float16 / bfloat16, format fmt) where the float32 call would take the row
  // kernels (inner == 1, class targets, no softcap, not short rows; op loss, grad_input or
  // loss_and_grad: takes_low_rows) run cross_entropy_low_rows over their rows [begin, end): the
  // logits read from `input` and the gradient written to `grad_out` (16-bit, or null without a
  // gradient) through float32 rows in the thread's scratch, each 16-bit byte read once and
  // written once. a.input and a.grad_out are unused; the other arrays of `a` are float32, as in a
  // float32 call. The other 16-bit calls run float32 blocks (cpp/bind/low_precision.h).
  bool (*takes_low_rows)(LossOp op, const CeArgs<float>& a);
  void (*cross_entropy_low_rows)(LowFormat fmt, LossOp op, const CeArgs<float>& a, const uint16_t* input,
                                 uint16_t* grad_out, int64_t begin, int64_t end, double* loss_sum);
};

LO_DECLARE_TABLE(const CrossEntropyTable&, cross_entropy_table)

}  // namespace logitops
