"""Every public function (discovered from logitops.__all__, see _api.py) under bad arguments and
valid-but-odd ones.

Bad: each gets the exception type SPEC.md gives (TypeError for dtypes and non-arrays, ValueError
for shapes, options and values, IndexError "Target 5 is out of bounds." for class targets) and
the message names the offending argument. Odd but valid: zero-size, all-ignored, NaN/±inf,
stride-0 broadcast views, Fortran order, negative strides, read-only, one-column inputs with
many rows: the result is torch's (or the contiguous copy's). Every call checks that no input
array was modified (_api.call). Each test walks all its cases and reports every failure at once.
"""

from __future__ import annotations

import re
from typing import Any

import numpy as np
import pytest
import torch

import logitops as lo

from _api import (BUILDERS, LOSSES, PRIMITIVES, ROW, call, call_kwargs, differentiable_wrt,
                  forward_kwargs, grad_output_for, is_reduced, params, public_functions, split,
                  torch_fn, torch_forward, torch_grad)
from _helpers import TOL, assert_close

FUNCS = public_functions()
F64 = np.dtype(np.float64)
CLASS = ("cross_entropy", "nll_loss")
BINARY = ("binary_cross_entropy", "binary_cross_entropy_with_logits")


def funcs_of(*bases: str, variants=("", "backward", "value_and_grad")) -> list[str]:
    return [n for n in FUNCS if split(n)[0] in bases and split(n)[1] in variants]


class Report:
    """Collects every failed expectation of a test, so one run shows them all."""

    def __init__(self) -> None:
        self.failures: list[str] = []

    def fail(self, msg: str) -> None:
        self.failures.append(msg)

    def raises(self, what: str, exc: Any, names: tuple[str, ...], name: str, kw: dict,
               match: str | None = None) -> None:
        """lo.<name>(**kw) must raise exc (a type or tuple) whose message names one of `names`."""
        try:
            r = call(name, kw)
        except AssertionError:
            raise
        except exc as e:
            msg = str(e)
            if names and not any(re.search(rf"(?<![\w]){re.escape(n)}(?![\w])", msg) for n in names):
                self.fail(f"{name} [{what}]: {type(e).__name__}({msg!r}) does not name {names}")
            if match is not None and match not in msg:
                self.fail(f"{name} [{what}]: {type(e).__name__}({msg!r}) does not say {match!r}")
        except Exception as e:  # noqa: BLE001 - the wrong type is the failure we report
            self.fail(f"{name} [{what}]: raised {type(e).__name__}({str(e)[:200]!r}), expected {_ename(exc)}")
        else:
            self.fail(f"{name} [{what}]: returned {_short(r)}, expected {_ename(exc)}")

    def check(self) -> None:
        assert not self.failures, f"{len(self.failures)} failures:\n" + "\n".join(self.failures)


def _ename(exc) -> str:
    return "/".join(e.__name__ for e in exc) if isinstance(exc, tuple) else exc.__name__


def _short(r) -> str:
    return repr(r)[:120]


def full_kwargs(name: str, rng, dtype=F64, **opts) -> dict:
    """Valid arguments with every optional array present (weight, pos_weight)."""
    base = split(name)[0]
    if base in BINARY:
        opts.setdefault("weight", "last")
        opts.setdefault("pos_weight", "last")
    if base in CLASS:
        opts.setdefault("weight", True)
    return call_kwargs(name, rng, dtype, **opts)


# ----------------------------------------------------------------------------- coverage


def test_every_public_function_has_a_builder():
    """New public functions must be added to _api.BUILDERS (and so to every test here)."""
    missing = [n for n in FUNCS if split(n)[0] not in BUILDERS]
    assert not missing, f"public functions without an argument builder in tests/_api.py: {missing}"
    for n in FUNCS:
        base, variant = split(n)
        assert base in lo.__all__, f"{n} has no forward {base}"
        if variant == "backward":
            assert params(n)[0] == "grad_output", f"{n}: grad_output must come first"


@pytest.mark.parametrize("name", FUNCS)
def test_valid_call_works(name, rng):
    """The builders' arguments are valid (otherwise every bad-input test below is moot)."""
    call(name, full_kwargs(name, rng))
    call(name, call_kwargs(name, rng))


# ----------------------------------------------------------------------------- bad dtypes / types


def _float_array_args(name: str, kw: dict) -> list[str]:
    base = split(name)[0]
    out = [k for k in ("x", "input", "target", "weight", "pos_weight", "grad_output")
           if isinstance(kw.get(k), np.ndarray)]
    if base in CLASS:
        out.remove("target")  # class indices: test_bad_class_targets
    return out


def _bad_replacements(v: np.ndarray):
    """(label, replacement, expected exception) for a float array argument."""
    for dt in (np.int64, np.int32, np.uint8, np.bool_, np.complex128, np.float16, object):
        yield np.dtype(dt).name, v.astype(dt), TypeError
    if np.finfo(np.longdouble).bits > 64:
        yield "longdouble", v.astype(np.longdouble), TypeError
    yield "list", v.tolist(), TypeError
    yield "str", "abc", TypeError
    yield "None", None, TypeError
    yield "dict", {"a": 1}, TypeError


