"""Mergeable partial results of the losses, for engines that split a batch into blocks (Dask,
Ray, multiprocessing, a loop over memory-mapped chunks).

A mean over blocks is not the mean of the blocks' means: with uneven blocks, class weights or
ignored targets the blocks' divisors differ. What combines exactly is each block's loss sum and
the divisor of its mean (Σ w[y] over counted class targets for cross_entropy/nll_loss, the
number of samples for probability targets, the number of elements for the binary losses), both
float64 — what the kernels compute anyway (`_checks.reduce_loss` turns them into a "mean" or a
"sum"). The blocks' sums and divisors add up; `combine_partials` applies the reduction.

The gradient of a global mean needs the global divisor before any block's gradient: the divisor
depends on the targets and weights only, so `loss_divisor` gets it without reading the logits,
and `loss_partials(<loss>_value_and_grad, ..., grad_scale=1 / divisor)` then gives each block's
loss sum and its part of the gradient in one pass.

Each loss family registers its two hooks in _FAMILIES (a new loss is one entry here).
"""

from __future__ import annotations

import inspect
import math
import numbers
from collections.abc import Callable, Iterable
from typing import Any, NamedTuple

import numpy as np

from . import _binary, _cross_entropy
from ._checks import check_reduction, reduce_loss

__all__ = ["loss_partials", "loss_divisor", "combine_partials"]


class LossPartials(NamedTuple):
    """One block's share of a reduced loss: `total` = the sum of its losses, `divisor` = what its
    "mean" divides by (float64 both). Blocks combine by adding both fields."""

    total: float
    divisor: float


# hooks: partials(kw, grad_scale or None, out) -> (total, divisor, grad or None); divisor(kw) -> float
_Partials = Callable[[dict[str, Any], "float | None", "np.ndarray | None"], "tuple[float, float, np.ndarray | None]"]
_Divisor = Callable[[dict[str, Any]], float]


class _Family(NamedTuple):
    forward: Callable[..., Any]
    value_and_grad: Callable[..., Any]
    partials: _Partials
    divisor: _Divisor


def _families() -> dict[str, _Family]:
    ce, bi = _cross_entropy, _binary
    return {
        "cross_entropy": _Family(ce.cross_entropy, ce.cross_entropy_value_and_grad,
                                 lambda kw, s, o: ce._partials(kw, False, s, o), lambda kw: ce._divisor(kw, False)),
        "nll_loss": _Family(ce.nll_loss, ce.nll_loss_value_and_grad,
                            lambda kw, s, o: ce._partials(kw, True, s, o), lambda kw: ce._divisor(kw, True)),
        "binary_cross_entropy": _Family(bi.binary_cross_entropy, bi.binary_cross_entropy_value_and_grad,
                                        lambda kw, s, o: bi._partials(kw, False, s, o),
                                        lambda kw: bi._divisor(kw, False)),
        "binary_cross_entropy_with_logits": _Family(
            bi.binary_cross_entropy_with_logits, bi.binary_cross_entropy_with_logits_value_and_grad,
            lambda kw, s, o: bi._partials(kw, True, s, o), lambda kw: bi._divisor(kw, True)),
    }


_FAMILIES: dict[str, _Family] = _families()
# Arguments that choose a reduction: partials serve every reduction, so none may be given.
_REDUCTION_ARGS = {"size_average": None, "reduce": None, "reduction": "mean"}


def _family_of(loss: Any) -> tuple[str, _Family, bool]:
    """(name, family, is the value_and_grad variant) of a public loss function or its name."""
    for name, fam in _FAMILIES.items():
        if loss is fam.forward or loss == name:
            return name, fam, False
        if loss is fam.value_and_grad or loss == name + "_value_and_grad":
            return name, fam, True
    known = ", ".join(f"logitops.{n}" for n in _FAMILIES)
    raise TypeError(f"loss must be one of {known} (or its _value_and_grad), got {loss!r}")


