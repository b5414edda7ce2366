"""Accuracy in ulps against a higher-precision reference (SPEC.md: every elementwise or
per-row float32 result within 4 ulp of the exact value, errors below FLT_MIN not counted;
float64 likewise in its own ulps).

float32 results are measured against long double / float64 references computed from the same
float32 inputs; float64 results against mpmath (100 bits) on small samples, and against x87
long double where NumPy has it. Torch is measured beside us where it loses digits, to show
the cases are real."""

from __future__ import annotations

import mpmath
import numpy as np
import pytest
import torch.nn.functional as F
from _helpers import (
    DTYPES,
    F32,
    F64,
    LONGDOUBLE_IS_EXTENDED,
    dtype_id,
    max_ulp,
    mp_to_longdouble,
    ref_log_sigmoid,
    ref_log_softmax_rows,
    ref_logsumexp_rows,
    ref_sigmoid,
    ref_softmax_rows,
    worst,
)
from _oracle import to_numpy, to_torch
from _tolerances import ULP_F32, ULP_F64, ULP_F64_SOFTMAX

import logitops as lo

pytestmark = pytest.mark.skipif(not LONGDOUBLE_IS_EXTENDED, reason="needs x87 long double as the reference")


# ----------------------------------------------------------------------------- row data


def row_families(rng, dtype, cols, rows=64):
    """Named (rows, cols) arrays: ordinary, wide, shifted, confident, -inf-masked rows."""
    def r(a, b):
        return rng.uniform(a, b, (rows, cols)).astype(dtype)

    yield "randn", (rng.standard_normal((rows, cols)) * 2).astype(dtype)
    yield "pm88", r(-88, 88)
    yield "in90to100", r(90, 100)
    yield "pm1e4", r(-1e4, 1e4)
    yield "neg-shift", r(-1e3 - 5, -1e3)
    conf = (rng.standard_normal((rows, cols))).astype(dtype)
    # One dominant logit, margins from 5 to 80: the rest's mass from ~1e-2 down to 1e-33
    # (see test_confident_rows_flush_band for larger margins).
    margin = np.linspace(5, 80, rows).astype(dtype)
    conf[np.arange(rows), rng.integers(0, cols, rows)] = margin
    yield "confident", conf
    masked = (rng.standard_normal((rows, cols)) * 3).astype(dtype)
    masked[rng.random((rows, cols)) < 0.5] = -np.inf
    masked[:, 0] = rng.standard_normal(rows)  # keep one finite entry per row
    yield "masked", masked
    ties = np.repeat(rng.standard_normal((rows, 1)).astype(dtype), cols, axis=1)
    yield "ties", ties


COLS = [1, 2, 7, 33, 1000]
FAMILIES = ["randn", "pm88", "in90to100", "pm1e4", "neg-shift", "confident", "masked", "ties"]


def family(rng, dtype, cols, name):
    return dict(row_families(rng, dtype, cols))[name]


@pytest.mark.parametrize("cols", COLS)
@pytest.mark.parametrize("name", FAMILIES)
def test_float32_row_functions_within_4ulp(name, cols, rng):
    x = family(rng, F32, cols, name)
    lse = lo.logsumexp(x)
    exact = ref_logsumexp_rows(x)
    assert max_ulp(lse, exact) <= ULP_F32, worst(lse, exact, x.max(axis=1))

    ls = lo.log_softmax(x)
    exact = ref_log_softmax_rows(x)
    assert max_ulp(ls, exact) <= ULP_F32, worst(ls, exact, x)

    sm = lo.softmax(x)
    exact = ref_softmax_rows(x)
    assert max_ulp(sm, exact) <= ULP_F32, worst(sm, exact, x)


