"""Shared by the test files: dtypes, comparisons within the tolerance table (_tolerances.py),
ulp error measurement and float64 / long double references (torch conversions: _oracle.py).

Accuracy is measured in ulps of the result's dtype against a reference at least 11 bits more
precise (float64 for float32 results; x87 long double or mpmath for float64 results), with
errors below the dtype's smallest normal number not counted (SPEC.md).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import ml_dtypes
import numpy as np
from _tolerances import BF16, F16, F32, F64, TOL

DTYPES = (F32, F64)
# Computed in float32 blocks, each result rounded once (SPEC "Low precision").
LOW_DTYPES = (F16, BF16)

# x87 extended precision (64-bit mantissa) where numpy has it: a cheap reference for float64.
LONGDOUBLE_IS_EXTENDED = np.finfo(np.longdouble).nmant >= 63


def dtype_id(dt: Any) -> str:
    return np.dtype(dt).name


# ----------------------------------------------------------------------------- comparisons


def assert_close(actual: Any, expected: Any, dtype: Any = None, rtol: float | None = None,
                 atol: float | None = None, what: str = "") -> None:
    """actual == expected within TOL[dtype] (NaN matches NaN, infinities match exactly).

    Also checks the shape, and the dtype when `dtype` is given.
    """
    actual = np.asarray(actual)
    expected = np.asarray(expected)
    dt = np.dtype(dtype) if dtype is not None else actual.dtype
    if dtype is not None:
        assert actual.dtype == dt, f"{what}: dtype {actual.dtype}, expected {dt}"
    assert actual.shape == expected.shape, f"{what}: shape {actual.shape}, expected {expected.shape}"
    r, a = TOL[dt]
    np.testing.assert_allclose(
        actual.astype(np.float64), expected.astype(np.float64),
        rtol=r if rtol is None else rtol, atol=a if atol is None else atol,
        equal_nan=True, err_msg=what,
    )


def finfo(dt: Any) -> Any:
    """np.finfo, bfloat16 included (NumPy's finfo does not know it)."""
    return ml_dtypes.finfo(dt)


def _mant_bits(dt: np.dtype) -> int:
    return int(finfo(dt).nmant) + 1  # with the implicit bit: 24 / 53 (11 / 8 for float16 / bfloat16)


def mp_to_longdouble(values: Iterable[Any]) -> np.ndarray:
    """mpmath numbers as long doubles (hi + lo, so x87 keeps 64 bits of each)."""
    import mpmath

    out = []
    for v in values:
        v = mpmath.mpf(v)
        if mpmath.isnan(v) or mpmath.isinf(v):
            out.append(np.longdouble(float(v)))
            continue
        hi = float(v)
        if not np.isfinite(hi):  # beyond double's range
            out.append(np.longdouble(hi))
            continue
        lo = float(v - hi)
        out.append(np.longdouble(hi) + np.longdouble(lo))
    return np.array(out, dtype=np.longdouble)


def _binade_ulp(ex: np.ndarray, dt: np.dtype) -> np.ndarray:
    """The spacing of dtype `dt` in the binade of |ex| (ex in float64 or long double)."""
    if ex.dtype == np.float64:
        # From the exponent bits: much faster than frexp/ldexp on millions of points.
        e = ((np.abs(ex).view(np.uint64) >> np.uint64(52)).astype(np.int64) - (_mant_bits(dt) - 1))
        return (np.maximum(e, 1).astype(np.uint64) << np.uint64(52)).view(np.float64)
    _, e = np.frexp(np.abs(ex))  # |ex| = m * 2^e, m in [0.5, 1)
    return np.ldexp(ex.dtype.type(1), (e - _mant_bits(dt)).astype(np.int32))


def ulp_error(actual: Any, exact: Any) -> np.ndarray:
    """|actual - exact| in ulps of actual's dtype at `exact`, elementwise.

    `exact`: float64 (fine for float32 results), long double or mpmath values (needed for
    float64 results). The ulp of a value is that of the exact value's binade, with the
    subnormal spacing as the floor. Errors smaller than the dtype's smallest normal number
    count as 0 (SPEC.md). An exact value beyond the dtype's range counts as the infinity it
    rounds to. Matching infinities / NaNs count 0; a mismatch counts inf.
    """
    actual = np.asarray(actual)
    dt = actual.dtype
    assert dt in DTYPES + LOW_DTYPES, dt
    if not isinstance(exact, np.ndarray) or exact.dtype == object:
        exact = mp_to_longdouble(np.ravel(exact)).reshape(np.shape(exact))
    # float64 arithmetic is exact enough for float32 and 16-bit results (and much faster than
    # long double).
    work = np.longdouble if dt == F64 else np.float64
    fi = finfo(dt)
    with np.errstate(all="ignore"):
        ex = np.asarray(exact).astype(work).reshape(actual.shape)
        a = actual.astype(work)
        rounded = ex.astype(dt)
        diff = np.abs(a - ex)
        ulp = np.maximum(_binade_ulp(ex, dt), work(fi.smallest_subnormal))
        err = (diff / ulp).astype(np.float64)
    err = np.where(diff < work(fi.smallest_normal), 0.0, err)
    same_special = (np.isnan(a) & np.isnan(ex)) | (np.isinf(a) & (a == rounded))
    special = ~np.isfinite(a) | ~np.isfinite(rounded)
    return np.where(special, np.where(same_special, 0.0, np.inf), err)


def max_ulp(actual: Any, exact: Any) -> float:
    err = ulp_error(actual, exact)
    return float(err.max()) if err.size else 0.0


def worst(actual: Any, exact: Any, inputs: Any) -> str:
    """A message naming the worst input, for assertion failures."""
    err = ulp_error(actual, exact).ravel()
    if err.size == 0:
        return "empty"
    i = int(np.argmax(err))
    return (f"max {err[i]:.3g} ulp at input {np.ravel(inputs)[i]!r}: "
            f"got {np.ravel(actual)[i]!r}, exact {np.ravel(exact)[i]!r}")


# ----------------------------------------------------------------------------- float64 references


def _others_rows(x: np.ndarray):
    """(m, d, e, others) per row in long double: others = the sum of exp(d) over every element
    but one maximum, so that log1p(others) keeps tiny sums (1 + tiny would lose them)."""
    x = x.astype(np.longdouble)
    m = x.max(axis=1, keepdims=True)
    d = x - m
    e = np.exp(d)
    e_others = e.copy()
    e_others[np.arange(x.shape[0]), np.argmax(x, axis=1)] = 0
    return m, d, e, e_others.sum(axis=1, keepdims=True)


def ref_logsumexp_rows(x: np.ndarray) -> np.ndarray:
    """log-sum-exp of each row of a 2-D array in long double (rows without +inf or NaN)."""
    m, _, _, others = _others_rows(x)
    return (m + np.log1p(others))[:, 0]


def ref_log_softmax_rows(x: np.ndarray) -> np.ndarray:
    """log_softmax of each row in long double, exact at the maximum too: d - log1p(others)."""
    _, d, _, others = _others_rows(x)
    return d - np.log1p(others)


def ref_softmax_rows(x: np.ndarray) -> np.ndarray:
    _, _, e, others = _others_rows(x)
    return e / (1 + others)


def ref_log_sigmoid(x: np.ndarray) -> np.ndarray:
    x = x.astype(np.longdouble)
    return np.minimum(x, 0) - np.log1p(np.exp(-np.abs(x)))


def ref_sigmoid(x: np.ndarray) -> np.ndarray:
    x = x.astype(np.longdouble)
    e = np.exp(-np.abs(x))
    return np.where(x >= 0, 1 / (1 + e), e / (1 + e))
