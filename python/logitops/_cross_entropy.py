"""cross_entropy and nll_loss (forward, backward, fused).

Semantics are torch.nn.functional's (see cpp/kernels/cross_entropy.h for the formulas). Inputs
are (C,), (N, C) or (N, C, d1, ..., dk) with the class axis 1; class-index targets have the
input's shape without that axis, probability targets (cross_entropy only) the input's shape.

Where we deviate from torch (CPU, 2.x), it is on purpose, listed here and pinned by
tests/test_cross_entropy.py (TestDeviations):

1. Class-index targets of every integer dtype are taken (torch: int64 and uint8 only), with
   the same numbers; uint64 values >= 2**63 are out of bounds, never wrapped.
2. A logit of +inf gives the limit (torch: nan): a sample whose maximum is +inf has loss 0 at
   a target holding that +inf (log(k) for k tied +inf logits) and +inf elsewhere.
3. A zero coefficient times a -inf log-probability counts 0, the limit (torch: 0 * inf = nan):
   probability targets with t_c = 0 (and no smoothing) or weight w_c = 0 at a logit of -inf.
4. dtypes: float32 input with float64 probability targets (or grad_output) computes in float64,
   as torch; weight is cast to the computation's dtype (torch raises when it differs).
5. Exceptions: ValueError (torch: RuntimeError) for a weight of the wrong length, shape
   mismatches and label_smoothing outside [0, 1]; TypeError for non-integer, non-float targets.
6. Ignored samples (target == ignore_index) get a gradient of exactly 0, even when their logits
   hold NaN (torch: nan).

LLM heads (SPEC.md): keyword-only `z_loss` (Liger-Kernel's lse_square_scale: z lse^2 per
non-ignored sample, unweighted; "mean" divides that part by the number of non-ignored samples)
and `softcap` (every logit x becomes s tanh(x / s) first). torch has neither: the tests prove
them against a float64 NumPy reference. With label smoothing or probability targets, z_loss is
still z lse^2 of each sample's (capped) logits: neither the smoothing nor the targets enter it.
A softcap on an input with spatial dimensions (N, C, d1, ...) moves the class axis last first
(one transposing copy: the capped kernel walks rows).

Not deviations but digits: the loss of a confident correct prediction is log1p(sum_{j != y}
exp(x_j - x_y)) to within a few ulp (torch returns 0 or a rounding error), and the gradient at
the target class, p_y - 1, is formed without cancellation.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable
from math import prod
from typing import Any

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
    is_bfloat16,
    legacy_reduction,
    promote,
    reduce_loss,
    weight_dtype,
)

__all__ = [
    "cross_entropy",
    "cross_entropy_backward",
    "cross_entropy_value_and_grad",
    "nll_loss",
    "nll_loss_backward",
    "nll_loss_value_and_grad",
]

_REDUCTION = REDUCTION_CODES
# The multiclass bindings without heads: (loss_sum, divisor, bad, losses, gradient).
CeKernel = Callable[..., "tuple[float, float, int, np.ndarray | None, np.ndarray | None]"]
_I64 = np.dtype(np.int64)
_U64 = np.dtype(np.uint64)
_INT64_MIN, _INT64_MAX = -(2**63), 2**63 - 1


class _Prepared:
    """The kernels' view of one call. `channels_last`: the input was laid out (N, d..., C) in
    memory, and is passed as such (rows of C); the gradient is moved back to (N, C, d...)."""

    __slots__ = ("input", "target", "probs", "weight", "outer", "classes", "inner", "dtype", "shape",
                 "sample_shape", "channels_last")
    input: np.ndarray
    target: np.ndarray | None  # class indices, int64
    probs: np.ndarray | None  # probability targets
    weight: np.ndarray | None
    outer: int
    classes: int
    inner: int
    dtype: np.dtype
    shape: tuple[int, ...]
    sample_shape: tuple[int, ...]
    channels_last: bool


def _class_targets(target: np.ndarray, classes: int, ignore_index: int) -> np.ndarray:
    """target as C-contiguous, aligned int64 (a view when it already is one)."""
    # uint64 in either byte order: casting would wrap values >= 2**63 into negative numbers
    # (maybe ignore_index), so report the first target out of range, in order, as the kernel would.
    if target.dtype.kind == "u" and target.dtype.itemsize == 8 and target.size and int(target.max()) > _INT64_MAX:
        flat = np.ravel(target)
        bad = flat >= np.uint64(classes) if classes >= 0 else np.ones(flat.shape, bool)
        if 0 <= ignore_index <= _INT64_MAX:
            bad &= flat != np.uint64(ignore_index)
        raise IndexError(f"Target {int(flat[int(np.argmax(bad))])} is out of bounds.")
    return contiguous(target, _I64)


def _prepare(input: Any, target: Any, weight: Any, ignore_index: Any, nll: bool, extra_dtype: Any = None,
             rows_ok: bool = True, read_input: bool = True) -> _Prepared:
    """The checked arguments as the kernels take them. With read_input=False only the input's
    shape and dtype are used (p.input and p.probs are left as given: no copies)."""
    if type(input) is not np.ndarray or input.dtype not in FLOAT_DTYPES:
        input = float_array(input, "input")
    shape = input.shape
    nd = len(shape)
    if nd == 0:
        raise ValueError("input must have shape (C,), (N, C) or (N, C, d1, ...), got a 0-d array")
    if not isinstance(target, np.ndarray):
        if isinstance(target, (numbers.Integral, np.integer)) and not isinstance(target, (bool, np.bool_)):
            target = np.asarray(target)
        else:
            raise TypeError(f"target must be a numpy.ndarray, got {type(target).__name__}")
    if type(ignore_index) is not int:
        if isinstance(ignore_index, (bool, np.bool_)) or not isinstance(ignore_index, (numbers.Integral, np.integer)):
            raise TypeError(f"ignore_index must be an int, got {type(ignore_index).__name__}")
        ignore_index = int(ignore_index)
    if not _INT64_MIN <= ignore_index <= _INT64_MAX:
        raise ValueError(f"ignore_index must fit in int64, got {ignore_index}")

    p = _Prepared()
    if nd == 1:
        p.classes, p.outer, p.inner, p.sample_shape = shape[0], 1, 1, ()
    elif nd == 2:
        p.outer, p.classes = shape
        p.inner, p.sample_shape = 1, (shape[0],)
    else:
        p.outer, p.classes = shape[0], shape[1]
        p.inner = prod(shape[2:])
        p.sample_shape = (shape[0],) + shape[2:]
    kind = target.dtype.kind
    dt = input.dtype
    if extra_dtype is not None and extra_dtype != dt and (extra_dtype.kind == "f" or is_bfloat16(extra_dtype)):
        dt = promote(dt, extra_dtype)  # a grad_output of another float dtype (checked later)
    if kind in "iu":
        if target.shape != p.sample_shape:
            raise ValueError(
                f"target has shape {target.shape}, expected {p.sample_shape} for input of shape {shape} "
                "(class indices: the input's shape without the class axis 1)"
            )
        p.target = _class_targets(target, p.classes, ignore_index)
        p.probs = None
    elif (kind == "f" and target.dtype.itemsize in (2, 4, 8)) or is_bfloat16(target.dtype):
        target = float_array(target, "target")  # byte-swapped: its values, in native order
        if nll:
            raise TypeError(f"target of nll_loss must have an integer dtype (class indices), got {target.dtype}")
        if target.shape != shape:
            if target.shape == p.sample_shape:
                raise TypeError(
                    f"target: class indices must have an integer dtype, got {target.dtype} (probability "
                    f"targets must have the input's shape {shape})"
                )
            raise ValueError(
                f"target has shape {target.shape} but input has shape {shape}: probability targets must "
                "have the input's shape"
            )
        if ignore_index >= 0:
            raise ValueError(
                "ignore_index is not supported for floating point target (probabilities): got "
                f"ignore_index={ignore_index}; only negative values, which no class has, are accepted"
            )
        dt = promote(dt, target.dtype)
        p.target = None
        p.probs = target
    else:
        raise TypeError(
            "target must have an integer dtype (class indices) or float32, float64, float16 or bfloat16 "
            f"(probabilities), got {target.dtype}"
        )

    if weight is not None:
        weight = float_array(weight, "weight")
        if weight.shape != (p.classes,):
            raise ValueError(
                f"weight has shape {weight.shape}, expected ({p.classes},): one weight per class of input "
                f"of shape {shape}"
            )
        weight = contiguous(weight, weight_dtype(dt))
    p.weight = weight
    p.dtype = dt
    p.shape = shape
    p.channels_last = False
    if not read_input:
        p.input = input
        return p
    if input.flags.c_contiguous or not rows_ok or nd < 3:
        p.input = contiguous(input, dt)
    else:
        # (N, C, d...) that is (N, d..., C) in memory (a torch-style channels-last or transposed
        # view): rows of C as they are, no transposing copy.
        moved = np.moveaxis(input, 1, -1)
        if moved.flags.c_contiguous and moved.flags.aligned and moved.dtype == dt:
            p.channels_last = True
            p.input = moved
            p.outer, p.inner = p.outer * p.inner, 1
        else:
            p.input = contiguous(input, dt)
    if p.probs is not None:
        p.probs = contiguous(np.moveaxis(p.probs, 1, -1) if p.channels_last else p.probs, dt)
    return p


def _check_label_smoothing(label_smoothing: Any) -> float:
    if type(label_smoothing) is float or type(label_smoothing) is int:
        ls = float(label_smoothing)
    elif isinstance(label_smoothing, (numbers.Real, np.floating, np.integer)) and not isinstance(
        label_smoothing, (bool, np.bool_)
    ):
        ls = float(label_smoothing)
    else:
        raise TypeError(f"label_smoothing must be a float, got {type(label_smoothing).__name__}")
    if not 0.0 <= ls <= 1.0:
        raise ValueError(f"label_smoothing must be between 0.0 and 1.0, got {label_smoothing}")
    return ls


def _check_z_loss(z_loss: Any) -> float:
    if type(z_loss) is not float:
        if isinstance(z_loss, (bool, np.bool_)) or not isinstance(z_loss, (numbers.Real, np.floating, np.integer)):
            raise TypeError(f"z_loss must be a float, got {type(z_loss).__name__}")
        z_loss = float(z_loss)
    if not math.isfinite(z_loss):
        raise ValueError(f"z_loss must be a finite number, got {z_loss}")
    return float(z_loss)


def _check_softcap(softcap: Any) -> float:
    """The binding's softcap: s > 0, or 0.0 for None (off)."""
    if softcap is None:
        return 0.0
    if isinstance(softcap, (bool, np.bool_)) or not isinstance(softcap, (numbers.Real, np.floating, np.integer)):
        raise TypeError(f"softcap must be a positive float or None, got {type(softcap).__name__}")
    s = float(softcap)
    if not (s > 0.0 and math.isfinite(s)):
        raise ValueError(f"softcap must be a positive finite number or None, got {softcap}")
    return s


