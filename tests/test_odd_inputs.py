"""Every public function (discovered from logitops.__all__, see _api.py) under valid but odd
arguments: zero-size, all-ignored, NaN/±inf, stride-0 broadcast views, Fortran order, negative
strides, read-only, byte-swapped, one-column inputs with many rows, integer target dtypes,
mixed float dtypes, out=input: the result is torch's (float64 oracle, _oracle.py) or the
contiguous / single-dtype call's. Every call checks that no input array was modified
(_api.call). Each test walks all its cases and reports every failure at once. Bad arguments:
test_bad_inputs.py.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import torch
from _api import (
    BINARY,
    BUILDERS,
    CLASS,
    ELEMENTWISE_LOSSES,
    LINEAR,
    LOSSES,
    PRIMITIVES,
    ROW,
    ROW_LOSS,
    Report,
    call,
    differentiable_wrt,
    first_array,
    first_name,
    forward_kwargs,
    full_kwargs,
    funcs_of,
    grad_output_for,
    public_functions,
    split,
)
from _helpers import LOW_DTYPES, dtype_id
from _oracle import torch_backward, torch_forward, torch_function
from _tolerances import MIXED_DTYPES, RELAYOUT, SAME_TARGETS, TOL

import logitops as lo

FUNCS = public_functions()


# ----------------------------------------------------------------------------- out=input


@pytest.mark.parametrize("name", funcs_of(*LOSSES, variants=("value_and_grad",)))
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_out_is_input_and_odd_out(name, reduction, rng):
    """out=input overwrites the logits with the gradient; a fresh out receives it; results equal
    the no-out call's."""
    kw = full_kwargs(name, rng, reduction=reduction)
    loss0, g0 = call(name, kw)
    xn = first_name(kw)
    out = np.full(kw[xn].shape, np.nan)
    loss1, g1 = call(name, {**kw, "out": out})
    assert g1 is out or np.shares_memory(g1, out)
    np.testing.assert_array_equal(out, g0)
    np.testing.assert_array_equal(loss1, loss0)
    x = kw[xn].copy()
    loss2, g2 = call(name, {**kw, xn: x, "out": x})
    np.testing.assert_array_equal(x, g0)
    np.testing.assert_array_equal(loss2, loss0)


# ----------------------------------------------------------------------------- valid but odd


def _check_vs_torch(rep: Report, name: str, kw: dict, what: str, rng, nan_strict: bool = True) -> None:
    """Forward, every backward and the fused call of `name`'s base on kw against torch (float64
    oracle). nan_strict: NaN exactly where torch has NaN; else only where torch is not NaN."""
    base = split(name)[0]
    dt = first_array(kw).dtype
    rtol, atol = TOL[np.dtype(dt)]

    def cmp(label, got, want):
        rep.checked += 1
        got = np.asarray(got, dtype=np.float64)
        want = np.asarray(want, dtype=np.float64)
        if got.shape != want.shape:
            rep.fail(f"{base} [{what}] {label}: shape {got.shape}, torch {want.shape}")
            return
        if np.dtype(dt) in LOW_DTYPES:
            # A value beyond a 16-bit format's range is the infinity it rounds to (BCE's clamped
            # gradient at p = 0 or 1, ~1e12, is inf in float16).
            with np.errstate(over="ignore", invalid="ignore"):
                want = np.where(np.isfinite(want) & ~np.isfinite(want.astype(dt)), want.astype(dt), want)
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
    except Exception as e:  # noqa: BLE001 - reported: the case is not a valid one
        rep.fail(f"{base} [{what}]: torch raises {type(e).__name__}({str(e)[:200]!r}): not a valid odd "
                 "input (bad inputs belong in test_bad_inputs.py)")
        return
    try:
        cmp("forward", call(base, kw), want)
        g = grad_output_for(base, kw, rng)
        for wrt in differentiable_wrt(base, kw):
            if base + "_backward" in FUNCS:
                cmp(f"backward wrt {wrt}",
                    call(base + "_backward", {"grad_output": g, **kw, **({"wrt": wrt} if wrt == "target" else {})}),
                    torch_backward(base, kw, g, wrt))
        if base + "_value_and_grad" in FUNCS:
            loss, grad = call(base + "_value_and_grad", kw)
            cmp("fused loss", loss, want)
            cmp("fused grad", grad, torch_backward(base, kw, np.ones_like(want), "input"))
    except AssertionError:
        raise
    except Exception as e:  # noqa: BLE001
        rep.fail(f"{base} [{what}]: raised {type(e).__name__}: {e}")


def _bases() -> list[str]:
    # LINEAR's value_and_grad returns four results and its odd inputs (zero size, NaN, inf, one
    # column) have their own tests in test_llm_heads.py.
    return [b for b in BUILDERS if b in FUNCS and b not in LINEAR]


