"""The C++ extension (cpp/bind/): kernels, dispatch and thread settings. Its functions are
called only by the package's Python modules, which own the API: they validate the arguments,
lay the arrays out (C-contiguous, aligned, one float dtype), reduce the losses and word the
errors. The extension checks what its kernels rely on and raises ValueError/TypeError otherwise.
"""

import enum

import numpy as np
from numpy.typing import NDArray

_Float = NDArray[np.floating]

class LossOp(enum.IntEnum):
    loss = 0
    grad_input = 1
    grad_target = 2
    loss_and_grad = 3

class Reduction(enum.IntEnum):
    none = 0
    mean = 1
    sum = 2

class BinaryStatus(enum.IntFlag):
    bad_input = 1
    bad_target = 2

# Dispatch and threads.
def isa() -> str: ...
def available_isas() -> list[str]: ...
def _set_isa(name: str) -> None: ...
def set_num_threads(n: int) -> None: ...
def get_num_threads() -> int: ...

# Primitives. Row functions take (rows, cols) arrays; logsumexp returns (rows,).
def logsumexp(x: _Float) -> _Float: ...
def log_softmax(x: _Float, out: _Float | None = None) -> _Float: ...
def softmax(x: _Float, out: _Float | None = None) -> _Float: ...
def logsumexp_backward(grad_output: _Float, x: _Float) -> _Float: ...
def log_softmax_backward(grad_output: _Float, x: _Float) -> _Float: ...
def softmax_backward(grad_output: _Float, x: _Float) -> _Float: ...
def log_sigmoid(x: _Float, out: _Float | None = None) -> _Float: ...
def sigmoid(x: _Float, out: _Float | None = None) -> _Float: ...
def log_sigmoid_backward(grad_output: _Float, x: _Float) -> _Float: ...
def sigmoid_backward(grad_output: _Float, x: _Float) -> _Float: ...

# Binary losses: (loss_sum, divisor, BinaryStatus bits, per-element losses or None,
# gradient or None). `op` and `reduction` are LossOp and Reduction codes.
def binary_cross_entropy(
    op: int, reduction: int, input: _Float, target: _Float, weight: _Float | None, weight_period: int,
    weight_block: int, pos_weight: _Float | None, pos_weight_period: int, pos_weight_block: int,
    grad_output: _Float | None, grad_value: float, out: _Float | None,
) -> tuple[float, float, int, _Float | None, _Float | None]: ...
def binary_cross_entropy_with_logits(
    op: int, reduction: int, input: _Float, target: _Float, weight: _Float | None, weight_period: int,
    weight_block: int, pos_weight: _Float | None, pos_weight_period: int, pos_weight_block: int,
    grad_output: _Float | None, grad_value: float, out: _Float | None,
) -> tuple[float, float, int, _Float | None, _Float | None]: ...

# Multiclass losses: (loss_sum, divisor, index of the first bad class target or -1,
# flat per-sample losses or None, gradient or None, z-loss sum, z-loss divisor).
def cross_entropy(
    op: int, reduction: int, input: _Float, target: NDArray[np.int64] | None, probs: _Float | None,
    weight: _Float | None, outer: int, classes: int, inner: int, ignore_index: int, label_smoothing: float,
    grad_output: _Float | None, grad_value: float, out: _Float | None, z_loss: float = 0.0, softcap: float = 0.0,
) -> tuple[float, float, int, _Float | None, _Float | None, float, float]: ...
def nll_loss(
    op: int, reduction: int, input: _Float, target: NDArray[np.int64] | None, probs: _Float | None,
    weight: _Float | None, outer: int, classes: int, inner: int, ignore_index: int, label_smoothing: float,
    grad_output: _Float | None, grad_value: float, out: _Float | None, z_loss: float = 0.0, softcap: float = 0.0,
) -> tuple[float, float, int, _Float | None, _Float | None, float, float]: ...
