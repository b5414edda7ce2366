"""The public API as a table, for the tests that walk all of it (bad inputs, properties, memory
and threads): for every function family a builder of valid arguments and a torch reference.

Functions are discovered from `logitops.__all__`: `<base>`, `<base>_backward` and
`<base>_value_and_grad` all use the builder of `<base>`; a public function whose base has no
builder here fails `test_every_public_function_has_a_builder` (test_bad_inputs.py), so a new
function cannot go untested.
"""

from __future__ import annotations

import inspect
from typing import Any, Callable

import numpy as np
import torch
import torch.nn.functional as F

import logitops as lo
from logitops._checks import normalize_axes

SETTINGS = ("isa", "set_num_threads", "get_num_threads")
ROW = ("logsumexp", "log_softmax", "softmax")
ELEM = ("log_sigmoid", "sigmoid")
PRIMITIVES = ROW + ELEM
LOSSES = ("binary_cross_entropy", "binary_cross_entropy_with_logits", "cross_entropy", "nll_loss")
VARIANTS = ("_value_and_grad", "_backward")


def split(name: str) -> tuple[str, str]:
    """'cross_entropy_backward' -> ('cross_entropy', 'backward'); a forward gives (name, '')."""
    for v in VARIANTS:
        if name.endswith(v):
            return name[: -len(v)], v[1:]
    return name, ""


def public_functions() -> list[str]:
    """Every public function but the process-wide settings, in __all__ order."""
    return [n for n in lo.__all__ if n not in SETTINGS and callable(getattr(lo, n))]


def params(name: str) -> list[str]:
    return list(inspect.signature(getattr(lo, name)).parameters)


# ----------------------------------------------------------------------------- valid arguments
#
# A builder returns the forward's keyword arguments (by the names SPEC.md gives them) for an
# input of `shape`, with values from `values(shape)` for logits-like arguments (the property
# tests pass special values that way). Options not given take the function's defaults.

Values = Callable[[tuple], np.ndarray]


def normal_values(rng: np.random.Generator, scale: float = 3.0) -> Values:
    return lambda shape: rng.standard_normal(shape) * scale


def _probs(rng, shape):
    p = rng.uniform(0.02, 0.98, shape)
    return p


def build_primitive(base, rng, dtype, shape=(5, 7), values=None, axis=-1, keepdims=False, **_):
    values = values or normal_values(rng)
    kw: dict[str, Any] = {"x": np.asarray(values(shape)).astype(dtype)}
    if base in ROW:
        kw["axis"] = axis
    if base == "logsumexp":
        kw["keepdims"] = keepdims
    return kw


def _weight_shape(shape, kind):
    """A weight shape that broadcasts to `shape` without enlarging it."""
    if kind == "full" or not shape:
        return shape
    if kind == "last":
        return shape[-1:]
    if kind == "scalar":
        return ()
    if kind == "mid" and len(shape) >= 2:  # e.g. (C, 1) on (N, C, 1)... a leading-axis run
        return shape[-2:-1] + (1,)
    return shape[-1:]


def build_bce(base, rng, dtype, shape=(6, 5), values=None, reduction="mean", weight=None,
              pos_weight=None, target_dtype=None, **_):
    """weight / pos_weight: None or a kind ('full', 'last', 'scalar', 'mid')."""
    if base == "binary_cross_entropy":
        inp = _probs(rng, shape) if values is None else values(shape)
    else:
        inp = (values or normal_values(rng))(shape)
    kw: dict[str, Any] = {
        "input": np.asarray(inp).astype(dtype),
        "target": rng.uniform(0, 1, shape).astype(target_dtype or dtype),
        "reduction": reduction,
    }
    if weight is not None:
        kw["weight"] = rng.uniform(0.2, 2.0, _weight_shape(shape, weight)).astype(dtype)
    if pos_weight is not None and base == "binary_cross_entropy_with_logits":
        kw["pos_weight"] = rng.uniform(0.2, 3.0, _weight_shape(shape, pos_weight)).astype(dtype)
    return kw


