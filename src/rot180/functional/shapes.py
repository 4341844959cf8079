"""Shape arithmetic for convolutions and pooling: the one place every size is computed.

Notation (per spatial dimension)
--------------------------------
``i``   input size            ``k``   kernel size
``s``   stride                ``d``   dilation (1 = none)
``p_lo, p_hi``  padding before / after the input
``o``   output size           ``a``   stride remainder

The dilated kernel spans ``d(k - 1) + 1`` cells. A direct correlation of the padded input gives::

    o = floor((i + p_lo + p_hi - d(k - 1) - 1) / s) + 1

and the cells the last window never reaches leave the remainder::

    a = (i + p_lo + p_hi - d(k - 1) - 1) mod s

so that ``i = (o - 1) s + a + d(k - 1) + 1 - p_lo - p_hi``. The remainder is exactly what a
transposed convolution (or the input gradient) cannot recover from ``o`` alone: PyTorch calls it
``output_padding``. Dumoulin & Visin, "A guide to convolution arithmetic for deep learning"
(2016), relationships 1-14, are special cases of these two formulas.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

__all__ = [
    "as_tuple",
    "conv_output_size",
    "conv_output_shape",
    "pool_output_size",
    "stride_remainder",
    "transposed_output_size",
    "resolve_padding",
    "grad_input_padding",
    "tap_outputs",
    "live_window",
    "PADDING_MODES",
]

PADDING_MODES = ("valid", "same", "full")


def as_tuple(value: int | Sequence[int], nd: int, name: str, where: str | None = None
             ) -> tuple[int, ...]:
    """Expand an int (or a one-entry sequence, as PyTorch does) to ``nd`` copies, or check a
    sequence has ``nd`` ints.

    >>> as_tuple(2, 3, "stride")
    (2, 2, 2)
    >>> as_tuple((1, 2), 2, "stride")
    (1, 2)
    >>> as_tuple((3,), 2, "padding")
    (3, 3)

    ``where`` (the caller, ``"MaxPool2d"``) starts every message.
    """
    at = f"{where}: " if where else ""
    if isinstance(value, bool):
        raise TypeError(f"{at}{name} must be an int or a tuple of {nd} ints, got bool {value!r}.")
    if isinstance(value, int | np.integer):
        return (_bounded(int(value), name, at),) * nd
    if isinstance(value, Sequence) and not isinstance(value, str):
        if len(value) == 1 and nd > 1:
            value = tuple(value) * nd
        if len(value) != nd:
            raise ValueError(
                f"{at}{name} must have one entry per spatial dimension ({nd}), got {len(value)} "
                f"entries {tuple(value)!r}. Pass a single int or a tuple of length {nd} (or 1)."
            )
        out = []
        for v in value:
            if isinstance(v, bool) or not isinstance(v, int | np.integer):
                raise TypeError(f"{at}{name} entries must be ints, got {type(v).__name__} {v!r}.")
            out.append(_bounded(int(v), name, at))
        return tuple(out)
    raise TypeError(
        f"{at}{name} must be an int or a tuple of {nd} ints, got {type(value).__name__} "
        f"{value!r}."
    )


#: Largest size, stride, dilation or padding accepted (2**40, about 10**12): no array reaches
#: that far, and index arithmetic on it stays far from int64's end (a stride of 2**63 made
#: numpy's strided views overflow).
MAX_EXTENT = 2**40


def _bounded(v: int, name: str, at: str = "") -> int:
    if abs(v) > MAX_EXTENT:
        raise ValueError(f"{at}{name} must be at most 2**40 (about 1.1e12) in magnitude, got {v}: "
                         f"no array reaches that far. Pass a smaller {name}.")
    return v


def conv_output_size(i: int, k: int, s: int = 1, p_lo: int = 0, p_hi: int | None = None,
                     d: int = 1) -> int:
    """Output size of a direct correlation: ``floor((i + p_lo + p_hi - d(k-1) - 1) / s) + 1``.

    ``p_hi`` defaults to ``p_lo`` (symmetric padding).

    >>> conv_output_size(5, 3, s=2, p_lo=1)   # Dumoulin & Visin, relationship 6
    3
    """
    p_hi = p_lo if p_hi is None else p_hi
    return (i + p_lo + p_hi - d * (k - 1) - 1) // s + 1


def pool_output_size(i: int, k: int, s: int, p: int = 0, ceil_mode: bool = False) -> int:
    """Output size of a pooling window sweep (symmetric padding ``p``), as PyTorch.

    Floor mode is :func:`conv_output_size`. ``ceil_mode`` rounds up instead, keeping a last,
    partial window only if it starts inside the input or the low padding:
    ``o = ceil((i + 2p - k) / s) + 1``, minus one when ``(o - 1) s >= i + p``.

    >>> pool_output_size(5, 2, 2), pool_output_size(5, 2, 2, ceil_mode=True)
    (2, 3)
    """
    if not ceil_mode:
        return conv_output_size(i, k, s, p)
    o = -(-(i + 2 * p - k) // s) + 1
    return o - 1 if (o - 1) * s >= i + p else o


def stride_remainder(i: int, k: int, s: int = 1, p_lo: int = 0, p_hi: int | None = None,
                     d: int = 1) -> int:
    """Cells of the padded input that no window reaches: ``(i + p_lo + p_hi - d(k-1) - 1) mod s``.

    >>> stride_remainder(6, 3, s=2, p_lo=1)   # 6 + 2 - 3 = 5, odd: one cell left over
    1
    """
    p_hi = p_lo if p_hi is None else p_hi
    return (i + p_lo + p_hi - d * (k - 1) - 1) % s


def transposed_output_size(o: int, k: int, s: int = 1, p_lo: int = 0, p_hi: int | None = None,
                           d: int = 1, output_padding: int = 0) -> int:
    """Size recovered by the transposed convolution: ``(o-1)s - p_lo - p_hi + d(k-1) + a + 1``.

    ``output_padding`` plays the role of the remainder ``a``.

    >>> transposed_output_size(3, 3, s=2, p_lo=1, output_padding=1)
    6
    """
    p_hi = p_lo if p_hi is None else p_hi
    return (o - 1) * s - p_lo - p_hi + d * (k - 1) + output_padding + 1


def conv_output_shape(spatial: Sequence[int], kernel: Sequence[int], stride: Sequence[int],
                      padding: Sequence[tuple[int, int]], dilation: Sequence[int]
                      ) -> tuple[int, ...]:
    """:func:`conv_output_size` for every spatial dimension."""
    return tuple(
        conv_output_size(i, k, s, lo, hi, d)
        for i, k, s, (lo, hi), d in zip(spatial, kernel, stride, padding, dilation, strict=True)
    )


def resolve_padding(padding: int | str | Sequence, kernel: Sequence[int], dilation: Sequence[int],
                    stride: Sequence[int] | None = None) -> tuple[tuple[int, int], ...]:
    """Turn any accepted padding form into one ``(low, high)`` pair per spatial dimension.

    Accepted forms: an int; a tuple of ints (one per dimension); a tuple of ``(low, high)``
    pairs; or ``"valid"`` (no padding), ``"same"`` (output size = input size, stride 1 only;
    the odd cell goes on the high side, as PyTorch), ``"full"`` (``d(k-1)`` on both sides:
    every partial overlap).

    >>> resolve_padding("same", (4,), (1,))
    ((1, 2),)
    >>> resolve_padding(((0, 1), 2), (3, 3), (1, 1))
    ((0, 1), (2, 2))
    """
    nd = len(kernel)
    span = [d * (k - 1) for k, d in zip(kernel, dilation, strict=True)]
    if isinstance(padding, str):
        if padding == "valid":
            return ((0, 0),) * nd
        if padding == "same":
            if stride is not None and any(s != 1 for s in stride):
                raise ValueError(
                    f"padding='same' is only defined for stride 1, got stride={tuple(stride)}. "
                    "Pass explicit padding, or use stride=1."
                )
            return tuple((t // 2, t - t // 2) for t in span)
        if padding == "full":
            return tuple((t, t) for t in span)
        raise ValueError(
            f"Invalid padding string {padding!r}, should be one of {PADDING_MODES} "
            "or an int / tuple of ints / tuple of (low, high) pairs."
        )
    if isinstance(padding, Sequence) and any(
        isinstance(p, Sequence) and not isinstance(p, str) for p in padding
    ):
        fix = "Pass one int or one (low, high) pair per spatial dimension."
        if len(padding) != nd:
            raise ValueError(
                f"padding must have one entry per spatial dimension ({nd}), got {len(padding)} "
                f"entries {tuple(padding)!r}. {fix}"
            )
        pairs = []
        for ax, p in enumerate(padding):
            if isinstance(p, Sequence) and not isinstance(p, str):
                if len(p) != 2:
                    raise ValueError(
                        f"padding pairs must be (low, high), got {tuple(p)!r} for spatial axis "
                        f"{ax} in {tuple(padding)!r}. {fix}"
                    )
                lo, hi = as_tuple(p, 2, "padding pair")
            else:
                (lo,) = as_tuple(p, 1, "padding")
                hi = lo
            pairs.append((lo, hi))
        out = tuple(pairs)
    else:
        out = tuple((p, p) for p in as_tuple(padding, nd, "padding"))
    for lo, hi in out:
        if lo < 0 or hi < 0:
            raise ValueError(
                f"padding must be non-negative, got {padding!r}. To crop, slice the input instead."
            )
    return out


def grad_input_padding(spatial_in: Sequence[int], kernel: Sequence[int],
                       stride: Sequence[int], padding: Sequence[tuple[int, int]],
                       dilation: Sequence[int], output: Sequence[int] | None = None
                       ) -> tuple[tuple[int, int], ...]:
    """Padding of the stretched delta in the input-gradient rule, per spatial dimension.

    ``low = d(k-1) - p_lo`` and ``high = d(k-1) - p_hi + a``; a negative value means crop.
    Correlating the stretched delta padded this way with ``rot180(w)`` (stride 1, dilation
    ``d``) yields exactly ``i`` cells: ``(o-1)s + 1 + low + high - d(k-1) = i``. ``a`` is the
    stride remainder of ``i``, or, given the delta's sizes ``output``, ``a = i -
    transposed_output_size(o, ...)``, which may reach ``max(s, d) - 1`` (PyTorch's
    ``output_padding`` rule: a transposed convolution then pads past the last delta).

    >>> grad_input_padding((6,), (3,), (2,), ((1, 1),), (1,))
    ((1, 2),)
    >>> grad_input_padding((11,), (3,), (1,), ((0, 0),), (3,), output=(3,))   # a = 2 >= s
    ((6, 8),)
    """
    out = []
    outs = [None] * len(kernel) if output is None else output
    for i, k, s, (lo, hi), d, o in zip(spatial_in, kernel, stride, padding, dilation, outs,
                                       strict=True):
        span = d * (k - 1)
        a = (stride_remainder(i, k, s, lo, hi, d) if o is None
             else i - transposed_output_size(o, k, s, lo, hi, d))
        out.append((span - lo, span - hi + a))
    return tuple(out)


def tap_outputs(n: int, o: int, t: int, s: int, d: int, lo: int) -> tuple[int, int]:
    """Outputs ``[qa, qb)`` (of ``o``) whose tap ``t`` reads inside an input of ``n`` cells
    with ``lo`` cells of low padding: ``0 <= q*s + t*d - lo < n``. Empty: ``qa == qb``.

    >>> tap_outputs(4, 4, 0, 1, 1, 1)   # tap 0 of a padded 3-tap window misses output 0
    (1, 4)
    """
    qa = max(0, -(-(lo - t * d) // s))
    qb = min(o, (n - 1 + lo - t * d) // s + 1)
    return qa, max(qa, qb)


def live_window(n: int, k: int, s: int, d: int, lo: int, hi: int
                ) -> tuple[int, int, int, int, int, int]:
    """The part of a correlation along one axis that touches the input: ``(qa, qb, ta, tb,
    lo2, hi2)``.

    Outputs outside ``[qa, qb)`` have windows that lie entirely in the padding, and taps outside
    ``[ta, tb)`` read only padding for every output in ``[qa, qb)``; the rest is the correlation
    of the same input with kernel taps ``ta:tb`` and padding ``(lo2, hi2)`` (negative: crop),
    whose ``qb - qa`` outputs are outputs ``qa:qb`` of the original. Its padded extent,
    ``(qb-qa-1)s + (tb-ta-1)d + 1``, no longer grows with the padding, and the dilation only
    through the live taps. ``qa == qb`` or ``ta == tb``: nothing reaches the input.

    ``o = floor((n + lo + hi - d(k-1) - 1) / s) + 1`` as :func:`conv_output_size`;
    ``qa = max(0, ceil((lo - d(k-1)) / s))``, ``qb = min(o, floor((lo + n - 1) / s) + 1)``;
    ``ta = max(0, ceil((lo - (qb-1)s) / d))``, ``tb = min(k, floor((n - 1 + lo - qa s) / d) + 1)``;
    ``lo2 = lo - qa s - ta d``.

    >>> live_window(4, 3, 10**6, 1, 10**6, 10**6)   # one live output, its 3 taps, 1 cell cropped
    (1, 2, 0, 3, 0, -1)
    """
    o = conv_output_size(n, k, s, lo, hi, d)
    qa = max(0, -(-(lo - d * (k - 1)) // s))
    qb = max(qa, min(o, (lo + n - 1) // s + 1))
    if qa == qb:
        return qa, qb, 0, 0, 0, 0
    ta = max(0, -(-(lo - (qb - 1) * s) // d))
    tb = max(ta, min(k, (n - 1 + lo - qa * s) // d + 1))
    if ta == tb:
        return qa, qb, ta, tb, 0, 0
    lo2 = lo - qa * s - ta * d
    hi2 = (qb - qa - 1) * s + (tb - ta - 1) * d + 1 - lo2 - n
    return qa, qb, ta, tb, lo2, hi2
