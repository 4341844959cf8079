r"""Winograd F(2x2, 3x3) for 3x3 stride-1 correlations: 2.25x fewer multiplications.

Why. On large-channel 3x3 layers (64-512 channels) every other realisation is one big product
(im2col's columns, kn2row's shifted sums, the helper's lanes) running at ~90 % of this
machine's sgemm rate already; the only way ahead is fewer multiplications. Winograd's minimal
filtering (Lavin & Gray 2015, "Fast Algorithms for Convolutional Neural Networks") computes a
2 x 2 block of outputs of a 3 x 3 correlation from a 4 x 4 tile of its input with 16
multiplications instead of 36.

The derivation (one tile; ``d`` the 4 x 4 input tile, ``g`` one 3 x 3 kernel plane)::

    Y = A^T [ (G g G^T) (.) (B^T d B) ] A          (.) : elementwise, 16 products

    B^T = [[1, 0, -1, 0],    G = [[  1,    0,   0],    A^T = [[1, 1,  1,  0],
           [0, 1,  1, 0],         [1/2,  1/2, 1/2],           [0, 1, -1, -1]]
           [0,-1,  1, 0],         [1/2, -1/2, 1/2],
           [0, 1,  0,-1]]         [  0,    0,   1]]

(1-D: ``F(2, 3)`` gives ``y0 = d0 g0 + d1 g1 + d2 g2`` and ``y1 = d1 g0 + d2 g1 + d3 g2`` from
the four products ``(d0 - d2) g0``, ``(d1 + d2)(g0 + g1 + g2)/2``, ``(d2 - d1)(g0 - g1 + g2)/2``,
``(d1 - d3) g2``; the 2-D form nests it along both axes.) Over channels the elementwise
products become sums, so for each of the 16 cells ``(a, b)`` of the transformed tile the layer
is one matrix product::

    m[ab] (M x T) = U[ab] (M x C) @ V[ab] (C x T)
    U[ab, o, c] = (G w[o, c] G^T)[a, b]       once per call and group
    V[ab, c, t] = (B^T d_{c,t} B)[a, b]        the input tiles, stride 2 (they overlap by 2)
    out tile t  = A^T m_t A + bias

Multiply-adds per 2 x 2 outputs: ``16 C M`` instead of ``36 C M``; the transforms are linear
passes over the input (writing 4x its size as ``V``) and the output (reading ``m``, 4x its
size), and ``U`` (16/9 of the weights) per call.

Layout and chunks. Tile ``t = r * TW + j``: ``r`` a flattened (sample, tile row) pair,
``TH = ceil(OH / 2)`` tile rows per sample, ``TW = ceil(OW / 2)`` tiles per row. Ragged edges:
the input reads as zeros past its padded extent, and outputs at or past ``(OH, OW)`` are
dropped. The padding is applied while the tiles are gathered (``pads_itself``; a negative pad
crops), never as a padded copy. A call's tile rows are cut into chunks of about
``Tuning.winograd_chunk_tiles`` tiles (each product packs its ``U[ab]`` again: shorter products
waste that, longer ones spill ``V`` and ``m`` from the caches); each chunk gathers its tiles,
runs the 16 products as one batched ``np.matmul`` (single-threaded BLAS in a pooled region,
:func:`~._parallel.run_chunks`) and writes its own output rows, a whole number of chunks per
thread. With fewer chunks than threads (batch 1, small images) each chunk's products are split
by output channels instead, its tiles gathered split by input channels, so that the products
keep their length. Chunks and splits come from the shapes and the thread count alone, so the
bits do too. ``V``'s and ``m``'s 16 cells lie whole pages plus 64 bytes apart (at a multiple
of 4 KiB their store streams evict each other from L1).

The input gradient's kernel. ``conv_grad_input`` passes ``rot180(w)`` with its channel axes
swapped, a view whose values lie a cache line apart; ``U`` is formed from ``w`` itself instead:
reversing a kernel row reverses the columns of ``G``, and ``G J = P G`` with ``P`` swapping
rows 0 and 3, so ``U(rot180 g) = P U(g) P^T`` (the cells permuted), used transposed by the
products (BLAS's ``T``, no copy).

The products. Up to ``Tuning.winograd_fused_max_channels`` (192) channels the compiled helper
runs each thread's tile rows in one call (``_winogradc.forward_tiles``, :func:`_fused`): per
chunk the input transform, the 16 products with 16 tiles in the vector lanes (``U`` read
transposed, ``ut[ab, c, o]``), the output transform, all in cache and without the GIL;
BLAS's kernels at these short products ran at 55-70 % of the matmul rate. Above it BLAS
multiplies (:func:`_blas`), where its kernels beat the helper's. The two sum the products in
different orders: equal to rounding, not in the bits.

The transforms are one pass each in the compiled helper ``_winogradc.c`` (built optional); the
NumPy functions here (:func:`input_tiles`, :func:`output_tiles`, :func:`kernel_tiles`)
compute the same sums in the same order (the same bits: ``tests/test_winograd.py``) and run
when the helper is off (``tuning(helper=False)``) or not built.

Accuracy. The coefficients (0, +-1, 1/2) are exact in binary; ``U`` is formed in float64 and
rounded once. What F(2x2, 3x3) adds is the cancellation in the transformed sums. Measured
against float64 on float32 layers (3x3, padding 1, 16-512 channels, sizes 7-16, weights of
variance 1 / (9 C)): the largest error is 2e-7 .. 9.3e-7 of the output's largest magnitude,
against 4e-7 .. 7.9e-7 for im2col and 4e-7 .. 2.4e-6 for the direct helper (whose sums run
along the channels one by one); tests/test_winograd.py holds it under 4e-6.

Non-finite data. A tile mixes its 16 input cells before any product, so an ``inf`` in the input
gives NaN in neighbouring outputs where a direct sum gives ``inf``. The entry points send
non-finite weights to ``clipped`` already; a non-finite *result* here (a non-finite input or
delta) is recomputed by ``clipped`` (IEEE semantics over the real connections), so the NaN and
inf positions are those of every other realisation.

Where it is chosen: :func:`_prefer` (the measured table).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from . import _clipped
from ._parallel import run_chunks
from ._realisation import Problem, Realisation
from ._scratch import scratch
from ._tuning import Tuning, get_tuning

if TYPE_CHECKING:
    from ._plan import Plan

try:
    from . import _winogradc
except ImportError:                             # built without a C compiler: NumPy only
    _winogradc = None

__all__ = ["REALISATION", "built", "input_tiles", "output_tiles", "kernel_tiles", "tiles"]


def built() -> bool:
    """Whether the compiled transforms ``_winogradc`` were built."""
    return _winogradc is not None


def tiles(out_sp: tuple[int, int]) -> tuple[int, int]:
    """``(TH, TW)``: tile rows and tiles per row of an ``(OH, OW)`` output (ragged: ceil)."""
    return -(-out_sp[0] // 2), -(-out_sp[1] // 2)


# --- the transforms in NumPy (the same sums, in the same order, as _winogradc.c) --------------

def input_tiles(x: np.ndarray, v: np.ndarray, top: int, left: int, bottom: int, right: int,
                first_row: int) -> None:
    """``v[4a + b, c, t] = (B^T d_t B)[a, b]`` for the tiles of ``x`` padded by the pads.

    Shape: ``x`` (B, C, H, W), ``v`` (16, C, n TW) for tile rows ``first_row .. + n`` of the
    ``B TH`` (sample, tile row) pairs, ``OH = H + top + bottom - 2`` (``OW`` likewise).
    """
    B, C, H, W = x.shape
    TH, TW = tiles((H + top + bottom - 2, W + left + right - 2))
    n = v.shape[2] // TW
    hlim, wlim = min(H, H + bottom), min(W, W + right)
    for b, i0, i1, r in _segments(first_row, n, TH):
        t0 = r * TW
        # The padded rows 2 i0 .. 2 i1 + 2 and columns 0 .. 2 TW + 2 of sample b (zeros outside).
        rows, cols = 2 * (i1 - i0) + 2, 2 * TW + 2
        P = np.zeros((C, rows, cols), x.dtype)
        y0, y1 = max(0, 2 * i0 - top), min(hlim, 2 * i0 + rows - top)
        q0, q1 = max(0, -left), min(wlim, cols - left)
        if y0 < y1 and q0 < q1:
            P[:, y0 + top - 2 * i0:y1 + top - 2 * i0, q0 + left:q1 + left] = x[b, :, y0:y1, q0:q1]
        R = [P[:, k:k + 2 * (i1 - i0):2] for k in range(4)]      # (C, rows of tiles, cols)
        e = (R[0] - R[2], R[1] + R[2], R[2] - R[1], R[1] - R[3])
        for a in range(4):
            ev, od = e[a][..., 0::2], e[a][..., 1::2]            # columns 2j and 2j + 1
            dst = [v[4 * a + k, :, t0:t0 + (i1 - i0) * TW].reshape(C, i1 - i0, TW)
                   for k in range(4)]
            np.subtract(ev[..., :-1], ev[..., 1:], out=dst[0])
            np.add(od[..., :-1], ev[..., 1:], out=dst[1])
            np.subtract(ev[..., 1:], od[..., :-1], out=dst[2])
            np.subtract(od[..., :-1], od[..., 1:], out=dst[3])


def output_tiles(m: np.ndarray, out: np.ndarray, bias: np.ndarray | None,
                 first_row: int) -> None:
    """``out``'s 2 x 2 blocks ``A^T m_t A + bias`` for tile rows ``first_row .. + n``.

    Shape: ``m`` (16, M, n TW), ``out`` (B, M, OH, OW), ``bias`` (M,) or None.
    """
    B, M, OH, OW = out.shape
    TH, TW = tiles((OH, OW))
    n = m.shape[2] // TW
    for b, i0, i1, r in _segments(first_row, n, TH):
        t0 = r * TW
        mk = [m[k, :, t0:t0 + (i1 - i0) * TW].reshape(M, i1 - i0, TW) for k in range(16)]
        s0 = [mk[c] + mk[4 + c] + mk[8 + c] for c in range(4)]
        s1 = [mk[4 + c] - mk[8 + c] - mk[12 + c] for c in range(4)]
        Y = np.empty((M, i1 - i0, 2, TW, 2), out.dtype)
        for p, s in enumerate((s0, s1)):
            Y[:, :, p, :, 0] = s[0] + s[1] + s[2]
            Y[:, :, p, :, 1] = s[1] - s[2] - s[3]
        if bias is not None:
            Y += bias.reshape(M, 1, 1, 1, 1)
        Y = Y.reshape(M, 2 * (i1 - i0), 2 * TW)
        rows = min(OH, 2 * i1) - 2 * i0
        out[b, :, 2 * i0:2 * i0 + rows] = Y[:, :rows, :OW]


def kernel_tiles(w: np.ndarray, u: np.ndarray, rotated: bool = False) -> None:
    """``u[4a + b, o, c] = (G w[o, c] G^T)[a, b]``, formed in float64 and rounded once;
    ``rotated``: that of ``w[o, c]`` rotated by 180 degrees, ``(G w G^T)[p(a), p(b)]`` with
    ``p = (3, 1, 2, 0)`` (reversing a kernel row reverses the columns of ``G``, and ``G J``
    is ``G`` with rows 0 and 3 swapped).

    Shape: ``w`` (M, C, 3, 3), ``u`` (16, M, C).
    """
    g = w.astype(np.float64, copy=False)
    cell = (3, 1, 2, 0) if rotated else (0, 1, 2, 3)

    def rows(a: np.ndarray, b: np.ndarray, e: np.ndarray) -> tuple[np.ndarray, ...]:
        return a, 0.5 * (a + b + e), 0.5 * (a - b + e), e

    h = rows(g[:, :, 0, :], g[:, :, 1, :], g[:, :, 2, :])        # G g: 4 x (M, C, 3)
    for a in range(4):
        f = rows(h[a][..., 0], h[a][..., 1], h[a][..., 2])       # (G g) G^T
        for b in range(4):
            u[4 * cell[a] + cell[b]] = f[b]


def _segments(first: int, n: int, TH: int) -> list[tuple[int, int, int, int]]:
    """The tile rows ``first .. first + n`` as runs within one sample: ``(sample, i0, i1,
    t0)``, ``t0`` the run's first tile row within the chunk."""
    runs, r, end = [], first, first + n
    while r < end:
        b, i0 = divmod(r, TH)
        i1 = min(TH, i0 + end - r)
        runs.append((b, i0, i1, r - first))
        r += i1 - i0
    return runs


