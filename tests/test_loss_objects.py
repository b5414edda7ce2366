"""The loss objects (SPEC.md, Loss objects): lo.BCELoss, lo.BCEWithLogitsLoss, lo.CrossEntropyLoss,
lo.NLLLoss, lo.KLDivLoss, lo.SoftMarginLoss, lo.MultiLabelSoftMarginLoss against torch.nn's
modules, lo.SigmoidFocalLoss against torchvision's function in a module (TorchSigmoidFocalLoss
below), for every constructor option (forward, backward, fused, attributes, the legacy arguments'
warning at construction), their repr, and the seeds' equivalences written with them.
"""

from __future__ import annotations

import inspect
import itertools
import warnings

import numpy as np
import pytest
import torch
import torch.nn as nn
from _api import LOSS_CLASSES
from _helpers import assert_close
from _oracle import torchvision_focal

import logitops as lo

CLASSES = tuple(n for n in LOSS_CLASSES if hasattr(nn, n))  # torch.nn's own (others: their family's tests)
REDUCTIONS = ("mean", "sum", "none")


class TorchSigmoidFocalLoss(nn.Module):
    """torchvision has the function only: the module lo.SigmoidFocalLoss stands for."""

    def __init__(self, alpha: float = 0.25, gamma: float = 2.0, reduction: str = "none") -> None:
        super().__init__()
        self.alpha, self.gamma, self.reduction = alpha, gamma, reduction

    def forward(self, input, target):
        return torchvision_focal(input, target, self.alpha, self.gamma, self.reduction)


def torch_class(name):
    return TorchSigmoidFocalLoss if name == "SigmoidFocalLoss" else getattr(nn, name)


def takes(name, option):
    return option in inspect.signature(getattr(lo, name)).parameters


@pytest.mark.parametrize("name", CLASSES)
def test_constructor_is_torchs(name):
    ours = inspect.signature(getattr(lo, name)).parameters
    theirs = inspect.signature(torch_class(name).__init__).parameters
    assert [(p.name, p.default, p.kind) for p in ours.values()] == \
           [(p.name, p.default, p.kind) for p in theirs.values()][1:]  # torch's without self
    for method, params in (("__call__", ["input", "target"]), ("backward", ["grad_output", "input", "target", "wrt"]),
                           ("value_and_grad", ["input", "target", "out"])):
        assert list(inspect.signature(getattr(getattr(lo, name), method)).parameters)[1:] == params


# ----------------------------------------------------------------------------- against torch.nn


def data(name, rng, dtype=np.float64, shape=(6, 4)):
    """(input, target) valid for the loss object `name`."""
    if name in ("CrossEntropyLoss", "NLLLoss"):
        x = rng.standard_normal(shape)
        if name == "NLLLoss":
            x = x - np.log(np.exp(x).sum(1, keepdims=True))
        y = rng.integers(0, shape[1], shape[:1] + shape[2:])
        y.reshape(-1)[:2] = [2, 1]  # so that ignore_index=2 ignores something
        return x.astype(dtype), y
    if name == "KLDivLoss":  # log-probabilities against probabilities
        x = rng.standard_normal(shape)
        p = rng.uniform(0.01, 1, shape)
        return (x - np.log(np.exp(x).sum(1, keepdims=True))).astype(dtype), (p / p.sum(1, keepdims=True)).astype(dtype)
    if name == "SoftMarginLoss":
        return (rng.standard_normal(shape) * 2).astype(dtype), rng.choice([-1.0, 1.0], shape).astype(dtype)
    x = rng.uniform(0.05, 0.95, shape) if name == "BCELoss" else rng.standard_normal(shape) * 2
    return x.astype(dtype), rng.uniform(0, 1, shape).astype(dtype)


