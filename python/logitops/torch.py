"""logitops inside torch: torch.nn.functional's functions and torch.nn's loss modules over CPU
tensors, with autograd, as `torch.library` custom ops (so `torch.compile` keeps them in its graph).

    import logitops.torch as lot
    loss = lot.cross_entropy(logits, target)      # F.cross_entropy's signature and semantics
    loss.backward()
    with lot.patch():                             # torch's own F.* calls routed to logitops
        loss = torch.nn.CrossEntropyLoss()(logits, target)

Only imported on request (`import logitops` never imports torch). Each function computes with the
NumPy API on `tensor.numpy()` views (no copy of a contiguous tensor) and returns its results with
`torch.from_numpy` (no copy either). A loss whose input requires grad runs the fused
`*_value_and_grad` in its forward and keeps that gradient (one N x C buffer, where torch keeps its
log-probabilities); its backward scales it by the upstream gradient (an upstream gradient of 1,
the usual `loss.backward()`, hands the buffer over as it is). Tensors logitops cannot take (not
on the CPU, float16/bfloat16/complex inputs, integer inputs, tensor subclasses, torch-only
options such as `out=`) run torch's own function instead, with torch's results and errors.

Double backward (differentiating a gradient: `create_graph=True`) is not supported: a loss's
backward raises RuntimeError when it runs with `create_graph=True`, a primitive's gradient raises
when it is itself differentiated. Never a silent zero.
"""

import numbers
import sys
import threading
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch._library.custom_ops import CustomOpDef
from torch.overrides import TorchFunctionMode

from . import _binary, _cross_entropy, _primitives
from ._checks import check_reduction, legacy_reduction, normalize_axes
from ._cross_entropy import _check_label_smoothing

__all__ = [
    "logsumexp",
    "log_softmax",
    "softmax",
    "logsigmoid",
    "sigmoid",
    "binary_cross_entropy",
    "binary_cross_entropy_with_logits",
    "cross_entropy",
    "nll_loss",
    "BCELoss",
    "BCEWithLogitsLoss",
    "CrossEntropyLoss",
    "NLLLoss",
    "LogSoftmax",
    "Softmax",
    "LogSigmoid",
    "Sigmoid",
    "patch",
    "empty_cache",
]

# The ops' reduction codes (torch's own numbering) and back.
_REDUCTION_CODE = {"none": 0, "mean": 1, "sum": 2}
_REDUCTION_NAME = ("none", "mean", "sum")
_FLOATS = (torch.float32, torch.float64)
# Dtypes the NumPy API computes in or refuses with its own error (integers and bool as targets or
# weights); any other (float16, bfloat16, complex, ...) goes to torch's own implementation.
_NUMPY_DTYPES = frozenset(
    {torch.float32, torch.float64, torch.bool, torch.int8, torch.int16, torch.int32, torch.int64, torch.uint8,
     torch.uint16, torch.uint32, torch.uint64}
)
_INT64_MIN, _INT64_MAX = -(2**63), 2**63 - 1


# ----------------------------------------------------------------------------- what we take


def _plain(t: torch.Tensor) -> bool:
    """A tensor without a __torch_function__ of its own (torch.Tensor, nn.Parameter)."""
    c = type(t)
    return c is torch.Tensor or c.__torch_function__ is _DISABLED_TORCH_FUNCTION


_DISABLED_TORCH_FUNCTION = torch._C._disabled_torch_function_impl


def _ours(input: Any, *others: Any) -> bool:
    """Whether logitops computes this call: every argument a plain strided CPU tensor (or None
    for the optional ones), the input float32/float64, the others of a dtype the NumPy API takes
    or refuses itself. Anything else runs torch's own function: other devices, other dtypes,
    and subclasses with their own __torch_function__ (torch's function dispatches to them)."""
    if not isinstance(input, torch.Tensor):
        return False
    if input.dtype not in _FLOATS or not input.is_cpu or input.layout != torch.strided:
        return False
    for t in others:
        if t is None:
            continue
        if not isinstance(t, torch.Tensor) or t.dtype not in _NUMPY_DTYPES or not t.is_cpu or t.layout != torch.strided:
            return False
    if torch.compiler.is_compiling():  # (the tensors torch.compile traces with are subclasses)
        return True
    return _plain(input) and all(t is None or _plain(t) for t in others)


def _array(t: torch.Tensor) -> np.ndarray:
    """t's data as a NumPy array: a view (any strides), never a copy."""
    return t.detach().numpy()


def _tensor(a: Any) -> torch.Tensor:
    """A NumPy result (array or scalar) as a contiguous tensor, sharing its memory."""
    t = torch.from_numpy(np.asarray(a))
    return t if t.is_contiguous() else t.contiguous()


def _reduction(size_average: Any, reduce: Any, reduction: Any) -> str:
    if size_average is not None or reduce is not None:
        return legacy_reduction(size_average, reduce, stacklevel=4)  # user -> lot.f -> here -> there
    if reduction.__class__ is not str or reduction not in _REDUCTION_CODE:
        check_reduction(reduction)
    return str(reduction)


def _ignore_index(ignore_index: Any) -> int:
    if type(ignore_index) is not int:
        if isinstance(ignore_index, (bool, np.bool_)) or not isinstance(ignore_index, (numbers.Integral, np.integer)):
            raise TypeError(f"ignore_index must be an int, got {type(ignore_index).__name__}")
        ignore_index = int(ignore_index)
    if not _INT64_MIN <= ignore_index <= _INT64_MAX:
        raise ValueError(f"ignore_index must fit in int64, got {ignore_index}")
    return int(ignore_index)


