"""binary_cross_entropy and binary_cross_entropy_with_logits against torch autograd (forward,
backward with respect to input and target, fused loss + gradient, out=input) over dtype x
reduction x weight shape x pos_weight shape x soft/hard targets x shapes and memory layouts;
accuracy in ulps against float64 / mpmath; the deviations from torch pinned; the seed
equivalences with 2-class cross-entropy; bad arguments. Every test runs once per ISA (conftest)."""

from __future__ import annotations

import os

import mpmath
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from _helpers import DTYPES, F32, F64, assert_close, dtype_id, max_ulp, worst
from _oracle import to_numpy, to_torch
from _tolerances import COMPOSED_F64_RTOL, ULP_F32, ULP_F32_LONG_SUM, ULP_F64

import logitops as lo

REDUCTIONS = ("mean", "sum", "none")
INF = np.inf
KINDS = ("probs", "logits")

LO = {
    "probs": (lo.binary_cross_entropy, lo.binary_cross_entropy_backward, lo.binary_cross_entropy_value_and_grad),
    "logits": (
        lo.binary_cross_entropy_with_logits,
        lo.binary_cross_entropy_with_logits_backward,
        lo.binary_cross_entropy_with_logits_value_and_grad,
    ),
}


# ----------------------------------------------------------------------------- calls


def lo_calls(kind, x, t, w=None, q=None, reduction="mean", go=1.0):
    """(loss, d/dinput, d/dtarget, fused loss, fused grad) of logitops."""
    fwd, bwd, fused = LO[kind]
    kw = {"weight": w, "reduction": reduction}
    if kind == "logits":
        kw["pos_weight"] = q
    loss = fwd(x, t, **kw)
    gi = bwd(go, x, t, **kw)
    gt = bwd(go, x, t, **kw, wrt="target")
    fl, fg = fused(x, t, **kw)
    return loss, gi, gt, fl, fg


def torch_calls(kind, x, t, w=None, q=None, reduction="mean", go=1.0, dtype=None):
    """(loss, d/dinput, d/dtarget) of torch autograd in `dtype` (our computation dtype)."""
    dt = np.dtype(dtype or np.result_type(x, t))
    tx = to_torch(x.astype(dt), requires_grad=True)
    tt = to_torch(t.astype(dt), requires_grad=True)
    tw = None if w is None else to_torch(w.astype(dt))
    if kind == "probs":
        y = F.binary_cross_entropy(tx, tt, weight=tw, reduction=reduction)
    else:
        tq = None if q is None else to_torch(q.astype(dt))
        y = F.binary_cross_entropy_with_logits(tx, tt, weight=tw, reduction=reduction, pos_weight=tq)
    y.backward(to_torch(np.asarray(go, dtype=dt)).reshape(y.shape))
    return to_numpy(y), to_numpy(tx.grad), to_numpy(tt.grad)


def check_against_torch(kind, x, t, w=None, q=None, reduction="mean", rng=None, what=""):
    """Every entry point of `kind` on (x, t, w, q) against torch; arguments left unchanged."""
    rng = rng or np.random.default_rng(0)
    dt = np.result_type(x, t)
    args = [a for a in (x, t, w, q) if a is not None]
    before = [a.copy() for a in args]
    go = rng.uniform(0.5, 2.0, size=x.shape).astype(dt) if reduction == "none" else 0.75
    loss, gi, gt, fl, fg = lo_calls(kind, x, t, w, q, reduction, go)
    e_loss, e_gi, e_gt = torch_calls(kind, x, t, w, q, reduction, go, dt)
    if reduction == "none":
        assert isinstance(loss, np.ndarray)
    else:
        assert isinstance(loss, np.floating) and loss.dtype == dt, (type(loss), what)
    assert_close(loss, e_loss, dt, what=f"{what} loss")
    assert_close(gi, e_gi, dt, what=f"{what} grad input")
    assert_close(gt, e_gt, dt, what=f"{what} grad target")
    # The fused call has grad_output = 1.
    _, e_fg, _ = torch_calls(kind, x, t, w, q, reduction, np.ones(x.shape) if reduction == "none" else 1.0, dt)
    assert_close(fl, e_loss, dt, what=f"{what} fused loss")
    assert_close(fg, e_fg, dt, what=f"{what} fused grad")
    for a, b in zip(args, before):
        np.testing.assert_array_equal(a, b, err_msg=f"{what}: an argument was modified")
    # out = input: the gradient overwrites the logits / probabilities.
    if x.dtype == dt and x.size:
        xc = x.copy(order="C")
        l2, g2 = LO[kind][2](xc, t, weight=w, reduction=reduction, **({"pos_weight": q} if kind == "logits" else {}),
                             out=xc)
        assert g2 is xc
        assert_close(xc, e_fg, dt, what=f"{what} fused out=input grad")
        assert_close(l2, e_loss, dt, what=f"{what} fused out=input loss")


# ----------------------------------------------------------------------------- data


