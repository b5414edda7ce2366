"""LLM heads (SPEC.md): cross_entropy's z_loss and softcap, and linear_cross_entropy.

torch has neither z_loss nor softcap: their values are proved against a float64 NumPy
reference (per sample, in ulps for float32 where the formula has no cancellation) and their
gradients against torch's float64 autograd through the composition s*tanh(x/s), F.cross_entropy
and z*logsumexp**2. linear_cross_entropy is proved against torch 2.13's F.linear_cross_entropy
(its reference path) for the value and all three gradients.
"""

from __future__ import annotations

import tracemalloc

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from _helpers import DTYPES, F32, F64, LOW_DTYPES, assert_close, dtype_id, ulp_error, worst
from _tolerances import BF16, F16, ULP_LOW

import logitops as lo
from logitops import _linear_cross_entropy

REDUCTIONS = ("mean", "sum", "none")


# ----------------------------------------------------------------------------- references


def ref_losses(x, target, weight=None, ignore_index=-100, ls=0.0, z=0.0, s=None):
    """Per-sample loss (N,) in float64 for (N, C) logits, and the two "mean" divisors."""
    x = np.asarray(x, np.float64)
    if s is not None:
        x = s * np.tanh(x / s)
    N, C = x.shape
    m = x.max(axis=1, keepdims=True)
    lse = (m + np.log(np.exp(x - m).sum(axis=1, keepdims=True)))[:, 0]
    logp = x - lse[:, None]
    w = np.ones(C) if weight is None else np.asarray(weight, np.float64)
    if target.dtype.kind == "f":
        q = (1 - ls) * np.asarray(target, np.float64) + ls / C
        loss = -(w * q * logp).sum(axis=1)
        valid = np.ones(N, bool)
        div = zdiv = float(N)
    else:
        valid = target != ignore_index
        y = np.where(valid, target, 0)
        nll = -logp[np.arange(N), y]
        loss = (1 - ls) * w[y] * nll + ls / C * -(w * logp).sum(axis=1)
        div, zdiv = float(w[y][valid].sum()), float(valid.sum())
    zpart = z * lse**2
    return np.where(valid, loss, 0.0), np.where(valid, zpart, 0.0), div, zdiv


def ref_reduce(parts, reduction):
    loss, zpart, div, zdiv = parts
    if reduction == "none":
        return loss + zpart
    if reduction == "sum":
        return loss.sum() + zpart.sum()
    return loss.sum() / div + (zpart.sum() / zdiv if zdiv else 0.0)


def torch_loss(x, target, weight, ignore_index, ls, z, s, reduction, class_axis_last=True):
    """The composition in torch (float64 autograd): the reference of the gradients."""
    xc = s * torch.tanh(x / s) if s is not None else x
    wt = None if weight is None else torch.tensor(weight, dtype=torch.float64)
    tt = torch.tensor(target) if target.dtype.kind != "f" else torch.tensor(target, dtype=torch.float64)
    ce = F.cross_entropy(xc, tt, wt, ignore_index=ignore_index, reduction=reduction, label_smoothing=ls)
    if not z:
        return ce
    lse = torch.logsumexp(xc, dim=1)
    valid = torch.ones_like(lse, dtype=torch.bool) if target.dtype.kind == "f" else tt != ignore_index
    zp = z * lse**2 * valid
    if reduction == "none":
        return ce + zp
    if reduction == "sum":
        return ce + zp.sum()
    return ce + zp.sum() / valid.sum()


def torch_grad(x, target, weight, ignore_index, ls, z, s, reduction, grad_output):
    xt = torch.tensor(np.asarray(x, np.float64), requires_grad=True)
    out = torch_loss(xt, target, weight, ignore_index, ls, z, s, reduction)
    out.backward(torch.tensor(np.asarray(grad_output, np.float64)))
    return out.detach().numpy(), xt.grad.numpy()


def make_case(rng, dtype, shape=(13, 37), scale=8.0, probs=False, weight=False, n_ignored=0, ignore_index=-100):
    x = (rng.standard_normal(shape) * scale).astype(dtype)
    C = shape[1]
    if probs:
        t = rng.uniform(0, 1, shape)
        target = (t / t.sum(axis=1, keepdims=True)).astype(dtype)
    else:
        tshape = shape[:1] + shape[2:]
        target = rng.integers(0, C, tshape)
        if n_ignored:
            target.reshape(-1)[rng.permutation(target.size)[:n_ignored]] = ignore_index
    w = rng.uniform(0.2, 2.0, C).astype(dtype) if weight else None
    return x, target, w


OPTIONS = [
    dict(),
    dict(weight=True),
    dict(weight=True, n_ignored=4),
    dict(ls=0.2),
    dict(weight=True, ls=0.1, n_ignored=3),
    dict(probs=True),
    dict(probs=True, weight=True, ls=0.3),
]
HEADS = [dict(z=1e-2, s=None), dict(z=0.0, s=5.0), dict(z=3e-2, s=15.0), dict(z=-1e-2, s=None)]