@pytest.mark.parametrize("name", FUNCS)
def test_bad_dtypes_and_non_arrays(name, rng):
    rep = Report()
    for reduction in ("none", "mean") if split(name)[0] in LOSSES else (None,):
        opts = {"reduction": reduction} if reduction else {}
        kw = full_kwargs(name, rng, **opts)
        for arg in _float_array_args(name, kw):
            for label, bad, exc in _bad_replacements(kw[arg]):
                if label == "None" and arg in ("weight", "pos_weight"):
                    continue  # None is their default
                if arg == "grad_output" and is_reduced(split(name)[0], kw) and label == "list":
                    bad = [0.5, 0.5]  # a 1-element list could pass as a scalar; two cannot
                    exc = (TypeError, ValueError)
                rep.raises(f"{arg}={label}, reduction={reduction}", exc, (arg,), name, {**kw, arg: bad})
            # A Python or NumPy float scalar where an array is expected (grad_output of a
            # reduced loss is a scalar by contract; a primitive's may be 0-d).
            if arg == "grad_output" and (is_reduced(split(name)[0], kw) or kw[arg].ndim == 0):
                continue
            exc = (TypeError, ValueError) if arg == "grad_output" else TypeError
            rep.raises(f"{arg}=0.5", exc, (arg,), name, {**kw, arg: 0.5})
            rep.raises(f"{arg}=np.float64", exc, (arg,), name, {**kw, arg: np.float64(0.5)})
    rep.check()


@pytest.mark.parametrize("name", funcs_of(*CLASS))
def test_bad_class_targets(name, rng):
    """Class-index targets: integer dtypes only (floats only as probabilities of input's shape);
    every index in [0, C) or == ignore_index, else IndexError 'Target v is out of bounds.'."""
    rep = Report()
    base = split(name)[0]
    kw = full_kwargs(name, rng, shape=(6, 5))  # C = 5
    t = kw["target"]
    for dt in (np.bool_, np.complex128, np.float16, object):
        rep.raises(f"target {np.dtype(dt).name}", TypeError, ("target",), name, {**kw, "target": t.astype(dt)})
    for dt in (np.float32, np.float64):  # floats of the index shape: not probabilities
        rep.raises(f"target {np.dtype(dt).name} (N,)", (TypeError, ValueError), ("target",), name,
                   {**kw, "target": t.astype(dt)})
    if base == "nll_loss":
        rep.raises("nll float target (N, C)", TypeError, ("target",), name,
                   {**kw, "target": np.full((6, 5), 0.2)})
    rep.raises("target list", TypeError, ("target",), name, {**kw, "target": t.tolist()})
    rep.raises("target int scalar", (TypeError, ValueError), ("target",), name, {**kw, "target": 3})
    rep.raises("target None", TypeError, ("target",), name, {**kw, "target": None})

    for v in (-1, 5, 6, 2**40, -(2**40), 2**62, -99, -101):
        bad = t.copy()
        bad[3] = v
        rep.raises(f"target {v}", IndexError, (), name, {**kw, "target": bad}, match=f"Target {v} is out of bounds.")
    for dt, v in ((np.uint8, 255), (np.int8, -1), (np.uint64, 2**63 + 5), (np.int16, 5)):
        bad = t.astype(dt)
        bad[0] = v
        rep.raises(f"target {np.dtype(dt).name} {v}", IndexError, (), name, {**kw, "target": bad},
                   match=f"Target {v} is out of bounds.")
    # ignore_index only exempts its own value
    bad = t.copy()
    bad[1] = 7
    rep.raises("target 7 with ignore_index 3", IndexError, (), name, {**kw, "target": bad, "ignore_index": 3},
               match="Target 7 is out of bounds.")
    # zero classes: every target is out of bounds (torch: IndexError "Target 0 ...")
    kz = {**kw, "input": np.zeros((6, 0)), "weight": np.zeros(0)}
    if name.endswith("_backward") and not is_reduced(base, kw):
        kz["grad_output"] = np.ones(6)
    rep.raises("zero classes", IndexError, (), name, kz, match="Target 0 is out of bounds.")
    rep.check()


# ----------------------------------------------------------------------------- bad shapes


