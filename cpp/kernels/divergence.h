// Kullback-Leibler divergence (torch's kl_div) and sigmoid focal loss (torchvision.ops'),
// elementwise over contiguous memory: forward, backward with respect to input (and, for kl_div,
// target), and loss + input gradient fused in one pass.
//
// Every element is computed in double, for float32 too (the float32 data is widened a block at a
// time and the results rounded once): both losses have a term that cancels or an exponent whose
// rounding float32 cannot absorb (below); with double inside, float32 results are within 4 ulp
// (tests/test_divergence.py), with one limit: where kl_div's log t - x (or log t + 1 - x)
// cancels to within 2^-29 of its terms, i.e. x equals log t to float32's own precision, the
// double log t bounds the absolute error by 2^-50 t max(|log t|, |x|) (a double-double log
// would lift that). float64 results carry the rounding of log t (kl_div) and of gamma log u
// (focal: about |gamma log u| / 2 ulp). Sums accumulate in double lanes. The binding cuts
// [0, n) into fixed chunks, so sums are bit-identical over thread counts.
//
// Per element, g the upstream gradient (grad_output[i] times grad_scale; grad_scale holds the
// scalar upstream gradient and 1/divisor for "mean"/"batchmean"):
//
// kl_div, input x (log-probabilities), target t:
//   log_target false: loss = t (log t - x), 0 at t = 0 (torch: xlogy(t, t) - t x; -0 x at t = 0,
//                     so nan for x = +-inf there, as torch), nan for t < 0.
//                     d/dx = -g t,   d/dt = g (log t + 1 - x)   (-inf at t = 0; torch: nan)
//     t log t - t x cancels where x ~ log t, the usual case of a converged student: in float32
//     torch loses every digit there; t (log t - x) with log t in double keeps them (above).
//   log_target true:  loss = exp(t) (t - x), d/dx = -g exp(t), d/dt = g exp(t) (t - x + 1)
//     (t - x + 1 by a two-sum, so it does not cancel in float64 either). In double a float32
//     exp(t) neither overflows nor goes subnormal, where torch's float32 exp(t) does
//     (t > 88.7: inf; t < -87.3: digits lost) while the product is a normal float.
//
// sigmoid_focal_loss, logits x, target t in [0, 1] (checked; NaN propagates), alpha, gamma >= 0:
//   C = BCE-with-logits(x, t) = (1 - t) max(x, 0) + t max(-x, 0) + log1p(e),  e = exp(-|x|)
//   u = 1 - p_t = t sigmoid(-x) + (1 - t) sigmoid(x)   (a sum of two terms >= 0: no cancellation)
//     = s (a e + b),  s = sigmoid(|x|), (a, b) = (t, 1 - t) for x >= 0, (1 - t, t) for x < 0
//   log u = -log1p(e) + (b == 0 ? -|x| : log(a e + b))   (never underflows: hard targets at
//                                                          confident logits keep every digit)
//   F = u^gamma = exp(gamma log u)   (1 for gamma = 0, torch's 0^0)
//   alpha_t = alpha t + (1 - alpha)(1 - t), or 1 for alpha < 0 (torchvision: no alpha)
//   loss = alpha_t F C
//   d/dx = g alpha_t F [(1 - t) sigmoid(x) - t sigmoid(-x) + gamma (1 - 2t) r C],
//     r = sigmoid(x) sigmoid(-x) / u = s / (a + b/e)   (b/e counted 0 for b = 0, even at e = 0)
//   For t in {0, 1} the two terms in the bracket have the same sign (no cancellation); F and r
//   are finite for every gamma >= 0 (torchvision: d(1 - p_t)^gamma/dp_t = inf for gamma < 1 at
//   u = 0, times 0: nan), and a factor that is exactly 0 times an infinite C counts as 0.
#pragma once

#include <cstdint>

#include "isa_list.h"
#include "kernels/loss_op.h"

namespace logitops {

template <class T>
struct DivergenceArgs {
  const T* input;
  const T* target;
  const T* grad_output;  // per-element upstream gradient ("none"), or nullptr
  double grad_scale;     // multiplies every gradient: scalar upstream gradient, 1/divisor for mean
  T* loss_out;           // per-element loss ("none"), or nullptr: the loss is summed
  T* grad_out;           // the gradient (may be input itself)
  bool log_target;       // kl_div
  double alpha, gamma;   // sigmoid_focal_loss (alpha < 0: no alpha)
};

// Bits of a kernel's return value.
enum DivergenceStatus : int { kDivergenceBadTarget = 2 };

template <class T>
struct DivergenceKernels {
  // Elements [begin, end) of op: writes loss_out / grad_out there, or adds the loss of those
  // elements to *loss_sum (loss_out null). focal returns kDivergenceBadTarget if a target is
  // outside [0, 1] (not NaN); the outputs are then unspecified. kl_div never fails.
  int (*kl_div)(LossOp op, const DivergenceArgs<T>& a, int64_t begin, int64_t end, double* loss_sum);
  int (*focal)(LossOp op, const DivergenceArgs<T>& a, int64_t begin, int64_t end, double* loss_sum);
  // focal's target check alone over [0, n), for calls that overwrite their input.
  int (*check_unit_target)(const T* target, int64_t n);
};

struct DivergenceTable {
  DivergenceKernels<float> f32;
  DivergenceKernels<double> f64;
};

LO_DECLARE_TABLE(const DivergenceTable&, divergence_table)

}  // namespace logitops
