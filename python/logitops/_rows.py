"""Moving the reduced axes of an array last, so the kernels only ever see (rows, cols)."""

from __future__ import annotations

from math import prod

import numpy as np

from ._checks import contiguous


class RowLayout:
    """How an array of `shape` maps onto (rows, cols) when `axes` (sorted) are reduced."""

    __slots__ = ("shape", "axes", "perm", "rows", "cols", "identity")

    def __init__(self, shape: tuple[int, ...], axes: tuple[int, ...]) -> None:
        shape = shape if shape else (1,)  # a 0-d input counts as (1,)
        nd = len(shape)
        self.shape = shape
        self.axes = axes
        # The common case, one trailing axis, skips the general bookkeeping.
        if axes == (nd - 1,):
            self.perm = tuple(range(nd))
            self.cols = shape[-1]
            self.rows = prod(shape[:-1])
        else:
            kept = tuple(i for i in range(nd) if i not in axes)
            self.perm = kept + axes
            self.cols = prod(shape[i] for i in axes)
            self.rows = prod(shape[i] for i in kept)
        self.identity = self.perm == tuple(range(nd))

    def to_rows(self, a: np.ndarray, dtype: np.dtype) -> np.ndarray:
        """a (of this layout's shape) as a C-contiguous (rows, cols) array: a view when it can be."""
        if a.shape != self.shape:
            a = a.reshape(self.shape)
        if not self.identity:
            a = a.transpose(self.perm)
        return contiguous(a, dtype).reshape(self.rows, self.cols)

    def from_rows(self, out: np.ndarray, orig_ndim: int) -> np.ndarray:
        """Undo to_rows on a (rows, cols) result."""
        if orig_ndim == 0:
            return out.reshape(())
        if self.identity:
            return out.reshape(self.shape)
        out = out.reshape(tuple(self.shape[i] for i in self.perm))
        return out.transpose(np.argsort(self.perm))

    def reduced_shape(self, keepdims: bool, orig_ndim: int) -> tuple[int, ...]:
        if orig_ndim == 0:
            return ()
        if keepdims:
            return tuple(1 if i in self.axes else n for i, n in enumerate(self.shape))
        return tuple(n for i, n in enumerate(self.shape) if i not in self.axes)