def option_sets(name, rng, dtype=np.float64):
    """Every constructor option alone and a few together, as keyword dicts of NumPy values."""
    w = rng.uniform(0.2, 2.0, 4).astype(dtype)
    sets = [{}] + [{"reduction": r} for r in REDUCTIONS]
    if name == "SigmoidFocalLoss":  # no weight, no legacy arguments
        return sets + [{"alpha": a, "gamma": g, "reduction": r} for a, g, r in
                       ((-1.0, 2.0, "sum"), (0.0, 1.0, "mean"), (1.0, 3.0, "none"), (0.5, 0.0, "sum"))]
    if takes(name, "weight"):
        sets += [{"weight": w}, {"weight": w, "reduction": "sum"}]
    sets += [{"size_average": sa, "reduce": rd} for sa, rd in itertools.product((None, True, False), repeat=2)
             if (sa, rd) != (None, None)]
    sets += [{"size_average": False, "reduction": "none"}, {"reduce": True, "reduction": "none"}]
    if name == "KLDivLoss":
        sets += [{"reduction": "batchmean"}, {"log_target": True}] + [{"log_target": True, "reduction": r}
                                                                      for r in (*REDUCTIONS, "batchmean")]
    if name in ("CrossEntropyLoss", "NLLLoss"):
        sets += [{"ignore_index": 2}] + [{"ignore_index": 2, "weight": w, "reduction": r} for r in REDUCTIONS]
    if name == "CrossEntropyLoss":
        sets += [{"label_smoothing": 0.2}, {"label_smoothing": 1.0, "reduction": "sum"}]
        sets += [{"label_smoothing": 0.1, "weight": w, "ignore_index": 2, "reduction": r} for r in REDUCTIONS]
    if name == "BCEWithLogitsLoss":
        q = rng.uniform(0.5, 3.0, 4).astype(dtype)
        sets += [{"pos_weight": q}] + [{"pos_weight": q, "weight": w, "reduction": r} for r in REDUCTIONS]
    return sets


def construct_both(name, opts):
    """(ours, torch's, [warnings of ours], [warnings of torch's]) built from the same options."""
    tops = {k: torch.from_numpy(v) if isinstance(v, np.ndarray) else v for k, v in opts.items()}
    built = []
    for factory, kw in ((getattr(lo, name), opts), (torch_class(name), tops)):
        with warnings.catch_warnings(record=True) as ws:
            warnings.simplefilter("always")
            obj = factory(**kw)
        built.append((obj, [(w.category, str(w.message), w.filename) for w in ws]))
    (ours, ow), (theirs, tw) = built
    return ours, theirs, ow, tw


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("name", CLASSES)
def test_every_option_against_torch_nn(name, dtype, rng):
    checked = 0
    for opts in option_sets(name, rng, dtype):
        what = f"{name}({opts})"
        ours, theirs, ow, tw = construct_both(name, opts)
        # The legacy arguments warn at construction, as torch's, pointing at the constructing line.
        assert [w[:2] for w in ow] == [w[:2] for w in tw], what
        assert all(w[2] == __file__ for w in ow), (what, ow)
        assert len(ow) == ("size_average" in opts or "reduce" in opts)
        # torch's attribute names and values
        assert ours.reduction == theirs.reduction, what
        for attr in ("ignore_index", "label_smoothing"):
            assert hasattr(ours, attr) == hasattr(theirs, attr), (what, attr)
            if hasattr(theirs, attr):
                assert getattr(ours, attr) == getattr(theirs, attr), (what, attr)
        for attr in ("weight", "pos_weight"):
            assert hasattr(ours, attr) == hasattr(theirs, attr), (what, attr)
            if hasattr(theirs, attr):
                t = getattr(theirs, attr)
                assert (getattr(ours, attr) is None) == (t is None), (what, attr)
                if t is not None:
                    np.testing.assert_array_equal(getattr(ours, attr), t.numpy())

        x, t = data(name, rng, dtype)
        if getattr(ours, "log_target", False):
            t = np.log(t)
        tx = torch.from_numpy(x.copy()).requires_grad_(True)
        ref = theirs(tx, torch.from_numpy(t))
        got = ours(x, t)
        assert_close(got, ref.detach().numpy(), dtype, what=what)
        assert_close(ours.forward(x, t), ref.detach().numpy(), dtype, what=what + " forward")

        g = (rng.standard_normal(ref.shape) if ours.reduction == "none" else np.asarray(0.6)).astype(dtype)
        ref.backward(torch.from_numpy(g))
        assert_close(ours.backward(g, x, t), tx.grad.numpy(), dtype, what=what + " backward")

        tx.grad = None
        ref1 = theirs(tx, torch.from_numpy(t))
        ref1.backward(torch.ones_like(ref1))
        v, gv = ours.value_and_grad(x, t)
        assert_close(v, ref.detach().numpy(), dtype, what=what + " fused loss")
        assert_close(gv, tx.grad.numpy(), dtype, what=what + " fused grad")
        xo = x.copy()
        v2, gv2 = ours.value_and_grad(xo, t, out=xo)  # the gradient over the logits
        assert gv2 is xo
        np.testing.assert_array_equal(gv2, gv)
        checked += 1
    assert checked == len(option_sets(name, rng))


