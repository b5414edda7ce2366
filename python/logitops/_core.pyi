"""The C++ extension (cpp/bind/): kernels, dispatch and thread settings. Its functions are
called only by the package's Python modules, which own the API: they validate the arguments,
lay the arrays out (C-contiguous, aligned, one float dtype: float32, float64, float16 or
bfloat16, whose arrays the extension reads through float32 blocks), reduce the losses and word the
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
def set_result_cache_limit(bytes: int) -> None: ...
def get_result_cache_limit() -> int: ...
def empty_result_cache() -> None: ...
def result_cache_info() -> dict[str, int]: ...

# float16 / bfloat16 <-> float32 conversion kernels, for the tests (the other functions take
# float16 and bfloat16 arrays themselves).
def _widen(x: np.ndarray) -> NDArray[np.float32]: ...
def _narrow(x: NDArray[np.float32], like: np.ndarray) -> np.ndarray: ...

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

# SciPy's weighted logsumexp over (rows, cols): b is (rows, cols) or one (cols,) row shared by
# every row. Returns (value (rows,), sign (rows,) or None).
def weighted_logsumexp(x: _Float, b: _Float, want_sign: bool) -> tuple[_Float, _Float | None]: ...
def weighted_logsumexp_backward(grad_output: _Float, x: _Float, b: _Float, want_sign: bool) -> _Float: ...

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
    grad_output: _Float | None, grad_value: float, out: _Float | None,
) -> tuple[float, float, int, _Float | None, _Float | None]: ...
# cross_entropy with the LLM heads (z_loss, softcap; 0 = off): its five results and the z
# part's (sum, divisor).
def cross_entropy_heads(
    op: int, reduction: int, input: _Float, target: NDArray[np.int64] | None, probs: _Float | None,
    weight: _Float | None, outer: int, classes: int, inner: int, ignore_index: int, label_smoothing: float,
    grad_output: _Float | None, grad_value: float, out: _Float | None, z_loss: float, softcap: float,
) -> tuple[float, float, int, _Float | None, _Float | None, float, float]: ...
def nll_loss(
    op: int, reduction: int, input: _Float, target: NDArray[np.int64] | None, probs: _Float | None,
    weight: _Float | None, outer: int, classes: int, inner: int, ignore_index: int, label_smoothing: float,
    grad_output: _Float | None, grad_value: float, out: _Float | None,
) -> tuple[float, float, int, _Float | None, _Float | None]: ...

# Margin losses (binary family): soft_margin_loss as binary_cross_entropy (no weights); the
# multilabel loss per row: (sum of row losses, rows, 0, row losses or None, gradient or None).
def soft_margin_loss(
    op: int, reduction: int, input: _Float, target: _Float, weight: _Float | None, weight_period: int,
    weight_block: int, pos_weight: _Float | None, pos_weight_period: int, pos_weight_block: int,
    grad_output: _Float | None, grad_value: float, out: _Float | None,
) -> tuple[float, float, int, _Float | None, _Float | None]: ...
def multilabel_soft_margin_loss(
    op: int, reduction: int, input: _Float, target: _Float, weight: _Float | None, weight_period: int,
    weight_block: int, grad_output: _Float | None, grad_value: float, out: _Float | None,
) -> tuple[float, float, int, _Float | None, _Float | None]: ...

class DivergenceStatus(enum.IntFlag):
    bad_target = 2

# kl_div / sigmoid_focal_loss: (loss_sum, divisor, DivergenceStatus bits, per-element losses or
# None, gradient or None); `divisor` is what "mean" divides by.
def kl_div(
    op: int, reduction: int, input: _Float, target: _Float, divisor: float, log_target: bool, alpha: float,
    gamma: float, grad_output: _Float | None, grad_value: float, out: _Float | None,
) -> tuple[float, float, int, _Float | None, _Float | None]: ...
def sigmoid_focal_loss(
    op: int, reduction: int, input: _Float, target: _Float, divisor: float, log_target: bool, alpha: float,
    gamma: float, grad_output: _Float | None, grad_value: float, out: _Float | None,
) -> tuple[float, float, int, _Float | None, _Float | None]: ...

# Symmetric cross-entropy over (N, C) rows: (loss_sum, divisor N, first bad target's row or -1,
# per-sample losses or None, gradient or None).
def symmetric_cross_entropy(
    op: int, reduction: int, input: _Float, target: NDArray[np.int64], alpha: float, beta: float, k: float,
    prob_eps: float, grad_output: _Float | None, grad_value: float, out: _Float | None,
) -> tuple[float, float, int, _Float | None, _Float | None]: ...
