r"""PyTorch's dimension-named pooling: ``max_pool{1,2,3}d``, ``avg_pool{1,2,3}d`` and their grads.

The generic :func:`~rot180.functional.pool.max_pool` and :func:`~rot180.functional.pool.avg_pool`
cannot tell from an int ``kernel_size`` whether a 3-D array is a batched 1-D input ``(N, C, L)``
or an unbatched 2-D one ``(C, H, W)``; they read it as batched. The functions here carry the
number of spatial dimensions ``nd`` in their name and read the input as
``torch.nn.functional.max_pool{nd}d`` does:

* ``nd + 1`` axes: unbatched ``(C, *spatial)``; ``nd + 2`` axes: batched ``(N, C, *spatial)``,
  where ``N`` may be 0 (an empty result of the right shape); any other rank is refused;
* an int or a one-entry tuple (``padding=(1,)``) is broadcast to every spatial dimension.

Each is the generic function called with ``nd=``: the rules (the max routes each delta to the
remembered argmax, the mean spreads ``delta / divisor`` over the window) and their derivation are
in :mod:`rot180.functional.pool`. Unlike PyTorch, the max-pooling forward always returns
``(output, argmax)`` (PyTorch's ``return_indices=True``), the backward of each is a function
named ``*_grad`` that takes the forward input's shape, and ``ceil_mode``, ``count_include_pad``
and ``divisor_override`` are keyword-only. ``avg_pool1d`` takes ``divisor_override`` too
(PyTorch's does not), and ``avg_pool3d`` accepts an input smaller than the kernel when padding
or ``ceil_mode`` covers it (PyTorch's refuses that; its 1-D and 2-D versions accept it).

Shape (``nd`` spatial dimensions; ``e = d(k - 1) + 1``, ``d = 1`` for average pooling):
    - input: ``(C, *i)`` or ``(N, C, *i)``
    - output: ``(C, *o)`` or ``(N, C, *o)``, ``o = floor((i + 2p - e) / s) + 1``, or with
      ``ceil_mode`` rounded up, less the last window if it starts in the high padding

>>> import numpy as np
>>> max_pool2d(np.zeros((2, 3, 6)), 3)[0].shape      # unbatched (C, H, W), as PyTorch
(2, 1, 2)
>>> max_pool1d(np.zeros((2, 3, 6)), 3)[0].shape      # batched (N, C, L)
(2, 3, 2)
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from . import _validation as V
from .pool import Size, avg_pool, avg_pool_grad, max_pool, max_pool_grad

__all__ = [
    "max_pool1d", "max_pool2d", "max_pool3d",
    "max_pool1d_grad", "max_pool2d_grad", "max_pool3d_grad",
    "avg_pool1d", "avg_pool2d", "avg_pool3d",
    "avg_pool1d_grad", "avg_pool2d_grad", "avg_pool3d_grad",
]

_AXES = {1: "L", 2: "H, W", 3: "D, H, W"}


def _rank(ndim: int, shape: tuple[int, ...], nd: int, op: str, what: str) -> None:
    """Refuse a rank other than unbatched ``(C, *spatial)`` or batched ``(N, C, *spatial)``."""
    if ndim not in (nd + 1, nd + 2):
        raise ValueError(
            f"{op}: expected {what} of {nd + 1} dimensions (C, {_AXES[nd]}) or {nd + 2} "
            f"(N, C, {_AXES[nd]}), got {ndim}-D shape {shape}. Pass one unbatched input or a "
            "batch of them, or the function named for the input's spatial rank."
        )


def _input(x: object, nd: int, op: str) -> np.ndarray:
    x = V.float_array(x, "x")
    _rank(x.ndim, x.shape, nd, op, "an input")
    return x


def _shape(input_shape: object, nd: int, op: str) -> Sequence[int]:
    if isinstance(input_shape, Sequence) and not isinstance(input_shape, str | bytes):
        _rank(len(input_shape), tuple(input_shape), nd, op, "input_shape")
    return input_shape  # type: ignore[return-value]  # the generic function checks the rest


def _max(nd: int, x: np.ndarray, kernel_size: Size, stride: Size | None, padding: Size,
         dilation: Size, ceil_mode: bool) -> tuple[np.ndarray, np.ndarray]:
    return max_pool(_input(x, nd, f"max_pool{nd}d"), kernel_size, stride, padding, dilation,
                    ceil_mode=ceil_mode, nd=nd)


def _max_grad(nd: int, dy: np.ndarray, argmax: np.ndarray, input_shape: Sequence[int],
              kernel_size: Size | None, stride: Size | None, padding: Size, dilation: Size,
              ceil_mode: bool) -> np.ndarray:
    shape = _shape(input_shape, nd, f"max_pool{nd}d_grad")
    return max_pool_grad(dy, argmax, shape, kernel_size, stride, padding, dilation,
                         ceil_mode=ceil_mode, nd=nd)


def _avg(nd: int, x: np.ndarray, kernel_size: Size, stride: Size | None, padding: Size,
         **kw: object) -> np.ndarray:
    return avg_pool(_input(x, nd, f"avg_pool{nd}d"), kernel_size, stride, padding, nd=nd,
                    **kw)  # type: ignore[arg-type]


def _avg_grad(nd: int, dy: np.ndarray, input_shape: Sequence[int], kernel_size: Size,
              stride: Size | None, padding: Size, **kw: object) -> np.ndarray:
    shape = _shape(input_shape, nd, f"avg_pool{nd}d_grad")
    return avg_pool_grad(dy, shape, kernel_size, stride, padding, nd=nd,
                         **kw)  # type: ignore[arg-type]


def max_pool1d(x: np.ndarray, kernel_size: Size, stride: Size | None = None, padding: Size = 0,
               dilation: Size = 1, *, ceil_mode: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """``torch.nn.functional.max_pool1d(..., return_indices=True)``: x ``(C, L)`` or
    ``(N, C, L)``; returns the output and the argmax (flat index within each input plane)."""
    return _max(1, x, kernel_size, stride, padding, dilation, ceil_mode)


def max_pool2d(x: np.ndarray, kernel_size: Size, stride: Size | None = None, padding: Size = 0,
               dilation: Size = 1, *, ceil_mode: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """``torch.nn.functional.max_pool2d(..., return_indices=True)``: x ``(C, H, W)`` or
    ``(N, C, H, W)``; returns the output and the argmax (flat index within each input plane)."""
    return _max(2, x, kernel_size, stride, padding, dilation, ceil_mode)


def max_pool3d(x: np.ndarray, kernel_size: Size, stride: Size | None = None, padding: Size = 0,
               dilation: Size = 1, *, ceil_mode: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """``torch.nn.functional.max_pool3d(..., return_indices=True)``: x ``(C, D, H, W)`` or
    ``(N, C, D, H, W)``; returns the output and the argmax (flat index within each plane)."""
    return _max(3, x, kernel_size, stride, padding, dilation, ceil_mode)


def max_pool1d_grad(dy: np.ndarray, argmax: np.ndarray, input_shape: Sequence[int],
                    kernel_size: Size | None = None, stride: Size | None = None,
                    padding: Size = 0, dilation: Size = 1, *, ceil_mode: bool = False
                    ) -> np.ndarray:
    """Input gradient of :func:`max_pool1d`: each delta routed to its window's argmax."""
    return _max_grad(1, dy, argmax, input_shape, kernel_size, stride, padding, dilation,
                     ceil_mode)


