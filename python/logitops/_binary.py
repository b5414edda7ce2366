"""binary_cross_entropy and binary_cross_entropy_with_logits (forward, backward, fused).

Semantics are torch.nn.functional's; where we deviate from torch (CPU, 2.x), it is on purpose,
listed here and pinned by tests/test_binary.py (TestDeviations):

1. BCE-with-logits at input -inf: torch gives nan for every target. We give the limit of
   (1 - t) softplus(x) + q t softplus(-x) (q = pos_weight, 1 if absent): +inf if q*t > 0,
   0 if q*t == 0 (target 0, or pos_weight 0).
2. BCE-with-logits at input +inf with target 1: torch gives nan; we give the limit 0.
   (For target < 1 both give +inf.)
3. A weight of 0 makes its element contribute exactly 0 where the unweighted loss (or target
   gradient) is infinite: BCE-with-logits loss at input +-inf, target gradient of either loss
   at input +-inf / probability 0 or 1 (torch: 0 * inf = nan). Likewise a pos_weight of 0
   in the target gradient of BCE-with-logits at input -inf (torch: nan; we: 0). A NaN term
   stays NaN under a zero weight, as in torch.
4. dtypes: mixed float32/float64 input and target promote to float64 (torch raises for
   binary_cross_entropy, and binary_cross_entropy_with_logits returns the target's dtype);
   weight and pos_weight are cast to that dtype (as torch: they never promote the result).
5. Exceptions: ValueError (torch: RuntimeError) for probabilities outside [0, 1] and for weights
   that do not broadcast to the input's shape; TypeError for integer or bool targets.

Not a deviation but a difference in digits: BCE-with-logits for target 0 and very negative
logits is exp(x) to within 4 ulp here, where torch returns 0 (x < -17 in float32); every
element of the loss is within 4 ulp of the exact value (float32) for every finite input.
"""

from __future__ import annotations

from math import prod
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
    LossKernel,
    check_out,
    check_reduction,
    contiguous,
    float_array,
    grad_scalar,
    legacy_reduction,
    reduce_loss,
    result_dtype,
    weight_dtype,
)

__all__ = [
    "binary_cross_entropy",
    "binary_cross_entropy_backward",
    "binary_cross_entropy_value_and_grad",
    "binary_cross_entropy_with_logits",
    "binary_cross_entropy_with_logits_backward",
    "binary_cross_entropy_with_logits_value_and_grad",
]

_BAD_INPUT, _BAD_TARGET = int(_core.BinaryStatus.bad_input), int(_core.BinaryStatus.bad_target)


class _Weight(NamedTuple):
    """A weight as the kernels take it: element i of the input uses data[(i // block) % period]."""

    data: np.ndarray | None
    period: int
    block: int


_NO_WEIGHT = _Weight(None, 1, 1)


class _Args(NamedTuple):
    input: np.ndarray  # C-contiguous, dtype
    target: np.ndarray
    weight: _Weight
    pos_weight: _Weight
    dtype: np.dtype
    shape: tuple[int, ...]
    n: int


def _broadcast_layout(w: Any, name: str, shape: tuple[int, ...], dtype: np.dtype) -> _Weight:
    """w broadcast to `shape` as (data, period, block), without an input-sized copy whenever the
    axes along which w varies are consecutive (scalar, full, trailing vector, (C, 1, 1), ...)."""
    if w is None:
        return _NO_WEIGHT
    w = float_array(w, name)
    # Broadcasting w to `shape` gives `shape` (np.broadcast_shapes would say so, at several
    # times the cost of a small call) iff each of w's axes, aligned on the last, is 1 or shape's.
    nd = len(shape)
    ws = (1,) * (nd - w.ndim) + w.shape
    if w.ndim > nd or any(a != 1 and a != b for a, b in zip(ws, shape)):
        raise ValueError(
            f"{name} of shape {w.shape} does not broadcast to the input's shape {shape} "
            "(it may not enlarge the output)"
        )
    # math.prod, not np.prod: a fraction of the cost, and exact (every product here divides n).
    n = prod(shape)
    if n == 0:
        return _NO_WEIGHT  # nothing to weigh (the shape was still checked)
    varying = [a for a in range(nd) if ws[a] != 1]
    if not varying:
        return _Weight(contiguous(w, dtype).reshape(1), 1, 1)
    lo, hi = varying[0], varying[-1]
    if all(ws[a] == shape[a] for a in range(lo, hi + 1)):
        period, block = prod(shape[lo : hi + 1]), prod(shape[hi + 1 :])
        return _Weight(contiguous(w, dtype).reshape(period), period, block)
    # Varies along axes with a broadcast axis between them, e.g. (N, 1, W) on (N, C, W): rare,
    # so it is simply expanded.
    full = np.ascontiguousarray(np.broadcast_to(w, shape), dtype=dtype).reshape(n)
    return _Weight(full, n, 1)


