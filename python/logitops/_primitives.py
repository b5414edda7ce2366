"""logsumexp, log_softmax, softmax, log_sigmoid, sigmoid and their backward functions."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from . import _core
from ._checks import (
    FLOAT_DTYPES,
    check_float_dtype,
    check_out,
    contiguous,
    float_array,
    is_bfloat16,
    normalize_axes,
    result_dtype,
)
from ._rows import RowLayout

Axis = Any  # int | tuple[int, ...] | None
_Kernel = Callable[..., np.ndarray]  # a _core primitive


def _scalar_or_array(out: np.ndarray) -> Any:
    return out[()] if out.ndim == 0 else out


def _layout(x: np.ndarray, axis: Axis) -> RowLayout:
    if axis == -1 and type(axis) is int and x.ndim:  # the common case, without the general checks
        return RowLayout(x.shape, (x.ndim - 1,))
    return RowLayout(x.shape, normalize_axes(x.ndim, axis))


def logsumexp(x: np.ndarray, axis: Axis = -1, keepdims: bool = False, *, b: Any = None,
              return_sign: bool = False) -> Any:
    """log(sum(exp(x))) over `axis` (torch.logsumexp); -inf for an empty reduction.

    With `b` (SciPy's scipy.special.logsumexp): log|sum(b * exp(x))|, b broadcast against x (the
    result has the broadcast shape, reduced), b == 0 dropping its term. `return_sign=True`
    returns (value, sign) with sign +1, -1 or 0 (value -inf); without it a negative sum gives
    NaN, as SciPy."""
    if b is None and return_sign is False:
        x = float_array(x, "x")
        lay = _layout(x, axis)
        out = _core.logsumexp(lay.to_rows(x, x.dtype))
        return _scalar_or_array(out.reshape(lay.reduced_shape(keepdims, x.ndim)))
    return _weighted_logsumexp(x, axis, keepdims, b, return_sign)


def _check_return_sign(return_sign: Any) -> bool:
    if not isinstance(return_sign, (bool, np.bool_)):
        raise TypeError(f"return_sign must be a bool, got {type(return_sign).__name__}")
    return bool(return_sign)


def _weights(b: Any, x: np.ndarray) -> np.ndarray:
    """b as a float array (a Python real scalar takes x's dtype, as a weakly typed scalar)."""
    if isinstance(b, (bool, np.bool_)):
        raise TypeError("b must be a float32/float64 numpy.ndarray or a real number, got bool")
    if isinstance(b, (int, float)) and not isinstance(b, np.floating):
        return np.asarray(float(b), dtype=x.dtype)
    if isinstance(b, np.floating):
        b = np.asarray(b)
    return float_array(b, "b")


class _Weighted:
    """x and b of one weighted call as the kernels' rows: b either x's rows or one shared row."""

    __slots__ = ("x", "b", "lay", "shape", "x_shape", "dtype")

    def __init__(self, x_arg: Any, axis: Axis, b_arg: Any, extra: np.ndarray | None = None) -> None:
        x = float_array(x_arg, "x")
        b = _weights(b_arg, x)
        try:
            shape = np.broadcast_shapes(x.shape, b.shape)
        except ValueError:
            raise ValueError(f"b has shape {b.shape}, which does not broadcast against x of shape {x.shape}") from None
        dt = result_dtype(x, b, extra)
        nd = len(shape)
        lay = _layout(np.broadcast_to(x, shape), axis) if shape != x.shape else _layout(x, axis)
        self.lay, self.shape, self.x_shape, self.dtype = lay, shape, x.shape, dt
        self.x = lay.to_rows(np.broadcast_to(x, shape) if shape != x.shape else x, dt)
        b_full = (1,) * (nd - b.ndim) + b.shape
        kept = lay.perm[: len(lay.perm) - len(lay.axes)] if nd else ()
        if all(b_full[i] == 1 for i in kept) and nd:
            # b varies along the reduced axes only: one row shared by every row, no copy per row.
            row = np.broadcast_to(b.reshape(b_full), tuple(1 if i in kept else shape[i] for i in range(nd)))
            self.b = contiguous(row.transpose(lay.perm), dt).reshape(lay.cols)
        else:
            self.b = lay.to_rows(np.broadcast_to(b, shape), dt)

    def reduced_shape(self, keepdims: bool) -> tuple[int, ...]:
        return self.lay.reduced_shape(keepdims, len(self.shape))


def _weighted_logsumexp(x_arg: Any, axis: Axis, keepdims: bool, b_arg: Any, return_sign: Any) -> Any:
    want_sign = _check_return_sign(return_sign)
    if b_arg is None:
        x = float_array(x_arg, "x")
        lay = _layout(x, axis)
        value = _core.logsumexp(lay.to_rows(x, x.dtype))
        ones = np.where(np.isnan(value), value, np.where(value == -np.inf, 0.0, 1.0)).astype(x.dtype)
        rshape = lay.reduced_shape(keepdims, x.ndim)
        return _scalar_or_array(value.reshape(rshape)), _scalar_or_array(ones.reshape(rshape))
    if (axis == -1 and type(axis) is int and type(x_arg) is np.ndarray and type(b_arg) is np.ndarray
            and x_arg.ndim and x_arg.size and x_arg.dtype == b_arg.dtype and x_arg.dtype in FLOAT_DTYPES
            and (b_arg.shape == x_arg.shape or b_arg.shape == x_arg.shape[-1:])
            and x_arg.flags.c_contiguous and b_arg.flags.c_contiguous and x_arg.flags.aligned and b_arg.flags.aligned):
        # The common case: the rows are the arrays themselves (b one row or x's shape).
        cols = x_arg.shape[-1]
        bb = b_arg.reshape(-1, cols) if b_arg.ndim == x_arg.ndim and x_arg.ndim > 1 else b_arg.reshape(cols)
        value, sign = _core.weighted_logsumexp(x_arg.reshape(-1, cols), bb, want_sign)
        shape = x_arg.shape[:-1] + ((1,) if keepdims else ())
    else:
        w = _Weighted(x_arg, axis, b_arg)
        value, sign = _core.weighted_logsumexp(w.x, w.b, want_sign)
        shape = w.reduced_shape(keepdims)
    if want_sign:
        assert sign is not None  # the binding returns one when asked
        return _scalar_or_array(value.reshape(shape)), _scalar_or_array(sign.reshape(shape))
    return _scalar_or_array(value.reshape(shape))


def logsumexp_backward(grad_output: Any, x: np.ndarray, axis: Axis = -1, keepdims: bool = False, *,
                       b: Any = None, return_sign: bool = False) -> np.ndarray:
    """Gradient of logsumexp with respect to x: grad_output * softmax(x) over `axis`; with `b`,
    grad_output * b * exp(x) / sum(b * exp(x)) (summed over the axes b's broadcast added to x).
    `return_sign` as the forward's: without it a row with a negative sum has NaN gradients."""
    if b is None:
        x = float_array(x, "x")
        g = _grad_array(grad_output, x.dtype)
        lay = _layout(x, axis)
        want = lay.reduced_shape(keepdims, x.ndim)
        _check_grad_shape(g, want, lay)
        dt = result_dtype(x, g)
        out = _core.logsumexp_backward(contiguous(g, dt).reshape(lay.rows), lay.to_rows(x, dt))
        return lay.from_rows(out, x.ndim)
    want_sign = _check_return_sign(return_sign)
    xa = float_array(x, "x")
    g = _grad_array(grad_output, xa.dtype)
    w = _Weighted(xa, axis, b, g)
    _check_grad_shape(g, w.reduced_shape(keepdims), w.lay)
    out = _core.weighted_logsumexp_backward(contiguous(g, w.dtype).reshape(w.lay.rows), w.x, w.b, want_sign)
    grad = w.lay.from_rows(out, len(w.shape))
    if w.shape != w.x_shape:  # b enlarged x: the gradient of a broadcast is the sum over its copies
        lead = len(w.shape) - len(w.x_shape)
        axes = tuple(range(lead)) + tuple(lead + i for i, n in enumerate(w.x_shape) if n == 1 and w.shape[lead + i] != 1)
        grad = grad.sum(axis=axes, keepdims=True).reshape(w.x_shape) if axes else grad.reshape(w.x_shape)
    return np.ascontiguousarray(grad) if grad.ndim else grad


def _check_grad_shape(g: np.ndarray, want: tuple[int, ...], lay: RowLayout) -> None:
    if g.shape != want and not (g.size == lay.rows and g.size == int(np.prod(want, dtype=np.int64)) and g.ndim == len(want) == 0):
        raise ValueError(f"grad_output has shape {g.shape}, expected {want} (the shape of logsumexp(x))")


def _checked_out(out: Any, x: np.ndarray) -> np.ndarray | None:
    """`out` for a result like x: x's shape and dtype, C-contiguous, writable, x itself or apart."""
    return check_out(out, x.dtype, x.shape, x, True, (), "x")


def _row_map(fn: _Kernel, x_arg: Any, axis: Axis, out_arg: Any) -> np.ndarray:
    x = float_array(x_arg, "x")
    out = None if out_arg is None else _checked_out(out_arg, x)
    if axis == -1 and type(axis) is int and x.ndim and x.size and (f := x.flags).c_contiguous and f.aligned:
        # The common case: the rows are the array itself (and out's, written in place).
        cols = x.shape[-1]
        if out is None:
            return fn(x.reshape(-1, cols), None).reshape(x.shape)
        fn(x.reshape(-1, cols), out.reshape(-1, cols))
        return out
    lay = _layout(x, axis)
    y = lay.from_rows(fn(lay.to_rows(x, x.dtype), None), x.ndim)
    if out is None:
        return y
    np.copyto(out, y)  # other layouts go through a rows copy anyway
    return out


def _row_grad(fn: _Kernel, grad_output: Any, x: Any, axis: Axis) -> np.ndarray:
    x = float_array(x, "x")
    g = _grad_array(grad_output, x.dtype)
    if g.shape != x.shape:
        raise ValueError(f"grad_output has shape {g.shape}, expected {x.shape} (the shape of x)")
    lay = _layout(x, axis)
    dt = result_dtype(x, g)
    return lay.from_rows(fn(lay.to_rows(g, dt), lay.to_rows(x, dt)), x.ndim)


def _grad_array(grad_output: Any, x_dtype: np.dtype) -> np.ndarray:
    # A Python float is weakly typed (as in torch and NumPy): it takes x's dtype instead of
    # promoting a float32 computation to float64. NumPy float scalars keep their dtype.
    if isinstance(grad_output, np.floating):  # before float: np.float64 is a float subclass
        grad_output = np.asarray(grad_output)
    elif isinstance(grad_output, float):
        grad_output = np.asarray(grad_output, dtype=x_dtype)
    return float_array(grad_output, "grad_output")


def _cast(a: Any, dtype: Any) -> Any:
    """a cast to `dtype` (torch's dtype= keyword: the input is cast before the operation), when
    it is a plain array of a real or bool dtype; anything else is left to float_array's checks."""
    dt = check_float_dtype(dtype)
    if type(a) is np.ndarray and (a.dtype.kind in "biuf" or is_bfloat16(a.dtype)) and a.dtype != dt:
        return a.astype(dt)
    return a


def _row_grad_cast(fn: _Kernel, grad_output: Any, x: Any, axis: Axis, dtype: Any) -> np.ndarray:
    """_row_grad of the function computed in `dtype`: x and grad_output cast to it, the
    gradient cast back to x's dtype when x is a float array (as torch's autograd gives x.grad)."""
    if dtype is None:
        return _row_grad(fn, grad_output, x, axis)
    grad = _row_grad(fn, _cast(grad_output, dtype), _cast(x, dtype), axis)
    if type(x) is np.ndarray and (x.dtype.kind == "f" or is_bfloat16(x.dtype)) and x.dtype != grad.dtype:
        return grad.astype(x.dtype)
    return grad


def log_softmax(x: np.ndarray, axis: Axis = -1, *, dtype: Any = None, out: np.ndarray | None = None) -> np.ndarray:
    """log(softmax(x)) over `axis` (F.log_softmax), exact at the row maximum. `dtype` (float32 or
    float64), as torch's, casts x to it first. `out` receives the result and may be x itself."""
    if dtype is not None:
        x = _cast(x, dtype)
    return _row_map(_core.log_softmax, x, axis, out)


def softmax(x: np.ndarray, axis: Axis = -1, *, dtype: Any = None, out: np.ndarray | None = None) -> np.ndarray:
    """exp(x) / sum(exp(x)) over `axis` (F.softmax). `dtype` (float32 or float64), as torch's,
    casts x to it first. `out` receives the result and may be x itself."""
    if dtype is not None:
        x = _cast(x, dtype)
    return _row_map(_core.softmax, x, axis, out)


def log_softmax_backward(grad_output: np.ndarray, x: np.ndarray, axis: Axis = -1, *,
                         dtype: Any = None) -> np.ndarray:
    """Gradient of log_softmax: grad_output - softmax(x) * sum(grad_output) over `axis`. With
    `dtype` (the forward's), computed in that dtype and returned in x's."""
    return _row_grad_cast(_core.log_softmax_backward, grad_output, x, axis, dtype)


def softmax_backward(grad_output: np.ndarray, x: np.ndarray, axis: Axis = -1, *, dtype: Any = None) -> np.ndarray:
    """Gradient of softmax: y * (grad_output - sum(grad_output * y)) with y = softmax(x). With
    `dtype` (the forward's), computed in that dtype and returned in x's."""
    return _row_grad_cast(_core.softmax_backward, grad_output, x, axis, dtype)


def _elementwise(fn: _Kernel, x: Any, out: Any) -> np.ndarray:
    x = float_array(x, "x")
    if out is not None:
        out = _checked_out(out, x)
    return fn(contiguous(x, x.dtype), out)


def _elementwise_grad(fn: _Kernel, grad_output: Any, x: Any) -> np.ndarray:
    x = float_array(x, "x")
    g = _grad_array(grad_output, x.dtype)
    if g.shape != x.shape:
        raise ValueError(f"grad_output has shape {g.shape}, expected {x.shape} (the shape of x)")
    dt = result_dtype(x, g)
    return fn(contiguous(g, dt), contiguous(x, dt))


def log_sigmoid(x: np.ndarray, *, out: np.ndarray | None = None) -> np.ndarray:
    """log(sigmoid(x)) = -softplus(-x) (F.logsigmoid), exact for large |x|. `out` receives the
    result and may be x itself."""
    return _elementwise(_core.log_sigmoid, x, out)


def sigmoid(x: np.ndarray, *, out: np.ndarray | None = None) -> np.ndarray:
    """1 / (1 + exp(-x)) (torch.sigmoid), without overflow. `out` receives the result and may be x
    itself."""
    return _elementwise(_core.sigmoid, x, out)


def log_sigmoid_backward(grad_output: np.ndarray, x: np.ndarray) -> np.ndarray:
    """Gradient of log_sigmoid: grad_output * sigmoid(-x)."""
    return _elementwise_grad(_core.log_sigmoid_backward, grad_output, x)


def sigmoid_backward(grad_output: np.ndarray, x: np.ndarray) -> np.ndarray:
    """Gradient of sigmoid: grad_output * sigmoid(x) * sigmoid(-x)."""
    return _elementwise_grad(_core.sigmoid_backward, grad_output, x)