def _shape_cases(name: str, kw: dict):
    """(label, replaced kwargs, argument the message must name) with a wrong shape."""
    base, variant = split(name)
    x = kw["x"] if "x" in kw else kw["input"]
    if base in PRIMITIVES:
        if variant == "backward":
            g = kw["grad_output"]
            yield "grad_output transposed", {**kw, "grad_output": np.ones(g.shape[::-1] + (2,))}, "grad_output"
            yield "grad_output too small", {**kw, "grad_output": np.ones(max(g.size - 1, 0))}, "grad_output"
        return
    if base in BINARY:
        N, C = x.shape
        yield "target (N, C+1)", {**kw, "target": np.full((N, C + 1), 0.5)}, "target"
        yield "target (C,) broadcastable", {**kw, "target": np.full((C,), 0.5)}, "target"
        yield "target (1, N, C)", {**kw, "target": np.full((1, N, C), 0.5)}, "target"
        yield "weight (C+1,)", {**kw, "weight": np.ones(C + 1)}, "weight"
        yield "weight (N+1, 1)", {**kw, "weight": np.ones((N + 1, 1))}, "weight"
        yield "weight enlarging (2, N, C)", {**kw, "weight": np.ones((2, N, C))}, "weight"
        if "pos_weight" in kw:
            yield "pos_weight (C+1,)", {**kw, "pos_weight": np.ones(C + 1)}, "pos_weight"
            yield "pos_weight enlarging (3, N, C)", {**kw, "pos_weight": np.ones((3, N, C))}, "pos_weight"
    if base in CLASS:
        N, C = x.shape
        t = kw["target"]
        yield "target (N+1,)", {**kw, "target": np.zeros(N + 1, np.int64)}, "target"
        yield "target (N, 1)", {**kw, "target": np.zeros((N, 1), np.int64)}, "target"
        yield "target 0-d", {**kw, "target": np.array(1)}, "target"
        yield "int target of input's shape", {**kw, "target": np.zeros((N, C), np.int64)}, "target"
        yield "weight (C+1,)", {**kw, "weight": np.ones(C + 1)}, "weight"
        yield "weight (C, 1)", {**kw, "weight": np.ones((C, 1))}, "weight"
        yield "weight 0-d", {**kw, "weight": np.array(1.0)}, "weight"
        yield "input 0-d", {**kw, "input": np.array(1.0), "target": np.array(0)}, "input"
        yield "input (N, C, 3), target (N,)", {**kw, "input": np.zeros((N, C, 3)), "target": t}, "target"
        if base == "cross_entropy":
            yield "prob target (N, C+1)", {**kw, "target": np.full((N, C + 1), 1.0 / C)}, "target"
    if variant == "backward" and kw["reduction"] == "none":
        g = kw["grad_output"]
        yield "grad_output transposed", {**kw, "grad_output": np.ones(g.shape[::-1] + (2,))}, "grad_output"
        yield "grad_output 0-d", {**kw, "grad_output": np.array(1.0)}, "grad_output"
    if variant == "backward" and kw["reduction"] != "none":
        yield "grad_output (2,) for a reduced loss", {**kw, "grad_output": np.ones(2)}, "grad_output"


@pytest.mark.parametrize("name", FUNCS)
def test_bad_shapes(name, rng):
    rep = Report()
    for reduction in ("none", "mean", "sum") if split(name)[0] in LOSSES else (None,):
        opts = {"reduction": reduction} if reduction else {}
        kw = full_kwargs(name, rng, **opts)
        for label, bad, arg in _shape_cases(name, kw):
            rep.raises(f"{label}, reduction={reduction}", ValueError, (arg,), name, bad)
    rep.check()


@pytest.mark.parametrize("name", funcs_of(*BINARY, *CLASS, variants=("", "backward")))
def test_shape_errors_name_both_shapes(name, rng):
    """SPEC: a wrong shape raises ValueError naming both shapes."""
    kw = full_kwargs(name, rng, shape=(6, 5), reduction="sum")
    bad_t = np.full((6, 4), 0.5) if split(name)[0] in BINARY else np.zeros(7, np.int64)
    with pytest.raises(ValueError) as ei:
        call(name, {**kw, "target": bad_t})
    msg = str(ei.value)
    assert str(bad_t.shape) in msg and (split(name)[0] not in BINARY or "(6, 5)" in msg), msg


# ----------------------------------------------------------------------------- bad options


BAD_REDUCTIONS = ("avg", "MEAN", "", " mean", None, 0, True, ("mean",))


@pytest.mark.parametrize("name", funcs_of(*LOSSES))
def test_bad_options(name, rng):
    rep = Report()
    base, variant = split(name)
    kw = full_kwargs(name, rng, reduction="sum")
    for r in BAD_REDUCTIONS:
        rep.raises(f"reduction={r!r}", ValueError, ("reduction",), name, {**kw, "reduction": r})
    if "ignore_index" in params(name):
        for v in (1.5, "1", None, [1], np.float64(1.0)):
            rep.raises(f"ignore_index={v!r}", TypeError, ("ignore_index",), name, {**kw, "ignore_index": v})
    if "label_smoothing" in params(name):
        for v in (-0.1, 1.01, 2.0, float("nan"), float("inf"), -float("inf")):
            rep.raises(f"label_smoothing={v!r}", ValueError, ("label_smoothing",), name, {**kw, "label_smoothing": v})
        for v in ("0.1", None, [0.1], 1j):
            rep.raises(f"label_smoothing={v!r}", TypeError, ("label_smoothing",), name, {**kw, "label_smoothing": v})
    if "wrt" in params(name):
        for v in ("weight", "x", "Input", None, 0):
            rep.raises(f"wrt={v!r}", ValueError, ("wrt",), name, {**kw, "wrt": v})
        if "target" not in differentiable_wrt(base, kw):
            rep.raises("wrt='target' of class indices", ValueError, ("wrt", "target"), name, {**kw, "wrt": "target"})
    if base == "binary_cross_entropy":
        for arg in ("input", "target"):
            for v in (-0.1, 1.1, np.nan, np.inf, -np.inf, -1e-30):
                bad = kw[arg].copy()
                bad[2, 3] = v
                rep.raises(f"{arg} value {v}", ValueError, (arg,), name, {**kw, arg: bad})
    rep.check()