def _rows_for_softcap(p: _Prepared) -> None:
    """The capped kernel walks rows: (N, C, d...) input moved to (N, d..., C) (one copy)."""
    if p.inner == 1:
        return
    p.input = np.ascontiguousarray(np.moveaxis(p.input, 1, -1))
    if p.probs is not None:
        p.probs = np.ascontiguousarray(np.moveaxis(p.probs, 1, -1))
    p.outer, p.inner = p.outer * p.inner, 1
    p.channels_last = True


def _mean_part(total: float, divisor: float) -> float:
    """reduce_loss's mean as a Python float (nan for 0/0, a signed inf for x/0)."""
    return float(reduce_loss(total, divisor, "mean", np.dtype(np.float64)))


def _run(kernel: CeKernel, op: int, p: _Prepared, ignore_index: int, label_smoothing: float, reduction: str,
         grad_output: np.ndarray | None = None, grad_value: float = 1.0, out: np.ndarray | None = None,
         heads: tuple[float, float] | None = None) -> tuple[Any, np.ndarray | None]:
    """(loss: reduced per `reduction`, or None for a gradient op; gradient or None). `heads`:
    (z_loss, softcap) when either is on (softcap 0.0 for off)."""
    if heads is None:  # the usual call: the binding without heads
        total, divisor, bad, losses, grad = kernel(
            op, _REDUCTION[reduction], p.input, p.target, p.probs, p.weight, p.outer, p.classes, p.inner,
            ignore_index, label_smoothing, grad_output, grad_value, out)
    else:  # cross_entropy only (nll_loss has no heads)
        total, divisor, bad, losses, grad, z_total, z_divisor = _core.cross_entropy_heads(
            op, _REDUCTION[reduction], p.input, p.target, p.probs, p.weight, p.outer, p.classes, p.inner,
            ignore_index, label_smoothing, grad_output, grad_value, out, heads[0], heads[1])
    if bad >= 0:
        assert p.target is not None
        raise IndexError(f"Target {int(p.target.reshape(-1)[bad])} is out of bounds.")
    loss = None
    if op == OP_LOSS or op == OP_LOSS_AND_GRAD:
        if divisor and reduction == "mean" and heads is None and p.dtype in FLOAT_DTYPES:
            loss = p.dtype.type(total / divisor)  # the usual call, without reduce_loss's call
        elif reduction == "none":
            assert losses is not None  # stored for "none"
            loss = losses.reshape(p.sample_shape)
        elif heads is not None and heads[0]:
            # Two parts, each with its own divisor (SPEC: the z part's mean is over the samples).
            both = total + z_total if reduction == "sum" else _mean_part(total, divisor) + _mean_part(z_total, z_divisor)
            loss = reduce_loss(both, 1.0, "sum", p.dtype)  # rounded once, into any dtype
        else:
            loss = reduce_loss(total, divisor, reduction, p.dtype)
    if grad is not None and p.channels_last:
        grad = np.moveaxis(grad, -1, 1)
    return loss, grad