def max_pool2d_grad(dy: np.ndarray, argmax: np.ndarray, input_shape: Sequence[int],
                    kernel_size: Size | None = None, stride: Size | None = None,
                    padding: Size = 0, dilation: Size = 1, *, ceil_mode: bool = False
                    ) -> np.ndarray:
    """Input gradient of :func:`max_pool2d`: each delta routed to its window's argmax."""
    return _max_grad(2, dy, argmax, input_shape, kernel_size, stride, padding, dilation,
                     ceil_mode)


def max_pool3d_grad(dy: np.ndarray, argmax: np.ndarray, input_shape: Sequence[int],
                    kernel_size: Size | None = None, stride: Size | None = None,
                    padding: Size = 0, dilation: Size = 1, *, ceil_mode: bool = False
                    ) -> np.ndarray:
    """Input gradient of :func:`max_pool3d`: each delta routed to its window's argmax."""
    return _max_grad(3, dy, argmax, input_shape, kernel_size, stride, padding, dilation,
                     ceil_mode)


def avg_pool1d(x: np.ndarray, kernel_size: Size, stride: Size | None = None, padding: Size = 0,
               *, ceil_mode: bool = False, count_include_pad: bool = True,
               divisor_override: int | None = None) -> np.ndarray:
    """``torch.nn.functional.avg_pool1d``: x ``(C, L)`` or ``(N, C, L)``."""
    return _avg(1, x, kernel_size, stride, padding, ceil_mode=ceil_mode,
                count_include_pad=count_include_pad, divisor_override=divisor_override)


