"""soft_margin_loss and multilabel_soft_margin_loss (forward, backward, fused): torch's.

Both run on the binary family's kernels (cpp/kernels/binary.cpp): soft_margin_loss is
softplus(-y x), computed as max(z, 0) + log1p(exp(-|z|)); multilabel_soft_margin_loss is the
mean over the last axis of BCE-with-logits terms, in one pass over the rows.

Where we deviate from torch (CPU, 2.x), on purpose (pinned by tests/test_margin.py):

1. soft_margin_loss for margins -y x > 88.7 (float32) / 709.8 (float64): torch's
   log(1 + exp(-y x)) overflows to inf and its gradient exp(z) / (1 + exp(z)) is nan; we give
   the exact -y x (plus its tiny tail) and the gradient -y.
2. target must have input's shape (torch broadcasts a smaller target, with a warning for some
   losses); a mismatch is a ValueError naming both shapes.
3. multilabel_soft_margin_loss's weight broadcasts to input's shape but may not enlarge the
   result (torch broadcasts `loss * weight`, so a (2, N, C) weight gives a (2, N) result).
4. Exceptions: ValueError (torch: RuntimeError / IndexError) for a wrong shape, a 0-d input of
   multilabel_soft_margin_loss, a target gradient of soft_margin_loss (torch: RuntimeError "not
   differentiable with respect to argument 'target'").

Dtypes as torch: soft_margin_loss computes in input's dtype (a float64 target is cast, as
torch does); multilabel_soft_margin_loss promotes over input, target and weight.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from . import _core
from ._binary import _NO_WEIGHT, _Args, _broadcast_layout, _call, _grad_output, _with_dtype
from ._checks import (
    FLOAT_DTYPES,
    OP_GRAD_INPUT,
    OP_GRAD_TARGET,
    OP_LOSS,
    OP_LOSS_AND_GRAD,
    REDUCTION_CODES,
    check_out,
    check_reduction,
    contiguous,
    float_array,
    legacy_reduction,
    reduce_loss,
    result_dtype,
    via_float32,
)

__all__ = [
    "soft_margin_loss",
    "soft_margin_loss_backward",
    "soft_margin_loss_value_and_grad",
    "multilabel_soft_margin_loss",
    "multilabel_soft_margin_loss_backward",
    "multilabel_soft_margin_loss_value_and_grad",
]


def _same_shape(input: np.ndarray, target: np.ndarray) -> None:
    if target.shape != input.shape:
        raise ValueError(
            f"target has shape {target.shape} but input has shape {input.shape}: they must be the same"
        )


def _resolve(size_average: Any, reduce: Any, reduction: Any, stacklevel: int = 4) -> str:
    """stacklevel 4: user -> public function -> here -> legacy_reduction (5 through via_float32)."""
    if size_average is not None or reduce is not None:
        reduction = legacy_reduction(size_average, reduce, stacklevel=stacklevel)
    return check_reduction(reduction)


# ----------------------------------------------------------------------------- soft margin


def _prepare_soft_margin(input: Any, target: Any) -> _Args:
    if type(input) is np.ndarray and type(target) is np.ndarray:  # the usual call, taken as it is
        dt = input.dtype
        fi, ft = input.flags, target.flags
        if (dt in FLOAT_DTYPES and target.dtype == dt and input.shape == target.shape
                and fi.c_contiguous and ft.c_contiguous and fi.aligned and ft.aligned):
            return _Args(input, target, _NO_WEIGHT, _NO_WEIGHT, dt, input.shape, input.size)
    input = float_array(input, "input")
    target = float_array(target, "target")
    _same_shape(input, target)
    dt = input.dtype  # torch: the input's dtype, whatever the target's
    return _Args(contiguous(input, dt), contiguous(target, dt), _NO_WEIGHT, _NO_WEIGHT, dt, input.shape, input.size)


def _input_only(wrt: Any, name: str) -> int:
    if wrt == "input":
        return OP_GRAD_INPUT
    if wrt == "target":
        raise ValueError(f"wrt='target': {name} is not differentiable with respect to target (as in torch)")
    raise ValueError(f"wrt must be 'input', got {wrt!r}")


def soft_margin_loss(input: np.ndarray, target: np.ndarray, size_average: bool | None = None,
                     reduce: bool | None = None, reduction: str = "mean") -> Any:
    """log(1 + exp(-y x)) for logits x = input and labels y = target (+-1) (F.soft_margin_loss),
    exact for every finite margin."""
    reduction = _resolve(size_average, reduce, reduction)
    return _call(_core.soft_margin_loss, OP_LOSS, _prepare_soft_margin(input, target), reduction)[0]


def soft_margin_loss_backward(grad_output: Any, input: np.ndarray, target: np.ndarray,
                              size_average: bool | None = None, reduce: bool | None = None,
                              reduction: str = "mean", *, wrt: str = "input") -> np.ndarray:
    """Gradient of soft_margin_loss with respect to input: -g y sigmoid(-y x). (torch has no
    target gradient: wrt="target" is a ValueError.)"""
    reduction = _resolve(size_average, reduce, reduction)
    op = _input_only(wrt, "soft_margin_loss")
    a = _prepare_soft_margin(input, target)
    g, gv, dt = _grad_output(grad_output, a, reduction)
    grad = _call(_core.soft_margin_loss, op, _with_dtype(a, dt), reduction, g, gv)[1]
    assert grad is not None
    return grad


def soft_margin_loss_value_and_grad(input: np.ndarray, target: np.ndarray, size_average: bool | None = None,
                                    reduce: bool | None = None, reduction: str = "mean", *,
                                    out: np.ndarray | None = None) -> tuple[Any, np.ndarray]:
    """(soft_margin_loss, its gradient with respect to input) in one pass; `out` receives the
    gradient and may be `input` itself."""
    reduction = _resolve(size_average, reduce, reduction)
    a = _prepare_soft_margin(input, target)
    if out is not None:
        out = check_out(out, a.dtype, a.shape, a.input, True, (("target", a.target),))
    loss, grad = _call(_core.soft_margin_loss, OP_LOSS_AND_GRAD, a, reduction, out=out)
    assert grad is not None
    return loss, grad


# ----------------------------------------------------------------------------- multilabel


def _prepare_multilabel(input: Any, target: Any, weight: Any) -> _Args:
    input = float_array(input, "input")
    target = float_array(target, "target")
    if input.ndim == 0:
        raise ValueError("input must have at least one dimension (the classes are its last axis), got a 0-d array")
    _same_shape(input, target)
    w = None if weight is None else float_array(weight, "weight")
    dt = result_dtype(input, target, w)  # torch: loss * weight promotes
    shape = input.shape
    return _Args(contiguous(input, dt), contiguous(target, dt), _broadcast_layout(w, "weight", shape, dt),
                 _NO_WEIGHT, dt, shape, input.size)


def _ml_call(op: int, a: _Args, reduction: str, grad_output: np.ndarray | None = None, grad_value: float = 1.0,
             out: np.ndarray | None = None) -> tuple[Any, np.ndarray | None]:
    total, divisor, _, losses, grad = _core.multilabel_soft_margin_loss(
        op, REDUCTION_CODES[reduction], a.input, a.target, a.weight.data, a.weight.period, a.weight.block,
        grad_output, grad_value, out)
    if op == OP_GRAD_INPUT or op == OP_GRAD_TARGET:
        return None, grad
    if reduction == "none":
        return losses, grad
    return reduce_loss(total, divisor, reduction, a.dtype), grad


def multilabel_soft_margin_loss(input: np.ndarray, target: np.ndarray, weight: np.ndarray | None = None,
                                size_average: bool | None = None, reduce: bool | None = None,
                                reduction: str = "mean") -> Any:
    """mean over the last axis (the classes) of -w [t log sigmoid(x) + (1 - t) log sigmoid(-x)]
    (F.multilabel_soft_margin_loss); "none" gives one loss per row, shape input.shape[:-1]."""
    reduction = _resolve(size_average, reduce, reduction, stacklevel=5)
    return _ml_call(OP_LOSS, _prepare_multilabel(input, target, weight), reduction)[0]


def multilabel_soft_margin_loss_backward(grad_output: Any, input: np.ndarray, target: np.ndarray,
                                         weight: np.ndarray | None = None, size_average: bool | None = None,
                                         reduce: bool | None = None, reduction: str = "mean", *,
                                         wrt: str = "input") -> np.ndarray:
    """Gradient of multilabel_soft_margin_loss with respect to input (g w [sigmoid(x) - t] / C)
    or, with wrt="target", to target (-g w x / C); g is per row for "none"."""
    reduction = _resolve(size_average, reduce, reduction, stacklevel=5)
    if wrt not in ("input", "target"):
        raise ValueError(f"wrt must be 'input' or 'target', got {wrt!r}")
    a = _prepare_multilabel(input, target, weight)
    # The upstream gradient of "none" has the shape of the row losses.
    rows = a._replace(shape=a.shape[:-1])
    g, gv, dt = _grad_output(grad_output, rows, reduction)
    op = OP_GRAD_INPUT if wrt == "input" else OP_GRAD_TARGET
    grad = _ml_call(op, _with_dtype(a, dt), reduction, g, gv)[1]
    assert grad is not None
    return grad


def multilabel_soft_margin_loss_value_and_grad(input: np.ndarray, target: np.ndarray,
                                               weight: np.ndarray | None = None,
                                               size_average: bool | None = None, reduce: bool | None = None,
                                               reduction: str = "mean", *,
                                               out: np.ndarray | None = None) -> tuple[Any, np.ndarray]:
    """(multilabel_soft_margin_loss, its gradient with respect to input) in one pass; `out`
    receives the gradient and may be `input` itself."""
    reduction = _resolve(size_average, reduce, reduction, stacklevel=5)
    a = _prepare_multilabel(input, target, weight)
    if out is not None:
        out = check_out(out, a.dtype, a.shape, a.input, True, (("target", a.target), ("weight", a.weight.data)))
    loss, grad = _ml_call(OP_LOSS_AND_GRAD, a, reduction, out=out)
    assert grad is not None
    return loss, grad


# float16/bfloat16: soft_margin_loss has 16-bit blocks (the binary driver); the multilabel loss,
# through float32 copies for now (_checks.via_float32).
for _name in __all__:
    if _name.startswith("multilabel"):
        globals()[_name] = via_float32(globals()[_name])
del _name
