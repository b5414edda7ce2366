"""logitops.torch: torch.nn.functional's functions and torch.nn's modules over tensors, with autograd.

Against torch autograd (values and gradients over the NumPy API's matrix of shapes, options and
reductions), torch.autograd.gradcheck in float64 for every op, torch.library.opcheck for every
op, a seeded 200-step SGD run, torch.compile against eager, the fallbacks to torch's own code,
the errors (the NumPy API's, before any work), double backward, memory (no second N x C buffer),
the modules, and patch() (provably routing torch's calls to us inside the block only).
"""

from __future__ import annotations

import subprocess
import sys
import warnings
import weakref

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from _helpers import DTYPES, assert_close, dtype_id
from _oracle import to_numpy
from test_binary import make_input, make_target, make_weight, pos_weight_shapes, torch_calls, weight_shapes
from test_cross_entropy import SHAPES as CE_SHAPES
from test_cross_entropy import make_logits, make_probs, make_targets, sample_shape, torch_ref
from torch.utils._python_dispatch import TorchDispatchMode

import logitops as lo
import logitops.torch as lot

REDUCTIONS = ("mean", "sum", "none")
TORCH_DTYPE = {np.dtype(np.float32): torch.float32, np.dtype(np.float64): torch.float64}


def tensor(a, requires_grad=False):
    t = torch.from_numpy(np.array(a, copy=True))
    return t.requires_grad_(requires_grad) if requires_grad else t


def upstream(loss, rng, reduction):
    """A random upstream gradient of the loss's shape (a scalar 0.75 for reduced losses)."""
    if reduction == "none":
        return torch.from_numpy(rng.uniform(0.5, 2.0, size=tuple(loss.shape))).to(loss.dtype)
    return torch.tensor(0.75, dtype=loss.dtype)


class OpRecorder(TorchDispatchMode):
    """The names of the ops that reach the dispatcher (aten::..., logitops::...)."""

    def __init__(self):
        super().__init__()
        self.names: list[str] = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        self.names.append(func._schema.name)
        return func(*args, **(kwargs or {}))

    def ours(self) -> list[str]:
        return [n for n in self.names if n.startswith("logitops::")]


# ----------------------------------------------------------------------------- import isolation


class TestImport:
    @pytest.fixture(params=["-"], autouse=True)
    def isa(self):  # imports do not depend on the instruction set: run once
        yield

    def test_logitops_alone_does_not_import_torch(self):
        code = ("import sys, logitops, logitops._binary, logitops._cross_entropy, logitops._modules\n"
                "assert 'torch' not in sys.modules, 'import logitops imported torch'\n"
                "import logitops.torch as lot\n"
                "assert 'torch' in sys.modules and lot.cross_entropy.__module__ == 'logitops.torch'\n")
        r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
        assert r.returncode == 0, r.stderr

    def test_public_names(self):
        for name in lot.__all__:
            assert hasattr(lot, name), name
        assert "torch" not in lo.__all__  # the NumPy API's walk (tests/_api.py) does not see it


# ----------------------------------------------------------------------------- parity with torch: losses


def lot_ce_calls(x, target, weight, ignore_index, reduction, label_smoothing, g, nll=False, wrt_target=False):
    """(loss, d/dinput, d/dtarget or None) of lot, with upstream gradient g (numpy or float)."""
    tx = tensor(x, requires_grad=True)
    tt = tensor(target, requires_grad=wrt_target)
    tw = None if weight is None else tensor(weight)
    if nll:
        loss = lot.nll_loss(tx, tt, tw, ignore_index=ignore_index, reduction=reduction)
    else:
        loss = lot.cross_entropy(tx, tt, tw, ignore_index=ignore_index, reduction=reduction,
                                 label_smoothing=label_smoothing)
    gg = torch.as_tensor(np.asarray(g), dtype=loss.dtype).reshape(loss.shape)
    loss.backward(gg)
    return to_numpy(loss), to_numpy(tx.grad), (to_numpy(tt.grad) if wrt_target else None)


def check_ce(x, target, weight=None, ignore_index=-100, reduction="mean", label_smoothing=0.0, rng=None, nll=False):
    """lot's loss and gradients (upstream 1, a random one, and for probabilities the target's)
    against torch autograd in float64."""
    dt = np.result_type(x, target) if target.dtype.kind == "f" else x.dtype
    probs = target.dtype.kind == "f"
    ref_loss, ref_g1, _ = torch_ref(x, target, weight, ignore_index, reduction, label_smoothing, nll=nll)
    ones = np.ones(sample_shape(x.shape)) if reduction == "none" else 1.0
    loss, gx, _ = lot_ce_calls(x, target, weight, ignore_index, reduction, label_smoothing, ones, nll)
    assert loss.dtype == dt
    assert_close(loss, ref_loss, dt, what="loss")
    assert_close(gx, ref_g1, x.dtype, what="grad, upstream 1")
    g = rng.uniform(0.5, 2.0, size=sample_shape(x.shape)) if reduction == "none" else 0.75
    _, ref_gx, ref_gt = torch_ref(x, target, weight, ignore_index, reduction, label_smoothing, g, nll=nll)
    _, gx, gt = lot_ce_calls(x, target, weight, ignore_index, reduction, label_smoothing, g, nll, wrt_target=probs)
    assert_close(gx, ref_gx, x.dtype, what="grad, random upstream")
    if probs:
        assert_close(gt, ref_gt, target.dtype, what="grad wrt target")


@pytest.mark.parametrize("dtype", DTYPES, ids=dtype_id)
@pytest.mark.parametrize("shape", [s for s, _ in CE_SHAPES], ids=[i for _, i in CE_SHAPES])
@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("weighted", [False, True], ids=["w0", "w1"])
@pytest.mark.parametrize("label_smoothing", [0.0, 0.2], ids=["ls0", "ls.2"])
def test_cross_entropy_class_targets(dtype, shape, reduction, weighted, label_smoothing, rng):
    x = make_logits(rng, shape, dtype)
    y = make_targets(rng, shape, ignore_index=-100)
    w = rng.uniform(0.2, 2.0, shape[0] if len(shape) == 1 else shape[1]).astype(dtype) if weighted else None
    check_ce(x, y, w, -100, reduction, label_smoothing, rng)
    check_ce(x, make_targets(rng, shape, ignore_index=1), w, 1, reduction, label_smoothing, rng)


