"""kl_div (torch's F.kl_div) and sigmoid_focal_loss (torchvision.ops'): every option x reduction x
dtype x shape against torch (float64 oracle, autograd for the gradients), torch's reductions
("batchmean", the legacy pair, the "mean" warning), the bad inputs, the deviations of
_divergence.py's docstring, and accuracy in ulps (float32 within 4 ulp of the exact value where
torch's float32 loses digits). torchvision cannot be installed beside this torch: its focal loss
is written out in tests/_oracle.py (torchvision_focal), and a float64 / mpmath reference checks
what it cannot (gamma < 1, confident logits)."""

from __future__ import annotations

import itertools
import warnings

import mpmath
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from _helpers import LONGDOUBLE_IS_EXTENDED, assert_close, max_ulp, worst
from _oracle import to_torch, torchvision_focal
from _tolerances import ULP_F32

import logitops as lo

DTYPES = (np.float32, np.float64)
SHAPES = ((6, 5), (17,), (3, 4, 9), (0, 4), (4, 0), ())
KL_REDUCTIONS = ("mean", "batchmean", "sum", "none")


def T(a):
    return torch.from_numpy(np.asarray(a, dtype=np.float64).copy())


def kl_data(rng, shape, dtype, log_target):
    x = rng.standard_normal(shape) * 2
    t = rng.uniform(0.001, 1, shape)
    if log_target:
        t = np.log(t)
    return np.asarray(x).astype(dtype), np.asarray(t).astype(dtype)


def torch_grads(f, x, t, g, wrt=("input", "target")):
    """(value, {name: gradient}) of f(x, t) by torch autograd in float64, upstream gradient g."""
    tx, tt = T(x).requires_grad_(True), T(t).requires_grad_(True)
    y = f(tx, tt)
    y.backward(T(g).reshape(y.shape))
    grads = {"input": tx.grad.numpy(), "target": None if tt.grad is None else tt.grad.numpy()}
    return y.detach().numpy(), {k: grads[k] for k in wrt}


# ----------------------------------------------------------------------------- kl_div against torch


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("log_target", [False, True])
@pytest.mark.parametrize("reduction", KL_REDUCTIONS)
def test_kl_div_against_torch(dtype, log_target, reduction, rng):
    for shape in SHAPES:
        what = f"kl_div {shape} {reduction} log_target={log_target}"
        x, t = kl_data(rng, shape, dtype, log_target)

        def f(a, b):
            return F.kl_div(a, b, reduction=reduction, log_target=log_target)

        want = f(T(x), T(t)).numpy()
        got = lo.kl_div(x, t, reduction=reduction, log_target=log_target)
        assert np.shape(got) == want.shape and np.asarray(got).dtype == dtype, what
        assert_close(got, want, dtype, what=what)
        g = rng.standard_normal(want.shape) if reduction == "none" else np.asarray(0.7)
        _, grads = torch_grads(f, x, t, g)
        for wrt in ("input", "target"):
            ours = lo.kl_div_backward(g.astype(dtype), x, t, reduction=reduction, log_target=log_target, wrt=wrt)
            assert ours.dtype == dtype and ours.shape == x.shape
            assert_close(ours, grads[wrt], dtype, what=f"{what} backward wrt {wrt}")
        loss, grad = lo.kl_div_value_and_grad(x, t, reduction=reduction, log_target=log_target)
        _, g1 = torch_grads(f, x, t, np.ones(want.shape), wrt=("input",))
        assert_close(loss, want, dtype, what=what + " fused loss")
        assert_close(grad, g1["input"], dtype, what=what + " fused grad")
        xo = x.copy()
        loss2, grad2 = lo.kl_div_value_and_grad(xo, t, reduction=reduction, log_target=log_target, out=xo)
        assert grad2 is xo and np.array_equal(grad2, grad) and np.array_equal(loss2, loss, equal_nan=True)


