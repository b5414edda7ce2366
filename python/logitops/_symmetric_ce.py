"""symmetric_cross_entropy (forward, backward, fused): the seed's SymmetricCELoss.

    loss = alpha * CE + beta * RCE,  RCE = -sum_j clamp(softmax(input), eps, 1)_j * log clamp(one_hot, eps, 1)_j

per sample, averaged over the batch ("mean", the seed's module), summed ("sum") or per sample
("none"). Input (N, C) logits, target (N,) class indices (any integer dtype). The formulas and
the gradient are in cpp/kernels/symmetric_ce.h; one pass over the logits gives both terms.

The seed's module clamps with two constants: softmax at 1e-7 and the one-hot labels at 1e-4.
`eps` sets both (SPEC's signature); `prob_eps=` and `label_eps=` (keyword-only) set each one,
so `prob_eps=1e-7, label_eps=1e-4` is the seed's module number for number. Since
log clamp(one_hot, label_eps, 1) is 0 at the target and log(label_eps) elsewhere,
RCE = -log(label_eps) * sum_{j != y} clamp(p_j, prob_eps, 1).

Differences from the composition in torch (pinned by tests/test_symmetric_ce.py): the CE term
is exact for confident predictions (log1p of the other classes' sum; torch: lse - x_y), and a
+inf logit gives the limit (torch: nan).
"""

from __future__ import annotations

import math
import numbers
from typing import Any

import numpy as np

from . import _core
from ._checks import (
    OP_GRAD_INPUT,
    OP_LOSS,
    OP_LOSS_AND_GRAD,
    REDUCTION_CODES,
    check_out,
    check_reduction,
    reduce_loss,
    via_float32,
)
from ._cross_entropy import _grad_dtype, _grad_output, _prepare, _Prepared

__all__ = [
    "symmetric_cross_entropy",
    "symmetric_cross_entropy_backward",
    "symmetric_cross_entropy_value_and_grad",
]


def _real(value: Any, name: str) -> float:
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (numbers.Real, np.floating, np.integer)):
        raise TypeError(f"{name} must be a float, got {type(value).__name__}")
    return float(value)


def _options(alpha: Any, beta: Any, eps: Any, prob_eps: Any, label_eps: Any) -> tuple[float, float, float, float]:
    """(alpha, beta, K = -log(label_eps), prob_eps), each checked and named in its error."""
    a, b = _real(alpha, "alpha"), _real(beta, "beta")
    for name, v in (("alpha", a), ("beta", b)):
        if not (math.isfinite(v) and v >= 0.0):
            raise ValueError(f"{name} must be a finite number >= 0, got {v}")
    e = _real(eps, "eps")
    pe = e if prob_eps is None else _real(prob_eps, "prob_eps")
    le = e if label_eps is None else _real(label_eps, "label_eps")
    for name, v in (("eps", e), ("prob_eps", pe), ("label_eps", le)):
        if not 0.0 < v < 1.0:
            raise ValueError(f"{name} must be in (0, 1), got {v}")
    return a, b, -math.log(le), pe


def _prepare_sce(input: Any, target: Any, extra_dtype: Any = None, rows_ok: bool = True) -> _Prepared:
    p = _prepare(input, target, None, -100, False, extra_dtype, rows_ok)
    if p.probs is not None:
        raise TypeError(f"target must have an integer dtype (class indices), got {p.probs.dtype}")
    if len(p.shape) != 2:
        raise ValueError(f"input must have shape (N, C), got {p.shape}")
    return p


def _run(op: int, p: _Prepared, opts: tuple[float, float, float, float], reduction: str,
         grad_output: np.ndarray | None = None, grad_value: float = 1.0,
         out: np.ndarray | None = None) -> tuple[Any, np.ndarray | None]:
    alpha, beta, k, prob_eps = opts
    assert p.target is not None
    total, divisor, bad, losses, grad = _core.symmetric_cross_entropy(
        op, REDUCTION_CODES[reduction], p.input, p.target, alpha, beta, k, prob_eps, grad_output, grad_value, out)
    if bad >= 0:
        raise IndexError(f"Target {int(p.target[bad])} is out of bounds.")
    loss = None
    if op != OP_GRAD_INPUT:
        if reduction == "none":
            assert losses is not None
            loss = losses
        else:
            loss = reduce_loss(total, divisor, reduction, p.dtype)
    return loss, grad


def symmetric_cross_entropy(input: np.ndarray, target: np.ndarray, alpha: float = 1.0, beta: float = 1.0,
                            eps: float = 1e-8, *, reduction: str = "mean", prob_eps: float | None = None,
                            label_eps: float | None = None) -> Any:
    """alpha * cross_entropy + beta * reverse cross-entropy of the logits `input` (N, C) and class
    indices `target` (N,), the seed's SymmetricCELoss (`prob_eps`/`label_eps` default to `eps`)."""
    reduction = check_reduction(reduction)
    opts = _options(alpha, beta, eps, prob_eps, label_eps)
    p = _prepare_sce(input, target)
    return _run(OP_LOSS, p, opts, reduction)[0]


def symmetric_cross_entropy_backward(grad_output: Any, input: np.ndarray, target: np.ndarray, alpha: float = 1.0,
                                     beta: float = 1.0, eps: float = 1e-8, *, reduction: str = "mean",
                                     prob_eps: float | None = None, label_eps: float | None = None,
                                     wrt: str = "input") -> np.ndarray:
    """Gradient of symmetric_cross_entropy with respect to input (class indices have none:
    `wrt` takes "input" only)."""
    reduction = check_reduction(reduction)
    opts = _options(alpha, beta, eps, prob_eps, label_eps)
    if wrt != "input":
        if wrt == "target":
            raise ValueError("wrt='target': symmetric_cross_entropy has class-index targets, which have no gradient")
        raise ValueError(f"wrt must be 'input', got {wrt!r}")
    p = _prepare_sce(input, target, _grad_dtype(grad_output, reduction))
    g, gv = _grad_output(grad_output, p, reduction)
    grad = _run(OP_GRAD_INPUT, p, opts, reduction, g, gv)[1]
    assert grad is not None
    return grad


def symmetric_cross_entropy_value_and_grad(input: np.ndarray, target: np.ndarray, alpha: float = 1.0,
                                           beta: float = 1.0, eps: float = 1e-8, *, reduction: str = "mean",
                                           prob_eps: float | None = None, label_eps: float | None = None,
                                           out: np.ndarray | None = None) -> tuple[Any, np.ndarray]:
    """(symmetric_cross_entropy, its gradient with respect to input) in one pass over the logits;
    `out` receives the gradient and may be `input` itself."""
    reduction = check_reduction(reduction)
    opts = _options(alpha, beta, eps, prob_eps, label_eps)
    p = _prepare_sce(input, target, rows_ok=out is None)
    out = check_out(out, p.dtype, p.shape, p.input, True, (("target", p.target),))
    loss, grad = _run(OP_LOSS_AND_GRAD, p, opts, reduction, out=out)
    assert grad is not None
    return loss, grad


# float16/bfloat16: through float32 copies for now (_checks.via_float32).
for _name in __all__:
    globals()[_name] = via_float32(globals()[_name])
del _name