def _opt_id(o):
    return "-".join(f"{k}={v}" for k, v in o.items()) or "plain"


# ----------------------------------------------------------------------------- cross_entropy


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("head", HEADS, ids=_opt_id)
@pytest.mark.parametrize("opts", OPTIONS, ids=_opt_id)
@pytest.mark.parametrize("dtype", DTYPES, ids=dtype_id)
def test_z_loss_and_softcap(dtype, opts, head, reduction, rng):
    opts = dict(opts)
    ls = opts.pop("ls", 0.0)
    x, target, w = make_case(rng, dtype, **opts)
    z, s = head["z"], head["s"]
    kw = dict(weight=w, reduction=reduction, label_smoothing=ls, z_loss=z, softcap=s)
    want = ref_reduce(ref_losses(x, target, w, -100, ls, z, s), reduction)
    assert_close(lo.cross_entropy(x, target, **kw), want, dtype, what="forward")
    g = rng.standard_normal(x.shape[0]) if reduction == "none" else np.float64(0.75)
    _, tgrad = torch_grad(x, target, w, -100, ls, z, s, reduction, g)
    assert_close(lo.cross_entropy_backward(g.astype(dtype), x, target, **kw), tgrad, dtype, what="backward")
    ones = np.ones(x.shape[0]) if reduction == "none" else np.float64(1.0)
    _, tgrad1 = torch_grad(x, target, w, -100, ls, z, s, reduction, ones)
    loss, grad = lo.cross_entropy_value_and_grad(x, target, **kw)
    assert_close(loss, want, dtype, what="value_and_grad loss")
    assert_close(grad, tgrad1, dtype, what="value_and_grad grad")
    xin = x.copy()
    loss2, grad2 = lo.cross_entropy_value_and_grad(xin, target, **kw, out=xin)  # in place
    assert grad2 is xin
    np.testing.assert_array_equal(grad2, grad)
    np.testing.assert_array_equal(np.asarray(loss2), np.asarray(loss))


@pytest.mark.parametrize("dtype", DTYPES, ids=dtype_id)
def test_zero_z_loss_and_no_softcap_are_bitwise_the_plain_call(dtype, rng):
    x, t, w = make_case(rng, dtype, weight=True, n_ignored=2)
    for red in REDUCTIONS:
        a = lo.cross_entropy_value_and_grad(x, t, w, reduction=red)
        b = lo.cross_entropy_value_and_grad(x, t, w, reduction=red, z_loss=0.0, softcap=None)
        np.testing.assert_array_equal(np.asarray(a[0]), np.asarray(b[0]))
        np.testing.assert_array_equal(a[1], b[1])


def test_softcap_changes_the_result(rng):
    """A capped call is not the plain call (a softcap that did nothing would pass the rest)."""
    x, t, _ = make_case(rng, F64, scale=20.0)
    assert abs(lo.cross_entropy(x, t, softcap=10.0) - lo.cross_entropy(x, t)) > 0.1
    assert abs(lo.cross_entropy(x, t, z_loss=1e-2) - lo.cross_entropy(x, t)) > 0.1


@pytest.mark.parametrize("head", HEADS, ids=_opt_id)
@pytest.mark.parametrize("dtype", DTYPES, ids=dtype_id)
def test_spatial_dims(dtype, head, rng):
    """(N, C, d1, d2): softcap through the moved (rows) copy, z_loss in the lanes kernel."""
    x = (rng.standard_normal((3, 6, 4, 5)) * 6).astype(dtype)
    t = rng.integers(0, 6, (3, 4, 5))
    t[0, 1, 2] = -100
    z, s = head["z"], head["s"]
    x2 = np.moveaxis(x, 1, -1).reshape(-1, 6)
    for red in REDUCTIONS:
        want = ref_reduce(ref_losses(x2, t.reshape(-1), None, -100, 0.0, z, s), red)
        if red == "none":
            want = want.reshape(t.shape)
        loss, grad = lo.cross_entropy_value_and_grad(x, t, reduction=red, z_loss=z, softcap=s)
        assert_close(loss, want, dtype, what=red)
        ones = np.ones(t.shape) if red == "none" else np.float64(1.0)
        xt = torch.tensor(x.astype(np.float64), requires_grad=True)
        torch_loss(xt, t, None, -100, 0.0, z, s, red).backward(torch.tensor(ones))
        assert_close(grad, xt.grad.numpy(), dtype, what=red + " grad")
        out = np.empty_like(x)
        assert lo.cross_entropy_value_and_grad(x, t, reduction=red, z_loss=z, softcap=s, out=out)[1] is out
        np.testing.assert_array_equal(out, grad)
        g = (rng.standard_normal(t.shape) if red == "none" else np.float64(0.5)).astype(dtype)
        xt2 = torch.tensor(x.astype(np.float64), requires_grad=True)
        torch_loss(xt2, t, None, -100, 0.0, z, s, red).backward(torch.tensor(g.astype(np.float64)))
        assert_close(lo.cross_entropy_backward(g, x, t, reduction=red, z_loss=z, softcap=s), xt2.grad.numpy(), dtype,
                     what=red + " backward")


