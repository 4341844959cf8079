r"""N-d max and average pooling (1, 2 or 3 spatial dimensions) and their backward rules.

Notation (per spatial dimension)
--------------------------------
``i, k, s, p``  input size, window (kernel) size, stride, symmetric padding
``d``           dilation of a max-pooling window (1 = none): its taps lie ``d`` cells apart
``e``           the window's extent, ``e = d(k - 1) + 1`` (``e = k`` without dilation)
``o``           output size, :func:`rot180.functional.shapes.pool_output_size` of ``(i, e, s, p)``
``q, t``        output position, tap inside the window (``0 <= t < k``)

Window ``q`` covers the padded cells ``q*s + t*d``, i.e. input cells ``q*s - p + t*d``. Pooling
is a layer without weights whose output ``q`` is wired to the cells of its window only, so its
backward pass is the MLP rule again: each input cell collects the deltas of the outputs it
feeds, times the local derivative.

* Max: ``y[q] = x[m(q)]`` with ``m(q)`` the (first) argmax of the window, so
  ``dy[q]/dx[m] = [m == m(q)]`` and ``dx[m] = sum_{q : m(q) = m} dy[q]``. The sum matters when
  windows overlap (``s < e``): one cell can be the maximum of several windows. Dilation only
  changes which cells a window reads; the rule routes to the remembered argmax all the same.
* Average: ``y[q] = (1/c(q)) sum_t x[q*s - p + t]``, so ``dx[m] = sum_{q, t : q*s-p+t = m}
  dy[q] / c(q)``: every delta is spread evenly over its window. ``c(q) = k`` when padding cells
  count (``count_include_pad=True``), else the number of real input cells in the window;
  ``divisor_override`` replaces ``c(q)`` by one constant for every window.

Both forward passes (and the average backward) loop over the ``k^d`` window taps ``t``,
never over positions: for each tap, ``xp[..., t*d::s]`` (one strided view) holds that
window cell of every window at once. The max backward scatters with plain fancy indexing, one
group of mutually disjoint windows at a time (or with ``np.bincount``, which sums colliding
indices, when the window geometry is not given); never ``np.add.at``.

Conventions as PyTorch: max pooling pads with ``-inf`` and never selects a padding cell,
picks the **first** maximum in row-major window order on ties (and the last NaN, since NaN
propagates), and returns flat indices into each input plane; padding must be at most half the
kernel size ``k`` (not the dilated extent). The output size is PyTorch's, dilation and
``ceil_mode`` included; in ``ceil_mode`` a last window may reach past the padded input, which
PyTorch allows as long as it starts inside the input or the low padding. A zero-size batch
(``N = 0``) gives an empty result of the right shape, as PyTorch; every other axis must be
non-empty.

Which axes are pooled
---------------------
The generic functions (:func:`max_pool`, :func:`avg_pool` and their gradients) pool the last
``nd`` axes of ``(*lead, *spatial)``: ``nd=`` when given, else ``len(kernel_size)`` for a tuple,
else (an int ``kernel_size``) every axis after the first two, i.e. the input is read as
batched ``(N, C, *spatial)``. An int cannot tell a batched 1-D input ``(N, C, L)`` from an
unbatched 2-D one ``(C, H, W)``: pass ``nd=`` or a tuple for an unbatched input, or call the
dimension-named functions of :mod:`rot180.functional.pool_nd` (``max_pool2d`` ...), which read
``(C, *spatial)`` as unbatched and ``(N, C, *spatial)`` as batched exactly as
``torch.nn.functional`` does.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from . import _validation as V
from ._clipped import quiet  # inf - inf in a window is NaN, as in PyTorch, and no RuntimeWarning
from .shapes import as_tuple, pool_output_size

__all__ = [
    "max_pool",
    "max_pool_grad",
    "avg_pool",
    "avg_pool_grad",
    "adaptive_avg_pool",
    "adaptive_avg_pool_grad",
    "global_avg_pool",
    "global_avg_pool_grad",
]

Size = int | Sequence[int]


@dataclass(frozen=True)
class _PoolSpec:
    """A validated pooling configuration for one input shape."""

    nd: int
    kernel: tuple[int, ...]
    stride: tuple[int, ...]
    padding: tuple[int, ...]
    dilation: tuple[int, ...]
    spatial: tuple[int, ...]
    out: tuple[int, ...]

    @property
    def span(self) -> tuple[int, ...]:
        """Cells one window spans, ``d(k-1) + 1`` per dimension."""
        return tuple(d * (k - 1) + 1 for k, d in zip(self.kernel, self.dilation, strict=True))

    @property
    def extent(self) -> tuple[int, ...]:
        """Padded cells the windows touch: ``(o-1)s + d(k-1) + 1`` per dimension."""
        return tuple((o - 1) * s + e for o, s, e in zip(self.out, self.stride, self.span,
                                                         strict=True))

    def taps(self) -> list[tuple[int, ...]]:
        """Offset ``t*d`` of every window tap from the window's first cell, row-major."""
        return list(itertools.product(*(range(0, d * k, d) for k, d in
                                        zip(self.kernel, self.dilation, strict=True))))

    def views(self, xp: np.ndarray) -> list[np.ndarray]:
        """One strided view of ``xp`` per window tap (row-major order)."""
        return [xp[(Ellipsis, *(slice(t, t + (o - 1) * s + 1, s)
                                for t, o, s in zip(ts, self.out, self.stride, strict=True)))]
                for ts in self.taps()]

    def padded(self, x: np.ndarray, fill: float) -> np.ndarray:
        """``x`` padded by ``p`` low and up to the extent high (cropping unreached cells)."""
        ext = self.extent
        if all(p == 0 for p in self.padding) and all(
                e <= i for e, i in zip(ext, self.spatial, strict=True)):
            return x
        xp = np.full(x.shape[:-self.nd] + ext, fill, x.dtype)
        inner = tuple(min(i, e - p) for i, e, p in zip(self.spatial, ext, self.padding,
                                                         strict=True))
        dst = tuple(slice(p, p + n) for p, n in zip(self.padding, inner, strict=True))
        xp[(Ellipsis, *dst)] = x[(Ellipsis, *(slice(0, n) for n in inner))]
        return xp

    def unpad(self, dxp: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
        """Inverse of :meth:`padded` for gradients: crop the padding, zero-fill unreached cells."""
        if dxp.shape == shape and not any(self.padding):
            return dxp
        dx = np.zeros(shape, dxp.dtype)
        inner = tuple(min(i, e - p) for i, e, p in zip(self.spatial, self.extent, self.padding,
                                                         strict=True))
        src = tuple(slice(p, p + n) for p, n in zip(self.padding, inner, strict=True))
        dx[(Ellipsis, *(slice(0, n) for n in inner))] = dxp[(Ellipsis, *src)]
        return dx

    def window_starts(self, ax: int) -> np.ndarray:
        """Input coordinate ``q*s - p`` of every window's first cell along spatial axis ``ax``."""
        return np.arange(self.out[ax]) * self.stride[ax] - self.padding[ax]

    def first_real(self, ax: int) -> np.ndarray:
        """Input coordinate of every window's first tap that is not padding, along ``ax``."""
        lo, d = self.window_starts(ax), self.dilation[ax]
        return lo + np.maximum(d - 1 - lo, 0) // d * d

    def along(self, ax: int, v: np.ndarray) -> np.ndarray:
        """Reshape a per-window vector of axis ``ax`` to broadcast over the spatial output."""
        return v.reshape((-1,) + (1,) * (self.nd - 1 - ax))


def _spatial_dims(kernel_size: object, ndim: int, op: str, nd: object = None) -> int:
    """``nd`` when given, else ``len(kernel_size)`` for a sequence, else every axis after
    ``(N, C)``."""
    if nd is not None:
        if isinstance(nd, bool) or not isinstance(nd, int | np.integer):
            raise TypeError(
                f"{op}: nd must be an int, the number of spatial dimensions (1, 2 or 3), got "
                f"{type(nd).__name__} {nd!r}."
            )
        nd = int(nd)
    elif isinstance(kernel_size, Sequence) and not isinstance(kernel_size, str):
        nd = len(kernel_size)
    else:
        nd = ndim - 2
    if nd not in (1, 2, 3):
        raise ValueError(
            f"{op}: expected 1, 2 or 3 spatial dimensions, got {nd} (from kernel_size="
            f"{kernel_size!r} and a {ndim}-D input). Pass x of shape (N, C, *spatial), or a "
            "kernel_size tuple with one entry per spatial dimension, or nd=."
        )
    return nd


def _check_extent(shape: tuple[int, ...], nd: int, op: str) -> None:
    """Every axis non-empty except the batch axis ``N`` of a batched ``(N, C, *spatial)``."""
    if any(n < 1 for n in shape[1:]) or (shape[0] < 1 and len(shape) < nd + 2):
        raise ValueError(
            f"{op}: input must have no zero-size axis, got shape {shape}. Only the batch axis "
            "N of an (N, C, *spatial) input may be 0 (an empty batch), as in PyTorch."
        )


def _spec(shape: tuple[int, ...], kernel_size: Size, stride: Size | None, padding: Size,
          ceil_mode: bool, op: str, *, dilation: Size = 1, nd: object = None) -> _PoolSpec:
    nd = _spatial_dims(kernel_size, len(shape), op, nd)
    if len(shape) < nd + 1:
        raise ValueError(
            f"{op}: expected an input of at least {nd + 1} dimensions (C, *spatial) for a "
            f"{nd}-D window, got {len(shape)}-D shape {shape}."
        )
    _check_extent(shape, nd, op)
    k = V.positive_tuple(kernel_size, nd, "kernel_size")
    s = k if stride is None else V.positive_tuple(stride, nd, "stride")
    d = V.positive_tuple(dilation, nd, "dilation")
    p = as_tuple(padding, nd, "padding")  # type: ignore[arg-type]
    for pj, kj in zip(p, k, strict=True):
        if pj < 0 or pj > kj // 2:
            raise ValueError(
                f"{op}: padding must be between 0 and half the kernel size, got padding={p} "
                f"for kernel_size={k}. Each window must hold at least one input cell; use "
                "padding <= kernel_size // 2."
            )
    ceil_mode = V.flag(ceil_mode, "ceil_mode", op)
    spatial = tuple(shape[-nd:])
    out = []
    for ax, (i, kj, sj, pj, dj) in enumerate(zip(spatial, k, s, p, d, strict=True)):
        span = dj * (kj - 1) + 1
        o = pool_output_size(i, span, sj, pj, bool(ceil_mode))
        if o < 1:
            what = f"kernel {kj}" if dj == 1 else f"kernel {kj} dilated by {dj} spans {span}"
            raise ValueError(
                f"{op}: the window is larger than the padded input along spatial axis {ax}: "
                f"{what} > input {i} + 2 * padding {pj}. Use a smaller kernel_size"
                f"{' or dilation' if dj > 1 else ''}, or a larger input."
            )
        out.append(o)
    sp = _PoolSpec(nd, k, s, p, d, spatial, tuple(out))
    for ax in range(nd):
        # Without dilation every window holds an input cell (p <= k // 2); with it, all the
        # taps of a window can land on padding (PyTorch then returns -inf and an index
        # outside the input plane).
        empty = np.flatnonzero(sp.first_real(ax) >= spatial[ax])
        if empty.size:
            raise ValueError(
                f"{op}: window {int(empty[0])} along spatial axis {ax} reads padding only: "
                f"kernel {k[ax]}, dilation {d[ax]} and padding {p[ax]} put all of its taps "
                f"outside the input of size {spatial[ax]}. Use less padding or dilation."
            )
    return sp


def max_pool(x: np.ndarray, kernel_size: Size, stride: Size | None = None, padding: Size = 0,
             dilation: Size = 1, *, ceil_mode: bool = False, nd: int | None = None
             ) -> tuple[np.ndarray, np.ndarray]:
    """Max pooling over the last 1, 2 or 3 axes; returns the output and the argmax indices.

    ``y[..., q] = max_t xp[..., q*s + t*d]`` with ``xp`` padded by ``-inf``. ``argmax[..., q]``
    is the flat index, within its input plane ``x[n, c]`` (unpadded, C order), of the cell
    chosen: the first maximum of the window in row-major order, as
    ``torch.nn.functional.max_pool{1,2,3}d(..., return_indices=True)``.

    Args:
        x: input, float32 or float64.
        kernel_size: window size, an int or one int per spatial dimension. An int pools every
            axis after the first two ``(N, C)``; a tuple pools the last ``len(kernel_size)``.
            See the module docstring, or use :func:`rot180.functional.max_pool2d` and its
            siblings, for unbatched inputs.
        stride: default ``kernel_size`` (non-overlapping windows); smaller values overlap.
        padding: cells of ``-inf`` on both sides, at most ``kernel_size // 2``.
        dilation: spacing of the window's taps (1 = adjacent cells), as PyTorch.
        ceil_mode: round the output size up (PyTorch's ``ceil_mode``).
        nd: number of spatial (pooled) axes, overriding the rule above; one-entry tuples are
            then broadcast to ``nd`` entries, as PyTorch.

    Shape:
        - x: ``(*lead, *i)``, usually ``(N, C, *i)``; ``N`` may be 0
        - y, argmax (int64): ``(*lead, *o)``, ``o = floor((i + 2p - d(k-1) - 1) / s) + 1``
          (see :func:`rot180.functional.shapes.pool_output_size` for ``ceil_mode``)

    >>> import numpy as np
    >>> y, idx = max_pool(np.array([[[1.0, 3.0, 3.0, 2.0]]]), 2, stride=1)
    >>> y, idx
    (array([[[3., 3., 3.]]]), array([[[1, 1, 2]]]))
    >>> max_pool(np.array([[[1.0, 3.0, 3.0, 2.0]]]), 2, stride=1, dilation=2)[1]
    array([[[2, 1]]])
    """
    x = V.float_array(x, "x")
    sp = _spec(x.shape, kernel_size, stride, padding, ceil_mode, "max_pool", dilation=dilation,
               nd=nd)
    xp = sp.padded(x, -np.inf)
    views = sp.views(xp)
    y = views[0].copy()
    for v in views[1:]:
        np.maximum(y, v, out=y)
    # Tap of the first maximum: the number of leading taps that miss it. Counting with
    # boolean arithmetic is several times faster than masked writes (np.copyto(where=...)).
    n_off = len(views)
    win = np.zeros(y.shape, np.uint8 if n_off <= 256 else np.int32)
    if n_off > 1:
        missed = views[0] != y
        win += missed
        for v in views[1:-1]:
            missed &= v != y
            win += missed
    nan = np.isnan(y)
    if nan.any():  # NaN propagates: PyTorch keeps the last NaN of the window
        for t, v in enumerate(views):
            win[nan & np.isnan(v)] = t
    # Flat index = (window start + tap offset, in input coordinates) . step, the C-order steps.
    step = np.array([int(np.prod(sp.spatial[ax + 1:])) for ax in range(sp.nd)], np.int64)
    idx = (np.array(sp.taps(), np.int64) @ step)[win]
    for ax in range(sp.nd):
        idx += sp.along(ax, sp.window_starts(ax) * step[ax])
    if xp is not x:
        # A window whose real cells are all -inf ties with its -inf padding; PyTorch then
        # reports the window's first real tap, which a padding cell must not shadow.
        lost = np.isneginf(y) & ~nan
        if lost.any():
            first = sum(sp.along(ax, sp.first_real(ax) * step[ax]) for ax in range(sp.nd))
            idx = np.where(lost, first, idx)
    return y, idx


def max_pool_grad(dy: np.ndarray, argmax: np.ndarray, input_shape: Sequence[int],
                  kernel_size: Size | None = None, stride: Size | None = None,
                  padding: Size = 0, dilation: Size = 1, *, ceil_mode: bool = False,
                  nd: int | None = None) -> np.ndarray:
    """Input gradient of :func:`max_pool`: route each delta to the argmax of its window.

    ``dx[..., m] = sum_{q : argmax[..., q] = m} dy[..., q]``: a cell that is the maximum of
    several overlapping windows receives the sum of their deltas; every other cell gets zero.

    Args:
        dy: delta of the pooled output.
        argmax: the indices returned by :func:`max_pool`.
        input_shape: the forward input's shape.
        kernel_size, stride, padding, dilation, ceil_mode: the forward pooling's arguments.
            Optional, but they make the scatter faster and are checked against the shapes:
            outputs are split into ``prod ceil(e/s)`` interleaved groups whose windows are
            disjoint, so each group scatters with plain fancy indexing (one group when
            ``s >= e``, the window's extent). Without them the deltas are summed by
            ``np.bincount`` (in float64, cast back to ``dy.dtype``) and every axis after
            ``(N, C)`` is taken as spatial (or the last ``nd``).
        nd: number of spatial axes, as in :func:`max_pool`.

    Shape:
        - dy, argmax: ``(*lead, *o)``
        - output: ``input_shape = (*lead, *i)``
    """
    op = "max_pool_grad"
    dy = V.float_array(dy, "dy")
    shape = V.shape_arg(input_shape, "input_shape", op, empty_batch=True)
    if kernel_size is None:
        nd = _spatial_dims(kernel_size, len(shape), op, nd)
        _check_extent(shape, nd, op)
        expect = dy.shape if dy.ndim == len(shape) and dy.shape[:-nd] == shape[:-nd] else None
    else:
        sp = _spec(shape, kernel_size, stride, padding, ceil_mode, op, dilation=dilation, nd=nd)
        nd, expect = sp.nd, shape[:-sp.nd] + sp.out
    if not isinstance(argmax, np.ndarray) or not np.issubdtype(argmax.dtype, np.integer):
        raise TypeError(
            f"{op}: argmax must be an integer numpy array (the indices max_pool returned), got "
            f"{getattr(argmax, 'dtype', type(argmax).__name__)}."
        )
    if dy.shape != expect or argmax.shape != dy.shape or 0 in dy.shape[-nd:]:
        raise ValueError(
            f"{op}: dy {dy.shape} and argmax {argmax.shape} must have the pooled output's shape"
            f"{'' if expect is None else ' ' + str(expect)} for input_shape {shape} (the same "
            f"leading axes, then {nd} spatial). Pass the indices max_pool returned, the forward "
            "input's shape and the same pooling arguments."
        )
    plane = int(np.prod(shape[-nd:]))
    if argmax.size and (argmax.min() < 0 or argmax.max() >= plane):
        raise ValueError(
            f"{op}: argmax entries must lie in [0, {plane}) (flat indices within one input "
            f"plane of shape {shape[-nd:]}), got range [{argmax.min()}, {argmax.max()}]."
        )
    planes = int(np.prod(shape[:-nd]))
    out = dy.shape[-nd:]
    # Indices into the whole flattened input: plane n*C + c starts at (n*C + c) * plane.
    flat = argmax.reshape(planes, *out) + (np.arange(planes, dtype=np.int64) * plane).reshape(
        (planes,) + (1,) * nd)
    if kernel_size is None:
        dx = np.bincount(flat.ravel(), weights=dy.ravel(), minlength=planes * plane)
        return dx.astype(dy.dtype, copy=False).reshape(shape)
    # Windows q and q' can share a cell only if |q_j - q'_j| < ceil(e_j / s_j) on every axis,
    # so outputs with equal q mod ceil(e/s) have disjoint windows and distinct argmax indices.
    # A buffered fancy-index `+=` is exact when indices are distinct (np.add.at is not needed).
    dx = np.zeros(planes * plane, dy.dtype)
    dyp = dy.reshape(planes, *out)
    period = tuple(-(-e // s) for e, s in zip(sp.span, sp.stride, strict=True))
    for first, r in enumerate(itertools.product(*(range(m) for m in period))):
        sel = (slice(None), *(slice(rj, None, m) for rj, m in zip(r, period, strict=True)))
        if first == 0:
            dx[flat[sel].ravel()] = dyp[sel].ravel()
        else:
            dx[flat[sel].ravel()] += dyp[sel].ravel()
    return dx.reshape(shape)


def _divisor(sp: _PoolSpec, count_include_pad: bool, divisor_override: object,
             op: str) -> np.ndarray | int:
    """Cells each window averages over, as PyTorch: ``divisor_override`` when given, else ``k``
    clipped to the padded input, or the real input cells only (``count_include_pad=False``).
    An int when every window agrees."""
    count_include_pad = V.flag(count_include_pad, "count_include_pad", op)
    if divisor_override is not None:
        return check_divisor_override(divisor_override, op)
    div: np.ndarray | int = 1
    for ax, (i, k, p) in enumerate(zip(sp.spatial, sp.kernel, sp.padding, strict=True)):
        lo = sp.window_starts(ax)
        hi = np.minimum(lo + k, i + p)
        if not count_include_pad:
            lo, hi = np.maximum(lo, 0), np.minimum(hi, i)
        n = hi - lo
        div = div * (int(n[0]) if (n == n[0]).all() else sp.along(ax, n))
    return div


def check_divisor_override(value: object, op: str) -> int:
    """PyTorch's ``divisor_override``: any non-zero int (negative ones too, as PyTorch)."""
    if isinstance(value, bool) or not isinstance(value, int | np.integer):
        raise TypeError(
            f"{op}: divisor_override must be an int or None, got {type(value).__name__} "
            f"{value!r}. Pass the number every window sum is divided by, or None for the "
            "window's size."
        )
    if value == 0:
        raise ValueError(
            f"{op}: divisor_override must not be zero, got 0. Pass a non-zero int, or None to "
            "divide by the window's size."
        )
    return int(value)


@quiet
def avg_pool(x: np.ndarray, kernel_size: Size, stride: Size | None = None, padding: Size = 0,
             *, ceil_mode: bool = False, count_include_pad: bool = True,
             divisor_override: int | None = None, nd: int | None = None) -> np.ndarray:
    """Average pooling over the last 1, 2 or 3 axes, as ``torch.nn.functional.avg_pool{1,2,3}d``.

    ``y[..., q] = (1 / c(q)) sum_t xp[..., q*s + t]`` with ``xp`` zero-padded; ``c(q) = k``
    (clipped to the padded input in ``ceil_mode``), or with ``count_include_pad=False`` the
    number of real input cells in the window, or ``divisor_override`` for every window.

    Args: as :func:`max_pool` (padding cells are zeros; no dilation, as PyTorch), plus
        ``count_include_pad`` and ``divisor_override`` (a non-zero int; PyTorch's
        ``avg_pool1d`` lacks it, its ``avg_pool2d``/``3d`` take it).

    Shape:
        - x: ``(*lead, *i)``, usually ``(N, C, *i)``; ``N`` may be 0
        - output: ``(*lead, *o)``, ``o = floor((i + 2p - k) / s) + 1``
    """
    op = "avg_pool"
    x = V.float_array(x, "x")
    sp = _spec(x.shape, kernel_size, stride, padding, ceil_mode, op, nd=nd)
    div = _divisor(sp, count_include_pad, divisor_override, op)
    views = sp.views(sp.padded(x, 0.0))
    y = views[0].copy()
    for v in views[1:]:
        y += v
    y /= np.asarray(div, x.dtype) if isinstance(div, np.ndarray) else div
    return y


@quiet
def avg_pool_grad(dy: np.ndarray, input_shape: Sequence[int], kernel_size: Size,
                  stride: Size | None = None, padding: Size = 0, *, ceil_mode: bool = False,
                  count_include_pad: bool = True, divisor_override: int | None = None,
                  nd: int | None = None) -> np.ndarray:
    """Input gradient of :func:`avg_pool`: spread ``dy[q] / c(q)`` over every cell of window q.

    ``dx[m] = sum_{q, t : q*s - p + t = m} dy[q] / c(q)``; overlapping windows add up, and
    deltas landing on padding cells are dropped. With ``divisor_override`` ``c(q)`` is that
    constant.

    Shape:
        - dy: ``(*lead, *o)``
        - output: ``input_shape = (*lead, *i)``
    """
    op = "avg_pool_grad"
    dy = V.float_array(dy, "dy")
    shape = V.shape_arg(input_shape, "input_shape", op, empty_batch=True)
    sp = _spec(shape, kernel_size, stride, padding, ceil_mode, op, nd=nd)
    expect = shape[:-sp.nd] + sp.out
    if dy.shape != expect:
        raise ValueError(
            f"{op}: dy has shape {dy.shape} but pooling input_shape {shape} gives {expect}. "
            "Pass the forward input's shape and the same pooling arguments."
        )
    div = _divisor(sp, count_include_pad, divisor_override, op)
    g = dy / (np.asarray(div, dy.dtype) if isinstance(div, np.ndarray) else div)
    dxp = np.zeros(shape[:-sp.nd] + sp.extent, dy.dtype)
    for v in sp.views(dxp):
        v += g
    return sp.unpad(dxp, shape)


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
    nd = _spatial_dims(output_size, x.ndim, op)
    if x.ndim < nd + 1:
        raise ValueError(
            f"{op}: expected an input (*lead, *spatial) with {nd} spatial axes, got shape "
            f"{x.shape}."
        )
    _check_extent(x.shape, nd, op)
    out = _adaptive_sizes(x.shape[-nd:], output_size, op)
    if all(o == 1 for o in out):
        return global_avg_pool(x, nd=nd)
    y = x
    for ax, (i, o) in enumerate(zip(x.shape[-nd:], out, strict=True)):
        if o != i:
            a = _adaptive_matrix(i, o, x.dtype)
            y = np.swapaxes(np.swapaxes(y, ax - nd, -1) @ a.T, ax - nd, -1)
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
    dx = dy
    for ax in range(dy.ndim):
        i, o = shape[ax], dy.shape[ax]
        if o != i:
            a = _adaptive_matrix(i, o, dy.dtype)
            dx = np.swapaxes(np.swapaxes(dx, ax, -1) @ a, ax, -1)
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
    elif isinstance(nd, bool) or not isinstance(nd, int | np.integer):
        raise TypeError(f"global_avg_pool: nd must be an int, got {type(nd).__name__} {nd!r}.")
    if not 1 <= nd < x.ndim or any(n < 1 for n in x.shape[1:]) or (
            x.shape[0] < 1 and x.ndim < nd + 2):
        raise ValueError(
            f"global_avg_pool: expected x (N, C, *spatial) with at least one spatial axis and "
            f"no zero-size axis but the batch axis N, got shape {x.shape} (nd={nd}). Pass nd= "
            "for an unbatched input."
        )
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
    return np.broadcast_to(dy / count, shape).copy()
