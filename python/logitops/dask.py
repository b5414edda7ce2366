"""logitops over dask arrays: ``import logitops.dask as ld``.

The losses (and logsumexp, log_softmax, softmax) of logitops with the same signatures, over dask
arrays chunked along the batch axis, lazily: every call builds a graph and computes nothing.
Each block runs the NumPy kernels in its task (threads, processes or a ``distributed``
cluster alike). A reduced loss combines the blocks' mergeable partials (``lo.loss_partials``:
loss sum and the mean's divisor, float64), never the blocks' means; for a "mean" the global
divisor comes first, from the targets alone (a small task per block), and each gradient block
is computed in the same pass as its loss, scaled by 1 / divisor.

Layouts. cross_entropy / nll_loss: input (N, C) or (N, C, d1, ...) chunked along axis 0 only
(the class axis and the extra axes in one chunk each), class-index targets (N, d1, ...) or
probability targets (input's shape) chunked as the input along axis 0; `weight` a NumPy array.
The binary losses: any chunking, target chunked as input; `weight`/`pos_weight` dask or NumPy
arrays broadcasting to the input. logsumexp: any chunking (chunked reduced axes are combined
by a logsumexp of the blocks'); log_softmax / softmax: the softmax axis in one chunk.
Anything else raises before a task exists (a NumPy target is cut into the input's blocks).

Requires dask (``pip install "logitops[dask]"``); ``import logitops`` never imports it.
"""

from __future__ import annotations

import importlib
import inspect
import math
import operator
from collections.abc import Callable
from typing import Any, NamedTuple

import numpy as np

from . import _checks, _partials
from . import binary_cross_entropy as _np_bce
from . import binary_cross_entropy_with_logits as _np_bce_logits
from . import cross_entropy as _np_cross_entropy
from . import log_softmax as _np_log_softmax
from . import logsumexp as _np_logsumexp
from . import nll_loss as _np_nll_loss
from . import softmax as _np_softmax

# dask's functions carry no annotations mypy --strict accepts: the module is used as Any, and
# "Any" below stands for a dask array.
da: Any = importlib.import_module("dask.array")

__all__ = ["logsumexp", "log_softmax", "softmax"]  # the losses are added below, from _LOSSES


# ----------------------------------------------------------------------------- the loss table


class _Loss(NamedTuple):
    """How one loss of logitops maps onto blocks.
    classes: the input is (C,) / (N, C, d...) with the class axis 1 kept whole (cross_entropy
             family), else elementwise (any chunking, the binary family);
    whole:   array arguments handed whole to every block (a class weight);
    bcast:   array arguments broadcasting to the input, cut into its blocks (elementwise only)."""

    forward: Callable[..., Any]
    classes: bool
    whole: tuple[str, ...] = ()
    bcast: tuple[str, ...] = ()


# A new loss of logitops is one entry here (and one in _partials._FAMILIES).
_LOSSES: dict[str, _Loss] = {
    "cross_entropy": _Loss(_np_cross_entropy, classes=True, whole=("weight",)),
    "nll_loss": _Loss(_np_nll_loss, classes=True, whole=("weight",)),
    "binary_cross_entropy": _Loss(_np_bce, classes=False, bcast=("weight",)),
    "binary_cross_entropy_with_logits": _Loss(_np_bce_logits, classes=False, bcast=("weight", "pos_weight")),
}
_LEGACY = ("size_average", "reduce", "reduction")


# ----------------------------------------------------------------------------- argument checks


def _letters(n: int, skip: str = "") -> str:
    return "".join(c for c in "abcdefghijklmnopqrstuvwxy" if c not in skip)[:n]


def _known_chunks(a: Any, name: str) -> None:
    if any(math.isnan(c) for cs in a.chunks for c in cs):
        raise ValueError(f"{name} has unknown chunk sizes: call {name}.compute_chunk_sizes() first")


def _check_input(x: Any, name: str = "input") -> Any:
    if not isinstance(x, da.Array):
        raise TypeError(f"{name} must be a dask array, got {type(x).__name__} (logitops' own functions take NumPy arrays)")
    _known_chunks(x, name)
    return x