def confident_rows(dtype, cols=1000, rows=40, seed=0):
    """Rows where one logit beats the others by 15..40: log_softmax there is -tiny."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((rows, cols)).astype(dtype)
    top = rng.integers(0, cols, rows)
    x[np.arange(rows), top] = np.linspace(15, 40, rows).astype(dtype)
    return x, top


def test_log_softmax_at_the_row_maximum_does_not_cancel():
    x, top = confident_rows(F32)
    rows = np.arange(x.shape[0])
    exact = ref_log_softmax_rows(x)[rows, top]
    assert (exact < 0).all() and (exact > -1e-2).all()
    ours = lo.log_softmax(x)[rows, top]
    assert max_ulp(ours, exact) <= ULP_F32, worst(ours, exact, x[rows, top])
    # torch computes x - lse and loses every digit of these tiny values.
    theirs = to_numpy(F.log_softmax(to_torch(x), dim=-1))[rows, top]
    assert max_ulp(theirs, exact) > 1e3
    # ... and our log_softmax is exact there for every row, not just on average
    assert np.all(ours < 0)


def test_log_softmax_at_the_row_maximum_float64_does_not_cancel():
    x, top = confident_rows(F64, cols=50, rows=20)
    x[np.arange(20), top] = np.linspace(20, 700, 20)
    rows = np.arange(x.shape[0])
    ours = lo.log_softmax(x)[rows, top]
    with mpmath.workprec(120):
        exact = []
        for r, t in zip(x, top):
            others = mpmath.fsum(mpmath.exp(mpmath.mpf(float(v)) - mpmath.mpf(float(r[t])))
                                 for j, v in enumerate(r) if j != t)
            exact.append(-mpmath.log1p(others))
    assert max_ulp(ours, np.array(exact, dtype=object)) <= ULP_F64
    theirs = to_numpy(F.log_softmax(to_torch(x), dim=-1))[rows, top]
    assert max_ulp(theirs, np.array(exact, dtype=object)) > 1e3


def test_logsumexp_long_row_float32():
    """A 4M-element float32 row sums in double: the result stays within 4 ulp."""
    rng = np.random.default_rng(2)
    x = (rng.standard_normal((1, 4_000_000)) * 5).astype(F32)
    got = lo.logsumexp(x)
    assert max_ulp(got, ref_logsumexp_rows(x)) <= ULP_F32
    # torch's float32 sum loses more than we do (no assertion on torch: its error varies).


def test_softmax_two_columns_tracks_exp():
    """softmax([0, d])[1] = e^d / (1 + e^d) over the whole normal range of e^d: exercises the
    kernels' shifted exponential at every magnitude."""
    d = np.linspace(-87.0, 0.0, 400_001).astype(F32)
    x = np.stack([np.zeros_like(d), d], axis=1)
    sm = lo.softmax(x)
    exact = ref_softmax_rows(x)
    assert max_ulp(sm, exact) <= ULP_F32, worst(sm[:, 1], exact[:, 1], d)
    lse = lo.logsumexp(x)
    assert max_ulp(lse, ref_logsumexp_rows(x)) <= ULP_F32
    ls = lo.log_softmax(x)
    assert max_ulp(ls, ref_log_softmax_rows(x)) <= ULP_F32, worst(ls[:, 0], ref_log_softmax_rows(x)[:, 0], d)


def _two_class_reference(x, y, weight, eps):
    """Losses and gradients of class-target cross_entropy over two classes in float64 from the
    logistic form (z = x_o - x_y is exact in float64 for float32 logits, and nothing cancels)."""
    xd = x.astype(F64)
    r = np.arange(len(y))
    z = xd[r, 1 - y] - xd[r, y]
    wd = np.ones(2) if weight is None else weight.astype(F64)
    wy, wo = wd[y], wd[1 - y]
    nll_y, nll_o = np.logaddexp(0.0, z), np.logaddexp(0.0, -z)
    e = np.exp(-np.abs(z))
    p_o = np.where(z >= 0, 1 / (1 + e), e / (1 + e))
    p_y = np.where(z >= 0, e / (1 + e), 1 / (1 + e))
    loss = (1 - eps) * wy * nll_y + eps / 2 * (wy * nll_y + wo * nll_o)
    grad = np.empty(x.shape)
    grad[r, 1 - y] = (1 - eps) * wy * p_o + eps / 2 * (wd.sum() * p_o - wo)
    grad[r, y] = -(1 - eps) * wy * p_o + eps / 2 * (wd.sum() * p_y - wy)
    return loss, grad