@pytest.mark.parametrize("name", ["BCELoss", "BCEWithLogitsLoss"])
def test_binary_backward_wrt_target(name, rng):
    q = rng.uniform(0.5, 3.0, 4)
    opts = {"pos_weight": q} if name == "BCEWithLogitsLoss" else {}
    ours, theirs, _, _ = construct_both(name, {"weight": rng.uniform(0.5, 2, 4), "reduction": "sum", **opts})
    x, t = data(name, rng)
    tt = torch.from_numpy(t.copy()).requires_grad_(True)
    theirs(torch.from_numpy(x), tt).backward(torch.tensor(0.3, dtype=torch.float64))
    assert_close(ours.backward(0.3, x, t, wrt="target"), tt.grad.numpy(), np.float64)


def test_cross_entropy_probability_targets_and_dims(rng):
    """CrossEntropyLoss on probability targets and (N, C, d) inputs, as torch.nn's."""
    x = rng.standard_normal((3, 4, 5))
    p = rng.uniform(0, 1, (3, 4, 5))
    p /= p.sum(1, keepdims=True)
    y = rng.integers(0, 4, (3, 5))
    for tgt in (p, y):
        for opts in ({}, {"label_smoothing": 0.3, "reduction": "none"}, {"weight": rng.uniform(0.5, 2, 4)}):
            ours, theirs, _, _ = construct_both("CrossEntropyLoss", opts)
            assert_close(ours(x, tgt), theirs(torch.from_numpy(x), torch.from_numpy(tgt)).numpy(), np.float64)


def test_nll_loss_has_no_target_gradient(rng):
    x, y = data("NLLLoss", rng)
    with pytest.raises(ValueError, match="wrt"):
        lo.NLLLoss().backward(1.0, x, y, wrt="target")
    with pytest.raises(ValueError, match="wrt"):
        lo.CrossEntropyLoss().backward(1.0, x, y, wrt="target")  # class indices


def test_attributes_set_later_take_effect(rng):
    """As with torch's modules, the options are read at each call."""
    x, y = data("CrossEntropyLoss", rng)
    loss = lo.CrossEntropyLoss()
    loss.reduction = "sum"
    loss.label_smoothing = 0.25
    assert loss(x, y) == lo.cross_entropy(x, y, reduction="sum", label_smoothing=0.25)


# ----------------------------------------------------------------------------- repr and errors


def test_repr():
    w = np.ones(3, np.float32)
    assert repr(lo.CrossEntropyLoss(reduction="mean", label_smoothing=0.1)) == \
        "CrossEntropyLoss(reduction='mean', label_smoothing=0.1)"
    assert repr(lo.CrossEntropyLoss()) == "CrossEntropyLoss(reduction='mean')"
    assert repr(lo.CrossEntropyLoss(w, ignore_index=0, reduction="none")) == \
        "CrossEntropyLoss(weight=array(shape=(3,), dtype=float32), ignore_index=0, reduction='none')"
    assert repr(lo.NLLLoss(ignore_index=5)) == "NLLLoss(ignore_index=5, reduction='mean')"
    assert repr(lo.BCELoss(reduction="sum")) == "BCELoss(reduction='sum')"
    assert repr(lo.BCEWithLogitsLoss(pos_weight=np.ones(2))) == \
        "BCEWithLogitsLoss(reduction='mean', pos_weight=array(shape=(2,), dtype=float64))"
    with pytest.warns(UserWarning, match="reduction='none'"):
        assert repr(lo.BCELoss(reduce=False)) == "BCELoss(reduction='none')"  # resolved, as torch stores it
    assert repr(lo.KLDivLoss(reduction="batchmean", log_target=True)) == \
        "KLDivLoss(reduction='batchmean', log_target=True)"
    assert repr(lo.SoftMarginLoss()) == "SoftMarginLoss(reduction='mean')"
    assert repr(lo.MultiLabelSoftMarginLoss(w)) == \
        "MultiLabelSoftMarginLoss(weight=array(shape=(3,), dtype=float32), reduction='mean')"
    assert repr(lo.SigmoidFocalLoss(gamma=0.5)) == "SigmoidFocalLoss(gamma=0.5, reduction='none')"


