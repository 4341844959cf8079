r"""Direct correlation on batch-innermost blocks: the engine's optional compiled helper.

Why a compiled helper. On layers with few channels (LeNet's: 1 -> 6 and 6 -> 16 channels,
5x5 kernels) every NumPy route moves far more memory than it multiplies: im2col writes 25
copies of the input for products too thin for BLAS to run fast (6 x 25 by 25 x 50,176), kn2row
writes 25 copies of the output. Measured, one thread, float32, batch 64 (``_directc`` against
the NumPy engine): LeNet's first layer forward 0.18 ms against 0.71 ms, kernel gradient 0.16 ms
against 0.89 ms; the second layer 0.27 against 0.70 and 0.28 against 0.67 (BENCHMARKS.md).

How. Sixteen samples sit side by side in the innermost axis ("lanes"):
``xp[n, g, c, h, w, l] = x[16n + l, g, c, h, w]`` (zeros past the batch), so each multiply-add
of the correlation is one vector operation over 16 samples, whatever the stride, dilation,
width or channel count, and the loops need no gather and no remainder handling:

    out[16n + l, g, o, y, q] = bias[g, o]
        + sum_{c, ty, tx} w[g, o, c, ty, tx] * xp[n, g, c, y*sh + ty*dh, q*sw + tx*dw, l]

The kernel gradient sums the same products over ``n, y, q`` and the lanes. The C loops
(``_directc.c``) keep tiles of accumulators in registers: forward 8 output channels x 3 columns
with AVX-512 (4 x 4 otherwise; the last 1-3 channels 6-8 columns), kernel gradient 8 output
channels x 3 taps of a kernel row with AVX-512 (4 x up to 5 otherwise), summed over chunks of
output positions whose delta is first copied side by side (the delta planes lie a multiple of
4 KiB apart, and eight streams at that distance evict each other from L1). Packing into lanes
and back (16 x 16 register transposes, zero padding written on the way) is done in C too.
Spatial rank 1 and 2 (1-D as height 1); anything else, or a build without the extension, uses
the NumPy paths, which stay complete on their own: ``ROT180_PURE_NUMPY=1`` in the environment,
or ``tuning(helper=False)``, turns the helper off, and the test suite runs the engine both ways.
The helper's settings are :class:`~rot180.functional._tuning.Tuning`'s ``helper``,
``direct_min_fill``, ``direct_bands`` and ``narrow_tiles``; :func:`built` and :func:`available`
say whether it was compiled and whether it is on.

Small batches (:func:`bands`): a batch that leaves lanes empty is cut into bands of output rows,
each band an independent problem of the same shape with its own rows of the input (the kernel's
overlap read twice). Batch 8 of the benchmark's 224x224 RGB layer runs as 32 bands of 28 rows:
forward 12.7 ms against 17-21 with im2col (2 threads). Packing and unpacking place each band
directly; the sums per output are the same, so the bits are too.

Threads: blocks of 16 samples are split into contiguous ranges, one per thread (pack, correlate
and unpack of a range run together, the GIL released); kernel gradients of the ranges are
summed in range order, so results do not depend on thread timing. A batch that fills a single
block (a 1-D layer at batch 16 or less, where no rows can be cut into bands) would leave the
other threads idle: there the block is packed once and the threads share its outputs instead,
whole groups each (``G >= threads``) or, in one group, runs of output channels in multiples of
the tiles' 8 (:func:`_channel_parts`). Every output (or kernel-gradient entry) is still one
thread's sum in the loops' order, so the bits are those of one thread.

Folded problems (a strided input gradient's sub-pixel phases, a 3-D layer's depth fold) are
packed and unpacked by the helper itself: :mod:`._direct_fold`.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence

import numpy as np

from ._parallel import run_chunks, sum_chunks
from ._scratch import scratch
from ._tuning import get_tuning

try:
    from . import _directc
except ImportError:                             # built without a C compiler: NumPy only
    _directc = None

__all__ = ["built", "available", "bands", "usable", "correlate", "correlate_kernel"]

LANES = 16                                      # must match _directc.c


def built() -> bool:
    """Whether the compiled helper ``_directc`` was built (a C compiler was found at install)."""
    return _directc is not None


def available() -> bool:
    """Whether the engine may use the helper here: built, and ``get_tuning().helper`` (off under
    ``ROT180_PURE_NUMPY=1`` or ``tuning(helper=False)``)."""
    return _directc is not None and get_tuning().helper


def bands(batch: int, rows: int, threads: int) -> int:
    """How many bands of output rows each sample is cut into, 0 if none fills the lanes.

    A small batch leaves lanes empty (batch 8: half of each vector); cutting each sample's
    output rows into ``S`` bands, each computed from its own rows of the input (with the
    kernel's overlap), makes ``batch * S`` independent problems of the same shape for the
    lanes. Chosen from the shapes, the thread count and the settings: the ``S`` whose bands fill
    at least ``get_tuning().direct_min_fill`` of their blocks of 16 (batch 8 in whole samples
    fills half a block: the NumPy paths are faster there) and leave each thread the fewest rows
    (whole blocks per thread x rows per band), the smallest such ``S`` on a tie: whole
    samples (``S = 1``) unless cutting shortens the busiest thread's work. (Each band also
    packs the kernel's overlap of input rows again: cheap next to the multiply-adds, so not
    counted.) ``get_tuning().direct_bands = False``: whole samples only (the tests run both).
    Under ``tuning(force="direct")`` any fill will do (the helper is forced wherever it can run).
    """
    t = get_tuning()
    fill = 0.0 if t.force == "direct" else t.direct_min_fill
    return _bands(batch, rows, max(threads, 1), fill, t.direct_bands)


@functools.lru_cache(maxsize=1024)
def _bands(batch: int, rows: int, threads: int, min_fill: float, cut: bool) -> int:
    """:func:`bands`, cached (it runs twice per convolution call; the settings are arguments
    so that changing them is seen)."""
    best, best_cost = 0, None
    for s in range(1, max(min(rows, LANES * threads) if cut else 1, 1) + 1):
        v = batch * s
        blocks = -(-v // LANES)
        if v / (LANES * blocks) < min_fill:
            continue
        cost = -(-blocks // threads) * -(-rows // s)
        if best_cost is None or cost < best_cost:
            best, best_cost = s, cost
    return best


def usable(batch: int, nd: int, dtype: np.dtype, rows: int = 1) -> bool:
    """Whether the helper takes a correlation of this batch size, spatial rank, dtype and
    number of output rows (2-D; a small batch is cut into bands of rows, :func:`bands`)."""
    if not available() or nd not in (1, 2) or batch < 1:
        return False
    if np.dtype(dtype) not in (np.float32, np.float64):
        return False
    return bands(batch, rows if nd == 2 else 1, 1) > 0


def _ranges(blocks: int, threads: int) -> list[tuple[int, int]]:
    n = max(1, min(threads, blocks))
    step = -(-blocks // n)
    return [(b, min(blocks, b + step)) for b in range(0, blocks, step)]


def _channel_parts(G: int, M: int, threads: int) -> list[tuple[str, int, int]]:
    """How ``threads`` threads share one block of lanes: ``("g", g0, g1)`` ranges of whole
    groups when there are at least as many groups as threads, else (one group) ``("m", m0, m1)``
    ranges of output channels cut at multiples of :data:`_TILE_M` (the AVX-512 tiles' 8, so no
    part adds a remainder tile); ``[]`` where neither gives every thread a part (several
    groups but fewer than the threads, or fewer tiles of 8 channels than threads).

    Measured on ``16 x 256 x 400 -> 256, k3 s2`` (one block; 2 threads, the 2-core EPYC,
    wall, unshared and shared interleaved in one process): forward 19.4 -> 10.9 ms, kernel
    gradient 23.1 -> 13.1 ms (im2col: 11.1 and 15.8; BENCHMARKS.md, "Issue 13, third
    pass")."""
    if threads < 2:
        return []
    if G >= threads:
        return [("g", lo, hi) for lo, hi in _ranges(G, threads)]
    if G > 1:
        return []
    tiles = -(-M // _TILE_M)
    if tiles < threads:
        return []
    cuts = [min(M, round(i * tiles / threads) * _TILE_M) for i in range(threads)] + [M]
    return [("m", lo, hi) for lo, hi in zip(cuts[:-1], cuts[1:], strict=True) if hi > lo]


_TILE_M = 8                                     # output channels per forward / kernel tile

Job = tuple[str, int, int] | None               # a share of one block (None: all of it)


def _share(a: np.ndarray | None, job: Job, lanes: bool = True) -> np.ndarray | None:
    """``a``'s part in a share ``job`` of :func:`_channel_parts`: groups ``lo:hi``, or output
    channels ``lo:hi`` of the one group. ``lanes``: ``a`` has the leading block axis (results,
    packed deltas); weights, biases and kernel gradients do not. An input's lanes are shared
    by groups only (:func:`_share_input`)."""
    if a is None or job is None:
        return a
    axis, lo, hi = job
    return a[(slice(None),) * (int(lanes) + (axis == "m")) + (slice(lo, hi),)]


def _share_input(xs: np.ndarray, job: Job) -> np.ndarray:
    """Packed input lanes ``(NB, G, C, ...)`` for a share ``job``: its groups, or all of them
    when the job shares one group's output channels."""
    return xs if job is None or job[0] == "m" else xs[:, job[1]:job[2]]


def _over_blocks(blocks: int, G: int, M: int, threads: int,
                 packed: Callable[[int, int], tuple[np.ndarray, np.ndarray]],
                 compute: Callable[[np.ndarray, np.ndarray, Job], None],
                 unpack: Callable[[np.ndarray, int], None]) -> None:
    """``packed(n0, n1)`` (the lanes and the result buffer of blocks ``n0:n1``),
    ``compute(xs, res, None)`` and ``unpack(res, n0)`` over a range of blocks per thread; with
    one block, packed once and its outputs shared by the threads (``compute(xs, res, job)``
    for each job of :func:`_channel_parts`), then unpacked once."""
    shared = _channel_parts(G, M, threads) if blocks == 1 else []
    if shared:
        xs, res = packed(0, 1)
        run_chunks(lambda job: compute(xs, res, job), shared, threads)
        unpack(res, 0)
        return

    def part(r: tuple[int, int]) -> None:
        xs, res = packed(*r)
        compute(xs, res, None)
        unpack(res, r[0])

    run_chunks(part, _ranges(blocks, threads), threads)


def _summed_over_blocks(blocks: int, G: int, M: int, threads: int,
                        packed: Callable[[int, int], tuple[np.ndarray, np.ndarray]],
                        gradient: Callable[[np.ndarray, np.ndarray, np.ndarray, Job], None],
                        shape: tuple[int, ...], dtype: np.dtype) -> np.ndarray:
    """A kernel gradient over blocks: ``packed(n0, n1)`` (input and delta lanes), then
    ``gradient(xs, zs, dw, None)`` into a fresh ``dw`` of ``shape`` per range of blocks, the
    ranges' partial gradients summed in range order; with one block, each share job of
    :func:`_channel_parts` writes its own part of one ``dw``."""
    shared = _channel_parts(G, M, threads) if blocks == 1 else []
    if shared:
        xs, zs = packed(0, 1)
        acc = np.empty(shape, dtype)
        run_chunks(lambda job: gradient(xs, zs, acc, job), shared, threads)
        return acc

    def part(r: tuple[int, int]) -> np.ndarray:
        dw = np.empty(shape, dtype)
        gradient(*packed(*r), dw, None)
        return dw

    return sum_chunks(part, _ranges(blocks, threads), threads)


def _packed(flat: np.ndarray, n0: int, n1: int, G: int, C: int, hp: int, wp: int,
            bands: int = 1, step: int = 0, top: int = 0, left: int = 0,
            **depth: object) -> np.ndarray:
    """Blocks ``n0:n1`` of ``flat`` ``(B, G*C, H, W)`` packed into lanes, zero-padded to
    ``hp x wp`` (``top`` rows and ``left`` columns before), in scratch memory: shape
    ``(n1 - n0, G, C, hp, wp, 16)``. ``depth``: ``pack_padded``'s ``depth`` and ``groups``
    (``flat`` a 3-D input, ``C`` its fold's ``kd * C``)."""
    xs = scratch((n1 - n0, G, C, hp, wp, LANES), flat.dtype, "direct_x")
    _directc.pack_padded(flat, xs.reshape(n1 - n0, G * C, hp, wp, LANES), bands=bands,
                         step=step, top=top, left=left, first_block=n0, **depth)
    return xs


def _as_2d(a: np.ndarray, nd: int) -> np.ndarray:
    """A 1-D correlation as a 2-D one of height 1 (a view)."""
    return a if nd == 2 else a[..., None, :]


def _lift(nd: int, stride: Sequence[int], dilation: Sequence[int],
          pads: Sequence[tuple[int, int]] | None) -> tuple[tuple[int, ...], tuple[int, ...],
                                                          list[tuple[int, int]]]:
    """Stride, dilation and pads of a 1-D correlation as those of a 2-D one of height 1."""
    lead = 2 - nd
    pads = [(0, 0)] * nd if pads is None else list(pads)
    return ((1,) * lead + tuple(stride), (1,) * lead + tuple(dilation),
            [(0, 0)] * lead + pads)


def _plan(batch: int, out_rows: int, kh: int, sh: int, dh: int, padded_rows: int,
          threads: int) -> tuple[int, int, int]:
    """``(S, rows, hp)``: bands per sample (:func:`bands`), output rows per band, and padded
    input rows packed per band (band ``j`` reads padded rows ``j * rows * sh + [0, hp)``;
    whole samples pack all ``padded_rows``)."""
    s = bands(batch, out_rows, threads)
    rows = -(-out_rows // s)
    return s, rows, padded_rows if s == 1 else (rows - 1) * sh + (kh - 1) * dh + 1


def correlate(x: np.ndarray, w: np.ndarray, stride: Sequence[int], dilation: Sequence[int],
              out: np.ndarray, bias: np.ndarray | None, threads: int,
              pads: Sequence[tuple[int, int]] | None = None) -> None:
    """``out[b, g, o, q] = bias[g, o] + sum_{c, t} w[g, o, c, t] xp[b, g, c, q*s + t*d]``
    where ``xp`` is ``x`` zero-padded by ``pads`` (``(low, high)`` per spatial axis, >= 0). The
    padding is written while packing, and taps that read only padding are skipped. A small
    batch runs in bands of output rows (:func:`bands`).

    Shape: as :func:`rot180.functional._engine.correlate` (``out`` may be strided).
    """
    nd = x.ndim - 3
    x = np.ascontiguousarray(_as_2d(x, nd))
    w = _as_2d(w, nd)                           # any strides: the helper packs it as it reads
    out2 = _as_2d(out, nd)
    stride, dilation, ((pt, pb), (pl, pr)) = _lift(nd, stride, dilation, pads)
    B, G, C, H, W = x.shape
    M, KH = w.shape[1], w.shape[3]
    OH, OW = out2.shape[3:]
    s, rows, hp = _plan(B, OH, KH, stride[0], dilation[0], pt + H + pb, threads)
    wp = pl + W + pr
    # Whole samples: the padding rows are known and their taps skipped; bands: not.
    live = {"live_rows": (pt, pt + H) if s == 1 else (0, hp), "live_cols": (pl, pl + W)}
    b_ = None if bias is None else np.ascontiguousarray(bias).reshape(G, M)
    dst = out2 if out2.flags.c_contiguous else np.empty(out2.shape, x.dtype)
    # Whole samples unpack as one flat run each; bands as G*M planes of OH*OW.
    planes, band, plane = (1, G * M * OH * OW, G * M * OH * OW) if s == 1 else (
        G * M, rows * OW, OH * OW)
    flat = x.reshape(B, G * C, H, W)
    unpacked = dst.reshape(B, planes, plane)    # views: both are C-contiguous
    narrow = get_tuning().narrow_tiles

    def packed(n0: int, n1: int) -> tuple[np.ndarray, np.ndarray]:
        return (_packed(flat, n0, n1, G, C, hp, wp, s, rows * stride[0], pt, pl),
                scratch((n1 - n0, G, M, rows, OW, LANES), x.dtype, "direct_out"))

    def compute(xs: np.ndarray, res: np.ndarray, job: Job) -> None:
        _directc.correlate(_share_input(xs, job), _share(w, job, False), _share(res, job),
                           _share(b_, job, False), stride=stride, dilation=dilation,
                           narrow=narrow, **live)

    def unpack(res: np.ndarray, n0: int) -> None:
        _directc.unpack_bands(res.reshape(res.shape[0], planes, band, LANES), unpacked,
                              bands=s, first_block=n0)

    _over_blocks(-(-B * s // LANES), G, M, threads, packed, compute, unpack)
    if dst is not out2:                         # e.g. a sub-pixel phase of a larger output
        np.copyto(out2, dst)


def correlate_kernel(x: np.ndarray, dz: np.ndarray, kernel: Sequence[int],
                     stride: Sequence[int], dilation: Sequence[int], threads: int,
                     pads: Sequence[tuple[int, int]] | None = None) -> np.ndarray:
    """``dw[g, o, c, t] = sum_{b, q} dz[b, g, o, q] xp[b, g, c, q*s + t*d]``, shape
    ``(G, M, C, *kernel)``, where ``xp`` is ``x`` zero-padded by ``pads`` (``(low, high)`` per
    spatial axis, >= 0; written while packing). A small batch runs in bands of output rows
    (:func:`bands`); rows of the last band past the output have zero deltas and add nothing."""
    nd = x.ndim - 3
    x = np.ascontiguousarray(_as_2d(x, nd))
    dz = np.ascontiguousarray(_as_2d(dz, nd))
    k2 = (1,) * (2 - nd) + tuple(kernel)
    stride, dilation, ((pt, pb), (pl, pr)) = _lift(nd, stride, dilation, pads)
    B, G, C, H, W = x.shape
    M, OH, OW = dz.shape[2:]
    s, rows, hp = _plan(B, OH, k2[0], stride[0], dilation[0], pt + H + pb, threads)
    wp = pl + W + pr
    flat, zf = x.reshape(B, G * C, H, W), dz.reshape(B, G * M, OH, OW)
    narrow = get_tuning().narrow_tiles

    def packed(n0: int, n1: int) -> tuple[np.ndarray, np.ndarray]:
        xs = _packed(flat, n0, n1, G, C, hp, wp, s, rows * stride[0], pt, pl)
        zs = scratch((n1 - n0, G, M, rows, OW, LANES), x.dtype, "direct_dz")
        _directc.pack_padded(zf, zs.reshape(n1 - n0, G * M, rows, OW, LANES), bands=s,
                             step=rows, first_block=n0)
        return xs, zs

    acc = _summed_over_blocks(-(-B * s // LANES), G, M, threads, packed,
                              kernel_gradient(stride, dilation, narrow),
                              (G, M, C, *k2), x.dtype)
    return acc.reshape(G, M, C, *kernel)


def kernel_gradient(stride: Sequence[int], dilation: Sequence[int], narrow: bool
                    ) -> Callable[[np.ndarray, np.ndarray, np.ndarray, Job], None]:
    """``gradient(xs, zs, dw, job)`` for :func:`_summed_over_blocks`: the helper's kernel
    gradient of input lanes ``xs`` and delta lanes ``zs`` into ``dw`` (a share ``job``'s
    part of each)."""
    def gradient(xs: np.ndarray, zs: np.ndarray, dw: np.ndarray, job: Job) -> None:
        _directc.correlate_kernel(_share_input(xs, job), _share(zs, job), _share(dw, job, False),
                                  stride=tuple(stride), dilation=tuple(dilation), narrow=narrow)
    return gradient
