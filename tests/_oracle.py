"""torch as the oracle: conversions, autograd of a function, and torch's counterpart of every
public function family (driven by the argument dicts of _api.py).

- to_torch / to_numpy: a tensor with an array's values and dtype, and back;
- torch_vjp(fn, x, grad_output): the gradient of <fn(x), grad_output> by autograd, x's dtype;
- torch_primitive(name, ndim, axis, keepdims): torch's version of lo.<name> for a primitive;
- torch_function / torch_forward / torch_backward(base, kw, ...): torch's version of
  lo.<base>(**kw) and lo.<base>_backward(grad_output, **kw, wrt=...), computed in float64.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from logitops._checks import normalize_axes

TORCH_ROW = {"logsumexp": torch.logsumexp, "log_softmax": F.log_softmax, "softmax": F.softmax}
TORCH_ELEMENTWISE = {"log_sigmoid": F.logsigmoid, "sigmoid": torch.sigmoid}


# ----------------------------------------------------------------------------- conversions


def to_torch(a: Any, requires_grad: bool = False) -> torch.Tensor:
    """A torch tensor with a's values and dtype (a copy: torch rejects negative strides)."""
    t = torch.from_numpy(np.array(a, copy=True, order="C"))
    if requires_grad:
        t.requires_grad_(True)
    return t


def to_numpy(t: torch.Tensor) -> np.ndarray:
    return t.detach().cpu().numpy()


def to_torch_f64(a: Any) -> torch.Tensor:
    """A float64 (or, for integers, int64) tensor with a's values: torch computes the reference
    in float64 (its float32 results are less accurate than ours)."""
    a = np.asarray(a)
    if a.dtype.kind == "f":
        a = a.astype(np.float64)
    elif a.dtype.kind in "iu":
        a = a.astype(np.int64)
    return to_torch(a)


# ----------------------------------------------------------------------------- autograd of a function


def torch_vjp(fn: Callable[[torch.Tensor], torch.Tensor], x: np.ndarray, grad_output: Any) -> np.ndarray:
    """d/dx of <fn(x), grad_output> by torch autograd, in x's dtype."""
    tx = to_torch(x, requires_grad=True)
    y = fn(tx)
    y.backward(to_torch(np.asarray(grad_output, dtype=x.dtype)).reshape(y.shape))
    return to_numpy(tx.grad)


# ----------------------------------------------------------------------------- primitives


def torch_primitive(name: str, ndim: int, axis: Any = -1, keepdims: bool = False) -> Callable:
    """torch's version of lo.<name>(., axis[, keepdims]) as a function of a tensor of `ndim`
    dimensions (axis ignored for the elementwise functions)."""
    if name in TORCH_ELEMENTWISE:
        return TORCH_ELEMENTWISE[name]
    axes = normalize_axes(ndim, axis)
    if name == "logsumexp":
        return lambda t: torch.logsumexp(t, dim=axes, keepdim=keepdims)
    f = TORCH_ROW[name]
    if ndim == 0 or len(axes) == 1:
        return lambda t: f(t, dim=axes[0])

    # torch's softmax takes one dim: move the reduced axes last and flatten them.
    kept = tuple(i for i in range(ndim) if i not in axes)
    perm = kept + axes
    inv = tuple(int(i) for i in np.argsort(perm))

    def over_axes(t):
        p = t.permute(perm)
        flat = p.reshape(*p.shape[: len(kept)], int(np.prod(p.shape[len(kept):])))
        return f(flat, dim=-1).reshape(p.shape).permute(inv)

    return over_axes


# ----------------------------------------------------------------------------- every family, from kw


def torch_function(base: str, kw: dict) -> tuple[Callable, list[str]]:
    """(f, names): f(*tensors) computes lo.<base>(**kw) in torch from the tensors of kw[names]."""
    if base in TORCH_ROW:
        x = kw["x"]
        # A 0-d x counts as one axis (normalize_axes): computed as shape (1,), reshaped back.
        g = torch_primitive(base, max(x.ndim, 1), kw.get("axis", -1), kw.get("keepdims", False))

        def f(t):
            r = g(t.reshape(1) if t.ndim == 0 else t)
            if base != "logsumexp":
                return r.reshape(t.shape)
            return r.reshape(()) if t.ndim == 0 else r
        return f, ["x"]
    if base in TORCH_ELEMENTWISE:
        return TORCH_ELEMENTWISE[base], ["x"]
    red = kw.get("reduction", "mean")
    if base == "linear_cross_entropy":
        lnames = ["input", "linear_weight", "target"] + [n for n in ("linear_bias", "weight") if kw.get(n) is not None]
        has_b = kw.get("linear_bias") is not None

        def lf(i, lw, t, *rest):
            b = rest[0] if has_b else None
            w = rest[-1] if kw.get("weight") is not None else None
            return F.linear_cross_entropy(i, lw, t, linear_bias=b, weight=w, reduction=red,
                                          ignore_index=kw.get("ignore_index"),
                                          label_smoothing=kw.get("label_smoothing", 0.0))
        return lf, lnames
    names = ["input", "target"] + [n for n in ("weight", "pos_weight") if kw.get(n) is not None]
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
    elif base == "nll_loss":
        def f(i, t, w=None):
            return F.nll_loss(i, t, weight=w, ignore_index=kw.get("ignore_index", -100), reduction=red)
    else:
        raise KeyError(f"no torch counterpart for {base!r}: add it to tests/_oracle.py")
    return f, names


def torch_forward(base: str, kw: dict) -> np.ndarray:
    """lo.<base>(**kw) by torch, in float64."""
    f, names = torch_function(base, kw)
    with torch.no_grad():
        return f(*[to_torch_f64(kw[n]) for n in names]).numpy()


def torch_backward(base: str, kw: dict, grad_output: Any, wrt: str = "input") -> np.ndarray:
    """lo.<base>_backward(grad_output, **kw, wrt=wrt) by torch autograd, in float64: d/d(kw[wrt])
    of <base(kw), grad_output> (wrt is "x" for the primitives)."""
    f, names = torch_function(base, kw)
    wrt = "x" if "x" in kw else wrt
    ts = [to_torch_f64(kw[n]) for n in names]
    ts[names.index(wrt)].requires_grad_(True)
    y = f(*ts)
    y.backward(to_torch_f64(np.asarray(grad_output, dtype=np.float64)).reshape(y.shape))
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
