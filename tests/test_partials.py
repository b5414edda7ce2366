"""Mergeable partial results (lo.loss_partials, lo.loss_divisor, lo.combine_partials): a batch cut
into uneven blocks gives, from its blocks' partials, the in-memory call's "mean" and "sum" to
rounding and its gradient bit for bit, for every loss and option; the divisor never reads the
input's values; bad calls raise."""

from __future__ import annotations

import numpy as np
import pytest

import logitops as lo

CUTS = (0, 1, 9, 10, 31, 37)  # uneven blocks, one of a single sample
F32, F64 = np.dtype(np.float32), np.dtype(np.float64)
# Block sums added in another order than the kernel's: the float64 totals differ in rounding only.
RTOL = {F32: 2 * 2.0**-24, F64: 1e-14}
# A gradient element is one product by 1 / divisor away from the in-memory one: 2 ulp.
GRAD_RTOL = {F32: 2 * 2.0**-23, F64: 2 * 2.0**-52}


def _cases(rng, dtype):
    """(loss name, forward kwargs) for every option the partials must carry."""
    n, c = CUTS[-1], 5
    x = rng.standard_normal((n, c)).astype(dtype)
    x3 = rng.standard_normal((n, c, 3)).astype(dtype)
    y = rng.integers(0, c, n)
    y[::4] = 2  # ignored below with ignore_index=2
    w = rng.uniform(0.1, 3.0, c).astype(dtype)
    probs = rng.dirichlet(np.ones(c), n).astype(dtype)
    p = rng.uniform(0.01, 0.99, (n, c)).astype(dtype)
    t = rng.uniform(0, 1, (n, c)).astype(dtype)
    yield "cross_entropy", {"input": x, "target": y}
    yield "cross_entropy", {"input": x, "target": y, "weight": w, "ignore_index": 2, "label_smoothing": 0.2}
    yield "cross_entropy", {"input": x3, "target": rng.integers(0, c, (n, 3)), "weight": w}
    yield "cross_entropy", {"input": x, "target": probs, "weight": w, "label_smoothing": 0.1}
    yield "nll_loss", {"input": x, "target": y, "weight": w, "ignore_index": 2}
    yield "binary_cross_entropy", {"input": p, "target": t, "weight": rng.uniform(0.5, 2, (n, 1)).astype(dtype)}
    yield "binary_cross_entropy_with_logits", {"input": x, "target": t, "weight": w,
                                               "pos_weight": rng.uniform(0.5, 3, c).astype(dtype)}


def _blocks(kw, a, b):
    """kw's per-sample arrays cut to samples [a, b) (weights of a batch axis too)."""
    n = kw["input"].shape[0]
    return {k: (v[a:b] if isinstance(v, np.ndarray) and v.ndim and v.shape[0] == n and k != "weight" or
                (k == "weight" and isinstance(v, np.ndarray) and v.ndim == 2) else v) for k, v in kw.items()}


def _case_ids():
    return [f"{name}-{i}" for i, (name, _) in enumerate(_cases(np.random.default_rng(0), np.float64))]


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["f32", "f64"])
@pytest.mark.parametrize("case", range(7), ids=_case_ids())
def test_blocks_combine_to_the_whole(case, dtype, rng):
    name, kw = list(_cases(rng, dtype))[case]
    fwd, vg = getattr(lo, name), getattr(lo, name + "_value_and_grad")
    blocks = [_blocks(kw, a, b) for a, b in zip(CUTS, CUTS[1:])]
    parts = [lo.loss_partials(fwd, **blk) for blk in blocks]
    assert all(isinstance(p, lo.LossPartials) and type(p.total) is float for p in parts)
    dt = np.dtype(dtype)
    for reduction in ("mean", "sum"):
        whole = fwd(**kw, reduction=reduction)
        ours = lo.combine_partials(parts, reduction, dt)
        assert ours.dtype == whole.dtype
        np.testing.assert_allclose(ours, whole, rtol=RTOL[dt], atol=0)

    # The divisor from the targets alone (a zero-memory stand-in input), block by block and whole.
    stand_in = np.broadcast_to(np.zeros((), dt), kw["input"].shape)
    divisor = lo.loss_divisor(name, **{**kw, "input": stand_in})
    np.testing.assert_allclose(sum(p.divisor for p in parts), divisor, rtol=1e-15)
    np.testing.assert_allclose([lo.loss_divisor(fwd, **blk) for blk in blocks], [p.divisor for p in parts], rtol=1e-15)

    # The gradient of the global mean, block by block with grad_scale = 1 / divisor: the in-memory
    # gradient to rounding (the kernel sums the weights in sample order, the blocks' divisors add
    # up in another: a sum of n weights may differ by n ulp), and the loss from the same pass.
    loss, grad = vg(**kw)
    pieces = [lo.loss_partials(vg, **blk, grad_scale=1 / divisor) for blk in blocks]
    np.testing.assert_allclose(np.concatenate([g for _, g in pieces]), grad,
                               rtol=max(GRAD_RTOL[dt], (CUTS[-1] + 2) * 2.0**-52), atol=0)
    np.testing.assert_allclose(lo.combine_partials([p for p, _ in pieces], "mean", dt), loss, rtol=RTOL[dt])
    # grad_scale defaults to 1: the gradient of the sum; `out` receives it.
    out = np.empty_like(blocks[1]["input"])
    p1, g1 = lo.loss_partials(vg, **blocks[1], out=out)
    assert g1 is out
    np.testing.assert_array_equal(g1, getattr(lo, name + "_value_and_grad")(**blocks[1], reduction="sum")[1])