def _no_weight_grad(name: str, arg: str, weight: torch.Tensor | None) -> None:
    """torch's error for a weight that requires grad (its losses are not differentiable in it)."""
    if weight is not None and weight.requires_grad and torch.is_grad_enabled():
        raise RuntimeError(
            f"The function '{name}' is not differentiable with respect to argument '{arg}'. "
            "This input cannot have requires_grad True."
        )


def _double_backward_error(name: str) -> RuntimeError:
    return RuntimeError(
        f"logitops.torch.{name} does not support double backward (differentiating its gradient, "
        f"create_graph=True); use torch's own {name} where a second derivative is needed"
    )


def _loss_dtype(input: torch.Tensor, target: torch.Tensor | None = None) -> torch.dtype:
    """The NumPy API's computation dtype: float64 if the input or a float target is float64."""
    if input.dtype == torch.float64 or (target is not None and target.dtype == torch.float64):
        return torch.float64
    return torch.float32


def _eager(*ts: Any) -> bool:
    """Plain tensors (not the fake/functional ones torch.compile traces with)."""
    return all(type(t) is torch.Tensor for t in ts)


def _scale(saved: torch.Tensor, grad_output: torch.Tensor, class_axis: int, name: str) -> torch.Tensor:
    """The saved gradient of a loss (computed for an upstream gradient of 1, per sample for
    "none") times the upstream gradient (a scalar, or one per sample broadcast along class_axis)."""
    if type(grad_output) is torch.Tensor and type(saved) is torch.Tensor:  # eager (not traced)
        if torch.is_grad_enabled():  # create_graph=True: our gradient is not differentiable
            raise _double_backward_error(name)
        # A single value (a scalar, or the expanded scalar that .sum()'s backward sends): 1 hands
        # the buffer over as it is, unless the graph is kept for another backward that needs it.
        if grad_output.dim() == 0 or (grad_output.numel() >= 1 and not any(grad_output.stride())):
            value = (grad_output if grad_output.dim() == 0 else grad_output.as_strided((), ())).item()
            if value == 1.0 and not torch._C._autograd._get_current_graph_task_keep_graph():
                return saved
            return saved * value
    if class_axis >= 0 and grad_output.dim() > 0:
        grad_output = grad_output.unsqueeze(class_axis)
    return saved * grad_output


# Every op is registered twice: as a torch.library custom op (what torch.compile, torch.export,
# dispatch modes and fake tensors see) and as its plain Python function with an
# autograd.Function of the same forward and backward. Eager calls on plain CPU tensors take the
# latter: torch.library's Python layers (argument defaults, the dynamo guard, redispatch) cost
# several times the whole computation on small inputs (measured: ~60 us per call against the
# NumPy API's ~16 us on (8, 4) logits, on a loaded machine).
_IMPL: dict[Any, Callable[..., Any]] = {}  # op -> its plain function
_EAGER: dict[Any, Any] = {}  # op -> its autograd.Function


def _custom_op(name: str) -> Callable[[Callable[..., Any]], CustomOpDef]:
    def register(fn: Callable[..., Any]) -> CustomOpDef:
        op: CustomOpDef = torch.library.custom_op(f"logitops::{name}", mutates_args=(), device_types="cpu")(fn)
        _IMPL[op] = fn
        return op

    return register


def _fast(tensors: Sequence[torch.Tensor | None]) -> bool:
    """Eager on plain tensors with no dispatch mode active: the dispatcher can be skipped."""
    if torch._C._len_torch_dispatch_stack():
        return False
    for t in tensors:
        if t is not None and type(t) is not torch.Tensor and type(t) is not nn.Parameter:
            return False
    return True


def _run(op: Any, tensors: Sequence[torch.Tensor | None], *args: Any) -> Any:
    """op(*args) (`tensors`: its tensor arguments), eagerly when it can be (see _IMPL)."""
    if not torch.compiler.is_compiling() and _fast(tensors):
        if torch.is_grad_enabled():
            for t in tensors:
                if t is not None and t.requires_grad:
                    return _EAGER[op].apply(*args)
        return _IMPL[op](*args)
    return op(*args)


def _run_backward(op: Any, *args: Any) -> Any:
    """A backward op, called by a backward: its plain function unless create_graph=True (the op's
    autograd then raises on double backward) or tracing (torch.compile needs the op)."""
    if not torch.is_grad_enabled() and _fast([a for a in args if isinstance(a, torch.Tensor)]):
        return _IMPL[op](*args)
    return op(*args)


def _register_autograd(op: Any, backward: Callable[..., Any], setup_context: Callable[..., Any]) -> None:
    """The op's autograd, and the same forward and backward as the eager autograd.Function."""
    op.register_autograd(backward, setup_context=setup_context)
    impl = _IMPL[op]

    def forward(ctx: Any, *args: Any) -> Any:
        output = impl(*args)
        setup_context(ctx, args, output)
        return output

    name = "".join(w.capitalize() for w in op._name.split("_")) + "Backward"
    _EAGER[op] = type(name, (torch.autograd.Function,), {"forward": staticmethod(forward),
                                                         "backward": staticmethod(backward)})