def test_probability_target_gradient_with_softcap(rng):
    x, t, w = make_case(rng, F64, probs=True, weight=True)
    xt = torch.tensor(x, requires_grad=True)
    tt = torch.tensor(t, requires_grad=True)
    F.cross_entropy(5 * torch.tanh(xt / 5), tt, torch.tensor(w), label_smoothing=0.1).backward()
    got = lo.cross_entropy_backward(1.0, x, t, w, label_smoothing=0.1, softcap=5.0, z_loss=1e-2, wrt="target")
    assert_close(got, tt.grad.numpy(), F64)  # z_loss has no target gradient


def test_float32_per_sample_accuracy_z_loss(rng):
    """z_loss without softcap keeps the 4-ulp bound where m + L cannot cancel (lse >= m >= 0):
    confident rows included."""
    x = np.abs(rng.standard_normal((400, 50)) * 6).astype(F32)
    x[:100, 0] += 40  # confident: the loss is tiny, the z part large
    t = rng.integers(0, 50, 400)
    t[:100] = 0
    loss, zpart, _, _ = ref_losses(x, t, z=1e-3)
    got = lo.cross_entropy(x, t, reduction="none", z_loss=1e-3)
    err = ulp_error(got, loss + zpart)
    assert err.max() <= 4.0, worst(got, loss + zpart, x[:, 0])


def test_float32_per_sample_accuracy_softcap(rng):
    """With a softcap the capped logits are rounded to float32 (c(x) within 3 ulp): the loss is
    within 4 ulp of the exact loss of those capped logits, plus the capped logits' own rounding
    carried through (bounded by |dloss/dc| * 3 ulp(c), well below 4 ulp(loss) when the loss is
    not small next to the logits)."""
    x = (rng.standard_normal((400, 50)) * 4).astype(F32)
    t = rng.integers(0, 50, 400)
    s = 20.0
    loss, _, _, _ = ref_losses(x, t, s=s)
    got = lo.cross_entropy(x, t, reduction="none", softcap=s)
    capped = s * np.tanh(x.astype(np.float64) / s)
    slack = 3 * 2.0**-23 * np.abs(capped).max(axis=1) * 2  # |dloss/dc| summed <= 2
    err = np.abs(got - loss) - slack
    ulp = np.spacing(np.abs(loss).astype(F32)).astype(np.float64)
    assert (err <= 4 * ulp).all(), float((err / ulp).max())


@pytest.mark.parametrize("dtype", DTYPES, ids=dtype_id)
def test_softcap_limits(dtype):
    """Capped logits are finite: all -inf is uniform, +inf is s; NaN stays NaN."""
    C = 7
    x = np.full((3, C), -np.inf, dtype)
    x[1, 2] = np.inf
    x[2, 3] = np.nan
    t = np.array([0, 2, 1])
    loss, grad = lo.cross_entropy_value_and_grad(x, t, reduction="none", softcap=4.0, z_loss=1e-2)
    ref = ref_losses(np.where(np.isfinite(x), x.astype(np.float64), np.sign(x).astype(np.float64) * 1e300)[:2], t[:2], s=4.0, z=1e-2)
    assert_close(loss[:2], ref[0] + ref[1], dtype)
    assert np.isnan(loss[2]) and np.isnan(grad[2]).all()
    assert np.all(grad[:2] == 0)  # tanh' = 0 at +-inf


def test_z_loss_mean_divides_by_samples_not_weights(rng):
    x, t, w = make_case(rng, F64, weight=True, n_ignored=3)
    ce = lo.cross_entropy(x, t, w)
    zl = lo.cross_entropy(x, t, w, z_loss=0.5)
    lse = lo.logsumexp(x, axis=1)[t != -100]
    assert_close(zl - ce, 0.5 * np.mean(lse**2), F64)


def test_all_ignored_with_z_loss(rng):
    x, t, _ = make_case(rng, F32)
    t[:] = -100
    loss, grad = lo.cross_entropy_value_and_grad(x, t, z_loss=0.1, softcap=3.0)
    assert np.isnan(loss) and np.all(grad == 0)
    assert lo.cross_entropy(x, t, z_loss=0.1, reduction="sum") == 0


