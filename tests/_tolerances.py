"""Every tolerance the tests use, in one table (SPEC.md, "Numbers" and "Accuracy beyond torch").

Torch parity: results match torch within TOL[dtype] = (rtol, atol). Accuracy: in ulps of the
result's dtype against a reference at least 11 bits more precise, errors below the dtype's
smallest normal number not counted (_helpers.ulp_error). Nothing here may be loosened to make
a test pass: a wider bound is a change of the contract.
"""

from __future__ import annotations

import ml_dtypes
import numpy as np

F32 = np.dtype(np.float32)
F64 = np.dtype(np.float64)
F16 = np.dtype(np.float16)
BF16 = np.dtype(ml_dtypes.bfloat16)

# ----------------------------------------------------------------------------- torch parity

# (rtol, atol) per dtype of the result: SPEC "results match torch".
TOL = {F32: (1e-5, 1e-6), F64: (1e-12, 1e-13)}
# float16 / bfloat16 results against torch's float64 on the same 16-bit inputs: each within 1
# ulp of its format (ULP_LOW below), i.e. within 2^-10 / 2^-7 relative; absolute below the
# format's smallest normal number, where ulps are not counted.
TOL[F16] = (2.0**-10, 2.0**-14)
TOL[BF16] = (2.0**-7, 2.0**-126)

# torch's float64 oracle rounds x - lse with an absolute error of about eps * |x|, so its
# exp(x - lse) is only good to ~ eps * max|x| relative: the property tests widen TOL[F64] to
# F64_ORACLE_WIDENING * eps * max|x| (it matters beyond |x| ~ 1e4).
F64_ORACLE_WIDENING = 4.0

# A composition of two of our functions (softmax, then BCE on one column) against torch's
# single cross_entropy, float64: two roundings of the intermediate probability.
COMPOSED_F64_RTOL = 1e-11

# ----------------------------------------------------------------------------- ulp bounds

# SPEC: every elementwise or per-row result within 4 ulp of the exact value (float64 likewise
# in its own ulps).
ULP = {F32: 4.0, F64: 4.0}
ULP_F32 = ULP[F32]
ULP_F64 = ULP[F64]
# float64 softmax = exp(d) * (1 / (1 + others)) with compensated row sums.
ULP_F64_SOFTMAX = 4.0

# SPEC: a float32 sum over many items (accumulated in double) stays within a few ulp of the
# float64 sum.
ULP_F32_LONG_SUM = 2.0

# The vector math of cpp/simd/vmath.h: max ulp error per (function, ISA), as its contract
# states, for both dtypes. The scalar path has no fused multiply-add, which costs exp a little.
VMATH_ULP = {
    ("exp", "avx2"): 1.0,
    ("exp", "scalar"): 1.5,
    ("log1p", "avx2"): 2.0,
    ("log1p", "scalar"): 2.0,
    ("log", "avx2"): 2.0,
    ("log", "scalar"): 2.0,
    ("softplus", "avx2"): 2.0,
    ("softplus", "scalar"): 2.0,
    # Measured 2.23 (float32) / 2.44 (float64) ulp, worst just below |u| = 0.55 where
    # -em1 / (2 + em1) has three roundings; tanh_pair is vtanh bit for bit.
    ("tanh", "avx2"): 2.5,
    ("tanh", "scalar"): 2.5,
    ("tanh_pair", "avx2"): 2.5,
    ("tanh_pair", "scalar"): 2.5,
    ("sech2", "avx2"): 3.5,  # measured 3.18 / 3.03
    ("sech2", "scalar"): 3.5,
}

# ----------------------------------------------------------------------------- our own results

# The same values in another memory layout (Fortran order, negative strides, steps, stride-0
# views) against the contiguous call: other kernels may sum in another order. (rtol, atol)
RELAYOUT = (1e-12, 0.0)
# Class-index targets of another integer dtype, or an ignore_index no target holds, against
# the int64 call (numpy's default atol kept). (rtol, atol)
SAME_TARGETS = (1e-13, 1e-8)
# A mixed-dtype call against the call with every float argument cast to the result's dtype.
MIXED_DTYPES = TOL[F64]
# The avx2 and scalar paths on the same float32 data (FMA or not: not bit for bit). (rtol, atol)
ISA_AGREEMENT_F32 = (2e-6, 1e-7)

# ----------------------------------------------------------------------------- low precision

# SPEC "Low precision": float32 arithmetic, float64 sums, each result rounded once into its
# format, so within 1 ulp of the format (against a float64 reference on the same 16-bit inputs).
ULP_LOW = 1.0
# Against torch on the same 16-bit tensors: torch rounds its own intermediates to the format
# (a bfloat16 log_softmax is x - lse with lse rounded to bfloat16 first), so the two may differ
# by a few of the format's ulps, relative to the largest magnitude of the compared values
# (an element that cancels to nearly 0 can be off by that much in absolute terms). (rtol, atol
# as a multiple of the largest |value|)
TORCH_LOW = {F16: (4 * 2.0**-10, 4 * 2.0**-10), BF16: (4 * 2.0**-7, 4 * 2.0**-7)}