@pytest.mark.parametrize("dtype", DTYPES, ids=dtype_id)
@pytest.mark.parametrize("shape", [s for s, _ in CE_SHAPES], ids=[i for _, i in CE_SHAPES])
@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("weighted", [False, True], ids=["w0", "w1"])
@pytest.mark.parametrize("label_smoothing", [0.0, 0.2], ids=["ls0", "ls.2"])
def test_cross_entropy_probability_targets(dtype, shape, reduction, weighted, label_smoothing, rng):
    x = make_logits(rng, shape, dtype)
    p = make_probs(rng, shape, dtype)
    w = rng.uniform(0.2, 2.0, shape[0] if len(shape) == 1 else shape[1]).astype(dtype) if weighted else None
    check_ce(x, p, w, -100, reduction, label_smoothing, rng)


@pytest.mark.parametrize("dtype", DTYPES, ids=dtype_id)
@pytest.mark.parametrize("shape", [s for s, _ in CE_SHAPES], ids=[i for _, i in CE_SHAPES])
@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("weighted", [False, True], ids=["w0", "w1"])
def test_nll_loss(dtype, shape, reduction, weighted, rng):
    x = make_logits(rng, shape, dtype)
    w = rng.uniform(0.2, 2.0, shape[0] if len(shape) == 1 else shape[1]).astype(dtype) if weighted else None
    check_ce(x, make_targets(rng, shape, ignore_index=-100), w, -100, reduction, rng=rng, nll=True)
    check_ce(x, make_targets(rng, shape, ignore_index=2), w, 2, reduction, rng=rng, nll=True)


def lot_binary_calls(kind, x, t, w, q, reduction, go):
    tx, tt = tensor(x, requires_grad=True), tensor(t, requires_grad=True)
    tw = None if w is None else tensor(w)
    if kind == "probs":
        y = lot.binary_cross_entropy(tx, tt, weight=tw, reduction=reduction)
    else:
        tq = None if q is None else tensor(q)
        y = lot.binary_cross_entropy_with_logits(tx, tt, weight=tw, reduction=reduction, pos_weight=tq)
    loss = to_numpy(y)
    y.backward(torch.as_tensor(np.asarray(go), dtype=y.dtype).reshape(y.shape))
    return loss, to_numpy(tx.grad), to_numpy(tt.grad)


BINARY_SHAPES = {"0d": (), "1d": (37,), "2d": (6, 13), "4d": (2, 3, 4, 5), "empty": (0, 5)}


@pytest.mark.parametrize("dt", DTYPES, ids=dtype_id)
@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("shape_id", list(BINARY_SHAPES))
@pytest.mark.parametrize("kind", ("probs", "logits"))
def test_binary_losses(kind, shape_id, reduction, dt, rng):
    """Every weight shape (and pos_weight shape), soft and hard targets; upstream 1 and random."""
    shape = BINARY_SHAPES[shape_id]
    for hard in (False, True):
        x = make_input(kind, shape, dt, rng)
        t = make_target(shape, dt, rng, hard)
        combos = [(wid, "none") for wid in weight_shapes(shape)]
        if kind == "logits":
            combos += [(wid, qid) for wid in ("none", "full") if wid in weight_shapes(shape)
                       for qid in pos_weight_shapes(shape) if qid != "none"]
        for wid, qid in combos:
            w = make_weight(weight_shapes(shape)[wid], dt, rng)
            q = make_weight(pos_weight_shapes(shape)[qid], dt, rng)
            what = f"{kind} {shape_id} {reduction} hard={hard} weight={wid} pos_weight={qid}"
            for go in ((np.ones(shape) if reduction == "none" else 1.0),
                       (rng.uniform(0.5, 2.0, size=shape) if reduction == "none" else 0.75)):
                loss, gi, gt = lot_binary_calls(kind, x, t, w, q, reduction, go)
                e_loss, e_gi, e_gt = torch_calls(kind, x, t, w, q, reduction, go, dt)
                assert_close(loss, e_loss, dt, what=f"{what} loss")
                assert_close(gi, e_gi, dt, what=f"{what} grad input")
                assert_close(gt, e_gt, dt, what=f"{what} grad target")


def test_mixed_dtypes_follow_the_numpy_api(rng):
    """float32 logits with float64 probability targets compute in float64 (the NumPy API's
    promotion); the input's gradient has the input's dtype, as autograd requires."""
    x = make_logits(rng, (6, 5), np.float32)
    p = make_probs(rng, (6, 5), np.float64)
    tx = tensor(x, requires_grad=True)
    loss = lot.cross_entropy(tx, tensor(p))
    assert loss.dtype == torch.float64
    np.testing.assert_allclose(loss.item(), lo.cross_entropy(x, p), rtol=1e-15)
    loss.backward()
    assert tx.grad.dtype == torch.float32
    assert_close(tx.grad.numpy(), lo.cross_entropy_value_and_grad(x, p)[1].astype(np.float32), np.float32)


def test_integer_target_dtypes(rng):
    x = make_logits(rng, (9, 6), np.float32)
    y = make_targets(rng, (9, 6))
    expected = lot.cross_entropy(tensor(x), tensor(y))
    for dt in (torch.int8, torch.int16, torch.int32, torch.uint8):
        assert torch.equal(lot.cross_entropy(tensor(x), tensor(y).to(dt)), expected), dt


# ----------------------------------------------------------------------------- parity with torch: primitives


def primitive_pair(name, dim, keepdim=False):
    """(lot's function, torch's) of one argument."""
    if name == "logsumexp":
        return (lambda t: lot.logsumexp(t, dim, keepdim)), (lambda t: torch.logsumexp(t, dim, keepdim))
    if name in ("log_softmax", "softmax"):
        return (lambda t: getattr(lot, name)(t, dim)), (lambda t: getattr(F, name)(t, dim))
    if name == "logsigmoid":
        return lot.logsigmoid, F.logsigmoid
    return lot.sigmoid, torch.sigmoid