# --- the realisation ------------------------------------------------------------------------

def _accepts(p: Problem, t: Tuning) -> bool | str:
    if p.entry != "forward":
        return ("forward passes only (a stride-1 input gradient reaches it as its padded "
                "delta's correlation)")
    if p.kernel != (3, 3):
        return "2-D 3x3 kernels only"
    if not p.unit_stride or any(d != 1 for d in p.dilation):
        return "stride 1 and dilation 1 only"
    if np.dtype(p.dtype) not in (np.float32, np.float64):
        return "float32 and float64 only"
    return True


def _prefer(p: Problem, t: Tuning) -> bool:
    """Where it beats the rule's choice (the helper ``direct`` on these shapes, im2col at
    batch 1 of 7x7), with ``_winogradc`` built and the helper on (the NumPy transforms are
    ~2x slower: never preferred), and the call has at least ``t.winograd_min_tiles`` (64)
    tiles: below that (batch 1 of 14 x 14: 49 tiles) the rule's choice took 0.70-0.85 of
    Winograd's time (Xeon, 2 threads, forward passes interleaved: 1 x {64, 128, 192, 256,
    512} x 14 x 14 0.70, 0.83, 0.79, 0.81, 0.85), and at 98-100 tiles it was even (2 x 256 x
    14 x 14 0.98, 1 x 128 x 20 x 20 about 1; BENCHMARKS.md, "Issue 13, sixth pass"). The
    numbers are :class:`~._tuning.Tuning` fields (the defaults shown):

    ========================  ==================  ========================================
    channels (C in, M out)    output size         measured, Winograd / helper, 2 threads
    ========================  ==================  ========================================
    min(C, M) >= 112          >= 14 x 14          Xeon: 112 0.89-0.93, 128 0.76-0.99,
                                                  256 0.68-0.89; 96 1.04-1.09, 64 1.27-1.56
    48 <= min, max <= 192     >= 14 x 14          the compiled products (below): 0.72-0.96
    min(C, M) >= 384          >= 128 tiles        512 @ 7 x 7 batch 8: 0.90 (batch 1: 2.2)
    min >= 112, max >= 64     >= 32 x 32          (inside the first row by default)
    ========================  ==================  ========================================

    The compiled products (``winograd_fused_max_channels``, ``winograd_fused_min_channels``,
    the second row; ``_fused``) were measured on the Xeon, forward passes at 2 threads
    interleaved with the helper, batch 8-64 (BENCHMARKS.md, "Issue 13, fifth pass"): 48 -> 64
    at 32 x 32 0.91, 64 -> 64 at 16-56 0.81-0.96, 64 -> 128 at 16 0.82, 96 at 16-28 0.89, 128
    at 16-28 0.75-0.79, 160-192 at 14 0.72-0.75; and lost at 8 x 8 and 7 x 7 (64 -> 64 1.25,
    128 -> 64 1.06, 128 -> 128 0.98-1.56) and at 32 channels (1.17), which the rows leave out.

    The fields, row by row: ``winograd_min_channels``, ``winograd_min_size``;
    ``winograd_min_channels_any``, ``winograd_min_tiles_any``; ``winograd_wide_min``,
    ``winograd_wide_max``, ``winograd_wide_size``.

    Two machines. The rows were first measured on a 2-core AMD EPYC (Zen 4, whose AVX-512
    runs at half width), where Winograd paid from 64 channels at 1 thread (0.62-1.01) and
    at 2 threads was even with the helper at 64 -> 64 (0.98) and ahead at 48 -> 64 on 32 x 32
    (0.89): the thresholds were 64 and, for the third row, 48. On a 2-core Xeon with full-width
    AVX-512 (twice the multiply-add rate, the same memory) the helper's loops gained on the
    transforms, which are passes over memory, and at 2 threads (forward and input-gradient
    passes, batch 8-64, 14-56 pixels, interleaved in one process) the helper took 0.64-0.79
    of Winograd's time at 64 -> 64, 0.71-0.75 at 48 -> 64 on 32 x 32, 0.92-0.96 at 96 ->
    96, and Winograd won from 112 (0.89-0.93 of the helper's time) and 128 (0.76-0.99; 256:
    0.68-0.89). 64 <-> 128 split both ways (0.89-1.13). So the first row starts at 112 and
    the third row's minimum is 112 too (which puts it inside the first): on the EPYC that
    gives up at most the 2 % of 64 -> 64 and the 11 % of 48 -> 64, on the Xeon it saves
    21-36 %. A machine where 48-96 channels pay again turns the third row back on with
    ``tuning(winograd_wide_min=48)``. (BENCHMARKS.md, "Issue 13, fourth pass".)

    Not preferred: fewer channels (16 -> 16, 16 <-> 64, 32 -> 32: 0.97-5.2 on the EPYC, the
    transforms cost about what the products save), 7 x 7 below 384 channels (0.94-1.07 batch
    8, up to 1.7 at batch 32: a ragged 4 x 4 grid of tiles computes 64 outputs for 49, and the
    products are short).

    First measured on the EPYC (OpenBLAS 0.3.31 SkylakeX), float32, padding 1, forward passes
    of C, M in {3, 16, 32, 64, 128, 256, 512} (and 16 <-> 64, 32 <-> 64, 48 -> 64), sizes 7,
    12, 14, 28, 32, 56, batch 1, 8, 16, 32, 64 (BENCHMARKS.md, "Winograd"). A stride-1 input
    gradient is the same forward problem with C and M swapped, so the same rule serves it.
    """
    if not (t.helper and _winogradc is not None):
        return False
    B, M = p.x[0], p.w[1]
    C = p.x[2]
    OH, OW = p.out_sp
    TH, TW = tiles(p.out_sp)
    n_tiles = B * TH * TW
    if n_tiles < t.winograd_min_tiles:
        return False
    low, size = min(C, M), min(OH, OW)
    fused = max(C, M) <= t.winograd_fused_max_channels and low >= t.winograd_fused_min_channels
    return ((low >= t.winograd_min_channels and size >= t.winograd_min_size)
            or (fused and size >= t.winograd_min_size)
            or (low >= t.winograd_min_channels_any and n_tiles >= t.winograd_min_tiles_any)
            or (low >= t.winograd_wide_min and max(C, M) >= t.winograd_wide_max
                and size >= t.winograd_wide_size))