@pytest.mark.parametrize("name", ["cross_entropy", "cross_entropy_backward", "cross_entropy_value_and_grad"])
def test_bad_heads(name, rng):
    x, t, _ = make_case(rng, F32)
    args = (1.0, x, t) if name.endswith("backward") else (x, t)
    f = getattr(lo, name)
    for bad in (0.0, -1.0, np.nan, np.inf):
        with pytest.raises(ValueError, match="softcap"):
            f(*args, softcap=bad)
    with pytest.raises(TypeError, match="softcap"):
        f(*args, softcap="3")
    for bad in (np.nan, np.inf):
        with pytest.raises(ValueError, match="z_loss"):
            f(*args, z_loss=bad)
    with pytest.raises(TypeError, match="z_loss"):
        f(*args, z_loss=None)


# ----------------------------------------------------------------------------- linear_cross_entropy


def linear_case(rng, dtype, N=37, D=11, V=29, bias=False, weight=False, probs=False, n_ignored=0):
    h = rng.standard_normal((N, D)).astype(dtype)
    W = (rng.standard_normal((V, D)) * 0.7).astype(dtype)
    b = rng.standard_normal(V).astype(dtype) if bias else None
    if probs:
        t = rng.uniform(0, 1, (N, V))
        target = (t / t.sum(axis=1, keepdims=True)).astype(dtype)
    else:
        target = rng.integers(0, V, N)
        target[rng.permutation(N)[:n_ignored]] = -100
    w = rng.uniform(0.2, 2.0, V).astype(dtype) if weight else None
    return h, W, b, target, w


def torch_linear(h, W, b, target, w, reduction, ls, ignore_index=None):
    th = torch.tensor(h, requires_grad=True)
    tW = torch.tensor(W, requires_grad=True)
    tb = None if b is None else torch.tensor(b, requires_grad=True)
    tt = torch.tensor(target)
    tw = None if w is None else torch.tensor(w)
    out = F.linear_cross_entropy(th, tW, tt, linear_bias=tb, weight=tw, reduction=reduction,
                                 ignore_index=ignore_index, label_smoothing=ls)
    out.sum().backward()
    return (out.detach().numpy(), th.grad.numpy(), tW.grad.numpy(), None if tb is None else tb.grad.numpy())


LINEAR_OPTIONS = [
    dict(),
    dict(bias=True),
    dict(weight=True, n_ignored=5),
    dict(bias=True, weight=True, ls=0.15, n_ignored=2),
    dict(probs=True, bias=True),
    dict(probs=True, weight=True, ls=0.2),
]


@pytest.mark.parametrize("chunk", [1, 5, 16, 37, 100, None])
@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("opts", LINEAR_OPTIONS, ids=_opt_id)
@pytest.mark.parametrize("dtype", DTYPES, ids=dtype_id)
def test_linear_cross_entropy_against_torch(dtype, opts, reduction, chunk, rng):
    opts = dict(opts)
    ls = opts.pop("ls", 0.0)
    h, W, b, target, w = linear_case(rng, dtype, **opts)
    want, gh, gW, gb = torch_linear(h, W, b, target, w, reduction, ls)
    kw = dict(linear_bias=b, weight=w, reduction=reduction, label_smoothing=ls, chunk_size=chunk)
    assert_close(lo.linear_cross_entropy(h, W, target, **kw), want, dtype, what="forward")
    loss, grad_h, grad_W, grad_b = lo.linear_cross_entropy_value_and_grad(h, W, target, **kw)
    # Gradients are sums over rows of products: float32 sums of many terms, torch's order differs.
    tol = dict(rtol=1e-4, atol=1e-5) if dtype == F32 else {}
    assert_close(loss, want, dtype, what="loss")
    assert_close(grad_h, gh, dtype, what="grad_input", **tol)
    assert_close(grad_W, gW, dtype, what="grad_linear_weight", **tol)
    if b is None:
        assert grad_b is None
    else:
        assert_close(grad_b, gb, dtype, what="grad_linear_bias", **tol)


def test_linear_cross_entropy_ignore_index_none_and_given(rng):
    h, W, _, target, _ = linear_case(rng, F64, n_ignored=4)
    target[target == -100] = 3
    for ii in (None, 3, -100):
        want, gh, gW, _ = torch_linear(h, W, None, target, None, "mean", 0.0, ignore_index=ii)
        loss, grad_h, grad_W, _ = lo.linear_cross_entropy_value_and_grad(h, W, target, ignore_index=ii, chunk_size=8)
        assert_close(loss, want, F64)
        assert_close(grad_h, gh, F64)
        assert_close(grad_W, gW, F64)