def _grad_output(grad_output: Any, p: _Prepared, reduction: str) -> tuple[np.ndarray | None, float]:
    """(per-sample upstream gradient laid out like the samples, or None; scalar upstream gradient)."""
    if reduction != "none":
        return None, grad_scalar(grad_output, p.dtype, reduction)
    g = grad_output
    if isinstance(g, float) and not isinstance(g, np.floating):
        g = np.asarray(g, dtype=p.dtype)  # a Python float takes the computation's dtype
    elif isinstance(g, np.floating):
        g = np.asarray(g)
    g = float_array(g, "grad_output")
    if g.shape != p.sample_shape:
        raise ValueError(
            f"grad_output has shape {g.shape}, expected {p.sample_shape} (the shape of the unreduced loss)"
        )
    return contiguous(g, p.dtype), 1.0


def _grad_dtype(grad_output: Any, reduction: str) -> Any:
    """The dtype an upstream gradient array brings to the computation ("none" only)."""
    if reduction == "none" and isinstance(grad_output, np.ndarray):
        return grad_output.dtype
    return None


# ----------------------------------------------------------------------------- cross_entropy


# Every signature is torch's, positional order and legacy arguments included; `size_average` and
# `reduce`, when either is not None, decide the reduction as in torch (and warn).


def cross_entropy(input: np.ndarray, target: np.ndarray, weight: np.ndarray | None = None,
                  size_average: bool | None = None, ignore_index: int = -100, reduce: bool | None = None,
                  reduction: str = "mean", label_smoothing: float = 0.0, *, z_loss: float = 0.0,
                  softcap: float | None = None) -> Any:
    """Cross-entropy between the logits `input` and class indices or probabilities `target`
    (F.cross_entropy), without forming log_softmax; exact for confident predictions. `z_loss`
    adds z_loss * logsumexp**2 per non-ignored sample; `softcap` s replaces every logit x by
    s * tanh(x / s) first (both as Liger-Kernel's cross-entropy)."""
    if size_average is not None or reduce is not None:
        reduction = legacy_reduction(size_average, reduce)
    if reduction.__class__ is not str or reduction not in _REDUCTION:
        check_reduction(reduction)
    ls = label_smoothing
    if ls.__class__ is not float or not 0.0 <= ls <= 1.0:
        ls = _check_label_smoothing(label_smoothing)
    p = _prepare(input, target, weight, ignore_index, False)
    if softcap is None and z_loss == 0.0 and z_loss.__class__ is float:  # the usual call
        return _run(_core.cross_entropy, OP_LOSS, p, int(ignore_index), ls, reduction)[0]
    heads = (_check_z_loss(z_loss), _check_softcap(softcap))
    if heads[1]:
        _rows_for_softcap(p)
    return _run(_core.cross_entropy, OP_LOSS, p, int(ignore_index), ls, reduction, heads=heads)[0]


