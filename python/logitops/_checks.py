"""Argument checking shared by every public function: the API's words and its errors."""

from __future__ import annotations

import math
import numbers
import warnings
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from . import _core

# numpy >= 1.25 has np.exceptions; older ones only the top-level name (removed in 2.0).
AxisError: type[Exception] = getattr(np, "exceptions", np).AxisError

_F32, _F64, _F16 = np.dtype(np.float32), np.dtype(np.float64), np.dtype(np.float16)
FLOAT_DTYPES = (_F32, _F64)  # computed natively; float16 and bfloat16 are read into float32 blocks
_DTYPE_WORDS = "float32, float64, float16 or bfloat16"
REDUCTIONS = ("mean", "sum", "none")
# A loss binding of _core: (loss_sum, divisor, status, losses or None, gradient or None).
LossKernel = Callable[..., "tuple[float, float, int, np.ndarray | None, np.ndarray | None]"]

# The bindings' codes, read once from the enums _core exports (plain ints: an enum member costs
# ~0.1 µs per attribute access or comparison, and the small calls are a few µs in all).
REDUCTION_CODES = {name: int(_core.Reduction[name]) for name in REDUCTIONS}
OP_LOSS = int(_core.LossOp.loss)
OP_GRAD_INPUT = int(_core.LossOp.grad_input)
OP_GRAD_TARGET = int(_core.LossOp.grad_target)
OP_LOSS_AND_GRAD = int(_core.LossOp.loss_and_grad)


def is_bfloat16(dt: np.dtype) -> bool:
    """ml_dtypes.bfloat16 (JAX's, the NumPy ML world's), recognised without importing ml_dtypes:
    a kind 'V' dtype of 2 bytes by that name (its type number is assigned at registration)."""
    return dt.kind == "V" and dt.itemsize == 2 and dt.name == "bfloat16"


def is_low(dt: np.dtype) -> bool:
    """float16 or bfloat16: computed in float32 blocks, results rounded back once."""
    return dt == _F16 or is_bfloat16(dt)


def is_float(dt: np.dtype) -> bool:
    return dt == _F32 or dt == _F64 or is_low(dt)


def float_array(a: Any, name: str) -> np.ndarray:
    """`a` itself if it is a float32/float64/float16/bfloat16 ndarray; TypeError naming `name`
    otherwise (other low-precision formats, such as ml_dtypes' float8 ones, included)."""
    if type(a) is not np.ndarray:
        if not isinstance(a, np.ndarray):
            raise TypeError(f"{name} must be a numpy.ndarray, got {type(a).__name__}")
        if isinstance(a, np.ma.MaskedArray):  # its mask would be silently ignored
            raise TypeError(f"{name} must be a plain numpy.ndarray, not a masked array (use .filled())")
    dt = a.dtype
    if dt not in FLOAT_DTYPES and dt != _F16 and not is_bfloat16(dt):
        if dt.kind == "f" and dt.itemsize in (2, 4, 8) and not dt.isnative:
            return a.astype(dt.newbyteorder("="))  # byte-swapped float: same values
        raise TypeError(f"{name} must have dtype {_DTYPE_WORDS}, got {dt}")
    return a


def promote(a: np.dtype, b: np.dtype) -> np.dtype:
    """torch's promotion of two float dtypes: float64 wins, then float32; float16 with bfloat16
    gives float32; equal dtypes stay."""
    if a == b:
        return a
    if a == _F64 or b == _F64:
        return _F64
    return _F32


def result_dtype(*arrays: np.ndarray | None) -> np.dtype:
    """The computation dtype of float arrays, promoted as torch does (float32 + float64 ->
    float64, float16 + bfloat16 -> float32, a low-precision dtype with float32 -> float32)."""
    dt: np.dtype | None = None
    for a in arrays:
        if a is not None:
            dt = a.dtype if dt is None else promote(dt, a.dtype)
    return _F32 if dt is None else dt


def weight_dtype(dt: np.dtype) -> np.dtype:
    """The dtype a small float argument (a class weight) is passed in for a computation in `dt`:
    float32 for the low-precision dtypes (their arithmetic is float32: a float16/bfloat16
    weight is widened exactly, never rounded to the input's format), else `dt` itself."""
    return _F32 if dt != _F32 and dt != _F64 else dt


def contiguous(a: np.ndarray, dtype: Any) -> np.ndarray:
    """A C-contiguous, aligned array of `dtype` with a's values (a itself when it already is one).
    Unaligned arrays (np.frombuffer at an odd offset) are legal NumPy, but the kernels read
    elements through typed pointers: they get an aligned copy."""
    if a.dtype == dtype:
        f = a.flags  # (a new flags object each time it is read)
        if f.c_contiguous:
            # ascontiguousarray returns an unaligned array as it is: copy it ourselves.
            return a if f.aligned else a.copy()
    # ascontiguousarray turns a 0-d array into shape (1,): keep the shape.
    return np.ascontiguousarray(a, dtype=dtype).reshape(a.shape)