@pytest.mark.parametrize("name", CLASSES)
def test_bad_arguments(name, rng):
    """A bad reduction is refused at construction (naming it); bad call arguments raise as the
    functions do, naming the argument."""
    for bad in ("avg", None, 0):
        with pytest.raises(ValueError, match="reduction"):
            getattr(lo, name)(reduction=bad)
    if takes(name, "size_average"):
        legacy_second = "size_average" if takes(name, "weight") else "reduce"  # the 2nd positional
        with pytest.raises(TypeError, match=legacy_second):
            getattr(lo, name)(None, "sum")
    x, t = data(name, rng)
    loss = getattr(lo, name)()
    for call in (lambda a: loss(a, t), lambda a: loss.backward(1.0, a, t), lambda a: loss.value_and_grad(a, t)):
        with pytest.raises(TypeError, match="input"):
            call(x.astype(np.int64))
        with pytest.raises(TypeError, match="input"):
            call(x.tolist())
    with pytest.raises(ValueError, match="target"):
        loss(x, t[:-1])
    if takes(name, "weight"):
        with pytest.raises(ValueError, match="weight"):
            getattr(lo, name)(weight=np.ones(5))(x, t)


# ----------------------------------------------------------------------------- the seeds' equivalences


def test_two_class_cross_entropy_is_bce_with_logits(rng):
    """CrossEntropyLoss()(x, y) on 2 classes == BCEWithLogitsLoss()(x1 - x0, y): values, and the
    gradients by the chain rule (d/dx1 = g, d/dx0 = -g)."""
    x = rng.standard_normal((64, 2)) * 4
    y = rng.integers(0, 2, 64)
    d = x[:, 1] - x[:, 0]
    for red in REDUCTIONS:
        ce, bce = lo.CrossEntropyLoss(reduction=red), lo.BCEWithLogitsLoss(reduction=red)
        assert_close(ce(x, y), bce(d, y.astype(np.float64)), np.float64, what=red)
        _, g_ce = ce.value_and_grad(x, y)
        _, g_bce = bce.value_and_grad(d, y.astype(np.float64))
        assert_close(g_ce, np.stack([-g_bce, g_bce], axis=1), np.float64, what=red)
    ce32 = lo.CrossEntropyLoss()(x.astype(np.float32), y)
    assert_close(ce32, lo.BCEWithLogitsLoss()(d.astype(np.float32), y.astype(np.float32)), np.float32)


def test_bce_on_softmax_is_cross_entropy(rng):
    """BCELoss on softmax(x)[:, 1] == CrossEntropyLoss on 2 classes, where BCE's log is not
    clamped (|x1 - x0| moderate)."""
    x = rng.standard_normal((64, 2)) * 3
    y = rng.integers(0, 2, 64)
    p1 = lo.softmax(x, axis=1)[:, 1]
    assert np.all(np.minimum(p1, 1 - p1) > np.exp(-100.0))  # not clamped
    for red in REDUCTIONS:
        assert_close(lo.BCELoss(reduction=red)(p1, y.astype(np.float64)), lo.CrossEntropyLoss(reduction=red)(x, y),
                     np.float64, rtol=1e-10, what=red)


def test_cross_entropy_is_nll_of_log_softmax(rng):
    x = rng.standard_normal((7, 5, 3))
    y = rng.integers(0, 5, (7, 3))
    y[0, 0] = 4
    w = rng.uniform(0.2, 2.0, 5)
    for red in REDUCTIONS:
        for opts in ({}, {"weight": w, "ignore_index": 4}):
            ce = lo.CrossEntropyLoss(**opts, reduction=red)
            nll = lo.NLLLoss(**opts, reduction=red)
            logp = lo.log_softmax(x, axis=1)
            assert_close(ce(x, y), nll(logp, y), np.float64, what=f"{red} {opts}")
            # gradients: CE's = NLL's pushed through log_softmax's backward
            g = rng.standard_normal(y.shape) if red == "none" else 0.8
            via_nll = lo.log_softmax_backward(nll.backward(g, logp, y), x, axis=1)
            assert_close(ce.backward(g, x, y), via_nll, np.float64, what=f"{red} {opts} backward")
