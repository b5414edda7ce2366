// SciPy's weighted log-sum-exp over rows: log|sum_j b_j exp(x_j)| and the sum's sign, forward
// and the gradient with respect to x.
//
// Rows of `cols` elements, C-contiguous; b has one row per row of x (b_row_stride = cols) or a
// single row shared by every row (b_row_stride = 0, a b that broadcasts along the kept axes).
//
// Semantics (scipy.special.logsumexp with b): a term with b_j == 0 is dropped, whatever x_j is
// (so x_j = +inf or NaN there changes nothing). Over the other terms, m = max x_j and
//   s = sum_j b_j exp(x_j - m) = t + others,  t = b at the first maximum (exp(0) = 1),
//   others = the sum over every other term (in double; float32 terms are exp(d) 2^k as in
//            row_softmax.h, multiplied by b in double: no product over- or underflows)
//   value  = m + log|t| + log1p(others / t)  when others / t > -1/2 (no cancellation: exact when
//            one term dominates, as the unweighted path), else m + log|s|
//   sign   = sign(s): +1, -1, or 0 for s == 0 (value -inf), NaN for a NaN value.
// Without return_sign (want_sign false) a negative sum gives value NaN, as SciPy.
// A row with no term (empty, all b == 0, or every kept x == -inf) has s = 0: value -inf, sign 0
// (NaN where b is NaN or infinite there: inf * 0). A kept +inf gives s = +-inf (value +inf, the
// sign of its b; NaN when +inf terms have both signs, or any NaN). NaN in a kept x or b: NaN.
//
// Gradient: d value / d x_j = g_row * b_j exp(x_j - m) / s (0 where b_j == 0); at a +inf
// maximum the limit b_j / sum of the +inf terms' b at the +inf terms, 0 elsewhere; NaN for a
// row without terms or a NaN value (want_sign false and s < 0 included).
#pragma once

#include <cstdint>

#include "isa_list.h"

namespace logitops {

template <class T>
struct WeightedLogsumexpKernels {
  // Rows [0, rows): value[r] and, when sign is non-null, sign[r].
  void (*forward)(const T* x, const T* b, int64_t b_row_stride, int64_t rows, int64_t cols, T* value, T* sign);
  // out (rows, cols) = grad[r] * d value[r] / d x; want_sign says whether a negative sum is valid.
  void (*backward)(const T* grad, const T* x, const T* b, int64_t b_row_stride, int64_t rows, int64_t cols,
                   bool want_sign, T* out);
};

struct WeightedLogsumexpTable {
  WeightedLogsumexpKernels<float> f32;
  WeightedLogsumexpKernels<double> f64;
};

LO_DECLARE_TABLE(const WeightedLogsumexpTable&, weighted_logsumexp_table)

}  // namespace logitops
