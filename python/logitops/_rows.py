"""Moving the reduced axes of an array last, so the kernels only ever see (rows, cols)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ._checks import contiguous


@dataclass(frozen=True)
class RowLayout:
    shape: tuple[int, ...]  # the input's shape (a 0-d input counts as (1,))
    axes: tuple[int, ...]  # reduced axes, sorted
    perm: tuple[int, ...]  # kept axes, then reduced axes
    rows: int
    cols: int

    @staticmethod
    def of(shape: tuple[int, ...], axes: tuple[int, ...]) -> "RowLayout":
        shape = shape if shape else (1,)
        kept = tuple(i for i in range(len(shape)) if i not in axes)
        cols = int(np.prod([shape[i] for i in axes], dtype=np.int64))
        rows = int(np.prod([shape[i] for i in kept], dtype=np.int64))
        return RowLayout(shape, axes, kept + axes, rows, cols)

    @property
    def identity(self) -> bool:
        return self.perm == tuple(range(len(self.shape)))

    def to_rows(self, a: np.ndarray, dtype: np.dtype) -> np.ndarray:
        """a (of this layout's shape) as a C-contiguous (rows, cols) array: a view when it can be."""
        a = a.reshape(self.shape)
        if not self.identity:
            a = a.transpose(self.perm)
        return contiguous(a, dtype).reshape(self.rows, self.cols)

    def from_rows(self, out: np.ndarray, orig_ndim: int) -> np.ndarray:
        """Undo to_rows on a (rows, cols) result."""
        permuted_shape = tuple(self.shape[i] for i in self.perm)
        out = out.reshape(permuted_shape)
        if not self.identity:
            out = out.transpose(np.argsort(self.perm))
        return out.reshape(()) if orig_ndim == 0 else out

    def reduced_shape(self, keepdims: bool, orig_ndim: int) -> tuple[int, ...]:
        if orig_ndim == 0:
            return ()
        if keepdims:
            return tuple(1 if i in self.axes else n for i, n in enumerate(self.shape))
        return tuple(n for i, n in enumerate(self.shape) if i not in self.axes)