@pytest.mark.parametrize("name", funcs_of(*ROW))
def test_bad_axes(name, rng):
    rep = Report()
    kw = call_kwargs(name, rng, shape=(3, 4, 5))
    for ax in (3, -4, (0, 3), 10**20, (-4,)):
        rep.raises(f"axis={ax!r}", ValueError, ("axis",), name, {**kw, "axis": ax})
    for ax in ((0, 0), (1, -2), (2, -1, 0, 2)):
        rep.raises(f"axis={ax!r}", ValueError, ("axis",), name, {**kw, "axis": ax})
    for ax in (1.0, "0", (0, 1.0), True, [[0]], np.float64(0)):
        rep.raises(f"axis={ax!r}", TypeError, ("axis",), name, {**kw, "axis": ax})
    rep.check()


def test_bad_thread_counts():
    before = lo.get_num_threads()
    try:
        for n in (0, -1, -(2**40)):
            with pytest.raises(ValueError, match=r"\bn\b"):
                lo.set_num_threads(n)
        for n in (1.5, "2", None, True, [2]):
            with pytest.raises(TypeError, match=r"\bn\b"):
                lo.set_num_threads(n)
        assert lo.get_num_threads() == before
        lo.set_num_threads(np.int64(3))
        assert lo.get_num_threads() == 3
        lo.set_num_threads(2**70)  # clamped, not an overflow
        assert lo.get_num_threads() >= 1
    finally:
        lo.set_num_threads(before)


# ----------------------------------------------------------------------------- out


@pytest.mark.parametrize("name", funcs_of(*LOSSES, variants=("value_and_grad",)))
def test_bad_out(name, rng):
    rep = Report()
    for dtype in (np.float32, np.float64):
        kw = full_kwargs(name, rng, dtype=dtype, reduction="mean")
        x = kw["input"]
        other = np.float64 if dtype == np.float32 else np.float32
        rep.raises("out wrong shape", ValueError, ("out",), name, {**kw, "out": np.zeros(x.shape[::-1] + (1,), dtype)})
        rep.raises("out (N*C,)", ValueError, ("out",), name, {**kw, "out": np.zeros(x.size, dtype)})
        rep.raises("out wrong dtype", TypeError, ("out",), name, {**kw, "out": np.zeros(x.shape, other)})
        rep.raises("out int", TypeError, ("out",), name, {**kw, "out": np.zeros(x.shape, np.int64)})
        rep.raises("out list", TypeError, ("out",), name, {**kw, "out": np.zeros(x.shape, dtype).tolist()})
        ro = np.zeros(x.shape, dtype)
        ro.flags.writeable = False
        rep.raises("out read-only", ValueError, ("out",), name, {**kw, "out": ro})
        # A read-only input passed as out: it may not be written either.
        xi = x.copy()
        xi.flags.writeable = False
        rep.raises("out = read-only input", ValueError, ("out",), name, {**kw, "input": xi, "out": xi})
        # Partial overlap with input (a shifted view of the same buffer): unsupported.
        buf = np.concatenate([x.ravel(), np.zeros(3, dtype)])
        xin = buf[: x.size].reshape(x.shape)
        xin2 = np.array(xin)
        try:
            kwo = {**kw, "input": xin, "out": buf[3:].reshape(x.shape)}
            r = call(name, kwo)
        except ValueError as e:
            if "out" not in str(e):
                rep.fail(f"{name} [out overlaps input]: {e!r} does not name out")
        except Exception as e:  # noqa: BLE001
            rep.fail(f"{name} [out overlaps input]: raised {e!r}, expected ValueError or a correct result")
        else:  # supported after all: then it must be right
            want = call(name, {**kw, "input": xin2})
            if not np.allclose(r[1], want[1], equal_nan=True):
                rep.fail(f"{name} [out overlaps input]: wrong gradient, expected ValueError")
        # out sharing memory with target / weight
        if kw["target"].dtype == x.dtype and kw["target"].shape == x.shape:
            tgt = kw["target"].copy()
            try:
                r = call(name, {**kw, "target": tgt, "out": tgt})
            except ValueError as e:
                if "out" not in str(e):
                    rep.fail(f"{name} [out is target]: {e!r} does not name out")
            except Exception as e:  # noqa: BLE001
                rep.fail(f"{name} [out is target]: raised {e!r}")
            else:
                want = call(name, kw)
                if not np.allclose(r[1], want[1], equal_nan=True) or not np.allclose(r[0], want[0], equal_nan=True):
                    rep.fail(f"{name} [out is target]: wrong result, expected ValueError")
    rep.check()


@pytest.mark.parametrize("name", funcs_of(*LOSSES, variants=("value_and_grad",)))
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_out_is_input_and_odd_out(name, reduction, rng):
    """out=input overwrites the logits with the gradient; a fresh out receives it; results equal
    the no-out call's."""
    kw = full_kwargs(name, rng, reduction=reduction)
    loss0, g0 = call(name, kw)
    out = np.full(kw["input"].shape, np.nan)
    loss1, g1 = call(name, {**kw, "out": out})
    assert g1 is out or np.shares_memory(g1, out)
    np.testing.assert_array_equal(out, g0)
    np.testing.assert_array_equal(loss1, loss0)
    x = kw["input"].copy()
    loss2, g2 = call(name, {**kw, "input": x, "out": x})
    np.testing.assert_array_equal(x, g0)
    np.testing.assert_array_equal(loss2, loss0)