def reduce_loss(total: float, divisor: float, reduction: str, dtype: np.dtype) -> Any:
    """A reduced loss as a NumPy scalar of `dtype`: the binding's loss sum for "sum", divided by
    its divisor for "mean" (nan for nothing to average, as torch: 0/0; IEEE's signed infinity
    for a nonzero sum over a zero total weight)."""
    if reduction == "mean":
        if divisor:
            return _scalar(total / divisor, dtype)
        if total == 0 or total != total:
            total = math.nan
        else:
            total = math.copysign(math.inf, total) * math.copysign(1.0, divisor)
    return _scalar(total, dtype)


def _scalar(value: float, dtype: np.dtype) -> Any:
    if dtype == _F32 or dtype == _F64:
        return dtype.type(value)
    with np.errstate(over="ignore"):  # a float16 sum beyond 65504 is inf, correctly rounded
        return dtype.type(value)


def check_reduction(reduction: Any) -> str:
    if not isinstance(reduction, str) or reduction not in REDUCTIONS:
        raise ValueError(f"reduction must be one of 'mean', 'sum', 'none', got {reduction!r}")
    return reduction


def _legacy_flag(value: Any, name: str) -> bool:
    if value is None:
        return True  # torch: a missing one counts as True
    # torch takes any object by its truth; we take bools and the ints 0 and 1 only, so that an
    # old positional call (a reduction string or an ignore_index in this place) is refused.
    if isinstance(value, (bool, np.bool_)) or (isinstance(value, (numbers.Integral, np.integer)) and value in (0, 1)):
        return bool(value)
    raise TypeError(f"{name} must be a bool or None (deprecated: use reduction=), got {value!r}")


def legacy_reduction(size_average: Any, reduce: Any, stacklevel: int = 3) -> str:
    """The reduction torch's deprecated size_average/reduce pair stands for, when either is not
    None (the caller tests that: it overrides `reduction`), with torch's warning
    (torch.nn._reduction.legacy_get_string): reduce false -> "none", else size_average true ->
    "mean", false -> "sum"; a missing one counts as True. `stacklevel` 3 points the warning
    at the line that called the public function calling this."""
    average = _legacy_flag(size_average, "size_average")
    if not _legacy_flag(reduce, "reduce"):
        reduction = "none"
    else:
        reduction = "mean" if average else "sum"
    warnings.warn(
        f"size_average and reduce args will be deprecated, please use reduction='{reduction}' instead.",
        UserWarning, stacklevel=stacklevel,
    )
    return reduction


def check_float_dtype(dtype: Any) -> np.dtype:
    """A `dtype=` argument (torch's keyword of log_softmax/softmax): float32, float64, float16
    or bfloat16 (ml_dtypes.bfloat16 or its dtype)."""
    try:
        dt: np.dtype | None = np.dtype(dtype)
    except (TypeError, ValueError):
        dt = None
    # (None == a dtype is float64 to NumPy: the dtype is tested, never compared with None)
    if dt is not None and dtype is not None and is_float(dt) and dt.isnative:
        return dt
    raise TypeError(f"dtype must be {_DTYPE_WORDS} (or None), got {dtype!r}")


def grad_scalar(grad_output: Any, dtype: np.dtype, reduction: str) -> float:
    """The upstream gradient of a reduced ("mean"/"sum") loss as a Python float."""
    if isinstance(grad_output, np.ndarray):
        if grad_output.size != 1:
            raise ValueError(
                f"grad_output must be a scalar for reduction={reduction!r}, got shape {grad_output.shape}"
            )
        if not is_float(grad_output.dtype):
            raise TypeError(f"grad_output must have dtype {_DTYPE_WORDS}, got {grad_output.dtype}")
        return float(grad_output.reshape(()))
    if isinstance(grad_output, (numbers.Real, np.floating)) and not isinstance(grad_output, (bool, np.bool_)):
        return float(grad_output)
    raise TypeError(f"grad_output must be a float or a 1-element array, got {type(grad_output).__name__}")