def check_primitive(ours, theirs, x, rng, what):
    """Value and gradient (random upstream) against torch in float64."""
    dt = x.dtype
    tx = tensor(x, requires_grad=True)
    y = ours(tx)
    ref_x = tensor(x.astype(np.float64), requires_grad=True)
    ref = theirs(ref_x)
    assert y.dtype == TORCH_DTYPE[np.dtype(dt)] and y.shape == ref.shape, what
    assert_close(to_numpy(y), to_numpy(ref), dt, what=f"{what} value")
    g = rng.uniform(-1.0, 2.0, size=tuple(ref.shape))
    y.backward(torch.from_numpy(g).to(y.dtype))
    ref.backward(torch.from_numpy(g))
    assert_close(to_numpy(tx.grad), to_numpy(ref_x.grad), dt, what=f"{what} grad")


PRIMITIVE_CASES = [
    ("logsumexp", (5, 9), -1, False), ("logsumexp", (3, 4, 5), (0, 2), False), ("logsumexp", (3, 4, 5), 1, True),
    ("logsumexp", (7,), 0, False), ("logsumexp", (), 0, False), ("logsumexp", (0, 3), 1, False),
    ("log_softmax", (5, 9), -1, False), ("log_softmax", (3, 4, 5), 1, False), ("log_softmax", (6,), 0, False),
    ("log_softmax", (), 0, False), ("log_softmax", (2, 0), 1, False),
    ("softmax", (5, 9), -1, False), ("softmax", (3, 4, 5), 0, False), ("softmax", (1, 33), 1, False),
    ("logsigmoid", (1000,), None, False), ("logsigmoid", (3, 4, 5), None, False), ("logsigmoid", (), None, False),
    ("sigmoid", (33,), None, False), ("sigmoid", (4, 0), None, False), ("sigmoid", (2, 3), None, False),
]


@pytest.mark.parametrize("dtype", DTYPES, ids=dtype_id)
@pytest.mark.parametrize("case", PRIMITIVE_CASES, ids=lambda c: f"{c[0]}-{'x'.join(map(str, c[1])) or 'scalar'}-{c[2]}")
def test_primitives(case, dtype, rng):
    name, shape, dim, keepdim = case
    ours, theirs = primitive_pair(name, dim, keepdim)
    x = (rng.standard_normal(shape) * 5).astype(dtype)
    check_primitive(ours, theirs, x, rng, f"{name} {shape} dim={dim}")


@pytest.mark.parametrize("name", ["logsumexp", "log_softmax", "softmax", "logsigmoid", "sigmoid"])
def test_primitives_on_strided_tensors(name, rng):
    """Transposed and sliced tensors (any strides): the NumPy API reads their views."""
    ours, theirs = primitive_pair(name, 1)
    base = (rng.standard_normal((8, 12)) * 4).astype(np.float32)
    for view in (lambda t: t.t(), lambda t: t[::2, 1::3], lambda t: t[:, :1].expand(8, 5)):
        tx = torch.from_numpy(base.copy()).requires_grad_(True)
        ref_x = torch.from_numpy(base.astype(np.float64)).requires_grad_(True)
        y, ref = ours(view(tx)), theirs(view(ref_x))
        assert_close(to_numpy(y), to_numpy(ref), np.float32, what=f"{name} value")
        y.sum().backward()
        ref.sum().backward()
        assert_close(to_numpy(tx.grad), to_numpy(ref_x.grad), np.float32, what=f"{name} grad")


def test_softmax_dtype_argument(rng):
    """dtype= casts the input first (float32 -> float64), and the gradient comes back in float32."""
    x = (rng.standard_normal((4, 6)) * 3).astype(np.float32)
    for ours, theirs in ((lot.log_softmax, F.log_softmax), (lot.softmax, F.softmax)):
        tx, ref_x = tensor(x, requires_grad=True), tensor(x, requires_grad=True)
        y, ref = ours(tx, 1, dtype=torch.float64), theirs(ref_x, 1, dtype=torch.float64)
        assert y.dtype == torch.float64
        assert_close(to_numpy(y), to_numpy(ref), np.float64)
        y.sum().backward()
        ref.sum().backward()
        assert tx.grad.dtype == torch.float32
        assert_close(to_numpy(tx.grad), to_numpy(ref_x.grad), np.float32)


# ----------------------------------------------------------------------------- gradcheck, opcheck


def f64(shape, rng, scale=2.0, requires_grad=True):
    return torch.from_numpy(rng.standard_normal(shape) * scale).requires_grad_(requires_grad)


