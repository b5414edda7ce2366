"""logsumexp's SciPy weighted form (b=, return_sign=) and its backward: SciPy's own test cases
for b and return_sign (transcribed as data; SciPy is not a dependency), a long double reference
over shapes x axes x broadcasts x signs, float32 within 4 ulp, the special values, the bad
inputs. Every test runs once per ISA (conftest)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from _helpers import DTYPES, assert_close, dtype_id, max_ulp, worst
from _oracle import to_torch_f64
from _tolerances import TOL, ULP_F32, ULP_F64

import logitops as lo
from logitops._checks import normalize_axes

INF, NAN = np.inf, np.nan


# ----------------------------------------------------------------------------- SciPy's cases
# The expectations of scipy/special/tests/test_logsumexp.py (test_logsumexp_b, _sign,
# _sign_zero, _sign_shape, _shape, _b_zero, _b_shape), restated here with float inputs; SciPy's
# default axis is None, ours -1, so axis=None is passed where SciPy's call had none.


def test_scipy_b():
    a = np.arange(200, dtype=np.float64)
    b = np.arange(200, 0, -1, dtype=np.float64)
    np.testing.assert_almost_equal(lo.logsumexp(a, axis=None, b=b), np.log(np.sum(b * np.exp(a))))
    np.testing.assert_almost_equal(lo.logsumexp(np.array([1000.0, 1000.0]), axis=None, b=np.array([1.2, 1.2])),
                                   1000 + np.log(2 * 1.2))
    x = np.array([1e-40] * 100000)
    b = np.linspace(1, 1000, 100000)
    logx = np.log(x)
    X, logX, B = np.vstack((x, x)), np.vstack((logx, logx)), np.vstack((b, b))
    np.testing.assert_array_almost_equal(np.exp(lo.logsumexp(logX, axis=None, b=B)), (B * X).sum())
    np.testing.assert_array_almost_equal(np.exp(lo.logsumexp(logX, b=B, axis=0)), (B * X).sum(axis=0))
    np.testing.assert_array_almost_equal(np.exp(lo.logsumexp(logX, b=B, axis=1)), (B * X).sum(axis=1))


def test_scipy_sign():
    r, s = lo.logsumexp(np.array([1.0, 1, 1]), axis=None, b=np.array([1.0, -1, -1]), return_sign=True)
    np.testing.assert_almost_equal(r, 1)
    assert s == -1


def test_scipy_sign_zero():
    r, s = lo.logsumexp(np.array([1.0, 1]), axis=None, b=np.array([1.0, -1]), return_sign=True)
    assert not np.isfinite(r) and not np.isnan(r) and r < 0
    assert s == 0


def test_scipy_sign_shape_and_shape():
    a = np.ones((1, 2, 3, 4))
    b = np.ones_like(a)
    r, s = lo.logsumexp(a, axis=2, b=b, return_sign=True)
    assert r.shape == s.shape == (1, 2, 4)
    r, s = lo.logsumexp(a, axis=(1, 3), b=b, return_sign=True)
    assert r.shape == s.shape == (1, 3)
    assert lo.logsumexp(a, axis=2, b=b).shape == (1, 2, 4)
    assert lo.logsumexp(a, axis=(1, 3), b=b).shape == (1, 3)


def test_scipy_b_zero():
    np.testing.assert_almost_equal(lo.logsumexp(np.array([1.0, 10000]), axis=None, b=np.array([1.0, 0])), 1)


def test_scipy_b_shape():
    r = lo.logsumexp(np.zeros((4, 1, 2, 1)), axis=None, b=np.ones((3, 1, 5)))  # b enlarges x: (4, 3, 2, 5)
    np.testing.assert_allclose(r, np.log(4 * 3 * 2 * 5))


# ----------------------------------------------------------------------------- against a reference


def ref_weighted(x, b, axis=-1, keepdims=False):
    """(log|sum b exp x|, sign) in long double over the broadcast shape (finite inputs)."""
    shape = np.broadcast_shapes(np.shape(x), np.shape(b))
    xl = np.broadcast_to(x, shape).astype(np.longdouble)
    bl = np.broadcast_to(b, shape).astype(np.longdouble)
    axes = normalize_axes(len(shape), axis)
    xm = np.where(bl == 0, -np.inf, xl)
    m = xm.max(axis=axes, keepdims=True)
    m = np.where(np.isfinite(m), m, 0)
    s = (bl * np.exp(xm - m)).sum(axis=axes, keepdims=True)
    with np.errstate(divide="ignore"):
        v = np.log(np.abs(s)) + m
    if not keepdims:
        v, s = v.squeeze(axis=axes), s.squeeze(axis=axes)
    return v, np.sign(s)


CASES = [
    # (x shape, b shape, axis)
    ((5, 7), (5, 7), -1),
    ((5, 7), (7,), -1),
    ((5, 7), (5, 1), -1),
    ((5, 7), (), -1),
    ((6, 33), (33,), -1),
    ((3, 4, 5), (4, 5), (1, 2)),
    ((3, 4, 5), (3, 1, 5), 1),
    ((3, 4, 5), (4, 1), 0),
    ((3, 4, 5), (5,), None),
    ((4, 1), (4, 9), -1),  # b enlarges x
    ((7,), (2, 7), -1),
    ((2, 1000), (1000,), -1),
]


@pytest.mark.parametrize("dtype", DTYPES, ids=dtype_id)
@pytest.mark.parametrize("case", CASES, ids=str)
@pytest.mark.parametrize("keepdims", [False, True])
def test_against_reference(dtype, case, keepdims, rng):
    xs, bs, axis = case
    x = (rng.standard_normal(xs) * 3).astype(dtype)
    for signs in ("positive", "mixed"):
        b = rng.uniform(0.2, 2.0, bs)
        if signs == "mixed":
            b = b * rng.choice([-1.0, 1.0], bs)
        b = b.astype(dtype)
        want, want_sign = ref_weighted(x, b, axis, keepdims)
        v, s = lo.logsumexp(x, axis, keepdims, b=b, return_sign=True)
        assert np.shape(v) == want.shape and np.shape(s) == want.shape and np.asarray(v).dtype == dtype
        assert_close(v, want.astype(np.float64), dtype, what=f"{case} {signs}")
        np.testing.assert_array_equal(s, want_sign.astype(np.float64))
        plain = lo.logsumexp(x, axis, keepdims, b=b)
        np.testing.assert_array_equal(plain, np.where(np.asarray(s) < 0, np.nan, v))


def test_float32_within_4_ulp(rng):
    x = (rng.standard_normal((3000, 16)) * 5).astype(np.float32)
    x[1000:2000] *= 1e-3  # near-ties
    x[2000:] *= 30
    b = rng.uniform(0.01, 100.0, (3000, 16)).astype(np.float32)
    b[:500] = rng.uniform(1e-30, 1e30, (500, 16)).astype(np.float32)  # wide weights
    got = lo.logsumexp(x, b=b)
    exact = ref_weighted(x, b)[0]
    assert max_ulp(got, exact) <= ULP_F32, worst(got, exact, x[:, 0])
    # Mixed signs without cancellation (the positive part dominates 3:1 and more).
    b2 = b.astype(np.float64)
    cap = 0.25 * b2[:, ::2] * np.exp(np.minimum(x[:, ::2].astype(np.float64) - x[:, 1::2], 80.0))
    b2[:, 1::2] = -np.minimum(b2[:, 1::2], cap)  # each negative term at most a quarter of its neighbour
    b2 = b2.astype(np.float32)
    v, s = lo.logsumexp(x, b=b2, return_sign=True)
    exact, es = ref_weighted(x, b2)
    assert np.array_equal(s, es.astype(np.float32))
    assert max_ulp(v, exact) <= ULP_F32, worst(v, exact, x[:, 0])


def test_float64_within_4_ulp(rng):
    x = rng.standard_normal((2000, 16)) * 5
    x[1000:] *= 30
    b = rng.uniform(0.01, 100.0, (2000, 16))
    got = lo.logsumexp(x, b=b)
    exact = ref_weighted(x, b)[0]  # long double: 11 bits beyond float64
    assert max_ulp(got, exact) <= ULP_F64, worst(got, exact, x[:, 0])


def test_b_of_ones_is_the_unweighted_logsumexp(rng):
    x = (rng.standard_normal((50, 31)) * 4).astype(np.float32)
    np.testing.assert_allclose(lo.logsumexp(x, b=np.ones(31, np.float32)), lo.logsumexp(x), rtol=2e-7)
    v, s = lo.logsumexp(x, return_sign=True)  # return_sign without b: sign 1
    assert np.array_equal(v, lo.logsumexp(x)) and np.all(s == 1) and s.dtype == np.float32


# ----------------------------------------------------------------------------- backward


def torch_weighted_grad(x, b, axis, keepdims, g):
    """d/dx of <log sum b exp x, g> for positive b, torch autograd in float64 (broadcast summed)."""
    tx = to_torch_f64(x).requires_grad_(True)
    tb = to_torch_f64(b)
    xx, bb = torch.broadcast_tensors(tx, tb)
    axes = normalize_axes(xx.ndim, axis)
    r = torch.logsumexp(xx + torch.log(bb), dim=axes, keepdim=keepdims)
    r.backward(to_torch_f64(g).reshape(r.shape))
    return tx.grad.numpy()


@pytest.mark.parametrize("dtype", DTYPES, ids=dtype_id)
@pytest.mark.parametrize("case", CASES, ids=str)
def test_backward(dtype, case, rng):
    xs, bs, axis = case
    x = (rng.standard_normal(xs) * 3).astype(dtype)
    b = rng.uniform(0.2, 2.0, bs).astype(dtype)
    v = lo.logsumexp(x, axis, True, b=b)
    g = rng.standard_normal(np.shape(v)).astype(dtype)
    got = lo.logsumexp_backward(g, x, axis, True, b=b)
    assert got.shape == x.shape and got.dtype == dtype
    assert_close(got, torch_weighted_grad(x, b, axis, True, g), dtype, what=str(case))
    # Mixed signs: b e^x / s, from the reference's sum (return_sign: a negative sum is valid).
    bm = (b * rng.choice([-1.0, 1.0], bs)).astype(dtype)
    shape = np.broadcast_shapes(xs, bs)
    axes = normalize_axes(len(shape), axis)
    xl, bl = np.broadcast_to(x, shape).astype(np.float64), np.broadcast_to(bm, shape).astype(np.float64)
    m = xl.max(axis=axes, keepdims=True)
    t = bl * np.exp(xl - m)
    full = np.broadcast_to(g.astype(np.float64), np.shape(v)) * t / t.sum(axis=axes, keepdims=True)
    lead = len(shape) - len(xs)
    want = full.sum(axis=tuple(range(lead)) + tuple(lead + i for i, n in enumerate(xs) if n == 1 and shape[lead + i] != 1),
                    keepdims=True).reshape(xs) if shape != xs else full
    got_m = lo.logsumexp_backward(g, x, axis, True, b=bm, return_sign=True)
    rtol, atol = TOL[np.dtype(dtype)]
    np.testing.assert_allclose(got_m, want, rtol=rtol * 10, atol=atol * 10)  # s may cancel a little
    neg = lo.logsumexp(x, axis, True, b=bm, return_sign=True)[1] < 0
    got_n = lo.logsumexp_backward(g, x, axis, True, b=bm)  # without return_sign: NaN where s < 0
    assert np.array_equal(np.isnan(got_n).any(axis=axes, keepdims=True) if shape == xs else
                          np.isnan(got_n).any(), neg if shape == xs else neg.any())


# ----------------------------------------------------------------------------- special values


@pytest.mark.parametrize("dtype", DTYPES, ids=dtype_id)
def test_special_values(dtype):
    def lse(x, b, **kw):
        return lo.logsumexp(np.array(x, dtype), b=np.array(b, dtype), return_sign=True, **kw)

    assert lse([1.0, INF, NAN], [1.0, 0.0, 0.0]) == (1.0, 1.0)  # b == 0 drops +inf and NaN terms
    assert lse([1.0, 2.0], [0.0, 0.0]) == (-INF, 0.0)  # nothing left: log 0
    assert lse([-INF, -INF], [1.0, -2.0]) == (-INF, 0.0)
    assert lse([INF, 0.0], [2.0, -5.0]) == (INF, 1.0)
    assert lse([INF, INF], [-2.0, -5.0]) == (INF, -1.0)
    v, s = lse([INF, INF], [2.0, -5.0])  # inf - inf
    assert np.isnan(v) and np.isnan(s)
    v, s = lse([NAN, 0.0], [1.0, 1.0])
    assert np.isnan(v) and np.isnan(s)
    v, s = lse([0.0, 0.0], [1.0, NAN])
    assert np.isnan(v) and np.isnan(s)
    assert np.isnan(lo.logsumexp(np.array([0.0, 1.0], dtype), b=np.array([1.0, -1.0], dtype)))  # SciPy: nan
    assert lo.logsumexp(np.zeros((3, 0), dtype), b=np.zeros(0, dtype)).tolist() == [-INF] * 3
    v, s = lse([1e4, 1e4 - 1], [1.0, 1.0])
    np.testing.assert_allclose(v, 1e4 + np.log1p(np.exp(-1.0)), rtol=TOL[np.dtype(dtype)][0])
    # Backward at the limits.
    g = lo.logsumexp_backward(np.array(1.0, dtype), np.array([INF, INF, 0.0], dtype), b=np.array([1.0, 3.0, 2.0], dtype))
    np.testing.assert_allclose(g, [0.25, 0.75, 0.0])
    g = lo.logsumexp_backward(np.array(1.0, dtype), np.array([5.0, INF], dtype), b=np.array([1.0, 0.0], dtype))
    assert g.tolist() == [1.0, 0.0]


def test_dtypes_and_threads(rng):
    x = rng.standard_normal((4, 6)).astype(np.float32)
    b = rng.uniform(0.5, 1.5, 6)
    assert lo.logsumexp(x, b=b).dtype == np.float64  # float64 b promotes, as torch's rule
    assert lo.logsumexp(x, b=2.0).dtype == np.float32  # a Python float is weakly typed
    np.testing.assert_allclose(lo.logsumexp(x, b=2.0), lo.logsumexp(x) + np.log(2), rtol=1e-6)
    big = rng.standard_normal((4000, 300)).astype(np.float32)
    bb = rng.uniform(-1, 2, 300).astype(np.float32)
    before = lo.get_num_threads()
    try:
        lo.set_num_threads(1)
        a1 = lo.logsumexp(big, b=bb, return_sign=True)
        lo.set_num_threads(2)
        a2 = lo.logsumexp(big, b=bb, return_sign=True)
    finally:
        lo.set_num_threads(before)
    assert np.array_equal(a1[0], a2[0], equal_nan=True) and np.array_equal(a1[1], a2[1])


def test_bad_inputs(rng):
    x = rng.standard_normal((4, 5))
    with pytest.raises(ValueError, match=r"\bb\b.*\(3,\).*\(4, 5\)"):
        lo.logsumexp(x, b=np.ones(3))
    with pytest.raises(ValueError, match=r"\bb\b"):
        lo.logsumexp_backward(np.ones(4), x, b=np.ones((2, 5)))
    for bad in (np.ones(5, np.int64), np.ones(5, bool), np.ones(5, np.complex128), [1.0] * 5, "b", True):
        with pytest.raises(TypeError, match=r"\bb\b"):
            lo.logsumexp(x, b=bad)
    for bad in (1, None, "yes", np.ones(1)):
        with pytest.raises(TypeError, match="return_sign"):
            lo.logsumexp(x, b=np.ones(5), return_sign=bad)
    with pytest.raises(ValueError, match="grad_output"):
        lo.logsumexp_backward(np.ones(5), x, b=np.ones(5))
    with pytest.raises(ValueError, match="axis"):
        lo.logsumexp(x, axis=2, b=np.ones(5))