ZERO_SHAPES = {
    "primitive": [((0,), {}), ((0, 5), {}), ((5, 0), {}), ((0, 0), {}), ((2, 0, 3), {"axis": (0, 2)}),
                  ((0, 4), {"axis": None}), ((3, 0), {"axis": 0})],
    "binary": [((0,), {}), ((0, 5), {}), ((4, 0), {})],
    "class": [((0, 5), {}), ((0, 5, 3), {}), ((3, 5, 0), {}), ((0, 0), {})],
    "row_loss": [((0, 5), {}), ((0, 1), {})],  # (torch's one_hot takes no zero classes)
}


def _family(base: str) -> str:
    return ("primitive" if base in PRIMITIVES else "binary" if base in BINARY + ELEMENTWISE_LOSSES
            else "row_loss" if base in ROW_LOSS else "class")


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
            if base in LOSSES and red == "mean" and first_array(kw).size == 0 or (base in CLASS and red == "mean"
                                                                              and np.size(kw["target"]) == 0):
                r = call(base, kw)
                rep.expect(np.isnan(r), f"{base} [shape {shape} mean]: {r}, expected nan")
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
@pytest.mark.parametrize("dtype", [np.float32, np.float64, *LOW_DTYPES], ids=dtype_id)
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
        first = first_name(kw)
        kw[first] = _inject(kw[first], rng, [np.nan], 0.1)
        if base == "binary_cross_entropy":
            rep.raises("NaN probability", ValueError, ("input",), base, kw)
            continue
        _check_vs_torch(rep, base, kw, f"NaN in {first}, trial {trial}", rng)
        for arg in ("target", "targets", "weight", "pos_weight"):
            if isinstance(kw.get(arg), np.ndarray) and kw[arg].dtype.kind == "f" and base != "binary_cross_entropy":
                k2 = dict(kw, **{first: forward_kwargs(base, rng, dtype, **opts)[first],
                                 arg: _inject(kw[arg], rng, [np.nan], 0.2)})
                _check_vs_torch(rep, base, k2, f"NaN in {arg}, trial {trial}", rng)
    rep.check()


@pytest.mark.parametrize("base", _bases())
@pytest.mark.parametrize("dtype", [np.float32, np.float64, *LOW_DTYPES], ids=dtype_id)
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
        first = first_name(kw)
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
    for shape in ((5, 7),) + (() if base in ROW_LOSS else ((3, 4, 6),)):  # ROW_LOSS: (N, C) only
        kw = full_kwargs(name, rng, shape=shape, **({"reduction": "none"} if base in LOSSES else {}))
        want = call(name, kw)
        for arg, v in kw.items():
            if not isinstance(v, np.ndarray):
                continue
            for label, view in _layouts(v, rng):
                got = call(name, {**kw, arg: view})
                for a, b in zip(_as_tuple(got), _as_tuple(want)):
                    rep.expect(np.shape(a) == np.shape(b) and np.allclose(a, b, *RELAYOUT, equal_nan=True),
                               f"{name}: {arg} {label} shape {shape}: differs from the contiguous result")
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
                rep.expect(np.shape(a) == np.shape(b) and np.allclose(a, b, *RELAYOUT, equal_nan=True),
                           f"{name}: {arg} broadcast along axis {axis}: differs from the dense copy")
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
        rep.expect(np.array_equal(r, want), f"{base} on (N, 1): not exact")
        if base + "_backward" in FUNCS:
            g = rng.standard_normal(r.shape)
            gb = call(base + "_backward", {"grad_output": g, "x": x})
            wantb = {"logsumexp": g[:, None], "log_softmax": np.zeros_like(x), "softmax": np.zeros_like(x)}[base]
            rep.expect(np.array_equal(gb, wantb), f"{base}_backward on (N, 1): not exact")
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
    """Any integer dtype of targets; ignore_index anywhere (negative, >= C, huge; beyond int64 it
    is a bad input: test_bad_inputs.py::test_bad_options)."""
    rep = Report()
    kw = forward_kwargs(base, rng, shape=(7, 5), reduction="sum", weight=True)
    want = call(base, kw)
    for dt in (np.int8, np.int16, np.int32, np.uint8, np.uint16, np.uint32, np.uint64, np.intp):
        got = call(base, {**kw, "target": kw["target"].astype(dt)})
        rep.expect(np.allclose(got, want, *SAME_TARGETS), f"{base}: target {np.dtype(dt).name} gives {got}, int64 gives {want}")
    for ii in (-1, 5, 2**40, -(2**40), 0, 4):
        k = forward_kwargs(base, rng, shape=(7, 5), reduction="mean", weight=True, ignore_index=ii, n_ignored=3)
        _check_vs_torch(rep, base, k, f"ignore_index={ii}", rng)
    # The int64 extremes: valid, and held by no target.
    for ii in (2**63 - 1, -(2**63)):
        got = call(base, {**kw, "ignore_index": ii})
        rep.expect(np.allclose(got, want, *SAME_TARGETS), f"{base}: ignore_index={ii} changed the result")
    rep.check()