def _prepare(input: Any, target: Any, weight: Any, pos_weight: Any = None) -> _Args:
    # The usual call (C-contiguous float arrays of one dtype and shape, no weights) is taken as
    # it is: the general path below would return these very arrays, and its checks are most of
    # the time of a call on small inputs.
    if type(input) is np.ndarray and type(target) is np.ndarray and weight is None and pos_weight is None:
        dt = input.dtype
        fi, ft = input.flags, target.flags
        if (dt in FLOAT_DTYPES and target.dtype == dt and input.shape == target.shape
                and fi.c_contiguous and ft.c_contiguous and fi.aligned and ft.aligned):
            return _Args(input, target, _NO_WEIGHT, _NO_WEIGHT, dt, input.shape, input.size)
    input = float_array(input, "input")
    target = float_array(target, "target")
    if target.shape != input.shape:
        raise ValueError(
            f"target has shape {target.shape} but input has shape {input.shape}: they must be the same"
        )
    dt = result_dtype(input, target)
    shape = input.shape
    return _Args(contiguous(input, dt), contiguous(target, dt), _broadcast_layout(weight, "weight", shape, weight_dtype(dt)),
                 _broadcast_layout(pos_weight, "pos_weight", shape, weight_dtype(dt)), dt, shape, input.size)


def _check_wrt(wrt: Any) -> int:
    if wrt == "input":
        return OP_GRAD_INPUT
    if wrt == "target":
        return OP_GRAD_TARGET
    raise ValueError(f"wrt must be 'input' or 'target', got {wrt!r}")


def _grad_output(grad_output: Any, a: _Args, reduction: str) -> tuple[np.ndarray | None, float, np.dtype]:
    """(per-element upstream gradient or None, scalar upstream gradient, computation dtype) for a
    backward call."""
    if reduction == "none":
        # A Python float is weakly typed (it takes the computation's dtype, as in torch and
        # NumPy); NumPy scalars and arrays keep theirs and promote as arrays do.
        if isinstance(grad_output, np.floating):  # before float: np.float64 is a float subclass
            grad_output = np.asarray(grad_output)
        elif isinstance(grad_output, float):
            grad_output = np.asarray(grad_output, dtype=a.dtype)
        g = float_array(grad_output, "grad_output")
        if g.shape != a.shape:
            raise ValueError(
                f"grad_output has shape {g.shape}, expected {a.shape} (the shape of the unreduced loss)"
            )
        dt = result_dtype(a.input, g)
        return contiguous(g, dt), 1.0, dt
    return None, grad_scalar(grad_output, a.dtype, reduction), a.dtype


def _with_dtype(a: _Args, dt: np.dtype) -> _Args:
    """a with its arrays in dtype dt (a float64 grad_output promotes a float32 computation)."""
    if dt == a.dtype:
        return a

    def cast(w: _Weight) -> _Weight:
        wdt = weight_dtype(dt)
        return w if w.data is None or w.data.dtype == wdt else w._replace(data=w.data.astype(wdt))

    return a._replace(
        input=a.input.astype(dt), target=a.target.astype(dt), weight=cast(a.weight),
        pos_weight=cast(a.pos_weight), dtype=dt,
    )


def _call(kernel: LossKernel, op: int, a: _Args, reduction: str, grad_output: np.ndarray | None = None,
          grad_value: float = 1.0, out: np.ndarray | None = None) -> tuple[Any, np.ndarray | None]:
    """(loss: reduced per `reduction`, or None for a gradient op; gradient or None)."""
    total, divisor, status, losses, grad = kernel(
        op, REDUCTION_CODES[reduction], a.input, a.target, a.weight.data, a.weight.period, a.weight.block,
        a.pos_weight.data, a.pos_weight.period, a.pos_weight.block, grad_output, grad_value, out)
    # Probabilities are checked by the kernel as it reads them (when it writes over its input,
    # before the first write), as torch checks them.
    if status & _BAD_INPUT:
        raise ValueError("input: all elements should be probabilities between 0 and 1 (and not NaN)")
    if status & _BAD_TARGET:
        raise ValueError("target: all elements should be between 0 and 1 (and not NaN)")
    if op == OP_GRAD_INPUT or op == OP_GRAD_TARGET:
        return None, grad
    if reduction == "none":
        return losses, grad
    return reduce_loss(total, divisor, reduction, a.dtype), grad