def _guard_double_backward(op: Any, name: str) -> None:
    """A backward op's autograd: differentiating it raises (it is only reached by a double
    backward, create_graph=True then a second backward)."""

    def backward(ctx: Any, *grads: Any) -> Any:
        raise _double_backward_error(name)

    _register_autograd(op, backward, lambda ctx, inputs, output: None)


# ----------------------------------------------------------------------------- primitives: ops


@_custom_op("logsumexp")
def _logsumexp_op(x: torch.Tensor, dim: list[int], keepdim: bool) -> torch.Tensor:
    return _tensor(_primitives.logsumexp(_array(x), tuple(dim), keepdim))


@_logsumexp_op.register_fake
def _(x: torch.Tensor, dim: list[int], keepdim: bool) -> torch.Tensor:
    axes = normalize_axes(x.dim(), tuple(dim), "dim")
    if x.dim() == 0:
        shape: list[int] = []
    elif keepdim:
        shape = [1 if i in axes else n for i, n in enumerate(x.shape)]
    else:
        shape = [n for i, n in enumerate(x.shape) if i not in axes]
    return x.new_empty(shape)


@_custom_op("logsumexp_backward")
def _logsumexp_backward_op(grad_output: torch.Tensor, x: torch.Tensor, dim: list[int], keepdim: bool) -> torch.Tensor:
    return _tensor(_primitives.logsumexp_backward(_array(grad_output), _array(x), tuple(dim), keepdim))


@_logsumexp_backward_op.register_fake
def _(grad_output: torch.Tensor, x: torch.Tensor, dim: list[int], keepdim: bool) -> torch.Tensor:
    return x.new_empty(x.shape)


def _row_ops(name: str, forward: Callable[..., np.ndarray], backward: Callable[..., np.ndarray]) -> tuple[Any, Any]:
    """The forward and backward ops of a row function (log_softmax, softmax) over one dim."""

    @_custom_op(f"{name}")
    def op(x: torch.Tensor, dim: int) -> torch.Tensor:
        return _tensor(forward(_array(x), dim))

    @op.register_fake
    def _(x: torch.Tensor, dim: int) -> torch.Tensor:
        return x.new_empty(x.shape)

    @_custom_op(f"{name}_backward")
    def backward_op(grad_output: torch.Tensor, x: torch.Tensor, dim: int) -> torch.Tensor:
        return _tensor(backward(_array(grad_output), _array(x), dim))

    @backward_op.register_fake
    def _(grad_output: torch.Tensor, x: torch.Tensor, dim: int) -> torch.Tensor:
        return x.new_empty(x.shape)

    return op, backward_op


