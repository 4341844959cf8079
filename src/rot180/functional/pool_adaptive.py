"""Adaptive and global average pooling (1, 2 or 3 spatial dimensions) and their backward rules.

Part of :mod:`rot180.functional.pool` (which re-exports every function here); see there for the
axis conventions.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from . import _fused
from . import _validation as V
from ._clipped import finite, quiet
from ._poolspec import ND_EXPECTED, check_extent, spatial_dims

__all__ = ["adaptive_avg_pool", "adaptive_avg_pool_grad", "global_avg_pool",
           "global_avg_pool_grad"]


# -- adaptive average pooling --------------------------------------------------------------------
# Output cell q of an adaptive pool of size o over i cells averages the cells
# [floor(q i / o), ceil((q + 1) i / o)), as PyTorch. The pool is separable: one (o, i) averaging
# matrix A per axis, y = A x along that axis, and its backward is the transpose, dx = A^T dy.

def _adaptive_matrix(i: int, o: int, dtype: np.dtype) -> np.ndarray:
    q = np.arange(o)
    lo, hi = (q * i) // o, -((-(q + 1) * i) // o)
    m = np.arange(i)
    inside = (m >= lo[:, None]) & (m < hi[:, None])
    return (inside / (hi - lo)[:, None]).astype(dtype)


def _windows(i: int, o: int) -> list[tuple[int, int]]:
    """PyTorch's adaptive windows: output ``q`` averages ``[floor(q i / o), ceil((q+1) i / o))``."""
    return [((q * i) // o, -((-(q + 1) * i) // o)) for q in range(o)]


def _pool_axis(y: np.ndarray, ax: int, i: int, o: int) -> np.ndarray:
    """Average the windows of axis ``ax`` (of size ``i``) into ``o`` outputs. Finite data: one
    product with the averaging matrix; otherwise window by window, so that an inf or NaN
    reaches only the windows that hold it (a product would give ``0 * inf = nan`` elsewhere)."""
    if finite(y):
        a = _adaptive_matrix(i, o, y.dtype)
        return np.swapaxes(np.swapaxes(y, ax, -1) @ a.T, ax, -1)
    src = np.moveaxis(y, ax, -1)
    out = np.empty((*src.shape[:-1], o), y.dtype)
    for q, (lo, hi) in enumerate(_windows(i, o)):
        out[..., q] = src[..., lo:hi].mean(axis=-1)
    return np.moveaxis(out, -1, ax)


def _spread_axis(dy: np.ndarray, ax: int, i: int, o: int) -> np.ndarray:
    """The adjoint of :func:`_pool_axis`: each output's delta spread over its window, divided
    by the window's size (window by window where ``dy`` is not finite)."""
    if finite(dy):
        a = _adaptive_matrix(i, o, dy.dtype)
        return np.swapaxes(np.swapaxes(dy, ax, -1) @ a, ax, -1)
    src = np.moveaxis(dy, ax, -1)
    out = np.zeros((*src.shape[:-1], i), dy.dtype)
    for q, (lo, hi) in enumerate(_windows(i, o)):
        out[..., lo:hi] += src[..., q:q + 1] / (hi - lo)
    return np.moveaxis(out, -1, ax)


def _adaptive_sizes(spatial: tuple[int, ...], output_size: object, op: str) -> tuple[int, ...]:
    nd = len(spatial)
    if isinstance(output_size, Sequence) and not isinstance(output_size, str):
        if len(output_size) != nd:
            raise ValueError(
                f"{op}: output_size must have one entry per spatial dimension ({nd}), got "
                f"{tuple(output_size)!r}."
            )
        # None keeps that dimension's input size, as PyTorch.
        sizes = tuple(i if o is None else o for i, o in zip(spatial, output_size, strict=True))
    else:
        sizes = (output_size,) * nd  # type: ignore[assignment]
    return V.positive_tuple(sizes, nd, "output_size")


@quiet
def adaptive_avg_pool(x: np.ndarray, output_size: int | Sequence[int | None]) -> np.ndarray:
    """Adaptive average pooling to a fixed output size, as ``torch.nn.AdaptiveAvgPool{1,2,3}d``.

    Output cell ``q`` averages input cells ``floor(q i / o) <= m < ceil((q+1) i / o)`` of each
    axis. An int ``output_size`` pools every axis after ``(N, C)``; a tuple the last
    ``len(output_size)`` axes (``None`` entries keep the input size).

    Shape:
        - x: ``(*lead, *i)``; output: ``(*lead, *o)``
    """
    op = "adaptive_avg_pool"
    x = V.float_array(x, "x")
    nd = spatial_dims(output_size, x.ndim, op)
    if x.ndim < nd + 1:
        raise ValueError(
            f"{op}: expected an input (*lead, *spatial) with {nd} spatial axes, got shape "
            f"{x.shape}."
        )
    check_extent(x.shape, nd, op)
    out = _adaptive_sizes(x.shape[-nd:], output_size, op)
    if all(o == 1 for o in out):
        return global_avg_pool(x, nd=nd)
    y = x
    for ax, (i, o) in enumerate(zip(x.shape[-nd:], out, strict=True)):
        if o != i:
            y = _pool_axis(y, ax - nd, i, o)
    return np.ascontiguousarray(y) if y is not x else x.copy()


@quiet
def adaptive_avg_pool_grad(dy: np.ndarray, input_shape: Sequence[int]) -> np.ndarray:
    """Input gradient of :func:`adaptive_avg_pool`: ``dx = A^T dy`` along every pooled axis.

    No spatial-axis count is needed: an axis whose size did not change was pooled by the
    identity (or not at all), so only axes where ``dy`` and ``input_shape`` differ are expanded.

    Shape:
        - dy: ``(*lead, *o)``; output: ``input_shape = (*lead, *i)``
    """
    op = "adaptive_avg_pool_grad"
    dy = V.float_array(dy, "dy")
    shape = V.shape_arg(input_shape, "input_shape", op, empty_batch=True)
    if dy.ndim != len(shape) or 0 in dy.shape[1:] or (dy.shape[0] == 0) != (shape[0] == 0):
        raise ValueError(
            f"{op}: dy {dy.shape} must have as many axes as input_shape {shape} (the forward "
            "input's shape) and no zero-size axis but an empty batch. Pass the gradient of the "
            "pooled output."
        )
    pooled = [ax for ax in range(dy.ndim) if dy.shape[ax] != shape[ax]]
    if pooled and all(n == 1 for n in dy.shape[pooled[0]:]):
        return global_avg_pool_grad(dy, shape)      # a global pool: one fill pass
    dx = dy
    for ax in range(dy.ndim):
        i, o = shape[ax], dy.shape[ax]
        if o != i:
            dx = _spread_axis(dx, ax, i, o)
    return np.ascontiguousarray(dx) if dx is not dy else dy.copy()


@quiet
def global_avg_pool(x: np.ndarray, *, nd: int | None = None) -> np.ndarray:
    """Mean over the spatial axes, keeping them as size 1 (``AdaptiveAvgPool{nd}d(1)``).

    ``nd`` spatial axes are pooled: by default every axis after ``(N, C)``.

    Shape:
        - x: ``(*lead, *i)``; output: ``(*lead, 1, ..., 1)``
    """
    x = V.float_array(x, "x")
    if nd is None:
        nd = x.ndim - 2
    else:
        nd = V.integer(nd, "nd", "global_avg_pool", low=None, expected=ND_EXPECTED)
    if not 1 <= nd < x.ndim or any(n < 1 for n in x.shape[1:]) or (
            x.shape[0] < 1 and x.ndim < nd + 2):
        raise ValueError(
            f"global_avg_pool: expected x (N, C, *spatial) with at least one spatial axis and "
            f"no zero-size axis but the batch axis N, got shape {x.shape} (nd={nd}). Pass nd= "
            "for an unbatched input."
        )
    if x.size and _fused.helper_on():
        return _fused.plane_mean(x, nd)     # float64 sums, one pass, threaded
    return x.mean(axis=tuple(range(x.ndim - nd, x.ndim)), keepdims=True)


@quiet
def global_avg_pool_grad(dy: np.ndarray, input_shape: Sequence[int]) -> np.ndarray:
    """Input gradient of :func:`global_avg_pool`: ``dy / (number of pooled cells)`` everywhere.

    Shape:
        - dy: ``(*lead, 1, ..., 1)``; output: ``input_shape = (*lead, *i)``
    """
    op = "global_avg_pool_grad"
    dy = V.float_array(dy, "dy")
    shape = V.shape_arg(input_shape, "input_shape", op, empty_batch=True)
    if dy.ndim != len(shape) or any(d not in (1, n) for d, n in zip(dy.shape, shape,
                                                                    strict=True)):
        raise ValueError(
            f"{op}: dy {dy.shape} does not broadcast to input_shape {shape}; expected the "
            "input's shape with the pooled axes set to 1."
        )
    count = int(np.prod([n for d, n in zip(dy.shape, shape, strict=True) if d == 1]))
    pooled = [ax for ax in range(dy.ndim) if dy.shape[ax] != shape[ax]]
    if (pooled and 0 not in shape and all(n == 1 for n in dy.shape[pooled[0]:])
            and _fused.helper_on()):
        nd = dy.ndim - pooled[0]
        return _fused.plane_fill(dy, shape, nd)   # dy * (1 / count) in float64, one pass
    return np.broadcast_to(dy / count, shape).copy()
