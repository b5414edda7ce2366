"""Every public function (discovered from logitops.__all__, see _api.py) under bad arguments:
each gets the exception type SPEC.md gives (TypeError for dtypes and non-arrays, ValueError for
shapes, options and values, IndexError "Target 5 is out of bounds." for class targets) and the
message names the offending argument. One outcome per case: where torch has no counterpart
(it raises RuntimeError for most), the type is the one the library gives today, pinned. Every
call checks that no input array was modified (_api.call). Each test walks all its cases and
reports every failure at once. Valid but odd arguments: test_odd_inputs.py.
"""

from __future__ import annotations

import ml_dtypes
import numpy as np
import pytest
from _api import (
    BINARY,
    BUILDERS,
    CLASS,
    ELEMENTWISE_LOSSES,
    LINEAR,
    LOSS_CLASSES,
    LOSSES,
    PRIMITIVES,
    ROW,
    ROW_LOSS,
    Report,
    call,
    call_kwargs,
    differentiable_wrt,
    first_array,
    first_name,
    full_kwargs,
    funcs_of,
    is_reduced,
    params,
    public_classes,
    public_functions,
    split,
    target_name,
)

import logitops as lo

FUNCS = public_functions()


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


def test_every_public_class_is_a_known_loss_object():
    """The walks here cover functions; a public class must be a loss object of _api.LOSS_CLASSES
    (tested in test_loss_objects.py) and call a family the walks cover."""
    classes = public_classes()
    assert classes, "no loss objects found in logitops.__all__"
    unknown = [n for n in classes if n not in LOSS_CLASSES]
    assert not unknown, f"public classes not in tests/_api.py LOSS_CLASSES: {unknown}"
    assert sorted(LOSS_CLASSES) == sorted(classes), "LOSS_CLASSES names a class logitops does not export"
    assert all(base in FUNCS and base in BUILDERS for base in LOSS_CLASSES.values())


@pytest.mark.parametrize("name", FUNCS)
def test_valid_call_works(name, rng):
    """The builders' arguments are valid (otherwise every bad-input test below is moot)."""
    call(name, full_kwargs(name, rng))
    call(name, call_kwargs(name, rng))


# ----------------------------------------------------------------------------- bad dtypes / types


def _float_array_args(name: str, kw: dict) -> list[str]:
    base = split(name)[0]
    out = [k for k in ("x", "input", "inputs", "linear_weight", "linear_bias", "target", "targets", "weight",
                       "pos_weight", "grad_output") if isinstance(kw.get(k), np.ndarray)]
    if base in CLASS + ROW_LOSS + LINEAR:
        out.remove("target")  # class indices: test_bad_class_targets (test_symmetric_ce.py)
    return out


