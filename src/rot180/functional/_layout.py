"""The engine's shape arithmetic: output sizes, live windows, sub-pixel phases, batch chunks.

Shape-only functions the planner (:mod:`._plan`) uses to describe a correlation before any
array is touched; the thresholds they read come from :class:`~._tuning.Tuning` (passed in).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from ._kn2row import Phase
from ._tuning import Tuning, get_tuning
from .shapes import conv_output_size, live_window

Pads = tuple[tuple[int, int], ...]


def out_shape(x_sp: Sequence[int], k: Sequence[int], stride: Sequence[int],
              dilation: Sequence[int], pads: Sequence[tuple[int, int]] | None
              ) -> tuple[int, ...]:
    pads = [(0, 0)] * len(k) if pads is None else pads
    return tuple(conv_output_size(n, kk, s, lo, hi, d) for n, kk, s, (lo, hi), d
                 in zip(x_sp, k, stride, pads, dilation, strict=True))


def live(x_sp: Sequence[int], k: Sequence[int], stride: Sequence[int],
         dilation: Sequence[int], pads: Sequence[tuple[int, int]] | None
         ) -> tuple[tuple[slice, ...], tuple[slice, ...], Pads] | None:
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
    o_sp = out_shape(x_sp, k, stride, dilation, pads)
    if all(qa == 0 and qb == o and ta == 0 and tb == kk
           for (qa, qb, ta, tb, _, _), o, kk in zip(axes, o_sp, k, strict=True)):
        return None
    return (tuple(slice(a[0], a[1]) for a in axes), tuple(slice(a[2], a[3]) for a in axes),
            tuple((a[4], a[5]) for a in axes))


def guard(sample_bytes: int, what: str, shape: Sequence[int]) -> None:
    """Refuse to expand one sample beyond ``Tuning.max_sample_bytes``."""
    limit = get_tuning().max_sample_bytes
    if sample_bytes > limit:
        raise ValueError(
            f"convolution: {what} of one sample would need {sample_bytes / 2**30:.1f} GiB "
            f"(shape {tuple(shape)}), more than the {limit / 2**30:.0f} GiB allowed. "
            "Use a smaller input, padding or dilation, or split the input into tiles."
        )


def phases(i: int, s: int, lo: int, d: int, k: int) -> list[Phase]:
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


def stretched_size(o_sp: Sequence[int], stride: Sequence[int],
                   pairs: Sequence[tuple[int, int]], dilation: Sequence[int],
                   k: Sequence[int]) -> tuple[int, ...]:
    """Output sizes of ``correlate_stretched``: a stride-1 correlation of the stretched delta
    (``(o-1)s + 1`` cells) padded by ``pairs``, ``(o-1)s + 1 + low + high - d(k-1)``."""
    return tuple(conv_output_size((o - 1) * s + 1, kk, 1, lo, hi, d) for o, s, (lo, hi), d, kk
                 in zip(o_sp, stride, pairs, dilation, k, strict=True))


def phase_axes(i_sp: Sequence[int], stride: Sequence[int], pairs: Sequence[tuple[int, int]],
               dilation: Sequence[int], k: Sequence[int]) -> tuple[tuple[Phase, ...], ...]:
    """The sub-pixel phases of every axis of ``correlate_stretched``."""
    return tuple(tuple(phases(i, s, lo, d, kk))
                 for i, s, (lo, _), d, kk in zip(i_sp, stride, pairs, dilation, k, strict=True))


def chunk(batch: int, bytes_per_sample: int, t: Tuning, threads: int = 1) -> int:
    """Samples per batch chunk: about ``t.chunk_bytes`` of expanded input, at most; with
    ``threads`` > 1 the chunks are evened out to a multiple of the threads (64 samples in
    chunks of 28 on 2 threads: 28 + 8 against 28 on the other; evened: 4 chunks of 16)."""
    c = max(1, min(batch, t.chunk_bytes // max(1, bytes_per_sample)))
    if threads > 1 and batch > 1:
        n = -(-batch // c)
        n = -(-n // threads) * threads                  # a multiple of the threads
        c = max(1, -(-batch // n))
    return c


def fold_parts(batch: int, threads: int) -> tuple[tuple[int, int], ...]:
    """A folded batch runs whole, or split into one part per thread: the parts of the batch,
    from the shapes and the thread count only (never from timing)."""
    n = min(threads, batch // 2)
    step = -(-batch // max(n, 1))
    return tuple((b, min(batch, b + step)) for b in range(0, batch, step))


def fold_ok(batch: int, last_stride: int, row: int, bytes_per_sample: int, t: Tuning) -> bool:
    """Whether the batch is folded into the rows: short rows, and the whole batch in a chunk."""
    return (batch > 1 and last_stride == 1 and row < t.fold_max_row
            and batch * bytes_per_sample <= t.chunk_bytes)


def expanded_bytes(w_shape: Sequence[int], in_sp: Sequence[int], out_sp: Sequence[int],
                   itemsize: int, kn2row: bool) -> int:
    """Per sample: kn2row's ``Y`` (``k^D`` copies of the output channels at every input
    position) or im2col's ``cols`` (of the input channels at every output position)."""
    G, M, C = w_shape[:3]
    if kn2row:
        return G * math.prod(w_shape[3:]) * M * math.prod(in_sp) * itemsize
    return G * math.prod(w_shape[3:]) * C * math.prod(out_sp) * itemsize


def dilate_last(dilation: Sequence[int], batch: int) -> tuple[int, ...]:
    return (*dilation[:-1], dilation[-1] * batch)


def padded(x_sp: Sequence[int], pads: Sequence[tuple[int, int]] | None) -> tuple[int, ...]:
    return tuple(x_sp) if pads is None else tuple(
        n + lo + hi for n, (lo, hi) in zip(x_sp, pads, strict=True))