def test_kl_div_reductions_are_torchs(rng):
    """"mean" divides by the element count (and warns, with torch's words), "batchmean" by
    input.shape[0] (a 0-d input: its sum); with the legacy pair torch still divides a "batchmean"
    by the batch size."""
    x, t = kl_data(rng, (6, 5), np.float64, False)
    s = lo.kl_div(x, t, reduction="sum")
    assert lo.kl_div(x, t, reduction="batchmean") == pytest.approx(s / 6, rel=1e-15)
    with pytest.warns(UserWarning, match="'batchmean' divides only by the batch size") as ours:
        m = lo.kl_div(x, t)
    assert m == pytest.approx(s / 30, rel=1e-15)
    with pytest.warns(UserWarning) as theirs:
        F.kl_div(T(x), T(t))
    assert [str(w.message) for w in ours] == [str(w.message) for w in theirs]
    assert ours[0].filename == __file__  # points at the caller
    x0, t0 = np.array(-0.3), np.array(0.4)
    assert lo.kl_div(x0, t0, reduction="batchmean") == pytest.approx(F.kl_div(T(x0), T(t0), reduction="batchmean").item())
    for sa, rd in itertools.product((None, True, False), repeat=2):
        if (sa, rd) == (None, None):
            continue
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            want = F.kl_div(T(x), T(t), size_average=sa, reduce=rd, reduction="batchmean").numpy()
            got = lo.kl_div(x, t, size_average=sa, reduce=rd, reduction="batchmean")
            gb = lo.kl_div_backward(np.ones(want.shape) if want.ndim else 1.0, x, t, size_average=sa, reduce=rd,
                                    reduction="batchmean")
            _, gw = torch_grads(lambda a, b, sa=sa, rd=rd: F.kl_div(a, b, size_average=sa, reduce=rd,
                                                                     reduction="batchmean"),
                                x, t, np.ones(want.shape), wrt=("input",))
        assert_close(got, want, np.float64, what=f"legacy {sa} {rd} batchmean")
        assert_close(gb, gw["input"], np.float64, what=f"legacy {sa} {rd} batchmean backward")
    # empty: batchmean of no rows is nan (0/0), of rows without elements 0
    assert np.isnan(lo.kl_div(np.zeros((0, 3)), np.zeros((0, 3)), reduction="batchmean"))
    assert lo.kl_div(np.zeros((3, 0)), np.zeros((3, 0)), reduction="batchmean") == 0


def test_kl_div_special_values(rng):
    """t = 0 contributes 0 (torch's xlogy), t < 0 is nan; infinite inputs give torch's values."""
    x = np.array([0.5, -2.0, np.inf, -np.inf, 3.0, -1.0, np.nan])
    t = np.array([0.0, 0.0, 0.0, 0.5, -0.5, 1.0, 0.3])
    got = lo.kl_div(x, t, reduction="none")
    want = F.kl_div(T(x), T(t), reduction="none").numpy()
    np.testing.assert_array_equal(got, want)
    tl = np.array([-np.inf, 0.0, 2.0, -3.0, 100.0, np.nan, -800.0])
    got = lo.kl_div(x, tl, reduction="none", log_target=True)
    want = F.kl_div(T(x), T(tl), reduction="none", log_target=True).numpy()
    np.testing.assert_allclose(got, want, rtol=1e-15, equal_nan=True)


def test_kl_div_target_gradient_at_zero_is_minus_inf():
    """Deviation 1: d/dt [t log t - t x] at t = 0 is the one-sided limit -inf (torch: nan)."""
    x, t = np.array([0.3, -1.0]), np.array([0.0, 0.5])
    got = lo.kl_div_backward(np.ones(2), x, t, reduction="none", wrt="target")
    assert got[0] == -np.inf and got[1] == pytest.approx(np.log(0.5) + 1 + 1.0)
    tt = T(t).requires_grad_(True)
    F.kl_div(T(x), tt, reduction="sum").backward()
    assert np.isnan(tt.grad[0].item())  # torch's