def _forward(plan: Plan, x: np.ndarray, w: np.ndarray, out: np.ndarray,
             bias: np.ndarray | None) -> None:
    """``out = correlate(pad(x), w) + bias`` (valid, stride 1) by F(2x2, 3x3).

    Shape: ``x`` (B, G, C, H, W) unpadded (``plan.problem.pads`` applied here), ``w``
    (G, M, C, 3, 3), ``out`` (B, G, M, OH, OW), ``bias`` (G, M) or None.
    """
    p = plan.problem
    t = get_tuning()
    pads = p.pads if p.pads is not None else ((0, 0), (0, 0))
    c = _winogradc if (t.helper and _winogradc is not None) else None
    threads = max(1, plan.threads)
    C, M = x.shape[2], w.shape[1]
    if c is not None and max(C, M) <= t.winograd_fused_max_channels:
        size = _chunk_rows(C, M, out.shape[4], x.dtype, t.winograd_fused_chunk_tiles, t)
        _fused(c, x, w, out, bias, pads, size, threads, t.narrow_tiles)
    else:
        size = _chunk_rows(C, M, out.shape[4], x.dtype, t.winograd_chunk_tiles, t)
        _blas(c, x, w, out, bias, pads, size, threads)
    # A tile mixes its input cells: a non-finite input (or delta) would put NaN where a direct
    # sum has inf. Recompute such a call over the real connections (module docstring).
    if not _clipped.finite(out):
        _clipped.correlate(x, w, p.stride, p.dilation, out, bias, p.pads)