def _whole_axes(x: Any, axes: tuple[int, ...], name: str, what: str) -> None:
    for ax in axes:
        if len(x.chunks[ax]) > 1:
            raise ValueError(
                f"{name} is chunked along axis {ax} ({what}; chunks {x.chunks[ax]}): that axis must be one chunk, "
                f"rechunk with {name}.rechunk({{{ax}: -1}})"
            )


def _as_blocks(a: Any, name: str, like: Any, axes_of_like: tuple[int, ...]) -> Any:
    """`a` (a dask or NumPy array whose axis i lies along `like`'s axis axes_of_like[i]) as a dask
    array cut as `like` along those axes (size-1 axes broadcast: one chunk); an argument of
    another shape is returned as it is, for the NumPy checks to refuse."""
    if not isinstance(a, (da.Array, np.ndarray)) or a.ndim != len(axes_of_like):
        return a
    if isinstance(a, np.ndarray):
        if any(a.shape[i] not in (1, like.shape[ax]) for i, ax in enumerate(axes_of_like)):
            return a
        return da.from_array(a, chunks=tuple(
            like.chunks[ax] if a.shape[i] == like.shape[ax] else (a.shape[i],) for i, ax in enumerate(axes_of_like)))
    _known_chunks(a, name)
    for i, ax in enumerate(axes_of_like):
        if a.shape[i] == like.shape[ax] and a.chunks[i] != like.chunks[ax] and not (
                a.shape[i] == 1 and len(a.chunks[i]) == 1):
            raise ValueError(
                f"{name} is chunked {a.chunks[i]} along its axis {i}, input {like.chunks[ax]} along axis {ax}: "
                f"the blocks must match (rechunk {name} like the input)"
            )
        if a.shape[i] != like.shape[ax] and a.shape[i] != 1:
            raise ValueError(f"{name} of shape {a.shape} does not broadcast to the input's shape {like.shape}")
    return a


def _stand_in(a: Any) -> Any:
    """A zero-memory NumPy stand-in of a dask array (its shape and dtype; values never read)."""
    if isinstance(a, da.Array):
        return np.broadcast_to(np.zeros((), a.dtype), a.shape)
    return a


class _Call(NamedTuple):
    name: str
    spec: _Loss
    arrays: dict[str, Any]  # the blocked arguments: input, target (and bcast ones)
    indices: dict[str, str]  # each blocked argument's blockwise index
    static: dict[str, Any]  # everything else, handed whole to every block
    reduction: str
    out_index: str  # the input's index
    loss_index: str  # the unreduced loss's index