def cross_entropy_backward(grad_output: Any, input: np.ndarray, target: np.ndarray, weight: np.ndarray | None = None,
                           size_average: bool | None = None, ignore_index: int = -100, reduce: bool | None = None,
                           reduction: str = "mean", label_smoothing: float = 0.0, *, z_loss: float = 0.0,
                           softcap: float | None = None, wrt: str = "input") -> np.ndarray:
    """Gradient of cross_entropy with respect to input (softmax-shaped: g [(A + B W) p - A onehot
    - B w] for class targets, g (S p - w q) for probabilities) or, with wrt="target", to
    probability targets (-g (1 - label_smoothing) w log_softmax(input))."""
    if size_average is not None or reduce is not None:
        reduction = legacy_reduction(size_average, reduce)
    reduction = check_reduction(reduction)
    ls = _check_label_smoothing(label_smoothing)
    if wrt not in ("input", "target"):
        raise ValueError(f"wrt must be 'input' or 'target', got {wrt!r}")
    z = _check_z_loss(z_loss)
    cap = _check_softcap(softcap)
    p = _prepare(input, target, weight, ignore_index, False, _grad_dtype(grad_output, reduction))
    if wrt == "target" and p.probs is None:
        raise ValueError("wrt='target' needs probability targets (class indices have no gradient)")
    g, gv = _grad_output(grad_output, p, reduction)
    if cap:
        _rows_for_softcap(p)  # grad_output is laid out per sample: (N, d...) both ways
    op = OP_GRAD_INPUT if wrt == "input" else OP_GRAD_TARGET
    heads = (z, cap) if z or cap else None
    grad = _run(_core.cross_entropy, op, p, int(ignore_index), ls, reduction, g, gv, heads=heads)[1]
    assert grad is not None  # a gradient op returns one
    return grad