def _chunk_rows(C: int, M: int, OW: int, dtype: np.dtype, tiles_: int, t: Tuning) -> int:
    """Tile rows a chunk: about ``tiles_`` tiles (each chunk's ``V`` and ``m`` stay in cache;
    shorter products waste their loop overheads, and BLAS packs ``U[ab]`` again), at most
    ``4 chunk_bytes`` of ``V`` and ``m``.

    BLAS's products (``winograd_chunk_tiles``), forward passes, 128 -> 256 tiles a chunk,
    1 thread: 64x32x32x32 -> 64 23.6 -> 21.3 ms, 32x128x16x16 16.1 -> 16.6, 8x512x7x7 17.7 ->
    17.7, 64x96x32x32 -> 32 37.7 -> 31.1; 2 threads (quiet machine, wall): 19.4 -> 16.6, 11.3
    -> 9.7, 11.4 -> 10.2, 24.0 -> 18.6 (fewer chunks: less Python time under the GIL);
    earlier, 1 thread: 64 tiles 20.6 against 128 18.1 on 8x512x7x7, 512 tiles 19.7 on
    32x128x16x16. The compiled products (``winograd_fused_chunk_tiles``), 2 threads, 64 /
    128 / 256 / 512 tiles: 64x64x16x16 -> 64 4.34 / 4.29 / 4.66 / 4.78 ms, 32x128x16x16 6.37
    / 6.59 / 6.78 / 6.60, 8x96x28x28 3.69 / 3.56 / 3.53 / 3.58 (BENCHMARKS.md, "Engine
    thresholds")."""
    TW = -(-OW // 2)
    per_row = 16 * (C + M) * TW * np.dtype(dtype).itemsize
    return max(1, min(-(-tiles_ // TW), 4 * t.chunk_bytes // per_row))


def _kernel_jobs(w: np.ndarray, threads: int) -> tuple[np.ndarray, bool, list]:
    """The kernel to transform and the rows of it each thread transforms. The input gradient's
    kernel is a view, rot180 of the layer's kernel with its channel axes swapped: reading it so
    takes a cache line per value (8x512x7x7: 7.9 ms against 3.0), so U is formed from the
    layer's kernel itself (``swapped``), cells permuted (``rotated=True``), its rows the
    call's input channels."""
    G, M, C = w.shape[:3]
    wk = w[..., ::-1, ::-1].swapaxes(1, 2)
    swapped = w.strides[-1] < 0 and w.strides[-2] < 0 and wk.flags.c_contiguous
    if not swapped:
        wk = w
    rows_k = wk.shape[1]
    jobs = [(g, k0, k1) for g in range(G)
            for k0, k1 in _split(rows_k, threads if M * C >= 4096 else 1)]
    return wk, swapped, jobs


def _fused(c, x: np.ndarray, w: np.ndarray, out: np.ndarray, bias: np.ndarray | None, pads,
           size: int, threads: int, narrow: bool) -> None:
    """The compiled products: ``U`` transposed, ``ut (G, 16, C, Mp)`` (``Mp``: ``M`` rounded up to
    8, zeros past ``M``), then one :func:`_winogradc.forward_tiles` call per thread and group,
    each over its own tile rows (or, with fewer chunks than threads, its own output channels,
    in multiples of 8, every thread gathering all the tiles), chunk by chunk in cache."""
    (top, bottom), (left, right) = pads
    B, G, C = x.shape[:3]
    M = w.shape[1]
    TH, TW = tiles(out.shape[3:])
    rows = B * TH
    Mp = -(-M // 8) * 8
    ut = scratch((G, 16, C, Mp), x.dtype, "winograd-ut")
    ut[..., M:] = 0
    wk, swapped, jobs = _kernel_jobs(w, threads)

    def kernel(job: tuple[int, int, int]) -> None:
        g, k0, k1 = job
        dst = ut[g, :, k0:k1, :M] if swapped else ut[g, :, :, k0:k1].swapaxes(1, 2)
        c.kernel_tiles(wk[g, k0:k1], dst, rotated=swapped)

    run_chunks(kernel, jobs, threads)
    n = -(-rows // size)
    if n >= threads or M < 16:
        parts = [(r0, r1, 0, M) for r0, r1 in _split(rows, threads)]
    else:                               # few chunks: split the output channels instead
        cuts = [8 * a for a, _ in _split(Mp // 8, threads)] + [M]
        parts = [(0, rows, m0, m1) for m0, m1 in zip(cuts[:-1], cuts[1:], strict=True)]
    Tp = -(-size * TW // 16) * 16

    def run(job: tuple[int, tuple[int, int, int, int]]) -> None:
        g, (r0, r1, m0, m1) = job
        v = _cells(C, Tp, x.dtype, "winograd-v")
        m = _cells(m1 - m0, Tp, x.dtype, "winograd-m")
        c.forward_tiles(x[:, g], ut[g, :, :, m0:], out[:, g, m0:m1],
                        None if bias is None else bias[g, m0:m1], v=v, m=m, top=top, left=left,
                        bottom=bottom, right=right, first_row=r0, rows=r1 - r0,
                        chunk_rows=size, narrow=narrow)

    run_chunks(run, [(g, part) for g in range(G) for part in parts], threads)


def _blas(c, x: np.ndarray, w: np.ndarray, out: np.ndarray, bias: np.ndarray | None, pads,
          size: int, threads: int) -> None:
    """BLAS's products: U, then chunks of tile rows, each gathered (by ``c``'s transforms, or
    NumPy's where ``c`` is None), multiplied (one batched matmul) and written, a whole number
    of chunks per thread; with fewer chunks than threads each chunk's products split by output
    channels (the threads share its V, gathered split by input channels), not into shorter
    products. Chunks and splits come from the shapes and the thread count alone, so the bits
    do too."""
    (top, bottom), (left, right) = pads
    B, G, C = x.shape[:3]
    M = w.shape[1]
    TH, TW = tiles(out.shape[3:])
    rows = B * TH
    dtype = x.dtype
    wk, swapped, jobs = _kernel_jobs(w, threads)
    if swapped:
        uk = scratch((G, 16, C, M), dtype, "winograd-u")    # reused pages: no page faults
        u = uk.swapaxes(2, 3)                               # used transposed (BLAS's "T")
    else:
        uk = u = scratch((G, 16, M, C), dtype, "winograd-u")

    def kernel(job: tuple[int, int, int]) -> None:
        g, k0, k1 = job
        (c.kernel_tiles if c is not None else kernel_tiles)(wk[g, k0:k1], uk[g, :, k0:k1],
                                                            rotated=swapped)

    run_chunks(kernel, jobs, threads)
    n = -(-rows // size)
    if n >= threads:                    # a whole number of chunks per thread
        chunks = _split(rows, -(-n // threads) * threads)
        run_chunks(lambda job: _tiles(c, x, u, out, bias, top, left, bottom, right, *job),
                   [(g, r0, r1) for g in range(G) for r0, r1 in chunks], threads)
        return
    for g in range(G):
        for r0, r1 in _split(rows, n):
            v = _cells(C, (r1 - r0) * TW, dtype, "winograd-shared-v")
            run_chunks(lambda job: _gather(c, *job, top, left, bottom, right),
                       [(x[:, g, c0:c1], v[:, c0:c1], r0) for c0, c1 in _split(C, threads)],
                       threads)
            run_chunks(lambda job: _products(c, *job),
                       [(v, u[g, :, m0:m1], out[:, g, m0:m1],
                         None if bias is None else bias[g, m0:m1], r0)
                        for m0, m1 in _split(M, threads)], threads)


def _gather(c, x: np.ndarray, v: np.ndarray, r0: int, top: int, left: int, bottom: int,
            right: int) -> None:
    """The input tiles of tile rows ``r0 ..`` of ``x`` (B, C, H, W) into ``v`` (16, C, T)."""
    if c is not None:
        c.input_tiles(x, v, top=top, left=left, bottom=bottom, right=right, first_row=r0)
    else:
        input_tiles(x, v, top, left, bottom, right, r0)


def _products(c, v: np.ndarray, u: np.ndarray, out: np.ndarray, bias: np.ndarray | None,
              r0: int) -> None:
    """The 16 products ``U[ab] @ V[ab]`` (one batched matmul) and the output tiles."""
    m = _cells(u.shape[1], v.shape[2], v.dtype, "winograd-m")
    np.matmul(u, v, out=m)
    if c is not None:
        c.output_tiles(m, out, bias, first_row=r0)
    else:
        output_tiles(m, out, bias, r0)


def _tiles(c, x: np.ndarray, u: np.ndarray, out: np.ndarray, bias: np.ndarray | None,
           top: int, left: int, bottom: int, right: int, g: int, r0: int, r1: int) -> None:
    """One chunk: tile rows ``r0 .. r1`` of group ``g``, gathered, multiplied and written."""
    TW = tiles(out.shape[3:])[1]
    v = _cells(x.shape[2], (r1 - r0) * TW, x.dtype, "winograd-v")
    _gather(c, x[:, g], v, r0, top, left, bottom, right)
    _products(c, v, u[g], out[:, g], None if bias is None else bias[g], r0)


def _cells(rows: int, cols: int, dtype: np.dtype, tag: str) -> np.ndarray:
    """A ``(16, rows, cols)`` scratch array whose 16 cells lie whole pages plus 64 bytes
    apart: where ``rows * cols`` fills whole 4 KiB pages, 16 (or 4) streams of writes at that
    distance map to one L1 set and evict each other (8x512x7x7: gathering 1.46 -> 0.69 ms)."""
    item = np.dtype(dtype).itemsize
    stride = -(-rows * cols * item // 4096) * 4096 // item + 64 // item
    return scratch((16, stride), dtype, tag)[:, :rows * cols].reshape(16, rows, cols)


def _split(n: int, parts: int) -> list[tuple[int, int]]:
    """``range(n)`` in ``min(parts, n)`` contiguous pieces of near-equal size (from the sizes
    only)."""
    k = max(1, min(parts, n))
    step, extra = divmod(n, k)
    bounds = [i * step + min(i, extra) for i in range(k + 1)]
    return list(zip(bounds[:-1], bounds[1:], strict=True))


REALISATION = Realisation(
    "winograd", "Winograd F(2x2, 3x3): 16 products over the transformed tiles",
    "2-D 3x3 stride-1 dilation-1 float32/64 forward passes (and so stride-1 input "
    "gradients)", _accepts, _forward, pads_itself=True, prefer=_prefer)