def build_class(base, rng, dtype, shape=(6, 5), values=None, reduction="mean", weight=False,
                ignore_index=-100, n_ignored=0, label_smoothing=0.0, probs=False,
                target_dtype=np.int64, **_):
    """cross_entropy / nll_loss: input (C,), (N, C) or (N, C, d...); class-index targets
    (n_ignored of them set to ignore_index) or, for cross_entropy with probs=True, probability
    targets of input's shape."""
    values = values or normal_values(rng)
    x = np.asarray(values(shape)).astype(dtype)
    kw: dict[str, Any] = {"input": x, "reduction": reduction}
    C = shape[0] if len(shape) == 1 else shape[1]
    tshape = () if len(shape) == 1 else shape[:1] + shape[2:]
    if probs:
        t = rng.uniform(0, 1, shape)
        t /= np.maximum(t.sum(axis=0 if len(shape) == 1 else 1, keepdims=True), 1e-30)
        kw["target"] = t.astype(dtype)
    else:
        if not np.can_cast(np.min_scalar_type(ignore_index), target_dtype):
            target_dtype = np.int64  # e.g. uint8 targets cannot hold ignore_index=-100
        t = rng.integers(0, max(C, 1), tshape).astype(target_dtype)
        if n_ignored:
            flat = t.reshape(-1)
            k = min(n_ignored, flat.size)
            flat[rng.permutation(flat.size)[:k]] = ignore_index
        kw["target"] = t
    if weight:
        kw["weight"] = rng.uniform(0.2, 2.0, (C,)).astype(dtype)
    if base == "cross_entropy":
        kw["label_smoothing"] = label_smoothing
    if ignore_index != -100:
        kw["ignore_index"] = ignore_index
    return kw


BUILDERS: dict[str, Callable[..., dict]] = {
    **{b: build_primitive for b in PRIMITIVES},
    "binary_cross_entropy": build_bce,
    "binary_cross_entropy_with_logits": build_bce,
    "cross_entropy": build_class,
    "nll_loss": build_class,
}


def forward_kwargs(base: str, rng, dtype=np.float64, **opts) -> dict:
    return BUILDERS[base](base, rng, np.dtype(dtype), **opts)


def is_reduced(base: str, kw: dict) -> bool:
    return base in LOSSES and kw.get("reduction", "mean") != "none"


def grad_output_for(base: str, kw: dict, rng, value: float | None = None) -> Any:
    """A valid upstream gradient for `base`'s output on kw: a scalar for reduced losses, else
    an array of the forward's output shape (from torch, not from us)."""
    dt = first_array(kw).dtype
    for a in (kw.get("target"), kw.get("weight"), kw.get("pos_weight")):
        if isinstance(a, np.ndarray) and a.dtype == np.float64:
            dt = np.dtype(np.float64)
    if is_reduced(base, kw):
        return np.asarray(0.75 if value is None else value, dtype=dt)
    shape = torch_forward(base, kw).shape
    g = rng.standard_normal(shape) if value is None else np.full(shape, value)
    return g.astype(dt)


def call_kwargs(name: str, rng, dtype=np.float64, **opts) -> dict:
    """Valid keyword arguments of public function `name` (forward, backward or fused)."""
    base, variant = split(name)
    kw = forward_kwargs(base, rng, dtype, **opts)
    if variant == "backward":
        kw = {"grad_output": grad_output_for(base, kw, rng), **kw}
    return kw


def first_array(kw: dict) -> np.ndarray:
    return kw["x"] if "x" in kw else kw["input"]


# ----------------------------------------------------------------------------- torch references


def _t(a):
    """A float64 (or int64) torch tensor with a's values (torch computes the reference in
    float64: its float32 results are less accurate than ours)."""
    a = np.asarray(a)
    if a.dtype.kind == "f":
        a = a.astype(np.float64)
    elif a.dtype.kind in "iu":
        a = a.astype(np.int64)
    return torch.from_numpy(np.array(a, copy=True, order="C"))


def _over_axes(f, t, axes):
    if len(axes) == 1:
        return f(t, dim=axes[0])
    nd = t.ndim
    kept = tuple(i for i in range(nd) if i not in axes)
    perm = kept + axes
    p = t.permute(perm)
    flat = p.reshape(*p.shape[: len(kept)], int(np.prod(p.shape[len(kept):])))
    return f(flat, dim=-1).reshape(p.shape).permute(tuple(int(i) for i in np.argsort(perm)))