def cross_entropy_value_and_grad(input: np.ndarray, target: np.ndarray, weight: np.ndarray | None = None,
                                 size_average: bool | None = None, ignore_index: int = -100,
                                 reduce: bool | None = None, reduction: str = "mean", label_smoothing: float = 0.0,
                                 *, z_loss: float = 0.0, softcap: float | None = None,
                                 out: np.ndarray | None = None) -> tuple[Any, np.ndarray]:
    """(cross_entropy, its gradient with respect to input) in one pass over the logits, one exp
    per element (and one tanh with `softcap`). `out` receives the gradient and may be `input`
    itself (the logits are overwritten: no second N x C buffer)."""
    if size_average is not None or reduce is not None:
        reduction = legacy_reduction(size_average, reduce)
    if reduction.__class__ is not str or reduction not in _REDUCTION:
        check_reduction(reduction)
    ls = _check_label_smoothing(label_smoothing)
    p = _prepare(input, target, weight, ignore_index, False, rows_ok=out is None)
    out = check_out(out, p.dtype, p.shape, p.input, not p.channels_last,
                    (("target", p.target), ("target", p.probs), ("weight", p.weight)))
    if softcap is None and z_loss == 0.0 and z_loss.__class__ is float:  # the usual call
        loss, grad = _run(_core.cross_entropy, OP_LOSS_AND_GRAD, p, int(ignore_index), ls, reduction, out=out)
        assert grad is not None  # the fused op returns one
        return loss, grad
    heads = (_check_z_loss(z_loss), _check_softcap(softcap))
    if heads[1] and p.inner != 1:
        # Rows of the moved copy, then the gradient back into out's (N, C, d...) layout.
        _rows_for_softcap(p)
        loss, grad = _run(_core.cross_entropy, OP_LOSS_AND_GRAD, p, int(ignore_index), ls, reduction, heads=heads)
        assert grad is not None
        if out is not None:
            out[...] = grad
            grad = out
        return loss, grad
    loss, grad = _run(_core.cross_entropy, OP_LOSS_AND_GRAD, p, int(ignore_index), ls, reduction, out=out,
                      heads=heads)
    assert grad is not None  # the fused op returns one
    return loss, grad