def gradcheck_cases(rng):
    """(name, function, inputs) for torch.autograd.gradcheck in float64: every op, every path."""
    x = f64((5, 4), rng)
    x3 = f64((3, 4, 2), rng)
    y = torch.tensor([0, 3, 1, 2, 3])
    y3 = torch.tensor([[0, 3], [1, 1], [2, 0]])
    p = torch.softmax(f64((5, 4), rng, requires_grad=False), 1).requires_grad_(True)
    q = torch.rand(5, 4, dtype=torch.float64).mul(0.8).add(0.1).requires_grad_(True)  # within (0, 1)
    w = torch.rand(4, dtype=torch.float64) + 0.5
    cases = [
        ("logsumexp", lambda a: lot.logsumexp(a, 1), (x,)),
        ("logsumexp dims keepdim", lambda a: lot.logsumexp(a, (0, 2), True), (x3,)),
        ("log_softmax", lambda a: lot.log_softmax(a, 1), (x,)),
        ("log_softmax dim 0", lambda a: lot.log_softmax(a, 0), (x3,)),
        ("softmax", lambda a: lot.softmax(a, -1), (x,)),
        ("logsigmoid", lot.logsigmoid, (x,)),
        ("sigmoid", lot.sigmoid, (x,)),
        ("binary_cross_entropy with_logits pos_weight", lambda a, b: lot.binary_cross_entropy_with_logits(
            a, b, w, reduction="none", pos_weight=w * 2), (x, q)),
        ("binary_cross_entropy with_logits", lambda a, b: lot.binary_cross_entropy_with_logits(a, b), (x, q)),
        ("binary_cross_entropy", lambda a, b: lot.binary_cross_entropy(a, b, w, reduction="sum"), (q.detach().clone()
                                                                                                 .requires_grad_(True), q)),
        ("cross_entropy class", lambda a: lot.cross_entropy(a, y, w, label_smoothing=0.1), (x,)),
        ("cross_entropy class none", lambda a: lot.cross_entropy(a, y3, reduction="none"), (x3,)),
        ("cross_entropy probs", lambda a, b: lot.cross_entropy(a, b, w, reduction="sum", label_smoothing=0.2), (x, p)),
        ("nll_loss", lambda a: lot.nll_loss(a, y, w, ignore_index=1), (x,)),
        ("nll_loss none", lambda a: lot.nll_loss(a, y3, reduction="none"), (x3,)),
    ]
    # The unfused path (the backward op on the saved input), reached through the ops themselves.
    ops = torch.ops.logitops
    cases += [
        ("cross_entropy op unfused", lambda a: ops.cross_entropy(a, y, None, -100, 1, 0.0, False)[0], (x,)),
        ("nll_loss op unfused", lambda a: ops.nll_loss(a, y, w, -100, 0, False)[0], (x,)),
        ("binary_cross_entropy op unfused", lambda a: ops.binary_cross_entropy(a, q.detach(), None, 2, False)[0],
         (q.detach().clone().requires_grad_(True),)),
        ("bce_with_logits op unfused", lambda a: ops.binary_cross_entropy_with_logits(a, q.detach(), w, None, 1,
                                                                                    False)[0], (x,)),
    ]
    return cases


@pytest.mark.parametrize("index", range(19))
def test_gradcheck(index, rng):
    cases = gradcheck_cases(rng)
    assert len(cases) == 19
    name, fn, inputs = cases[index]
    assert torch.autograd.gradcheck(fn, inputs), name


def opcheck_cases():
    r = np.random.default_rng(7)
    x = torch.from_numpy(r.standard_normal((4, 5)).astype(np.float32))
    x3 = torch.from_numpy(r.standard_normal((3, 4, 2)))
    xg = x.clone().requires_grad_(True)
    y = torch.tensor([0, 4, 1, 2])
    p = torch.softmax(x, 1)
    pg = p.clone().requires_grad_(True)
    w = torch.rand(5) + 0.5
    q = torch.rand(4, 5) * 0.9 + 0.05
    g0 = torch.tensor(0.5)
    ops = torch.ops.logitops
    return [
        (ops.logsumexp, (xg, [1], False)), (ops.logsumexp, (x3.requires_grad_(True), [0, 2], True)),
        (ops.logsumexp_backward, (torch.rand(4), x, [1], False)),
        (ops.log_softmax, (xg, 1)), (ops.log_softmax_backward, (torch.rand(4, 5), x, 1)),
        (ops.softmax, (xg, 0)), (ops.softmax_backward, (torch.rand(4, 5), x, 0)),
        (ops.log_sigmoid, (xg,)), (ops.log_sigmoid_backward, (torch.rand(4, 5), x)),
        (ops.sigmoid, (xg,)), (ops.sigmoid_backward, (torch.rand(4, 5), x)),
        (ops.cross_entropy, (xg, y, w, -100, 1, 0.1, True)), (ops.cross_entropy, (xg, y, None, 1, 0, 0.0, False)),
        (ops.cross_entropy, (xg, pg, None, -100, 2, 0.0, True)),
        (ops.cross_entropy_backward, (g0, x, p, w, -100, 1, 0.0, True)),
        (ops.nll_loss, (xg, y, w, -100, 1, True)), (ops.nll_loss, (xg, y, None, -100, 0, False)),
        (ops.nll_loss_backward, (torch.rand(4), x, y, None, -100, 0)),
        (ops.binary_cross_entropy, (q.clone().requires_grad_(True), q, w, 1, True)),
        (ops.binary_cross_entropy_backward, (torch.rand(4, 5), q, q, None, 0, True)),
        (ops.binary_cross_entropy_with_logits, (xg, q, None, w, 0, True)),
        (ops.binary_cross_entropy_with_logits, (xg, q.clone().requires_grad_(True), w, None, 2, False)),
        (ops.binary_cross_entropy_with_logits_backward, (g0, x, q, w, w, 1, False)),
    ]


@pytest.mark.parametrize("index", range(23))
def test_opcheck(index):
    cases = opcheck_cases()
    assert len(cases) == 23
    op, args = cases[index]
    torch.library.opcheck(op, args)  # schema, autograd registration, fake tensor, AOT dispatch


def test_every_op_is_opchecked():
    names = {op._qualified_op_name for op, _ in opcheck_cases()}
    registered = {f"logitops::{n}" for n in dir(torch.ops.logitops) if not n.startswith("_")
                  and isinstance(getattr(torch.ops.logitops, n), torch._ops.OpOverloadPacket)}
    assert names == registered


# ----------------------------------------------------------------------------- training


def train_mlp(loss_fn, dtype, steps=200):
    gen = torch.Generator().manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(20, 32), torch.nn.ReLU(), torch.nn.Linear(32, 10)).to(dtype)
    with torch.no_grad():
        for prm in model.parameters():
            prm.copy_(torch.randn(prm.shape, generator=gen, dtype=dtype) * 0.3)
    data = torch.randn(64, 20, generator=gen, dtype=dtype)
    labels = torch.randint(0, 10, (64,), generator=gen)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    for step in range(steps):
        batch = slice((step * 16) % 64, (step * 16) % 64 + 16)
        opt.zero_grad()
        loss_fn(model(data[batch]), labels[batch]).backward()
        opt.step()
    return [prm.detach().clone() for prm in model.parameters()]


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["float32", "float64"])
def test_sgd_run_gives_torchs_weights(dtype):
    """200 seeded SGD steps of a small MLP: the same weights with lot.cross_entropy as with
    F.cross_entropy (float64: to 1e-12; float32: to the parity tolerance, the rounding of 200
    steps' gradients apart)."""
    ours = train_mlp(lot.cross_entropy, dtype)
    theirs = train_mlp(F.cross_entropy, dtype)
    rtol, atol = (1e-12, 1e-13) if dtype == torch.float64 else (1e-5, 1e-6)
    for a, b in zip(ours, theirs):
        np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=rtol, atol=atol)
    assert not all(torch.equal(a, b) for a, b in zip(ours, train_mlp(F.cross_entropy, dtype, steps=199)))


