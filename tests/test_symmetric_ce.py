"""symmetric_cross_entropy (forward, backward, fused) and SymmetricCrossEntropyLoss against the
seed's SymmetricCELoss written in torch (_oracle.torch_symmetric_ce, float64): every reduction
x dtype x option x shape; float32 losses within 4 ulp of a long double reference; the limits,
NaN, bad inputs and the thread-count invariance. Every test runs once per ISA (conftest)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from _helpers import DTYPES, assert_close, dtype_id, max_ulp, worst
from _oracle import to_torch_f64, torch_symmetric_ce
from _tolerances import TOL, ULP_F32

import logitops as lo

REDUCTIONS = ("mean", "sum", "none")
SEED = {"prob_eps": 1e-7, "label_eps": 1e-4}  # the seed module's two clamps
OPTIONS = [
    {},
    {"alpha": 0.1, "beta": 1.0, **SEED},  # the seed's usual CIFAR-10 setting
    {"alpha": 6.0, "beta": 0.1, "eps": 1e-4},
    {"alpha": 1.0, "beta": 1.0, "prob_eps": 0.05, "label_eps": 1e-2},  # many clamped probabilities
    {"alpha": 0.0, "beta": 2.0, "prob_eps": 1e-3},
    {"alpha": 0.5, "beta": 0.0},
]
SHAPES = [(1, 1), (6, 5), (64, 10), (33, 17), (8, 1000), (2, 5003)]


def torch_ref(x, y, reduction="mean", alpha=1.0, beta=1.0, eps=1e-8, prob_eps=None, label_eps=None, grad=None):
    """(loss, d loss / d input for the upstream gradient `grad`) by torch autograd in float64."""
    t = to_torch_f64(x).requires_grad_(True)
    loss = torch_symmetric_ce(t, to_torch_f64(y), alpha, beta, eps, reduction, prob_eps, label_eps)
    g = torch.ones_like(loss) if grad is None else to_torch_f64(grad).reshape(loss.shape)
    loss.backward(g)
    return loss.detach().numpy(), t.grad.numpy()


def data(rng, shape, dtype, scale=3.0):
    x = (rng.standard_normal(shape) * scale).astype(dtype)
    return x, rng.integers(0, shape[1], shape[0])


@pytest.mark.parametrize("dtype", DTYPES, ids=dtype_id)
@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("opts", OPTIONS, ids=lambda o: ",".join(f"{k}={v}" for k, v in o.items()) or "defaults")
def test_against_seed_module(dtype, reduction, opts, rng):
    for shape in SHAPES:
        x, y = data(rng, shape, dtype)
        g = np.asarray(0.7, dtype) if reduction != "none" else rng.standard_normal(shape[0]).astype(dtype)
        want, want_grad = torch_ref(x, y, reduction, grad=g, **opts)
        what = f"{shape} {reduction} {opts}"
        assert_close(lo.symmetric_cross_entropy(x, y, reduction=reduction, **opts), want, dtype, what=what)
        got_grad = lo.symmetric_cross_entropy_backward(g, x, y, reduction=reduction, **opts)
        assert_close(got_grad, want_grad, dtype, what=what + " backward")
        loss, grad = lo.symmetric_cross_entropy_value_and_grad(x, y, reduction=reduction, **opts)
        _, want_grad1 = torch_ref(x, y, reduction, **opts)
        assert_close(loss, want, dtype, what=what + " fused loss")
        assert_close(grad, want_grad1, dtype, what=what + " fused grad")
        assert grad.dtype == dtype and grad.shape == x.shape


def test_positional_order_and_eps_sets_both_clamps(rng):
    x, y = data(rng, (16, 7), np.float64)
    a = lo.symmetric_cross_entropy(x, y, 0.3, 0.8, 1e-3)
    assert a == lo.symmetric_cross_entropy(x, y, alpha=0.3, beta=0.8, prob_eps=1e-3, label_eps=1e-3)
    assert_close(a, torch_ref(x, y, "mean", 0.3, 0.8, 1e-3)[0], np.float64)
    # Each keyword overrides eps for its own clamp only.
    b = lo.symmetric_cross_entropy(x, y, 0.3, 0.8, 1e-3, label_eps=1e-4)
    assert_close(b, torch_ref(x, y, "mean", 0.3, 0.8, prob_eps=1e-3, label_eps=1e-4)[0], np.float64)
    assert a != b


def test_seed_module_in_float32_torch(rng):
    """The seed's module as it runs (float32 torch, 1e-7/1e-4) gives our float32 numbers."""
    import torch.nn.functional as F

    x, y = data(rng, (128, 10), np.float32)
    pred, labels = torch.from_numpy(x), torch.from_numpy(y)
    ce = F.cross_entropy(pred, labels)
    p = torch.clamp(F.softmax(pred, dim=1), min=1e-7, max=1.0)
    oh = torch.clamp(F.one_hot(labels, 10).float(), min=1e-4, max=1.0)
    rce = -1 * torch.sum(p * torch.log(oh), dim=1)
    seed = (0.1 * ce + 1.0 * rce.mean()).item()
    ours = lo.SymmetricCrossEntropyLoss(10, 0.1, 1.0, **SEED)(x, y)
    np.testing.assert_allclose(ours, seed, rtol=1e-5)


