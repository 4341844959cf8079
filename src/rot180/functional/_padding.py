"""Padding, stretching and batch folding: the array moves the engine makes around its
correlations (:mod:`rot180.functional._engine`)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

__all__ = ["pad", "stretch_pad", "crop_negative", "fold", "unfold"]


def pad(x: np.ndarray, pairs: Sequence[tuple[int, int]]) -> np.ndarray:
    """Pad (positive) or crop (negative) the last ``len(pairs)`` axes with zeros.

    Along an axis of size ``n`` the result has ``n + low + high`` cells and entry ``j`` lands at
    ``low + j`` (entries cropped away are dropped). Returns ``x`` itself when nothing changes
    and a view when only cropping.
    """
    if all(lo == 0 and hi == 0 for lo, hi in pairs):
        return x
    lead = x.ndim - len(pairs)
    src, dst, size = [], [], []
    for n, (lo, hi) in zip(x.shape[lead:], pairs, strict=True):
        start = min(max(-lo, 0), n)
        stop = max(start, n - max(-hi, 0))
        src.append(slice(start, stop))
        dst.append(slice(max(lo, 0), max(lo, 0) + stop - start))
        size.append(n + lo + hi)
    if all(lo <= 0 and hi <= 0 for lo, hi in pairs):
        return x[(Ellipsis, *src)]
    out = np.zeros(x.shape[:lead] + tuple(size), x.dtype)
    out[(Ellipsis, *dst)] = x[(Ellipsis, *src)]
    return out


def stretch_pad(dz: np.ndarray, stride: Sequence[int], pairs: Sequence[tuple[int, int]]
                ) -> np.ndarray:
    """Insert ``s-1`` zeros between neighbouring entries, then pad (or crop) each side.

    Along one axis of size ``o`` the result has ``(o-1)s + 1 + low + high`` cells and entry
    ``j`` of ``dz`` lands at ``low + j s``; entries that a negative ``low``/``high`` crops away
    are dropped. The engine never materialises this (see
    :func:`rot180.functional._engine.correlate_stretched`); it is the definition the sub-pixel
    path is tested against.
    """
    if all(s == 1 for s in stride):
        return pad(dz, pairs)
    lead = dz.ndim - len(stride)
    sizes, src, dst = [], [], []
    for o, s, (lo, hi) in zip(dz.shape[lead:], stride, pairs, strict=True):
        n = (o - 1) * s + 1 + lo + hi
        j0 = -(lo // s) if lo < 0 else 0        # first entry with lo + j s >= 0 (ceil)
        j1 = max(j0, min(o, (n - 1 - lo) // s + 1))  # one past the last with lo + j s < n
        sizes.append(n)
        src.append(slice(j0, j1))
        dst.append(slice(lo + j0 * s, lo + j0 * s + (j1 - j0) * s, s))
    out = np.zeros(dz.shape[:lead] + tuple(sizes), dz.dtype)
    out[(Ellipsis, *dst)] = dz[(Ellipsis, *src)]
    return out


def crop_negative(x: np.ndarray, pads: Sequence[tuple[int, int]] | None
                  ) -> tuple[np.ndarray, list[tuple[int, int]] | None]:
    """For the helper, which writes only zero padding while packing: negative pads applied as a
    crop (a view of ``x``), the rest returned as pads >= 0."""
    if pads is None or all(lo >= 0 and hi >= 0 for lo, hi in pads):
        return x, pads
    x = pad(x, [(min(lo, 0), min(hi, 0)) for lo, hi in pads])
    return x, [(max(lo, 0), max(hi, 0)) for lo, hi in pads]


def fold(a: np.ndarray) -> np.ndarray:
    """``(B, G, C, *S)`` as one batch-innermost image ``(1, G, C, *S[:-1], S[-1]*B)``."""
    f = np.ascontiguousarray(np.moveaxis(a, 0, -1))
    return f.reshape(1, *a.shape[1:-1], a.shape[-1] * a.shape[0])


def unfold(f: np.ndarray, batch: int, out: np.ndarray | None) -> np.ndarray:
    """Inverse of :func:`fold`, written into ``out`` if given."""
    v = np.moveaxis(f.reshape(*f.shape[1:-1], f.shape[-1] // batch, batch), -1, 0)
    if out is None:
        return np.ascontiguousarray(v)
    np.copyto(out, v)
    return out
