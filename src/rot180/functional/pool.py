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

Where things are
----------------
This module holds max and average pooling; adaptive and global average pooling live in
:mod:`rot180.functional.pool_adaptive` and are re-exported here. The validated configuration,
:class:`~rot180.functional._poolspec.PoolSpec`, and its checks live in
:mod:`rot180.functional._poolspec`; each public function checks its arguments and runs its
``*_spec`` twin, which pooling layers call directly with the spec they keep per input shape.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence

import numpy as np

from . import _fused
from . import _validation as V
from ._clipped import quiet  # inf - inf in a window is NaN, as in PyTorch, and no RuntimeWarning
from ._poolspec import (
    PoolSpec,
    Size,
    check_extent,
    divisor,
    pool_spec,
    spatial_dims,
)
from .pool_adaptive import (
    adaptive_avg_pool,
    adaptive_avg_pool_grad,
    global_avg_pool,
    global_avg_pool_grad,
)

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
    sp = pool_spec(x.shape, kernel_size, stride, padding, ceil_mode, "max_pool",
                   dilation=dilation, nd=nd)
    return max_pool_spec(x, sp)


def _as_2d(sp: PoolSpec) -> tuple[tuple[int, int], ...] | None:
    """The helper's 2-D settings ``(out, kernel, stride, padding, dilation)`` of a 1-D or 2-D
    spec (a 1-D pool is a 2-D one over a single row), or None."""
    if sp.nd == 2:
        return sp.out, sp.kernel, sp.stride, sp.padding, sp.dilation  # type: ignore[return-value]
    if sp.nd == 1:
        return tuple((1, v) for v in (sp.out[0], sp.kernel[0], sp.stride[0])) + (
            (0, sp.padding[0]), (1, sp.dilation[0]))
    return None