@pytest.mark.parametrize("head", HEADS, ids=_opt_id)
@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_linear_with_z_loss_and_softcap(head, reduction, rng):
    """Against our cross_entropy on the full logits and torch's autograd of the composition."""
    h, W, b, target, w = linear_case(rng, F64, bias=True, weight=True, n_ignored=6)
    z, s = head["z"], head["s"]
    kw = dict(weight=w, reduction=reduction, label_smoothing=0.1, z_loss=z, softcap=s)
    th = torch.tensor(h, requires_grad=True)
    tW = torch.tensor(W, requires_grad=True)
    tb = torch.tensor(b, requires_grad=True)
    out = torch_loss(th @ tW.T + tb, target, w, -100, 0.1, z, s, reduction)
    out.sum().backward()
    assert_close(lo.cross_entropy(h @ W.T + b, target, **kw), out.detach().numpy(), F64)
    for chunk in (1, 7, None):
        assert_close(lo.linear_cross_entropy(h, W, target, linear_bias=b, chunk_size=chunk, **kw),
                     out.detach().numpy(), F64)
        loss, gh, gW, gb = lo.linear_cross_entropy_value_and_grad(h, W, target, linear_bias=b, chunk_size=chunk, **kw)
        assert_close(loss, out.detach().numpy(), F64)
        assert_close(gh, th.grad.numpy(), F64)
        assert_close(gW, tW.grad.numpy(), F64)
        assert_close(gb, tb.grad.numpy(), F64)


def test_linear_single_row_and_empty(rng):
    h, W, _, target, _ = linear_case(rng, F64, N=1)
    want, gh, gW, _ = torch_linear(h[0], W, None, target[0], None, "none", 0.0)
    loss, grad_h, grad_W, _ = lo.linear_cross_entropy_value_and_grad(h[0], W, target[0], reduction="none")
    assert np.shape(loss) == () and grad_h.shape == h[0].shape
    assert_close(loss, want, F64)
    assert_close(grad_h, gh, F64)
    assert_close(grad_W, gW, F64)
    loss, grad_h, grad_W, _ = lo.linear_cross_entropy_value_and_grad(h[:0], W, target[:0])
    assert np.isnan(loss) and grad_h.shape == (0, h.shape[1]) and np.all(grad_W == 0)
    all_ignored = np.full(len(h), -100)
    loss, grad_h, grad_W, _ = lo.linear_cross_entropy_value_and_grad(h, W, all_ignored)
    assert np.isnan(loss) and np.all(grad_h == 0) and np.all(grad_W == 0)


def test_linear_bad_inputs(rng):
    h, W, b, target, _ = linear_case(rng, F32, bias=True)
    with pytest.raises(ValueError, match="linear_weight"):
        lo.linear_cross_entropy(h, W[:, :-1], target)
    with pytest.raises(ValueError, match="linear_weight"):
        lo.linear_cross_entropy(h, W[None], target)
    with pytest.raises(ValueError, match="linear_bias"):
        lo.linear_cross_entropy(h, W, target, linear_bias=b[:-1])
    for bad in (0, -3):
        with pytest.raises(ValueError, match="chunk_size"):
            lo.linear_cross_entropy_value_and_grad(h, W, target, chunk_size=bad)
    with pytest.raises(TypeError, match="chunk_size"):
        lo.linear_cross_entropy(h, W, target, chunk_size=2.5)
    with pytest.raises(ValueError, match="softcap"):
        lo.linear_cross_entropy(h, W, target, softcap=-1.0)
    with pytest.raises(ValueError, match="z_loss"):
        lo.linear_cross_entropy_value_and_grad(h, W, target, z_loss=np.nan)
    bad_t = target.copy()
    bad_t[5] = W.shape[0]
    for f in (lo.linear_cross_entropy, lo.linear_cross_entropy_value_and_grad):
        with pytest.raises(IndexError, match=f"Target {W.shape[0]} is out of bounds"):
            f(h, W, bad_t, chunk_size=3)


def test_linear_default_chunk_size():
    f = _linear_cross_entropy.default_chunk_size
    assert f(4096, 32000, 1024, 4) == 512
    assert f(4096, 128256, 4096, 4) == 512
    assert f(10, 32000, 1024, 4) == 10
    assert 128 <= f(4096, 128256, 64, 4) <= 512


def test_linear_peak_memory(rng):
    """No more than one chunk of logits (and the small grad_weight block) beside the inputs and
    outputs: tracemalloc sees NumPy's allocations."""
    N, D, V, chunk = 2048, 64, 8192, 64
    h, W, _, target, _ = linear_case(rng, F32, N=N, D=D, V=V)
    tracemalloc.start()
    try:
        base = tracemalloc.get_traced_memory()[0]
        tracemalloc.reset_peak()
        out = lo.linear_cross_entropy_value_and_grad(h, W, target, chunk_size=chunk)
        peak = tracemalloc.get_traced_memory()[1] - base
    finally:
        tracemalloc.stop()
    outputs = out[1].nbytes + out[2].nbytes
    extra = peak - outputs
    budget = 2 * chunk * V * 4 + _linear_cross_entropy._GRAD_WEIGHT_BLOCK_BYTES + (1 << 20)
    assert extra <= budget, (extra, budget)
    assert budget < N * V * 4 / 4  # the test can tell a chunked run from full logits