# ----------------------------------------------------------------------------- valid but odd


def _check_vs_torch(rep: Report, name: str, kw: dict, what: str, rng, nan_strict: bool = True) -> None:
    """Forward, every backward and the fused call of `name`'s base on kw against torch (float64
    oracle). nan_strict: NaN exactly where torch has NaN; else only where torch is not NaN."""
    base = split(name)[0]
    dt = (kw["x"] if "x" in kw else kw["input"]).dtype
    rtol, atol = TOL[np.dtype(dt)]

    def cmp(label, got, want):
        got = np.asarray(got, dtype=np.float64)
        want = np.asarray(want, dtype=np.float64)
        if got.shape != want.shape:
            rep.fail(f"{base} [{what}] {label}: shape {got.shape}, torch {want.shape}")
            return
        tn = np.isnan(want)
        if base == "cross_entropy" and "loss" not in label and label != "forward" and kw["target"].dtype.kind in "iu":
            # An ignored sample's gradient is 0 even if its logits are NaN (torch: NaN through
            # log_softmax's backward; its loss is 0 in both). Deviation reported for the README.
            ign = np.expand_dims(kw["target"] == kw.get("ignore_index", -100), 1 if got.ndim > 1 else 0)
            tn = tn & ~np.broadcast_to(ign, tn.shape)
            want = np.where(np.broadcast_to(ign, want.shape), 0.0, want)
        if nan_strict and not np.array_equal(np.isnan(got), tn):
            at = np.isnan(got) != tn
            rep.fail(f"{base} [{what}] {label}: NaN pattern differs at {np.argwhere(at)[:3].tolist()}: "
                     f"got {got[at][:3]}, torch {want[at][:3]}")
            return
        ok = ~tn
        if not np.allclose(got[ok], want[ok], rtol=rtol, atol=atol):
            bad = np.argwhere(~np.isclose(got, want, rtol=rtol, atol=atol) & ok)[:3].tolist()
            rep.fail(f"{base} [{what}] {label}: differs from torch at {bad}: "
                     f"got {got[tuple(np.array(bad).T)] if bad else got}, torch {want[tuple(np.array(bad).T)] if bad else want}")

    try:
        want = torch_forward(base, kw)
    except Exception as e:  # noqa: BLE001 - torch rejects it: so must we
        try:
            call(base, kw)
        except (ValueError, TypeError, IndexError):
            return
        rep.fail(f"{base} [{what}]: torch raises {e!r}, we return")
        return
    try:
        cmp("forward", call(base, kw), want)
        g = grad_output_for(base, kw, rng)
        for wrt in differentiable_wrt(base, kw):
            if base + "_backward" in FUNCS:
                cmp(f"backward wrt {wrt}",
                    call(base + "_backward", {"grad_output": g, **kw, **({"wrt": wrt} if wrt == "target" else {})}),
                    torch_grad(base, kw, g, wrt))
        if base + "_value_and_grad" in FUNCS:
            loss, grad = call(base + "_value_and_grad", kw)
            cmp("fused loss", loss, want)
            cmp("fused grad", grad, torch_grad(base, kw, np.ones_like(want), "input"))
    except AssertionError:
        raise
    except Exception as e:  # noqa: BLE001
        rep.fail(f"{base} [{what}]: raised {type(e).__name__}: {e}")


def _bases() -> list[str]:
    return [b for b in BUILDERS if b in FUNCS]


ZERO_SHAPES = {
    "primitive": [((0,), {}), ((0, 5), {}), ((5, 0), {}), ((0, 0), {}), ((2, 0, 3), {"axis": (0, 2)}),
                  ((0, 4), {"axis": None}), ((3, 0), {"axis": 0})],
    "binary": [((0,), {}), ((0, 5), {}), ((4, 0), {})],
    "class": [((0, 5), {}), ((0, 5, 3), {}), ((3, 5, 0), {}), ((0, 0), {})],
}


def _family(base: str) -> str:
    return "primitive" if base in PRIMITIVES else "binary" if base in BINARY else "class"


@pytest.mark.parametrize("base", _bases())
def test_zero_size(base, rng):
    """Empty inputs: torch's shapes; 'mean' of nothing is nan, 'sum' 0 (SPEC)."""
    rep = Report()
    for shape, opts in ZERO_SHAPES[_family(base)]:
        for red in ("mean", "sum", "none") if base in LOSSES else (None,):
            o = dict(opts, **({"reduction": red} if red else {}))
            if base == "logsumexp":
                o["keepdims"] = True
            kw = forward_kwargs(base, rng, shape=shape, **o)
            _check_vs_torch(rep, base, kw, f"shape {shape} {o}", rng)
            if base in LOSSES and red == "mean" and kw["input"].size == 0 or (base in CLASS and red == "mean"
                                                                              and np.size(kw["target"]) == 0):
                r = call(base, kw)
                if not np.isnan(r):
                    rep.fail(f"{base} [shape {shape} mean]: {r}, expected nan")
    rep.check()


