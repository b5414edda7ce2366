"""soft_margin_loss and multilabel_soft_margin_loss (torch's): every reduction x dtype x shape x
weight against torch (float64 oracle, autograd for the gradients), the deviations of _margin.py's
docstring (torch overflows at large margins), the bad inputs, and accuracy in ulps (float32 within
4 ulp of the exact value)."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from _helpers import LONGDOUBLE_IS_EXTENDED, assert_close, max_ulp, worst
from _oracle import to_torch
from _tolerances import ULP_F32

import logitops as lo

DTYPES = (np.float32, np.float64)
REDUCTIONS = ("mean", "sum", "none")


def T(a):
    return torch.from_numpy(np.asarray(a, dtype=np.float64).copy())


def check_all(dtype, what, f, ours, x, t, rng, wrt=("input",), **kw):
    """forward, backward (each wrt) and fused of ours against torch autograd of f in float64."""
    want = f(T(x), T(t)).numpy()
    got = ours(x, t, **kw)
    assert np.shape(got) == want.shape and np.asarray(got).dtype == dtype, what
    assert_close(got, want, dtype, what=what)
    reduced = kw.get("reduction", "mean") != "none"
    g = np.asarray(0.7) if reduced else rng.standard_normal(want.shape)
    for w in wrt:
        tx, tt = T(x).requires_grad_(True), T(t).requires_grad_(True)
        y = f(tx, tt) if w == "target" else f(tx, T(t))
        y.backward(T(g).reshape(y.shape))
        ref = (tt if w == "target" else tx).grad.numpy()
        b = getattr(lo, ours.__name__ + "_backward")(g.astype(dtype), x, t, **kw, wrt=w)
        assert b.dtype == dtype and b.shape == x.shape
        assert_close(b, ref, dtype, what=f"{what} backward wrt {w}")
    tx = T(x).requires_grad_(True)
    y = f(tx, T(t))
    y.backward(torch.ones_like(y))
    loss, grad = getattr(lo, ours.__name__ + "_value_and_grad")(x, t, **kw)
    assert_close(loss, want, dtype, what=what + " fused loss")
    assert_close(grad, tx.grad.numpy(), dtype, what=what + " fused grad")
    xo = x.copy()
    loss2, grad2 = getattr(lo, ours.__name__ + "_value_and_grad")(xo, t, **kw, out=xo)
    assert grad2 is xo and np.array_equal(grad2, grad) and np.array_equal(loss2, loss, equal_nan=True)


# ----------------------------------------------------------------------------- soft margin


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_soft_margin_against_torch(dtype, reduction, rng):
    for shape, labels in itertools.product(((6, 5), (33,), (2, 3, 7), (0, 3), ()), ("pm1", "real")):
        x = np.asarray(rng.standard_normal(shape) * 5).astype(dtype)
        # torch takes any real target: its number is log(1 + exp(-y x)), and so is ours
        t = np.asarray(rng.choice([-1.0, 1.0], shape) if labels == "pm1" else rng.standard_normal(shape)).astype(dtype)
        check_all(dtype, f"soft_margin {shape} {labels} {reduction}",
                  lambda a, b: F.soft_margin_loss(a, b, reduction=reduction), lo.soft_margin_loss, x, t, rng,
                  reduction=reduction)


def test_soft_margin_large_margins_are_exact_where_torch_overflows():
    """Deviation 1: -y x > 88.7 (float32) / 709.8 (float64): torch's loss is inf and its gradient
    nan; ours is -y x and -y."""
    for dtype, big in ((np.float32, 100.0), (np.float64, 800.0)):
        x = np.array([big, -big, 1e4, -3e38 if dtype == np.float32 else -1e300], dtype)
        y = np.array([-1.0, 1.0, -1.0, 1.0], dtype)
        tx = to_torch(x, requires_grad=True)
        tl = F.soft_margin_loss(tx, to_torch(y), reduction="none")
        tl.sum().backward()
        assert torch.isinf(tl).all() and torch.isnan(tx.grad).all()  # torch's
        loss, grad = lo.soft_margin_loss_value_and_grad(x, y, reduction="none")
        np.testing.assert_array_equal(loss, np.abs(x))
        np.testing.assert_array_equal(grad, -y)


def test_soft_margin_special_values():
    x = np.array([np.inf, -np.inf, np.inf, np.nan, 0.0])
    y = np.array([1.0, 1.0, 0.0, 1.0, 1.0])
    loss, grad = lo.soft_margin_loss_value_and_grad(x, y, reduction="none")
    np.testing.assert_array_equal(loss, [0.0, np.inf, np.nan, np.nan, np.log(2)])
    np.testing.assert_array_equal(grad[:2], [-0.0, -1.0])
    assert np.isnan(grad[2:4]).all()


@pytest.mark.skipif(not LONGDOUBLE_IS_EXTENDED, reason="needs x87 long double as the reference")
def test_soft_margin_float32_within_4ulp(rng):
    x = np.concatenate([rng.uniform(-110, 110, 300_000), rng.standard_normal(100_000) * 3,
                        np.logspace(-30, 4, 20_000) * rng.choice([-1, 1], 20_000)]).astype(np.float32)
    y = rng.choice([-1.0, 1.0], x.size).astype(np.float32)
    z = -(y.astype(np.longdouble) * x)
    exact = np.logaddexp(np.longdouble(0), z)
    dexact = -y * (1 / (1 + np.exp(-z)))
    loss, grad = lo.soft_margin_loss_value_and_grad(x, y, reduction="none")
    assert max_ulp(loss, exact) <= ULP_F32, worst(loss, exact, x)
    assert max_ulp(grad, dexact) <= ULP_F32, worst(grad, dexact, x)
    g2 = lo.soft_margin_loss_backward(np.ones_like(x), x, y, reduction="none")
    assert max_ulp(g2, dexact) <= ULP_F32, worst(g2, dexact, x)
    theirs = F.soft_margin_loss(to_torch(x), to_torch(y), reduction="none").numpy()
    assert max_ulp(theirs, exact) == np.inf  # the case is real: torch overflows


def test_soft_margin_dtype_is_inputs_and_bad_inputs(rng):
    x = rng.standard_normal((4, 3)).astype(np.float32)
    y = rng.choice([-1.0, 1.0], (4, 3))
    assert lo.soft_margin_loss(x, y).dtype == F.soft_margin_loss(to_torch(x), to_torch(y)).numpy().dtype == np.float32
    assert lo.soft_margin_loss(x.astype(np.float64), y.astype(np.float32)).dtype == np.float64
    with pytest.raises(ValueError, match="not differentiable with respect to target"):
        lo.soft_margin_loss_backward(1.0, x, y, wrt="target")
    with pytest.raises(ValueError, match=r"target has shape \(3,\) but input has shape \(4, 3\)"):
        lo.soft_margin_loss(x, y[0])  # deviation 2: torch broadcasts
    with pytest.raises(TypeError, match="target"):
        lo.soft_margin_loss(x, y.astype(np.int64))


# ----------------------------------------------------------------------------- multilabel


def weight_of(rng, kind, shape, dtype):
    if kind is None:
        return None
    ws = {"C": shape[-1:], "1C": (1,) + shape[-1:], "full": shape, "scalar": (), "N1": shape[:-1] + (1,)}[kind]
    return rng.uniform(0.2, 2.0, ws).astype(dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_multilabel_against_torch(dtype, reduction, rng):
    shapes = ((6, 5), (7,), (2, 3, 9), (0, 4), (4, 0), (3, 1000), (1, 1))
    for shape, wk in itertools.product(shapes, (None, "C", "1C", "full", "scalar", "N1")):
        if wk == "1C" and len(shape) < 2:
            continue
        x = (rng.standard_normal(shape) * 4).astype(dtype)
        t = rng.uniform(0, 1, shape).astype(dtype)
        w = weight_of(rng, wk, shape, dtype)

        def f(a, b, w=w):
            return F.multilabel_soft_margin_loss(a, b, weight=None if w is None else T(w), reduction=reduction)

        check_all(dtype, f"multilabel {shape} weight {wk} {reduction}", f, lo.multilabel_soft_margin_loss, x, t,
                  rng, wrt=("input", "target"), weight=w, reduction=reduction)


def test_multilabel_extreme_logits(rng):
    """±1e4 logits: torch's logsigmoid composition is stable, so the numbers match; ±inf give the
    limit (torch: nan where a 0 target meets log sigmoid(-inf) = -inf)."""
    x = rng.choice([-1e4, 1e4, 0.5], (5, 8))
    t = rng.choice([0.0, 1.0, 0.3], (5, 8))
    for red in REDUCTIONS:
        assert_close(lo.multilabel_soft_margin_loss(x, t, reduction=red),
                     F.multilabel_soft_margin_loss(T(x), T(t), reduction=red).numpy(), np.float64, what=red)
    xi = np.array([[np.inf, -np.inf]])
    np.testing.assert_array_equal(lo.multilabel_soft_margin_loss(xi, np.array([[1.0, 0.0]]), reduction="none"), [0.0])
    np.testing.assert_array_equal(lo.multilabel_soft_margin_loss(xi, np.array([[0.0, 1.0]]), reduction="none"), [np.inf])


@pytest.mark.skipif(not LONGDOUBLE_IS_EXTENDED, reason="needs x87 long double as the reference")
def test_multilabel_float32_rows_within_4ulp(rng):
    """Each row's loss, a mean of nonnegative BCE terms summed in double, within 4 ulp, for
    confident logits too (target 0 at x = -100: exp(x)-sized terms torch's float32 keeps too)."""
    x = np.concatenate([rng.uniform(-100, 100, (2000, 7)), rng.standard_normal((2000, 7)) * 3]).astype(np.float32)
    t = rng.integers(0, 2, x.shape).astype(np.float32)
    w = rng.uniform(0.2, 2, 7).astype(np.float32)
    xl, tl = x.astype(np.longdouble), t.astype(np.longdouble)
    terms = (1 - tl) * np.logaddexp(np.longdouble(0), xl) + tl * np.logaddexp(np.longdouble(0), -xl)
    exact = (terms * w.astype(np.longdouble)).sum(axis=1) / 7
    got = lo.multilabel_soft_margin_loss(x, t, w, reduction="none")
    assert max_ulp(got, exact) <= ULP_F32, worst(got, exact, x[:, 0])


def test_multilabel_bad_inputs(rng):
    x, t = rng.standard_normal((6, 5)), rng.uniform(0, 1, (6, 5))
    with pytest.raises(ValueError, match="input must have at least one dimension"):
        lo.multilabel_soft_margin_loss(np.array(1.0), np.array(0.5))
    with pytest.raises(ValueError, match="weight"):
        lo.multilabel_soft_margin_loss(x, t, np.ones(4))
    with pytest.raises(ValueError, match="weight"):  # deviation 3: may not enlarge the result
        lo.multilabel_soft_margin_loss(x, t, np.ones((2, 6, 5)))
    with pytest.raises(ValueError, match=r"grad_output has shape \(6, 5\), expected \(6,\)"):
        lo.multilabel_soft_margin_loss_backward(np.ones((6, 5)), x, t, reduction="none")
    with pytest.raises(ValueError, match=r"target has shape \(5,\)"):
        lo.multilabel_soft_margin_loss(x, t[0])
    with pytest.raises(ValueError, match="wrt"):
        lo.multilabel_soft_margin_loss_backward(1.0, x, t, wrt="weight")


def test_multilabel_weight_promotes_as_torch(rng):
    x, t = rng.standard_normal((4, 3)).astype(np.float32), rng.uniform(0, 1, (4, 3)).astype(np.float32)
    w = rng.uniform(0.5, 1, 3)
    got = lo.multilabel_soft_margin_loss(x, t, w)
    assert got.dtype == np.float64 == F.multilabel_soft_margin_loss(to_torch(x), to_torch(t), to_torch(w)).numpy().dtype


@pytest.mark.parametrize("variant", ["", "_backward", "_value_and_grad"])
@pytest.mark.parametrize("base", ["soft_margin_loss", "multilabel_soft_margin_loss"])
def test_signature_is_torchs(base, variant):
    """torch's positional parameters (grad_output first for backward), then ours keyword-only."""
    import inspect

    P = inspect.Parameter
    ps = list(inspect.signature(getattr(lo, base + variant)).parameters.values())
    theirs = [(p.name, p.default) for p in inspect.signature(getattr(F, base)).parameters.values()]
    lead = [("grad_output", P.empty)] if variant == "_backward" else []
    assert [(p.name, p.default) for p in ps if p.kind == P.POSITIONAL_OR_KEYWORD] == lead + theirs
    extra = {"": [], "_backward": [("wrt", "input")], "_value_and_grad": [("out", None)]}[variant]
    assert [(p.name, p.default) for p in ps if p.kind == P.KEYWORD_ONLY] == extra


def test_legacy_reductions_against_torch(rng):
    x, t = rng.standard_normal((6, 4)), rng.uniform(0, 1, (6, 4))
    y = np.sign(t - 0.5)
    for sa, rd in itertools.product((None, True, False), repeat=2):
        if (sa, rd) == (None, None):
            continue
        with pytest.warns(UserWarning, match="size_average and reduce args will be deprecated") as ws:
            got = (lo.soft_margin_loss(x, y, sa, rd), lo.multilabel_soft_margin_loss(x, t, None, sa, rd))
        assert all(w.filename == __file__ for w in ws)
        with pytest.warns(UserWarning):
            want = (F.soft_margin_loss(T(x), T(y), sa, rd), F.multilabel_soft_margin_loss(T(x), T(t), None, sa, rd))
        for a, b in zip(got, want):
            assert_close(a, b.numpy(), np.float64, what=f"{sa} {rd}")