def _elementwise_ops(name: str, forward: Callable[..., np.ndarray],
                     backward: Callable[..., np.ndarray]) -> tuple[Any, Any]:
    """The forward and backward ops of an elementwise function (log_sigmoid, sigmoid)."""

    @_custom_op(f"{name}")
    def op(x: torch.Tensor) -> torch.Tensor:
        return _tensor(forward(_array(x)))

    @op.register_fake
    def _(x: torch.Tensor) -> torch.Tensor:
        return x.new_empty(x.shape)

    @_custom_op(f"{name}_backward")
    def backward_op(grad_output: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        return _tensor(backward(_array(grad_output), _array(x)))

    @backward_op.register_fake
    def _(grad_output: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        return x.new_empty(x.shape)

    return op, backward_op


_log_softmax_op, _log_softmax_backward_op = _row_ops("log_softmax", _primitives.log_softmax,
                                                     _primitives.log_softmax_backward)
_softmax_op, _softmax_backward_op = _row_ops("softmax", _primitives.softmax, _primitives.softmax_backward)
_log_sigmoid_op, _log_sigmoid_backward_op = _elementwise_ops("log_sigmoid", _primitives.log_sigmoid,
                                                             _primitives.log_sigmoid_backward)
_sigmoid_op, _sigmoid_backward_op = _elementwise_ops("sigmoid", _primitives.sigmoid, _primitives.sigmoid_backward)


def _save_input(ctx: Any, inputs: tuple[Any, ...], output: Any) -> None:
    ctx.save_for_backward(inputs[0])
    ctx.args = inputs[1:]


def _primitive_autograd(op: Any, backward_op: Any, name: str) -> None:
    """op's autograd: the backward op on the saved input; the backward op's raises (double backward)."""

    def backward(ctx: Any, grad_output: torch.Tensor) -> Any:
        (x,) = ctx.saved_tensors
        return (_run_backward(backward_op, grad_output, x, *ctx.args), *(None,) * len(ctx.args))

    _register_autograd(op, backward, _save_input)
    _guard_double_backward(backward_op, name)


_primitive_autograd(_logsumexp_op, _logsumexp_backward_op, "logsumexp")
_primitive_autograd(_log_softmax_op, _log_softmax_backward_op, "log_softmax")
_primitive_autograd(_softmax_op, _softmax_backward_op, "softmax")
_primitive_autograd(_log_sigmoid_op, _log_sigmoid_backward_op, "logsigmoid")
_primitive_autograd(_sigmoid_op, _sigmoid_backward_op, "sigmoid")


# ----------------------------------------------------------------------------- primitives: functions


def logsumexp(input: torch.Tensor, dim: Any, keepdim: bool = False, *, out: torch.Tensor | None = None) -> torch.Tensor:
    """torch.logsumexp: log(sum(exp(input))) over `dim` (an int or a tuple of ints)."""
    if out is not None or dim is None or (isinstance(dim, (tuple, list)) and not dim) or not _ours(input):
        return torch.logsumexp(input, dim, keepdim, out=out) if out is not None else torch.logsumexp(input, dim, keepdim)
    dims = list(normalize_axes(input.dim(), dim, "dim"))
    result: torch.Tensor = _run(_logsumexp_op, (input,), input, dims, bool(keepdim))
    return result


def _row_function(op: Any, torch_fn: Callable[..., torch.Tensor], input: Any, dim: Any, stacklevel: int,
                  dtype: Any) -> torch.Tensor:
    if dim is None or isinstance(dim, str) or not isinstance(input, torch.Tensor):
        return torch_fn(input, dim, stacklevel + 1, dtype)  # torch's implicit dim (and its warning), names
    if dtype is not None:
        if dtype not in _FLOATS:
            return torch_fn(input, dim, stacklevel + 1, dtype)
        input = input.to(dtype)  # torch's dtype=: the input is cast first (differentiably, by torch)
    if not _ours(input):
        return torch_fn(input, dim, stacklevel + 1)
    (axis,) = normalize_axes(input.dim(), dim, "dim")
    result: torch.Tensor = _run(op, (input,), input, axis)
    return result


def log_softmax(input: torch.Tensor, dim: int | None = None, _stacklevel: int = 3,
                dtype: torch.dtype | None = None) -> torch.Tensor:
    """F.log_softmax over `dim`, exact at the row maximum; `dtype` casts the input first."""
    return _row_function(_log_softmax_op, F.log_softmax, input, dim, _stacklevel, dtype)


def softmax(input: torch.Tensor, dim: int | None = None, _stacklevel: int = 3,
            dtype: torch.dtype | None = None) -> torch.Tensor:
    """F.softmax over `dim`; `dtype` casts the input first."""
    return _row_function(_softmax_op, F.softmax, input, dim, _stacklevel, dtype)


def logsigmoid(input: torch.Tensor) -> torch.Tensor:
    """F.logsigmoid: log(sigmoid(input)), exact for large |input|."""
    if not _ours(input):
        return F.logsigmoid(input)
    result: torch.Tensor = _run(_log_sigmoid_op, (input,), input)
    return result


def sigmoid(input: torch.Tensor, *, out: torch.Tensor | None = None) -> torch.Tensor:
    """torch.sigmoid (F.sigmoid)."""
    if out is not None or not _ours(input):
        return torch.sigmoid(input, out=out) if out is not None else torch.sigmoid(input)
    result: torch.Tensor = _run(_sigmoid_op, (input,), input)
    return result


# ----------------------------------------------------------------------------- losses: ops
#
# Each loss op returns (loss, gradient with respect to input); the gradient is computed (fused,
# one pass) only when `with_grad` is true, else it is an empty tensor. Its backward op gives the
# gradient with respect to input or (wrt_target) to a probability target, for an upstream
# gradient, without a saved gradient.


def _loss_results(loss: Any, grad: np.ndarray | None, input: torch.Tensor,
                  buffer: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """(loss, gradient) as tensors: the gradient is `buffer` when the NumPy API wrote it there."""
    if grad is None:
        return _tensor(loss), input.new_empty(0)
    if buffer is not None:
        return _tensor(loss), buffer
    if grad.dtype != _array(input).dtype:  # a float64 target promoted a float32 input's computation
        grad = grad.astype(_array(input).dtype)
    return _tensor(loss), _tensor(grad)


# Gradient buffers of large losses, reused from one training step to the next: a fresh N x C
# array costs its page faults on every step (measured with the NumPy API at 2048 x 32000
# float32: 38 ms into a reused buffer, 107 ms into a new one). A buffer is reused only when no
# tensor holds it any more (its reference count: the pool's alone), so nothing in use is ever
# overwritten; the pool keeps at most _POOL_SIZE of them (empty_cache() drops them).
_POOL_MIN_BYTES = 1 << 20
_POOL_SIZE = 4
_pool: list[np.ndarray] = []
_pool_lock = threading.Lock()
_FREE_REFS = 3  # the pool's list, the loop variable, getrefcount's argument


def _gradient_buffer(input: torch.Tensor, dtype: torch.dtype, with_grad: bool) -> tuple[np.ndarray | None,
                                                                                        torch.Tensor | None]:
    """(array, the tensor sharing it) to receive a fused gradient of input's shape, or (None,
    None) for small ones and gradients computed in another dtype."""
    if not with_grad or input.dtype != dtype or input.numel() * input.element_size() < _POOL_MIN_BYTES:
        return None, None
    shape = tuple(input.shape)
    np_dtype = np.dtype(np.float32 if dtype == torch.float32 else np.float64)
    with _pool_lock:  # (the tensor is made before the lock is released: no other call can take it)
        for i in range(len(_pool)):  # (not enumerate: its cached result tuple would hold a reference)
            buf = _pool[i]
            if buf.shape == shape and buf.dtype == np_dtype and sys.getrefcount(buf) == _FREE_REFS:
                _pool.append(_pool.pop(i))  # most recently used last
                return buf, torch.from_numpy(buf)
        buf = np.empty(shape, np_dtype)
        _pool.append(buf)
        if len(_pool) > _POOL_SIZE:
            del _pool[0]  # (a buffer still in use lives on with its tensor)
        return buf, torch.from_numpy(buf)


def empty_cache() -> None:
    """Drop the gradient buffers kept for reuse by the losses (their memory is freed once no
    tensor holds them)."""
    with _pool_lock:
        _pool.clear()


def _loss_fakes(input: torch.Tensor, loss_shape: Sequence[int], dtype: torch.dtype,
                with_grad: bool) -> tuple[torch.Tensor, torch.Tensor]:
    return input.new_empty(loss_shape, dtype=dtype), input.new_empty(input.shape if with_grad else (0,))


def _sample_shape(input: torch.Tensor) -> list[int]:
    """The shape of class-index targets and of an unreduced loss: the input's without axis 1."""
    return [] if input.dim() <= 1 else [input.shape[0], *input.shape[2:]]


def _grad_result(grad: np.ndarray, like: torch.Tensor) -> torch.Tensor:
    dt = _array(like).dtype
    return _tensor(grad if grad.dtype == dt else grad.astype(dt))


@_custom_op("cross_entropy")
def _cross_entropy_op(input: torch.Tensor, target: torch.Tensor, weight: torch.Tensor | None, ignore_index: int,
                      reduction: int, label_smoothing: float, with_grad: bool) -> tuple[torch.Tensor, torch.Tensor]:
    x, t = _array(input), _array(target)
    w = None if weight is None else _array(weight)
    red = _REDUCTION_NAME[reduction]
    if with_grad:
        out, buffer = _gradient_buffer(input, _loss_dtype(input, target if target.dtype.is_floating_point else None), True)
        loss, grad = _cross_entropy.cross_entropy_value_and_grad(x, t, w, None, ignore_index, None, red, label_smoothing,
                                                                 out=out)
        return _loss_results(loss, grad, input, buffer)
    return _loss_results(_cross_entropy.cross_entropy(x, t, w, None, ignore_index, None, red, label_smoothing), None, input)


@_cross_entropy_op.register_fake
def _(input: torch.Tensor, target: torch.Tensor, weight: torch.Tensor | None, ignore_index: int, reduction: int,
      label_smoothing: float, with_grad: bool) -> tuple[torch.Tensor, torch.Tensor]:
    probs = target.dtype.is_floating_point
    shape = _sample_shape(input) if reduction == 0 else []
    return _loss_fakes(input, shape, _loss_dtype(input, target if probs else None), with_grad)


@_custom_op("cross_entropy_backward")
def _cross_entropy_backward_op(grad_output: torch.Tensor, input: torch.Tensor, target: torch.Tensor,
                               weight: torch.Tensor | None, ignore_index: int, reduction: int,
                               label_smoothing: float, wrt_target: bool) -> torch.Tensor:
    grad = _cross_entropy.cross_entropy_backward(
        _array(grad_output), _array(input), _array(target), None if weight is None else _array(weight), None,
        ignore_index, None, _REDUCTION_NAME[reduction], label_smoothing, wrt="target" if wrt_target else "input")
    return _grad_result(grad, target if wrt_target else input)


@_cross_entropy_backward_op.register_fake
def _(grad_output: torch.Tensor, input: torch.Tensor, target: torch.Tensor, weight: torch.Tensor | None,
      ignore_index: int, reduction: int, label_smoothing: float, wrt_target: bool) -> torch.Tensor:
    like = target if wrt_target else input
    return like.new_empty(like.shape)


@_custom_op("nll_loss")
def _nll_loss_op(input: torch.Tensor, target: torch.Tensor, weight: torch.Tensor | None, ignore_index: int,
                 reduction: int, with_grad: bool) -> tuple[torch.Tensor, torch.Tensor]:
    x, t = _array(input), _array(target)
    w = None if weight is None else _array(weight)
    red = _REDUCTION_NAME[reduction]
    if with_grad:
        out, buffer = _gradient_buffer(input, _loss_dtype(input), True)
        loss, grad = _cross_entropy.nll_loss_value_and_grad(x, t, w, None, ignore_index, None, red, out=out)
        return _loss_results(loss, grad, input, buffer)
    return _loss_results(_cross_entropy.nll_loss(x, t, w, None, ignore_index, None, red), None, input)


@_nll_loss_op.register_fake
def _(input: torch.Tensor, target: torch.Tensor, weight: torch.Tensor | None, ignore_index: int, reduction: int,
      with_grad: bool) -> tuple[torch.Tensor, torch.Tensor]:
    return _loss_fakes(input, _sample_shape(input) if reduction == 0 else [], _loss_dtype(input), with_grad)


@_custom_op("nll_loss_backward")
def _nll_loss_backward_op(grad_output: torch.Tensor, input: torch.Tensor, target: torch.Tensor,
                          weight: torch.Tensor | None, ignore_index: int, reduction: int) -> torch.Tensor:
    grad = _cross_entropy.nll_loss_backward(_array(grad_output), _array(input), _array(target),
                                            None if weight is None else _array(weight), None, ignore_index, None,
                                            _REDUCTION_NAME[reduction])
    return _grad_result(grad, input)


@_nll_loss_backward_op.register_fake
def _(grad_output: torch.Tensor, input: torch.Tensor, target: torch.Tensor, weight: torch.Tensor | None,
      ignore_index: int, reduction: int) -> torch.Tensor:
    return input.new_empty(input.shape)


@_custom_op("binary_cross_entropy")
def _bce_op(input: torch.Tensor, target: torch.Tensor, weight: torch.Tensor | None, reduction: int,
            with_grad: bool) -> tuple[torch.Tensor, torch.Tensor]:
    x, t = _array(input), _array(target)
    w = None if weight is None else _array(weight)
    red = _REDUCTION_NAME[reduction]
    if with_grad:
        out, buffer = _gradient_buffer(input, _loss_dtype(input, target), True)
        loss, grad = _binary.binary_cross_entropy_value_and_grad(x, t, w, None, None, red, out=out)
        return _loss_results(loss, grad, input, buffer)
    return _loss_results(_binary.binary_cross_entropy(x, t, w, None, None, red), None, input)


@_bce_op.register_fake
def _(input: torch.Tensor, target: torch.Tensor, weight: torch.Tensor | None, reduction: int,
      with_grad: bool) -> tuple[torch.Tensor, torch.Tensor]:
    return _loss_fakes(input, input.shape if reduction == 0 else [], _loss_dtype(input, target), with_grad)


@_custom_op("binary_cross_entropy_backward")
def _bce_backward_op(grad_output: torch.Tensor, input: torch.Tensor, target: torch.Tensor,
                     weight: torch.Tensor | None, reduction: int, wrt_target: bool) -> torch.Tensor:
    grad = _binary.binary_cross_entropy_backward(_array(grad_output), _array(input), _array(target),
                                                 None if weight is None else _array(weight), None, None,
                                                 _REDUCTION_NAME[reduction], wrt="target" if wrt_target else "input")
    return _grad_result(grad, target if wrt_target else input)


@_bce_backward_op.register_fake
def _(grad_output: torch.Tensor, input: torch.Tensor, target: torch.Tensor, weight: torch.Tensor | None,
      reduction: int, wrt_target: bool) -> torch.Tensor:
    like = target if wrt_target else input
    return like.new_empty(like.shape)


@_custom_op("binary_cross_entropy_with_logits")
def _bce_logits_op(input: torch.Tensor, target: torch.Tensor, weight: torch.Tensor | None,
                   pos_weight: torch.Tensor | None, reduction: int,
                   with_grad: bool) -> tuple[torch.Tensor, torch.Tensor]:
    x, t = _array(input), _array(target)
    w = None if weight is None else _array(weight)
    q = None if pos_weight is None else _array(pos_weight)
    red = _REDUCTION_NAME[reduction]
    if with_grad:
        out, buffer = _gradient_buffer(input, _loss_dtype(input, target), True)
        loss, grad = _binary.binary_cross_entropy_with_logits_value_and_grad(x, t, w, None, None, red, q, out=out)
        return _loss_results(loss, grad, input, buffer)
    return _loss_results(_binary.binary_cross_entropy_with_logits(x, t, w, None, None, red, q), None, input)


@_bce_logits_op.register_fake
def _(input: torch.Tensor, target: torch.Tensor, weight: torch.Tensor | None, pos_weight: torch.Tensor | None,
      reduction: int, with_grad: bool) -> tuple[torch.Tensor, torch.Tensor]:
    return _loss_fakes(input, input.shape if reduction == 0 else [], _loss_dtype(input, target), with_grad)


@_custom_op("binary_cross_entropy_with_logits_backward")
def _bce_logits_backward_op(grad_output: torch.Tensor, input: torch.Tensor, target: torch.Tensor,
                            weight: torch.Tensor | None, pos_weight: torch.Tensor | None, reduction: int,
                            wrt_target: bool) -> torch.Tensor:
    grad = _binary.binary_cross_entropy_with_logits_backward(
        _array(grad_output), _array(input), _array(target), None if weight is None else _array(weight), None, None,
        _REDUCTION_NAME[reduction], None if pos_weight is None else _array(pos_weight),
        wrt="target" if wrt_target else "input")
    return _grad_result(grad, target if wrt_target else input)


@_bce_logits_backward_op.register_fake
def _(grad_output: torch.Tensor, input: torch.Tensor, target: torch.Tensor, weight: torch.Tensor | None,
      pos_weight: torch.Tensor | None, reduction: int, wrt_target: bool) -> torch.Tensor:
    like = target if wrt_target else input
    return like.new_empty(like.shape)


# The losses' autograd. The forward op's inputs: (input, target, <options>..., with_grad); its
# outputs (loss, grad). With the fused gradient, only it is kept (not the input: torch keeps one
# N x C buffer too); the input and the options are kept for the backward op only when it runs
# (no fused gradient, or a probability target that requires grad).


def _loss_autograd(op: Any, backward_op: Any, name: str, wrt_target_arg: bool) -> None:
    """op's autograd: the saved fused gradient scaled (input), the backward op (target, or input
    without a fused gradient). `wrt_target_arg`: the backward op takes a final wrt_target flag."""

    def setup_context(ctx: Any, inputs: tuple[Any, ...], output: tuple[torch.Tensor, torch.Tensor]) -> None:
        input, target, options, with_grad = inputs[0], inputs[1], inputs[2:-1], inputs[-1]
        ctx.set_materialize_grads(False)  # (no zeros for the gradient output, which nothing uses)
        ctx.mark_non_differentiable(output[1])
        ctx.with_grad = with_grad
        ctx.class_axis = 1 if name in ("cross_entropy", "nll_loss") and input.dim() >= 2 else -1
        # The options: numbers kept here, tensors (weights) saved, both put back in order.
        ctx.tensor_slots = [i for i, o in enumerate(options) if isinstance(o, torch.Tensor)]
        ctx.options = [None if isinstance(o, torch.Tensor) else o for o in options]
        needs_op = not with_grad or target.requires_grad
        kept = [options[i] if needs_op else None for i in ctx.tensor_slots]
        ctx.save_for_backward(output[1] if with_grad else None, input if needs_op else None,
                              target if needs_op else None, *kept)

    def backward(ctx: Any, grad_loss: torch.Tensor | None, _grad_of_grad: Any) -> Any:
        grads: list[torch.Tensor | None] = [None] * (3 + len(ctx.options))
        if grad_loss is None:
            return tuple(grads)
        if torch.is_grad_enabled() and _eager(grad_loss):
            raise _double_backward_error(name)
        fused, input, target, *weights = ctx.saved_tensors

        def run_backward_op(wrt_target: bool) -> torch.Tensor:
            options = list(ctx.options)
            for i, w in zip(ctx.tensor_slots, weights):
                options[i] = w
            extra = (wrt_target,) if wrt_target_arg else ()
            result: torch.Tensor = _run_backward(backward_op, grad_loss, input, target, *options, *extra)
            return result

        if ctx.needs_input_grad[0]:
            grads[0] = _scale(fused, grad_loss, ctx.class_axis, name) if ctx.with_grad else run_backward_op(False)
        if ctx.needs_input_grad[1]:
            grads[1] = run_backward_op(True)
        return tuple(grads)

    _register_autograd(op, backward, setup_context)
    _guard_double_backward(backward_op, name)


_loss_autograd(_cross_entropy_op, _cross_entropy_backward_op, "cross_entropy", True)
_loss_autograd(_nll_loss_op, _nll_loss_backward_op, "nll_loss", False)
_loss_autograd(_bce_op, _bce_backward_op, "binary_cross_entropy", True)
_loss_autograd(_bce_logits_op, _bce_logits_backward_op, "binary_cross_entropy_with_logits", True)


def _with_grad(input: torch.Tensor) -> bool:
    return input.requires_grad and torch.is_grad_enabled()


# ----------------------------------------------------------------------------- losses: functions


def cross_entropy(input: torch.Tensor, target: torch.Tensor, weight: torch.Tensor | None = None,
                  size_average: bool | None = None, ignore_index: int = -100, reduce: bool | None = None,
                  reduction: str = "mean", label_smoothing: float = 0.0) -> torch.Tensor:
    """F.cross_entropy on logits with class-index or probability targets; exact for confident
    predictions. With input.requires_grad, the forward computes the gradient too (fused)."""
    if not _ours(input, target, weight):
        return F.cross_entropy(input, target, weight, size_average, ignore_index, reduce, reduction, label_smoothing)
    red = _reduction(size_average, reduce, reduction)
    ls = label_smoothing
    if ls.__class__ is not float or not 0.0 <= ls <= 1.0:
        ls = _check_label_smoothing(label_smoothing)
    _no_weight_grad("nll_loss_forward", "weight", weight)
    loss: torch.Tensor = _run(_cross_entropy_op, (input, target, weight), input, target, weight,
                              _ignore_index(ignore_index), _REDUCTION_CODE[red], ls, _with_grad(input))[0]
    return loss


def nll_loss(input: torch.Tensor, target: torch.Tensor, weight: torch.Tensor | None = None,
             size_average: bool | None = None, ignore_index: int = -100, reduce: bool | None = None,
             reduction: str = "mean") -> torch.Tensor:
    """F.nll_loss on log-probabilities."""
    if not _ours(input, target, weight):
        return F.nll_loss(input, target, weight, size_average, ignore_index, reduce, reduction)
    red = _reduction(size_average, reduce, reduction)
    _no_weight_grad("nll_loss_forward", "weight", weight)
    loss: torch.Tensor = _run(_nll_loss_op, (input, target, weight), input, target, weight,
                              _ignore_index(ignore_index), _REDUCTION_CODE[red], _with_grad(input))[0]
    return loss


def binary_cross_entropy(input: torch.Tensor, target: torch.Tensor, weight: torch.Tensor | None = None,
                         size_average: bool | None = None, reduce: bool | None = None,
                         reduction: str = "mean") -> torch.Tensor:
    """F.binary_cross_entropy on probabilities (ValueError for values outside [0, 1])."""
    if not _ours(input, target, weight):
        return F.binary_cross_entropy(input, target, weight, size_average, reduce, reduction)
    red = _reduction(size_average, reduce, reduction)
    _no_weight_grad("binary_cross_entropy", "weight", weight)
    loss: torch.Tensor = _run(_bce_op, (input, target, weight), input, target, weight, _REDUCTION_CODE[red],
                              _with_grad(input))[0]
    return loss


def binary_cross_entropy_with_logits(input: torch.Tensor, target: torch.Tensor, weight: torch.Tensor | None = None,
                                     size_average: bool | None = None, reduce: bool | None = None,
                                     reduction: str = "mean", pos_weight: torch.Tensor | None = None) -> torch.Tensor:
    """F.binary_cross_entropy_with_logits; exact for every finite logit, the limit at +-inf."""
    if not _ours(input, target, weight, pos_weight):
        return F.binary_cross_entropy_with_logits(input, target, weight, size_average, reduce, reduction, pos_weight)
    red = _reduction(size_average, reduce, reduction)
    _no_weight_grad("binary_cross_entropy_with_logits", "weight", weight)
    _no_weight_grad("binary_cross_entropy_with_logits", "pos_weight", pos_weight)
    loss: torch.Tensor = _run(_bce_logits_op, (input, target, weight, pos_weight), input, target, weight, pos_weight,
                              _REDUCTION_CODE[red], _with_grad(input))[0]
    return loss


# ----------------------------------------------------------------------------- modules


class CrossEntropyLoss(nn.CrossEntropyLoss):
    """torch.nn.CrossEntropyLoss computing with logitops (same constructor, buffers, state_dict)."""

    def forward(self, input: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return cross_entropy(input, target, self.weight, ignore_index=self.ignore_index, reduction=self.reduction,
                             label_smoothing=self.label_smoothing)


class NLLLoss(nn.NLLLoss):
    """torch.nn.NLLLoss computing with logitops."""

    def forward(self, input: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return nll_loss(input, target, self.weight, ignore_index=self.ignore_index, reduction=self.reduction)


class BCELoss(nn.BCELoss):
    """torch.nn.BCELoss computing with logitops."""

    def forward(self, input: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return binary_cross_entropy(input, target, self.weight, reduction=self.reduction)


class BCEWithLogitsLoss(nn.BCEWithLogitsLoss):
    """torch.nn.BCEWithLogitsLoss computing with logitops."""

    def forward(self, input: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return binary_cross_entropy_with_logits(input, target, self.weight, reduction=self.reduction,
                                                pos_weight=self.pos_weight)


class LogSoftmax(nn.LogSoftmax):
    """torch.nn.LogSoftmax computing with logitops."""

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        return log_softmax(input, self.dim, _stacklevel=5)


class Softmax(nn.Softmax):
    """torch.nn.Softmax computing with logitops."""

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        return softmax(input, self.dim, _stacklevel=5)


class LogSigmoid(nn.LogSigmoid):
    """torch.nn.LogSigmoid computing with logitops."""

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        return logsigmoid(input)


class Sigmoid(nn.Sigmoid):
    """torch.nn.Sigmoid computing with logitops."""

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        return sigmoid(input)


# ----------------------------------------------------------------------------- patch()


def _torch_row(ours: Callable[..., torch.Tensor], func: Callable[..., Any]) -> Callable[..., Any]:
    """torch.log_softmax / Tensor.log_softmax (input, dim, dtype=None): dim required, dtype third."""

    def route(input: Any, dim: Any = None, dtype: Any = None, **kwargs: Any) -> Any:
        if kwargs or dim is None or isinstance(dim, str):
            return func(input, dim, dtype, **kwargs) if dim is not None else func(input, dtype=dtype, **kwargs)
        return ours(input, dim, dtype=dtype)

    return route


def _torch_logsumexp(input: Any, dim: Any = None, keepdim: bool = False, **kwargs: Any) -> Any:
    if kwargs or dim is None or isinstance(dim, str) or (isinstance(dim, (tuple, list)) and any(
            isinstance(d, str) for d in dim)):
        return torch.logsumexp(input, dim, keepdim, **kwargs)
    return logsumexp(input, dim, keepdim)


def _torch_sigmoid(input: Any, **kwargs: Any) -> Any:
    return sigmoid(input, **kwargs)


def _routes() -> dict[Any, Callable[..., Any]]:
    """torch's function objects as a TorchFunctionMode receives them -> ours."""
    routes: dict[Any, Callable[..., Any]] = {
        F.cross_entropy: cross_entropy,
        F.nll_loss: nll_loss,
        F.binary_cross_entropy: binary_cross_entropy,
        F.binary_cross_entropy_with_logits: binary_cross_entropy_with_logits,
        F.log_softmax: log_softmax,
        F.softmax: softmax,
        F.logsigmoid: logsigmoid,  # (torch._C._nn.log_sigmoid itself)
        F.sigmoid: sigmoid,
        torch.sigmoid: _torch_sigmoid,
        torch.Tensor.sigmoid: _torch_sigmoid,
        torch.special.expit: _torch_sigmoid,
        torch.logsumexp: _torch_logsumexp,
        torch.Tensor.logsumexp: _torch_logsumexp,
        torch.special.logsumexp: _torch_logsumexp,
    }
    for name, ours in (("log_softmax", log_softmax), ("softmax", softmax)):
        for func in (getattr(torch, name), getattr(torch.Tensor, name), getattr(torch.special, name)):
            routes[func] = _torch_row(ours, func)
    return routes


_ROUTES = _routes()


class _Patch(TorchFunctionMode):
    """Routes torch's own F.cross_entropy, F.log_softmax, torch.logsumexp, ... (and so torch.nn's
    modules, which call them) to logitops.torch; every other call passes through. Inside
    __torch_function__ torch has popped this mode, so our fallbacks to torch are not routed back."""

    def __torch_function__(self, func: Any, types: Any, args: Sequence[Any] = (), kwargs: Any = None) -> Any:
        ours = _ROUTES.get(func)
        if ours is None:
            return func(*args, **(kwargs or {}))
        return ours(*args, **(kwargs or {}))


def patch() -> TorchFunctionMode:
    """`with lot.patch():` routes torch's own functions (F.cross_entropy, F.nll_loss,
    F.binary_cross_entropy[_with_logits], F.log_softmax, F.softmax, F.logsigmoid, torch.sigmoid,
    torch.logsumexp and their torch./Tensor./torch.special aliases, hence torch.nn's loss modules)
    to logitops inside the block, for code that cannot be edited. Every other torch call in the
    block pays the mode's dispatch (see the README for the measured cost)."""
    return _Patch()