def _prepare(name: str, args: tuple[Any, ...], kwargs: dict[str, Any], stacklevel: int = 4) -> _Call:
    spec = _LOSSES[name]
    try:
        bound = inspect.signature(spec.forward).bind(*args, **kwargs)
    except TypeError as exc:
        raise TypeError(f"{name}: {exc}") from None
    bound.apply_defaults()
    kw = dict(bound.arguments)
    reduction = kw.pop("reduction")
    size_average, reduce = kw.pop("size_average", None), kw.pop("reduce", None)
    if size_average is not None or reduce is not None:
        reduction = _checks.legacy_reduction(size_average, reduce, stacklevel=stacklevel)
    reduction = _checks.check_reduction(reduction)

    x = _check_input(kw.pop("input"))
    target = kw.pop("target")
    nd = x.ndim
    ind = _letters(nd)
    arrays, index = {"input": x}, {"input": ind}
    if spec.classes:
        if nd == 0:
            raise ValueError("input must have shape (C,), (N, C) or (N, C, d1, ...), got a 0-d array")
        # One sample (C,) has no batch axis: one block. Else only the batch axis 0 may be cut.
        _whole_axes(x, (0,) if nd == 1 else (1,), "input", "the class axis")
        _whole_axes(x, tuple(range(2, nd)), "input", "an axis after the class axis: only the batch axis 0 may be chunked")
        class_target = isinstance(target, (da.Array, np.ndarray)) and target.dtype.kind in "iu"
        t_axes = (tuple(range(nd)) if not class_target else () if nd == 1 else (0,) + tuple(range(2, nd)))
        loss_index = "" if nd == 1 else ind[0] + ind[2:]
    else:
        t_axes = tuple(range(nd))
        loss_index = ind
    if isinstance(target, (da.Array, np.ndarray)):
        if isinstance(target, da.Array) and target.ndim == len(t_axes):
            _known_chunks(target, "target")
            for i, ax in enumerate(t_axes):
                if target.shape[i] == x.shape[ax] and target.chunks[i] != x.chunks[ax]:
                    raise ValueError(
                        f"target is chunked {target.chunks[i]} along its axis {i}, input {x.chunks[ax]} along axis "
                        f"{ax}: the blocks must match (target.rechunk(input.chunks[{ax}]) along that axis)"
                    )
        elif isinstance(target, np.ndarray):
            target = _as_blocks(target, "target", x, t_axes)
    if isinstance(target, da.Array):
        arrays["target"] = target
        index["target"] = "".join(ind[ax] for ax in t_axes) if target.ndim == len(t_axes) else _letters(target.ndim, ind)
    else:
        kw["target"] = target
    for arg in spec.bcast:
        a = kw.get(arg)
        if isinstance(a, (da.Array, np.ndarray)) and a.ndim <= nd:
            axes = tuple(range(nd - a.ndim, nd))
            a = _as_blocks(a, arg, x, axes)
            if isinstance(a, da.Array):
                arrays[arg] = a
                index[arg] = "".join(ind[ax] for ax in axes)
                del kw[arg]
                continue
        if isinstance(a, da.Array):
            raise ValueError(f"{arg} of shape {a.shape} does not broadcast to the input's shape {x.shape}")
    for arg in spec.whole:
        if isinstance(kw.get(arg), da.Array):
            raise TypeError(f"{arg} must be a NumPy array (it is handed whole to every block), got a dask array; "
                            f"use {arg}.compute()")
    # Everything else, as the NumPy function checks it: on zero-memory stand-ins of the whole arrays.
    t = arrays.get("target")
    if spec.classes and t is not None and t.dtype.kind in "iu":
        _check_class_call(name, kw, arrays)
    else:
        _partials.loss_divisor(name, **{**kw, **{k: _stand_in(v) for k, v in arrays.items()}})
    return _Call(name, spec, arrays, index, kw, reduction, ind, loss_index)


def _check_class_call(name: str, kw: dict[str, Any], arrays: dict[str, Any]) -> None:
    """The NumPy checks of a class-target call, on a stand-in whose targets are all ignored (the
    targets' values are checked by their blocks' tasks, as the kernels check them)."""
    t = arrays["target"]
    ignore = kw["ignore_index"]
    fill = np.zeros((), t.dtype)
    if isinstance(ignore, (int, np.integer)) and not isinstance(ignore, (bool, np.bool_)):
        try:
            fill = np.asarray(ignore).astype(t.dtype, casting="safe")
        except TypeError:
            fill = np.zeros((), t.dtype)
    stand = {"input": _stand_in(arrays["input"]), "target": np.broadcast_to(fill, t.shape)}
    try:
        _partials.loss_divisor(name, **{**kw, **stand})
    except IndexError:
        pass  # a stand-in's value, not the caller's: the real targets are checked block by block


# ----------------------------------------------------------------------------- block tasks


def _kwargs(static: dict[str, Any], names: tuple[str, ...], blocks: tuple[Any, ...]) -> dict[str, Any]:
    kw = dict(static)
    kw.update(zip(names, blocks))
    return kw


def _block_partials(name: str, static: dict[str, Any], names: tuple[str, ...], grid: int, *blocks: Any) -> np.ndarray:
    p = _partials.loss_partials(name, **_kwargs(static, names, blocks))
    return np.array([p.total, p.divisor]).reshape((1,) * grid + (2,))


def _block_divisor(name: str, static: dict[str, Any], names: tuple[str, ...], grid: int, *blocks: Any) -> np.ndarray:
    kw = _kwargs(static, names, blocks)
    kw["input"] = np.broadcast_to(np.zeros((), kw["input"].dtype), kw["input"].shape)
    return np.array([_partials.loss_divisor(name, **kw)]).reshape((1,) * grid)


