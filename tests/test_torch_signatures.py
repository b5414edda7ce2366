"""torch's signatures in the NumPy API (SPEC.md, Functions): every loss takes torch.nn.functional's
positional order, legacy `size_average`/`reduce` included, with torch's rules and warning; our
own extensions are keyword-only after torch's arguments; log_softmax/softmax take torch's
`dtype=`. Everything is compared with torch itself: its signatures, its numbers, its warnings.
"""

from __future__ import annotations

import inspect
import itertools
import warnings

import ml_dtypes
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from _helpers import assert_close

import logitops as lo

LOSSES = ("cross_entropy", "nll_loss", "binary_cross_entropy", "binary_cross_entropy_with_logits")
# Our keyword-only extras, after torch's arguments.
EXTRAS = {"": [], "_backward": [("wrt", "input")], "_value_and_grad": [("out", None)]}
LEGACY = (None, True, False)
REDUCTIONS = ("mean", "sum", "none")
P = inspect.Parameter


def torch_params(name: str) -> list[tuple[str, object]]:
    return [(p.name, p.default) for p in inspect.signature(getattr(F, name)).parameters.values()]


# cross_entropy's LLM-head keywords (SPEC "LLM heads") come before the variant's own.
HEAD_EXTRAS = {"cross_entropy": [("z_loss", 0.0), ("softcap", None)]}


@pytest.mark.parametrize("variant", list(EXTRAS))
@pytest.mark.parametrize("base", LOSSES)
def test_signature_is_torchs(base, variant):
    """Positional-or-keyword parameters: torch's names, order and defaults (grad_output first for
    backward); then keyword-only: ours."""
    sig = inspect.signature(getattr(lo, base + variant))
    ps = list(sig.parameters.values())
    positional = [(p.name, p.default) for p in ps if p.kind == P.POSITIONAL_OR_KEYWORD]
    keyword_only = [(p.name, p.default) for p in ps if p.kind == P.KEYWORD_ONLY]
    assert [p.kind for p in ps] == [P.POSITIONAL_OR_KEYWORD] * len(positional) + [P.KEYWORD_ONLY] * len(keyword_only)
    lead = [("grad_output", P.empty)] if variant == "_backward" else []
    assert positional == lead + torch_params(base)
    assert keyword_only == HEAD_EXTRAS.get(base, []) + EXTRAS[variant]


@pytest.mark.parametrize("name", ["log_softmax", "softmax", "log_softmax_backward", "softmax_backward"])
def test_softmax_takes_torchs_dtype_keyword(name):
    ps = inspect.signature(getattr(lo, name)).parameters
    assert "dtype" in ps and ps["dtype"].kind == P.KEYWORD_ONLY and ps["dtype"].default is None
    assert torch_params(name.removesuffix("_backward"))[-1] == ("dtype", None)  # torch's name


# ----------------------------------------------------------------------------- legacy reduction


