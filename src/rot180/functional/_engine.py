"""The one correlation engine behind forward and backward, plus padding and stretching.

Every convolution in rot180 (the forward pass, the input gradient and the kernel gradient) ends
in :func:`correlate`: a stride-``s``, dilation-``d`` valid cross-correlation of a grouped input
with a grouped kernel. It is realised as a gather (im2col through a strided view, then one
matrix product per group); nothing is scattered or accumulated with ``np.add.at``.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence

import numpy as np
from numpy.lib.stride_tricks import as_strided

# A small LRU of scratch buffers keyed by (shape, dtype). Large fresh allocations are served by
# mmap and page-fault on first touch on every call; reusing them removes that cost. Buffers here
# never escape this module: results are always fresh arrays.
_SCRATCH: OrderedDict[tuple, np.ndarray] = OrderedDict()
_SCRATCH_BYTES_MAX = 512 * 2**20


def scratch(shape: tuple[int, ...], dtype: np.dtype, tag: str) -> np.ndarray:
    key = (tag, shape, np.dtype(dtype).str)
    buf = _SCRATCH.pop(key, None)
    if buf is None:
        buf = np.empty(shape, dtype)
    _SCRATCH[key] = buf
    total = sum(b.nbytes for b in _SCRATCH.values())
    while total > _SCRATCH_BYTES_MAX and len(_SCRATCH) > 1:
        _, old = _SCRATCH.popitem(last=False)
        total -= old.nbytes
    return buf


def pad(x: np.ndarray, pairs: Sequence[tuple[int, int]]) -> np.ndarray:
    """Pad (positive) or crop (negative) the last ``len(pairs)`` axes with zeros.

    Returns ``x`` itself when every pair is ``(0, 0)``.
    """
    if all(lo == 0 and hi == 0 for lo, hi in pairs):
        return x
    lead = x.ndim - len(pairs)
    crop = tuple(slice(max(-lo, 0), n - max(-hi, 0))
                 for n, (lo, hi) in zip(x.shape[lead:], pairs, strict=True))
    x = x[(Ellipsis, *crop)]
    if all(lo <= 0 and hi <= 0 for lo, hi in pairs):
        return x
    grow = [(max(lo, 0), max(hi, 0)) for lo, hi in pairs]
    out = np.zeros(x.shape[:lead] + tuple(n + lo + hi for n, (lo, hi) in
                                          zip(x.shape[lead:], grow, strict=True)), x.dtype)
    inner = tuple(slice(lo, lo + n) for n, (lo, _) in zip(x.shape[lead:], grow, strict=True))
    out[(Ellipsis, *inner)] = x
    return out


def stretch_pad(dz: np.ndarray, stride: Sequence[int], pairs: Sequence[tuple[int, int]]
                ) -> np.ndarray:
    """Insert ``s-1`` zeros between neighbouring entries, then pad (or crop) each side.

    Along one axis of size ``o`` the result has ``(o-1)s + 1 + low + high`` cells and entry
    ``j`` of ``dz`` lands at ``low + j s``; entries that a negative ``low``/``high`` crops away
    are dropped.
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


def correlate(x: np.ndarray, w: np.ndarray, stride: Sequence[int], dilation: Sequence[int]
              ) -> np.ndarray:
    """Valid grouped cross-correlation, the single engine of rot180.

    Shape:
        - x: ``(B, G, C, *S)``, already padded
        - w: ``(G, O, C, *k)``
        - out: ``(B, G, O, *o)`` with ``o = floor((S - d(k-1) - 1) / s) + 1``

    ``out[b, g, o, q] = sum_{c, t} w[g, o, c, t] * x[b, g, c, q*s + t*d]``.
    """
    nd = len(stride)
    B, G, C = x.shape[:3]
    O = w.shape[1]
    S, k = x.shape[3:], w.shape[3:]
    out_sp = tuple((n - d * (kk - 1) - 1) // s + 1
                   for n, kk, s, d in zip(S, k, stride, dilation, strict=True))
    K = int(np.prod(k))
    P = int(np.prod(out_sp))

    # im2col as a view: cols[g, c, t..., b, q...] = x[b, g, c, q*s + t*d].
    sb, sg, sc = x.strides[:3]
    ss = x.strides[3:]
    view = as_strided(
        x,
        shape=(G, C, *k, B, *out_sp),
        strides=(sg, sc, *(st * d for st, d in zip(ss, dilation, strict=True)), sb,
                 *(st * s for st, s in zip(ss, stride, strict=True))),
        writeable=False,
    )
    cols = scratch((G, C * K, B * P), x.dtype, "cols")
    np.copyto(cols.reshape(view.shape), view)
    wmat = w.reshape(G, O, C * K)
    prod = scratch((G, O, B * P), x.dtype, "prod")
    np.matmul(wmat, cols, out=prod)
    out = np.empty((B, G, O, *out_sp), x.dtype)
    np.copyto(out, prod.reshape(G, O, B, *out_sp).transpose(2, 0, 1, *range(3, 3 + nd)))
    return out
