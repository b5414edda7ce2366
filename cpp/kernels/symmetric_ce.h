// Symmetric cross-entropy (Wang et al. 2019; the seed's SymmetricCELoss): per sample with
// logits x (C classes), class target y, p = softmax(x),
//   loss = alpha ce + beta rce,  ce = -log p_y,
//   rce  = -sum_j clamp(p_j, prob_eps, 1) log clamp(onehot_j, label_eps, 1)
//        = K sum_{j != y} clamp(p_j, prob_eps, 1),  K = -log(label_eps)
// (log clamp(onehot) is 0 at y and log(label_eps) elsewhere; p_j <= 1 always).
// With m, d_j, others, Z = 1 + others as in row_softmax.h and e_j = exp(d_j):
//   ce  = log1p(others) - d_y                      (exact for confident predictions)
//   rce = K (E_keep / Z + prob_eps n_clamped),      E_keep = sum of e_j over j != y, p_j >= prob_eps
// computed from the exps of one row pass (stored into the gradient, or a scratch row), then one
// more pass over them from cache.
// Gradient (torch's clamp passes the gradient where prob_eps <= p_j <= 1, bounds included):
//   with S = E_keep / Z and u_j = [j != y, p_j >= prob_eps],
//   d/dx_j = g p_j (alpha + beta K (u_j - S))                         j != y
//   d/dx_y = -g (alpha (1 - p_y) + beta K p_y S)
//   where 1 - S = (e_y + E_clamped) / Z and 1 - p_y = others / Z (y a maximum) or
//   (1 + others - e_y) / Z: no cancellation.
// A sample whose logits are all -inf has NaN loss and gradient; NaN in a row gives NaN; a +inf
// maximum takes the limit (p = 1/k at the k tied +inf logits).
// Rows only: input (N, C) C-contiguous, one int64 class target per row.
#pragma once

#include <cstdint>

#include "isa_list.h"
#include "kernels/loss_op.h"

namespace logitops {

template <class T>
struct SceArgs {
  const T* input;         // (rows, classes)
  const int64_t* target;  // (rows,)
  int64_t rows, classes;
  double alpha, beta;
  double k;              // -log(label_eps)
  double prob_eps;       // the lower clamp of p
  const T* grad_output;  // per-sample upstream gradient ("none"), or nullptr
  double grad_scale;     // multiplies every gradient (scalar upstream gradient / the mean's N)
  T* loss_out;           // per-sample losses, or nullptr: summed into *loss_sum
  T* grad_out;           // the gradient, like input (may be input itself)
};

template <class T>
struct SymmetricCeKernels {
  // Rows [begin, end): the first whose target is outside [0, C), or -1.
  int64_t (*check_targets)(const SceArgs<T>& a, int64_t begin, int64_t end);
  // Rows [begin, end) of op (loss, grad_input or loss_and_grad).
  void (*rows)(LossOp op, const SceArgs<T>& a, int64_t begin, int64_t end, double* loss_sum);
};

struct SymmetricCeTable {
  SymmetricCeKernels<float> f32;
  SymmetricCeKernels<double> f64;
};

LO_DECLARE_TABLE(const SymmetricCeTable&, symmetric_ce_table)

}  // namespace logitops