# ----------------------------------------------------------------------------- nll_loss


def nll_loss(input: np.ndarray, target: np.ndarray, weight: np.ndarray | None = None,
             size_average: bool | None = None, ignore_index: int = -100, reduce: bool | None = None,
             reduction: str = "mean") -> Any:
    """Negative log-likelihood -w[y] input[y] of log-probabilities `input` (F.nll_loss)."""
    if size_average is not None or reduce is not None:
        reduction = legacy_reduction(size_average, reduce)
    if reduction.__class__ is not str or reduction not in _REDUCTION:
        check_reduction(reduction)
    p = _prepare(input, target, weight, ignore_index, True)
    return _run(_core.nll_loss, OP_LOSS, p, int(ignore_index), 0.0, reduction)[0]


def nll_loss_backward(grad_output: Any, input: np.ndarray, target: np.ndarray, weight: np.ndarray | None = None,
                      size_average: bool | None = None, ignore_index: int = -100, reduce: bool | None = None,
                      reduction: str = "mean", *, wrt: str = "input") -> np.ndarray:
    """Gradient of nll_loss with respect to input: -g w[y] at each target, 0 elsewhere (class
    indices have no gradient: `wrt` takes "input" only, as the other losses' backward)."""
    if size_average is not None or reduce is not None:
        reduction = legacy_reduction(size_average, reduce)
    reduction = check_reduction(reduction)
    if wrt != "input":
        if wrt == "target":
            raise ValueError("wrt='target': nll_loss has class-index targets, which have no gradient")
        raise ValueError(f"wrt must be 'input', got {wrt!r}")
    p = _prepare(input, target, weight, ignore_index, True, _grad_dtype(grad_output, reduction))
    g, gv = _grad_output(grad_output, p, reduction)
    grad = _run(_core.nll_loss, OP_GRAD_INPUT, p, int(ignore_index), 0.0, reduction, g, gv)[1]
    assert grad is not None  # a gradient op returns one
    return grad


def nll_loss_value_and_grad(input: np.ndarray, target: np.ndarray, weight: np.ndarray | None = None,
                            size_average: bool | None = None, ignore_index: int = -100, reduce: bool | None = None,
                            reduction: str = "mean", *, out: np.ndarray | None = None) -> tuple[Any, np.ndarray]:
    """(nll_loss, its gradient with respect to input) in one call; `out` may be `input` itself."""
    if size_average is not None or reduce is not None:
        reduction = legacy_reduction(size_average, reduce)
    if reduction.__class__ is not str or reduction not in _REDUCTION:
        check_reduction(reduction)
    p = _prepare(input, target, weight, ignore_index, True, rows_ok=out is None)
    out = check_out(out, p.dtype, p.shape, p.input, not p.channels_last,
                    (("target", p.target), ("target", p.probs), ("weight", p.weight)))
    loss, grad = _run(_core.nll_loss, OP_LOSS_AND_GRAD, p, int(ignore_index), 0.0, reduction, out=out)
    assert grad is not None  # the fused op returns one
    return loss, grad


