"""``Flatten``: merge a range of axes into one; backward restores the shape."""

from __future__ import annotations

import numpy as np

from ..functional import _validation as C
from .module import Module

__all__ = ["Flatten"]


class Flatten(Module):
    """Flatten axes ``start_dim`` to ``end_dim`` (inclusive; negative counts from the end) into
    one, as ``torch.nn.Flatten``. A reshape moves no value, so ``dx`` is ``dy`` reshaped back.

    Shape:
        - input: ``(*a, n_start, ..., n_end, *b)``; output: ``(*a, n_start * ... * n_end, *b)``
    """

    def __init__(self, start_dim: int = 1, end_dim: int = -1) -> None:
        super().__init__()
        self.start_dim = C.integer(start_dim, "start_dim", "Flatten", low=None)
        self.end_dim = C.integer(end_dim, "end_dim", "Flatten", low=None)
        self._shapes: tuple | None = None  # input shape, output shape, dtype

    def forward(self, x: np.ndarray) -> np.ndarray:
        x = C.as_array(x, "x", "Flatten")
        nd = max(x.ndim, 1)  # a 0-d input flattens to shape (1,), as torch
        start = self.start_dim + nd if self.start_dim < 0 else self.start_dim
        end = self.end_dim + nd if self.end_dim < 0 else self.end_dim
        if not (0 <= start < nd and 0 <= end < nd) or start > end:
            raise ValueError(
                f"Flatten: start_dim={self.start_dim} and end_dim={self.end_dim} must be valid "
                f"axes of the {x.ndim}-D input (shape {x.shape}) with start_dim <= end_dim."
            )
        shape = x.shape if x.ndim else (1,)
        y = x.reshape(shape[:start] + (int(np.prod(shape[start:end + 1])),) + shape[end + 1:])
        self._shapes = (x.shape, y.shape, y.dtype)
        return y

    def backward(self, dy: np.ndarray) -> np.ndarray:
        # dy's own shape is checked, not just its size: a reshape would silently accept a dy
        # with the right number of elements in the wrong layout.
        shape_in, shape_out, dtype = C.cached(self._shapes, "Flatten")  # type: ignore[misc]
        return C.check_grad(dy, "Flatten", shape_out, dtype).reshape(shape_in)

    def extra_repr(self) -> str:
        return f"start_dim={self.start_dim}, end_dim={self.end_dim}"
