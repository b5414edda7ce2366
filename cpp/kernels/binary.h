// Binary cross-entropy kernels: on probabilities (BCE) and on logits (BCE-with-logits), forward,
// backward with respect to input or target, and loss + input gradient fused in one pass.
//
// Every kernel is a plain function over contiguous memory, elements [begin, end) of n; the
// binding cuts [0, n) into fixed chunks (parallel_reduce) so sums are bit-identical over thread
// counts. float32 and float64 are native; loss sums accumulate in double lanes.
//
// Weights are never broadcast into an input-sized copy: element i uses
// data[(i / block) % period] (BroadcastView), which covers a scalar (period 1), a full array
// (block 1, period n), a trailing-axes vector such as pos_weight (C,) (block 1) and a run of
// leading or middle axes such as weight (C, 1, 1) on (N, C, H, W) (block H*W).
//
// Per element, with weight w (1 if absent), pos_weight q (1 if absent), g the upstream gradient
// (grad_output[i] times grad_scale; grad_scale holds the scalar upstream gradient and 1/N):
//
// Logits x, target t (any real t; [0, 1] is the contract of the accuracy claims):
//   sp(z) = log(1 + exp(z)) = max(z, 0) + log1p(exp(-|z|)), L = log1p(exp(-|x|)) in [0, ln 2]
//   loss   = w * [(1 - t) sp(x) + q t sp(-x)]
//          = w * [(1 - t) max(x, 0) + q t max(-x, 0) + ((1 - t) + q t) L]
//     For t in [0, 1] and q >= 0 every term is >= 0: no cancellation, float32 within 4 ulp of
//     the exact value for every finite x (torch's (1 - t) x - (1 + (q - 1) t) log_sigmoid(x)
//     returns 0 for t = 0, x < -17 instead of exp(x)). Without pos_weight the factor of L is 1.
//   d/dx   = g w [(1 - t) sigmoid(x) - q t sigmoid(-x)]       (= torch's (1 + (q-1)t) s - q t)
//   d/dt   = g w [q sp(-x) - sp(x)] = g w [q max(-x, 0) - max(x, 0) + (q - 1) L]
//            (-x exactly without pos_weight, as torch)
//   +-inf logits give the limit: a factor that is exactly 0 times an infinite max(+-x, 0)
//   counts as 0 (torch: nan at x = -inf for every t, and at x = +inf for t = 1).
//
// Probabilities p in [0, 1], target t in [0, 1] (both checked, NaN rejected, as torch):
//   loss   = w * [(t - 1) max(log1p(-p), -100) - t max(log(p), -100)]   (torch's clamp)
//   d/dp   = g w (p - t) / max((1 - p) p, 1e-12f)    (torch's clamp, a float for double too)
//   d/dt   = g w [log1p(-p) - log(p)]   (= -logit(p), unclamped: +-inf at p = 0, 1 as torch)
//
// A zero weight makes its element contribute exactly 0 to the loss and the target gradient,
// even where the unweighted term is infinite (torch: 0 * inf = nan); NaN stays NaN.
//
// Soft margin (torch's soft_margin_loss), logits x, target y (+-1 by contract, any real taken):
//   z = -y x (exact for y = +-1), loss = sp(z) = max(z, 0) + log1p(exp(-|z|))
//   d/dx = -g y sigmoid(z)   (torch's log(1 + exp(z)) overflows for z > 88.7 / 709.8: inf, and
//                             its gradient exp(z)/(1 + exp(z)) is nan there)
//   = BCE-with-logits of (x, (y + 1)/2) for y = +-1; the loss op is its own policy because
//   for other y torch's number is sp(-y x), not the BCE of a shifted target.
//
// Multilabel soft margin (torch's multilabel_soft_margin_loss): rows of C logits (the last
// axis), the loss of a row is (1/C) sum_c w_c BCE-with-logits(x_c, t_c) (the logits formula
// above, no pos_weight); `weight` is a BroadcastView over the flat (rows, C) elements.
//   d/dx_c = g_row w_c [sigmoid(x_c) - t_c] / C,  d/dt_c = -g_row w_c x_c / C
#pragma once

#include <cstdint>

#include "isa_list.h"
#include "kernels/loss_op.h"

namespace logitops {

// A weight broadcast to the input without a copy: element i of the input uses
// data[(i / block) % period]. data == nullptr: no weight.
template <class T>
struct BroadcastView {
  const T* data;
  int64_t period;
  int64_t block;
};

template <class T>
struct BinaryArgs {
  const T* input;
  const T* target;
  BroadcastView<T> weight;
  BroadcastView<T> pos_weight;  // logits only
  const T* grad_output;         // per-element (per-row: multilabel) upstream gradient ("none"), or nullptr
  T grad_scale;                 // multiplies every gradient: scalar upstream gradient, 1/N for mean
  T* loss_out;                  // per-element (per-row: multilabel) loss ("none"), or nullptr: summed
  T* grad_out;                  // the gradient (may be input itself)
};

// Bits of a kernel's return value.
enum BinaryStatus : int { kBinaryBadInput = 1, kBinaryBadTarget = 2 };

template <class T>
struct BinaryKernels {
  // Elements [begin, end) of op: writes loss_out / grad_out there, or adds the loss of those
  // elements to *loss_sum (loss_out null). Returns BinaryStatus bits: probabilities (input or
  // target) outside [0, 1] or NaN; the outputs are then unspecified. logits never fail.
  int (*probs)(LossOp op, const BinaryArgs<T>& a, int64_t begin, int64_t end, double* loss_sum);
  int (*logits)(LossOp op, const BinaryArgs<T>& a, int64_t begin, int64_t end, double* loss_sum);
  int (*soft_margin)(LossOp op, const BinaryArgs<T>& a, int64_t begin, int64_t end, double* loss_sum);
  // Rows [row_begin, row_end) of `classes` elements each; *loss_sum gets the sum of the row
  // losses (each already divided by classes). Never fails (returns 0).
  int (*multilabel)(LossOp op, const BinaryArgs<T>& a, int64_t classes, int64_t row_begin, int64_t row_end,
                    double* loss_sum);
  // The probability check alone over [0, n), for calls that overwrite their input.
  int (*check_probs)(const T* input, const T* target, int64_t n);
};

struct BinaryTable {
  BinaryKernels<float> f32;
  BinaryKernels<double> f64;
};

LO_DECLARE_TABLE(const BinaryTable&, binary_table)

}  // namespace logitops
