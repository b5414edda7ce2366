"""torch.nn's loss modules over NumPy arrays: BCELoss, BCEWithLogitsLoss, CrossEntropyLoss, NLLLoss,
KLDivLoss, SoftMarginLoss, MultiLabelSoftMarginLoss, and SigmoidFocalLoss (torchvision.ops'
sigmoid_focal_loss as an object: alpha, gamma, reduction), and SymmetricCrossEntropyLoss, the seed's
SymmetricCELoss.

Thin: each holds torch.nn's constructor options under torch's attribute names and calls the
functions of _binary.py / _cross_entropy.py with them. `loss(input, target)` is the forward,
`loss.backward(grad_output, input, target, wrt="input")` and `loss.value_and_grad(input,
target, out=None)` the rest. The deprecated size_average/reduce are resolved into `reduction`
at construction, with torch's warning, as torch.nn does.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ._binary import (
    binary_cross_entropy,
    binary_cross_entropy_backward,
    binary_cross_entropy_value_and_grad,
    binary_cross_entropy_with_logits,
    binary_cross_entropy_with_logits_backward,
    binary_cross_entropy_with_logits_value_and_grad,
)
from ._checks import check_reduction, legacy_reduction
from ._cross_entropy import (
    cross_entropy,
    cross_entropy_backward,
    cross_entropy_value_and_grad,
    nll_loss,
    nll_loss_backward,
    nll_loss_value_and_grad,
)
from ._divergence import (
    _focal_args,
    kl_div,
    kl_div_backward,
    kl_div_value_and_grad,
    sigmoid_focal_loss,
    sigmoid_focal_loss_backward,
    sigmoid_focal_loss_value_and_grad,
)
from ._margin import (
    multilabel_soft_margin_loss,
    multilabel_soft_margin_loss_backward,
    multilabel_soft_margin_loss_value_and_grad,
    soft_margin_loss,
    soft_margin_loss_backward,
    soft_margin_loss_value_and_grad,
)
from ._symmetric_ce import (
    _options,
    symmetric_cross_entropy,
    symmetric_cross_entropy_backward,
    symmetric_cross_entropy_value_and_grad,
)

__all__ = [
    "BCELoss",
    "BCEWithLogitsLoss",
    "CrossEntropyLoss",
    "NLLLoss",
    "KLDivLoss",
    "SoftMarginLoss",
    "MultiLabelSoftMarginLoss",
    "SigmoidFocalLoss",
    "SymmetricCrossEntropyLoss",
]


def _resolve_reduction(size_average: Any, reduce: Any, reduction: Any) -> str:
    """torch.nn's _Loss.__init__: the legacy pair, when given, overrides `reduction` (warning at
    the line that constructs the loss: user -> __init__ -> here -> legacy_reduction)."""
    if size_average is not None or reduce is not None:
        reduction = legacy_reduction(size_average, reduce, stacklevel=4)
    return check_reduction(reduction)  # here, not at the first call: the error names the line


def _array_repr(a: Any) -> str:
    if isinstance(a, np.ndarray):
        return f"array(shape={a.shape}, dtype={a.dtype})"
    return repr(a)


class _Loss:
    """What every loss object shares: `reduction` and a repr of the options that are not defaults."""

    reduction: str
    # (attribute, default) in constructor order, for repr; `reduction` is always shown.
    _repr_options: tuple[tuple[str, Any], ...] = ()

    def __repr__(self) -> str:
        shown = []
        for name, default in self._repr_options:
            value = getattr(self, name)
            if name == "reduction" or (value is not None if default is None else value != default):
                shown.append(f"{name}={_array_repr(value)}")
        return f"{type(self).__name__}({', '.join(shown)})"

    def __call__(self, input: np.ndarray, target: np.ndarray) -> Any:
        return self.forward(input, target)

    def forward(self, input: np.ndarray, target: np.ndarray) -> Any:  # pragma: no cover - overridden
        raise NotImplementedError


class BCELoss(_Loss):
    """torch.nn.BCELoss: binary_cross_entropy on probabilities."""

    _repr_options = (("weight", None), ("reduction", "mean"))

    def __init__(self, weight: np.ndarray | None = None, size_average: bool | None = None,
                 reduce: bool | None = None, reduction: str = "mean") -> None:
        self.weight = weight
        self.reduction = _resolve_reduction(size_average, reduce, reduction)

    def forward(self, input: np.ndarray, target: np.ndarray) -> Any:
        return binary_cross_entropy(input, target, self.weight, reduction=self.reduction)

    def backward(self, grad_output: Any, input: np.ndarray, target: np.ndarray, wrt: str = "input") -> np.ndarray:
        return binary_cross_entropy_backward(grad_output, input, target, self.weight, reduction=self.reduction,
                                             wrt=wrt)

    def value_and_grad(self, input: np.ndarray, target: np.ndarray,
                       out: np.ndarray | None = None) -> tuple[Any, np.ndarray]:
        return binary_cross_entropy_value_and_grad(input, target, self.weight, reduction=self.reduction, out=out)


class BCEWithLogitsLoss(_Loss):
    """torch.nn.BCEWithLogitsLoss: binary_cross_entropy_with_logits."""

    _repr_options = (("weight", None), ("reduction", "mean"), ("pos_weight", None))

    def __init__(self, weight: np.ndarray | None = None, size_average: bool | None = None,
                 reduce: bool | None = None, reduction: str = "mean", pos_weight: np.ndarray | None = None) -> None:
        self.weight = weight
        self.pos_weight = pos_weight
        self.reduction = _resolve_reduction(size_average, reduce, reduction)

    def forward(self, input: np.ndarray, target: np.ndarray) -> Any:
        return binary_cross_entropy_with_logits(input, target, self.weight, reduction=self.reduction,
                                                pos_weight=self.pos_weight)

    def backward(self, grad_output: Any, input: np.ndarray, target: np.ndarray, wrt: str = "input") -> np.ndarray:
        return binary_cross_entropy_with_logits_backward(grad_output, input, target, self.weight,
                                                         reduction=self.reduction, pos_weight=self.pos_weight,
                                                         wrt=wrt)

    def value_and_grad(self, input: np.ndarray, target: np.ndarray,
                       out: np.ndarray | None = None) -> tuple[Any, np.ndarray]:
        return binary_cross_entropy_with_logits_value_and_grad(input, target, self.weight, reduction=self.reduction,
                                                               pos_weight=self.pos_weight, out=out)


class CrossEntropyLoss(_Loss):
    """torch.nn.CrossEntropyLoss: cross_entropy on logits (class indices or probabilities)."""

    _repr_options = (("weight", None), ("ignore_index", -100), ("reduction", "mean"), ("label_smoothing", 0.0))

    def __init__(self, weight: np.ndarray | None = None, size_average: bool | None = None, ignore_index: int = -100,
                 reduce: bool | None = None, reduction: str = "mean", label_smoothing: float = 0.0) -> None:
        self.weight = weight
        self.ignore_index = ignore_index
        self.label_smoothing = label_smoothing
        self.reduction = _resolve_reduction(size_average, reduce, reduction)

    def forward(self, input: np.ndarray, target: np.ndarray) -> Any:
        return cross_entropy(input, target, self.weight, ignore_index=self.ignore_index, reduction=self.reduction,
                             label_smoothing=self.label_smoothing)

    def backward(self, grad_output: Any, input: np.ndarray, target: np.ndarray, wrt: str = "input") -> np.ndarray:
        return cross_entropy_backward(grad_output, input, target, self.weight, ignore_index=self.ignore_index,
                                      reduction=self.reduction, label_smoothing=self.label_smoothing, wrt=wrt)

    def value_and_grad(self, input: np.ndarray, target: np.ndarray,
                       out: np.ndarray | None = None) -> tuple[Any, np.ndarray]:
        return cross_entropy_value_and_grad(input, target, self.weight, ignore_index=self.ignore_index,
                                            reduction=self.reduction, label_smoothing=self.label_smoothing, out=out)


class NLLLoss(_Loss):
    """torch.nn.NLLLoss: nll_loss on log-probabilities."""

    _repr_options = (("weight", None), ("ignore_index", -100), ("reduction", "mean"))

    def __init__(self, weight: np.ndarray | None = None, size_average: bool | None = None, ignore_index: int = -100,
                 reduce: bool | None = None, reduction: str = "mean") -> None:
        self.weight = weight
        self.ignore_index = ignore_index
        self.reduction = _resolve_reduction(size_average, reduce, reduction)

    def forward(self, input: np.ndarray, target: np.ndarray) -> Any:
        return nll_loss(input, target, self.weight, ignore_index=self.ignore_index, reduction=self.reduction)

    def backward(self, grad_output: Any, input: np.ndarray, target: np.ndarray, wrt: str = "input") -> np.ndarray:
        return nll_loss_backward(grad_output, input, target, self.weight, ignore_index=self.ignore_index,
                                 reduction=self.reduction, wrt=wrt)

    def value_and_grad(self, input: np.ndarray, target: np.ndarray,
                       out: np.ndarray | None = None) -> tuple[Any, np.ndarray]:
        return nll_loss_value_and_grad(input, target, self.weight, ignore_index=self.ignore_index,
                                       reduction=self.reduction, out=out)


class KLDivLoss(_Loss):
    """torch.nn.KLDivLoss: kl_div ("batchmean" too; "mean" warns at each call, as torch)."""

    _repr_options = (("reduction", "mean"), ("log_target", False))

    def __init__(self, size_average: bool | None = None, reduce: bool | None = None, reduction: str = "mean",
                 log_target: bool = False) -> None:
        self.log_target = log_target
        if size_average is not None or reduce is not None:
            reduction = legacy_reduction(size_average, reduce, stacklevel=3)
        elif not isinstance(reduction, str) or reduction not in ("mean", "batchmean", "sum", "none"):
            raise ValueError(f"reduction must be one of 'mean', 'batchmean', 'sum', 'none', got {reduction!r}")
        self.reduction = reduction

    def forward(self, input: np.ndarray, target: np.ndarray) -> Any:
        return kl_div(input, target, reduction=self.reduction, log_target=self.log_target)

    def backward(self, grad_output: Any, input: np.ndarray, target: np.ndarray, wrt: str = "input") -> np.ndarray:
        return kl_div_backward(grad_output, input, target, reduction=self.reduction, log_target=self.log_target,
                               wrt=wrt)

    def value_and_grad(self, input: np.ndarray, target: np.ndarray,
                       out: np.ndarray | None = None) -> tuple[Any, np.ndarray]:
        return kl_div_value_and_grad(input, target, reduction=self.reduction, log_target=self.log_target, out=out)


class SoftMarginLoss(_Loss):
    """torch.nn.SoftMarginLoss: soft_margin_loss."""

    _repr_options = (("reduction", "mean"),)

    def __init__(self, size_average: bool | None = None, reduce: bool | None = None, reduction: str = "mean") -> None:
        self.reduction = _resolve_reduction(size_average, reduce, reduction)

    def forward(self, input: np.ndarray, target: np.ndarray) -> Any:
        return soft_margin_loss(input, target, reduction=self.reduction)

    def backward(self, grad_output: Any, input: np.ndarray, target: np.ndarray, wrt: str = "input") -> np.ndarray:
        return soft_margin_loss_backward(grad_output, input, target, reduction=self.reduction, wrt=wrt)

    def value_and_grad(self, input: np.ndarray, target: np.ndarray,
                       out: np.ndarray | None = None) -> tuple[Any, np.ndarray]:
        return soft_margin_loss_value_and_grad(input, target, reduction=self.reduction, out=out)


class MultiLabelSoftMarginLoss(_Loss):
    """torch.nn.MultiLabelSoftMarginLoss: multilabel_soft_margin_loss."""

    _repr_options = (("weight", None), ("reduction", "mean"))

    def __init__(self, weight: np.ndarray | None = None, size_average: bool | None = None,
                 reduce: bool | None = None, reduction: str = "mean") -> None:
        self.weight = weight
        self.reduction = _resolve_reduction(size_average, reduce, reduction)

    def forward(self, input: np.ndarray, target: np.ndarray) -> Any:
        return multilabel_soft_margin_loss(input, target, self.weight, reduction=self.reduction)

    def backward(self, grad_output: Any, input: np.ndarray, target: np.ndarray, wrt: str = "input") -> np.ndarray:
        return multilabel_soft_margin_loss_backward(grad_output, input, target, self.weight,
                                                    reduction=self.reduction, wrt=wrt)

    def value_and_grad(self, input: np.ndarray, target: np.ndarray,
                       out: np.ndarray | None = None) -> tuple[Any, np.ndarray]:
        return multilabel_soft_margin_loss_value_and_grad(input, target, self.weight, reduction=self.reduction,
                                                          out=out)


class SigmoidFocalLoss(_Loss):
    """torchvision.ops.sigmoid_focal_loss as a loss object (torchvision has none): alpha, gamma
    and reduction (default "none", as the function) fixed at construction and checked there.
    `backward(..., wrt="input")` is the gradient with respect to the logits."""

    _repr_options = (("alpha", 0.25), ("gamma", 2.0), ("reduction", "none"))

    def __init__(self, alpha: float = 0.25, gamma: float = 2.0, reduction: str = "none") -> None:
        _focal_args(np.zeros(0), np.zeros(0), alpha, gamma, reduction)  # the options' errors, here
        self.alpha = alpha
        self.gamma = gamma
        self.reduction = reduction

    def forward(self, input: np.ndarray, target: np.ndarray) -> Any:
        return sigmoid_focal_loss(input, target, self.alpha, self.gamma, self.reduction)

    def backward(self, grad_output: Any, input: np.ndarray, target: np.ndarray, wrt: str = "input") -> np.ndarray:
        return sigmoid_focal_loss_backward(grad_output, input, target, self.alpha, self.gamma, self.reduction,
                                           wrt="inputs" if wrt == "input" else ("targets" if wrt == "target" else wrt))

    def value_and_grad(self, input: np.ndarray, target: np.ndarray,
                       out: np.ndarray | None = None) -> tuple[Any, np.ndarray]:
        return sigmoid_focal_loss_value_and_grad(input, target, self.alpha, self.gamma, self.reduction, out=out)
class SymmetricCrossEntropyLoss(_Loss):
    """The seed's SymmetricCELoss(alpha, beta, num_classes): symmetric_cross_entropy on logits of
    `num_classes` classes (the seed's one_hot width; an input with another number of classes is
    refused). `prob_eps=1e-7, label_eps=1e-4` are the seed's two clamps (both `eps` by default)."""

    _repr_options = (("num_classes", None), ("alpha", 1.0), ("beta", 1.0), ("eps", 1e-8), ("reduction", "mean"),
                     ("prob_eps", None), ("label_eps", None))

    def __init__(self, num_classes: int, alpha: float = 1.0, beta: float = 1.0, eps: float = 1e-8, *,
                 reduction: str = "mean", prob_eps: float | None = None, label_eps: float | None = None) -> None:
        if isinstance(num_classes, (bool, np.bool_)) or not isinstance(num_classes, (int, np.integer)):
            raise TypeError(f"num_classes must be an int, got {type(num_classes).__name__}")
        if num_classes < 1:
            raise ValueError(f"num_classes must be >= 1, got {num_classes}")
        _options(alpha, beta, eps, prob_eps, label_eps)  # here, not at the first call: the error names the line
        self.num_classes = int(num_classes)
        self.alpha, self.beta, self.eps = alpha, beta, eps
        self.prob_eps, self.label_eps = prob_eps, label_eps
        self.reduction = check_reduction(reduction)

    def _check(self, input: Any) -> None:
        shape = np.shape(input) if isinstance(input, np.ndarray) else None
        if shape is not None and len(shape) == 2 and shape[1] != self.num_classes:
            raise ValueError(f"input has {shape[1]} classes (shape {shape}) but num_classes is {self.num_classes}")

    def _kw(self) -> dict[str, Any]:
        return {"reduction": self.reduction, "prob_eps": self.prob_eps, "label_eps": self.label_eps}

    def forward(self, input: np.ndarray, target: np.ndarray) -> Any:
        self._check(input)
        return symmetric_cross_entropy(input, target, self.alpha, self.beta, self.eps, **self._kw())

    def backward(self, grad_output: Any, input: np.ndarray, target: np.ndarray, wrt: str = "input") -> np.ndarray:
        self._check(input)
        return symmetric_cross_entropy_backward(grad_output, input, target, self.alpha, self.beta, self.eps,
                                                **self._kw(), wrt=wrt)

    def value_and_grad(self, input: np.ndarray, target: np.ndarray,
                       out: np.ndarray | None = None) -> tuple[Any, np.ndarray]:
        self._check(input)
        return symmetric_cross_entropy_value_and_grad(input, target, self.alpha, self.beta, self.eps,
                                                      **self._kw(), out=out)