# ----------------------------------------------------------------------------- accuracy


def ref_losses(x, y, alpha, beta, prob_eps, label_eps):
    """Per-sample losses in long double: ce = log1p(others) - d_y (exact for confident rows)."""
    xl = x.astype(np.longdouble)
    m = xl.max(axis=1, keepdims=True)
    e = np.exp(xl - m)
    rows = np.arange(len(y))
    jmax = np.argmax(xl, axis=1)
    e_others = e.copy()
    e_others[rows, jmax] = 0
    others = e_others.sum(axis=1)
    Z = 1 + others
    ce = np.log1p(others) - (xl[rows, y] - m[:, 0])
    p = e / Z[:, None]
    clamped = np.maximum(p, np.longdouble(np.float32(prob_eps) if x.dtype == np.float32 else prob_eps))
    clamped[rows, y] = 0
    rce = -np.log(np.longdouble(label_eps)) * clamped.sum(axis=1)
    return alpha * ce + beta * rce


@pytest.mark.parametrize("opts", [{"alpha": 1.0, "beta": 1.0}, {"alpha": 0.1, "beta": 1.0, **SEED},
                                  {"alpha": 1.0, "beta": 0.0}])
def test_float32_losses_within_4_ulp(opts, rng):
    """Including confident correct predictions, where torch's lse - x[y] returns 0 or noise."""
    x, y = data(rng, (2000, 10), np.float32, scale=4.0)
    x[:500, :] *= 0.01
    x[500:1000] -= 30.0 * (np.arange(10) == y[500:1000, None])  # confidently wrong
    x[1000:1500] += 30.0 * (np.arange(10) == y[1000:1500, None])  # confidently right
    x[1500:] *= 200.0  # large logits
    pe = opts.get("prob_eps", 1e-8)
    le = opts.get("label_eps", 1e-8)
    got = lo.symmetric_cross_entropy(x, y, opts["alpha"], opts["beta"], reduction="none",
                                     prob_eps=pe, label_eps=le)
    exact = ref_losses(x, y, opts["alpha"], opts["beta"], pe, le)
    assert max_ulp(got, exact) <= ULP_F32, worst(got, exact, x[:, 0])


def test_confident_prediction_keeps_its_digits():
    """CE term log1p(sum_{j!=y} exp(x_j - x_y)): torch's float32 composition rounds it to 0."""
    x = np.array([[20.0, 0.0, 0.0]], np.float32)
    got = lo.symmetric_cross_entropy(x, np.array([0]), 1.0, 0.0, reduction="none")[0]
    exact = np.log1p(2 * np.exp(np.longdouble(-20)))
    assert abs(got - exact) <= 4 * np.spacing(np.float32(exact))
    assert float(torch.nn.functional.cross_entropy(torch.from_numpy(x), torch.tensor([0]))) == 0.0