def normalize_axes(ndim: int, axis: Any, name: str = "axis") -> tuple[int, ...]:
    """Axes as a sorted tuple of non-negative ints; AxisError (a ValueError) if out of range.

    A 0-d array is treated as having one axis (axis 0 or -1), as torch does.
    """
    nd = max(ndim, 1)
    if axis is None:
        return tuple(range(nd))
    if isinstance(axis, (bool, np.bool_)):
        raise TypeError(f"{name} must be an int, a tuple of ints or None, got {type(axis).__name__}")
    if isinstance(axis, (numbers.Integral, np.integer)):
        items: Sequence[Any] = (axis,)
    elif isinstance(axis, (tuple, list)):
        items = axis
    else:
        raise TypeError(f"{name} must be an int, a tuple of ints or None, got {type(axis).__name__}")
    out = []
    for a in items:
        if isinstance(a, (bool, np.bool_)) or not isinstance(a, (numbers.Integral, np.integer)):
            raise TypeError(f"{name} must contain ints, got {type(a).__name__}")
        a = int(a)
        if not -nd <= a < nd:
            raise AxisError(f"{name} {a} is out of bounds for an array of dimension {ndim}")
        out.append(a % nd)
    if len(set(out)) != len(out):
        raise ValueError(f"{name} {tuple(items)} has repeated entries")
    return tuple(sorted(out))


def check_out(out: Any, dtype: np.dtype, shape: tuple[int, ...], input: np.ndarray, may_be_input: bool,
              others: Sequence[tuple[str, np.ndarray | None]], input_name: str = "input") -> np.ndarray | None:
    """`out` if it can receive a result of `shape` and `dtype`: C-contiguous, writable, and
    either the (prepared) input array itself (when `may_be_input`) or sharing no memory with it
    or with any of the `others` (name, array) arguments. `input_name` names the input in messages."""
    if out is None:
        return None
    if not isinstance(out, np.ndarray):
        raise TypeError(f"out must be a numpy.ndarray, got {type(out).__name__}")
    if out.dtype != dtype:
        raise TypeError(f"out must have dtype {dtype} (the result's), got {out.dtype}")
    if out.shape != shape:
        raise ValueError(f"out has shape {out.shape}, expected {shape} (the shape of {input_name})")
    if not out.flags.c_contiguous:
        raise ValueError("out must be C-contiguous")
    if not out.flags.aligned:
        raise ValueError("out must be aligned (its data address a multiple of its itemsize)")
    if not out.flags.writeable:
        raise ValueError("out must be writable")
    if out.size == 0:
        return out
    # Both are C-contiguous with the same shape and dtype: the same start is the same array.
    if np.may_share_memory(out, input) and not (may_be_input and out.ctypes.data == input.ctypes.data):
        raise ValueError(f"out overlaps {input_name} without being {input_name} itself")
    for name, arr in others:
        if arr is not None and np.may_share_memory(out, arr):
            raise ValueError(f"out must not share memory with {name}")
    return out


def _low_dtype_of(args: Sequence[Any]) -> np.dtype | None:
    """The 16-bit dtype the results of a call on `args` take (torch's promotion), or None when an
    array argument is float32/float64 or none is 16-bit."""
    dt: np.dtype | None = None
    for a in args:
        if isinstance(a, np.ndarray) and a.dtype.kind in "fV":
            if not is_low(a.dtype):
                if a.dtype.kind == "f":
                    return None
                continue
            dt = a.dtype if dt is None else promote(dt, a.dtype)
    return dt if dt is not None and is_low(dt) else None


def via_float32(fn: Callable[..., Any]) -> Callable[..., Any]:
    """A function whose kernels have no 16-bit blocks yet (the families added after the
    low-precision driver): float16/bfloat16 arguments are computed as float32 copies and every
    float result is rounded back to the 16-bit dtype once -- the numbers of the 16-bit path,
    through a temporary float32 copy of the inputs (a slower path; see the README)."""
    import functools

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        low = _low_dtype_of([*args, *kwargs.values()])
        if low is None:
            return fn(*args, **kwargs)

        def up(v: Any) -> Any:
            return v.astype(_F32) if isinstance(v, np.ndarray) and is_low(v.dtype) else v

        out = kwargs.pop("out", None)
        if out is not None:
            out = float_array(out, "out")
            if out.dtype != low:
                raise TypeError(f"out must have dtype {low}, got {out.dtype}")
        result = fn(*[up(a) for a in args], **{k: up(v) for k, v in kwargs.items()})

        def down(v: Any) -> Any:
            if isinstance(v, np.ndarray) and v.dtype == _F32:
                return v.astype(low)
            if isinstance(v, np.floating) and v.dtype == _F32:
                return np.asarray(v).astype(low)[()]
            return v

        if isinstance(result, tuple):
            result = tuple(down(v) for v in result)
            if out is not None:  # the gradient of a value_and_grad call
                out[...] = result[-1]
                result = (*result[:-1], out)
            return result
        return down(result)

    return wrapper