@pytest.mark.parametrize("dtype", DTYPES, ids=dtype_id)
def test_linear_nan_and_inf_inputs(dtype, rng):
    """NaN in a row of input makes that row's loss and gradient NaN, without warnings; a single
    column (D = 1) and V = 1 work."""
    h, W, b, target, _ = linear_case(rng, dtype, N=9, bias=True)
    h[3, 2] = np.nan
    loss, gh, gW, gb = lo.linear_cross_entropy_value_and_grad(h, W, target, linear_bias=b, reduction="none",
                                                              chunk_size=4)
    assert np.isnan(loss[3]) and np.isfinite(np.delete(loss, 3)).all()
    assert np.isnan(gh[3]).all() and np.isfinite(np.delete(gh, 3, axis=0)).all()
    assert np.isnan(gW).any() and np.isnan(gb).any()
    h2 = h[:, :1].copy()
    h2[3] = 1.0
    want, th, tW, tb = torch_linear(h2, W[:, :1].copy(), b, target, None, "sum", 0.0)
    got = lo.linear_cross_entropy_value_and_grad(h2, W[:, :1], target, linear_bias=b, reduction="sum")
    for a, e in zip(got, (want, th, tW, tb)):
        assert_close(a, e, dtype, rtol=1e-4 if dtype == F32 else None)
    one = lo.linear_cross_entropy(h2, W[:1, :1], np.zeros(9, np.int64), reduction="none")
    assert_close(one, np.zeros(9), dtype)


# ----------------------------------------------------------------------------- short rows, 16-bit


@pytest.mark.parametrize("C", [2, 3, 10, 32])
@pytest.mark.parametrize("head", HEADS, ids=_opt_id)
@pytest.mark.parametrize("dtype", DTYPES, ids=dtype_id)
def test_short_rows_with_heads(dtype, head, C, rng):
    """C <= kShortClasses (the short-row kernels' range) with z_loss / softcap: the rows kernels
    take these calls; values against the float64 reference, gradients against torch's float64
    autograd, every option of class targets (weights, ignored rows, smoothing)."""
    z, s = head["z"], head["s"]
    for opts in (dict(), dict(weight=True, n_ignored=5), dict(weight=True, ls=0.2, n_ignored=2)):
        opts = dict(opts)
        ls = opts.pop("ls", 0.0)
        x, t, w = make_case(rng, dtype, shape=(67, C), scale=4.0, **opts)  # 67: several blocks and a tail
        for red in REDUCTIONS:
            kw = dict(weight=w, reduction=red, label_smoothing=ls, z_loss=z, softcap=s)
            want = ref_reduce(ref_losses(x, t, w, -100, ls, z, s), red)
            what = f"C={C} {opts} ls={ls} {red}"
            assert_close(lo.cross_entropy(x, t, **kw), want, dtype, what=what + " forward")
            ones = np.ones(x.shape[0]) if red == "none" else np.float64(1.0)
            _, tgrad = torch_grad(x, t, w, -100, ls, z, s, red, ones)
            loss, grad = lo.cross_entropy_value_and_grad(x, t, **kw)
            assert_close(loss, want, dtype, what=what + " loss")
            assert_close(grad, tgrad, dtype, what=what + " grad")
            g = rng.standard_normal(x.shape[0]) if red == "none" else np.float64(0.75)
            _, tgrad_g = torch_grad(x, t, w, -100, ls, z, s, red, g)
            assert_close(lo.cross_entropy_backward(g.astype(dtype), x, t, **kw), tgrad_g, dtype, what=what + " bwd")
    # The heads did something on these short rows (a path that ignored them would pass above
    # only if the reference ignored them too).
    x, t, _ = make_case(rng, dtype, shape=(67, C), scale=20.0)
    assert lo.cross_entropy(x, t, z_loss=z, softcap=s) != lo.cross_entropy(x, t)


def _low_cases(rng, dt):
    """(label, x, target, weight, ls): shapes short (C = 3, short-row range), several float32
    blocks (C = 1100), spatial (lanes for z_loss, the moved rows for softcap)."""
    out = []
    for shape in ((9, 3), (11, 20), (40, 1100), (3, 6, 20)):
        x = (rng.standard_normal(shape) * 4).astype(dt)
        C = shape[1]
        t = rng.integers(0, C, shape[:1] + shape[2:])
        t.reshape(-1)[:2] = -100
        w = rng.uniform(0.2, 2.0, C).astype(dt)
        out.append((f"{shape}", x, t, None, 0.0))
        out.append((f"{shape} weight ls", x, t, w, 0.1))
    return out


