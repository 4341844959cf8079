r"""The one correlation engine behind forward and backward, plus padding and stretching.

Every convolution in rot180 ends here, as a valid grouped **cross-correlation** computed as a
gather: each output reads the inputs under its window. Nothing is scattered, there is no col2im
and no ``np.add.at``. Three entry points:

``correlate(x, w, stride, dilation)``
    ``out[b, g, o, q] = sum_{c, t} w[g, o, c, t] * x[b, g, c, q*s + t*d]``: the forward pass.
``correlate_stretched(dz, w, stride, pads, dilation)``
    ``correlate(stretch_pad(dz, stride, pads), w, 1, dilation)``, the input gradient by the
    rot180 rule, computed without materialising the inserted zeros (sub-pixel, below).
``correlate_kernel(x, dz, kernel, stride, dilation)``
    ``out[g, o, c, t] = sum_{b, q} dz[b, g, o, q] * x[b, g, c, q*s + t*d]``: the valid
    correlation of the input with the delta as the kernel, i.e. the kernel gradient.

How a correlation is realised (chosen per call from the shapes; all give the same sums):

*im2col* (the general path)
    Copy the windows of a chunk of the batch into ``cols[g, (c, t), (b, q)]`` through a strided
    view, then one product ``w[g] @ cols[g]`` per chunk; a single pass moves the result into
    the NC(D)HW output and adds the bias while the chunk is in cache. The kernel gradient
    contracts the same ``cols`` with the delta instead: ``dw^T = cols @ dz^T``.
*kn2row* (multiply first, then sum shifted slices; stride 1)
    When a correlation has fewer output than input channels (the input gradient of any layer
    that widens, e.g. RGB in), expanding the input ``k^D`` times is the expensive part. Instead
    ``Y[b, g, t, o, m] = sum_c w[g, o, c, t] x[b, g, c, m]`` is one product of the stacked taps
    with the *unexpanded* input, and ``out[b, g, o, q] = sum_t Y[b, g, t, o, q + t*d]``: every
    output reads ``k^D`` shifted slices of ``Y`` (implicit GEMM with the sum over taps outside
    the product). Positions outside the input are implicit zero padding and are not read, so
    padding need not be materialised or multiplied. Chosen when ``C_out < C_in``.
*pointwise* (every kernel size 1)
    The windows are the (strided) input itself: one product, no expansion.
*direct* (the optional compiled helper, :mod:`._direct`)
    Loops over 16 samples at a time in vector lanes, no expansion at all. Taken for 1-D and
    2-D calls whose batch fills at least 3/4 of its blocks of 16 (LeNet's and most training
    batches), or does so once each sample is cut into bands of output rows (batch 8 of a
    224x224 image: 4 bands each; a single image: 14-32): the forward pass, the stride-1 input
    gradient and the kernel gradient. Without the extension (no C compiler at install, or
    ``ROT180_PURE_NUMPY=1``) the NumPy paths above do everything.

Sub-pixel (polyphase) decomposition, in :func:`correlate_stretched`
    Stretching inserts ``s - 1`` zeros between delta entries, so along each axis output
    ``i = r + s*m`` meets non-zeros only through the taps ``t`` with
    ``(r + t*d - low) % s == 0``: the sub-kernel ``w[t0::s/gcd(s, d)]``, dilation
    ``d/gcd(s, d)``, reading ``dz[m + (r + t*d - low)/s]``. Each of the ``s^D`` phases is a
    dense stride-1 correlation of the *unstretched* delta (:class:`Phase`), written into
    ``out[..., r::s]``: the same sums without the ``1 - 1/s^D`` multiplications by zero. For
    the helper the phases can also be stacked into one correlation with ``s^D`` times the
    output channels, each sub-kernel placed in a common kernel (:func:`_stacked`), where few
    of that kernel's taps are zeros (7x7 stride 2: 49 of 64).

Batch folding (small images)
    A correlation along the last axis of images stored batch-innermost, ``x'[..., w*B + b]``,
    is a correlation of ``x'`` with dilation ``d*B``: shifting by whole multiples of ``B``
    never mixes samples, and the zero padding at either end stays zero. When rows are short
    (numpy copies and sums pay per row) and the whole batch fits in one chunk, the batch is
    folded into the last axis, the same paths run on rows ``B`` times longer, and the result is
    unfolded. Needs stride 1 along the last axis.

Non-finite operands (:mod:`._clipped`)
    Padding cells and stretch zeros are cut connections, never multiplied (``conv.py``,
    "Non-finite values"). The paths above agree with that while everything is finite; each
    entry point checks its operands with one summing pass and sends a call holding ``inf`` or
    NaN to tap loops over the real connections (the input gradient: kn2row over the phases,
    implicit padding), so the helper and every NumPy path give the same NaN/inf positions.
    Only what is cheap and decisive is checked: the weights (forward, input gradient), the
    delta where :func:`_stacked` multiplies it by zero taps, and a kernel gradient's result
    (:func:`correlate_kernel`).

Work proportional to the data (:func:`_live`)
    Outputs whose windows lie in the padding, and taps that read only padding, are not
    computed: padding far wider than the kernel, or a dilation far larger than the input, pads
    by the live taps' span only. Only the sub-pixel phases of residues below the input size
    are built (a stride of 10**6 on 4 cells: 4 phases). A sample whose padded copy, im2col
    columns or kn2row products would still exceed :data:`MAX_SAMPLE_BYTES` raises ValueError.

Memory: expanded buffers are processed in batch chunks of about :data:`CHUNK_BYTES` and come
from :func:`~rot180.functional._parallel.scratch` (per thread), so repeated calls reuse the
same pages instead of page-faulting fresh allocations. float32 stays float32 throughout.

Threads (:mod:`rot180.functional._parallel`): from :data:`PARALLEL_MIN_MACS` multiply-adds a
call, its batch chunks (gather, product, output write; or kn2row's product and sums) run on as
many Python threads as numpy's BLAS would use, each with single-threaded BLAS, so that the
copies and sums run in parallel too, not only the products. A folded batch is split into one
part per thread. Smaller calls run on the caller's thread, BLAS as the user set it. Chunks and
parts come from the shapes and the thread count alone; each writes its own samples of the
output, and kernel gradients are summed over chunks in chunk order, so results never depend on
thread timing (and the pooled path gives the same bits as running its chunks one by one).

Code: the im2col and 1x1 paths live in :mod:`._im2col`, kn2row in :mod:`._kn2row`, the direct
loops in :mod:`._direct` (C in ``_directc.c``), the thread pool and scratch buffers in
:mod:`._parallel`; this module chooses between them.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from itertools import product

import numpy as np

from . import _clipped, _direct, _parallel
from ._im2col import im2col, im2col_kernel, pointwise
from ._kn2row import Phase, kn2row
from ._parallel import map_chunks, run_chunks, sum_chunks
from .shapes import conv_output_size, live_window

__all__ = ["correlate", "correlate_stretched", "correlate_kernel", "pad", "stretch_pad",
           "Phase"]

# Expanded input (cols, or kn2row's Y) per batch chunk: large enough for efficient products,
# small enough to stay in cache between the copy and the product (measured: 1-8 MiB all within
# noise on the benchmark layers; 16 MiB is 5-15 % slower).
CHUNK_BYTES = 4 * 2**20
# kn2row instead of im2col when KN2ROW_RATIO * output channels < input channels.
KN2ROW_RATIO = 1
# Fold the batch into rows shorter than this (and only when the whole batch fits one chunk).
FOLD_MAX_ROW = 32
# Stack the sub-pixel phases of a strided input gradient into one correlation when at least
# this fraction of the stacked kernel's taps are real and the stacked kernel has at least this
# many taps, or just one (a 1x1 correlation: one product). See _stacked, measured there.
STACK_MIN_FILL = 0.45
STACK_MIN_TAPS = 9
# Run batch chunks on several threads (see _parallel) only from this many multiply-adds per
# call. LeNet's layers (7.5M and 15M multiply-adds) make a faster training step without the
# pool (9.4 ms against 10.1 ms); the benchmark's large layers (>= 500M) gain 10-60 %.
PARALLEL_MIN_MACS = 5 * 10**7
# The most one sample may expand to (a padded copy, im2col's columns, kn2row's Y): beyond it
# a call raises ValueError naming the sizes instead of failing in the allocator.
MAX_SAMPLE_BYTES = 2 * 2**30


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
    are dropped. The engine never materialises this (see :func:`correlate_stretched`); it is
    the definition the sub-pixel path is tested against.
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


def _phases(i: int, s: int, lo: int, d: int, k: int) -> list[Phase]:
    """The sub-pixel phases of one axis of ``correlate(stretch_pad(dz), w, 1, d)``: one per
    residue ``r < min(s, i)`` (a huge stride on a small input builds ``i`` phases, not ``s``).

    ``e0`` is relative to the unpadded, unstretched delta (negative: reads padding).
    """
    step = s // math.gcd(s, d)
    out = []
    for r in range(min(s, i)):                  # residues >= i hold no output cell
        m = len(range(r, i, s))
        t0 = next((t for t in range(min(step, k)) if (r + t * d - lo) % s == 0), None)
        if t0 is None or m == 0:
            out.append(Phase(r, s, m, 0, 1, 0, 0, 0))
            continue
        out.append(Phase(r, s, m, t0, step, len(range(t0, k, step)), (r + t0 * d - lo) // s,
                         d // math.gcd(s, d)))
    return out


def _crop_negative(x: np.ndarray, pads: Sequence[tuple[int, int]] | None
                   ) -> tuple[np.ndarray, list[tuple[int, int]] | None]:
    """For the helper, which writes only zero padding while packing: negative pads applied as a
    crop (a view of ``x``), the rest returned as pads >= 0."""
    if pads is None or all(lo >= 0 and hi >= 0 for lo, hi in pads):
        return x, pads
    x = pad(x, [(min(lo, 0), min(hi, 0)) for lo, hi in pads])
    return x, [(max(lo, 0), max(hi, 0)) for lo, hi in pads]


def _stretched_size(o_sp: Sequence[int], stride: Sequence[int],
                    pairs: Sequence[tuple[int, int]], dilation: Sequence[int],
                    k: Sequence[int]) -> tuple[int, ...]:
    """Output sizes of :func:`correlate_stretched`: a stride-1 correlation of the stretched
    delta (``(o-1)s + 1`` cells) padded by ``pairs``, ``(o-1)s + 1 + low + high - d(k-1)``."""
    return tuple(conv_output_size((o - 1) * s + 1, kk, 1, lo, hi, d) for o, s, (lo, hi), d, kk
                 in zip(o_sp, stride, pairs, dilation, k, strict=True))


def _phase_axes(i_sp: Sequence[int], stride: Sequence[int], pairs: Sequence[tuple[int, int]],
                dilation: Sequence[int], k: Sequence[int]) -> list[list[Phase]]:
    """The sub-pixel phases of every axis of :func:`correlate_stretched`."""
    return [_phases(i, s, lo, d, kk)
            for i, s, (lo, _), d, kk in zip(i_sp, stride, pairs, dilation, k, strict=True)]


def _chunk(batch: int, bytes_per_sample: int) -> int:
    return max(1, min(batch, CHUNK_BYTES // max(1, bytes_per_sample)))


def _threads(macs: int) -> int:
    """Threads for this call's batch chunks (:func:`._parallel.map_chunks`): 1 (the caller's,
    BLAS as the user set it) below :data:`PARALLEL_MIN_MACS`."""
    return _parallel.workers() if macs >= PARALLEL_MIN_MACS else 1


def _fold_parts(batch: int, macs: int) -> list[tuple[int, int]]:
    """A folded batch runs whole, or split into one part per thread: the parts of the batch,
    from the shapes and the thread count only (never from timing)."""
    n = min(_threads(macs), batch // 2)
    step = -(-batch // max(n, 1))
    return [(b, min(batch, b + step)) for b in range(0, batch, step)]


def _fold_ok(batch: int, last_stride: int, row: int, bytes_per_sample: int) -> bool:
    return (batch > 1 and last_stride == 1 and row < FOLD_MAX_ROW
            and batch * bytes_per_sample <= CHUNK_BYTES)


def _expanded_bytes(w_shape: tuple[int, ...], in_sp: Sequence[int], out_sp: Sequence[int],
                    dtype: np.dtype) -> int:
    """Per sample: kn2row's ``Y`` (``k^D`` copies of the output channels at every input
    position) or im2col's ``cols`` (of the input channels at every output position)."""
    G, M, C = w_shape[:3]
    if KN2ROW_RATIO * M < C:
        return G * math.prod(w_shape[3:]) * M * math.prod(in_sp) * np.dtype(dtype).itemsize
    return G * math.prod(w_shape[3:]) * C * math.prod(out_sp) * np.dtype(dtype).itemsize


