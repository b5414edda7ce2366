"""linear_cross_entropy: cross_entropy(input @ linear_weight.T + linear_bias, target, ...) without
the N x V logits (torch 2.13's F.linear_cross_entropy, plus z_loss, softcap and chunk_size).

Rows are taken `chunk_size` at a time. For a chunk of hidden states h (n x D):
  logits = h @ W.T (+ b)       one BLAS product through np.matmul into one reused n x V buffer;
  our fused cross-entropy value-and-grad in place on that buffer (it becomes G = dloss/dlogits);
  grad_input[chunk] = G @ W    np.matmul into the output's rows;
  grad_weight += G.T @ h       np.matmul: the first chunk writes grad_weight itself, later ones
                               go through a small (vb x D) block and an add (NumPy has no beta=1
                               GEMM), so no V x D temporary exists;
  grad_bias += G.sum(0).
So at most chunk_size x V logits exist at any time. The "mean" divisors (sum of w[y] over the
non-ignored samples for the cross-entropy, their number for z_loss) are known before the first
chunk (from the targets alone), so every chunk's gradient is final when it is formed: one pass
over the logits, no second one.

Default chunk size (`default_chunk_size`): the grad_weight accumulation is a memory pass over
V x D per chunk beside 6 n V D flops of products, an overhead that shrinks as 1/n whatever V and
D are; 512 rows keep it near 2% on a 2-core Zen 3 (0.063 s per V x D pass, measured at
V=128256). The logits buffer, n x V x itemsize, is held below half of linear_weight's own size
(n <= D / 2), and never below the L3 cache's worth (so a small D does not force tiny chunks)
nor below 128 rows (where BLAS loses efficiency).

Probability targets take the same path (their rows are chunked like the logits). Class targets
with weight, ignore_index (None: -100), label smoothing, every reduction.

Dtypes: float32 and float64 compute in their own type. float16 / bfloat16 (SPEC "Low
precision") compute in float32: each chunk of hidden states (and of probability targets) is
widened when its turn comes, never the whole N x D; linear_weight is widened once (BLAS has no
16-bit products), grad_linear_weight and grad_linear_bias accumulate in float32 and are rounded
once at the end, grad_input is rounded a chunk at a time. Mixed dtypes promote as torch (float16
+ bfloat16 -> float32), also a chunk at a time.
"""

from __future__ import annotations

import math
import numbers
from typing import Any

import numpy as np

from . import _core
from ._checks import (
    FLOAT_DTYPES,
    OP_LOSS,
    OP_LOSS_AND_GRAD,
    REDUCTION_CODES,
    check_reduction,
    contiguous,
    float_array,
    is_bfloat16,
    reduce_loss,
    result_dtype,
)
from ._cross_entropy import _check_label_smoothing, _check_softcap, _check_z_loss

__all__ = ["linear_cross_entropy", "linear_cross_entropy_value_and_grad"]

_I64 = np.dtype(np.int64)
_F32, _F64 = np.dtype(np.float32), np.dtype(np.float64)
_MIN_CHUNK, _MAX_CHUNK = 128, 4096
_GRAD_WEIGHT_BLOCK_BYTES = 4 << 20  # the (vb x D) block of grad_weight's accumulation


def _l3_bytes() -> int:
    """The last-level cache size (Linux sysfs), 32 MiB where it cannot be read."""
    try:
        with open("/sys/devices/system/cpu/cpu0/cache/index3/size") as f:
            text = f.read().strip()
        scale = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30}.get(text[-1:].upper(), 1)
        return int(text.rstrip("KMGkmg")) * scale
    except (OSError, ValueError):
        return 32 << 20


_L3 = _l3_bytes()


def default_chunk_size(rows: int, classes: int, features: int, itemsize: int) -> int:
    """Rows per chunk when chunk_size is None (see the module docstring)."""
    by_weight = features // 2  # the logits buffer at most half of linear_weight's size
    by_cache = _L3 // max(1, classes * itemsize)
    n = min(_MAX_CHUNK, max(_MIN_CHUNK, min(512, max(by_weight, by_cache))))
    return max(1, min(n, rows))