@pytest.mark.parametrize("head", HEADS, ids=_opt_id)
@pytest.mark.parametrize("dt", LOW_DTYPES, ids=dtype_id)
def test_low_precision_heads_within_one_ulp(dt, head, rng):
    """float16 / bfloat16 logits with z_loss / softcap (the 16-bit block driver carries both):
    every result in the input's dtype and within ULP_LOW of the float64 value on the same
    16-bit inputs (forward, backward, value_and_grad; every reduction)."""
    z, s = head["z"], head["s"]
    for label, x, t, w, ls in _low_cases(rng, dt):
        x64 = x.astype(np.float64)
        w64 = None if w is None else w.astype(np.float64)
        for red in REDUCTIONS:
            kw = dict(weight=w, reduction=red, label_smoothing=ls, z_loss=z, softcap=s)
            xt = torch.tensor(x64, requires_grad=True)
            want = torch_loss(xt, t, w64, -100, ls, z, s, red)
            gout = np.ones(t.shape) if red == "none" else np.float64(1.0)
            want.backward(torch.tensor(gout))
            want_loss, want_grad = want.detach().numpy(), xt.grad.numpy()
            loss, grad = lo.cross_entropy_value_and_grad(x, t, **kw)
            got = [("forward", lo.cross_entropy(x, t, **kw), want_loss), ("loss", loss, want_loss),
                   ("grad", grad, want_grad),
                   ("backward", lo.cross_entropy_backward(np.asarray(gout, dt) if red == "none" else 1.0, x, t, **kw),
                    want_grad)]
            for what, a, e in got:
                a = np.asarray(a)
                assert a.dtype == dt, (label, red, what, a.dtype)
                err = ulp_error(a, np.asarray(e, np.float64))
                assert float(err.max()) <= ULP_LOW, (label, red, what, float(err.max()))


def torch_linear_heads(h, W, b, target, w, reduction, ls, z, s):
    """float64 autograd of the composition (torch has no z_loss / softcap): (loss, grads)."""
    th = torch.tensor(np.asarray(h, np.float64), requires_grad=True)
    tW = torch.tensor(np.asarray(W, np.float64), requires_grad=True)
    tb = None if b is None else torch.tensor(np.asarray(b, np.float64), requires_grad=True)
    logits = th @ tW.T + (0 if tb is None else tb)
    wt = None if w is None else np.asarray(w, np.float64)
    if target.dtype.kind not in "iu":  # probabilities (bfloat16 included): their float64 values
        target = target.astype(np.float64)
    out = torch_loss(logits, target, wt, -100, ls, z, s, reduction)
    out.sum().backward()
    return (out.detach().numpy(), th.grad.numpy(), tW.grad.numpy(), None if tb is None else tb.grad.numpy())


@pytest.mark.parametrize("head", [dict(z=0.0, s=None)] + HEADS, ids=_opt_id)
@pytest.mark.parametrize("dt", LOW_DTYPES, ids=dtype_id)
def test_linear_low_precision_within_one_ulp(dt, head, rng):
    """float16 / bfloat16 hidden states, weights and bias (float32 arithmetic, each chunk of
    hidden states widened in turn): the loss and all three gradients in the inputs' dtype,
    within ULP_LOW of the float64 value on the same 16-bit inputs; probability targets too."""
    z, s = head["z"], head["s"]
    for opts in (dict(bias=True), dict(bias=True, weight=True, n_ignored=5), dict(probs=True)):
        h, W, b, target, w = linear_case(rng, dt, **opts)
        for red in REDUCTIONS:
            want = torch_linear_heads(h, W, b, target, w, red, 0.1, z, s)
            kw = dict(linear_bias=b, weight=w, reduction=red, label_smoothing=0.1, z_loss=z, softcap=s, chunk_size=8)
            got = (lo.linear_cross_entropy(h, W, target, **kw),) + lo.linear_cross_entropy_value_and_grad(
                h, W, target, **kw)
            for what, a, e in zip(("forward", "loss", "grad_input", "grad_linear_weight", "grad_linear_bias"), got,
                                  (want[0],) + want):
                if e is None:
                    assert a is None
                    continue
                a = np.asarray(a)
                assert a.dtype == dt, (opts, red, what, a.dtype)
                err = ulp_error(a, np.asarray(e, np.float64))
                assert float(err.max()) <= ULP_LOW, (opts, red, what, float(err.max()))


def test_linear_mixed_dtypes_promote_as_torch(rng):
    """float16 hidden states with a bfloat16 weight compute (and return) float32, as torch."""
    h, W, _, target, _ = linear_case(rng, F32)
    loss, gh, gW, _ = lo.linear_cross_entropy_value_and_grad(h.astype(F16), W.astype(BF16), target, chunk_size=8)
    assert np.asarray(loss).dtype == F32 and gh.dtype == F32 and gW.dtype == F32
    want = torch_linear(h.astype(F16).astype(F32), W.astype(BF16).astype(F32), None, target, None, "mean", 0.0)
    for a, e in zip((loss, gh, gW), want):
        assert_close(a, e, F32, rtol=1e-4, atol=1e-5)