# ----------------------------------------------------------------------------- partials
# Mergeable partial results (_partials.py): the float64 loss sum and the mean's divisor of one
# block, from the kernels' own (loss_sum, divisor), and the divisor alone from the targets.


def _heads_of(kw: dict[str, Any], nll: bool) -> tuple[float, float]:
    """(z_loss, softcap as the binding takes it) of the forward's arguments `kw`. A block's
    partials are one (sum, divisor) pair: with z_loss that pair holds only while both parts'
    means divide by the same number (no class weight: the non-ignored samples, or the samples
    for probability targets)."""
    if nll:
        return 0.0, 0.0
    z, cap = _check_z_loss(kw.get("z_loss", 0.0)), _check_softcap(kw.get("softcap"))
    if z and kw.get("weight") is not None:
        raise ValueError("z_loss with a class weight: its mean divides by the samples, the loss's by sum w[y], "
                         "so no single (total, divisor) pair combines them; reduce the two parts separately")
    return z, cap


def _partials(kw: dict[str, Any], nll: bool, grad_scale: float | None,
              out: np.ndarray | None) -> tuple[float, float, np.ndarray | None]:
    """(loss sum, divisor, gradient of grad_scale * loss sum or None) of the forward's arguments `kw`."""
    ls = 0.0 if nll else _check_label_smoothing(kw["label_smoothing"])
    z, cap = _heads_of(kw, nll)
    ignore_index = kw["ignore_index"]
    p = _prepare(kw["input"], kw["target"], kw["weight"], ignore_index, nll, rows_ok=out is None)
    op = OP_LOSS
    if grad_scale is not None:
        op = OP_LOSS_AND_GRAD
        out = check_out(out, p.dtype, p.shape, p.input, not p.channels_last,
                        (("target", p.target), ("target", p.probs), ("weight", p.weight)))
    kernel_out = out
    if cap and p.inner != 1:
        _rows_for_softcap(p)  # rows of a moved copy; the gradient goes back into out below
        kernel_out = None
    args = (op, _REDUCTION["sum"], p.input, p.target, p.probs, p.weight, p.outer, p.classes, p.inner,
            int(ignore_index), ls, None, 1.0 if grad_scale is None else grad_scale, kernel_out)
    z_total = 0.0
    if z or cap:
        total, divisor, bad, _, grad, z_total, _ = _core.cross_entropy_heads(*args, z, cap)
    else:
        total, divisor, bad, _, grad = (_core.nll_loss if nll else _core.cross_entropy)(*args)
    if bad >= 0:
        assert p.target is not None
        raise IndexError(f"Target {int(p.target.reshape(-1)[bad])} is out of bounds.")
    if grad is not None and p.channels_last:
        grad = np.moveaxis(grad, -1, 1)
    if grad is not None and out is not None and grad is not out:
        out[...] = grad
        grad = out
    return float(total) + float(z_total), float(divisor), grad


def _divisor(kw: dict[str, Any], nll: bool) -> float:
    """The mean's divisor from the targets, the weight and the input's shape and dtype alone (the
    input's values are never read: np.broadcast_to(0.0, shape) serves): sum of w[y] over the
    class targets that are not ignored, else the number of samples. Every argument is checked
    as the forward checks it, class targets as the kernels do."""
    if not nll:
        _check_label_smoothing(kw["label_smoothing"])
    _heads_of(kw, nll)
    ignore_index = kw["ignore_index"]
    p = _prepare(kw["input"], kw["target"], kw["weight"], ignore_index, nll, read_input=False)
    if p.target is None:  # probability targets: "mean" divides by the number of samples
        return 0.0 if p.outer * p.classes * p.inner == 0 else float(p.outer * p.inner)
    y = p.target.reshape(-1)
    counted = y != int(ignore_index)
    bad = counted & ((y < 0) | (y >= p.classes))
    if bad.any():
        raise IndexError(f"Target {int(y[int(np.argmax(bad))])} is out of bounds.")
    if p.weight is None:
        return float(np.count_nonzero(counted))
    return float(np.sum(p.weight[y[counted]], dtype=np.float64))