def test_mean_of_block_means_is_not_the_mean(rng):
    """Why partials: with uneven blocks and class weights the mean of the blocks' means is off."""
    name, kw = list(_cases(rng, np.float64))[1]
    blocks = [_blocks(kw, a, b) for a, b in ((0, 9), (9, 31), (31, 37))]  # (a block of CUTS is all ignored: nan)
    whole = lo.cross_entropy(**kw)
    naive = np.mean([lo.cross_entropy(**blk) for blk in blocks])
    assert abs(naive - whole) > 1e-2 * abs(whole)
    np.testing.assert_allclose(lo.combine_partials(lo.loss_partials(name, **blk) for blk in blocks), whole, rtol=1e-14)


def test_empty_and_all_ignored_blocks(rng):
    x = rng.standard_normal((4, 3))
    y = np.array([1, -100, -100, 0])
    parts = [lo.loss_partials(lo.cross_entropy, x[a:b], y[a:b]) for a, b in ((0, 0), (1, 3), (0, 4))]
    assert parts[0] == (0.0, 0.0) and parts[1] == (0.0, 0.0)
    np.testing.assert_allclose(lo.combine_partials(parts[:2] + [parts[2]], dtype=np.float64), lo.cross_entropy(x, y))
    assert np.isnan(lo.combine_partials(parts[:2], "mean", np.float64))
    assert lo.combine_partials(parts[:2], "sum", np.float64) == 0.0
    assert np.isnan(lo.combine_partials([(np.inf, 1.0), (-np.inf, 1.0)], "mean", np.float64))


def test_divisor_reads_no_logits():
    """A stand-in input of 2**40 elements costs nothing: only its shape is read."""
    huge = np.broadcast_to(np.float32(0), (2**20, 2**20))
    y = np.zeros(2**20, np.int64)
    y[::2] = -100
    assert lo.loss_divisor(lo.cross_entropy, huge, y) == 2**19
    assert lo.loss_divisor(lo.binary_cross_entropy_with_logits, huge, huge) == 2.0**40


def test_bad_calls(rng):
    x = rng.standard_normal((4, 3))
    y = np.array([0, 1, 2, 3])
    with pytest.raises(IndexError, match="Target 3 is out of bounds"):
        lo.loss_partials(lo.cross_entropy, x, y)
    with pytest.raises(IndexError, match="Target 3 is out of bounds"):
        lo.loss_divisor(lo.nll_loss, x, y)
    with pytest.raises(TypeError, match="reduction is not an argument"):
        lo.loss_partials(lo.cross_entropy, x, y % 3, reduction="sum")
    with pytest.raises(TypeError, match="size_average is not an argument"):
        lo.loss_partials(lo.nll_loss, x, y % 3, size_average=False)
    with pytest.raises(TypeError, match="grad_scale and out need cross_entropy_value_and_grad"):
        lo.loss_partials(lo.cross_entropy, x, y % 3, grad_scale=0.5)
    with pytest.raises(TypeError, match="loss must be one of"):
        lo.loss_partials(lo.softmax, x, y)
    with pytest.raises(TypeError, match="grad_scale must be a float"):
        lo.loss_partials(lo.cross_entropy_value_and_grad, x, y % 3, grad_scale="1")
    with pytest.raises(TypeError, match="unexpected keyword"):
        lo.loss_partials(lo.cross_entropy, x, y % 3, bogus=1)
    with pytest.raises(ValueError, match="label_smoothing must be between"):
        lo.loss_divisor(lo.cross_entropy, x, y % 3, label_smoothing=2.0)
    with pytest.raises(ValueError, match="weight has shape"):
        lo.loss_divisor(lo.cross_entropy, x, y % 3, weight=np.ones(4))
    with pytest.raises(ValueError, match="target has shape"):
        lo.loss_divisor(lo.binary_cross_entropy, x, x[:2])
    with pytest.raises(ValueError, match="does not broadcast"):
        lo.loss_divisor(lo.binary_cross_entropy_with_logits, x, x, pos_weight=np.ones(4))
    with pytest.raises(ValueError, match="reduction must be 'mean' or 'sum'"):
        lo.combine_partials([(1.0, 1.0)], "none")
    with pytest.raises(TypeError, match="dtype must be float32 or float64"):
        lo.combine_partials([(1.0, 1.0)], "mean", np.int32)