# ----------------------------------------------------------------------------- torch.compile


class Head(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.linear = torch.nn.Linear(8, 6)

    def forward(self, h, y, t):
        logits = self.linear(h)
        return (lot.cross_entropy(logits, y, label_smoothing=0.1) + lot.binary_cross_entropy_with_logits(logits, t)
                + lot.logsumexp(logits, 1).mean() + lot.log_softmax(logits, 1).mean() * 0.5
                + lot.softmax(logits, 0).pow(2).sum() + lot.logsigmoid(logits).mean() + lot.sigmoid(logits).mean()
                + lot.nll_loss(lot.log_softmax(logits, 1), y, reduction="sum") * 0.1)


def compile_inputs():
    gen = torch.Generator().manual_seed(3)
    return (torch.randn(5, 8, generator=gen), torch.randint(0, 6, (5,), generator=gen),
            torch.rand(5, 6, generator=gen))


def run_head(model, args):
    model.zero_grad()
    loss = model(*args)
    loss.backward()
    return loss.detach(), [p.grad.clone() for p in model.parameters()]


def check_compiled_matches_eager(backend):
    torch.manual_seed(0)
    model = Head()
    args = compile_inputs()
    eager_loss, eager_grads = run_head(model, args)
    compiled = torch.compile(model, backend=backend, fullgraph=True)  # fullgraph: no graph break
    for _ in range(2):
        loss, grads = run_head(compiled, args)
        torch.testing.assert_close(loss, eager_loss, rtol=1e-5, atol=1e-6)
        for a, b in zip(grads, eager_grads):
            torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)


def test_compile_keeps_our_ops_in_the_graph():
    """Dynamo's graph of a model using lot holds our ops (not a graph break, not torch's ops)."""
    graphs = []

    def backend(gm, example_inputs):
        graphs.append(gm)
        return gm.forward

    torch._dynamo.reset()
    check_compiled_matches_eager(backend)
    assert len(graphs) == 1
    targets = {str(n.target) for n in graphs[0].graph.nodes if n.op == "call_function"}
    for op in ("cross_entropy", "binary_cross_entropy_with_logits", "logsumexp", "log_softmax", "softmax",
               "log_sigmoid", "sigmoid", "nll_loss"):
        assert f"logitops.{op}.default" in targets, (op, targets)


def test_compile_aot_eager_matches_eager():
    """AOTAutograd traces the forward and backward (fake tensors through register_fake, the
    backward's scaling as a traced multiply): the same loss and gradients as eager."""
    torch._dynamo.reset()
    check_compiled_matches_eager("aot_eager")


@pytest.mark.slow
def test_compile_inductor_matches_eager():
    torch._dynamo.reset()
    check_compiled_matches_eager("inductor")


# ----------------------------------------------------------------------------- fallbacks to torch


def no_ops_of_ours(fn):
    with OpRecorder() as rec:
        result = fn()
    assert rec.ours() == [], rec.ours()
    return result


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_low_precision_runs_torchs_code(dtype):
    x = torch.randn(6, 5).to(dtype).requires_grad_(True)
    y = torch.randint(0, 5, (6,))
    t = torch.rand(6, 5).to(dtype)
    for ours, theirs, args in ((lot.cross_entropy, F.cross_entropy, (y,)),
                               (lot.binary_cross_entropy_with_logits, F.binary_cross_entropy_with_logits, (t,)),
                               (lambda a: lot.log_softmax(a, 1), lambda a: F.log_softmax(a, 1), ()),
                               (lambda a: lot.logsumexp(a, 1), lambda a: torch.logsumexp(a, 1), ()),
                               (lot.sigmoid, torch.sigmoid, ()), (lot.logsigmoid, F.logsigmoid, ())):
        got = no_ops_of_ours(lambda: ours(x, *args))  # noqa: B023
        assert torch.equal(got, theirs(x, *args))


def test_meta_tensors_and_options_we_do_not_take_run_torchs_code():
    m = torch.empty(4, 3, device="meta")
    assert lot.cross_entropy(m, torch.empty(4, dtype=torch.long, device="meta")).device.type == "meta"
    assert lot.log_softmax(m, 1).shape == (4, 3)
    x = torch.randn(4, 3)
    out = torch.empty(4)
    assert no_ops_of_ours(lambda: lot.logsumexp(x, 1, out=out)) is out
    out2 = torch.empty(4, 3)
    assert no_ops_of_ours(lambda: lot.sigmoid(x, out=out2)) is out2
    # An implicit dim: torch's choice and its warning.
    with pytest.warns(UserWarning, match="Implicit dimension choice"):
        got = no_ops_of_ours(lambda: lot.softmax(x))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert torch.equal(got, F.softmax(x))


def test_integer_input_gets_torchs_error():
    x = torch.arange(6).reshape(2, 3)
    y = torch.tensor([0, 1])
    for ours, theirs in ((lambda: lot.cross_entropy(x, y), lambda: F.cross_entropy(x, y)),
                         (lambda: lot.log_softmax(x, 1), lambda: F.log_softmax(x, 1)),
                         (lambda: lot.binary_cross_entropy_with_logits(x, x), lambda: F.binary_cross_entropy_with_logits(x, x))):
        with pytest.raises(Exception) as theirs_err:
            theirs()
        with pytest.raises(type(theirs_err.value)) as ours_err:
            ours()
        assert str(ours_err.value) == str(theirs_err.value)
    assert torch.equal(lot.logsumexp(x, 1), torch.logsumexp(x, 1))  # torch takes it: so do we, with its result


