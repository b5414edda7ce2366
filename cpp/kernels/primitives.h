// Primitive kernels: log-sum-exp, (log-)softmax and (log-)sigmoid, forward and backward.
//
// Every kernel is a plain function over contiguous memory. Row kernels take `rows` rows of
// `cols` elements each; elementwise kernels take `n` elements. float32 and float64 are both
// native; row sums are accumulated in double.
//
// Numerics (tests/test_accuracy.py proves these):
//   For a row x with maximum m, d_j = x_j - m (0 for every x_j == m, so a row with +inf
//   entries takes its limit) and others = sum_{x_j != m} exp(d_j) + (#ties - 1), i.e. the
//   sum over every class but one maximum, which never cancels against the 1 of exp(0):
//     logsumexp   = m + log1p(others)
//     log_softmax = d_j - log1p(others)     (exact even when the row max dominates)
//     softmax     = exp(d_j) / (1 + others)
//   A row of all -inf has logsumexp -inf and (log-)softmax NaN, as torch; a row with +inf
//   gives the limit (torch: NaN); NaN anywhere in a row makes that row NaN.
//   log_sigmoid(x) = min(x, 0) - log1p(exp(-|x|)); sigmoid(x) = 1/(1+e) or e/(1+e) with
//   e = exp(-|x|), so neither overflows nor cancels. float32 results are within 4 ulp.
//
// Backward (g is the upstream gradient):
//   logsumexp_backward:   out_j = g_row * softmax_j        (g has one value per row)
//   log_softmax_backward: out_j = g_j - softmax_j * sum_k g_k
//   softmax_backward:     out_j = softmax_j * (g_j - sum_k g_k softmax_k)
//   log_sigmoid_backward: out = g * sigmoid(-x);  sigmoid_backward: out = g * sigmoid(x) * sigmoid(-x)
#pragma once

#include <cstdint>

#include "isa_list.h"

namespace logitops {

template <class T>
struct PrimitiveKernels {
  void (*logsumexp)(const T* x, int64_t rows, int64_t cols, T* out);
  void (*log_softmax)(const T* x, int64_t rows, int64_t cols, T* out);
  void (*softmax)(const T* x, int64_t rows, int64_t cols, T* out);
  void (*logsumexp_backward)(const T* grad, const T* x, int64_t rows, int64_t cols, T* out);
  void (*log_softmax_backward)(const T* grad, const T* x, int64_t rows, int64_t cols, T* out);
  void (*softmax_backward)(const T* grad, const T* x, int64_t rows, int64_t cols, T* out);
  void (*log_sigmoid)(const T* x, int64_t n, T* out);
  void (*sigmoid)(const T* x, int64_t n, T* out);
  void (*log_sigmoid_backward)(const T* grad, const T* x, int64_t n, T* out);
  void (*sigmoid_backward)(const T* grad, const T* x, int64_t n, T* out);
};

struct PrimitiveTable {
  PrimitiveKernels<float> f32;
  PrimitiveKernels<double> f64;
};

LO_DECLARE_TABLE(const PrimitiveTable&, primitive_table)

}  // namespace logitops