def test_kl_div_bad_inputs(rng):
    x, t = kl_data(rng, (6, 5), np.float64, False)
    for bad in ("avg", "batch_mean", None, "MEAN"):
        with pytest.raises(ValueError, match="reduction"):
            lo.kl_div(x, t, reduction=bad)
    for bad in (1, "yes", None):
        with pytest.raises(TypeError, match="log_target"):
            lo.kl_div(x, t, reduction="sum", log_target=bad)
    with pytest.raises(ValueError, match=r"target has shape \(5,\) but input has shape \(6, 5\)"):
        lo.kl_div(x, t[0], reduction="sum")  # deviation 2: torch broadcasts
    with pytest.raises(ValueError, match="wrt"):
        lo.kl_div_backward(1.0, x, t, reduction="sum", wrt="x")
    with pytest.raises(TypeError, match="target"):
        lo.kl_div(x, t.astype(np.int64), reduction="sum")


# ----------------------------------------------------------------------------- kl_div accuracy


def _ld(a):
    return np.asarray(a, dtype=np.longdouble)


def kl_cancelling_sample(n=200_000, seed=7):
    """float32 (x, t) with x = log(t) rounded and a few ulp off: t log t - t x cancels."""
    rng = np.random.default_rng(seed)
    t = np.concatenate([rng.uniform(1e-6, 1, n), np.logspace(-37, 0, n // 4)]).astype(np.float32)
    x = np.log(t.astype(np.float64)).astype(np.float32)
    k = rng.integers(-3, 4, x.size)
    x = np.where(k > 0, np.nextafter(x, np.float32(np.inf)), np.where(k < 0, np.nextafter(x, np.float32(-np.inf)), x))
    x = np.concatenate([x, (rng.standard_normal(n // 4) * 10).astype(np.float32)])
    t = np.concatenate([t, rng.uniform(0, 1, n // 4).astype(np.float32)])
    return x.astype(np.float32), t


@pytest.mark.skipif(not LONGDOUBLE_IS_EXTENDED, reason="needs x87 long double as the reference")
def test_kl_div_float32_within_4ulp_where_torch_cancels():
    """Within 4 ulp wherever log t - x (or log t + 1 - x, the target gradient) is not within
    2^-29 of cancelling completely; closer than that (x equals log t to about float32's own
    precision: the student matches the teacher) log t in double limits the absolute error to
    2^-50 t max(|log t|, |x|), a bound the test holds too (kernels/divergence.h)."""
    x, t = kl_cancelling_sample()
    L = np.log(_ld(t))
    for what, exact, scale, got in (
            ("loss", _ld(t) * (L - _ld(x)), np.maximum(np.abs(L), np.abs(_ld(x))),
             lo.kl_div(x, t, reduction="none")),
            ("target gradient", L + 1 - _ld(x), np.maximum(np.abs(L), np.abs(1 - _ld(x))),
             lo.kl_div_backward(np.ones_like(x), x, t, reduction="none", wrt="target"))):
        diff = exact / np.where(what == "loss", _ld(t), 1)  # log t - x (+ 1)
        near = (np.abs(diff) < scale * 2.0**-29) & (t > 0)
        far = ~near
        assert max_ulp(got[far], exact[far]) <= ULP_F32, (what, worst(got[far], exact[far], x[far]))
        factor = np.where(what == "loss", _ld(t), 1)[near] if what == "loss" else 1
        err = np.abs(got[near].astype(np.longdouble) - exact[near])
        # (errors below FLT_MIN are not counted, SPEC)
        assert ((err <= 2.0**-50 * factor * scale[near]) | (err < np.finfo(np.float32).tiny)).all(), what
    exact = _ld(t) * (L - _ld(x))
    theirs = F.kl_div(to_torch(x), to_torch(t), reduction="none").numpy()
    assert max_ulp(theirs, exact) > 1000  # the case is real: torch's float32 loses every digit


@pytest.mark.skipif(not LONGDOUBLE_IS_EXTENDED, reason="needs x87 long double as the reference")
def test_kl_div_log_target_float32_within_4ulp_where_torch_overflows():
    """exp(t) (t - x): torch's float32 exp(t) overflows for t > 88.7 and goes subnormal below
    -87.3 while the product is a normal float; the target gradient's t - x + 1 cancels."""
    rng = np.random.default_rng(3)
    n = 100_000
    t = np.concatenate([rng.uniform(-100, 100, n), rng.uniform(88.7, 95, n // 10)]).astype(np.float32)
    d = np.concatenate([rng.standard_normal(n) * 20, -np.exp(rng.uniform(-40, -20, n // 10))])
    x = (t - d).astype(np.float32)
    exact = np.exp(_ld(t)) * (_ld(t) - _ld(x))
    got = lo.kl_div(x, t, reduction="none", log_target=True)
    assert max_ulp(got, exact) <= ULP_F32, worst(got, exact, t)
    for wrt, ex in (("input", -np.exp(_ld(t))), ("target", np.exp(_ld(t)) * (_ld(t) - _ld(x) + 1))):
        g = lo.kl_div_backward(np.ones_like(x), x, t, reduction="none", log_target=True, wrt=wrt)
        assert max_ulp(g, ex) <= ULP_F32, (wrt, worst(g, ex, t))
    theirs = F.kl_div(to_torch(x), to_torch(t), reduction="none", log_target=True).numpy()
    assert max_ulp(theirs, exact) == np.inf  # inf where the exact value is a float


def test_kl_div_float64_against_mpmath(rng):
    """float64: t (log t - x) has the error of log t's rounding (2 ulp of log t, times t) and
    4 ulp of the result: within that of 200-bit values, cancelling cases included (there torch's
    xlogy(t, t) - t x in float64 is no better)."""
    t = np.concatenate([rng.uniform(1e-300, 1, 300), np.exp(rng.uniform(-700, 0, 100))])
    for x in (np.log(t) * (1 + rng.uniform(-0.05, 0.05, t.size)) + rng.standard_normal(t.size),
              np.log(t) * (1 + rng.integers(-3, 4, t.size) * 2.0**-52)):
        got = lo.kl_div(x, t, reduction="none")
        with mpmath.workprec(200):
            exact = np.array([float(mpmath.mpf(a) * (mpmath.log(mpmath.mpf(a)) - mpmath.mpf(b))) for a, b in zip(t, x)])
        bound = 4 * np.spacing(np.abs(exact)) + 2 * np.spacing(np.abs(np.log(t))) * t
        assert (np.abs(got - exact) <= bound).all(), np.max(np.abs(got - exact) / bound)


# ----------------------------------------------------------------------------- focal against torchvision


FOCAL_OPTIONS = [(0.25, 2.0), (-1.0, 2.0), (0.0, 1.0), (1.0, 3.0), (0.6, 1.5), (0.25, 4.0)]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("reduction", ("none", "mean", "sum"))
@pytest.mark.parametrize("hard", [False, True])
def test_focal_against_torchvision(dtype, reduction, hard, rng):
    for shape, (alpha, gamma) in itertools.product(SHAPES, FOCAL_OPTIONS):
        what = f"focal {shape} {reduction} alpha={alpha} gamma={gamma} hard={hard}"
        x = np.asarray(rng.standard_normal(shape) * 4).astype(dtype)
        t = np.asarray(rng.integers(0, 2, shape) if hard else rng.uniform(0, 1, shape)).astype(dtype)

        def f(a, b, alpha=alpha, gamma=gamma):
            return torchvision_focal(a, b, alpha, gamma, reduction)

        want = f(T(x), T(t)).numpy()
        got = lo.sigmoid_focal_loss(x, t, alpha, gamma, reduction)
        assert np.shape(got) == want.shape and np.asarray(got).dtype == dtype, what
        assert_close(got, want, dtype, what=what)
        g = rng.standard_normal(want.shape) if reduction == "none" else np.asarray(0.7)
        _, grads = torch_grads(f, x, t, g, wrt=("input",))
        ours = lo.sigmoid_focal_loss_backward(g.astype(dtype), x, t, alpha, gamma, reduction)
        assert_close(ours, grads["input"], dtype, what=what + " backward")
        loss, grad = lo.sigmoid_focal_loss_value_and_grad(x, t, alpha, gamma, reduction)
        _, g1 = torch_grads(f, x, t, np.ones(want.shape), wrt=("input",))
        assert_close(loss, want, dtype, what=what + " fused loss")
        assert_close(grad, g1["input"], dtype, what=what + " fused grad")


def test_focal_defaults_and_keywords(rng):
    x, t = rng.standard_normal((4, 3)), rng.integers(0, 2, (4, 3)).astype(np.float64)
    np.testing.assert_allclose(lo.sigmoid_focal_loss(x, t), torchvision_focal(T(x), T(t)).numpy(), rtol=1e-13)
    assert lo.sigmoid_focal_loss(inputs=x, targets=t, alpha=-1, gamma=0, reduction="sum") == \
        pytest.approx(F.binary_cross_entropy_with_logits(T(x), T(t), reduction="sum").item(), rel=1e-13)


# A float64 reference of the loss and its input gradient (mpmath, 300 bits).
def mp_focal(x, t, alpha, gamma):
    with mpmath.workprec(300):
        x, t = mpmath.mpf(float(x)), mpmath.mpf(float(t))
        p = 1 / (1 + mpmath.exp(-x))
        q = 1 / (1 + mpmath.exp(x))  # 1 - p, not computed as a difference
        ce = t * mpmath.log1p(mpmath.exp(-x)) + (1 - t) * mpmath.log1p(mpmath.exp(x))
        u = p * (1 - t) + q * t  # 1 - p_t
        at = alpha * t + (1 - alpha) * (1 - t) if alpha >= 0 else mpmath.mpf(1)
        F_ = u**gamma
        du = (1 - 2 * t) * p * q
        dF = gamma * u ** (gamma - 1) * du if gamma else mpmath.mpf(0)
        return at * F_ * ce, at * (dF * ce + F_ * ((1 - t) * p - t * q))


def focal_sample(rng, dtype, n):
    lim = 110.0 if dtype == np.float32 else 700.0
    x = np.concatenate([rng.uniform(-lim, lim, n), rng.standard_normal(n) * 3,
                        np.logspace(-20, 2, n // 4) * rng.choice([-1, 1], n // 4)])
    return x.astype(dtype)


@pytest.mark.parametrize("gamma", [0.0, 0.3, 1.0, 2.0, 3.5])
@pytest.mark.parametrize("alpha", [0.25, -1.0])
def test_focal_float32_within_4ulp_hard_targets(alpha, gamma, rng):
    """float32 loss and gradient within 4 ulp of the exact value for targets 0 and 1 at every
    logit, confident ones included (where torchvision's 1 - p_t is 0 or all rounding)."""
    x = focal_sample(rng, np.float32, 700)
    t = rng.integers(0, 2, x.size).astype(np.float32)
    ex = [mp_focal(a, b, alpha, gamma) for a, b in zip(x, t)]
    el, eg = (np.array([e[i] for e in ex], dtype=object) for i in (0, 1))
    loss, grad = lo.sigmoid_focal_loss_value_and_grad(x, t, alpha, gamma)
    assert max_ulp(loss, el) <= ULP_F32, worst(loss, el, x)
    assert max_ulp(grad, eg) <= ULP_F32, worst(grad, eg, x)
    g2 = lo.sigmoid_focal_loss_backward(np.ones_like(x), x, t, alpha, gamma)
    assert max_ulp(g2, eg) <= ULP_F32, worst(g2, eg, x)


def test_focal_float32_soft_targets_loss_within_4ulp(rng):
    """Soft targets: 1 - p_t = t sigmoid(-x) + (1 - t) sigmoid(x) is a sum of positive terms,
    so the loss keeps 4 ulp there too. (The gradient's two terms can cancel for 0 < t < 1: it
    is compared with torch's float64 in the tests above, not in ulps.)"""
    x = focal_sample(rng, np.float32, 500)
    t = rng.uniform(0, 1, x.size).astype(np.float32)
    el = np.array([mp_focal(a, b, 0.25, 2.0)[0] for a, b in zip(x, t)], dtype=object)
    loss = lo.sigmoid_focal_loss(x, t)
    assert max_ulp(loss, el) <= ULP_F32, worst(loss, el, x)


def test_focal_float64_against_mpmath(rng):
    """float64: the loss and gradient of hard targets within a small bound of the 300-bit values
    (F = exp(gamma log u) rounds gamma log u: about |gamma log u| / 2 ulp, here up to ~40)."""
    x = focal_sample(rng, np.float64, 150)
    t = rng.integers(0, 2, x.size).astype(np.float64)
    for alpha, gamma in ((0.25, 2.0), (-1.0, 0.5)):
        ex = [mp_focal(a, b, alpha, gamma) for a, b in zip(x, t)]
        el, eg = (np.array([e[i] for e in ex], dtype=object) for i in (0, 1))
        loss, grad = lo.sigmoid_focal_loss_value_and_grad(x, t, alpha, gamma)
        assert max_ulp(loss, el) <= 1000, worst(loss, el, x)
        assert max_ulp(grad, eg) <= 1000, worst(grad, eg, x)
        small = np.abs(x) < 20  # |gamma log u| < 20 * gamma: within 4 ulp + that
        assert max_ulp(loss[small], el[small]) <= 4 + 20 * gamma, worst(loss[small], el[small], x[small])


def test_focal_deviations_torchvision_nan_and_lost_digits():
    """Deviation 3: gamma < 1 at confident logits: torchvision's gradient is nan (its
    d(1 - p_t)^gamma = inf times 0), ours is finite and exact; torchvision's loss is 0 where ours
    is the tiny exact value. A zero alpha_t at an infinite logit gives 0 (torchvision: nan)."""
    x = np.array([40.0, -40.0, 50.0], np.float32)
    t = np.array([1.0, 0.0, 1.0], np.float32)
    tx = to_torch(x, requires_grad=True)
    tl = torchvision_focal(tx, to_torch(t), 0.25, 0.5, "sum")
    tl.backward()
    assert torch.isnan(tx.grad).all()
    loss, grad = lo.sigmoid_focal_loss_value_and_grad(x, t, 0.25, 0.5, "none")
    assert np.isfinite(grad).all() and (loss > 0).all()
    el = np.array([mp_focal(a, b, 0.25, 0.5)[0] for a, b in zip(x, t)], dtype=object)
    assert max_ulp(loss, el) <= ULP_F32
    assert torchvision_focal(to_torch(x), to_torch(t), 0.25, 0.5).numpy().max() == 0  # theirs: no digit left
    z = lo.sigmoid_focal_loss(np.array([np.inf, -np.inf]), np.array([0.0, 1.0]), alpha=1.0)
    assert z[0] == 0 and z[1] == np.inf  # alpha_t = 0 at (inf, 0); alpha_t = 1 at (-inf, 1)


def test_focal_infinite_logits_are_limits():
    x = np.array([np.inf, -np.inf, np.inf, -np.inf, np.inf])
    t = np.array([1.0, 0.0, 0.0, 1.0, 0.5])
    for gamma in (0.0, 0.5, 2.0):
        loss, grad = lo.sigmoid_focal_loss_value_and_grad(x, t, 0.25, gamma)
        np.testing.assert_array_equal(loss, [0, 0, np.inf, np.inf, np.inf])
        assert np.isfinite(grad).all()
        np.testing.assert_array_equal(grad[:2], [0, 0])
        assert grad[2] == pytest.approx(0.75) and grad[3] == pytest.approx(-0.25)


def test_focal_bad_inputs(rng):
    x, t = rng.standard_normal((6, 5)), rng.uniform(0, 1, (6, 5))
    for bad in (1.5, np.inf, np.nan, -np.inf, 1.0000001):
        with pytest.raises(ValueError, match="alpha"):
            lo.sigmoid_focal_loss(x, t, alpha=bad)
    for bad in (-0.1, np.inf, np.nan, -1.0):
        with pytest.raises(ValueError, match="gamma"):
            lo.sigmoid_focal_loss(x, t, gamma=bad)
    for arg in ("alpha", "gamma"):
        for bad in ("0.5", None, [0.5], True, 1j):
            with pytest.raises(TypeError, match=arg):
                lo.sigmoid_focal_loss(x, t, **{arg: bad})
    for v in (-0.1, 1.1, np.inf, -np.inf, -1e-30):
        bad = t.copy()
        bad[2, 3] = v
        for call in (lo.sigmoid_focal_loss, lambda a, b: lo.sigmoid_focal_loss_backward(np.ones_like(a), a, b),
                     lo.sigmoid_focal_loss_value_and_grad):
            with pytest.raises(ValueError, match="targets"):
                call(x, bad)
        xo = x.copy()
        with pytest.raises(ValueError, match="targets"):
            lo.sigmoid_focal_loss_value_and_grad(xo, bad, out=xo)
        np.testing.assert_array_equal(xo, x)  # checked before anything is written
    nan_t = t.copy()
    nan_t[0, 0] = np.nan  # NaN propagates, as torchvision
    r = lo.sigmoid_focal_loss(x, nan_t)
    assert np.isnan(r[0, 0]) and np.isfinite(r.reshape(-1)[1:]).all()
    with pytest.raises(ValueError, match=r"targets has shape \(5,\)"):
        lo.sigmoid_focal_loss(x, t[0])
    with pytest.raises(ValueError, match="wrt"):
        lo.sigmoid_focal_loss_backward(np.ones_like(x), x, t, wrt="targets")
    with pytest.raises(ValueError, match="alpha"):
        lo.SigmoidFocalLoss(alpha=2.0)
    with pytest.raises(ValueError, match="gamma"):
        lo.SigmoidFocalLoss(gamma=-1.0)


def test_focal_thread_count_does_not_change_sums(rng):
    x = rng.standard_normal(300_001).astype(np.float32) * 5
    t = rng.uniform(0, 1, x.size).astype(np.float32)
    before = lo.get_num_threads()
    try:
        lo.set_num_threads(1)
        a = lo.sigmoid_focal_loss(x, t, reduction="sum"), lo.kl_div(x, t, reduction="sum")
        lo.set_num_threads(4)
        b = lo.sigmoid_focal_loss(x, t, reduction="sum"), lo.kl_div(x, t, reduction="sum")
    finally:
        lo.set_num_threads(before)
    assert a == b


@pytest.mark.parametrize("variant", ["", "_backward", "_value_and_grad"])
def test_signatures(variant):
    """kl_div: torch's positional parameters; sigmoid_focal_loss: torchvision's (inputs,
    targets, alpha=0.25, gamma=2.0, reduction="none"); grad_output first for backward, then
    ours keyword-only."""
    import inspect

    P = inspect.Parameter
    lead = [("grad_output", P.empty)] if variant == "_backward" else []
    for base, theirs, wrt in (
            ("kl_div", [(p.name, p.default) for p in inspect.signature(F.kl_div).parameters.values()], "input"),
            ("sigmoid_focal_loss", [("inputs", P.empty), ("targets", P.empty), ("alpha", 0.25), ("gamma", 2.0),
                                    ("reduction", "none")], "inputs")):
        ps = list(inspect.signature(getattr(lo, base + variant)).parameters.values())
        assert [(p.name, p.default) for p in ps if p.kind == P.POSITIONAL_OR_KEYWORD] == lead + theirs
        extra = {"": [], "_backward": [("wrt", wrt)], "_value_and_grad": [("out", None)]}[variant]
        assert [(p.name, p.default) for p in ps if p.kind == P.KEYWORD_ONLY] == extra