def _fold(a: np.ndarray) -> np.ndarray:
    """``(B, G, C, *S)`` as one batch-innermost image ``(1, G, C, *S[:-1], S[-1]*B)``."""
    f = np.ascontiguousarray(np.moveaxis(a, 0, -1))
    return f.reshape(1, *a.shape[1:-1], a.shape[-1] * a.shape[0])


def _unfold(f: np.ndarray, batch: int, out: np.ndarray | None) -> np.ndarray:
    """Inverse of :func:`_fold`, written into ``out`` if given."""
    v = np.moveaxis(f.reshape(*f.shape[1:-1], f.shape[-1] // batch, batch), -1, 0)
    if out is None:
        return np.ascontiguousarray(v)
    np.copyto(out, v)
    return out


def _dilate_last(dilation: Sequence[int], batch: int) -> tuple[int, ...]:
    return (*dilation[:-1], dilation[-1] * batch)


# --- correlate: the forward pass --------------------------------------------------------------

@_clipped.quiet
def correlate(x: np.ndarray, w: np.ndarray, stride: Sequence[int], dilation: Sequence[int],
              out: np.ndarray | None = None, bias: np.ndarray | None = None,
              pads: Sequence[tuple[int, int]] | None = None) -> np.ndarray:
    """Valid grouped cross-correlation, the single engine of rot180.

    ``out[b, g, o, q] = bias[g, o] + sum_{c, t} w[g, o, c, t] * xp[b, g, c, q*s + t*d]``, with
    ``xp = pad(x, pads)`` (``x`` itself when ``pads`` is None), summed over the real
    connections only: a tap that reads padding adds nothing, also when ``w`` is not finite
    (:mod:`._clipped`). The direct path pads while it packs the input and skips taps that read
    only padding; the others pad first (the same sums while everything is finite).

    Shape:
        - x: ``(B, G, C, *S)``
        - w: ``(G, M, C, *k)`` (``M`` output channels per group)
        - bias: ``(G, M)`` or None
        - out: ``(B, G, M, *o)`` with ``o = floor((S + low + high - d(k-1) - 1) / s) + 1``; if
          given, any (e.g. strided) array of that shape is filled in place and returned.
    """
    # Only w can meet a cut connection here: every path multiplies an input cell only by the
    # taps that read it (padding cells are what an infinite weight must not be multiplied by).
    if out is None:
        o_sp = _out_shape(x.shape[3:], w.shape[3:], stride, dilation, pads)
        _guard(math.prod(w.shape[:2]) * math.prod(o_sp) * x.dtype.itemsize, "the output",
               (*w.shape[:2], *o_sp))
        out = np.empty((x.shape[0], *w.shape[:2], *o_sp), x.dtype)
    if not _clipped.finite(w):
        return _clipped.correlate(x, w, stride, dilation, out, bias, pads)
    return _correlate(x, w, stride, dilation, out, bias, pads)


def _out_shape(x_sp: Sequence[int], k: Sequence[int], stride: Sequence[int],
               dilation: Sequence[int], pads: Sequence[tuple[int, int]] | None
               ) -> tuple[int, ...]:
    pads = [(0, 0)] * len(k) if pads is None else pads
    return tuple(conv_output_size(n, kk, s, lo, hi, d) for n, kk, s, (lo, hi), d
                 in zip(x_sp, k, stride, pads, dilation, strict=True))


def _live(x_sp: Sequence[int], k: Sequence[int], stride: Sequence[int],
          dilation: Sequence[int], pads: Sequence[tuple[int, int]] | None
          ) -> tuple[tuple[slice, ...], tuple[slice, ...], list[tuple[int, int]]] | None:
    """The outputs and taps that touch the input (:func:`~.shapes.live_window` per axis) and
    the padding of that smaller correlation; None when every output and tap does (no padding
    wider than the kernel's span or the stride: every ordinary layer).

    This is what keeps work and memory proportional to the data, not to the padding or the
    dilation: padding 10**6 with stride 10**6 pads by the kernel's span at most, and the taps
    of a huge dilation that only ever read padding are dropped. Outputs left out are the bias
    alone (their windows hold no input), taps left out have zero gradient."""
    if pads is None or all(       # every output and tap live (as live_window would find)
            lo <= d * (kk - 1) >= hi and n + hi >= d * (kk - 1) + s and n + lo > d * (kk - 1)
            for n, kk, s, d, (lo, hi) in zip(x_sp, k, stride, dilation, pads, strict=True)):
        return None
    axes = [live_window(n, kk, s, d, lo, hi) for n, kk, s, d, (lo, hi)
            in zip(x_sp, k, stride, dilation, pads, strict=True)]
    o_sp = _out_shape(x_sp, k, stride, dilation, pads)
    if all(qa == 0 and qb == o and ta == 0 and tb == kk
           for (qa, qb, ta, tb, _, _), o, kk in zip(axes, o_sp, k, strict=True)):
        return None
    return (tuple(slice(a[0], a[1]) for a in axes), tuple(slice(a[2], a[3]) for a in axes),
            [(a[4], a[5]) for a in axes])


def _guard(sample_bytes: int, what: str, shape: Sequence[int]) -> None:
    """Refuse to expand one sample beyond :data:`MAX_SAMPLE_BYTES`."""
    if sample_bytes > MAX_SAMPLE_BYTES:
        raise ValueError(
            f"convolution: {what} of one sample would need {sample_bytes / 2**30:.1f} GiB "
            f"(shape {tuple(shape)}), more than the {MAX_SAMPLE_BYTES / 2**30:.0f} GiB allowed. "
            "Use a smaller input, padding or dilation, or split the input into tiles."
        )


def _correlate(x: np.ndarray, w: np.ndarray, stride: Sequence[int], dilation: Sequence[int],
               out: np.ndarray | None = None, bias: np.ndarray | None = None,
               pads: Sequence[tuple[int, int]] | None = None) -> np.ndarray:
    """:func:`correlate` on finite operands."""
    live = _live(x.shape[3:], w.shape[3:], stride, dilation, pads)
    if live is not None:
        outs, taps, inner = live
        if out is None:
            out = np.empty((*x.shape[:2], w.shape[1], *_out_shape(
                x.shape[3:], w.shape[3:], stride, dilation, pads)), x.dtype)
        G, M = w.shape[:2]
        out[...] = 0 if bias is None else bias.reshape(G, M, *(1,) * len(stride))
        if all(q.start < q.stop for q in outs) and all(t.start < t.stop for t in taps):
            _correlate(x, w[(Ellipsis, *taps)], stride, dilation, out[(Ellipsis, *outs)], bias,
                       inner)
        return out
    B, G, C = x.shape[:3]
    M, k = w.shape[1], w.shape[3:]
    sp = x.shape[3:] if pads is None else tuple(
        n + lo + hi for n, (lo, hi) in zip(x.shape[3:], pads, strict=True))
    out_sp = tuple(conv_output_size(n, kk, s, 0, 0, d)
                   for n, kk, s, d in zip(sp, k, stride, dilation, strict=True))
    one_by_one = all(kk == 1 for kk in k)
    macs = B * G * M * C * math.prod(k) * math.prod(out_sp)
    if not one_by_one and _direct.usable(B, len(k), x.dtype, out_sp[0]):
        if out is None:
            out = np.empty((B, G, M, *out_sp), x.dtype)
        x, pads = _crop_negative(x, pads)
        _direct.correlate(x, w, stride, dilation, out, bias, _threads(macs), pads)
        return out
    if pads is not None:
        _guard(G * C * math.prod(sp) * x.dtype.itemsize, "the padded input", (G, C, *sp))
        x = pad(x, pads)
    expanded = _expanded_bytes(w.shape, x.shape[3:], out_sp, x.dtype)
    if not one_by_one:
        _guard(expanded, "the expanded input (im2col columns or kn2row products)",
               (G, C, *k, *out_sp))
    if not one_by_one and _fold_ok(B, stride[-1], out_sp[-1], expanded):
        parts = _fold_parts(B, macs)
        if len(parts) == 1:
            res = _correlate(_fold(x), w, stride, _dilate_last(dilation, B), bias=bias)
            return _unfold(res, B, out)
        if out is None:
            out = np.empty((B, G, M, *out_sp), x.dtype)
        run_chunks(lambda p: _correlate(x[p[0]:p[1]], w, stride, dilation,
                                       out=out[p[0]:p[1]], bias=bias), parts, len(parts))
        return out
    if out is None:
        out = np.empty((B, G, M, *out_sp), x.dtype)
    if one_by_one:                              # one product; in a region all the same
        run_chunks(lambda _: pointwise(x, w, stride, out), [0], 1)
    elif all(s == 1 for s in stride) and KN2ROW_RATIO * M < C:
        _kn2row(x, w, [[Phase(0, 1, o, 0, 1, kk, 0, d)] for o, kk, d in
                       zip(out_sp, k, dilation, strict=True)], out, expanded)
    else:
        nb = _chunk(B, expanded)
        im2col(x, w, stride, dilation, out, bias, nb, _threads(macs))
        return out
    if bias is not None:
        out += bias.reshape(G, M, *(1,) * len(k))
    return out


def _kn2row(x: np.ndarray, w: np.ndarray, phases: list[list[Phase]], out: np.ndarray,
            expanded: int) -> None:
    """kn2row in batch chunks of ``expanded`` bytes per sample; threads from the work."""
    B, G, C = x.shape[:3]
    M, K = w.shape[1], math.prod(w.shape[3:])
    kn2row(x, w, phases, out, _chunk(B, expanded),
           _threads(B * G * M * C * K * math.prod(x.shape[3:])))


# --- correlate_stretched: the input gradient --------------------------------------------------

@_clipped.quiet
def correlate_stretched(dz: np.ndarray, w: np.ndarray, stride: Sequence[int],
                        pairs: Sequence[tuple[int, int]], dilation: Sequence[int]
                        ) -> np.ndarray:
    """``correlate(stretch_pad(dz, stride, pairs), w, 1, dilation)`` without the zeros.

    Sub-pixel decomposition (module docstring): one dense stride-1 correlation of ``dz`` with a
    sub-kernel per output phase.

    Shape:
        - dz: ``(B, G, C, *o)``
        - w: ``(G, M, C, *k)``
        - output: ``(B, G, M, *i)``, ``i = (o-1)s + 1 + low + high - d(k-1)``
    """
    k = w.shape[3:]
    i_sp = _stretched_size(dz.shape[3:], stride, pairs, dilation, k)
    _guard(math.prod(w.shape[:2]) * math.prod(i_sp) * dz.dtype.itemsize, "the output",
           (*w.shape[:2], *i_sp))
    # An infinite weight must not meet the padding or the inserted zeros; the delta meets zero
    # weights only in the stacked phases, which check it themselves (_stacked).
    if not _clipped.finite(w):
        # kn2row over the phases with implicit padding visits exactly the real connections
        # (see _clipped): no padding cell, no inserted zero is multiplied.
        out = np.empty((*dz.shape[:2], w.shape[1], *i_sp), dz.dtype)
        y_bytes = w.shape[0] * math.prod(w.shape[1:2] + k) * math.prod(dz.shape[3:]) * \
            dz.dtype.itemsize                   # kn2row's Y of one sample
        _guard(y_bytes, "the kn2row products", (*w.shape[:2], *k, *dz.shape[3:]))
        with np.errstate(invalid="ignore", over="ignore"):      # serial: errstate is per thread
            kn2row(dz, w, _phase_axes(i_sp, stride, pairs, dilation, k), out,
                   _chunk(dz.shape[0], y_bytes), 1)
        return out
    return _correlate_stretched(dz, w, stride, pairs, dilation)


def _correlate_stretched(dz: np.ndarray, w: np.ndarray, stride: Sequence[int],
                         pairs: Sequence[tuple[int, int]], dilation: Sequence[int]
                         ) -> np.ndarray:
    """:func:`correlate_stretched` on finite operands."""
    B, G, C = dz.shape[:3]
    k = w.shape[3:]
    i_sp = _stretched_size(dz.shape[3:], stride, pairs, dilation, k)
    expanded = _expanded_bytes(w.shape, dz.shape[3:], i_sp, dz.dtype)
    if _direct.usable(B, len(k), dz.dtype, i_sp[0]) and all(s == 1 for s in stride):
        # The padded delta through the direct correlate.
        return _stretched(dz, w, stride, pairs, dilation, implicit_pad=False)
    if any(s > 1 for s in stride):
        out = _stacked(dz, w, stride, pairs, dilation, i_sp)
        if out is not None:
            return out
    if not all(kk == 1 for kk in k) and _fold_ok(B, stride[-1], i_sp[-1], expanded):
        parts = _fold_parts(B, B * G * math.prod(w.shape[1:]) * math.prod(dz.shape[3:]))
        if len(parts) > 1:
            return np.concatenate(list(map_chunks(
                lambda p: _correlate_stretched(dz[p[0]:p[1]], w, stride, pairs, dilation),
                parts, len(parts))))
        (lo, hi) = pairs[-1]
        res = _stretched(_fold(dz), w, stride, (*pairs[:-1], (lo * B, hi * B)),
                         _dilate_last(dilation, B), implicit_pad=True)
        return _unfold(res, B, None)
    return _stretched(dz, w, stride, pairs, dilation,
                      implicit_pad=any(s > 1 for s in stride))


def _stacked(dz: np.ndarray, w: np.ndarray, stride: Sequence[int],
             pairs: Sequence[tuple[int, int]], dilation: Sequence[int], i_sp: Sequence[int]
             ) -> np.ndarray | None:
    """The sub-pixel phases stacked into one correlation through the helper, or None.

    When every phase reads the delta with step 1, phase ``r`` is a correlation with taps at
    offsets ``e0_r + j`` from ``dz``'s start: placing each sub-kernel at ``e0_r - E`` (``E`` the
    smallest offset) in a common ``U``-tap kernel makes all ``s^D`` phases one correlation of
    ``dz`` with ``s^D * M`` output channels, whose channel block ``r`` is phase ``r``
    (depth-to-space afterwards). Taps outside a sub-kernel multiply zeros, and the helper's
    loops are slow on kernels of few taps, so this is taken only where at least
    :data:`STACK_MIN_FILL` of the stacked taps are real, the stacked kernel has at least
    :data:`STACK_MIN_TAPS` taps or exactly one (then it is one product), and the helper takes
    the batch. Measured, 2 threads, ms, stacked / NumPy's phases (fill, stacked taps): 7x7
    stride 2 from RGB, the benchmark's L6, 15.4 / 19.7 (0.77, 16); 11x11 stride 4 from RGB
    27.0 / 37.9 (0.47, 16); 5x5 stride 2, 32 channels 13.8 / 19.4 (0.69, 9); 5x5 stride 2 from
    RGB 10.9 / 10.8; 2x2 stride 2 3.7 / 5.9 (1, 1). Not taken: 4x4 stride 2, 64 channels
    14.6 / 12.8 (1, 4); 3x3 stride 2, the benchmark's L4, 26.4 / 21.1 (0.56, 4).
    """
    B, G, C = dz.shape[:3]
    M, k, nd = w.shape[1], w.shape[3:], len(stride)
    axes = _phase_axes(i_sp, stride, pairs, dilation, k)
    # Only the phases some tap reaches are stacked; the others (stride > kernel span) are zeros.
    live = [[p for p in ph if p.n_taps and p.m] for ph in axes]
    plan = []                                   # per axis: (E, U, Q)
    for ph, lv in zip(axes, live, strict=True):
        if not lv or any(p.e_step != 1 for p in lv):
            return None
        e = min(p.e0 for p in lv)
        plan.append((e, max(p.e0 - e + p.n_taps for p in lv), max(p.m for p in ph)))
    real = math.prod(sum(p.n_taps for p in lv) for lv in live)
    taps = math.prod(u for _, u, _ in plan)
    stacked = math.prod(len(lv) for lv in live) * taps
    if taps > 1 and (real < STACK_MIN_FILL * stacked or taps < STACK_MIN_TAPS
                     or not _direct.usable(B, nd, dz.dtype, plan[0][2])):
        return None
    # The common kernel's zeros are cut taps: a non-finite delta must not meet them. Check
    # whichever is smaller, the delta before or the result after (a finite result is already
    # the sum over real taps; a non-finite one is recomputed by the phases): on L6, 7x7 stride 2
    # from RGB, the 25.7 MB delta took 2 ms of a 15 ms input gradient, the 4.8 MB result 0.3.
    check_after = math.prod(dz.shape[:2]) * M * math.prod(i_sp) < dz.size
    if not check_after and not _clipped.finite(dz):
        return None
    combos = list(product(*live))
    dead = any(len(lv) < len(ph) for lv, ph in zip(live, axes, strict=True))
    wc = np.zeros((G, len(combos) * M, C, *(u for _, u, _ in plan)), w.dtype)
    for i, combo in enumerate(combos):
        taps = [slice(p.e0 - e, p.e0 - e + p.n_taps)
                for p, (e, _, _) in zip(combo, plan, strict=True)]
        wc[(slice(None), slice(i * M, (i + 1) * M), slice(None), *taps)] = w[
            (Ellipsis, *(slice(p.t0, p.t0 + p.t_step * p.n_taps, p.t_step) for p in combo))]
    pads = [(-e, e + q + u - 1 - o) for (e, u, q), o in zip(plan, dz.shape[3:], strict=True)]
    q_sp = tuple(q for _, _, q in plan)
    z = _correlate(dz, wc, (1,) * nd, (1,) * nd, pads=pads).reshape(B, G, len(combos), M, *q_sp)
    out = np.empty((B, G, M, *i_sp), dz.dtype)

    def place(b: tuple[int, int]) -> None:     # depth-to-space of samples b[0]:b[1]
        if dead:
            out[slice(*b)] = 0
        for i, combo in enumerate(combos):
            dst = out[(slice(*b), Ellipsis, *(slice(p.r, None, p.s) for p in combo))]
            dst[...] = z[(slice(*b), slice(None), i, slice(None),
                          *(slice(0, p.m) for p in combo))]

    parts = _fold_parts(B, B * G * M * C * real * math.prod(q_sp))
    run_chunks(place, parts, len(parts))
    if check_after and not _clipped.finite(out):
        return None
    return out


def _stretched(dz: np.ndarray, w: np.ndarray, stride: Sequence[int],
               pairs: Sequence[tuple[int, int]], dilation: Sequence[int], implicit_pad: bool
               ) -> np.ndarray:
    """:func:`correlate_stretched` after the folding decision.

    ``implicit_pad``: let kn2row skip the padding rather than multiply it. Worth it when each
    phase has few taps (strided) or rows are long (folded); otherwise the padded input and one
    reduction over all taps is faster than adding clipped windows tap by tap.
    """
    B, G, C = dz.shape[:3]
    M, k = w.shape[1], w.shape[3:]
    o_sp = dz.shape[3:]
    i_sp = _stretched_size(o_sp, stride, pairs, dilation, k)
    out = np.empty((B, G, M, *i_sp), dz.dtype)
    axes = _phase_axes(i_sp, stride, pairs, dilation, k)
    if implicit_pad and KN2ROW_RATIO * M < C and not all(kk == 1 for kk in k):
        _kn2row(dz, w, axes, out, _expanded_bytes(w.shape, o_sp, i_sp, dz.dtype))
        return out
    if all(s == 1 for s in stride):
        return _correlate(dz, w, (1,) * len(stride), dilation, out=out, pads=pairs)
    # Pad dz once so that every phase reads a plain window of it; shift e0 accordingly. Where
    # that padding outgrows the delta (a dilation far larger than the stride), each phase
    # instead passes its own padding to _correlate, which keeps only what touches dz.
    lows = [max([0] + [-p.e0 for p in ph if p.n_taps]) for ph in axes]
    highs = [max([0] + [p.e0 + p.e_step * (p.n_taps - 1) + p.m - o for p in ph if p.n_taps])
             for ph, o in zip(axes, o_sp, strict=True)]
    shared = sum(lows) + sum(highs) <= sum(o_sp) + sum(k)
    if shared:
        dzp = pad(dz, list(zip(lows, highs, strict=True)))
        axes = [[p._replace(e0=p.e0 + lo) for p in ph] for ph, lo in zip(axes, lows, strict=True)]
    live = [[p for p in ph if p.n_taps and p.m] for ph in axes]
    if any(len(lv) < len(ph) for lv, ph in zip(live, axes, strict=True)):
        out[...] = 0                            # phases no tap reaches (stride > kernel span)
    for combo in product(*live):                # (a huge stride: a few live phases of many)
        dst = out[(Ellipsis, *(slice(p.r, None, p.s) for p in combo))]
        span = [p.e0 + p.m + p.e_step * (p.n_taps - 1) for p in combo]
        src, own = ((dzp[(Ellipsis, *(slice(p.e0, e) for p, e in zip(combo, span, strict=True)))],
                     None) if shared else
                    (dz, [(-p.e0, e - o) for p, e, o in zip(combo, span, o_sp, strict=True)]))
        sub = w[(Ellipsis, *(slice(p.t0, None, p.t_step) for p in combo))]
        _correlate(src, sub, (1,) * len(stride), tuple(p.e_step for p in combo), out=dst,
                   pads=own)
    return out


# --- correlate_kernel: the kernel gradient ----------------------------------------------------

@_clipped.quiet
def correlate_kernel(x: np.ndarray, dz: np.ndarray, kernel: Sequence[int],
                     stride: Sequence[int], dilation: Sequence[int],
                     pads: Sequence[tuple[int, int]] | None = None) -> np.ndarray:
    """Valid correlation of ``x`` with the delta ``dz`` as kernel: the kernel gradient.

    ``out[g, o, c, t] = sum_{b, q} dz[b, g, o, q] * xp[b, g, c, q*s + t*d]``, ``xp = pad(x,
    pads)`` (``x`` itself when ``pads`` is None): the delta's taps ``q`` sit ``s`` apart on
    ``xp`` (the stride is the delta's dilation) and neighbouring outputs ``t`` sit ``d`` apart
    (the dilation is the output's stride). It contracts the same windows :func:`correlate`
    gathers, over the batch and the positions instead of the channels. The direct path pads
    while it packs; the others pad first. Products with padding cells are never summed
    (:mod:`._clipped` where ``x`` or ``dz`` is not finite); outputs whose windows hold no input
    are dropped and taps that read only padding get zero without being computed (:func:`_live`).

    Shape:
        - x: ``(B, G, C, *S)``, padded and cropped by ``pads`` to ``(o-1)s + d(k-1) + 1``
        - dz: ``(B, G, M, *o)``
        - output: ``(G, M, C, *kernel)``
    """
    dw = _kernel_live(x, dz, kernel, stride, dilation, pads)
    # Every delta meets every tap (through an input or the padding), so a non-finite x or dz
    # that could meet a cut connection leaves a non-finite dw, and a finite dw is already the
    # sum over the real connections: checking the small result, not the operands, costs
    # nothing, and only non-finite data pays for the second pass.
    if not _clipped.finite(dw):
        return _clipped.correlate_kernel(x, dz, kernel, stride, dilation, pads)
    return dw


def _kernel_live(x: np.ndarray, dz: np.ndarray, kernel: Sequence[int], stride: Sequence[int],
                 dilation: Sequence[int], pads: Sequence[tuple[int, int]] | None
                 ) -> np.ndarray:
    """:func:`correlate_kernel` on the outputs and taps that touch ``x`` (:func:`_live`)."""
    live = _live(x.shape[3:], kernel, stride, dilation, pads)
    if live is None:
        return _correlate_kernel(x, dz, kernel, stride, dilation, pads)
    outs, taps, inner = live
    dw = np.zeros((x.shape[1], dz.shape[2], x.shape[2], *kernel), x.dtype)
    if all(q.start < q.stop for q in outs) and all(t.start < t.stop for t in taps):
        dw[(Ellipsis, *taps)] = _correlate_kernel(
            x, dz[(Ellipsis, *outs)], tuple(t.stop - t.start for t in taps), stride, dilation,
            inner)
    return dw


def _correlate_kernel(x: np.ndarray, dz: np.ndarray, kernel: Sequence[int],
                      stride: Sequence[int], dilation: Sequence[int],
                      pads: Sequence[tuple[int, int]] | None = None) -> np.ndarray:
    """:func:`correlate_kernel` on finite operands, every output and tap touching ``x``."""
    B, G, C = x.shape[:3]
    M, o_sp = dz.shape[2], dz.shape[3:]
    k = tuple(kernel)
    K, P = math.prod(k), math.prod(o_sp)
    item = x.dtype.itemsize
    if _direct.usable(B, len(k), x.dtype, o_sp[0]) and K > 1:
        x, pads = _crop_negative(x, pads)
        return _direct.correlate_kernel(x, dz, k, stride, dilation,
                                        _threads(B * G * M * C * K * P), pads)
    if pads is not None:
        sp = [n + lo + hi for n, (lo, hi) in zip(x.shape[3:], pads, strict=True)]
        _guard(G * C * math.prod(sp) * item, "the padded input", (G, C, *sp))
        x = pad(x, pads)
    _guard(G * C * K * P * item, "the im2col columns", (G, C, *k, *o_sp))
    if _fold_ok(B, stride[-1], o_sp[-1], G * C * K * P * item):
        parts = _fold_parts(B, B * G * M * C * K * P)
        if len(parts) == 1:
            return _correlate_kernel(_fold(x), _fold(dz), k, stride, _dilate_last(dilation, B))
        # Partial kernel gradients of the parts, summed in part order.
        return sum_chunks(lambda p: _correlate_kernel(x[p[0]:p[1]], dz[p[0]:p[1]], k, stride,
                                                      dilation), parts, len(parts))
    acc = im2col_kernel(x, dz, k, stride, dilation, _chunk(B, G * C * K * P * item),
                        _threads(B * G * M * C * K * P))
    return np.ascontiguousarray(acc.swapaxes(1, 2)).reshape(G, M, C, *k)