def _block_fused(name: str, static: dict[str, Any], names: tuple[str, ...], scale: Any, *blocks: Any) -> tuple[np.ndarray, np.ndarray]:
    """(the block's [total, divisor], its gradient of scale * total)."""
    p, grad = _partials.loss_partials(name + "_value_and_grad", **_kwargs(static, names, blocks),
                                      grad_scale=float(scale))
    return np.array([p.total, p.divisor]), grad


def _block_fused_none(name: str, static: dict[str, Any], names: tuple[str, ...], *blocks: Any) -> tuple[Any, Any]:
    loss, grad = getattr(_np_module(), name + "_value_and_grad")(**_kwargs(static, names, blocks), reduction="none")
    return loss, grad


def _block_none(name: str, static: dict[str, Any], names: tuple[str, ...], *blocks: Any) -> np.ndarray:
    return np.asarray(getattr(_np_module(), name)(**_kwargs(static, names, blocks), reduction="none"))


def _np_module() -> Any:
    import logitops

    return logitops


def _losses_of(fused: Any) -> np.ndarray:
    """The losses of a block's (losses, gradient); the class axis, dropped from the losses'
    index, hands the block over in a list (it is one chunk)."""
    while isinstance(fused, list):
        (fused,) = fused
    return fused[0]  # type: ignore[no-any-return]


def _parts_of(fused: tuple[np.ndarray, np.ndarray], grid: int) -> np.ndarray:
    return fused[0].reshape((1,) * grid + (2,))


def _fsum_chunk(a: np.ndarray, axis: tuple[int, ...], keepdims: bool) -> np.ndarray:
    """Sums over `axis`, correctly rounded (math.fsum; inf and nan as plain addition)."""
    moved = np.moveaxis(a, axis, tuple(range(a.ndim - len(axis), a.ndim)))
    lead = moved.shape[: a.ndim - len(axis)]
    flat = moved.reshape(lead + (-1,))
    out = np.empty(lead, np.float64)
    for i in np.ndindex(*lead):
        out[i] = _partials._exact_sum([float(v) for v in flat[i]])
    if keepdims:
        out = np.expand_dims(out, axis)
    return out


def _fsum(a: Any, axis: tuple[int, ...]) -> Any:
    return da.reduction(a, _fsum_chunk, _fsum_chunk, axis=axis, dtype=np.float64, combine=_fsum_chunk,
                        concatenate=True, meta=np.empty((0,) * (a.ndim - len(axis)), np.float64))


def _reduce(parts: np.ndarray, reduction: str, dtype: np.dtype) -> np.ndarray:
    return np.asarray(_checks.reduce_loss(float(parts[0]), float(parts[1]), reduction, dtype))


def _scale(divisor: Any) -> np.ndarray:
    with np.errstate(divide="ignore"):  # 1/0: inf, as the kernels' grad_value / divisor
        return np.asarray(np.divide(1.0, np.float64(divisor)))


# ----------------------------------------------------------------------------- graphs


def _dtype_of(c: _Call) -> np.dtype:
    stand = {k: np.zeros((1,) * v.ndim, v.dtype) for k, v in c.arrays.items()}
    dts = [stand[k].dtype for k in ("input", "target") if k in stand and stand[k].dtype.kind == "f"]
    t = c.static.get("target")
    if isinstance(t, np.ndarray) and t.dtype.kind == "f":
        dts.append(t.dtype)
    return np.dtype(np.float64) if any(d == np.float64 for d in dts) else np.dtype(np.float32)


def _blockwise_args(c: _Call) -> tuple[tuple[str, ...], list[Any]]:
    names = tuple(c.arrays)
    flat: list[Any] = []
    for n in names:
        flat += [c.arrays[n], c.indices[n]]
    return names, flat


