"""kl_div (torch's) and sigmoid_focal_loss (torchvision.ops'): forward, backward, fused.

Both are computed in double inside the kernels (cpp/kernels/divergence.h), for float32 too, so
float32 results stay within 4 ulp where torch's composition cancels: kl_div where the input is
close to log(target) (a converged student; where they agree to float32's own precision the
absolute error is below 2^-50 t max(|log t|, |x|)), focal loss at confident predictions.

Where we deviate from torch / torchvision (CPU), on purpose (pinned by tests/test_divergence.py):

1. kl_div's target gradient at target 0 (log_target=False) is -inf, the one-sided limit of
   log(t) + 1 - x (torch: nan, from xlogy's 0/0).
2. kl_div and sigmoid_focal_loss need target of input's shape (torch broadcasts a smaller
   target); a mismatch is a ValueError naming both shapes.
3. sigmoid_focal_loss: targets must lie in [0, 1] (ValueError; NaN propagates), alpha <= 1
   (alpha < 0: no alpha, as torchvision) and gamma >= 0, both finite (torchvision checks
   none of them). Its gradient is finite for every gamma >= 0 (torchvision: nan for gamma < 1
   where 1 - p_t rounds to 0) and is the exact value at confident logits (torchvision's
   1 - p_t loses every digit there: its loss is 0 where ours is tiny and exact). A zero
   alpha_t (alpha 1 with target 0, alpha 0 with target 1) makes its element exactly 0 even at
   an infinite logit (torchvision: 0 * inf = nan). No target gradient (wrt="targets" raises).
4. Exceptions: ValueError for wrong shapes and bad options (torch: RuntimeError).
"""

from __future__ import annotations

import math
import numbers
import warnings
from typing import Any, NamedTuple

import numpy as np

from . import _core
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
    grad_scalar,
    legacy_reduction,
    reduce_loss,
    result_dtype,
    via_float32,
)

__all__ = [
    "kl_div",
    "kl_div_backward",
    "kl_div_value_and_grad",
    "sigmoid_focal_loss",
    "sigmoid_focal_loss_backward",
    "sigmoid_focal_loss_value_and_grad",
]

_BAD_TARGET = int(_core.DivergenceStatus.bad_target)

# torch.nn.functional.kl_div's warning for reduction="mean", word for word.
KL_MEAN_WARNING = (
    "reduction: 'mean' divides the total loss by both the batch size and the support size."
    "'batchmean' divides only by the batch size, and aligns with the KL div math definition."
    "'mean' will be changed to behave the same as 'batchmean' in the next major release."
)


class _Args(NamedTuple):
    input: np.ndarray  # C-contiguous, dtype
    target: np.ndarray
    dtype: np.dtype
    shape: tuple[int, ...]
    reduction: str  # the kernel's: "mean", "sum" or "none"
    divisor: float  # what "mean" divides by
    scale: float  # a factor on the result (torch's batchmean after a legacy reduction), usually 1
    log_target: bool
    alpha: float
    gamma: float


def _arrays(input: Any, target: Any, input_name: str, target_name: str) -> tuple[np.ndarray, np.ndarray, np.dtype]:
    if type(input) is np.ndarray and type(target) is np.ndarray:  # the usual call, taken as it is
        dt = input.dtype
        fi, ft = input.flags, target.flags
        if (dt in FLOAT_DTYPES and target.dtype == dt and input.shape == target.shape
                and fi.c_contiguous and ft.c_contiguous and fi.aligned and ft.aligned):
            return input, target, dt
    input = float_array(input, input_name)
    target = float_array(target, target_name)
    if target.shape != input.shape:
        raise ValueError(
            f"{target_name} has shape {target.shape} but {input_name} has shape {input.shape}: they must be the same"
        )
    dt = result_dtype(input, target)
    return contiguous(input, dt), contiguous(target, dt), dt


def _call(kernel: Any, op: int, a: _Args, grad_output: np.ndarray | None = None, grad_value: float = 1.0,
          out: np.ndarray | None = None, target_name: str = "targets") -> tuple[Any, np.ndarray | None]:
    total, divisor, status, losses, grad = kernel(
        op, REDUCTION_CODES[a.reduction], a.input, a.target, a.divisor, a.log_target, a.alpha, a.gamma,
        grad_output, grad_value * a.scale, out)
    if status & _BAD_TARGET:
        raise ValueError(f"{target_name}: all elements should be between 0 and 1 (or NaN)")
    if op == OP_GRAD_INPUT or op == OP_GRAD_TARGET:
        return None, grad
    if a.reduction == "none":
        if a.scale != 1.0:
            assert losses is not None
            losses *= losses.dtype.type(a.scale)
        return losses, grad
    return reduce_loss(total * a.scale, divisor, a.reduction, a.dtype), grad