def make_args(base: str, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(input, target, weight) in float64 with a per-class or per-element weight, so that the
    three reductions all differ."""
    if base in ("cross_entropy", "nll_loss"):
        x = rng.standard_normal((6, 4))
        if base == "nll_loss":
            x = np.log(np.exp(x) / np.exp(x).sum(1, keepdims=True))
        y = np.array([0, 3, 1, 1, 2, 0])
        return x, y, rng.uniform(0.2, 2.0, 4)
    x = rng.uniform(0.05, 0.95, (6, 4)) if base == "binary_cross_entropy" else rng.standard_normal((6, 4)) * 2
    return x, rng.uniform(0, 1, (6, 4)), rng.uniform(0.2, 2.0, 4)


def torch_resolved(size_average, reduce, reduction):
    """The reduction torch uses, from its own code (torch.nn._reduction)."""
    from torch.nn import _reduction

    if size_average is None and reduce is None:
        return reduction
    return _reduction.legacy_get_string(size_average, reduce, emit_warning=False)


def recorded(fn, *args, **kwargs):
    """(fn(*args, **kwargs), [(category, message, filename)] of the warnings it gave)."""
    with warnings.catch_warnings(record=True) as ws:
        warnings.simplefilter("always")
        r = fn(*args, **kwargs)
    return r, [(w.category, str(w.message), w.filename) for w in ws]


def legacy_kwargs(base: str, weight: np.ndarray, sa, rd, red) -> dict:
    kw = {"weight": weight, "size_average": sa, "reduce": rd, "reduction": red}
    if base == "cross_entropy":
        kw["label_smoothing"] = 0.1
    if base in ("cross_entropy", "nll_loss"):
        kw["ignore_index"] = 2
    return kw


@pytest.mark.parametrize("base", LOSSES)
def test_every_legacy_combination_against_torch(base, rng):
    """size_average x reduce x reduction: torch's value, gradients (backward with a random
    upstream gradient; fused) and warning, for every combination."""
    x, t, w = make_args(base, rng)
    f_torch = getattr(F, base)
    checked = 0
    for sa, rd, red in itertools.product(LEGACY, LEGACY, REDUCTIONS):
        what = f"{base} size_average={sa} reduce={rd} reduction={red}"
        kw = legacy_kwargs(base, w, sa, rd, red)
        tx = torch.tensor(x, requires_grad=True)
        tt = torch.tensor(t)
        tkw = {**kw, "weight": torch.tensor(w)}
        ref, ref_warnings = recorded(f_torch, tx, tt, **tkw)
        got, got_warnings = recorded(getattr(lo, base), x, t, **kw)
        assert_close(got, ref.detach().numpy(), np.float64, what=what)
        # The same warnings (category and message) as torch's, pointing at the caller's line.
        assert [w[:2] for w in got_warnings] == [w[:2] for w in ref_warnings], what
        assert len(got_warnings) == (0 if sa is None and rd is None else 1), what
        assert all(w[2] == __file__ for w in got_warnings), (what, got_warnings)
        resolved = torch_resolved(sa, rd, red)
        assert np.shape(got) == ((6,) if base in ("cross_entropy", "nll_loss") else (6, 4)) * (resolved == "none")

        g = rng.standard_normal(ref.shape) if resolved == "none" else np.float64(0.7)
        ref.backward(torch.tensor(g))
        gx, bw_warnings = recorded(getattr(lo, base + "_backward"), g, x, t, **kw)
        assert_close(gx, tx.grad.numpy(), np.float64, what=what + " backward")
        assert [w[:2] for w in bw_warnings] == [w[:2] for w in ref_warnings], what

        tx.grad = None
        ref1 = f_torch(tx, tt, **tkw) if sa is None and rd is None else recorded(f_torch, tx, tt, **tkw)[0]
        ref1.backward(torch.ones_like(ref1))
        (v, gv), vg_warnings = recorded(getattr(lo, base + "_value_and_grad"), x, t, **kw)
        assert_close(v, ref.detach().numpy(), np.float64, what=what + " fused loss")
        assert_close(gv, tx.grad.numpy(), np.float64, what=what + " fused grad")
        assert [w[:2] for w in vg_warnings] == [w[:2] for w in ref_warnings], what
        checked += 1
    assert checked == 27


def test_legacy_warning_is_torchs_under_filterwarnings_error(rng):
    """The suite runs with warnings as errors: the legacy arguments raise torch's UserWarning."""
    x, y, _ = make_args("cross_entropy", rng)
    with pytest.warns(UserWarning, match=r"^size_average and reduce args will be deprecated, please use "
                                         r"reduction='sum' instead\.$"):
        lo.cross_entropy(x, y, size_average=False)
    with pytest.raises(UserWarning):
        lo.nll_loss(x, y, reduce=False)


def test_bad_legacy_flags_are_refused(rng):
    """torch takes any object by its truth; we take bools and the ints 0 and 1, so a reduction
    string or an ignore_index in size_average's place (old positional calls:
    binary_cross_entropy(p, t, w, "sum"), cross_entropy(x, y, w, 3)) is an error."""
    x, t, w = make_args("binary_cross_entropy_with_logits", rng)
    xi, y, wi = make_args("cross_entropy", rng)
    for arg in ("size_average", "reduce"):
        for bad in ("sum", "mean", 0.5, [True], -100, 2, np.int64(3)):
            for f, args in ((lo.binary_cross_entropy_with_logits, (x, t)), (lo.cross_entropy, (xi, y)),
                            (lo.nll_loss_backward, (1.0, xi, y)), (lo.binary_cross_entropy_value_and_grad,
                                                                    (np.clip(x, 0, 1), t))):
                with pytest.raises(TypeError, match=arg):
                    f(*args, **{arg: bad})
    with pytest.raises(TypeError, match="size_average"):
        lo.cross_entropy(xi, y, wi, "sum")
    with pytest.raises(TypeError, match="size_average"):
        lo.cross_entropy(xi, y, wi, 3)
    # ints and NumPy bools are flags, as in torch
    with pytest.warns(UserWarning, match="reduction='none'"):
        np.testing.assert_array_equal(lo.cross_entropy(xi, y, reduce=np.bool_(False)),
                                      lo.cross_entropy(xi, y, reduction="none"))
    with pytest.warns(UserWarning, match="reduction='sum'"):
        assert lo.binary_cross_entropy_with_logits(x, t, size_average=0) == \
            lo.binary_cross_entropy_with_logits(x, t, reduction="sum")


# ----------------------------------------------------------------------------- positional calls


def torch_and_ours(name: str, *args):
    """(torch's F.<name>(*args), ours): the same positional call, arrays as tensors for torch."""
    def tensor(a):
        return torch.tensor(a) if isinstance(a, np.ndarray) else a
    return getattr(F, name)(*map(tensor, args)).numpy(), getattr(lo, name)(*args)