def test_subclass_runs_torchs_code():
    calls = []

    class Logged(torch.Tensor):
        @classmethod
        def __torch_function__(cls, func, types, args=(), kwargs=None):
            calls.append(func)
            return super().__torch_function__(func, types, args, kwargs or {})

    x = torch.randn(4, 3).as_subclass(Logged)
    lot.cross_entropy(x, torch.tensor([0, 1, 2, 0]))
    assert F.cross_entropy in calls


# ----------------------------------------------------------------------------- bad input


def same_error_as_numpy_api(lot_call, lo_call):
    """lot's exception is the NumPy API's: type and message (the NumPy API's `axis` is torch's `dim`)."""
    with pytest.raises(Exception) as expected:
        lo_call()
    with OpRecorder() as rec, pytest.raises(type(expected.value)) as got:
        lot_call()
    assert str(got.value) in (str(expected.value), str(expected.value).replace("axis", "dim"))
    return rec


def test_bad_inputs_raise_the_numpy_apis_errors(rng):
    x = (rng.standard_normal((4, 5))).astype(np.float32)
    y = np.array([0, 1, 2, 3])
    tx, ty = torch.from_numpy(x).requires_grad_(True), torch.from_numpy(y)
    cases = [
        (lambda: lot.cross_entropy(tx, ty, reduction="avg"), lambda: lo.cross_entropy(x, y, reduction="avg")),
        (lambda: lot.cross_entropy(tx, ty, label_smoothing=1.5), lambda: lo.cross_entropy(x, y, label_smoothing=1.5)),
        (lambda: lot.cross_entropy(tx, ty, ignore_index=True), lambda: lo.cross_entropy(x, y, ignore_index=True)),
        (lambda: lot.cross_entropy(tx, ty, ignore_index=2**70), lambda: lo.cross_entropy(x, y, ignore_index=2**70)),
        (lambda: lot.nll_loss(tx, ty, reduce=3), lambda: lo.nll_loss(x, y, reduce=3)),
        (lambda: lot.binary_cross_entropy_with_logits(tx, tx, reduction=None),
         lambda: lo.binary_cross_entropy_with_logits(x, x, reduction=None)),
    ]
    for lot_call, lo_call in cases:  # checked before any op runs
        assert same_error_as_numpy_api(lot_call, lo_call).names == []
    w4, w3, y_bool, y_float, y_short = torch.ones(4), torch.ones(3), ty.bool(), ty.float(), ty[:3].clone()
    y_big, tx_short = ty + 3, tx.detach()[:2].clone()
    data_cases = [
        (lambda: lot.cross_entropy(tx, y_big), lambda: lo.cross_entropy(x, y + 3)),
        (lambda: lot.cross_entropy(tx, y_short), lambda: lo.cross_entropy(x, y[:3])),
        (lambda: lot.cross_entropy(tx, ty, w4), lambda: lo.cross_entropy(x, y, np.ones(4, np.float32))),
        (lambda: lot.cross_entropy(tx, y_bool), lambda: lo.cross_entropy(x, y.astype(bool))),
        (lambda: lot.cross_entropy(tx, y_float), lambda: lo.cross_entropy(x, y.astype(np.float32))),
        (lambda: lot.nll_loss(tx, tx), lambda: lo.nll_loss(x, x)),
        (lambda: lot.binary_cross_entropy(tx, tx), lambda: lo.binary_cross_entropy(x, x)),
        (lambda: lot.binary_cross_entropy_with_logits(tx, tx_short), lambda: lo.binary_cross_entropy_with_logits(x, x[:2])),
        (lambda: lot.binary_cross_entropy_with_logits(tx, tx, w3),
         lambda: lo.binary_cross_entropy_with_logits(x, x, np.ones(3, np.float32))),
        (lambda: lot.binary_cross_entropy_with_logits(tx, ty), lambda: lo.binary_cross_entropy_with_logits(x, y)),
        (lambda: lot.log_softmax(tx, 2), lambda: lo.log_softmax(x, 2)),
        (lambda: lot.logsumexp(tx, (0, 0)), lambda: lo.logsumexp(x, (0, 0))),
        (lambda: lot.logsumexp(tx, 1.5), lambda: lo.logsumexp(x, 1.5)),
    ]
    for lot_call, lo_call in data_cases:  # raised by the NumPy API inside our op, before its kernels
        rec = same_error_as_numpy_api(lot_call, lo_call)
        assert tx.grad is None and all(n.startswith("logitops::") for n in rec.names), rec.names


def test_weight_that_requires_grad_raises_as_torch():
    x = torch.randn(4, 3, requires_grad=True)
    y = torch.tensor([0, 1, 2, 0])
    t = torch.rand(4, 3)
    w = torch.rand(3, requires_grad=True)
    cases = [(lambda f: f.cross_entropy(x, y, w)), (lambda f: f.nll_loss(x, y, w)),
             (lambda f: f.binary_cross_entropy(t, t, w)), (lambda f: f.binary_cross_entropy_with_logits(x, t, w)),
             (lambda f: f.binary_cross_entropy_with_logits(x, t, pos_weight=w))]
    for case in cases:
        with pytest.raises(RuntimeError) as theirs:
            case(F)
        with pytest.raises(RuntimeError) as ours:
            case(lot)
        assert str(ours.value) == str(theirs.value)
    with torch.no_grad():
        assert torch.equal(lot.cross_entropy(x, y, w), lo_value(x, y, w))


def lo_value(x, y, w):
    return torch.tensor(lo.cross_entropy(x.detach().numpy(), y.numpy(), w.detach().numpy()))


def test_non_leaf_that_requires_grad_is_fine(rng):
    a = torch.randn(4, 3, requires_grad=True)
    logits = a * 2  # not a leaf
    y = torch.tensor([0, 1, 2, 0])
    lot.cross_entropy(logits, y).backward()
    ref = a.detach().clone().requires_grad_(True)
    F.cross_entropy(ref * 2, y).backward()
    torch.testing.assert_close(a.grad, ref.grad)


# ----------------------------------------------------------------------------- autograd details