def _grad_output(grad_output: Any, a: _Args, name: str) -> tuple[_Args, np.ndarray | None, float]:
    """(a in the computation's dtype, per-element upstream gradient or None, scalar one)."""
    if a.reduction == "none":
        if isinstance(grad_output, np.floating):  # a NumPy scalar keeps its dtype; a float takes ours
            grad_output = np.asarray(grad_output)
        elif isinstance(grad_output, float):
            grad_output = np.asarray(grad_output, dtype=a.dtype)
        g = float_array(grad_output, "grad_output")
        if g.shape != a.shape:
            raise ValueError(
                f"grad_output has shape {g.shape}, expected {a.shape} (the shape of the unreduced loss)"
            )
        dt = result_dtype(a.input, g)
        if dt != a.dtype:
            a = a._replace(input=a.input.astype(dt), target=a.target.astype(dt), dtype=dt)
        return a, contiguous(g, dt), 1.0
    return a, None, grad_scalar(grad_output, a.dtype, a.reduction)


def _out(out: Any, a: _Args, input_name: str, target_name: str) -> np.ndarray | None:
    if out is None:
        return None
    return check_out(out, a.dtype, a.shape, a.input, True, ((target_name, a.target),), input_name=input_name)


# ----------------------------------------------------------------------------- kl_div


def _kl_args(input: Any, target: Any, size_average: Any, reduce: Any, reduction: Any, log_target: Any) -> _Args:
    """torch's F.kl_div: the legacy pair decides the reduction (and a "batchmean" given with it
    still divides by the batch size, as torch); otherwise "mean" warns as torch does."""
    if not isinstance(log_target, (bool, np.bool_)):
        raise TypeError(f"log_target must be a bool, got {type(log_target).__name__}")
    if size_average is not None or reduce is not None:
        kernel_reduction = legacy_reduction(size_average, reduce, stacklevel=5)  # (via_float32's frame too)
    else:
        if not isinstance(reduction, str) or reduction not in ("mean", "batchmean", "sum", "none"):
            raise ValueError(f"reduction must be one of 'mean', 'batchmean', 'sum', 'none', got {reduction!r}")
        if reduction == "mean":
            warnings.warn(KL_MEAN_WARNING, UserWarning, stacklevel=4)  # user -> via_float32 -> kl_div* -> here
        kernel_reduction = "sum" if reduction == "batchmean" else reduction
    x, t, dt = _arrays(input, target, "input", "target")
    divisor, scale = float(x.size), 1.0
    if reduction == "batchmean" and x.ndim != 0:  # (torch: a 0-d input's batchmean is its sum)
        if size_average is None and reduce is None:
            kernel_reduction, divisor = "mean", float(x.shape[0])
        else:  # torch divides the legacy-reduced result by the batch size
            scale = 1.0 / x.shape[0] if x.shape[0] else math.inf
    return _Args(x, t, dt, x.shape, kernel_reduction, divisor, scale, bool(log_target), 0.0, 0.0)


def kl_div(input: np.ndarray, target: np.ndarray, size_average: bool | None = None, reduce: bool | None = None,
           reduction: str = "mean", log_target: bool = False) -> Any:
    """Pointwise KL divergence target * (log(target) - input) for log-probabilities `input`
    (F.kl_div; with log_target=True, target holds log-probabilities too: exp(t) * (t - x)).
    reduction "batchmean" divides the sum by input.shape[0]; "mean" by the number of elements
    (and warns, as torch)."""
    a = _kl_args(input, target, size_average, reduce, reduction, log_target)
    return _call(_core.kl_div, OP_LOSS, a)[0]


def kl_div_backward(grad_output: Any, input: np.ndarray, target: np.ndarray, size_average: bool | None = None,
                    reduce: bool | None = None, reduction: str = "mean", log_target: bool = False, *,
                    wrt: str = "input") -> np.ndarray:
    """Gradient of kl_div with respect to input (-g t, or -g exp(t) with log_target) or, with
    wrt="target", to target (g (log t + 1 - x), or g exp(t) (t - x + 1))."""
    a = _kl_args(input, target, size_average, reduce, reduction, log_target)
    if wrt == "input":
        op = OP_GRAD_INPUT
    elif wrt == "target":
        op = OP_GRAD_TARGET
    else:
        raise ValueError(f"wrt must be 'input' or 'target', got {wrt!r}")
    a, g, gv = _grad_output(grad_output, a, "grad_output")
    grad = _call(_core.kl_div, op, a, g, gv)[1]
    assert grad is not None
    return grad