@pytest.mark.parametrize("smoothing", [0.0, 0.2], ids=["plain", "smoothing"])
@pytest.mark.parametrize("weighted", [False, True], ids=["unweighted", "weighted"])
def test_cross_entropy_two_classes_float32(weighted, smoothing):
    """[batch, 2] logits take their own kernel (float lanes, TwoSum for z = x_o - x_y): losses and
    gradients within 4 ulp at every scale of logit gaps, confident rows (losses near FLT_MIN)
    included. With label smoothing the gradient's terms cancel, and that kernel rounds double
    results once: within 1 ulp there."""
    rng = np.random.default_rng(11)
    n = 40_000
    x = np.concatenate([rng.standard_normal((n, 2)) * s for s in (0.5, 4, 30, 200)]).astype(F32)
    y = rng.integers(0, 2, len(x))
    w = np.array([0.7, 1.9], F32) if weighted else None
    loss, grad = lo.cross_entropy_value_and_grad(x, y, w, reduction="none", label_smoothing=smoothing)
    ref_loss, ref_grad = _two_class_reference(x, y, w, smoothing)
    bound = 1.0 if smoothing else ULP_F32
    assert max_ulp(loss, ref_loss) <= bound, worst(loss, ref_loss, x[:, 0] - x[:, 1])
    assert max_ulp(grad, ref_grad) <= bound, worst(grad, ref_grad, x)
    total = float(lo.cross_entropy(x, y, w, reduction="sum", label_smoothing=smoothing))
    assert abs(total - ref_loss.sum()) <= 1e-6 * ref_loss.sum()


def _short_rows_reference(x, y, weight):
    """Losses and gradients of class-target cross_entropy in float64, every sum over the classes
    a row leaves out (no Z - 1 or Z - e_y that could cancel)."""
    xd = x.astype(F64)
    r = np.arange(len(y))
    top = xd.argmax(axis=1)
    d = xd - xd[r, top][:, None]
    e = np.exp(d)
    e_but_top, e_but_y = e.copy(), e.copy()
    e_but_top[r, top] = 0.0
    e_but_y[r, y] = 0.0
    Z = e.sum(axis=1)
    wy = np.ones(len(y)) if weight is None else weight.astype(F64)[y]
    loss = wy * (np.log1p(e_but_top.sum(axis=1)) - d[r, y])
    grad = wy[:, None] * e / Z[:, None]
    grad[r, y] = -wy * e_but_y.sum(axis=1) / Z
    return loss, grad


@pytest.mark.parametrize("weighted", [False, True], ids=["unweighted", "weighted"])
@pytest.mark.parametrize("classes", [3, 4, 10, 32])
def test_cross_entropy_short_rows_float32(classes, weighted):
    """Rows of 3-32 classes take the short-row kernel (float lanes end to end for float32 without
    label smoothing): losses and gradients within 4 ulp at every scale of logit gaps, confident
    rows (losses far below 1) included."""
    rng = np.random.default_rng(classes)
    n = 10_000
    x = np.concatenate([rng.standard_normal((n, classes)) * s for s in (0.5, 4, 30, 200)]).astype(F32)
    y = rng.integers(0, classes, len(x))
    w = rng.uniform(0.2, 3.0, classes).astype(F32) if weighted else None
    loss, grad = lo.cross_entropy_value_and_grad(x, y, w, reduction="none")
    ref_loss, ref_grad = _short_rows_reference(x, y, w)
    assert max_ulp(loss, ref_loss) <= ULP_F32, worst(loss, ref_loss, x[np.arange(len(y)), y])
    assert max_ulp(grad, ref_grad) <= ULP_F32, worst(grad, ref_grad, x)
    total = float(lo.cross_entropy(x, y, w, reduction="sum"))
    assert abs(total - ref_loss.sum()) <= 1e-6 * ref_loss.sum()


# ----------------------------------------------------------------------------- elementwise