def test_linear_low_precision_widens_a_chunk_at_a_time(rng):
    """bfloat16 hidden states 16384 x 256 (8 MB; a float32 copy of them: 16 MB): beside the
    outputs, only chunk-sized buffers, the float32 weight and its gradient's accumulator."""
    N, D, V, chunk = 16384, 256, 64, 128
    h = rng.standard_normal((N, D)).astype(BF16)
    W = (rng.standard_normal((V, D)) * 0.1).astype(BF16)
    target = rng.integers(0, V, N)
    tracemalloc.start()
    try:
        base = tracemalloc.get_traced_memory()[0]
        tracemalloc.reset_peak()
        out = lo.linear_cross_entropy_value_and_grad(h, W, target, chunk_size=chunk)
        peak = tracemalloc.get_traced_memory()[1] - base
    finally:
        tracemalloc.stop()
    extra = peak - out[1].nbytes - out[2].nbytes
    budget = 3 * V * D * 4 + 3 * chunk * max(V, D) * 4 + (1 << 20)  # W, grad_W (float32 and rounded), chunks
    assert extra <= budget, (extra, budget)
    assert budget < h.nbytes  # a whole float32 copy of the hidden states (2 h.nbytes) would fail


def test_linear_unknown_low_precision_formats_raise_naming_the_argument(rng):
    ml_dtypes = pytest.importorskip("ml_dtypes")
    h, W, b, target, _ = linear_case(rng, F32, bias=True)
    bad_dt = np.dtype(ml_dtypes.float8_e4m3fn)
    for arg, kw in (("input", dict(input=h.astype(bad_dt))), ("linear_weight", dict(linear_weight=W.astype(bad_dt))),
                    ("linear_bias", dict(linear_bias=b.astype(bad_dt)))):
        args = dict(input=h, linear_weight=W, target=target, linear_bias=b)
        args.update(kw)
        for f in (lo.linear_cross_entropy, lo.linear_cross_entropy_value_and_grad):
            with pytest.raises(TypeError, match=arg):
                f(**args)
    with pytest.raises(TypeError, match="target"):
        lo.linear_cross_entropy(h, W, np.zeros((h.shape[0], W.shape[0]), bad_dt))


# ----------------------------------------------------------------------------- partials


@pytest.mark.parametrize("probs", [False, True])
@pytest.mark.parametrize("head", HEADS, ids=_opt_id)
def test_partials_carry_z_loss_and_softcap(head, probs, rng):
    """lo.loss_partials / loss_divisor / combine_partials over blocks give the whole call's
    mean and sum, and the blocks' gradients (grad_scale = 1 / divisor) the whole gradient, with
    z_loss and softcap; spatial inputs (softcap's moved rows) too."""
    z, s = head["z"], head["s"]
    x, t, _ = make_case(rng, F64, shape=(40, 9, 3), probs=probs, n_ignored=0 if probs else 7)
    kw = dict(z_loss=z, softcap=s)
    blocks = [(0, 13), (13, 14), (14, 40)]
    parts = [lo.loss_partials(lo.cross_entropy, x[a:b], t[a:b], **kw) for a, b in blocks]
    for red in ("mean", "sum"):
        assert_close(lo.combine_partials(parts, red), lo.cross_entropy(x, t, reduction=red, **kw), F64, what=red)
    D = lo.loss_divisor(lo.cross_entropy, x, t, **kw)
    assert D == sum(p.divisor for p in parts)
    _, want = lo.cross_entropy_value_and_grad(x, t, **kw)
    got = np.empty_like(x)
    for a, b in blocks:
        p, g = lo.loss_partials(lo.cross_entropy_value_and_grad, x[a:b], t[a:b], grad_scale=1.0 / D,
                                out=got[a:b], **kw)
        assert g is not None
    assert_close(got, want, F64)


def test_partials_refuse_z_loss_with_a_class_weight(rng):
    """Two means with different divisors do not fit one (total, divisor) pair: a clear error,
    not a silently wrong mean."""
    x, t, w = make_case(rng, F64, weight=True)
    for f in (lo.loss_partials, lo.loss_divisor):
        with pytest.raises(ValueError, match="z_loss"):
            f(lo.cross_entropy, x, t, w, z_loss=1e-2)
    # softcap alone, with a weight, is one mean: fine.
    p = lo.loss_partials(lo.cross_entropy, x, t, w, softcap=5.0)
    assert_close(lo.combine_partials([p]), lo.cross_entropy(x, t, w, softcap=5.0), F64)