def test_double_backward_raises():
    x = torch.randn(4, 3, dtype=torch.float64, requires_grad=True)
    y = torch.tensor([0, 1, 2, 0])
    t = torch.rand(4, 3, dtype=torch.float64)
    for loss in (lambda: lot.cross_entropy(x, y), lambda: lot.nll_loss(x, y, reduction="none").sum(),
                 lambda: lot.binary_cross_entropy_with_logits(x, t), lambda: lot.binary_cross_entropy(x.sigmoid(), t)):
        with pytest.raises(RuntimeError, match="does not support double backward"):
            torch.autograd.grad(loss(), x, create_graph=True)
    for prim in (lambda a: lot.log_softmax(a, 1), lambda a: lot.softmax(a, 1), lambda a: lot.logsumexp(a, 1),
                 lot.logsigmoid, lot.sigmoid):
        out = prim(x)
        (g,) = torch.autograd.grad((out * torch.rand_like(out)).sum(), x, create_graph=True)
        assert g.requires_grad  # a first-order gradient with create_graph=True works ...
        with pytest.raises(RuntimeError, match="does not support double backward"):
            g.sum().backward()  # ... differentiating it raises


def test_retain_graph_backward_twice_accumulates():
    """With retain_graph the saved gradient is never handed over: each backward adds it again."""
    x = torch.randn(5, 4, requires_grad=True)
    y = torch.tensor([0, 1, 2, 3, 0])
    loss = lot.cross_entropy(x, y)
    loss.backward(retain_graph=True)
    first = x.grad.clone()
    x.grad.mul_(10)  # the caller owns x.grad: writing to it must not reach our saved gradient
    loss.backward(retain_graph=True)
    loss.backward()
    torch.testing.assert_close(x.grad, first * 12)


def test_loss_keeps_only_its_gradient(rng):
    """The fused forward keeps one N x C buffer (the gradient), not the input as well: torch keeps
    one too (its log-probabilities). The logits are freed once the caller drops them."""
    saved = []

    def pack(t):
        saved.append(t.numel())
        return t

    a = torch.randn(64, 1000, requires_grad=True)
    y = torch.randint(0, 1000, (64,))
    for fn in (lot.cross_entropy, F.cross_entropy):
        saved.clear()
        logits = a * 1.0
        ref = weakref.ref(logits)
        with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
            loss = fn(logits, y)
        n_saved = sum(saved) - (64 * 1000 if fn is F.cross_entropy else 0)  # (torch: log-probs saved twice)
        if fn is lot.cross_entropy:
            ours_saved = n_saved
            del logits
            assert ref() is None, "the forward kept the logits alive"
        else:
            theirs_saved = n_saved
        loss.backward()
    assert ours_saved <= theirs_saved, (ours_saved, theirs_saved)
    assert ours_saved == 64 * 1000


def test_upstream_one_hands_the_saved_gradient_over():
    """loss.backward() (upstream 1): the leaf's .grad is the buffer the forward saved, not a copy."""
    x = torch.randn(32, 50, requires_grad=True)
    y = torch.randint(0, 50, (32,))
    saved = []

    def pack(t):
        saved.append((t.data_ptr(), t.shape))
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        loss = lot.cross_entropy(x, y)
    assert [s for s in saved if s[1] == x.shape]
    loss.backward()
    assert x.grad.data_ptr() in [p for p, shape in saved if shape == x.shape]


# ----------------------------------------------------------------------------- modules


def test_modules_match_torchs(rng):
    x = torch.randn(6, 5, requires_grad=True)
    y = torch.randint(0, 5, (6,))
    t = torch.rand(6, 5)
    w = torch.rand(5) + 0.5
    pairs = [
        (lot.CrossEntropyLoss(weight=w, label_smoothing=0.1, ignore_index=2), torch.nn.CrossEntropyLoss(
            weight=w, label_smoothing=0.1, ignore_index=2), (x, y)),
        (lot.NLLLoss(reduction="sum"), torch.nn.NLLLoss(reduction="sum"), (x, y)),
        (lot.BCELoss(weight=w), torch.nn.BCELoss(weight=w), (x.sigmoid(), t)),
        (lot.BCEWithLogitsLoss(pos_weight=w, reduction="none"), torch.nn.BCEWithLogitsLoss(pos_weight=w,
                                                                                           reduction="none"), (x, t)),
        (lot.LogSoftmax(1), torch.nn.LogSoftmax(1), (x,)),
        (lot.Softmax(0), torch.nn.Softmax(0), (x,)),
        (lot.LogSigmoid(), torch.nn.LogSigmoid(), (x,)),
        (lot.Sigmoid(), torch.nn.Sigmoid(), (x,)),
    ]
    for ours, theirs, args in pairs:
        assert isinstance(ours, type(theirs)) and isinstance(ours, torch.nn.Module)
        assert repr(ours) == repr(theirs)
        assert ours.state_dict().keys() == theirs.state_dict().keys()
        with OpRecorder() as rec:
            a = ours(*args)
        assert rec.ours(), type(ours)
        b = theirs(*args)
        torch.testing.assert_close(a, b)
        (ga,) = torch.autograd.grad(a.sum(), x, retain_graph=True)
        (gb,) = torch.autograd.grad(b.sum(), x, retain_graph=True)
        torch.testing.assert_close(ga, gb)


# ----------------------------------------------------------------------------- patch()