def elementwise_sample(dtype, n=1_000_000, seed=4):
    rng = np.random.default_rng(seed)
    lim = 110.0 if dtype == F32 else 760.0
    return np.concatenate([
        rng.uniform(-lim, lim, n),
        rng.uniform(-20, 20, n // 4),
        rng.standard_normal(n // 4) * 1e-3,
        -np.logspace(-30, 4, 20_000), np.logspace(-30, 4, 20_000),
    ]).astype(dtype)


def test_float32_sigmoids_within_4ulp():
    x = elementwise_sample(F32)
    for fn, ref in ((lo.log_sigmoid, ref_log_sigmoid), (lo.sigmoid, ref_sigmoid)):
        got = fn(x)
        exact = ref(x)
        assert max_ulp(got, exact) <= ULP_F32, worst(got, exact, x)


def test_float32_sigmoid_gradients_within_4ulp():
    """d/dx log_sigmoid = sigmoid(-x) and d/dx sigmoid = sigmoid(x) sigmoid(-x), tails included."""
    x = elementwise_sample(F32, n=300_000)
    g = np.ones_like(x)
    s = ref_sigmoid(x)
    sn = ref_sigmoid(-x)
    got = lo.log_sigmoid_backward(g, x)
    assert max_ulp(got, sn) <= ULP_F32, worst(got, sn, x)
    got = lo.sigmoid_backward(g, x)
    assert max_ulp(got, s * sn) <= ULP_F32, worst(got, s * sn, x)


def test_log_sigmoid_tails():
    """log_sigmoid(x) -> x for x << 0 (exactly x once exp(x) < ulp) and -> -exp(-x) for x >> 0:
    both tails keep full relative accuracy (1 - sigmoid would cancel)."""
    x = np.array([-1e4, -200, -100, -40, -20, 15, 20, 40, 60, 80, 87], F32)
    got = lo.log_sigmoid(x)
    exact = ref_log_sigmoid(x)
    assert max_ulp(got, exact) <= ULP_F32, worst(got, exact, x)
    assert got[0] == F32.type(-1e4)
    assert (got[5:] < 0).all()  # never rounded to 0 while -exp(-x) >= FLT_MIN


def test_float64_elementwise_against_long_double():
    x = elementwise_sample(F64, n=300_000)
    for fn, ref in ((lo.log_sigmoid, ref_log_sigmoid), (lo.sigmoid, ref_sigmoid)):
        got = fn(x)
        exact = ref(x)
        assert max_ulp(got, exact) <= ULP_F64, worst(got, exact, x)


def float64_row_errors(x):
    """(result, exact, max ulp, bound) for logsumexp, log_softmax and softmax of x's rows."""
    return [(got, exact, max_ulp(got, exact), bound) for got, exact, bound in (
        (lo.logsumexp(x), ref_logsumexp_rows(x), ULP_F64),
        (lo.log_softmax(x), ref_log_softmax_rows(x), ULP_F64),
        (lo.softmax(x), ref_softmax_rows(x), ULP_F64_SOFTMAX))]


@pytest.mark.parametrize("cols", [1, 7, 33])
@pytest.mark.parametrize("name", ["randn", "pm1e4", "confident", "masked", "in90to100"])
def test_float64_row_functions_against_long_double(name, cols, rng):
    x = family(rng, F64, cols, name)
    for got, exact, err, bound in float64_row_errors(x):
        assert err <= bound, worst(got, exact, x)


@pytest.mark.parametrize("name", ["randn", "confident", "in90to100"])
def test_float64_long_rows(name, rng):
    """1000-column float64 rows: the row sums are compensated, so length costs no ulps."""
    x = family(rng, F64, 1000, name)
    for got, exact, err, bound in float64_row_errors(x):
        assert err <= bound, worst(got, exact, x)


def test_confident_rows_flush_band():
    """log_softmax at the maximum of a row whose other terms are each below FLT_MIN but sum
    above it (margin ~89 over 1000 classes): the exact result is a normal float32."""
    rng = np.random.default_rng(1)
    x = rng.standard_normal((4, 1000)).astype(F32) * 0.1
    x[:, 0] = 88.5 + 0.3 * np.arange(4, dtype=F32)  # every other exp(d) ~ e^-88.5..-89.4 < FLT_MIN
    exact = ref_log_softmax_rows(x)[:, 0]
    assert (-exact > np.finfo(F32).smallest_normal * 100).all()
    assert max_ulp(lo.log_softmax(x)[:, 0], exact) <= ULP_F32


# ----------------------------------------------------------------------------- float64 vs mpmath


def mp_rows(x):
    """Exact logsumexp, log_softmax and softmax of each row of x, by mpmath at 120 bits."""
    lse, ls, sm = [], [], []
    with mpmath.workprec(120):
        for row in x:
            v = [mpmath.mpf(float(t)) for t in row]
            m = max(v)
            s = mpmath.fsum(mpmath.exp(t - m) for t in v)
            lz = mpmath.log(s)
            lse.append(m + lz)
            ls.append([t - m - lz for t in v])
            sm.append([mpmath.exp(t - m) / s for t in v])
    return (np.array(lse, dtype=object), np.array(ls, dtype=object), np.array(sm, dtype=object))


@pytest.mark.parametrize("dtype", DTYPES, ids=dtype_id)
def test_row_functions_against_mpmath(dtype):
    rng = np.random.default_rng(9)
    rows = [rng.standard_normal(9) * 3, rng.uniform(-700, 700, 9), rng.uniform(90, 100, 33),
            np.r_[30.0, rng.standard_normal(8)], np.r_[1e4, 1e4 - 1, rng.uniform(-10, 10, 7)],
            rng.uniform(-1e-5, 1e-5, 9)]
    bound = ULP_F32 if np.dtype(dtype) == F32 else ULP_F64
    for row in rows:
        x = np.asarray(row, dtype)[None, :]
        lse, ls, sm = mp_rows(x)
        assert max_ulp(lo.logsumexp(x), lse) <= bound
        assert max_ulp(lo.log_softmax(x), ls) <= bound
        assert max_ulp(lo.softmax(x), sm) <= bound


@pytest.mark.parametrize("dtype", DTYPES, ids=dtype_id)
def test_sigmoids_against_mpmath(dtype):
    rng = np.random.default_rng(8)
    lim = 100 if np.dtype(dtype) == F32 else 740
    x = np.concatenate([rng.uniform(-lim, lim, 1500), rng.standard_normal(500) * 1e-4]).astype(dtype)
    with mpmath.workprec(120):
        xs = [mpmath.mpf(float(v)) for v in x]
        sig = np.array([1 / (1 + mpmath.exp(-v)) for v in xs], dtype=object)
        lsig = np.array([-mpmath.log1p(mpmath.exp(-v)) for v in xs], dtype=object)
    bound = ULP_F32 if np.dtype(dtype) == F32 else ULP_F64
    assert max_ulp(lo.sigmoid(x), sig) <= bound
    assert max_ulp(lo.log_sigmoid(x), lsig) <= bound


# ----------------------------------------------------------------------------- subnormal results


def subnormal_band(dtype, n):
    """x > 0 from where exp(-x) drops below the smallest normal number to past where it rounds
    to 0 (float32 ~87.3..103.97, float64 ~708.4..745.13), one unit wider either side, and
    the exact exp(-x) there (float64 for float32, mpmath for float64)."""
    fi = np.finfo(dtype)
    lo = -np.log(np.float64(fi.smallest_normal)) - 1
    hi = -np.log(np.float64(fi.smallest_subnormal)) + 1
    x = np.linspace(lo, hi, n).astype(dtype)
    if dtype == F32:
        return x, np.exp(-x.astype(np.float64))
    with mpmath.workprec(120):
        return x, np.array([mpmath.exp(-mpmath.mpf(float(v))) for v in x], dtype=object)


@pytest.fixture(scope="module")
def subnormal_bands():
    return {F32: subnormal_band(F32, 40_001), F64: subnormal_band(F64, 4_001)}


def assert_tracks_subnormal(got, exact, x, dtype, what):
    """Where the exact value is subnormal, got is within one subnormal spacing of it (a flush
    to 0 misses by up to 2^mant spacings) with its sign; where it is normal, within 4 ulp; and
    the band really produced subnormal results."""
    fi = np.finfo(dtype)
    assert max_ulp(got, exact) <= (ULP_F32 if dtype == F32 else ULP_F64), what + ": " + worst(got, exact, x)
    work = np.float64 if dtype == F32 else np.longdouble
    ex = exact.astype(work) if exact.dtype != object else mp_to_longdouble(exact)
    sub = np.abs(ex) < work(fi.smallest_normal)
    diff = np.where(sub, np.abs(got.astype(work) - ex), 0)
    i = int(np.argmax(diff))
    assert diff[i] <= work(fi.smallest_subnormal), f"{what}: at x={x[i]!r} got {got[i]!r}, exact {ex[i]!r}"
    nonzero = np.abs(ex) >= work(fi.smallest_subnormal)
    assert (np.signbit(got[nonzero]) == np.signbit(ex[nonzero])).all(), what
    got_sub = (got != 0) & (np.abs(got) < fi.smallest_normal)
    assert got_sub.sum() > len(x) // 2, f"{what}: only {got_sub.sum()} subnormal results"


def mp_pieces(e):
    """(log1p(e), e / (1 + e), e / (1 + e)^2) of exact values e = exp(-x)."""
    if e.dtype != object:
        return np.log1p(e), e / (1 + e), e / (1 + e) ** 2
    with mpmath.workprec(120):
        return tuple(np.array([f(v) for v in e], dtype=object)
                     for f in (mpmath.log1p, lambda v: v / (1 + v), lambda v: v / (1 + v) ** 2))


@pytest.mark.parametrize("dtype", DTYPES, ids=dtype_id)
def test_sigmoids_keep_subnormal_results(dtype, subnormal_bands):
    """Where the exact result is subnormal (float32 |x| ~ 87..104, float64 ~ 708..745), the
    elementwise functions return it (as SciPy's log_expit / expit do), not -0 / 0:
    log_sigmoid(x) = -log1p(exp(-x)), sigmoid(-x), their gradients."""
    x, e = subnormal_bands[np.dtype(dtype)]
    log1p_e, s, ds = mp_pieces(e)
    g = np.ones_like(x)
    assert_tracks_subnormal(lo.log_sigmoid(x), -log1p_e, x, dtype, "log_sigmoid(x)")
    assert_tracks_subnormal(lo.sigmoid(-x), s, x, dtype, "sigmoid(-x)")
    assert_tracks_subnormal(lo.log_sigmoid_backward(g, x), s, x, dtype, "log_sigmoid_backward(1, x)")
    assert_tracks_subnormal(lo.sigmoid_backward(g, x), ds, x, dtype, "sigmoid_backward(1, x)")
    assert_tracks_subnormal(lo.sigmoid_backward(g, -x), ds, x, dtype, "sigmoid_backward(1, -x)")


@pytest.mark.parametrize("dtype", DTYPES, ids=dtype_id)
def test_row_functions_keep_subnormal_results(dtype, subnormal_bands):
    """Rows [0, -x]: softmax[1] = e / (1 + e) and log_softmax[0] = -log1p(e), e = exp(-x)."""
    x, e = subnormal_bands[np.dtype(dtype)]
    log1p_e, s, _ = mp_pieces(e)
    rows = np.stack([np.zeros_like(x), -x], axis=1)
    assert_tracks_subnormal(lo.softmax(rows)[:, 1], s, x, dtype, "softmax([0, -x])[1]")
    assert_tracks_subnormal(lo.log_softmax(rows)[:, 0], -log1p_e, x, dtype, "log_softmax([0, -x])[0]")


@pytest.mark.parametrize("dtype", DTYPES, ids=dtype_id)
def test_bce_with_logits_keeps_subnormal_results(dtype, subnormal_bands):
    """t = 0, logit -x: loss softplus(-x) = log1p(e) and gradient sigmoid(-x) = e / (1 + e);
    t = 1, logit x: the same loss, gradient -sigmoid(-x)."""
    x, e = subnormal_bands[np.dtype(dtype)]
    log1p_e, s, _ = mp_pieces(e)
    g = np.ones_like(x)
    for logit, t, grad in ((-x, np.zeros_like(x), s), (x, np.ones_like(x), -s)):
        name = f"bce_with_logits(t={int(t[0])})"
        loss = lo.binary_cross_entropy_with_logits(logit, t, reduction="none")
        assert_tracks_subnormal(loss, log1p_e, x, dtype, name)
        d = lo.binary_cross_entropy_with_logits_backward(g, logit, t, reduction="none")
        assert_tracks_subnormal(d, grad, x, dtype, name + " gradient")