def test_positional_calls_copied_from_torch_code(rng):
    x, y, w = make_args("cross_entropy", rng)
    logp = np.log(np.exp(x) / np.exp(x).sum(1, keepdims=True))
    z, t, _ = make_args("binary_cross_entropy_with_logits", rng)
    p = 1 / (1 + np.exp(-z))
    q = rng.uniform(0.5, 2.0, 4)
    calls = [
        ("cross_entropy", x, y, w, None, 2, None, "sum", 0.2),
        ("cross_entropy", x, y, None, None, -100, None, "none"),
        ("cross_entropy", x, y, w, None, 3),
        ("nll_loss", logp, y, w, None, 1, None, "mean"),
        ("nll_loss", logp, y, None, None, -100, None, "none"),
        ("binary_cross_entropy", p, t, w, None, None, "sum"),
        ("binary_cross_entropy", p, t, None, None, None, "none"),
        ("binary_cross_entropy_with_logits", z, t, w, None, None, "mean", q),
        ("binary_cross_entropy_with_logits", z, t, None, None, None, "none", q),
    ]
    for name, *args in calls:
        ref, got = torch_and_ours(name, *args)
        assert_close(got, ref, np.float64, what=f"{name}{tuple(type(a).__name__ for a in args)}")
    # positional legacy flags, as old torch code wrote them
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        for name, *args in [("cross_entropy", x, y, w, False, 2), ("nll_loss", logp, y, None, True, -100, False),
                            ("binary_cross_entropy", p, t, w, False),
                            ("binary_cross_entropy_with_logits", z, t, None, None, False, "mean", q)]:
            ref, got = torch_and_ours(name, *args)
            assert_close(got, ref, np.float64, what=name)
    # backward: grad_output, then the forward's positional arguments
    tx = torch.tensor(x, requires_grad=True)
    F.cross_entropy(tx, torch.tensor(y), torch.tensor(w), None, 2, None, "sum", 0.2).backward(torch.tensor(0.5))
    assert_close(lo.cross_entropy_backward(0.5, x, y, w, None, 2, None, "sum", 0.2), tx.grad.numpy(), np.float64)
    tz = torch.tensor(z, requires_grad=True)
    F.binary_cross_entropy_with_logits(tz, torch.tensor(t), None, None, None, "sum", torch.tensor(q)).backward()
    assert_close(lo.binary_cross_entropy_with_logits_backward(1.0, z, t, None, None, None, "sum", q),
                 tz.grad.numpy(), np.float64)


def test_extras_are_keyword_only(rng):
    x, y, w = make_args("cross_entropy", rng)
    with pytest.raises(TypeError):
        lo.cross_entropy_value_and_grad(x, y, w, None, -100, None, "mean", 0.0, np.empty_like(x))
    with pytest.raises(TypeError):
        lo.cross_entropy_backward(1.0, x, y, w, None, -100, None, "mean", 0.0, "input")


# ----------------------------------------------------------------------------- dtype=


@pytest.mark.parametrize("name", ["log_softmax", "softmax"])
def test_softmax_dtype_against_torch(name, rng):
    f_torch = getattr(F, name)
    f32 = (rng.standard_normal((5, 7)) * 3).astype(np.float32)
    for x in (f32, f32.astype(np.float64), f32.astype(np.float16), (f32 * 4).astype(np.int32), f32 > 0):
        for dt, tdt in ((np.float32, torch.float32), (np.float64, torch.float64)):
            for axis in (-1, 0):
                got = getattr(lo, name)(x, axis, dtype=dt)
                ref = f_torch(torch.from_numpy(x), dim=axis, dtype=tdt).numpy()
                assert_close(got, ref, dt, what=f"{name} {x.dtype} -> {np.dtype(dt)} axis {axis}")
    out = np.empty((5, 7))
    assert getattr(lo, name)(f32, dtype="float64", out=out) is out
    assert_close(out, f_torch(torch.from_numpy(f32), dim=-1, dtype=torch.float64).numpy(), np.float64)


@pytest.mark.parametrize("name", ["log_softmax", "softmax"])
def test_softmax_backward_dtype_against_torch(name, rng):
    """Computed in dtype, returned in x's dtype (as torch's x.grad)."""
    x = (rng.standard_normal((5, 7)) * 3).astype(np.float32)
    g = rng.standard_normal((5, 7))
    tx = torch.from_numpy(x.copy()).requires_grad_(True)
    getattr(F, name)(tx, dim=1, dtype=torch.float64).backward(torch.from_numpy(g))
    got = getattr(lo, name + "_backward")(g, x, 1, dtype=np.float64)
    assert_close(got, tx.grad.numpy(), np.float32)
    # without dtype nothing changes: float64 upstream gradient promotes, as before
    assert getattr(lo, name + "_backward")(g, x, 1).dtype == np.float64


@pytest.mark.parametrize("name", ["log_softmax", "softmax", "log_softmax_backward", "softmax_backward"])
def test_bad_dtype_keyword(name, rng):
    x = rng.standard_normal((3, 4))
    args = (np.ones((3, 4)), x) if name.endswith("_backward") else (x,)
    for bad in (ml_dtypes.float8_e4m3fn, np.int32, "int64", "complex64", "nonsense", 3, object, np.dtype([("a", "f4")])):
        with pytest.raises(TypeError, match="dtype"):
            getattr(lo, name)(*args, dtype=bad)
    for bad_x in (np.ones((3, 4), np.complex64), x.tolist(), "x"):
        with pytest.raises(TypeError, match=r"\bx\b"):
            getattr(lo, name)(*args[:-1], bad_x, dtype=np.float32)