def patched_calls(x, y, t):
    """torch's own functions, methods and modules, as code that cannot be edited calls them."""
    return [
        ("F.cross_entropy", lambda: F.cross_entropy(x, y)),
        ("nn.CrossEntropyLoss", lambda: torch.nn.CrossEntropyLoss(label_smoothing=0.1)(x, y)),
        ("F.nll_loss", lambda: F.nll_loss(x, y)),
        ("nn.NLLLoss", lambda: torch.nn.NLLLoss()(x, y)),
        ("F.binary_cross_entropy", lambda: F.binary_cross_entropy(torch.sigmoid(x), t)),
        ("nn.BCELoss", lambda: torch.nn.BCELoss()(x.sigmoid(), t)),
        ("F.binary_cross_entropy_with_logits", lambda: F.binary_cross_entropy_with_logits(x, t)),
        ("nn.BCEWithLogitsLoss", lambda: torch.nn.BCEWithLogitsLoss()(x, t)),
        ("F.log_softmax", lambda: F.log_softmax(x, dim=1)),
        ("torch.log_softmax", lambda: torch.log_softmax(x, 1)),
        ("Tensor.log_softmax", lambda: x.log_softmax(-1)),
        ("nn.LogSoftmax", lambda: torch.nn.LogSoftmax(1)(x)),
        ("F.softmax", lambda: F.softmax(x, 0)),
        ("torch.softmax", lambda: torch.softmax(x, 1, dtype=torch.float64)),
        ("Tensor.softmax", lambda: x.softmax(1)),
        ("F.logsigmoid", lambda: F.logsigmoid(x)),
        ("torch.sigmoid", lambda: torch.sigmoid(x)),
        ("Tensor.sigmoid", lambda: x.sigmoid()),
        ("F.sigmoid", lambda: F.sigmoid(x)),
        ("torch.logsumexp", lambda: torch.logsumexp(x, 1)),
        ("Tensor.logsumexp", lambda: x.logsumexp((0, 1), keepdim=True)),
        ("torch.special.logsumexp", lambda: torch.special.logsumexp(x, 1)),
    ]


def test_patch_routes_torchs_calls_to_logitops_inside_the_block_only():
    x = torch.randn(6, 5, requires_grad=True)
    y = torch.randint(0, 5, (6,))
    t = torch.rand(6, 5)
    for name, call in patched_calls(x, y, t):
        with OpRecorder() as outside:
            expected = call()
        assert outside.ours() == [], name
        with lot.patch(), OpRecorder() as inside:
            got = call()
            (g_in,) = torch.autograd.grad(got.sum(), x)
        assert inside.ours(), f"{name}: logitops was not called"
        torch_kernels = [n for n in inside.names if n in ("aten::_log_softmax", "aten::_softmax", "aten::sigmoid",
                                                          "aten::logsumexp", "aten::nll_loss_forward",
                                                          "aten::binary_cross_entropy", "aten::log_sigmoid_forward")]
        assert torch_kernels == [], f"{name}: torch's kernels ran inside the block: {torch_kernels}"
        torch.testing.assert_close(got, expected)
        (g_out,) = torch.autograd.grad(expected.sum(), x)
        torch.testing.assert_close(g_in, g_out)
        with OpRecorder() as after:
            call()
        assert after.ours() == [], f"{name}: still routed after the block"


def test_patch_falls_back_without_recursion():
    """Inside the block, tensors we do not take run torch's code (not routed back to us)."""
    x = torch.randn(6, 5, dtype=torch.float16)
    y = torch.randint(0, 5, (6,))
    with lot.patch(), OpRecorder() as rec:
        got = F.cross_entropy(x, y)
        lsm = F.log_softmax(x, 1)
        direct = lot.cross_entropy(x.float(), y)  # lot's own call inside the block: computed once, by us
    assert torch.equal(got, F.cross_entropy(x, y)) and torch.equal(lsm, F.log_softmax(x, 1))
    assert rec.ours() == ["logitops::cross_entropy"]
    torch.testing.assert_close(direct, F.cross_entropy(x.float(), y))


def test_patch_leaves_other_ops_alone():
    a, b = torch.randn(3), torch.randn(3)
    with lot.patch(), OpRecorder() as rec:
        c = torch.add(a, b)
        d = (a * b).relu()
    assert torch.equal(c, a + b) and torch.equal(d, (a * b).relu())
    assert rec.ours() == []


def test_dispatcher_path_equals_eager_path(rng):
    """Under a dispatch mode (as in tracing) the custom ops run; eagerly, their plain functions and
    autograd.Functions: the same numbers, bit for bit, forward and backward."""
    x = make_logits(rng, (6, 5), np.float32)
    y = make_targets(rng, (6, 5))
    t = make_target((6, 5), np.float32, rng, hard=False)
    calls = [lambda a: lot.cross_entropy(a, tensor(y), label_smoothing=0.1),
             lambda a: lot.nll_loss(a, tensor(y), reduction="none"),
             lambda a: lot.binary_cross_entropy_with_logits(a, tensor(t), pos_weight=torch.full((5,), 2.0)),
             lambda a: lot.binary_cross_entropy(a.sigmoid(), tensor(t), reduction="sum"),
             lambda a: lot.logsumexp(a, (0, 1)), lambda a: lot.log_softmax(a, 0), lambda a: lot.softmax(a, 1),
             lambda a: lot.logsigmoid(a), lambda a: lot.sigmoid(a)]
    for call in calls:
        results = []
        for traced in (False, True):
            a = tensor(x, requires_grad=True)
            with OpRecorder() if traced else warnings.catch_warnings() as rec:
                out = call(a)
                out.backward(torch.full_like(out, 1.5))
            if traced:
                assert rec.ours()
            results.append((out.detach(), a.grad))
        assert torch.equal(results[0][0], results[1][0]) and torch.equal(results[0][1], results[1][1])


def test_gradient_buffers_are_reused_only_when_free():
    """Large fused gradients go into buffers reused across steps (no page faults per step), but
    a gradient someone still holds is never written over."""
    lot.empty_cache()
    x = torch.randn(512, 1000, requires_grad=True)  # 2 MB of gradient: pooled
    y = torch.randint(0, 1000, (512,))
    ptrs = []
    for _ in range(3):
        x.grad = None  # what optimizer.zero_grad() does
        lot.cross_entropy(x, y).backward()
        ptrs.append(x.grad.data_ptr())
    assert len(set(ptrs)) == 1
    held = x.grad
    kept = held.clone()
    x.grad = None
    lot.cross_entropy(x * 2, y).backward()  # a different gradient, while `held` is alive
    assert x.grad.data_ptr() != held.data_ptr()
    assert torch.equal(held, kept)
    ref = x.detach().clone().requires_grad_(True)
    F.cross_entropy(ref * 2, y).backward()
    torch.testing.assert_close(x.grad, ref.grad)
    lot.empty_cache()
    assert lot._pool == []