def _forward(kernel: LossKernel, a: _Args, reduction: str) -> Any:
    return _call(kernel, OP_LOSS, a, reduction)[0]


def _backward(kernel: LossKernel, grad_output: Any, a: _Args, reduction: str, wrt: Any) -> np.ndarray:
    op = _check_wrt(wrt)
    g, gv, dt = _grad_output(grad_output, a, reduction)
    grad = _call(kernel, op, _with_dtype(a, dt), reduction, g, gv)[1]
    assert grad is not None  # a gradient op returns one
    return grad


def _value_and_grad(kernel: LossKernel, a: _Args, reduction: str, out: Any) -> tuple[Any, np.ndarray]:
    if out is not None:  # (building check_out's arguments for nothing costs a quarter µs a call)
        out = check_out(out, a.dtype, a.shape, a.input, True,
                        (("target", a.target), ("weight", a.weight.data), ("pos_weight", a.pos_weight.data)))
    loss, grad = _call(kernel, OP_LOSS_AND_GRAD, a, reduction, out=out)
    assert grad is not None  # the fused op returns one
    return loss, grad


# ----------------------------------------------------------------------------- probabilities
#
# Every signature is torch's, positional order and legacy arguments included; `size_average` and
# `reduce`, when either is not None, decide the reduction as in torch (and warn).


def binary_cross_entropy(input: np.ndarray, target: np.ndarray, weight: np.ndarray | None = None,
                         size_average: bool | None = None, reduce: bool | None = None,
                         reduction: str = "mean") -> Any:
    """-w [t log(p) + (1 - t) log(1 - p)] on probabilities p = input (F.binary_cross_entropy),
    each log clamped at -100 as torch. input and target must lie in [0, 1] (ValueError)."""
    if size_average is not None or reduce is not None:
        reduction = legacy_reduction(size_average, reduce)
    reduction = check_reduction(reduction)
    return _forward(_core.binary_cross_entropy, _prepare(input, target, weight), reduction)


def binary_cross_entropy_backward(grad_output: Any, input: np.ndarray, target: np.ndarray,
                                  weight: np.ndarray | None = None, size_average: bool | None = None,
                                  reduce: bool | None = None, reduction: str = "mean", *,
                                  wrt: str = "input") -> np.ndarray:
    """Gradient of binary_cross_entropy with respect to input (torch's
    g w (p - t) / max(p (1 - p), 1e-12)) or, with wrt="target", to target (g w (log(1-p) - log p))."""
    if size_average is not None or reduce is not None:
        reduction = legacy_reduction(size_average, reduce)
    reduction = check_reduction(reduction)
    a = _prepare(input, target, weight)
    return _backward(_core.binary_cross_entropy, grad_output, a, reduction, wrt)


def binary_cross_entropy_value_and_grad(input: np.ndarray, target: np.ndarray, weight: np.ndarray | None = None,
                                        size_average: bool | None = None, reduce: bool | None = None,
                                        reduction: str = "mean", *,
                                        out: np.ndarray | None = None) -> tuple[Any, np.ndarray]:
    """(binary_cross_entropy, its gradient with respect to input) in one pass over the data.
    `out` receives the gradient and may be `input` itself."""
    if size_average is not None or reduce is not None:
        reduction = legacy_reduction(size_average, reduce)
    reduction = check_reduction(reduction)
    return _value_and_grad(_core.binary_cross_entropy, _prepare(input, target, weight), reduction, out)


# ----------------------------------------------------------------------------- logits


def binary_cross_entropy_with_logits(input: np.ndarray, target: np.ndarray, weight: np.ndarray | None = None,
                                     size_average: bool | None = None, reduce: bool | None = None,
                                     reduction: str = "mean", pos_weight: np.ndarray | None = None) -> Any:
    """-w [q t log sigmoid(x) + (1 - t) log sigmoid(-x)] on logits x = input, q = pos_weight
    (F.binary_cross_entropy_with_logits); exact for every finite x, the limit at +-inf."""
    if size_average is not None or reduce is not None:
        reduction = legacy_reduction(size_average, reduce)
    reduction = check_reduction(reduction)
    a = _prepare(input, target, weight, pos_weight)
    return _forward(_core.binary_cross_entropy_with_logits, a, reduction)


