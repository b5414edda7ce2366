"""cross_entropy and nll_loss against torch: forward against F.cross_entropy / F.nll_loss, backward
against torch autograd (input, and target for probability targets) with a random upstream
gradient, fused value+grad and fused in place (out=input), over dtype x reduction x weight x
ignore_index x label_smoothing x target kind x shape; integer target dtypes; strided and
channels-last layouts; large vocabularies; accuracy of confident predictions in ulps against a
long-double reference; bad inputs; the deviations from torch. Every test runs once per ISA."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from _helpers import DTYPES, assert_close, dtype_id, max_ulp, ref_log_softmax_rows, worst
from _oracle import to_numpy
from _tolerances import ULP

import logitops as lo

REDUCTIONS = ("mean", "sum", "none")
INT_DTYPES = (np.int8, np.int16, np.int32, np.int64, np.uint8, np.uint16, np.uint32, np.uint64)

# (shape, id): unbatched, 2-D, 3-D (lanes), 4-D (lanes), empty batch.
SHAPES = [((7,), "C"), ((6, 5), "NC"), ((4, 5, 3), "NCd"), ((2, 3, 4, 5), "NCdd"), ((0, 4), "empty")]


# ----------------------------------------------------------------------------- data and oracle


def sample_shape(shape):
    return () if len(shape) == 1 else (shape[0],) + tuple(shape[2:])


def classes(shape):
    return shape[0] if len(shape) == 1 else shape[1]


def make_logits(rng, shape, dtype):
    """randn logits with adversarial samples mixed in: a confident one, one near 1e4, one in [90, 100]."""
    x = rng.standard_normal(shape) * 3
    if len(shape) >= 2 and shape[0] >= 3:
        x[0, 0] += 30  # a confident sample (class 0 dominates)
        x[1] += 1e4
        x[2] = 90 + 10 * rng.random(x[2].shape)
    return x.astype(dtype)


def make_targets(rng, shape, ignore_index=None, dtype=np.int64):
    y = rng.integers(0, classes(shape), sample_shape(shape)) if classes(shape) else np.zeros(sample_shape(shape), int)
    if y.ndim and y.size:
        y.flat[0] = 0  # the confident sample's own class
        if ignore_index is not None and y.size > 2:
            y.flat[-1] = ignore_index
    return y.astype(dtype)


def make_probs(rng, shape, dtype):
    p = rng.random(shape)
    axis = 0 if len(shape) == 1 else 1
    with np.errstate(invalid="ignore"):
        p = p / p.sum(axis=axis, keepdims=True)
    if p.size:
        p.flat[1] = 0.0  # an exact zero
    return np.nan_to_num(p).astype(dtype)


def torch_ref(x, target, weight=None, ignore_index=-100, reduction="mean", label_smoothing=0.0, g=None,
              nll=False):
    """(loss, d/dinput, d/dtarget or None) by torch autograd in float64 on the same values."""
    probs = target.dtype.kind == "f"
    tx = torch.tensor(x.astype(np.float64), requires_grad=True)
    if probs:
        tt = torch.tensor(target.astype(np.float64), requires_grad=True)
    else:
        tt = torch.tensor(target.astype(np.int64))
    tw = None if weight is None else torch.tensor(weight.astype(np.float64))
    if nll:
        loss = F.nll_loss(tx, tt, tw, ignore_index=ignore_index, reduction=reduction)
    else:
        loss = F.cross_entropy(tx, tt, tw, ignore_index=ignore_index, reduction=reduction,
                               label_smoothing=label_smoothing)
    gg = torch.ones_like(loss) if g is None else torch.tensor(np.asarray(g, np.float64)).reshape(loss.shape)
    loss.backward(gg)
    return to_numpy(loss), to_numpy(tx.grad), (to_numpy(tt.grad) if probs else None)


def upstream(rng, reduction, shape, dtype):
    if reduction == "none":
        return (rng.random(sample_shape(shape)) + 0.5).astype(dtype)
    return float(rng.random() + 0.5)


def check_all(x, target, weight=None, ignore_index=-100, reduction="mean", label_smoothing=0.0, rng=None,
              nll=False, dtype=None):
    """Forward, backward (random upstream gradient), fused and fused in place against torch;
    arguments unchanged."""
    rng = rng or np.random.default_rng(0)
    dt = np.dtype(dtype or x.dtype)
    kw = dict(weight=weight, ignore_index=ignore_index, reduction=reduction)
    if not nll:
        kw["label_smoothing"] = label_smoothing
    fwd = lo.nll_loss if nll else lo.cross_entropy
    bwd = lo.nll_loss_backward if nll else lo.cross_entropy_backward
    fused = lo.nll_loss_value_and_grad if nll else lo.cross_entropy_value_and_grad
    saved = [a.copy() for a in (x, target) + ((weight,) if weight is not None else ())]
    sshape = sample_shape(x.shape)

    loss = fwd(x, target, **kw)
    ref_loss, _, _ = torch_ref(x, target, weight, ignore_index, reduction, label_smoothing, nll=nll)
    assert_close(loss, ref_loss, dt, what="forward")
    if reduction != "none":
        assert isinstance(loss, np.floating) and loss.dtype == dt
    else:
        assert loss.shape == sshape

    g = upstream(rng, reduction, x.shape, dt)
    _, ref_gx, ref_gt = torch_ref(x, target, weight, ignore_index, reduction, label_smoothing, g, nll=nll)
    gx = bwd(g, x, target, **kw)
    assert_close(gx, ref_gx, dt, what="backward")
    if target.dtype.kind == "f":
        gt = bwd(g, x, target, wrt="target", **kw)
        assert_close(gt, ref_gt, dt, what="backward wrt target")

    _, ref_g1, _ = torch_ref(x, target, weight, ignore_index, reduction, label_smoothing, nll=nll)
    v, gv = fused(x, target, **kw)
    assert_close(v, ref_loss, dt, what="fused loss")
    assert_close(gv, ref_g1, dt, what="fused grad")

    for a, b in zip((x, target) + ((weight,) if weight is not None else ()), saved):
        np.testing.assert_array_equal(a, b)  # nothing was modified

    if x.dtype == dt:
        xi = np.ascontiguousarray(x).copy()
        canary = xi.ctypes.data
        v2, g2 = fused(xi, target, out=xi, **kw)
        assert g2 is xi and xi.ctypes.data == canary
        assert_close(v2, ref_loss, dt, what="in-place loss")
        assert_close(xi, ref_g1, dt, what="in-place grad")


# ----------------------------------------------------------------------------- the matrix


@pytest.mark.parametrize("dtype", DTYPES, ids=dtype_id)
@pytest.mark.parametrize("shape", [s for s, _ in SHAPES], ids=[i for _, i in SHAPES])
@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("weighted", [False, True], ids=["w0", "w1"])
@pytest.mark.parametrize("label_smoothing", [0.0, 0.2], ids=["ls0", "ls.2"])
@pytest.mark.parametrize("ignore", ["ignored", "valid-class"])  # "ignored": the default -100, some samples ignored
def test_class_targets(dtype, shape, reduction, weighted, label_smoothing, ignore, rng):
    x = make_logits(rng, shape, dtype)
    C = classes(shape)
    ii = {"ignored": -100, "valid-class": 1}[ignore]
    y = make_targets(rng, shape, ii)
    w = (rng.random(C) + 0.1).astype(dtype) if weighted else None
    check_all(x, y, w, ii, reduction, label_smoothing, rng)


@pytest.mark.parametrize("dtype", DTYPES, ids=dtype_id)
@pytest.mark.parametrize("shape", [s for s, _ in SHAPES], ids=[i for _, i in SHAPES])
@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("weighted", [False, True], ids=["w0", "w1"])
@pytest.mark.parametrize("label_smoothing", [0.0, 0.2], ids=["ls0", "ls.2"])
def test_probability_targets(dtype, shape, reduction, weighted, label_smoothing, rng):
    x = make_logits(rng, shape, dtype)
    p = make_probs(rng, shape, dtype)
    w = (rng.random(classes(shape)) + 0.1).astype(dtype) if weighted else None
    check_all(x, p, w, -100, reduction, label_smoothing, rng)


@pytest.mark.parametrize("dtype", DTYPES, ids=dtype_id)
@pytest.mark.parametrize("shape", [s for s, _ in SHAPES], ids=[i for _, i in SHAPES])
@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("weighted", [False, True], ids=["w0", "w1"])
@pytest.mark.parametrize("ignore", ["ignored", "valid-class"])
def test_nll_loss(dtype, shape, reduction, weighted, ignore, rng):
    x = make_logits(rng, shape, dtype)
    ii = {"ignored": -100, "valid-class": 1}[ignore]
    y = make_targets(rng, shape, ii)
    w = (rng.random(classes(shape)) + 0.1).astype(dtype) if weighted else None
    check_all(x, y, w, ii, reduction, rng=rng, nll=True)


@pytest.mark.parametrize("tdtype", INT_DTYPES, ids=dtype_id)
@pytest.mark.parametrize("shape", [(9, 6), (3, 6, 5)], ids=["NC", "NCd"])
def test_integer_target_dtypes(tdtype, shape, rng):
    x = make_logits(rng, shape, np.float32)
    y = make_targets(rng, shape, dtype=tdtype)
    check_all(x, y, None, 2, "mean", 0.1, rng)  # ignore_index 2: a valid class, in every dtype's range
    check_all(x, y, None, 2, "none", 0.0, rng, nll=True)


# ----------------------------------------------------------------------------- layouts and sizes


@pytest.mark.parametrize("dtype", DTYPES, ids=dtype_id)
def test_strided_and_channels_last(dtype, rng):
    base = make_logits(rng, (6, 9, 10), dtype)
    cases = {
        "negative strides": base[::-1, ::-2, ::-1],
        "every other sample": base[::2],
        "transposed class axis": np.ascontiguousarray(base.transpose(0, 2, 1)).transpose(0, 2, 1),
        "channels last 4-D": np.ascontiguousarray(np.moveaxis(base.reshape(6, 9, 2, 5), 1, -1)).transpose(0, 3, 1, 2),
        "2-D column slice": base[:, :, 3],
        "read-only": np.frombuffer(base.tobytes(), dtype=dtype).reshape(base.shape),
    }
    for name, x in cases.items():
        y = make_targets(rng, x.shape, -100)
        p = make_probs(rng, x.shape, dtype)[..., ::1]
        w = (rng.random(x.shape[1]) + 0.5).astype(dtype)
        check_all(x, y, w, -100, "none", 0.1, rng)
        check_all(x, y, None, -100, "mean", 0.0, rng)
        check_all(x, p, w, -100, "sum", 0.3, rng)
        assert lo.cross_entropy_backward(1.0, x, y).shape == x.shape, name


@pytest.mark.parametrize("dtype", DTYPES, ids=dtype_id)
@pytest.mark.parametrize("C", [1, 2, 7, 8, 9, 15, 16, 17, 31, 33, 257], ids=lambda c: f"C{c}")
def test_sizes_around_vector_width(dtype, C, rng):
    """Class counts around the vector width and its pairs, rows and lanes; the maximum in the
    tail, in the middle and in the last full pair."""
    for shape in [(5, C), (2, C, 19)]:
        x = make_logits(rng, shape, dtype)
        if C > 1:
            x[..., :][0, -1] = 50  # the first sample's maximum in the tail
            x[1, C // 2] = 60
        y = make_targets(rng, shape, -100)
        check_all(x, y, None, -100, "none", 0.0, rng)
        check_all(x, y, (rng.random(C) + 0.5).astype(dtype), -100, "mean", 0.25, rng)
        check_all(x, make_probs(rng, shape, dtype), None, -100, "none", 0.0, rng)


def test_large_vocabulary(rng):
    """GPT-2's 50257 classes (rows) and Llama 3's 128256, a few rows, float32."""
    for n, c in [(3, 50257), (2, 128256)]:
        x = (rng.standard_normal((n, c)) * 2).astype(np.float32)
        x[0, 17] = 25.0  # confident
        y = rng.integers(0, c, n)
        y[0] = 17
        check_all(x, y, None, -100, "mean", 0.0, rng)
        check_all(x, y, None, -100, "none", 0.1, rng)
    x = (rng.standard_normal((2, 50257, 3)) * 2).astype(np.float32)  # lanes with a large C
    check_all(x, rng.integers(0, 50257, (2, 3)), None, -100, "sum", 0.0, rng)


def test_zero_sizes(rng):
    for shape in [(0, 5), (0, 5, 3), (3, 5, 0), (2, 0)]:  # (2, 0, 3): torch itself fails
        x = np.zeros(shape, np.float32)
        y = np.full(sample_shape(shape), -100, np.int64)
        for red in REDUCTIONS:
            ref = torch_ref(x, y, reduction=red)
            assert_close(lo.cross_entropy(x, y, reduction=red), ref[0], np.float32, what=str(shape))
            loss, g = lo.cross_entropy_value_and_grad(x, y, reduction=red)
            assert g.shape == shape and not np.any(g)
            p = np.zeros(shape, np.float32)
            assert_close(lo.cross_entropy(x, p, reduction=red), torch_ref(x, p, reduction=red)[0], np.float32)


def test_all_ignored_gives_nan_mean_and_zero_gradient(rng):
    x = make_logits(rng, (4, 6), np.float32)
    y = np.full(4, 3, np.int64)
    for nll in (False, True):
        fused = lo.nll_loss_value_and_grad if nll else lo.cross_entropy_value_and_grad
        loss, g = fused(x, y, ignore_index=3)
        assert np.isnan(loss) and not np.any(g)
        loss, g = fused(x, y, ignore_index=3, reduction="sum")
        assert loss == 0 and not np.any(g)
    # Zero total weight without ignoring: torch's 0/0 (nan loss and nan gradients).
    check_all(x[:, :4].copy(), np.array([0, 1, 0, 1]), np.array([0, 0, 1, 1], np.float32), rng=rng)


# ----------------------------------------------------------------------------- numerics


def exact_ce_rows(x, y):
    """-log_softmax(x)[y] per row in long double (exact at the maximum too)."""
    ls = ref_log_softmax_rows(x)
    return -ls[np.arange(x.shape[0]), y]


@pytest.mark.parametrize("dtype", DTYPES, ids=dtype_id)
def test_confident_prediction_accuracy(dtype, rng):
    """Per-sample loss within 4 ulp of the exact value, confident correct predictions included
    (torch: lse - x[y], 0 or a rounding error), by the row and the lane kernels."""
    C = 1000
    margins = np.array([0, 1e-3, 0.5, 2, 5, 10, 15, 20, 30, 40, 60, 80, 86, 100, 300, 700])
    rows = []
    for m in margins:
        for scale in (1.0, 5.0):
            x = rng.standard_normal(C) * scale
            x[3] = x.max() + m  # class 3 wins by m
            rows.append(x)
    x = np.array(rows)
    x[::3] += 1e4 * rng.standard_normal((x[::3].shape[0], 1))  # large offsets
    x = x.astype(dtype)
    y = np.full(x.shape[0], 3)
    y[1::4] = 7  # some wrong predictions too
    exact = exact_ce_rows(x, y)
    got = lo.cross_entropy(x, y, reduction="none")
    assert max_ulp(got, exact) <= ULP[dtype], worst(got, exact, margins.repeat(2))
    # The lanes layout: the same samples as (1, C, n).
    got3 = lo.cross_entropy(np.ascontiguousarray(x.T)[None], y[None], reduction="none")[0]
    assert max_ulp(got3, exact) <= ULP[dtype], worst(got3, exact, margins.repeat(2))
    # torch loses these digits; we do not (the test can fail).
    confident = (margins.repeat(2) >= 20) & (y == 3)
    tl = to_numpy(F.cross_entropy(torch.tensor(x), torch.tensor(y), reduction="none"))
    if dtype == np.float32:
        assert max_ulp(tl[confident], exact[confident]) > 1000
    normal = exact >= np.finfo(dtype).tiny
    assert np.all(got[confident & normal] > 0)


@pytest.mark.parametrize("dtype", DTYPES, ids=dtype_id)
def test_target_gradient_of_confident_prediction(dtype, rng):
    """d/dx_y = p_y - 1 = -others / Z, without cancellation."""
    x = rng.standard_normal((8, 50))
    x[:, 0] = x.max(axis=1) + np.linspace(5, 60, 8)
    x = x.astype(dtype)
    y = np.zeros(8, np.int64)
    _, g = lo.cross_entropy_value_and_grad(x, y, reduction="sum")
    ls = ref_log_softmax_rows(x)
    exact = np.expm1(ls[:, 0])  # p_y - 1 = expm1(log p_y)
    assert max_ulp(g[:, 0], exact) <= ULP[dtype], worst(g[:, 0], exact, x[:, 0])


@pytest.mark.parametrize("dtype", DTYPES, ids=dtype_id)
def test_seed_equivalence_with_nll_of_log_softmax(dtype, rng):
    x = make_logits(rng, (16, 37), dtype)
    y = make_targets(rng, (16, 37), -100)
    w = (rng.random(37) + 0.5).astype(dtype)
    for red in REDUCTIONS:
        a = lo.cross_entropy(x, y, w, reduction=red)
        b = lo.nll_loss(lo.log_softmax(x, axis=1), y, w, reduction=red)
        assert_close(a, b, dtype, what=red)
    x3 = make_logits(rng, (3, 5, 7), dtype)
    y3 = make_targets(rng, (3, 5, 7))
    assert_close(lo.cross_entropy(x3, y3, reduction="none"),
                 lo.nll_loss(lo.log_softmax(x3, axis=1), y3, reduction="none"), dtype)


def test_binary_equivalence(rng):
    x = make_logits(rng, (50, 2), np.float64)
    y = rng.integers(0, 2, 50)
    a = lo.cross_entropy(x, y, reduction="none")
    b = lo.binary_cross_entropy_with_logits(x[:, 1] - x[:, 0], y.astype(np.float64), reduction="none")
    assert_close(a, b, np.float64)


def test_bit_identical_over_thread_counts(rng):
    x = make_logits(rng, (3000, 300), np.float32)
    y = make_targets(rng, (3000, 300), -100)
    x3 = make_logits(rng, (40, 21, 700), np.float32)
    y3 = make_targets(rng, (40, 21, 700))
    before = lo.get_num_threads()
    try:
        res = []
        for n in (1, 2, 3):
            lo.set_num_threads(n)
            res.append((lo.cross_entropy(x, y, label_smoothing=0.1), lo.cross_entropy(x3, y3),
                        lo.cross_entropy_value_and_grad(x, y)[1]))
        for r in res[1:]:
            assert r[0] == res[0][0] and r[1] == res[0][1]
            np.testing.assert_array_equal(r[2], res[0][2])
    finally:
        lo.set_num_threads(before)


@pytest.mark.parametrize("dtype", DTYPES, ids=dtype_id)
def test_non_finite_logits(dtype):
    inf, nan = np.inf, np.nan
    x = np.array([[-inf, 0.0, 1.0], [2.0, nan, 0.0], [5.0, -inf, -inf]], dtype)
    y = np.array([0, 0, 0])
    check_all(x, y, reduction="none")
    check_all(x[[0, 2]], np.array([0, 0]), np.array([1.0, 2.0, 0.5], dtype), reduction="mean", label_smoothing=0.0)
    # All -inf: no limit, nan as torch.
    loss = lo.cross_entropy(np.full((1, 4), -inf, dtype), np.array([1]), reduction="none")
    assert np.isnan(loss[0])


@pytest.mark.parametrize("dtype", DTYPES, ids=dtype_id)
@pytest.mark.parametrize("spatial", [False, True], ids=["rows", "lanes"])
def test_minus_inf_logit_with_probability_mass_is_infinite(dtype, spatial):
    """A class with -inf logit and positive target probability costs +inf (as torch), in the row
    and in the lane (N, C, d) layouts: the compensated sums must not turn inf into NaN."""
    x = np.array([[-np.inf, 0.3], [0.5, -1.0]], dtype)
    t = np.array([[0.7, 0.3], [0.4, 0.6]], dtype)
    if spatial:  # (1, C, 2): the two samples side by side along the inner axis
        x, t = x.T[None].copy(), t.T[None].copy()
    loss = np.asarray(lo.cross_entropy(x, t, reduction="none")).ravel()
    assert loss[0] == np.inf and np.isfinite(loss[1])
    assert lo.cross_entropy(x, t, reduction="sum") == np.inf


class TestDeviations:
    """Where we differ from torch on purpose (listed in logitops/_cross_entropy.py)."""

    def test_plus_inf_logit_gives_the_limit(self):
        x = np.array([[np.inf, 0.0], [np.inf, 0.0], [np.inf, np.inf]], np.float32)
        y = np.array([0, 1, 0])
        loss, g = lo.cross_entropy_value_and_grad(x, y, reduction="none")
        np.testing.assert_array_equal(loss, [0.0, np.inf, np.log(np.float32(2))])
        np.testing.assert_array_equal(g[0], [0.0, 0.0])
        assert np.isnan(to_numpy(F.cross_entropy(torch.tensor(x), torch.tensor(y), reduction="none"))[0])

    def test_zero_probability_at_minus_inf_logit_counts_zero(self):
        x = np.array([[-np.inf, 0.0]], np.float32)
        t = np.array([[0.0, 1.0]], np.float32)
        assert lo.cross_entropy(x, t) == 0.0
        assert np.isnan(F.cross_entropy(torch.tensor(x), torch.tensor(t)).item())
        w = np.array([0.0, 1.0], np.float32)
        assert lo.cross_entropy(x, np.array([1]), w, label_smoothing=0.5) == 0.0

    def test_every_integer_dtype_and_huge_uint64(self):
        x = np.zeros((2, 3), np.float32)
        assert lo.cross_entropy(x, np.array([1, 2], np.int16)) == lo.cross_entropy(x, np.array([1, 2]))
        big = np.array([1, 2**64 - 100], np.uint64)  # would wrap to -100, the default ignore_index
        with pytest.raises(IndexError, match=r"^Target 18446744073709551516 is out of bounds\.$"):
            lo.cross_entropy(x, big)

    def test_ignored_sample_with_nan_has_zero_gradient(self):
        x = np.array([[np.nan, 0.0], [1.0, 0.0]], np.float32)
        _, g = lo.cross_entropy_value_and_grad(x, np.array([-100, 0]))
        np.testing.assert_array_equal(g[0], [0.0, 0.0])
        _, g3 = lo.cross_entropy_value_and_grad(np.ascontiguousarray(x.T)[None], np.array([[-100, 0]]))
        np.testing.assert_array_equal(g3[0, :, 0], [0.0, 0.0])

    def test_mixed_dtypes(self, rng):
        x = make_logits(rng, (4, 5), np.float32)
        p = make_probs(rng, (4, 5), np.float64)
        assert lo.cross_entropy(x, p).dtype == np.float64
        w = np.ones(5, np.float64)
        assert lo.cross_entropy(x, np.array([0, 1, 2, 3]), w).dtype == np.float32


# ----------------------------------------------------------------------------- bad inputs


class TestBadInputs:
    x = np.zeros((3, 4), np.float32)
    y = np.array([0, 1, 2])

    @pytest.mark.parametrize("nll", [False, True], ids=["ce", "nll"])
    def test_target_out_of_bounds(self, nll):
        f = lo.nll_loss if nll else lo.cross_entropy
        with pytest.raises(IndexError, match=r"^Target 5 is out of bounds\.$"):
            f(self.x, np.array([0, 5, 7]))
        with pytest.raises(IndexError, match=r"^Target -1 is out of bounds\.$"):
            f(self.x, np.array([0, -1, 1]))
        with pytest.raises(IndexError, match=r"^Target 4 is out of bounds\.$"):
            f(self.x, np.array([0, 4, -3]), ignore_index=-3)
        assert np.isfinite(f(self.x, np.array([0, 99, 1]), ignore_index=99))  # ignored: not checked
        with pytest.raises(IndexError, match="Target 4 is out of bounds"):
            f(np.zeros((2, 4, 3), np.float32), np.array([[0, 1, 2], [3, 0, 4]]))
        with pytest.raises(IndexError, match="Target 9 is out of bounds"):
            f(np.zeros(4, np.float32), np.array(9))

    @pytest.mark.parametrize("weighted", [False, True], ids=["unweighted", "weighted"])
    @pytest.mark.parametrize("where", [(3, 700, 4001), (600, 601, 2999), (4999, 4999, 4999)])
    def test_first_bad_target_is_named_in_long_target_arrays(self, rng, weighted, where):
        """The target check reads blocks of targets at a time: the first bad one in sample order is
        named, wherever the blocks fall, with ignored samples (which are not checked) around it."""
        n, C = 5000, 3
        x = make_logits(rng, (n, C), np.float32)
        y = rng.integers(0, C, n)
        y[::7] = -100
        first, second, third = where
        y[third] = -7
        y[second] = 11
        y[first] = C if first != second else y[first]
        expect = y[first]
        w = (rng.random(C) + 0.5).astype(np.float32) if weighted else None
        with pytest.raises(IndexError, match=rf"^Target {expect} is out of bounds\.$"):
            lo.cross_entropy(x, y, w)
        tx, ty = torch.from_numpy(x), torch.from_numpy(y)
        with pytest.raises(IndexError, match=rf"Target {expect} is out of bounds"):
            F.cross_entropy(tx, ty, None if w is None else torch.from_numpy(w))

    def test_bad_target_leaves_input_untouched_in_place(self, rng):
        x = make_logits(rng, (70000, 2), np.float32)  # several chunks
        y = rng.integers(0, 2, 70000)
        y[-1] = 2
        before = x.copy()
        with pytest.raises(IndexError, match="Target 2 is out of bounds"):
            lo.cross_entropy_value_and_grad(x, y, out=x)
        np.testing.assert_array_equal(x, before)

    def test_first_bad_target_is_reported(self, rng):
        y = rng.integers(0, 4, 200000)
        y[150000], y[170000] = 9, 8
        with pytest.raises(IndexError, match="^Target 9 "):
            lo.cross_entropy(np.zeros((200000, 4), np.float32), y)

    def test_shapes(self):
        with pytest.raises(ValueError, match=r"\(2,\).*\(3, 4\)"):
            lo.cross_entropy(self.x, np.array([0, 1]))
        with pytest.raises(ValueError, match=r"\(3, 5\).*\(3, 4\)"):
            lo.cross_entropy(self.x, np.zeros((3, 5), np.float32))
        with pytest.raises(ValueError, match="0-d"):
            lo.cross_entropy(np.ones((), np.float32), np.array(0))
        with pytest.raises(ValueError, match=r"weight has shape \(3,\), expected \(4,\)"):
            lo.cross_entropy(self.x, self.y, weight=np.ones(3, np.float32))
        with pytest.raises(ValueError, match="weight"):
            lo.nll_loss(self.x, self.y, weight=np.ones((1, 4), np.float32))
        with pytest.raises(ValueError, match="grad_output has shape"):
            lo.cross_entropy_backward(np.ones(2, np.float32), self.x, self.y, reduction="none")
        with pytest.raises(ValueError, match="grad_output must be a scalar"):
            lo.cross_entropy_backward(np.ones(3, np.float32), self.x, self.y)

    def test_options(self):
        for bad in (-0.1, 1.5, float("nan")):
            with pytest.raises(ValueError, match="label_smoothing must be between 0.0 and 1.0"):
                lo.cross_entropy(self.x, self.y, label_smoothing=bad)
        with pytest.raises(TypeError, match="label_smoothing"):
            lo.cross_entropy(self.x, self.y, label_smoothing="0.1")
        with pytest.raises(ValueError, match="reduction"):
            lo.cross_entropy(self.x, self.y, reduction="avg")
        with pytest.raises(ValueError, match="reduction"):
            lo.nll_loss_value_and_grad(self.x, self.y, reduction=None)
        with pytest.raises(TypeError, match="ignore_index"):
            lo.cross_entropy(self.x, self.y, ignore_index=1.0)
        with pytest.raises(ValueError, match="wrt"):
            lo.cross_entropy_backward(1.0, self.x, self.y, wrt="weight")
        with pytest.raises(ValueError, match="probability targets"):
            lo.cross_entropy_backward(1.0, self.x, self.y, wrt="target")

    def test_dtypes(self):
        with pytest.raises(TypeError, match="input must have dtype float32, float64, float16 or bfloat16, got int64"):
            lo.cross_entropy(np.zeros((3, 4), np.int64), self.y)
        with pytest.raises(TypeError, match="input must be a numpy.ndarray"):
            lo.cross_entropy([[0.0] * 4] * 3, self.y)
        with pytest.raises(TypeError, match="target must have an integer dtype .* got bool"):
            lo.cross_entropy(self.x, np.array([True, False, True]))
        with pytest.raises(TypeError, match="target: class indices must have an integer dtype, got float32"):
            lo.cross_entropy(self.x, np.zeros(3, np.float32))
        with pytest.raises(TypeError, match="target of nll_loss must have an integer dtype"):
            lo.nll_loss(self.x, np.zeros((3, 4), np.float32))
        with pytest.raises(TypeError, match="target must be a numpy.ndarray"):
            lo.cross_entropy(self.x, [0, 1, 2])
        with pytest.raises(TypeError, match="weight must have dtype"):
            lo.cross_entropy(self.x, self.y, weight=np.ones(4, np.int32))
        with pytest.raises(TypeError, match="complex"):
            lo.cross_entropy(np.zeros((3, 4), np.complex64), self.y)

    def test_out(self):
        x = self.x.copy()
        with pytest.raises(TypeError, match="out must have dtype float32"):
            lo.cross_entropy_value_and_grad(x, self.y, out=np.zeros((3, 4)))
        with pytest.raises(ValueError, match="out has shape"):
            lo.cross_entropy_value_and_grad(x, self.y, out=np.zeros((4, 3), np.float32))
        big = np.zeros((4, 4), np.float32)
        with pytest.raises(ValueError, match="overlaps input"):
            lo.cross_entropy_value_and_grad(big[:3], self.y, out=big[1:])
        with pytest.raises(ValueError, match="C-contiguous"):
            lo.cross_entropy_value_and_grad(x, self.y, out=np.zeros((4, 3), np.float32).T)
        ro = np.zeros((3, 4), np.float32)
        ro.flags.writeable = False
        with pytest.raises(ValueError, match="writable"):
            lo.cross_entropy_value_and_grad(x, self.y, out=ro)
        p = np.full((3, 4), 0.25, np.float32)
        with pytest.raises(ValueError, match="share memory with target"):
            lo.cross_entropy_value_and_grad(x, p, out=p)


def test_public_api():
    for name in ("cross_entropy", "cross_entropy_backward", "cross_entropy_value_and_grad", "nll_loss",
                 "nll_loss_backward", "nll_loss_value_and_grad"):
        assert name in lo.__all__ and callable(getattr(lo, name))