def _grid_parts(c: _Call, fn: Callable[..., Any], width: int | None) -> Any:
    """One small float64 array per block of the input: (1, ..., 1, width), or (1, ..., 1)."""
    names, flat = _blockwise_args(c)
    grid = len(c.out_index)
    new = {"z": width} if width else {}
    return da.blockwise(fn, c.out_index + ("z" if width else ""), c.name, None, c.static, None, names, None,
                        grid, None, *flat, new_axes=new, adjust_chunks={k: 1 for k in c.out_index},
                        dtype=np.float64, meta=np.empty((0,) * (grid + bool(width)), np.float64),
                        concatenate=True, align_arrays=False)


def _total(c: _Call, parts: Any) -> Any:
    """The reduced loss (0-d, the computation's dtype) from the blocks' [total, divisor]."""
    summed = _fsum(parts, tuple(range(parts.ndim - 1))) if parts.ndim > 1 else parts
    dt = _dtype_of(c)
    return summed.map_blocks(_reduce, c.reduction, dt, drop_axis=0, chunks=(), dtype=dt, meta=np.empty((), dt))


def _global_divisor(c: _Call) -> Any:
    """The mean's divisor of the whole call: a float when the shapes decide it, else a 0-d dask
    array summing one small task per block (reading the targets only)."""
    t = c.arrays.get("target")
    if not (c.spec.classes and t is not None and t.dtype.kind in "iu"):
        return _partials.loss_divisor(c.name, **{**c.static, **{k: _stand_in(v) for k, v in c.arrays.items()}})
    reads = {k: v for k, v in c.arrays.items() if k == "target"}
    # The input's blocks only for their shapes: zero-memory blocks of the same chunks, not the data.
    x = c.arrays["input"]
    shapes = da.zeros(x.shape, chunks=x.chunks, dtype=x.dtype)
    sub = c._replace(arrays={"input": shapes, **reads})
    per_block = _grid_parts(sub, _block_divisor, None)
    return _fsum(per_block, tuple(range(per_block.ndim)))


