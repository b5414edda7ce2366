"""Short rows (at most 32 classes, class axis last): the transposed-block kernels of
cpp/kernels/short_rows.h. Against torch (float64 reference) for every option at the class
counts and row counts around the kernel's limits (32 classes; blocks of 16 vectors of rows),
exact at confident predictions (ulps against long double), special values, aliasing, and
results that do not depend on where a row falls in a block or on the thread count."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from _helpers import DTYPES, assert_close, dtype_id, max_ulp, ref_log_softmax_rows, worst
from _oracle import to_numpy
from _tolerances import ULP

import logitops as lo

CLASSES = [1, 2, 3, 4, 7, 8, 9, 16, 31, 32, 33]
ROWS = [1, 7, 129, 300]
REDUCTIONS = ["none", "mean", "sum"]


def t64(a):
    a = np.asarray(a)
    return torch.from_numpy(np.ascontiguousarray(a.astype(np.float64) if a.dtype.kind == "f" else a))


def data(rng, n, c, dtype, spread=3.0):
    x = (rng.standard_normal((n, c)) * spread).astype(dtype)
    y = rng.integers(0, c, n)
    return x, y


@pytest.mark.parametrize("dtype", DTYPES, ids=dtype_id)
@pytest.mark.parametrize("c", CLASSES)
@pytest.mark.parametrize("n", ROWS)
@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("option", ["plain", "weight", "smoothing", "weight+smoothing", "ignore"])
def test_cross_entropy_short_rows_match_torch(dtype, c, n, reduction, option, rng):
    x, y = data(rng, n, c, dtype)
    kw = {}
    if "weight" in option:
        kw["weight"] = rng.uniform(0.1, 2.0, c).astype(dtype)
    if "smoothing" in option:
        kw["label_smoothing"] = 0.2
    if option == "ignore":
        y[::3] = -100
        if reduction == "mean" and not np.any(y != -100):
            y[0] = 0
    tkw = {k: (t64(v) if isinstance(v, np.ndarray) else v) for k, v in kw.items()}
    tx = t64(x).requires_grad_(True)
    ref = F.cross_entropy(tx, t64(y), reduction=reduction, **tkw)
    go = rng.standard_normal(ref.shape) if reduction == "none" else np.float64(0.7)
    ref.backward(torch.tensor(go, dtype=torch.float64))
    got = lo.cross_entropy(x, y, reduction=reduction, **kw)
    assert_close(got, to_numpy(ref), dtype)
    value, grad = lo.cross_entropy_value_and_grad(x, y, reduction=reduction, **kw)
    assert_close(value, to_numpy(ref), dtype)
    tx2 = t64(x).requires_grad_(True)
    F.cross_entropy(tx2, t64(y), reduction=reduction, **tkw).backward(
        torch.ones(()) if reduction != "none" else torch.ones(n, dtype=torch.float64)
    )
    assert_close(grad, to_numpy(tx2.grad), dtype)
    back = lo.cross_entropy_backward(np.asarray(go, dtype=dtype), x, y, reduction=reduction, **kw)
    assert_close(back, to_numpy(tx.grad), dtype)


@pytest.mark.parametrize("dtype", DTYPES, ids=dtype_id)
@pytest.mark.parametrize("c", CLASSES)
@pytest.mark.parametrize("n", ROWS)
def test_primitives_short_rows_match_torch(dtype, c, n, rng):
    x = (rng.standard_normal((n, c)) * 4).astype(dtype)
    g = rng.standard_normal((n, c)).astype(dtype)
    gr = rng.standard_normal(n).astype(dtype)
    tx = t64(x)
    assert_close(lo.logsumexp(x, axis=-1), to_numpy(torch.logsumexp(tx, -1)), dtype)
    assert_close(lo.log_softmax(x), to_numpy(F.log_softmax(tx, -1)), dtype)
    assert_close(lo.softmax(x), to_numpy(F.softmax(tx, -1)), dtype)
    for name, fn, grad in (
        ("logsumexp", lambda t: torch.logsumexp(t, -1), gr),
        ("log_softmax", lambda t: F.log_softmax(t, -1), g),
        ("softmax", lambda t: F.softmax(t, -1), g),
    ):
        t = t64(x).requires_grad_(True)
        fn(t).backward(t64(grad))
        got = getattr(lo, name + "_backward")(grad, x)
        assert_close(got, to_numpy(t.grad), dtype)


@pytest.mark.parametrize("dtype", DTYPES, ids=dtype_id)
@pytest.mark.parametrize("c", [2, 3, 10, 32])
def test_confident_short_rows_within_4ulp(dtype, c, rng):
    """The loss of a confident correct prediction is log1p(sum of the others), not lse - x_y:
    within 4 ulp at every margin, by the short-row kernels too."""
    margins = np.array([0, 1e-3, 0.5, 2, 5, 10, 15, 20, 30, 40, 60, 80, 86, 100, 300, 700])
    x = rng.standard_normal((margins.size * 20, c))
    win = rng.integers(0, c, x.shape[0])
    x[np.arange(x.shape[0]), win] = x.max(axis=1) + np.repeat(margins, 20)
    x[::3] += 1e4 * rng.standard_normal((x[::3].shape[0], 1))
    x = x.astype(dtype)
    y = win.copy()
    y[1::4] = (win[1::4] + 1) % c  # some wrong predictions too
    exact = -ref_log_softmax_rows(x)[np.arange(x.shape[0]), y]
    got = lo.cross_entropy(x, y, reduction="none")
    assert max_ulp(got, exact) <= ULP[dtype], worst(got, exact, x)
    # (logsumexp is not checked here: m + log1p(others) cancels where the result is near 0, by
    # the long-row kernels too.)
    ls = lo.log_softmax(x)
    assert max_ulp(ls, ref_log_softmax_rows(x)) <= ULP[dtype]
    # The target gradient p_y - 1 = expm1(log p_y), without cancellation.
    _, g = lo.cross_entropy_value_and_grad(x, win, reduction="sum")
    exact_g = np.expm1(ref_log_softmax_rows(x)[np.arange(x.shape[0]), win])
    got_g = g[np.arange(x.shape[0]), win]
    assert max_ulp(got_g, exact_g) <= ULP[dtype], worst(got_g, exact_g, x)


@pytest.mark.parametrize("dtype", DTYPES, ids=dtype_id)
def test_short_rows_special_values(dtype):
    inf, nan = np.inf, np.nan
    x = np.array(
        [[0.0, -inf, 1.0], [inf, 0.0, 1.0], [inf, inf, 0.0], [-inf, -inf, -inf], [nan, 0.0, 1.0], [1.0, 1.0, 1.0]],
        dtype,
    )
    x = np.repeat(x, 40, axis=0)  # several blocks, every lane position
    y = np.tile(np.array([0, 1, 2]), x.shape[0] // 3 + 1)[: x.shape[0]]
    tx = torch.from_numpy(x.astype(np.float64))
    ls = lo.log_softmax(x)
    ref = F.log_softmax(tx, -1).numpy()
    # Where torch has the limit: no +inf, not all -inf, no NaN.
    finite_rows = ~(x == inf).any(axis=1) & ~(x == -inf).all(axis=1) & ~np.isnan(x).any(axis=1)
    np.testing.assert_allclose(ls[finite_rows], ref[finite_rows].astype(dtype), rtol=1e-6)
    # Rows of all -inf: NaN (as torch); NaN anywhere: NaN for the row.
    assert np.isnan(ls[(x == -inf).all(axis=1)]).all()
    assert np.isnan(ls[np.isnan(x).any(axis=1)]).all()
    assert np.isnan(lo.softmax(x)[np.isnan(x).any(axis=1)]).all()
    # +inf entries take the limit: 0 - log(#ties) there, -inf elsewhere.
    two = (x == inf).sum(axis=1) == 2
    np.testing.assert_allclose(ls[two][:, :2], -np.log(2.0), rtol=1e-6)
    assert np.all(ls[two][:, 2] == -inf)
    lse = lo.logsumexp(x, axis=-1)
    assert np.all(lse[(x == inf).any(axis=1)] == inf)
    assert np.all(lse[(x == -inf).all(axis=1)] == -inf)
    loss = lo.cross_entropy(x, y, reduction="none")
    assert np.isnan(loss[(x == -inf).all(axis=1)]).all()
    assert np.isnan(loss[np.isnan(x).any(axis=1)]).all()
    ok = np.isfinite(x).all(axis=1)
    tl = F.cross_entropy(tx[ok], torch.from_numpy(y[ok]), reduction="none").numpy()
    np.testing.assert_allclose(loss[ok], tl.astype(dtype), rtol=1e-6)
    # An ignored row's gradient is exactly 0, NaN logits included.
    y2 = y.copy()
    y2[np.isnan(x).any(axis=1)] = -100
    _, g = lo.cross_entropy_value_and_grad(x, y2, reduction="sum")
    assert np.all(g[y2 == -100] == 0)


@pytest.mark.parametrize("dtype", DTYPES, ids=dtype_id)
@pytest.mark.parametrize("c", [2, 5, 32])
def test_short_rows_results_do_not_depend_on_block_position(dtype, c, rng):
    """A row's results are bit for bit the same wherever it falls in a block."""
    x, y = data(rng, 517, c, dtype)
    full = lo.cross_entropy(x, y, reduction="none")
    _, gfull = lo.cross_entropy_value_and_grad(x, y, reduction="sum")
    for k in (1, 5, 64, 130):
        assert np.array_equal(lo.cross_entropy(x[k:], y[k:], reduction="none"), full[k:])
        _, g = lo.cross_entropy_value_and_grad(x[k:], y[k:], reduction="sum")
        assert np.array_equal(g, gfull[k:])
        assert np.array_equal(lo.log_softmax(x[k:]), lo.log_softmax(x)[k:])
        assert np.array_equal(lo.logsumexp(x[k:], axis=-1), lo.logsumexp(x, axis=-1)[k:])


@pytest.mark.parametrize("dtype", DTYPES, ids=dtype_id)
def test_short_rows_gradient_in_place_and_thread_count(dtype, rng):
    x, y = data(rng, 200_003, 3, dtype)
    before = lo.get_num_threads()
    lo.set_num_threads(1)
    try:
        one = lo.cross_entropy(x, y, reduction="sum")
        v1, g1 = lo.cross_entropy_value_and_grad(x, y)
        lo.set_num_threads(2)
        assert lo.cross_entropy(x, y, reduction="sum") == one
        v2, g2 = lo.cross_entropy_value_and_grad(x, y)
        assert v1 == v2 and np.array_equal(g1, g2)
    finally:
        lo.set_num_threads(before)
    buf = x.copy()
    v3, g3 = lo.cross_entropy_value_and_grad(buf, y, out=buf)
    assert g3 is buf and v3 == v1 and np.array_equal(buf, g1)