def _bad_replacements(v: np.ndarray):
    """(label, replacement, expected exception) for a float array argument."""
    # float16 and bfloat16 are taken (test_low_precision.py); other low-precision formats are not
    for dt in (np.int64, np.int32, np.uint8, np.bool_, np.complex128, ml_dtypes.float8_e4m3fn, object):
        with np.errstate(invalid="ignore", over="ignore"):  # (ml_dtypes 0.4 warns casting to float8)
            bad = v.astype(dt)
        yield np.dtype(dt).name, bad, TypeError
    yield "V2", np.zeros(v.shape, "V2"), TypeError
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
                if label == "None" and arg in ("weight", "pos_weight", "linear_bias"):
                    continue  # None is their default
                if arg == "grad_output" and is_reduced(split(name)[0], kw) and label == "list":
                    bad = [0.5, 0.5]  # a 1-element list could pass as a scalar; two cannot
                rep.raises(f"{arg}={label}, reduction={reduction}", exc, (arg,), name, {**kw, arg: bad})
            # A Python or NumPy float scalar where an array is expected (grad_output of a
            # reduced loss is a scalar by contract; a primitive's may be 0-d).
            if arg == "grad_output" and (is_reduced(split(name)[0], kw) or kw[arg].ndim == 0):
                continue
            # A float grad_output is taken as a 0-d array (as for reduced losses): then its
            # shape is wrong, not its type.
            exc = ValueError if arg == "grad_output" else TypeError
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
        rep.raises(f"target {np.dtype(dt).name} (N,)", TypeError, ("target",), name,
                   {**kw, "target": t.astype(dt)})
    if base == "nll_loss":
        rep.raises("nll float target (N, C)", TypeError, ("target",), name,
                   {**kw, "target": np.full((6, 5), 0.2)})
    rep.raises("target list", TypeError, ("target",), name, {**kw, "target": t.tolist()})
    # A Python int is taken as a 0-d index array (a list is refused; torch: TypeError): pinned
    # as today, a shape error for (N, C).
    rep.raises("target int scalar", ValueError, ("target",), name, {**kw, "target": 3})
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
    x = first_array(kw)
    if base in PRIMITIVES:
        if "out" in params(name):
            yield "out transposed", {**kw, "out": np.zeros(x.shape[::-1] + (2,), x.dtype)}, "out"
            yield "out flat", {**kw, "out": np.zeros(x.size, x.dtype)}, "out"
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
    if base in ELEMENTWISE_LOSSES:
        N, C = x.shape
        tn = target_name(kw)
        yield "target (N, C+1)", {**kw, tn: np.full((N, C + 1), 0.5)}, tn
        yield "target (C,) broadcastable", {**kw, tn: np.full((C,), 0.5)}, tn
        if "weight" in kw:
            yield "weight (C+1,)", {**kw, "weight": np.ones(C + 1)}, "weight"
            yield "weight enlarging (2, N, C)", {**kw, "weight": np.ones((2, N, C))}, "weight"
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
    if base in LINEAR:
        N, D = x.shape
        V = kw["linear_weight"].shape[0]
        yield "linear_weight (V, D+1)", {**kw, "linear_weight": np.ones((V, D + 1))}, "linear_weight"
        yield "linear_weight (V, 1, D)", {**kw, "linear_weight": np.ones((V, 1, D))}, "linear_weight"
        yield "linear_bias (V+1,)", {**kw, "linear_bias": np.ones(V + 1)}, "linear_bias"
        yield "linear_bias (V, 1)", {**kw, "linear_bias": np.ones((V, 1))}, "linear_bias"
        yield "target (N+1,)", {**kw, "target": np.zeros(N + 1, np.int64)}, "target"
        yield "prob target (N, V+1)", {**kw, "target": np.full((N, V + 1), 1.0 / V)}, "target"
        yield "weight (V+1,)", {**kw, "weight": np.ones(V + 1)}, "weight"
        yield "input 0-d", {**kw, "input": np.array(1.0), "target": np.array(0)}, "input"
        yield "input (N, D, 2)", {**kw, "input": np.zeros((N, D, 2))}, "input"
    if base in ROW_LOSS:
        N, C = x.shape
        yield "target (N+1,)", {**kw, "target": np.zeros(N + 1, np.int64)}, "target"
        yield "target (N, 1)", {**kw, "target": np.zeros((N, 1), np.int64)}, "target"
        yield "target 0-d", {**kw, "target": np.array(1)}, "target"
        yield "input (N, C, 3), target (N,)", {**kw, "input": np.zeros((N, C, 3))}, "target"
        yield "input (C,), target 0-d", {**kw, "input": np.zeros(C), "target": np.array(1)}, "input"
    if variant == "backward" and kw["reduction"] == "none":
        g = kw["grad_output"]
        yield "grad_output transposed", {**kw, "grad_output": np.ones(g.shape[::-1] + (2,))}, "grad_output"
        yield "grad_output 0-d", {**kw, "grad_output": np.array(1.0)}, "grad_output"
    if variant == "backward" and kw["reduction"] != "none":
        yield "grad_output (2,) for a reduced loss", {**kw, "grad_output": np.ones(2)}, "grad_output"


# logsumexp takes any shape of x and has no out=: no bad shape to give it.
@pytest.mark.parametrize("name", [n for n in FUNCS if n != "logsumexp"])
def test_bad_shapes(name, rng):
    rep = Report()
    for reduction in ("none", "mean", "sum") if split(name)[0] in LOSSES + LINEAR else (None,):
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
        for v in (2**70, -(2**70), 2**63):  # beyond int64 (torch: ValueError "Overflow ...")
            rep.raises(f"ignore_index={v!r}", ValueError, ("ignore_index",), name, {**kw, "ignore_index": v})
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
        xn, tn = first_name(kw), target_name(kw)
        x = kw[xn]
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
        rep.raises("out = read-only input", ValueError, ("out",), name, {**kw, xn: xi, "out": xi})
        # Partial overlap with input (a shifted view of the same buffer): unsupported.
        buf = np.concatenate([x.ravel(), np.zeros(3, dtype)])
        xin = buf[: x.size].reshape(x.shape)
        rep.raises("out overlaps input", ValueError, ("out",), name,
                   {**kw, xn: xin, "out": buf[3:].reshape(x.shape)}, match=f"overlaps {xn}")
        # out sharing memory with a float target of input's shape (probabilities for cross_entropy)
        kt = full_kwargs(name, rng, dtype=dtype, reduction="mean", probs=True) if split(name)[0] == "cross_entropy" else kw
        if split(name)[0] not in ("nll_loss",) + ROW_LOSS:  # (class indices: no float target)
            tgt = kt[tn].copy()
            assert tgt.dtype == dtype and tgt.shape == kt[xn].shape
            rep.raises("out is target", ValueError, ("out",), name, {**kt, tn: tgt, "out": tgt},
                       match="share memory with target")
    rep.check()




def test_masked_array_is_refused():
    """A masked array's mask would be silently ignored: refused, naming the argument."""
    x = np.ma.masked_array(np.ones((2, 3)), mask=[[0, 1, 0], [0, 0, 0]])
    with pytest.raises(TypeError, match="x must be a plain numpy.ndarray"):
        lo.log_softmax(x)
    with pytest.raises(TypeError, match="input"):
        lo.cross_entropy(np.ma.masked_array(np.ones((2, 3))), np.array([0, 1]))