def torch_fn(base: str, kw: dict) -> tuple[Callable, list[str]]:
    """(f, names): f(*tensors) computes base in torch from the tensors of kw[names]."""
    if base in ROW:
        x = kw["x"]
        axes = normalize_axes(x.ndim, kw.get("axis", -1))
        if base == "logsumexp":
            def f(t):
                t0 = t.reshape(1) if t.ndim == 0 else t
                r = torch.logsumexp(t0, dim=axes, keepdim=kw.get("keepdims", False))
                return r.reshape(()) if t.ndim == 0 else r
        else:
            g = F.log_softmax if base == "log_softmax" else F.softmax

            def f(t):
                t0 = t.reshape(1) if t.ndim == 0 else t
                return _over_axes(g, t0, axes).reshape(t.shape)
        return f, ["x"]
    if base in ELEM:
        return (F.logsigmoid if base == "log_sigmoid" else torch.sigmoid), ["x"]
    names = ["input", "target"] + [n for n in ("weight", "pos_weight") if kw.get(n) is not None]
    red = kw.get("reduction", "mean")
    if base == "binary_cross_entropy":
        def f(i, t, w=None):
            return F.binary_cross_entropy(i, t, weight=w, reduction=red)
    elif base == "binary_cross_entropy_with_logits":
        has_w = kw.get("weight") is not None

        def f(i, t, *rest):
            w = rest[0] if has_w else None
            pw = rest[-1] if kw.get("pos_weight") is not None else None
            return F.binary_cross_entropy_with_logits(i, t, weight=w, reduction=red, pos_weight=pw)
    elif base == "cross_entropy":
        def f(i, t, w=None):
            return F.cross_entropy(i, t, weight=w, ignore_index=kw.get("ignore_index", -100),
                                   reduction=red, label_smoothing=kw.get("label_smoothing", 0.0))
    else:
        def f(i, t, w=None):
            return F.nll_loss(i, t, weight=w, ignore_index=kw.get("ignore_index", -100), reduction=red)
    return f, names


def torch_forward(base: str, kw: dict) -> np.ndarray:
    f, names = torch_fn(base, kw)
    with torch.no_grad():
        return f(*[_t(kw[n]) for n in names]).numpy()


def torch_grad(base: str, kw: dict, grad_output: Any, wrt: str = "input") -> np.ndarray:
    """d/d(kw[wrt]) of <base(kw), grad_output> by torch autograd, in float64."""
    f, names = torch_fn(base, kw)
    wrt = "x" if base in PRIMITIVES else wrt
    ts = [_t(kw[n]) for n in names]
    ts[names.index(wrt)].requires_grad_(True)
    y = f(*ts)
    y.backward(_t(np.asarray(grad_output, dtype=np.float64)).reshape(y.shape))
    g = ts[names.index(wrt)].grad
    g = np.zeros(kw[wrt].shape) if g is None else g.numpy()
    target = kw.get("target")
    if base in ("cross_entropy", "nll_loss") and wrt == "input" and np.asarray(target).dtype.kind in "iu":
        # Documented deviation: an ignored sample's gradient is exactly 0, even where its logits
        # hold NaN (torch propagates the NaN through log_softmax's backward).
        ignored = np.asarray(target) == kw.get("ignore_index", -100)
        mask = ignored if g.ndim == 1 else np.expand_dims(ignored, 1)
        g = np.where(np.broadcast_to(mask, g.shape), 0.0, g)
    return g


def differentiable_wrt(base: str, kw: dict) -> tuple[str, ...]:
    """The arguments whose gradients the library gives (SPEC: target too where torch has it)."""
    if base in PRIMITIVES:
        return ("x",)
    if base in ("binary_cross_entropy", "binary_cross_entropy_with_logits"):
        return ("input", "target")
    if base == "cross_entropy" and np.asarray(kw["target"]).dtype.kind == "f":
        return ("input", "target")
    return ("input",)


# ----------------------------------------------------------------------------- calling ours


def snapshot(kw: dict) -> dict:
    return {k: v.copy() for k, v in kw.items() if isinstance(v, np.ndarray)}


def assert_unchanged(kw: dict, before: dict, except_: tuple = ("out",)) -> None:
    for k, v in before.items():
        if k in except_ or kw[k] is kw.get("out"):
            continue
        a = kw[k]
        same = a.shape == v.shape and a.dtype == v.dtype and (
            a.tolist() == v.tolist() if a.dtype == object else a.tobytes() == v.tobytes())
        assert same, f"argument {k} was modified"


def call(name: str, kw: dict) -> Any:
    """getattr(lo, name)(**kw), asserting that no input array is modified (out excepted)."""
    before = snapshot(kw)
    try:
        return getattr(lo, name)(**kw)
    finally:
        assert_unchanged(kw, before)


def ours_grad(base: str, kw: dict, grad_output: Any, wrt: str = "input") -> np.ndarray:
    extra = {"wrt": wrt} if wrt not in ("x", "input") else {}
    return call(base + "_backward", {"grad_output": grad_output, **kw, **extra})