@pytest.mark.parametrize("base", [b for b in _bases() if b in CLASS])
@pytest.mark.parametrize("ignore_index", [-100, 0, 3, -1])
def test_all_ignored(base, ignore_index, rng):
    """Every target ignored: mean -> nan with zero gradients, sum -> 0, none -> zeros."""
    for red in ("mean", "sum", "none"):
        for shape in ((6, 5), (2, 5, 3)):
            kw = forward_kwargs(base, rng, shape=shape, reduction=red, weight=True, ignore_index=ignore_index,
                                n_ignored=10**6, label_smoothing=0.2 if base == "cross_entropy" else 0.0)
            r = call(base, kw)
            if red == "mean":
                assert np.isnan(r)
            else:
                assert np.all(np.asarray(r) == 0) and np.shape(r) == torch_forward(base, kw).shape
            if base + "_backward" in FUNCS:
                g = call(base + "_backward", {"grad_output": grad_output_for(base, kw, rng), **kw})
                assert g.shape == kw["input"].shape and np.all(g == 0), g
            if base + "_value_and_grad" in FUNCS:
                loss, g = call(base + "_value_and_grad", kw)
                assert np.array_equal(loss, r, equal_nan=True) and np.all(g == 0)


def _inject(a: np.ndarray, rng, specials, frac=0.3) -> np.ndarray:
    a = a.copy()
    if a.size:
        flat = a.reshape(-1)
        idx = rng.random(flat.size) < frac
        flat[idx] = rng.choice(specials, idx.sum())
    return a


@pytest.mark.parametrize("base", _bases())
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_nan_everywhere(base, dtype, rng):
    """NaN in gives NaN out exactly where torch gives NaN; other results match torch. For BCE on
    probabilities torch rejects NaN (and so must we: ValueError)."""
    rep = Report()
    for trial in range(3):
        opts: dict[str, Any] = {"shape": (7, 9)}
        if base in LOSSES:
            opts["reduction"] = ("none", "sum", "mean")[trial]
        if base in BINARY:
            opts.update(weight="last", pos_weight="last")
        if base in CLASS:
            opts.update(weight=True, n_ignored=2)
        kw = forward_kwargs(base, rng, dtype, **opts)
        first = "x" if "x" in kw else "input"
        kw[first] = _inject(kw[first], rng, [np.nan], 0.1)
        if base == "binary_cross_entropy":
            rep.raises("NaN probability", ValueError, ("input",), base, kw)
            continue
        _check_vs_torch(rep, base, kw, f"NaN in {first}, trial {trial}", rng)
        for arg in ("target", "weight", "pos_weight"):
            if isinstance(kw.get(arg), np.ndarray) and kw[arg].dtype.kind == "f" and base != "binary_cross_entropy":
                k2 = dict(kw, **{first: forward_kwargs(base, rng, dtype, **opts)[first],
                                 arg: _inject(kw[arg], rng, [np.nan], 0.2)})
                _check_vs_torch(rep, base, k2, f"NaN in {arg}, trial {trial}", rng)
    rep.check()


@pytest.mark.parametrize("base", _bases())
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_inf_everywhere(base, dtype, rng):
    """±inf logits: the mathematical limit; where torch's result is not NaN ours equals it
    (torch's NaNs at ±inf are the documented deviations, pinned in the family tests)."""
    rep = Report()
    for trial in range(3):
        opts: dict[str, Any] = {"shape": (6, 8)}
        if base in LOSSES:
            opts["reduction"] = ("none", "sum", "mean")[trial]
        if base in CLASS:
            opts.update(weight=True, probs=base == "cross_entropy" and trial > 0)
        kw = forward_kwargs(base, rng, dtype, **opts)
        first = "x" if "x" in kw else "input"
        if base == "binary_cross_entropy":
            kw[first] = _inject(kw[first], rng, [0.0, 1.0], 0.3)  # the probabilities' ends
            _check_vs_torch(rep, base, kw, f"0 and 1 probabilities, trial {trial}", rng, nan_strict=False)
            kw[first] = _inject(kw[first], rng, [np.inf, -np.inf], 0.1)
            rep.raises("inf probability", ValueError, ("input",), base, kw)
            continue
        # (no huge finite ties: torch's logsumexp_backward gives each of two 1e30s weight 1)
        kw[first] = _inject(kw[first], rng, [np.inf, -np.inf], 0.2)
        _check_vs_torch(rep, base, kw, f"±inf in {first}, trial {trial}", rng, nan_strict=False)
        _check_f32_f64_specials(rep, base, kw, f"±inf in {first}, trial {trial}")
        # whole rows of -inf / +inf
        x = kw[first].copy()
        if x.ndim >= 2:
            x[0] = -np.inf
            x[1] = np.inf
            _check_vs_torch(rep, base, {**kw, first: x}, f"rows of ±inf, trial {trial}", rng, nan_strict=False)
    rep.check()


def _check_f32_f64_specials(rep: Report, base: str, kw: dict, what: str) -> None:
    """float32 and float64 runs on the same values have the same NaN / ±inf pattern (where
    torch is NaN, the limit we give must not depend on the dtype)."""
    k32 = {k: (v.astype(np.float32) if isinstance(v, np.ndarray) and v.dtype.kind == "f" else v) for k, v in kw.items()}
    k64 = {k: (v.astype(np.float64) if isinstance(v, np.ndarray) and v.dtype.kind == "f" else v) for k, v in kw.items()}
    names = [base] + [base + "_value_and_grad"] * (base + "_value_and_grad" in FUNCS)
    for name in names:
        for i, (a, b) in enumerate(zip(_as_tuple(call(name, k32)), _as_tuple(call(name, k64)))):
            a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
            fa, fb = np.where(np.isfinite(a), 0.0, a), np.where(np.isfinite(b), 0.0, b)
            if not np.array_equal(fa, fb, equal_nan=True):
                at = ~((fa == fb) | (np.isnan(fa) & np.isnan(fb)))
                rep.fail(f"{name} [{what}] output {i}: float32 {a[at][:3]} but float64 {b[at][:3]} "
                         f"at {np.argwhere(at)[:3].tolist()}")