def binary_cross_entropy_with_logits_backward(grad_output: Any, input: np.ndarray, target: np.ndarray,
                                              weight: np.ndarray | None = None, size_average: bool | None = None,
                                              reduce: bool | None = None, reduction: str = "mean",
                                              pos_weight: np.ndarray | None = None, *,
                                              wrt: str = "input") -> np.ndarray:
    """Gradient of binary_cross_entropy_with_logits with respect to input
    (g w [(1 - t) sigmoid(x) - q t sigmoid(-x)]) or, with wrt="target", to target
    (g w [q softplus(-x) - softplus(x)], which is -g w x without pos_weight)."""
    if size_average is not None or reduce is not None:
        reduction = legacy_reduction(size_average, reduce)
    reduction = check_reduction(reduction)
    a = _prepare(input, target, weight, pos_weight)
    return _backward(_core.binary_cross_entropy_with_logits, grad_output, a, reduction, wrt)


def binary_cross_entropy_with_logits_value_and_grad(input: np.ndarray, target: np.ndarray,
                                                    weight: np.ndarray | None = None,
                                                    size_average: bool | None = None, reduce: bool | None = None,
                                                    reduction: str = "mean", pos_weight: np.ndarray | None = None,
                                                    *, out: np.ndarray | None = None) -> tuple[Any, np.ndarray]:
    """(binary_cross_entropy_with_logits, its gradient with respect to input) in one pass over
    the data. `out` receives the gradient and may be `input` itself (the logits are overwritten)."""
    if size_average is not None or reduce is not None:
        reduction = legacy_reduction(size_average, reduce)
    reduction = check_reduction(reduction)
    a = _prepare(input, target, weight, pos_weight)
    return _value_and_grad(_core.binary_cross_entropy_with_logits, a, reduction, out)


# ----------------------------------------------------------------------------- partials
# Mergeable partial results (_partials.py): the float64 loss sum and the mean's divisor (the
# element count) of one block, from the kernels' own (loss_sum, divisor).


def _partials(kw: dict[str, Any], logits: bool, grad_scale: float | None,
              out: np.ndarray | None) -> tuple[float, float, np.ndarray | None]:
    """(loss sum, divisor, gradient of grad_scale * loss sum or None) of the forward's arguments `kw`."""
    a = _prepare(kw["input"], kw["target"], kw["weight"], kw.get("pos_weight"))
    kernel = _core.binary_cross_entropy_with_logits if logits else _core.binary_cross_entropy
    if grad_scale is None:
        op = OP_LOSS
    else:
        op = OP_LOSS_AND_GRAD
        if out is not None:
            out = check_out(out, a.dtype, a.shape, a.input, True,
                            (("target", a.target), ("weight", a.weight.data), ("pos_weight", a.pos_weight.data)))
    total, divisor, status, _, grad = kernel(
        op, REDUCTION_CODES["sum"], a.input, a.target, a.weight.data, a.weight.period, a.weight.block,
        a.pos_weight.data, a.pos_weight.period, a.pos_weight.block, None,
        1.0 if grad_scale is None else grad_scale, out)
    if status & _BAD_INPUT:
        raise ValueError("input: all elements should be probabilities between 0 and 1 (and not NaN)")
    if status & _BAD_TARGET:
        raise ValueError("target: all elements should be between 0 and 1 (and not NaN)")
    return float(total), float(divisor), grad


def _divisor(kw: dict[str, Any], logits: bool) -> float:
    """The mean's divisor, the number of elements, from the arguments' shapes and dtypes alone
    (checked as the forward checks them; no value is read: np.broadcast_to serves)."""
    input, target = float_array(kw["input"], "input"), float_array(kw["target"], "target")
    if target.shape != input.shape:
        raise ValueError(
            f"target has shape {target.shape} but input has shape {input.shape}: they must be the same"
        )
    dt = result_dtype(input, target)
    _broadcast_layout(kw["weight"], "weight", input.shape, dt)
    if logits:
        _broadcast_layout(kw["pos_weight"], "pos_weight", input.shape, dt)
    return float(input.size)