def kl_div_value_and_grad(input: np.ndarray, target: np.ndarray, size_average: bool | None = None,
                          reduce: bool | None = None, reduction: str = "mean", log_target: bool = False, *,
                          out: np.ndarray | None = None) -> tuple[Any, np.ndarray]:
    """(kl_div, its gradient with respect to input) in one pass; `out` receives the gradient
    and may be `input` itself."""
    a = _kl_args(input, target, size_average, reduce, reduction, log_target)
    loss, grad = _call(_core.kl_div, OP_LOSS_AND_GRAD, a, out=_out(out, a, "input", "target"))
    assert grad is not None
    return loss, grad


# ----------------------------------------------------------------------------- focal


def _real(v: Any, name: str) -> float:
    if isinstance(v, (bool, np.bool_)) or not isinstance(v, (numbers.Real, np.floating, np.integer)):
        raise TypeError(f"{name} must be a real number, got {type(v).__name__}")
    return float(v)


def _focal_args(inputs: Any, targets: Any, alpha: Any, gamma: Any, reduction: Any) -> _Args:
    al = _real(alpha, "alpha")
    ga = _real(gamma, "gamma")
    if not math.isfinite(al) or al > 1:
        raise ValueError(f"alpha must be a finite number <= 1 (negative: no alpha), got {alpha!r}")
    if not math.isfinite(ga) or ga < 0:
        raise ValueError(f"gamma must be a finite number >= 0, got {gamma!r}")
    reduction = check_reduction(reduction)
    x, t, dt = _arrays(inputs, targets, "inputs", "targets")
    return _Args(x, t, dt, x.shape, reduction, float(x.size), 1.0, False, al, ga)


def sigmoid_focal_loss(inputs: np.ndarray, targets: np.ndarray, alpha: float = 0.25, gamma: float = 2.0,
                       reduction: str = "none") -> Any:
    """torchvision.ops.sigmoid_focal_loss: alpha_t (1 - p_t)^gamma BCE-with-logits(inputs,
    targets), p_t = p t + (1 - p)(1 - t), alpha_t = alpha t + (1 - alpha)(1 - t) (1 for alpha < 0);
    exact for every finite logit, finite gradients for every gamma >= 0."""
    a = _focal_args(inputs, targets, alpha, gamma, reduction)
    return _call(_core.sigmoid_focal_loss, OP_LOSS, a)[0]


def sigmoid_focal_loss_backward(grad_output: Any, inputs: np.ndarray, targets: np.ndarray, alpha: float = 0.25,
                                gamma: float = 2.0, reduction: str = "none", *, wrt: str = "inputs") -> np.ndarray:
    """Gradient of sigmoid_focal_loss with respect to inputs (divergence.h has the formula);
    there is no target gradient."""
    a = _focal_args(inputs, targets, alpha, gamma, reduction)
    if wrt != "inputs":
        if wrt == "targets":
            raise ValueError("wrt='targets': sigmoid_focal_loss_backward gives the gradient with respect to inputs only")
        raise ValueError(f"wrt must be 'inputs', got {wrt!r}")
    a, g, gv = _grad_output(grad_output, a, "grad_output")
    grad = _call(_core.sigmoid_focal_loss, OP_GRAD_INPUT, a, g, gv)[1]
    assert grad is not None
    return grad


def sigmoid_focal_loss_value_and_grad(inputs: np.ndarray, targets: np.ndarray, alpha: float = 0.25,
                                      gamma: float = 2.0, reduction: str = "none", *,
                                      out: np.ndarray | None = None) -> tuple[Any, np.ndarray]:
    """(sigmoid_focal_loss, its gradient with respect to inputs) in one pass; `out` receives
    the gradient and may be `inputs` itself."""
    a = _focal_args(inputs, targets, alpha, gamma, reduction)
    loss, grad = _call(_core.sigmoid_focal_loss, OP_LOSS_AND_GRAD, a, out=_out(out, a, "inputs", "targets"))
    assert grad is not None
    return loss, grad


# float16/bfloat16: through float32 copies for now (_checks.via_float32).
for _name in __all__:
    globals()[_name] = via_float32(globals()[_name])
del _name