def avg_pool2d(x: np.ndarray, kernel_size: Size, stride: Size | None = None, padding: Size = 0,
               *, ceil_mode: bool = False, count_include_pad: bool = True,
               divisor_override: int | None = None) -> np.ndarray:
    """``torch.nn.functional.avg_pool2d``: x ``(C, H, W)`` or ``(N, C, H, W)``."""
    return _avg(2, x, kernel_size, stride, padding, ceil_mode=ceil_mode,
                count_include_pad=count_include_pad, divisor_override=divisor_override)


def avg_pool3d(x: np.ndarray, kernel_size: Size, stride: Size | None = None, padding: Size = 0,
               *, ceil_mode: bool = False, count_include_pad: bool = True,
               divisor_override: int | None = None) -> np.ndarray:
    """``torch.nn.functional.avg_pool3d``: x ``(C, D, H, W)`` or ``(N, C, D, H, W)``."""
    return _avg(3, x, kernel_size, stride, padding, ceil_mode=ceil_mode,
                count_include_pad=count_include_pad, divisor_override=divisor_override)


def avg_pool1d_grad(dy: np.ndarray, input_shape: Sequence[int], kernel_size: Size,
                    stride: Size | None = None, padding: Size = 0, *, ceil_mode: bool = False,
                    count_include_pad: bool = True, divisor_override: int | None = None
                    ) -> np.ndarray:
    """Input gradient of :func:`avg_pool1d`: ``delta / divisor`` spread over each window."""
    return _avg_grad(1, dy, input_shape, kernel_size, stride, padding, ceil_mode=ceil_mode,
                     count_include_pad=count_include_pad, divisor_override=divisor_override)


def avg_pool2d_grad(dy: np.ndarray, input_shape: Sequence[int], kernel_size: Size,
                    stride: Size | None = None, padding: Size = 0, *, ceil_mode: bool = False,
                    count_include_pad: bool = True, divisor_override: int | None = None
                    ) -> np.ndarray:
    """Input gradient of :func:`avg_pool2d`: ``delta / divisor`` spread over each window."""
    return _avg_grad(2, dy, input_shape, kernel_size, stride, padding, ceil_mode=ceil_mode,
                     count_include_pad=count_include_pad, divisor_override=divisor_override)


def avg_pool3d_grad(dy: np.ndarray, input_shape: Sequence[int], kernel_size: Size,
                    stride: Size | None = None, padding: Size = 0, *, ceil_mode: bool = False,
                    count_include_pad: bool = True, divisor_override: int | None = None
                    ) -> np.ndarray:
    """Input gradient of :func:`avg_pool3d`: ``delta / divisor`` spread over each window."""
    return _avg_grad(3, dy, input_shape, kernel_size, stride, padding, ceil_mode=ceil_mode,
                     count_include_pad=count_include_pad, divisor_override=divisor_override)
