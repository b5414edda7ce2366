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

from logitops._checks import is_bfloat16, normalize_axes

TORCH_ROW = {"logsumexp": torch.logsumexp, "log_softmax": F.log_softmax, "softmax": F.softmax}
TORCH_ELEMENTWISE = {"log_sigmoid": F.logsigmoid, "sigmoid": torch.sigmoid}


# ----------------------------------------------------------------------------- conversions


def to_torch(a: Any, requires_grad: bool = False) -> torch.Tensor:
    """A torch tensor with a's values and dtype (a copy: torch rejects negative strides)."""
    t = torch.from_numpy(np.array(a, copy=True, order="C"))
    if requires_grad:
        t.requires_grad_(True)
    return t


def to_torch_low(a: Any, requires_grad: bool = False) -> torch.Tensor:
    """A tensor with the same float16 / bfloat16 bits as `a` (bfloat16 is invisible to the buffer
    protocol: it travels as its uint16 bits); other dtypes as to_torch."""
    a = np.asarray(a)
    if is_bfloat16(a.dtype):
        t = torch.from_numpy(np.array(a, copy=True, order="C").view(np.uint16)).view(torch.bfloat16)
        return t.requires_grad_(True) if requires_grad else t
    return to_torch(a, requires_grad)


def to_numpy_low(t: torch.Tensor, like: np.dtype) -> np.ndarray:
    """A torch result as NumPy; a bfloat16 one as `like` (the ml_dtypes.bfloat16 dtype) by its bits."""
    t = t.detach().cpu()
    if t.dtype == torch.bfloat16:
        return t.view(torch.uint16).numpy().view(like)
    return t.numpy()


def to_numpy(t: torch.Tensor) -> np.ndarray:
    return t.detach().cpu().numpy()


def to_torch_f64(a: Any) -> torch.Tensor:
    """A float64 (or, for integers, int64) tensor with a's values: torch computes the reference
    in float64 (its float32 results are less accurate than ours)."""
    a = np.asarray(a)
    if a.dtype.kind == "f" or is_bfloat16(a.dtype):
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
    if base == "logsumexp" and kw.get("b") is not None:
        # SciPy's weighted form for positive b: logsumexp(x + log b) over the broadcast shape.
        axis = kw.get("axis", -1)
        keep = kw.get("keepdims", False)
        nd = max(np.broadcast_shapes(np.shape(kw["x"]), np.shape(kw["b"])).__len__(), 1)
        axes = normalize_axes(nd, axis)

        def fw(t, b):
            t, b = torch.broadcast_tensors(t, b)
            z = (t + torch.log(b)).reshape(t.shape if t.ndim else (1,))
            r = torch.logsumexp(z, dim=axes, keepdim=keep)
            return r.reshape(()) if t.ndim == 0 else r
        return fw, ["x", "b"]
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
    if "inputs" in kw:  # sigmoid_focal_loss: torchvision's formula, written out in torch
        return (lambda i, t: torchvision_focal(i, t, kw.get("alpha", 0.25), kw.get("gamma", 2.0),
                                               kw.get("reduction", "none"))), ["inputs", "targets"]
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
    elif base == "kl_div":
        def f(i, t):
            return F.kl_div(i, t, reduction=red, log_target=kw.get("log_target", False))
    elif base == "soft_margin_loss":
        # torch's own F.soft_margin_loss overflows for margins -y x > 709.8 (float64): the
        # stable composition of the same function (the deviation is pinned in test_margin.py).
        def f(i, t):
            return _reduce(torch.logaddexp(torch.zeros_like(i), -t.to(i.dtype) * i), red)  # input's dtype, as torch
    elif base == "multilabel_soft_margin_loss":
        def f(i, t, w=None):
            return F.multilabel_soft_margin_loss(i, t, weight=w, reduction=red)
    elif base == "nll_loss":
        def f(i, t, w=None):
            return F.nll_loss(i, t, weight=w, ignore_index=kw.get("ignore_index", -100), reduction=red)
    elif base == "symmetric_cross_entropy":
        def f(i, t):
            return torch_symmetric_ce(i, t, kw.get("alpha", 1.0), kw.get("beta", 1.0), kw.get("eps", 1e-8),
                                      red, kw.get("prob_eps"), kw.get("label_eps"))
    else:
        raise KeyError(f"no torch counterpart for {base!r}: add it to tests/_oracle.py")
    return f, names


def _reduce(loss: torch.Tensor, reduction: str) -> torch.Tensor:
    return loss.mean() if reduction == "mean" else loss.sum() if reduction == "sum" else loss


def torchvision_focal(inputs: torch.Tensor, targets: torch.Tensor, alpha: float = 0.25, gamma: float = 2.0,
                      reduction: str = "none") -> torch.Tensor:
    """torchvision.ops.sigmoid_focal_loss's composition, as torchvision writes it (torchvision
    cannot be installed beside this torch)."""
    p = torch.sigmoid(inputs)
    ce_loss = F.binary_cross_entropy_with_logits(inputs, targets, reduction="none")
    p_t = p * targets + (1 - p) * (1 - targets)
    loss = ce_loss * ((1 - p_t) ** gamma)
    if alpha >= 0:
        alpha_t = alpha * targets + (1 - alpha) * (1 - targets)
        loss = alpha_t * loss
    return _reduce(loss, reduction)


def torch_symmetric_ce(pred, labels, alpha=1.0, beta=1.0, eps=1e-8, reduction="mean", prob_eps=None,
                       label_eps=None):
    """The seed's SymmetricCELoss written in torch (its clamps at prob_eps and label_eps, both
    eps by default; the seed's module is prob_eps=1e-7, label_eps=1e-4), with a reduction."""
    pe = eps if prob_eps is None else prob_eps
    le = eps if label_eps is None else label_eps
    ce = F.cross_entropy(pred, labels, reduction="none")
    p = torch.clamp(F.softmax(pred, dim=1), min=pe, max=1.0)
    one_hot = torch.clamp(F.one_hot(labels, pred.shape[1]).to(pred.dtype), min=le, max=1.0)
    rce = -1 * torch.sum(p * torch.log(one_hot), dim=1)
    loss = alpha * ce + beta * rce
    return loss.mean() if reduction == "mean" else loss.sum() if reduction == "sum" else loss


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
    if wrt == "input" and "input" not in names:
        wrt = names[0]  # sigmoid_focal_loss's inputs
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