# ----------------------------------------------------------------------------- limits and specials


@pytest.mark.parametrize("dtype", DTYPES, ids=dtype_id)
def test_limits_nan_and_extremes(dtype):
    y = np.array([0, 1, 2, 0])
    x = np.array([[1e4, -1e4, 0.0], [-1e4, 1e4, 3.0], [np.inf, 0.0, 1.0], [-np.inf] * 3], dtype)
    loss, grad = lo.symmetric_cross_entropy_value_and_grad(x, y, 1.0, 1.0, reduction="none")
    k = -np.log(1e-8)
    # Row 0, 1: p = one-hot at y to within exp(-1e4): ce = 0, rce = K * eps * (C - 1).
    np.testing.assert_allclose(loss[:2], k * 1e-8 * 2, rtol=TOL[np.dtype(dtype)][0])
    # Row 2: x_0 = +inf, target 2: p = (1, 0, 0), the limit: ce = +inf, gradient NaN-free limit is
    # not defined for ce; torch gives nan for the whole row.
    assert loss[2] == np.inf
    assert np.isnan(loss[3]) and np.all(np.isnan(grad[3]))  # all -inf: no limit (torch: nan)
    np.testing.assert_allclose(grad[0], 0.0, atol=1e-6)
    x2 = np.array([[np.nan, 0.0, 1.0], [0.0, 1.0, 2.0]], dtype)
    loss2, grad2 = lo.symmetric_cross_entropy_value_and_grad(x2, np.array([1, 1]), reduction="none")
    assert np.isnan(loss2[0]) and np.all(np.isnan(grad2[0])) and np.all(np.isfinite(grad2[1]))
    # +inf at the target: loss 0 (ce 0, every other p = 0 clamped to eps).
    x3 = np.array([[np.inf, 0.0, 1.0]], dtype)
    np.testing.assert_allclose(lo.symmetric_cross_entropy(x3, np.array([0]), reduction="none"),
                               [k * 2e-8], rtol=1e-6)


def test_empty_batch():
    x = np.zeros((0, 5))
    y = np.zeros(0, np.int64)
    assert np.isnan(lo.symmetric_cross_entropy(x, y))
    assert lo.symmetric_cross_entropy(x, y, reduction="sum") == 0
    assert lo.symmetric_cross_entropy(x, y, reduction="none").shape == (0,)
    loss, g = lo.symmetric_cross_entropy_value_and_grad(x, y)
    assert np.isnan(loss) and g.shape == (0, 5)


def test_out_is_input_and_threads(rng):
    x, y = data(rng, (3000, 300), np.float32)
    before = lo.get_num_threads()
    try:
        lo.set_num_threads(1)
        l1, g1 = lo.symmetric_cross_entropy_value_and_grad(x, y, 0.1, 1.0, **SEED)
        lo.set_num_threads(2)
        l2, g2 = lo.symmetric_cross_entropy_value_and_grad(x, y, 0.1, 1.0, **SEED)
    finally:
        lo.set_num_threads(before)
    assert l1 == l2 and np.array_equal(g1, g2)  # bit for bit
    xi = x.copy()
    l3, g3 = lo.symmetric_cross_entropy_value_and_grad(xi, y, 0.1, 1.0, **SEED, out=xi)
    assert g3 is xi and l3 == l1 and np.array_equal(xi, g1)


# ----------------------------------------------------------------------------- bad inputs