def _torch_result_dtype(name: str, kw: dict):
    """The dtype torch gives for these argument dtypes, or None if torch refuses them."""
    base = split(name)[0]
    f, names = torch_function(base, kw)
    try:
        with torch.no_grad():
            ts = [torch.from_numpy(np.ascontiguousarray(kw[n])) for n in names]
            if base in LOSSES and np.asarray(kw.get("target", 0.0)).dtype.kind in "iu":
                ts[1] = ts[1].long()
            r = f(*ts)
    except RuntimeError:
        return None
    if split(name)[1] == "backward" and isinstance(kw.get("grad_output"), np.ndarray):
        return np.result_type(np.dtype(str(r.dtype).replace("torch.", "")), kw["grad_output"].dtype)
    return np.dtype(str(r.dtype).replace("torch.", ""))


def _cast_floats(kw: dict, dt) -> dict:
    return {k: (a.astype(dt) if isinstance(a, np.ndarray) and a.dtype.kind == "f" else a) for k, a in kw.items()}


# (ROW_LOSS's forward and fused calls take no float argument but input: only its backward's grad_output)
@pytest.mark.parametrize("name", [n for n in FUNCS if (split(n)[0] in LOSSES and split(n)[0] not in ROW_LOSS)
                                  or split(n)[1] == "backward"])
def test_mixed_float_dtypes(name, rng):
    """float32 arguments with one float64 among them: a float64 target or grad_output makes the
    computation float64, a float64 weight or pos_weight never promotes (README). That is torch's
    result dtype wherever torch takes the mix, except probability-target cross_entropy with a
    float64 weight (torch: float64; ours float32, pinned). Where torch refuses the mix (BCE's
    target, class-index weights) ours is the same rule. The values are those of the call with
    every float argument in the result's dtype. Torch's own rules for two losses of its own:
    soft_margin_loss computes in input's dtype (a float64 target does not promote), and
    multilabel_soft_margin_loss's float64 weight promotes (torch multiplies by it)."""
    rep = Report()
    base = split(name)[0]
    for probs in (False, True) if base == "cross_entropy" else (False,):
        kw32 = full_kwargs(name, rng, dtype=np.float32, probs=probs, **({"reduction": "none"} if base in LOSSES else {}))
        for arg in ("target", "targets", "weight", "pos_weight", "grad_output"):
            v = kw32.get(arg)
            if not isinstance(v, np.ndarray) or v.dtype != np.float32:
                continue
            what = f"{name}: float64 {arg}{' (probability targets)' if probs else ''}"
            kw = {**kw32, arg: v.astype(np.float64)}
            dt = np.dtype(np.float32 if arg in ("weight", "pos_weight") else np.float64)
            if (base, arg) == ("soft_margin_loss", "target"):
                dt = np.dtype(np.float32)
            if (base, arg) == ("multilabel_soft_margin_loss", "weight"):
                dt = np.dtype(np.float64)
            torch_dt = _torch_result_dtype(name, kw)
            if torch_dt is not None:
                deviation = probs and arg == "weight"
                rep.expect((torch_dt != dt) == deviation,
                           f"{what}: torch gives {torch_dt}, ours {dt}{'' if deviation else ' (not a listed deviation)'}")
            got = call(name, kw)
            want = call(name, _cast_floats(kw, dt))
            for a, b in zip(_as_tuple(got), _as_tuple(want)):
                rep.expect(np.asarray(a).dtype == dt, f"{what} gives a {np.asarray(a).dtype} result, expected {dt}")
                rep.expect(np.allclose(a, b, *MIXED_DTYPES, equal_nan=True), f"{what}: not the {dt} computation")
    rep.check()


@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.float16])
def test_byte_swapped_floats_give_the_same_values(dtype, rng):
    x = rng.standard_normal((4, 9)).astype(dtype)
    swapped = x.astype(np.dtype(dtype).newbyteorder(">"))
    before = swapped.copy()
    np.testing.assert_array_equal(lo.log_softmax(swapped), lo.log_softmax(x))
    np.testing.assert_array_equal(lo.sigmoid(swapped), lo.sigmoid(x))
    y = np.array([0, 3, 8, 1])
    assert lo.cross_entropy(swapped, y) == lo.cross_entropy(x, y)
    np.testing.assert_array_equal(swapped, before)