class _Call:
    __slots__ = ("h", "w", "b", "target", "probs", "weight", "dtype", "rows", "classes", "features", "squeeze",
                 "compute", "ignore_index", "label_smoothing", "z_loss", "softcap", "chunk", "reduction")
    h: np.ndarray
    w: np.ndarray
    b: np.ndarray | None
    target: np.ndarray | None
    probs: np.ndarray | None
    weight: np.ndarray | None
    dtype: np.dtype  # the results' dtype
    compute: np.dtype  # the arithmetic's: dtype, or float32 for float16 / bfloat16
    rows: int
    classes: int
    features: int
    squeeze: bool
    ignore_index: int
    label_smoothing: float
    z_loss: float
    softcap: float
    chunk: int
    reduction: str


def _prepare(input: Any, linear_weight: Any, target: Any, linear_bias: Any, weight: Any, reduction: Any,
             ignore_index: Any, label_smoothing: Any, z_loss: Any, softcap: Any, chunk_size: Any) -> _Call:
    c = _Call()
    c.reduction = check_reduction(reduction)
    c.label_smoothing = _check_label_smoothing(label_smoothing)
    c.z_loss = _check_z_loss(z_loss)
    c.softcap = _check_softcap(softcap)
    h = float_array(input, "input")
    w = float_array(linear_weight, "linear_weight")
    if h.ndim not in (1, 2):
        raise ValueError(f"input must have shape (D,) or (N, D), got shape {h.shape}")
    if w.ndim != 2:
        raise ValueError(
            f"linear_weight must have shape (V, D) like nn.Linear's weight, got shape {w.shape} "
            "(K-dimensional weights are not supported)")
    if w.shape[1] != h.shape[-1]:
        raise ValueError(
            f"linear_weight has shape {w.shape} but input has shape {h.shape}: linear_weight's D "
            f"({w.shape[1]}) must equal input's last dimension ({h.shape[-1]})")
    c.squeeze = h.ndim == 1
    c.rows = 1 if c.squeeze else h.shape[0]
    c.classes, c.features = w.shape
    b = None
    if linear_bias is not None:
        b = float_array(linear_bias, "linear_bias")
        if b.shape != (c.classes,):
            raise ValueError(f"linear_bias has shape {b.shape}, expected ({c.classes},): one per row of "
                             f"linear_weight of shape {w.shape}")
    if not isinstance(target, np.ndarray):
        if isinstance(target, (numbers.Integral, np.integer)) and not isinstance(target, (bool, np.bool_)):
            target = np.asarray(target)
        else:
            raise TypeError(f"target must be a numpy.ndarray, got {type(target).__name__}")
    if ignore_index is None:
        ignore_index = -100
    if isinstance(ignore_index, (bool, np.bool_)) or not isinstance(ignore_index, (numbers.Integral, np.integer)):
        raise TypeError(f"ignore_index must be an int or None, got {type(ignore_index).__name__}")
    c.ignore_index = int(ignore_index)
    if not -(2**63) <= c.ignore_index < 2**63:
        raise ValueError(f"ignore_index must fit in int64, got {c.ignore_index}")
    sample_shape = () if c.squeeze else (c.rows,)
    logits_shape = sample_shape + (c.classes,)
    kind = target.dtype.kind
    c.target = c.probs = None
    if kind in "iu":
        if target.shape != sample_shape:
            raise ValueError(f"target has shape {target.shape}, expected {sample_shape} for input of shape {h.shape} "
                             "(class indices: one per row of input)")
        if target.dtype.kind == "u" and target.dtype.itemsize == 8 and target.size and int(target.max()) >= 2**63:
            raise IndexError(f"Target {int(target.max())} is out of bounds.")
        c.target = contiguous(target.reshape(c.rows), _I64)
        c.dtype = result_dtype(h, w, b)
    elif (kind == "f" and target.dtype.itemsize in (2, 4, 8)) or is_bfloat16(target.dtype):
        target = float_array(target, "target")
        if target.shape != logits_shape:
            raise ValueError(f"target has shape {target.shape} but the logits have shape {logits_shape}: "
                             "probability targets must have the logits' shape")
        if c.ignore_index >= 0:
            raise ValueError("ignore_index is not supported for floating point target (probabilities): got "
                             f"ignore_index={c.ignore_index}")
        c.dtype = result_dtype(h, w, b, target)
        c.probs = target.reshape(c.rows, c.classes)  # taken a chunk at a time (_chunk)
    else:
        raise TypeError("target must have an integer dtype (class indices) or float32, float64, float16 or "
                        f"bfloat16 (probabilities), got {target.dtype}")
    c.compute = c.dtype if c.dtype in FLOAT_DTYPES else _F32
    if weight is not None:
        weight = float_array(weight, "weight")
        if weight.shape != (c.classes,):
            raise ValueError(f"weight has shape {weight.shape}, expected ({c.classes},): one weight per class")
        weight = contiguous(weight, c.compute)
    c.weight = weight
    h = h.reshape(c.rows, c.features)
    c.h = contiguous(h, c.compute) if h.dtype == c.compute else h  # else widened a chunk at a time
    c.w = contiguous(w, c.compute)
    c.b = None if b is None else contiguous(b, c.compute)
    if chunk_size is None:
        c.chunk = default_chunk_size(c.rows, c.classes, c.features, c.compute.itemsize)
    else:
        if isinstance(chunk_size, (bool, np.bool_)) or not isinstance(chunk_size, (numbers.Integral, np.integer)):
            raise TypeError(f"chunk_size must be a positive int or None, got {type(chunk_size).__name__}")
        if chunk_size < 1:
            raise ValueError(f"chunk_size must be a positive int or None, got {chunk_size}")
        c.chunk = int(min(chunk_size, max(c.rows, 1)))
    return c