def _loss(name: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    c = _prepare(name, args, kwargs)
    if c.reduction == "none":
        names, flat = _blockwise_args(c)
        dt = _dtype_of(c)
        return da.blockwise(_block_none, c.loss_index, name, None, c.static, None, names, None, *flat,
                            dtype=dt, meta=np.empty((0,) * len(c.loss_index), dt), concatenate=True, align_arrays=False)
    return _total(c, _grid_parts(c, _block_partials, 2))


def _value_and_grad(name: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> tuple[Any, Any]:
    c = _prepare(name, args, kwargs)
    names, flat = _blockwise_args(c)
    dt = _dtype_of(c)
    grid = len(c.out_index)
    meta = np.empty((0,) * grid, dt)
    if c.reduction == "none":
        fused = da.blockwise(_block_fused_none, c.out_index, name, None, c.static, None, names, None, *flat,
                             dtype=dt, meta=meta, concatenate=True, align_arrays=False)
        loss = da.blockwise(_losses_of, c.loss_index, fused, c.out_index, dtype=dt,
                            meta=np.empty((0,) * len(c.loss_index), dt), concatenate=False)
    else:
        scale: Any = 1.0
        if c.reduction == "mean":
            divisor = _global_divisor(c)
            scale = _scale(np.float64(divisor)) if not isinstance(divisor, da.Array) else divisor.map_blocks(
                _scale, dtype=np.float64, meta=np.empty((), np.float64))
        scale_args: list[Any] = [scale, ""] if isinstance(scale, da.Array) else [scale, None]
        fused = da.blockwise(_block_fused, c.out_index, name, None, c.static, None, names, None, *scale_args,
                             *flat, dtype=dt, meta=meta, concatenate=True, align_arrays=False)
        parts = da.blockwise(_parts_of, c.out_index + "z", fused, c.out_index, grid, None, new_axes={"z": 2},
                             adjust_chunks={k: 1 for k in c.out_index}, dtype=np.float64,
                             meta=np.empty((0,) * (grid + 1), np.float64))
        loss = _total(c, parts)
    grad = da.blockwise(operator.itemgetter(1), c.out_index, fused, c.out_index, dtype=dt, meta=meta)
    return loss, grad


def _make(name: str, fused: bool) -> Callable[..., Any]:
    np_fn = getattr(_np_module(), name + ("_value_and_grad" if fused else ""))
    if fused:
        def fn(*args: Any, **kwargs: Any) -> Any:
            return _value_and_grad(name, args, kwargs)
        # The NumPy function's signature without `out` (a dask result has no preallocated array).
        sig = inspect.signature(np_fn)
        sig = sig.replace(parameters=[p for p in sig.parameters.values() if p.name != "out"])
        what = "(loss, gradient)"
    else:
        def fn(*args: Any, **kwargs: Any) -> Any:
            return _loss(name, args, kwargs)
        sig = inspect.signature(np_fn)
        what = "the loss"
    fn.__name__ = fn.__qualname__ = np_fn.__name__
    fn.__signature__ = sig  # type: ignore[attr-defined]
    fn.__doc__ = (f"logitops.{np_fn.__name__} over dask arrays: {what}, lazily (a 0-d dask array for a "
                  f"reduced loss, the gradient blocks aligned with the input's).\n\n{np_fn.__doc__}")
    return fn


for _name in _LOSSES:
    globals()[_name] = _make(_name, False)
    globals()[_name + "_value_and_grad"] = _make(_name, True)
    __all__ += [_name, _name + "_value_and_grad"]


# ----------------------------------------------------------------------------- primitives


def _lse_block(a: np.ndarray, axis: tuple[int, ...], keepdims: bool) -> np.ndarray:
    return np.asarray(_np_logsumexp(a, axis=axis, keepdims=keepdims))


def logsumexp(x: Any, axis: Any = -1, keepdims: bool = False, *, b: Any = None, return_sign: bool = False) -> Any:
    """logitops.logsumexp over a dask array, any chunking: blocks along a reduced axis are combined
    by a logsumexp of their logsumexps (exact: it is the same sum). SciPy's weighted form (`b`,
    `return_sign`) is not taken over dask arrays yet: it raises."""
    if b is not None or return_sign:
        raise NotImplementedError("b / return_sign: the weighted logsumexp is not in logitops.dask yet")
    x = _check_input(x, "x")
    if x.dtype not in _checks.FLOAT_DTYPES:
        raise TypeError(f"x must have dtype float32 or float64, got {x.dtype}")
    axes = _checks.normalize_axes(x.ndim, axis)
    if x.ndim == 0:
        return x.map_blocks(_lse_block, axes, keepdims, dtype=x.dtype)
    if not isinstance(keepdims, (bool, np.bool_)):
        raise TypeError(f"keepdims must be a bool, got {type(keepdims).__name__}")
    return da.reduction(x, _lse_block, _lse_block, axis=axes, keepdims=bool(keepdims), dtype=x.dtype,
                        combine=_lse_block, concatenate=True,
                        meta=np.empty((0,) * (x.ndim if keepdims else x.ndim - len(axes)), x.dtype))


def _row_block(a: np.ndarray, fn: Callable[..., Any], axis: tuple[int, ...], dtype: Any) -> np.ndarray:
    return np.asarray(fn(a, axis=axis, dtype=dtype))


def _row_map(fn: Callable[..., Any], x: Any, axis: Any, dtype: Any) -> Any:
    x = _check_input(x, "x")
    dt = x.dtype if dtype is None else _checks.check_float_dtype(dtype)
    if dtype is None and x.dtype not in _checks.FLOAT_DTYPES:
        raise TypeError(f"x must have dtype float32 or float64, got {x.dtype}")
    axes = _checks.normalize_axes(x.ndim, axis)
    if x.ndim:
        _whole_axes(x, axes, "x", "an axis of the softmax")
    return x.map_blocks(_row_block, fn, axes, dtype, dtype=dt, meta=np.empty((0,) * x.ndim, dt))


def log_softmax(x: Any, axis: Any = -1, *, dtype: Any = None) -> Any:
    """logitops.log_softmax over a dask array whose `axis` is one chunk (block by block)."""
    return _row_map(_np_log_softmax, x, axis, dtype)


def softmax(x: Any, axis: Any = -1, *, dtype: Any = None) -> Any:
    """logitops.softmax over a dask array whose `axis` is one chunk (block by block)."""
    return _row_map(_np_softmax, x, axis, dtype)