def max_pool_spec(x: np.ndarray, sp: PoolSpec) -> tuple[np.ndarray, np.ndarray]:
    """:func:`max_pool` of an input already checked against ``sp`` (a layer builds its spec once
    per input shape).

    2x2 windows of stride 2 (no padding, no dilation: VGG's and most networks' pooling) run in
    the compiled helper where it is on, one pass with selects that vectorise. Every other
    geometry takes the tap views below: the helper's general loop (PyTorch's scan of each
    window clipped to the input) measured slower than them, 6.3 against 4.2 ms for 3x3/3 and
    14 against 7.5 ms for 3x3/2 padding 1 on (64, 32, 32, 32) float32, 1 thread."""
    pairs = sp.nd == 2 and sp.kernel == sp.stride == (2, 2) and not any(sp.padding) and \
        sp.dilation == (1, 1)
    geometry = _as_2d(sp) if pairs and x.size and _fused.helper_on() else None
    if geometry is not None:
        x2 = x if sp.nd == 2 else x[..., None, :]
        try:
            y, idx = _fused.max_pool2d(x2, *geometry)
        except ValueError:      # a window of only padding cells (dilated): the views handle it
            pass
        else:
            return (y, idx) if sp.nd == 2 else (y[..., 0, :], idx[..., 0, :])
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
        nd = spatial_dims(kernel_size, len(shape), op, nd)
        check_extent(shape, nd, op)
        expect = dy.shape if dy.ndim == len(shape) and dy.shape[:-nd] == shape[:-nd] else None
    else:
        sp = pool_spec(shape, kernel_size, stride, padding, ceil_mode, op, dilation=dilation, nd=nd)
        nd, expect = sp.nd, shape[:-sp.nd] + sp.out
    argmax = V.as_array(argmax, "argmax", op,
                        convert="np.asarray(argmax, dtype=np.int64), or pass the indices "
                                "max_pool returned")
    if not np.issubdtype(argmax.dtype, np.integer):
        raise TypeError(
            f"{op}: argmax must be an integer numpy array (the indices max_pool returned), got "
            f"{argmax.dtype}."
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
    return max_pool_grad_spec(dy, argmax, shape, None if kernel_size is None else sp, nd)


def max_pool_grad_spec(dy: np.ndarray, argmax: np.ndarray, shape: tuple[int, ...],
                       sp: PoolSpec | None, nd: int) -> np.ndarray:
    """:func:`max_pool_grad` on checked arguments: ``argmax`` as :func:`max_pool_spec` returned
    it, ``shape`` the full input shape; ``sp=None`` sums with ``np.bincount`` (no window
    geometry)."""
    if sp is not None and nd <= 2 and dy.size and _fused.helper_on():
        # One pass per plane: zero it, add each delta at its argmax in output order.
        lift = (lambda a: a) if nd == 2 else (lambda a: a[..., None, :])
        dx = _fused.max_pool2d_grad(lift(dy), lift(argmax), shape if nd == 2 else
                                    shape[:-1] + (1, shape[-1]))
        return dx if nd == 2 else dx[..., 0, :]
    plane = int(np.prod(shape[-nd:]))
    planes = int(np.prod(shape[:-nd]))
    out = dy.shape[-nd:]
    # Indices into the whole flattened input: plane n*C + c starts at (n*C + c) * plane.
    flat = argmax.reshape(planes, *out) + (np.arange(planes, dtype=np.int64) * plane).reshape(
        (planes,) + (1,) * nd)
    if sp is None:
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


def _tiled(sp: PoolSpec) -> bool:
    """Whether the windows tile the input: kernel == stride, no padding, none past the input
    (cells after the last window are left out), no dilation."""
    return (sp.kernel == sp.stride and not any(sp.padding) and all(d == 1 for d in sp.dilation)
            and all(e <= i for e, i in zip(sp.extent, sp.spatial, strict=True)))


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
    sp = pool_spec(x.shape, kernel_size, stride, padding, ceil_mode, op, nd=nd)
    return avg_pool_spec(x, sp, divisor(sp, count_include_pad, divisor_override, op))


@quiet
def avg_pool_spec(x: np.ndarray, sp: PoolSpec, div: np.ndarray | int) -> np.ndarray:
    """:func:`avg_pool` of an input checked against ``sp``, with its window sizes ``div``
    (:func:`rot180.functional._poolspec.divisor`)."""
    if _tiled(sp) and x.size:
        # Separable: sum the k_j taps along one axis at a time (the first along whole rows),
        # ~2.3 passes over the input instead of one strided read per tap of the window.
        y, nl = x, x.ndim - sp.nd
        for j, (k, o) in enumerate(zip(sp.kernel, sp.out, strict=True)):
            ax = (slice(None),) * (nl + j)
            t = [y[(*ax, slice(i, i + (o - 1) * k + 1, k))] for i in range(k)]
            acc = t[0] + t[1] if k > 1 else t[0].copy()
            for v in t[2:]:
                acc += v
            y = acc
        y /= np.asarray(div, x.dtype) if isinstance(div, np.ndarray) else div
        return y
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
    sp = pool_spec(shape, kernel_size, stride, padding, ceil_mode, op, nd=nd)
    expect = shape[:-sp.nd] + sp.out
    if dy.shape != expect:
        raise ValueError(
            f"{op}: dy has shape {dy.shape} but pooling input_shape {shape} gives {expect}. "
            "Pass the forward input's shape and the same pooling arguments."
        )
    return avg_pool_grad_spec(dy, shape, sp, divisor(sp, count_include_pad, divisor_override,
                                                     op))


@quiet
def avg_pool_grad_spec(dy: np.ndarray, shape: tuple[int, ...], sp: PoolSpec,
                       div: np.ndarray | int) -> np.ndarray:
    """:func:`avg_pool_grad` on checked arguments (``dy`` of the pooled output's shape)."""
    g = dy / (np.asarray(div, dy.dtype) if isinstance(div, np.ndarray) else div)
    if _tiled(sp):
        # Windows tile the input (cells past the last window get nothing): repeat each delta
        # along the later axes, then broadcast it over the window's rows through a
        # (..., o1, k1, e2, ...) view of dx (splitting an axis never copies), long inner loops.
        lead, nl = shape[:-sp.nd], len(shape) - sp.nd
        dx = (np.empty if sp.extent == sp.spatial else np.zeros)(shape, dy.dtype)
        for j in range(1, sp.nd):
            g = np.repeat(g, sp.kernel[j], axis=nl + j)
        inner = dx[(Ellipsis, *(slice(0, e) for e in sp.extent))]
        rows = inner.reshape(lead + (sp.out[0], sp.kernel[0]) + sp.extent[1:])
        rows[...] = g.reshape(lead + (sp.out[0], 1) + sp.extent[1:])
        return dx
    dxp = np.zeros(shape[:-sp.nd] + sp.extent, dy.dtype)
    for v in sp.views(dxp):
        v += g
    return sp.unpad(dxp, shape)