def _check_targets(c: _Call) -> tuple[float, float]:
    """(the cross-entropy's "mean" divisor, the z part's): sum of w[y] and the number of the
    non-ignored samples (class targets), the number of samples (probabilities). Raises
    torch's IndexError for the first class index out of range."""
    if c.target is None:
        n = float(c.rows) if c.classes else 0.0
        return n, n
    y = c.target
    valid = y != c.ignore_index
    bad = valid & ((y < 0) | (y >= c.classes))
    if bad.any():
        raise IndexError(f"Target {int(y[int(np.argmax(bad))])} is out of bounds.")
    count = float(np.count_nonzero(valid))
    if c.weight is None:
        return count, count
    return float(np.sum(c.weight[y[valid]], dtype=np.float64)), count


def _touched(a: np.ndarray) -> np.ndarray:
    """`a` (fresh from np.empty) with one element of each 4 KiB page written, so its pages are
    mapped now rather than by the first product that writes them, seconds later. Memory the
    caller has just freed (the previous call's gradients) is then reused at once; on a virtual
    machine that hands idle free memory back to its host (free page reporting), each page
    touched seconds after the free costs a host fault instead: 0.7-0.8 s more for a 525 MB
    grad_linear_weight first written 5 s in (0.1 s touched at once; measured, 2-core Zen 3 VM).
    Elsewhere this only moves the page faults, writing one element in 1024."""
    flat = a.reshape(-1)
    flat[:: max(1, 4096 // a.itemsize)] = 0
    return a


def _chunk(a: np.ndarray, i0: int, i1: int, dtype: np.dtype) -> np.ndarray:
    """Rows [i0, i1) of `a` as C-contiguous `dtype` (a view when they already are; a widened
    copy of just these rows otherwise)."""
    return contiguous(a[i0:i1], dtype)


def _logits(c: _Call, h: np.ndarray, buf: np.ndarray) -> np.ndarray:
    """The chunk's logits h @ W.T (+ b) in buf; h: the chunk's hidden states (compute dtype)."""
    out = buf[: h.shape[0]]
    with np.errstate(invalid="ignore", over="ignore"):  # NaN / inf in, NaN / inf out (as cross_entropy)
        np.matmul(h, c.w.T, out=out)
    if c.b is not None:
        out += c.b
    return out


def _kernel(c: _Call, op: int, reduction: str, logits: np.ndarray, i0: int, i1: int, grad_value: float,
            z_loss: float, out: np.ndarray | None) -> tuple[float, float, np.ndarray | None, float, float]:
    """Our cross-entropy on one chunk's logits: (loss_sum, divisor, losses, z_sum, z_divisor)."""
    total, divisor, bad, losses, _, z_total, z_divisor = _core.cross_entropy_heads(
        op, REDUCTION_CODES[reduction], logits, None if c.target is None else c.target[i0:i1],
        None if c.probs is None else _chunk(c.probs, i0, i1, c.compute), c.weight, i1 - i0, c.classes, 1, c.ignore_index,
        c.label_smoothing, None, grad_value, out, z_loss, c.softcap)
    if bad >= 0:
        assert c.target is not None
        raise IndexError(f"Target {int(c.target[i0 + bad])} is out of bounds.")
    return total, divisor, losses, z_total, z_divisor


def _scalar(value: float, dtype: np.dtype) -> Any:
    """A float64 value as a NumPy scalar of `dtype`, rounded once (inf beyond float16's range)."""
    return reduce_loss(value, 1.0, "sum", dtype)


def _mean(total: float, divisor: float) -> float:
    return float(reduce_loss(total, divisor, "mean", _F64))


def linear_cross_entropy(input: np.ndarray, linear_weight: np.ndarray, target: np.ndarray, *,
                         linear_bias: np.ndarray | None = None, weight: np.ndarray | None = None,
                         reduction: str = "mean", ignore_index: int | None = None, label_smoothing: float = 0.0,
                         z_loss: float = 0.0, softcap: float | None = None, chunk_size: int | None = None) -> Any:
    """cross_entropy(input @ linear_weight.T + linear_bias, target, ...) (torch 2.13's
    F.linear_cross_entropy) with no more than `chunk_size` rows of logits at a time."""
    c = _prepare(input, linear_weight, target, linear_bias, weight, reduction, ignore_index, label_smoothing, z_loss,
                 softcap, chunk_size)
    n = c.rows
    buf = _touched(np.empty((min(c.chunk, n), c.classes), c.compute))
    kred = "none" if c.reduction == "none" else "sum"
    losses = np.empty(n, c.dtype) if c.reduction == "none" else None
    total = divisor = z_total = z_divisor = 0.0
    for i0 in range(0, n, c.chunk):
        i1 = min(n, i0 + c.chunk)
        logits = _logits(c, _chunk(c.h, i0, i1, c.compute), buf)
        t, d, part, zt, zd = _kernel(c, OP_LOSS, kred, logits, i0, i1, 1.0, c.z_loss, None)
        total, divisor, z_total, z_divisor = total + t, divisor + d, z_total + zt, z_divisor + zd
        if losses is not None:
            assert part is not None
            with np.errstate(over="ignore"):  # a float16 loss beyond 65504 is inf
                losses[i0:i1] = part
    if losses is not None:
        return losses.reshape(()) if c.squeeze else losses
    if c.reduction == "sum":
        return _scalar(total + z_total, c.dtype)
    value = _mean(total, divisor)
    if c.z_loss:
        value += _mean(z_total, z_divisor)
    return _scalar(value, c.dtype)


def linear_cross_entropy_value_and_grad(
        input: np.ndarray, linear_weight: np.ndarray, target: np.ndarray, *, linear_bias: np.ndarray | None = None,
        weight: np.ndarray | None = None, reduction: str = "mean", ignore_index: int | None = None,
        label_smoothing: float = 0.0, z_loss: float = 0.0, softcap: float | None = None,
        chunk_size: int | None = None) -> tuple[Any, np.ndarray, np.ndarray, np.ndarray | None]:
    """(loss, grad_input, grad_linear_weight, grad_linear_bias) of linear_cross_entropy (the last
    None without a bias), in one pass over each chunk's logits; for reduction="none" the
    gradients are those of the losses' sum."""
    c = _prepare(input, linear_weight, target, linear_bias, weight, reduction, ignore_index, label_smoothing, z_loss,
                 softcap, chunk_size)
    n, V, D = c.rows, c.classes, c.features
    divisor, count = _check_targets(c)
    cd = c.compute
    low = cd != c.dtype  # float16 / bfloat16 results: float32 accumulators, rounded once
    grad_h = _touched(np.empty((n, D), c.dtype))
    grad_h_chunk = np.empty((min(c.chunk, n), D), cd) if low else None
    grad_w = np.zeros((V, D), cd) if n == 0 else _touched(np.empty((V, D), cd))
    grad_b = None if c.b is None else np.zeros(V, cd)
    if c.reduction == "mean":
        # Each chunk's gradient comes out final: the cross-entropy part scaled by 1/divisor, the
        # z part by 1/count (z_loss * divisor / count, scaled by 1/divisor with the rest).
        grad_value = 1.0 / divisor if divisor else math.inf
        z_eff = c.z_loss * (divisor / count) if count and divisor else (c.z_loss if divisor else 0.0)
    else:
        grad_value, z_eff = 1.0, c.z_loss
    kred = "none" if c.reduction == "none" else "sum"
    losses = np.empty(n, c.dtype) if c.reduction == "none" else None
    buf = _touched(np.empty((min(c.chunk, n), V), cd))
    vb = max(1, min(V, _GRAD_WEIGHT_BLOCK_BYTES // max(1, D * cd.itemsize)))
    block = np.empty((vb, D), cd) if n > c.chunk else None
    total = z_total = 0.0
    for i0 in range(0, n, c.chunk):
        i1 = min(n, i0 + c.chunk)
        h = _chunk(c.h, i0, i1, cd)
        g = _logits(c, h, buf)
        t, _, part, zt, _ = _kernel(c, OP_LOSS_AND_GRAD, kred, g, i0, i1, grad_value, z_eff, g)  # g: dloss/dlogits
        total, z_total = total + t, z_total + zt
        if losses is not None:
            assert part is not None
            with np.errstate(over="ignore"):  # a float16 loss beyond 65504 is inf
                losses[i0:i1] = part
        with np.errstate(invalid="ignore", over="ignore"):
            if grad_h_chunk is None:
                np.matmul(g, c.w, out=grad_h[i0:i1])
            else:
                np.matmul(g, c.w, out=grad_h_chunk[: i1 - i0])
                grad_h[i0:i1] = grad_h_chunk[: i1 - i0]  # rounded once into the 16-bit rows
            if i0 == 0:
                np.matmul(g.T, h, out=grad_w)
            else:
                assert block is not None
                for v0 in range(0, V, vb):
                    v1 = min(V, v0 + vb)
                    part_w = block[: v1 - v0]
                    np.matmul(g[:, v0:v1].T, h, out=part_w)
                    np.add(grad_w[v0:v1], part_w, out=grad_w[v0:v1])
            if grad_b is not None:
                grad_b += g.sum(axis=0)
    if losses is not None:
        loss: Any = losses.reshape(()) if c.squeeze else losses
    elif c.reduction == "sum":
        loss = _scalar(total + z_total, c.dtype)
    else:
        loss = _scalar(_mean(total + z_total, divisor), c.dtype)
    if c.squeeze:
        grad_h = grad_h.reshape(D)
    if low:
        with np.errstate(over="ignore"):  # beyond float16's range: inf, correctly rounded
            grad_w = grad_w.astype(c.dtype)
            grad_b = None if grad_b is None else grad_b.astype(c.dtype)
    return loss, grad_h, grad_w, grad_b