def _layouts(a: np.ndarray, rng):
    """(label, view) with a's values and another memory layout."""
    if a.ndim == 0:
        return
    yield "fortran", np.asfortranarray(a)
    yield "negative strides", np.flip(np.flip(a).copy())
    big = np.zeros(tuple(2 * n + 1 for n in a.shape), a.dtype)
    sl = tuple(slice(1, None, 2) for _ in a.shape)
    big[sl] = a
    yield "step 2", big[sl]
    ro = a.copy()
    ro.flags.writeable = False
    yield "read-only", ro
    if a.ndim >= 2:
        yield "transposed copy", np.ascontiguousarray(a.T).T


@pytest.mark.parametrize("name", FUNCS)
def test_layouts(name, rng):
    """Fortran order, negative strides, steps, read-only: the contiguous copy's result."""
    rep = Report()
    base = split(name)[0]
    for shape in ((5, 7), (3, 4, 6)) if base not in BINARY else ((5, 7), (3, 4, 6)):
        kw = full_kwargs(name, rng, shape=shape, **({"reduction": "none"} if base in LOSSES else {}))
        want = call(name, kw)
        for arg, v in kw.items():
            if not isinstance(v, np.ndarray):
                continue
            for label, view in _layouts(v, rng):
                got = call(name, {**kw, arg: view})
                for a, b in zip(_as_tuple(got), _as_tuple(want)):
                    if not np.allclose(a, b, rtol=1e-12, atol=0, equal_nan=True) or np.shape(a) != np.shape(b):
                        rep.fail(f"{name}: {arg} {label} shape {shape}: differs from the contiguous result")
    rep.check()


def _as_tuple(r):
    return r if isinstance(r, tuple) else (r,)


@pytest.mark.parametrize("name", FUNCS)
def test_broadcast_views(name, rng):
    """Stride-0 (np.broadcast_to, read-only) views as every array argument."""
    rep = Report()
    base = split(name)[0]
    kw = full_kwargs(name, rng, shape=(6, 5), **({"reduction": "none"} if base in LOSSES else {}))
    for arg, v in kw.items():
        if not isinstance(v, np.ndarray) or v.ndim == 0:
            continue
        for axis in range(v.ndim):
            row = np.take(v, [0], axis=axis)
            view = np.broadcast_to(row, v.shape)
            dense = np.ascontiguousarray(view)
            got = call(name, {**kw, arg: view})
            want = call(name, {**kw, arg: dense})
            for a, b in zip(_as_tuple(got), _as_tuple(want)):
                if not np.allclose(a, b, rtol=1e-12, atol=0, equal_nan=True):
                    rep.fail(f"{name}: {arg} broadcast along axis {axis}: differs from the dense copy")
    rep.check()


@pytest.mark.parametrize("base", _bases())
def test_many_rows_one_column(base, rng):
    """(N, 1) with N = 300k (and (1, N) for the row functions): exact known answers or torch's."""
    N = 300_000
    rep = Report()
    if base in ROW:
        x = rng.standard_normal((N, 1)) * 10
        r = call(base, {"x": x})
        want = {"logsumexp": x[:, 0], "log_softmax": np.zeros_like(x), "softmax": np.ones_like(x)}[base]
        if not np.array_equal(r, want):
            rep.fail(f"{base} on (N, 1): not exact")
        if base + "_backward" in FUNCS:
            g = rng.standard_normal(r.shape)
            gb = call(base + "_backward", {"grad_output": g, "x": x})
            wantb = {"logsumexp": g[:, None], "log_softmax": np.zeros_like(x), "softmax": np.zeros_like(x)}[base]
            if not np.array_equal(gb, wantb):
                rep.fail(f"{base}_backward on (N, 1): not exact")
        _check_vs_torch(rep, base, {"x": x.reshape(1, N) / 10, **({"axis": -1} if base != "logsumexp" else {})},
                        "(1, N)", rng)
    elif base in PRIMITIVES:
        _check_vs_torch(rep, base, {"x": rng.standard_normal((N, 1)) * 10}, "(N, 1)", rng)
    else:
        for red in ("mean", "sum", "none"):
            o = {"weight": True} if base in CLASS else {"weight": "last", "pos_weight": "last"}
            kw = forward_kwargs(base, rng, shape=(N, 1), reduction=red, **o)
            _check_vs_torch(rep, base, kw, f"(N, 1) {red}", rng)
    rep.check()