def test_bad_options_name_the_argument(rng):
    x, y = data(rng, (4, 3), np.float64)
    for name in ("alpha", "beta"):
        for v in (-0.1, np.nan, np.inf):
            with pytest.raises(ValueError, match=name):
                lo.symmetric_cross_entropy(x, y, **{name: v})
        for v in ("1", None, True, [1.0]):
            with pytest.raises(TypeError, match=name):
                lo.symmetric_cross_entropy(x, y, **{name: v})
    for name in ("eps", "prob_eps", "label_eps"):
        for v in (0.0, -1e-8, 1.0, 2.0, np.nan):
            with pytest.raises(ValueError, match=name):
                lo.symmetric_cross_entropy(x, y, **{name: v})
        with pytest.raises(TypeError, match=name):
            lo.symmetric_cross_entropy(x, y, **{name: "1e-8"})
    for fn in (lo.symmetric_cross_entropy, lo.symmetric_cross_entropy_value_and_grad):
        with pytest.raises(ValueError, match="reduction"):
            fn(x, y, reduction="batchmean")
    with pytest.raises(ValueError, match="wrt"):
        lo.symmetric_cross_entropy_backward(1.0, x, y, wrt="target")


def test_bad_targets(rng):
    x, y = data(rng, (6, 5), np.float64)
    for v in (-1, 5, 2**40, -100):
        bad = y.copy()
        bad[3] = v
        for fn in (lo.symmetric_cross_entropy, lo.symmetric_cross_entropy_value_and_grad):
            with pytest.raises(IndexError, match=f"Target {v} is out of bounds."):
                fn(x, bad)
    with pytest.raises(IndexError, match="Target 255 is out of bounds."):
        lo.symmetric_cross_entropy(x, np.array([0, 1, 2, 3, 4, 255], np.uint8))
    for bad_t in (y.astype(np.float64), y.astype(np.complex128), y.tolist(), None):
        with pytest.raises(TypeError, match="target"):
            lo.symmetric_cross_entropy(x, bad_t)
    with pytest.raises(TypeError, match="target"):  # probabilities are not taken
        lo.symmetric_cross_entropy(x, np.full((6, 5), 0.2))
    with pytest.raises(ValueError, match="input"):
        lo.symmetric_cross_entropy(np.zeros(5), np.array(1))
    with pytest.raises(ValueError, match="target"):
        lo.symmetric_cross_entropy(np.zeros((6, 5, 2)), y)
    with pytest.raises(ValueError, match=r"\(7,\)"):
        lo.symmetric_cross_entropy(x, np.zeros(7, np.int64))


# ----------------------------------------------------------------------------- the loss object


def test_loss_object(rng):
    x, y = data(rng, (32, 10), np.float64)
    for red in REDUCTIONS:
        loss = lo.SymmetricCrossEntropyLoss(10, 0.1, 1.0, reduction=red, **SEED)
        want, want_grad = torch_ref(x, y, red, 0.1, 1.0, **SEED)
        assert_close(loss(x, y), want, np.float64)
        v, g = loss.value_and_grad(x, y)
        assert_close(v, want, np.float64)
        assert_close(g, want_grad, np.float64)
        go = np.ones(32) if red == "none" else 1.0
        assert_close(loss.backward(go, x, y), want_grad, np.float64)
    assert repr(lo.SymmetricCrossEntropyLoss(10, 0.1)) == "SymmetricCrossEntropyLoss(num_classes=10, alpha=0.1, reduction='mean')"
    with pytest.raises(ValueError, match="num_classes"):
        lo.SymmetricCrossEntropyLoss(9)(x, y)
    for bad, exc in ((0, ValueError), (2.5, TypeError), (True, TypeError)):
        with pytest.raises(exc, match="num_classes"):
            lo.SymmetricCrossEntropyLoss(bad)
    with pytest.raises(ValueError, match="alpha"):
        lo.SymmetricCrossEntropyLoss(10, -1.0)
    with pytest.raises(ValueError, match="eps"):
        lo.SymmetricCrossEntropyLoss(10, eps=0.0)
    with pytest.raises(ValueError, match="reduction"):
        lo.SymmetricCrossEntropyLoss(10, reduction="avg")