def make_input(kind, shape, dt, rng, extremes=True):
    if kind == "logits":
        x = rng.standard_normal(shape) * 4
        if extremes and x.size >= 8:
            flat = x.reshape(-1)
            flat[:: max(1, x.size // 6)] = rng.choice([-40.0, -18.0, 17.0, 35.0, 0.0], size=flat[:: max(1, x.size // 6)].size)
    else:
        x = rng.uniform(0, 1, shape)
        if extremes and x.size >= 8:
            flat = x.reshape(-1)
            flat[:: max(1, x.size // 5)] = rng.choice([0.0, 1.0, 1e-30, 1 - 1e-7], size=flat[:: max(1, x.size // 5)].size)
    return np.asarray(x, dtype=dt)


def make_target(shape, dt, rng, hard):
    t = (rng.uniform(size=shape) < 0.5) if hard else rng.uniform(size=shape)
    return np.asarray(t, dtype=dt)


def weight_shapes(shape):
    """Weight shapes that broadcast to `shape` without enlarging it, each exercising a layout."""
    out = {"none": None, "scalar": ()}
    if len(shape) == 0:
        return out
    out["one"] = (1,)
    out["full"] = shape
    out["trailing"] = shape[-1:]
    if len(shape) >= 2:
        out["leading"] = shape[:1] + (1,) * (len(shape) - 1)
    if len(shape) >= 3:
        out["middle"] = (shape[1],) + (1,) * (len(shape) - 2)
        out["general"] = (shape[0], 1) + shape[2:]  # varies on both sides of a broadcast axis
    return out


def pos_weight_shapes(shape):
    out = {"none": None, "scalar": ()}
    if len(shape):
        out["classes"] = shape[-1:]
        out["full"] = shape
    return out


def make_weight(wshape, dt, rng):
    return None if wshape is None else np.asarray(rng.uniform(0.1, 2.0, size=wshape), dtype=dt)


def layout(a, how):
    """a (C-contiguous) presented as another memory layout with the same values."""
    if how == "contiguous":
        return a
    if how == "strided":  # every other element of a bigger array
        big = np.zeros(tuple(2 * s for s in a.shape), dtype=a.dtype)
        big[tuple(slice(None, None, 2) for _ in a.shape)] = a
        return big[tuple(slice(None, None, 2) for _ in a.shape)]
    if how == "reversed":
        rev = np.ascontiguousarray(a[tuple(slice(None, None, -1) for _ in a.shape)])
        return rev[tuple(slice(None, None, -1) for _ in a.shape)]
    if how == "fortran":
        return np.asfortranarray(a)
    raise ValueError(how)


SHAPES = {
    "0d": (),
    "1d": (37,),
    "2d": (6, 13),
    "4d": (2, 3, 4, 5),
    "empty": (0, 5),
}


# ----------------------------------------------------------------------------- the matrix


@pytest.mark.parametrize("dt", DTYPES, ids=dtype_id)
@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("shape_id", list(SHAPES))
@pytest.mark.parametrize("kind", KINDS)
def test_matrix_against_torch(kind, shape_id, reduction, dt, rng):
    """Every weight shape (and, for logits, every pos_weight shape), soft and hard targets."""
    shape = SHAPES[shape_id]
    for hard in (False, True):
        x = make_input(kind, shape, dt, rng)
        t = make_target(shape, dt, rng, hard)
        combos = [(wid, "none") for wid in weight_shapes(shape)]
        if kind == "logits":
            combos += [(wid, qid) for wid in ("none", "full") for qid in pos_weight_shapes(shape) if qid != "none"]
            if len(shape) >= 2:
                combos.append(("leading", "classes"))
        for wid, qid in combos:
            if wid not in weight_shapes(shape):
                continue
            w = make_weight(weight_shapes(shape)[wid], dt, rng)
            q = make_weight(pos_weight_shapes(shape)[qid], dt, rng)
            check_against_torch(kind, x, t, w, q, reduction, rng,
                                what=f"{kind} {shape_id} {reduction} hard={hard} weight={wid} pos_weight={qid}")


@pytest.mark.parametrize("how", ["strided", "reversed", "fortran"])
@pytest.mark.parametrize("kind", KINDS)
def test_layouts(kind, how, rng):
    """Non-contiguous and negatively strided input, target and weights, both dtypes."""
    for dt in DTYPES:
        shape = (5, 3, 7)
        x = layout(make_input(kind, shape, dt, rng), how)
        t = layout(make_target(shape, dt, rng, hard=False), how)
        w = layout(make_weight((3, 7), dt, rng), how)
        q = layout(make_weight((7,), dt, rng), how) if kind == "logits" else None
        for reduction in REDUCTIONS:
            check_against_torch(kind, x, t, w, q, reduction, rng, what=f"{kind} {how} {dt} {reduction}")


@pytest.mark.parametrize("kind", KINDS)
def test_sizes_around_vector_width(kind, rng):
    """Every tail length, with canaries around the gradient buffer (out) that must survive."""
    for dt in DTYPES:
        for n in list(range(1, 18)) + [31, 33, 63, 65]:
            x = make_input(kind, (n,), dt, rng, extremes=False)
            t = make_target((n,), dt, rng, hard=False)
            q = make_weight((n,), dt, rng) if kind == "logits" else None
            kw = {"pos_weight": q} if kind == "logits" else {}
            check_against_torch(kind, x, t, None, q, "sum", rng, what=f"{kind} n={n} {dt}")
            big = np.full(n + 2, 12345.0, dtype=dt)
            loss, g = LO[kind][2](x, t, reduction="none", out=big[1:-1], **kw)
            assert big[0] == 12345.0 and big[-1] == 12345.0, f"n={n}: wrote outside out"
            _, e_g, _ = torch_calls(kind, x, t, None, q, "none", np.ones(n), dt)
            assert_close(big[1:-1], e_g, dt)


@pytest.mark.parametrize("kind", KINDS)
def test_large_weight_layouts(kind, rng):
    """Several chunks and blocks: every way a broadcast weight is handed to the kernel (one
    value, a short tiled vector, a long vector read in place and crossing its period, a value
    per run of elements with runs longer and shorter than a block, expanded) against torch."""
    dt = F32
    shape = (3, 700, 37)  # 77700 elements: three chunks, many blocks
    x = make_input(kind, shape, dt, rng)
    t = make_target(shape, dt, rng, hard=True)
    shapes = [(), (37,), (700, 37), (3, 1, 1), (700, 1), (3, 700, 1), (3, 1, 37), shape]
    for wshape in shapes:
        w = make_weight(wshape, dt, rng)
        check_against_torch(kind, x, t, w, None, "none", rng, what=f"{kind} weight {wshape}")
        if kind == "logits":
            check_against_torch(kind, x, t, None, w, "mean", rng, what=f"{kind} pos_weight {wshape}")


def test_mixed_dtypes_promote(rng):
    """float32 with float64 computes in float64 (deviation 4 in _binary.py: torch raises for
    BCE and returns the target's dtype for BCE-with-logits); weights take the result's dtype."""
    for kind in KINDS:
        x32 = make_input(kind, (4, 6), F32, rng)
        t32 = make_target((4, 6), F32, rng, hard=False)
        for x, t in ((x32, t32.astype(F64)), (x32.astype(F64), t32)):
            for reduction in REDUCTIONS:
                go = np.ones(x.shape) if reduction == "none" else 1.0
                loss, gi, gt, fl, fg = lo_calls(kind, x, t, reduction=reduction, go=go)
                e_loss, e_gi, e_gt = torch_calls(kind, x, t, reduction=reduction, go=go, dtype=F64)
                for got, exp in ((loss, e_loss), (gi, e_gi), (gt, e_gt), (fl, e_loss), (fg, e_gi)):
                    assert_close(got, exp, F64)
        # A float64 weight does not promote a float32 computation.
        loss = LO[kind][0](x32, t32, weight=np.full(6, 0.5), reduction="none")
        assert loss.dtype == F32
        assert_close(loss, torch_calls(kind, x32, t32, np.full(6, 0.5, dtype=F32), reduction="none", go=np.ones((4, 6)))[0], F32)
    # torch itself: the deviation being pinned (its raising half in test_torch_raises).
    assert F.binary_cross_entropy_with_logits(torch.zeros(2, dtype=torch.float64), torch.zeros(2)).dtype == torch.float32


# A C++ exception thrown inside torch aborts the process when libasan is preloaded without
# libstdc++ (ASan cannot find the real __cxa_throw): the sanitizer run skips torch's raises.
_ASAN_WITHOUT_LIBSTDCXX = "libasan" in os.environ.get("LD_PRELOAD", "") and "libstdc++" not in os.environ.get("LD_PRELOAD", "")


@pytest.mark.skipif(_ASAN_WITHOUT_LIBSTDCXX, reason="torch's C++ exceptions abort under LD_PRELOAD=libasan alone")
def test_torch_raises():
    """What torch does where we promote (mixed dtypes) or raise ValueError (probabilities)."""
    with pytest.raises(RuntimeError):
        F.binary_cross_entropy(torch.full((2,), 0.5), torch.full((2,), 0.5, dtype=torch.float64))
    with pytest.raises(RuntimeError, match="between 0 and 1"):
        F.binary_cross_entropy(torch.tensor([1.5]), torch.tensor([0.5]))
    with pytest.raises(RuntimeError, match="between 0 and 1"):
        F.binary_cross_entropy(torch.tensor([0.5]), torch.tensor([1.5]))
    with pytest.raises(RuntimeError):  # a weight that would enlarge the output
        F.binary_cross_entropy_with_logits(torch.zeros(2, 3), torch.zeros(2, 3), weight=torch.ones(4, 2, 3), reduction="none")


def test_empty(rng):
    for kind in KINDS:
        for dt in DTYPES:
            x = np.zeros((0, 3), dtype=dt)
            t = np.zeros((0, 3), dtype=dt)
            w = np.ones(3, dtype=dt)
            mean = LO[kind][0](x, t, w)
            assert np.isnan(mean) and mean.dtype == dt
            s = LO[kind][0](x, t, w, reduction="sum")
            assert s == 0 and s.dtype == dt
            assert LO[kind][0](x, t, reduction="none").shape == (0, 3)
            loss, g = LO[kind][2](x, t, w, out=x)
            assert np.isnan(loss) and g.shape == (0, 3)
            for wrt in ("input", "target"):
                assert LO[kind][1](1.0, x, t, w, wrt=wrt).shape == (0, 3)
            assert np.isnan(torch_calls(kind, x, t, reduction="mean")[0])  # torch: nan too


def test_thread_count_does_not_change_results(rng):
    n = 300_001
    before = lo.get_num_threads()
    try:
        for kind in KINDS:
            x = make_input(kind, (n,), F32, rng)
            t = make_target((n,), F32, rng, hard=False)
            res = []
            for threads in (1, 2, 3):
                lo.set_num_threads(threads)
                loss, g = LO[kind][2](x, t, reduction="sum")
                res.append((loss, g))
            for loss, g in res[1:]:
                assert loss.tobytes() == res[0][0].tobytes()
                np.testing.assert_array_equal(g, res[0][1])
    finally:
        lo.set_num_threads(before)


def test_float32_sum_of_many_stays_accurate(rng):
    """The float32 loss sum accumulates in double: within a few ulp of the float64 sum."""
    n = 2_000_000
    x = (rng.standard_normal(n) * 3).astype(F32)
    t = (rng.uniform(size=n) < 0.5).astype(F32)
    got = lo.binary_cross_entropy_with_logits(x, t, reduction="sum")
    exact = float(np.sum(lo.binary_cross_entropy_with_logits(x.astype(F64), t.astype(F64), reduction="none")))
    assert max_ulp(np.float32(got), np.float64(exact)) <= ULP_F32_LONG_SUM


# ----------------------------------------------------------------------------- accuracy


def ref_logits_loss(x, t, q=1.0):
    """(1 - t) softplus(x) + q t softplus(-x) in float64 (logaddexp: ~1 ulp of float64)."""
    x = x.astype(F64)
    t = t.astype(F64)
    return (1 - t) * np.logaddexp(0, x) + q * t * np.logaddexp(0, -x)


class TestAccuracy:
    def test_logits_float32_loss_within_4ulp(self, rng):
        """Every element within 4 ulp, hard and soft targets, from -1e4 to 1e4; torch is not."""
        x = np.concatenate([
            np.linspace(-120, 120, 40001), -np.logspace(-8, 4, 3000), np.logspace(-8, 4, 3000),
            rng.standard_normal(20000) * 10,
        ]).astype(F32)
        for t in (np.zeros_like(x), np.ones_like(x), rng.uniform(size=x.shape).astype(F32)):
            for q in (None, np.float32(2.5)):
                got = lo.binary_cross_entropy_with_logits(x, t, reduction="none", pos_weight=None if q is None else np.asarray(q))
                exact = ref_logits_loss(x, t, 1.0 if q is None else float(q))
                assert max_ulp(got, exact) <= ULP_F32, worst(got, exact, x)

    def test_logits_very_negative_target_0(self):
        """The loss is exp(x) (to 4 ulp) where torch returns 0: all digits lost there."""
        x = np.array([-17.5, -20.0, -30.0, -50.0, -80.0, -87.0], dtype=F32)
        t = np.zeros_like(x)
        got = lo.binary_cross_entropy_with_logits(x, t, reduction="none")
        exact = np.log1p(np.exp(x.astype(F64)))
        assert max_ulp(got, exact) <= ULP_F32, worst(got, exact, x)
        assert np.all(got > 0)
        theirs = to_numpy(F.binary_cross_entropy_with_logits(to_torch(x), to_torch(t), reduction="none"))
        assert np.all(theirs == 0)  # what torch gives: the reason for this test

    def test_logits_float32_grad_within_4ulp_hard_targets(self, rng):
        x = np.concatenate([np.linspace(-100, 100, 20001), rng.standard_normal(5000) * 5]).astype(F32)
        x64 = x.astype(F64)
        for tv in (0.0, 1.0):
            t = np.full_like(x, tv)
            _, g = lo.binary_cross_entropy_with_logits_value_and_grad(x, t, reduction="sum")
            exact = 1 / (1 + np.exp(-x64)) - tv if tv == 0 else -1 / (1 + np.exp(x64))
            assert max_ulp(g, exact) <= ULP_F32, worst(g, exact, x)

    def test_logits_float64_within_4ulp_mpmath(self, rng):
        mpmath.mp.prec = 120
        x = np.concatenate([np.linspace(-750, 750, 151), rng.standard_normal(100) * 20, [-1e4, 1e4, -1e-12, 1e-300]])
        for tv in (0.0, 1.0, 0.3):
            got = lo.binary_cross_entropy_with_logits(x, np.full_like(x, tv), reduction="none")
            t = mpmath.mpf(tv)
            exact = [(1 - t) * mpmath.log1p(mpmath.exp(mpmath.mpf(v))) + t * mpmath.log1p(mpmath.exp(-mpmath.mpf(v))) for v in x]
            assert max_ulp(got, exact) <= ULP_F64, worst(got, exact, x)

    def test_probs_float32_loss_within_4ulp(self, rng):
        p = np.concatenate([
            np.linspace(0, 1, 20001), np.logspace(-43, -1, 2000), 1 - np.logspace(-7.2, -1, 2000),
            rng.uniform(size=10000),
        ]).astype(F32)
        p = np.clip(p, 0, 1)
        p64 = p.astype(F64)
        with np.errstate(divide="ignore"):
            lp = np.maximum(np.log(p64), -100)
            l1p = np.maximum(np.log1p(-p64), -100)
        for t in (np.zeros_like(p), np.ones_like(p), rng.uniform(size=p.shape).astype(F32)):
            got = lo.binary_cross_entropy(p, t, reduction="none")
            t64 = t.astype(F64)
            exact = -(t64 * lp + (1 - t64) * l1p)
            assert max_ulp(got, exact) <= ULP_F32, worst(got, exact, p)

    def test_probs_float64_within_4ulp_mpmath(self, rng):
        mpmath.mp.prec = 120
        p = np.concatenate([rng.uniform(size=100), np.logspace(-300, -1, 40), 1 - np.logspace(-15, -1, 30)])
        for tv in (0.0, 1.0, 0.7):
            got = lo.binary_cross_entropy(p, np.full_like(p, tv), reduction="none")
            t = mpmath.mpf(tv)
            exact = [-(t * max(mpmath.log(mpmath.mpf(v)), -100) + (1 - t) * max(mpmath.log1p(-mpmath.mpf(v)), -100)) for v in p]
            assert max_ulp(got, exact) <= ULP_F64, worst(got, exact, p)

    def test_extreme_logits_match_torch(self, rng):
        """|x| up to 1e4 and 1e30 with soft and hard targets, weights and pos_weight."""
        for dt in DTYPES:
            x = np.array([-1e30, -1e4, -3e3, -100, -30, -1e-20, 0, 1e-20, 30, 100, 3e3, 1e4, 1e30], dtype=dt)
            for t in (np.zeros_like(x), np.ones_like(x), np.linspace(0, 1, x.size).astype(dt)):
                q = np.asarray(rng.uniform(0.2, 3, size=x.size), dtype=dt)
                for reduction in REDUCTIONS:
                    check_against_torch("logits", x, t, q[::-1].copy(), q, reduction, rng, what=f"extreme {dt}")


# ----------------------------------------------------------------------------- deviations


class TestDeviations:
    """Where we differ from torch on purpose (listed at the top of _binary.py): ours is the
    mathematical limit, and torch's value is asserted too so the list stays true."""

    def torch_logits(self, x, t, w=None, q=None, wrt=None):
        tx, tt = to_torch(x, True), to_torch(t, True)
        y = F.binary_cross_entropy_with_logits(tx, tt, None if w is None else to_torch(w), reduction="none",
                                               pos_weight=None if q is None else to_torch(q))
        y.backward(torch.ones_like(y))
        return to_numpy(y), to_numpy(tx.grad), to_numpy(tt.grad)

    @pytest.mark.parametrize("dt", DTYPES, ids=dtype_id)
    def test_minus_inf_logit(self, dt):
        x = np.full(4, -INF, dtype=dt)
        t = np.array([0, 0.3, 1, 1], dtype=dt)
        q = np.array([1, 1, 1, 0], dtype=dt)
        loss = lo.binary_cross_entropy_with_logits(x, t, reduction="none", pos_weight=q)
        np.testing.assert_array_equal(loss, [0, INF, INF, 0])  # +inf where q*t > 0, else 0
        np.testing.assert_array_equal(lo.binary_cross_entropy_with_logits(x, t, reduction="none"), [0, INF, INF, INF])
        theirs, t_gi, _ = self.torch_logits(x, t, q=q)
        assert np.all(np.isnan(theirs))
        # The input gradient is finite and agrees: (1 - t) sigmoid(-inf) - q t sigmoid(inf) = -q t.
        gi = lo.binary_cross_entropy_with_logits_backward(np.ones(4, dt), x, t, reduction="none", pos_weight=q)
        np.testing.assert_array_equal(gi, -q * t)
        assert_close(gi, t_gi, dt)

    @pytest.mark.parametrize("dt", DTYPES, ids=dtype_id)
    def test_plus_inf_logit(self, dt):
        x = np.full(3, INF, dtype=dt)
        t = np.array([1, 0, 0.5], dtype=dt)
        loss = lo.binary_cross_entropy_with_logits(x, t, reduction="none")
        np.testing.assert_array_equal(loss, [0, INF, INF])
        theirs, t_gi, _ = self.torch_logits(x, t)
        assert np.isnan(theirs[0]) and np.all(theirs[1:] == INF)
        _, gi = lo.binary_cross_entropy_with_logits_value_and_grad(x, t, reduction="none")
        np.testing.assert_array_equal(gi, [0, 1, 0.5])
        assert_close(gi, t_gi, dt)
        assert lo.binary_cross_entropy_with_logits(x[:1], t[:1], reduction="sum") == 0

    def test_zero_weight_at_infinite_loss(self):
        x = np.array([INF, -INF, 2.0])
        t = np.array([0.0, 1.0, 0.0])
        w = np.array([0.0, 0.0, 0.0])
        np.testing.assert_array_equal(lo.binary_cross_entropy_with_logits(x, t, w, reduction="none"), [0, 0, 0])
        theirs, _, _ = self.torch_logits(x, t, w)
        assert np.isnan(theirs[0]) and np.isnan(theirs[1])
        # Target gradients: -x w and -logit(p) w.
        gt = lo.binary_cross_entropy_with_logits_backward(np.ones(3), x, t, w, reduction="none", wrt="target")
        np.testing.assert_array_equal(gt, [0, 0, 0])
        p = np.array([0.0, 1.0, 0.5])
        gt = lo.binary_cross_entropy_backward(np.ones(3), p, t, w, reduction="none", wrt="target")
        np.testing.assert_array_equal(gt, [0, 0, 0])
        tp, tt = to_torch(p, True), to_torch(t, True)
        F.binary_cross_entropy(tp, tt, to_torch(w), reduction="none").sum().backward()
        assert np.isnan(to_numpy(tt.grad)[0]) and np.isnan(to_numpy(tt.grad)[1])
        # With a nonzero weight the infinite target gradients are torch's.
        gt = lo.binary_cross_entropy_backward(np.ones(3), p, t, reduction="none", wrt="target")
        np.testing.assert_array_equal(gt, [INF, -INF, 0])

    def test_zero_pos_weight_target_grad_at_minus_inf(self):
        x = np.array([-INF, -INF])
        t = np.array([1.0, 0.5])
        q = np.array([0.0, 2.0])
        gt = lo.binary_cross_entropy_with_logits_backward(np.ones(2), x, t, reduction="none", pos_weight=q, wrt="target")
        np.testing.assert_array_equal(gt, [0, INF])  # q softplus(-x) - softplus(x)
        _, _, theirs = self.torch_logits(x, t, q=q)
        assert np.isnan(theirs[0]) and theirs[1] == INF

    @pytest.mark.parametrize("dt", DTYPES, ids=dtype_id)
    def test_nan_as_torch(self, dt, rng):
        """Not a deviation: NaN logits or targets give NaN where torch does (also under a zero
        weight and in the sum), and nothing else is disturbed."""
        x = np.array([np.nan, 1.0, np.nan, -3.0, 2.0], dtype=dt)
        t = np.array([0.5, np.nan, 1.0, 0.0, 1.0], dtype=dt)
        q = np.array([2.0, 0.5, 1.0, 3.0, 1.5], dtype=dt)
        for reduction in REDUCTIONS:
            check_against_torch("logits", x, t, None, q, reduction, rng, what="nan")
            check_against_torch("logits", x, t, None, None, reduction, rng, what="nan")
        loss = lo.binary_cross_entropy_with_logits(x, t, np.zeros(5, dtype=dt), reduction="none")
        assert np.isnan(loss[0]) and np.isnan(loss[1]) and np.isnan(loss[2]) and np.all(loss[3:] == 0)

    def test_probabilities_at_0_and_1_as_torch(self):
        """Not a deviation: torch's clamps at the ends of [0, 1] are reproduced exactly."""
        p = np.array([0.0, 0.0, 1.0, 1.0, 0.0], dtype=F32)
        t = np.array([0.0, 1.0, 0.0, 1.0, 0.25], dtype=F32)
        np.testing.assert_array_equal(lo.binary_cross_entropy(p, t, reduction="none"), [0, 100, 100, 0, 25])
        _, gi = lo.binary_cross_entropy_value_and_grad(p, t, reduction="none")
        np.testing.assert_array_equal(gi, np.array([0, -1e12, 1e12, 0, -0.25e12], dtype=F32))
        check_against_torch("probs", p, t, reduction="none")


# ----------------------------------------------------------------------------- seed equivalences


class TestEquivalences:
    def test_two_class_cross_entropy_is_bce_with_logits_on_difference(self, rng):
        """CE over logits (x0, x1) with class y equals BCE-with-logits on x1 - x0 with target y,
        element by element, and the CE gradients are -/+ the BCE gradient; soft targets too."""
        n = 2000
        x = np.concatenate([rng.standard_normal((n, 2)) * 5, [[0, 60], [60, 0], [-30, 30], [1e3, -1e3]]])
        y = (rng.uniform(size=x.shape[0]) < 0.5).astype(np.int64)
        z = x[:, 1] - x[:, 0]
        tx = to_torch(x, True)
        ce = F.cross_entropy(tx, torch.from_numpy(y), reduction="none")
        ce.sum().backward()
        bce = lo.binary_cross_entropy_with_logits(z, y.astype(F64), reduction="none")
        assert_close(bce, to_numpy(ce), F64)
        _, g = lo.binary_cross_entropy_with_logits_value_and_grad(z, y.astype(F64), reduction="none")
        ce_grad = to_numpy(tx.grad)
        assert_close(g, ce_grad[:, 1], F64)
        assert_close(-g, ce_grad[:, 0], F64)
        # Probability targets (1 - t, t).
        t = rng.uniform(size=x.shape[0])
        ce_soft = to_numpy(F.cross_entropy(to_torch(x), to_torch(np.stack([1 - t, t], axis=1)), reduction="mean"))
        assert_close(lo.binary_cross_entropy_with_logits(z, t), ce_soft, F64)

    def test_bce_on_softmax_column_is_cross_entropy(self, rng):
        x = rng.standard_normal((500, 2)) * 3
        y = (rng.uniform(size=500) < 0.5).astype(np.int64)
        p1 = lo.softmax(x, axis=-1)[:, 1]
        ce = to_numpy(F.cross_entropy(to_torch(x), torch.from_numpy(y)))
        assert_close(lo.binary_cross_entropy(p1, y.astype(F64)), ce, F64)
        ce_none = to_numpy(F.cross_entropy(to_torch(x), torch.from_numpy(y), reduction="none"))
        assert_close(lo.binary_cross_entropy(p1, y.astype(F64), reduction="none"), ce_none, F64, rtol=COMPOSED_F64_RTOL)

    def test_sigmoid_then_bce_loses_what_logits_keep(self):
        """float32: BCE(sigmoid(x)) loses digits from x ~ 10 and all of them from x ~ 17 (the log
        clamp answers 100), where BCE-with-logits stays within 4 ulp of the exact value."""
        x = np.array([10.0, 16.0, 17.0, 20.0, -120.0, -20.0], dtype=F32)
        t = np.array([0.0, 0.0, 0.0, 0.0, 1.0, 0.0], dtype=F32)
        exact = ref_logits_loss(x, t)
        logits = lo.binary_cross_entropy_with_logits(x, t, reduction="none")
        assert max_ulp(logits, exact) <= ULP_F32, worst(logits, exact, x)
        via_sigmoid = lo.binary_cross_entropy(lo.sigmoid(x), t, reduction="none").astype(F64)
        rel = np.abs(via_sigmoid - exact) / exact
        # x = 10: 1 - sigmoid(10) = 4.5e-5 keeps ~11 bits: 4.6e-5 relative error (~400 ulp).
        assert rel[0] > 1e-5
        # x = 16: 1 - sigmoid(16) is 2 ulp of 1: 15.942 instead of 16.000 (0.36%).
        assert rel[1] > 1e-3
        # x = 17, 20: sigmoid rounds to 1, log(1 - 1) is clamped: 100 instead of 17 and 20.
        assert via_sigmoid[2] == 100 and via_sigmoid[3] == 100
        # x = -120, t = 1: sigmoid underflows to 0, log(0) is clamped: 100 instead of 120.
        assert via_sigmoid[4] == 100 and abs(exact[4] - 120) < 1e-6
        # x = -20, t = 0: here both are fine (sigmoid(-20) ~ 2e-9 is representable).
        assert rel[5] < 1e-6


# ----------------------------------------------------------------------------- bad arguments


class TestBadArguments:
    @pytest.mark.parametrize("kind", KINDS)
    def test_shape_mismatch(self, kind):
        x = np.full((3, 4), 0.5)
        for fn in self.all_calls(kind):
            with pytest.raises(ValueError, match=r"\(3, 4\).*\(4, 3\)|\(4, 3\).*\(3, 4\)"):
                fn(x, np.full((4, 3), 0.5))
            with pytest.raises(ValueError, match="target"):
                fn(x, np.full((12,), 0.5))

    def all_calls(self, kind, **kw):
        fwd, bwd, fused = LO[kind]
        return [
            lambda x, t, **k: fwd(x, t, **kw, **k),
            lambda x, t, **k: bwd(1.0, x, t, **kw, **k),
            lambda x, t, **k: bwd(1.0, x, t, wrt="target", **kw, **k),
            lambda x, t, **k: fused(x, t, **kw, **k),
        ]

    @pytest.mark.parametrize("kind", KINDS)
    def test_unbroadcastable_weights(self, kind):
        x = np.full((3, 4), 0.5)
        names = ("weight", "pos_weight") if kind == "logits" else ("weight",)
        for name in names:
            for bad in ((3,), (2, 4), (5, 3, 4), (1, 3, 4)):
                for fn in self.all_calls(kind):
                    with pytest.raises(ValueError, match=rf"{name} of shape \({bad[0]},.*\(3, 4\)"):
                        fn(x, x, **{name: np.ones(bad)})
            with pytest.raises(TypeError, match=name):
                LO[kind][0](x, x, **{name: np.ones(4, dtype=np.int64)})
            with pytest.raises(TypeError, match=name):
                LO[kind][0](x, x, **{name: [1.0, 1.0, 1.0, 1.0]})

    def test_pos_weight_not_taken_by_bce(self):
        with pytest.raises(TypeError):
            lo.binary_cross_entropy(np.full(2, 0.5), np.full(2, 0.5), pos_weight=np.ones(2))

    @pytest.mark.parametrize("bad", [1.5, -0.1, np.nan, INF])
    def test_probabilities_out_of_range(self, bad):
        for dt in DTYPES:
            x = np.full(37, 0.5, dtype=dt)
            xb = x.copy()
            xb[30] = bad
            for fn in self.all_calls("probs"):
                with pytest.raises(ValueError, match="input"):
                    fn(xb, x)
                with pytest.raises(ValueError, match="target"):
                    fn(x, xb)
            # out=input: rejected before anything is written.
            before = xb.copy()
            with pytest.raises(ValueError, match="input"):
                lo.binary_cross_entropy_value_and_grad(xb, x, out=xb)
            np.testing.assert_array_equal(xb, before)
            xg = x.copy()
            with pytest.raises(ValueError, match="target"):
                lo.binary_cross_entropy_value_and_grad(xg, xb, out=xg)
            np.testing.assert_array_equal(xg, x)

    def test_logits_take_any_target(self):
        """BCE-with-logits does not check targets (torch neither)."""
        x = np.array([0.5, -2.0])
        t = np.array([1.5, -0.5])
        assert_close(lo.binary_cross_entropy_with_logits(x, t, reduction="none"),
                     torch_calls("logits", x, t, reduction="none", go=np.ones(2))[0], F64)

    @pytest.mark.parametrize("kind", KINDS)
    def test_dtypes(self, kind):
        x = np.full(3, 0.5)
        for fn in self.all_calls(kind):
            for bad in (np.array([1, 0, 1]), np.array([True, False, True]), np.array([1, 0, 1], dtype=np.complex128)):
                with pytest.raises(TypeError, match="target"):
                    fn(x, bad)
                with pytest.raises(TypeError, match="input"):
                    fn(bad, x)
            with pytest.raises(TypeError, match="input"):
                fn([0.5, 0.5, 0.5], x)
            with pytest.raises(TypeError, match="target"):
                fn(x, [0.5, 0.5, 0.5])

    @pytest.mark.parametrize("kind", KINDS)
    def test_options(self, kind):
        x = np.full(3, 0.5)
        fwd, bwd, fused = LO[kind]
        for bad in ("avg", None, "MEAN"):
            for fn in self.all_calls(kind):
                with pytest.raises(ValueError, match="reduction"):
                    fn(x, x, reduction=bad)
        with pytest.raises(ValueError, match="wrt"):
            bwd(1.0, x, x, wrt="weight")
        with pytest.raises(ValueError, match="grad_output"):
            bwd(np.ones(2), x, x)  # mean: a scalar
        with pytest.raises(ValueError, match="grad_output"):
            bwd(np.ones(2), x, x, reduction="none")
        with pytest.raises(TypeError, match="grad_output"):
            bwd("1", x, x)
        # grad_output for "none" may be a Python float only for a 0-d input... as an array it must match.
        assert bwd(np.float64(2.0), np.full((), 0.5), np.ones(()), reduction="none").shape == ()

    @pytest.mark.parametrize("kind", KINDS)
    def test_out(self, kind):
        fused = LO[kind][2]
        x = np.full((2, 3), 0.5)
        t = np.full((2, 3), 0.25)
        with pytest.raises(TypeError, match="out"):
            fused(x, t, out=np.zeros((2, 3), dtype=F32))
        with pytest.raises(TypeError, match="out"):
            fused(x, t, out=[0.0] * 6)
        with pytest.raises(ValueError, match="out"):
            fused(x, t, out=np.zeros((3, 2)))
        with pytest.raises(ValueError, match="out"):
            fused(x, t, out=np.zeros((3, 2)).T)
        ro = np.zeros((2, 3))
        ro.flags.writeable = False
        with pytest.raises(ValueError, match="out"):
            fused(x, t, out=ro)
        tc = t.copy()
        with pytest.raises(ValueError, match="out"):
            fused(x, tc, out=tc)
        np.testing.assert_array_equal(tc, t)
        w = np.ones((2, 3))
        with pytest.raises(ValueError, match="out"):
            fused(x, t, weight=w, out=w)
        big = np.full(7, 0.5)
        with pytest.raises(ValueError, match="out"):
            fused(big[:6].reshape(2, 3), t, out=big[1:].reshape(2, 3))
        # float32 input and float64 target: the result is float64, so input cannot be out.
        x32 = x.astype(F32)
        with pytest.raises(TypeError, match="out"):
            fused(x32, t, out=x32)
        # A read-only input is fine (never written) and so is a read-only target.
        xr, tr = x.copy(), t.copy()
        xr.flags.writeable = tr.flags.writeable = False
        fused(xr, tr)