@pytest.mark.parametrize("base", [b for b in _bases() if b in CLASS])
def test_class_target_dtypes_and_ignore_index(base, rng):
    """Any integer dtype of targets; ignore_index anywhere (negative, >= C, huge)."""
    rep = Report()
    kw = forward_kwargs(base, rng, shape=(7, 5), reduction="sum", weight=True)
    want = call(base, kw)
    for dt in (np.int8, np.int16, np.int32, np.uint8, np.uint16, np.uint32, np.uint64, np.intp):
        got = call(base, {**kw, "target": kw["target"].astype(dt)})
        if not np.allclose(got, want, rtol=1e-13):
            rep.fail(f"{base}: target {np.dtype(dt).name} gives {got}, int64 gives {want}")
    for ii in (-1, 5, 2**40, -(2**40), 0, 4):
        k = forward_kwargs(base, rng, shape=(7, 5), reduction="mean", weight=True, ignore_index=ii, n_ignored=3)
        _check_vs_torch(rep, base, k, f"ignore_index={ii}", rng)
    # out-of-int64 ignore_index: never matches a target (or a clear ValueError)
    try:
        got = call(base, {**kw, "ignore_index": 2**70})
    except ValueError as e:
        if "ignore_index" not in str(e):
            rep.fail(f"{base}: ignore_index=2**70: {e!r} does not name ignore_index")
    except Exception as e:  # noqa: BLE001
        rep.fail(f"{base}: ignore_index=2**70 raised {e!r}")
    else:
        if not np.allclose(got, want, rtol=1e-13):
            rep.fail(f"{base}: ignore_index=2**70 changed the result")
    rep.check()


def _torch_result_dtype(name: str, kw: dict):
    """The dtype torch gives for these argument dtypes, or None if torch refuses them."""
    base = split(name)[0]
    f, names = torch_fn(base, kw)
    try:
        with torch.no_grad():
            ts = [torch.from_numpy(np.ascontiguousarray(kw[n])) for n in names]
            if base in LOSSES and np.asarray(kw["target"]).dtype.kind in "iu":
                ts[1] = ts[1].long()
            r = f(*ts)
    except RuntimeError:
        return None
    if split(name)[1] == "backward" and isinstance(kw.get("grad_output"), np.ndarray):
        return np.result_type(np.dtype(str(r.dtype).replace("torch.", "")), kw["grad_output"].dtype)
    return np.dtype(str(r.dtype).replace("torch.", ""))


@pytest.mark.parametrize("name", [n for n in FUNCS if split(n)[0] in LOSSES or split(n)[1] == "backward"])
def test_mixed_float_dtypes(name, rng):
    """float32 and float64 arguments together: torch's result dtype (weights do not promote in
    torch; grad_output does, as autograd would), or where torch refuses the mix, float64 or a
    TypeError naming the argument; the values are those of the all-one-dtype computation."""
    rep = Report()
    base = split(name)[0]
    kw32 = full_kwargs(name, rng, dtype=np.float32, **({"reduction": "none"} if base in LOSSES else {}))
    for arg in ("target", "weight", "pos_weight", "grad_output"):
        v = kw32.get(arg)
        if not isinstance(v, np.ndarray) or v.dtype != np.float32:
            continue
        kw = {**kw32, arg: v.astype(np.float64)}
        want_dt = _torch_result_dtype(name, kw)
        try:
            got = call(name, kw)
        except TypeError as e:
            if want_dt is not None:
                rep.fail(f"{name}: float64 {arg}: {e!r}, but torch accepts it")
            elif arg not in str(e):
                rep.fail(f"{name}: float64 {arg}: {e!r} does not name it")
            continue
        # torch refuses the mix: promoting, or keeping the input's dtype (weights do not
        # promote elsewhere in torch) are both fine, computed in that dtype.
        dt = want_dt or np.asarray(_as_tuple(got)[0]).dtype
        want = call(name, {k: (a.astype(dt) if isinstance(a, np.ndarray) and a.dtype.kind == "f" else a)
                           for k, a in kw.items()})
        for a, b in zip(_as_tuple(got), _as_tuple(want)):
            if np.asarray(a).dtype != dt:
                rep.fail(f"{name}: float64 {arg} gives a {np.asarray(a).dtype} result, torch {want_dt}")
            elif not np.allclose(a, b, rtol=1e-12, atol=1e-13, equal_nan=True):
                rep.fail(f"{name}: float64 {arg}: not the {dt} computation")
    rep.check()


def test_masked_array_is_refused():
    """A masked array's mask would be silently ignored: refused, naming the argument."""
    x = np.ma.masked_array(np.ones((2, 3)), mask=[[0, 1, 0], [0, 0, 0]])
    with pytest.raises(TypeError, match="x must be a plain numpy.ndarray"):
        lo.log_softmax(x)
    with pytest.raises(TypeError, match="input"):
        lo.cross_entropy(np.ma.masked_array(np.ones((2, 3))), np.array([0, 1]))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_byte_swapped_floats_give_the_same_values(dtype, rng):
    x = rng.standard_normal((4, 9)).astype(dtype)
    swapped = x.astype(np.dtype(dtype).newbyteorder(">"))
    before = swapped.copy()
    np.testing.assert_array_equal(lo.log_softmax(swapped), lo.log_softmax(x))
    np.testing.assert_array_equal(lo.sigmoid(swapped), lo.sigmoid(x))
    y = np.array([0, 3, 8, 1])
    assert lo.cross_entropy(swapped, y) == lo.cross_entropy(x, y)
    np.testing.assert_array_equal(swapped, before)
