"""The pooling spec: a validated pooling configuration for one input shape, and its checks.

:func:`pool_spec` checks the window arguments against an input shape once and returns a
:class:`PoolSpec`, which also makes the strided views every pooling rule runs on (see
:mod:`rot180.functional.pool` for the notation and the rules). The public functions build it on
every call; a pooling layer builds it once per input shape and reuses it.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from . import _validation as V
from .shapes import as_tuple, pool_output_size

__all__ = ["PoolSpec", "Size", "check_divisor_override", "check_extent", "divisor", "pool_spec",
           "spatial_dims"]

Size = int | Sequence[int]


@dataclass(frozen=True)
class PoolSpec:
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


#: What a pooling function's ``nd`` is, for the message of a wrong type.
ND_EXPECTED = "an int, the number of spatial dimensions (1, 2 or 3)"


def spatial_dims(kernel_size: object, ndim: int, op: str, nd: object = None) -> int:
    """``nd`` when given, else ``len(kernel_size)`` for a sequence, else every axis after
    ``(N, C)``."""
    if nd is not None:
        nd = V.integer(nd, "nd", op, low=None, expected=ND_EXPECTED)
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


def check_extent(shape: tuple[int, ...], nd: int, op: str) -> None:
    """Every axis non-empty except the batch axis ``N`` of a batched ``(N, C, *spatial)``."""
    if any(n < 1 for n in shape[1:]) or (shape[0] < 1 and len(shape) < nd + 2):
        raise ValueError(
            f"{op}: input must have no zero-size axis, got shape {shape}. Only the batch axis "
            "N of an (N, C, *spatial) input may be 0 (an empty batch), as in PyTorch."
        )


def pool_spec(shape: tuple[int, ...], kernel_size: Size, stride: Size | None, padding: Size,
          ceil_mode: bool, op: str, *, dilation: Size = 1, nd: object = None) -> PoolSpec:
    nd = spatial_dims(kernel_size, len(shape), op, nd)
    if len(shape) < nd + 1:
        raise ValueError(
            f"{op}: expected an input of at least {nd + 1} dimensions (C, *spatial) for a "
            f"{nd}-D window, got {len(shape)}-D shape {shape}."
        )
    check_extent(shape, nd, op)
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
    sp = PoolSpec(nd, k, s, p, d, spatial, tuple(out))
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


def divisor(sp: PoolSpec, count_include_pad: bool, divisor_override: object,
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
    value = V.integer(value, "divisor_override", op, low=None, expected="an int or None",
                      means="Pass the number every window sum is divided by, or None for the "
                      "window's size.")
    if value == 0:
        raise ValueError(
            f"{op}: divisor_override must not be zero, got 0. Pass a non-zero int, or None to "
            "divide by the window's size."
        )
    return int(value)