def _bind(name: str, fam: _Family, args: tuple[Any, ...], kwargs: dict[str, Any]) -> dict[str, Any]:
    """The forward's arguments by name, defaults filled in; a reduction argument is refused."""
    try:
        bound = inspect.signature(fam.forward).bind(*args, **kwargs)
    except TypeError as exc:
        raise TypeError(f"loss_partials({name}, ...): {exc}") from None
    bound.apply_defaults()
    kw = dict(bound.arguments)
    for arg, default in _REDUCTION_ARGS.items():
        if arg in kw and kw[arg] is not default and kw[arg] != default:
            raise TypeError(f"{arg} is not an argument of the partials: they serve every reduction "
                            "(combine_partials applies one)")
    return kw


def loss_partials(loss: Any, *args: Any, grad_scale: float | None = None, out: np.ndarray | None = None,
                  **kwargs: Any) -> Any:
    """One block's mergeable share of a reduced loss.

    `loss` is a logitops loss function (``lo.cross_entropy``, ...) or its name; the other
    arguments are that function's, without a reduction. Returns ``LossPartials(total,
    divisor)`` (float64): the sum of the block's losses and what its "mean" divides by.

    With ``lo.<loss>_value_and_grad`` it returns ``(LossPartials, grad)``: `grad` is the gradient
    of ``grad_scale * total`` with respect to input (`grad_scale` default 1.0: the gradient of
    the sum; pass ``1 / D`` for a global mean over divisor D, see `loss_divisor`), computed in
    the same pass as the loss. `out` receives it, as in the value_and_grad functions.
    """
    name, fam, with_grad = _family_of(loss)
    if not with_grad:
        if grad_scale is not None or out is not None:
            raise TypeError(f"grad_scale and out need {name}_value_and_grad, not {name}")
        scale = None
    else:
        scale = 1.0 if grad_scale is None else _check_scale(grad_scale)
    total, divisor, grad = fam.partials(_bind(name, fam, args, kwargs), scale, out)
    parts = LossPartials(total, divisor)
    return parts if not with_grad else (parts, grad)


def loss_divisor(loss: Any, *args: Any, **kwargs: Any) -> float:
    """What a "mean" of `loss` over these arguments divides by (float64), from the targets and
    weights and the input's shape and dtype alone: the input's values are never read, so a
    stand-in such as ``np.broadcast_to(np.float32(0), shape)`` serves. Arguments as for
    `loss_partials`; bad ones (class targets out of range included) raise as the loss does."""
    name, fam, _ = _family_of(loss)
    return fam.divisor(_bind(name, fam, args, kwargs))


def combine_partials(partials: Iterable[Any], reduction: str = "mean", dtype: Any = np.float64) -> Any:
    """The reduced loss of blocks from their partials (LossPartials or (total, divisor) pairs):
    both fields summed exactly (math.fsum), then "sum" is the total and "mean" total / divisor
    (nan for a zero divisor, as the losses), a NumPy scalar of `dtype` (float64, the partials';
    pass the computation's dtype, float32 or float64, to get exactly what the loss returns)."""
    reduction = check_reduction(reduction)
    if reduction == "none":
        raise ValueError("combine_partials reduces: reduction must be 'mean' or 'sum', got 'none'")
    dt = np.dtype(dtype)
    if dt not in (np.dtype(np.float32), np.dtype(np.float64)):
        raise TypeError(f"dtype must be float32 or float64, got {dt}")
    totals, divisors = [], []
    for p in partials:
        t, d = p
        totals.append(float(t))
        divisors.append(float(d))
    return reduce_loss(_exact_sum(totals), _exact_sum(divisors), reduction, dt)


def _exact_sum(xs: list[float]) -> float:
    """The correctly rounded sum; inf and nan as plain addition gives them (fsum raises on inf - inf)."""
    if all(map(math.isfinite, xs)):
        return math.fsum(xs)
    return sum(xs, 0.0)


def _check_scale(s: Any) -> float:
    if isinstance(s, (bool, np.bool_)) or not isinstance(s, (numbers.Real, np.floating, np.integer)):
        raise TypeError(f"grad_scale must be a float, got {type(s).__name__}")
    return float(s)
