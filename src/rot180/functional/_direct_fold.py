r"""The helper on folded problems, packed and unpacked by the helper itself.

Two correlations reach the helper as something else folded into a 2-D one: a strided input
gradient (a transposed convolution's forward) as its sub-pixel phases, and a 3-D correlation
as a 2-D one with the kernel's depth taps in the channels (:mod:`._depth`). Folding first and
handing the helper the folded arrays costs copies of the data (a pack per phase, the folded
input and result) in fresh memory at every call; here the helper's packing reads the unfolded
arrays and its unpacking writes the unfolded result, around the same multiply-adds:

- :func:`correlate_phases`: the delta packed into lanes once, each phase's taps correlated
  from its own origin and written to its own rows and columns of the lanes
  (``_directc.correlate``'s ``origin``, ``outputs``, ``out_step``, ``out_first``).
- :func:`correlate_depth`, :func:`correlate_kernel_depth`: lanes ``(b, o)`` packed straight
  from the 3-D input and delta (``pack_padded(..., depth=)``) and the result unpacked straight
  into the 3-D output (``unpack_bands(..., depth=)``), where the fold's 2-D leaf is the helper
  on whole samples (:func:`whole`).

A batch that fills one block of lanes shares it among the threads as :mod:`._direct` does.
Each output's sum runs over the same taps in the loops' order as the folded route's: the bits
are the same (``tests/test_direct.py``, ``tests/test_depth.py``).
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence

import numpy as np

from ._direct import (
    LANES,
    Job,
    _as_2d,
    _directc,
    _over_blocks,
    _packed,
    _share,
    _share_input,
    _summed_over_blocks,
    kernel_gradient,
)
from ._kn2row import Phase
from ._scratch import scratch
from ._tuning import get_tuning

__all__ = ["correlate_phases", "whole", "correlate_depth", "correlate_kernel_depth"]


def correlate_phases(dz: np.ndarray, w: np.ndarray, axes: Sequence[Sequence[Phase]],
                     pads: Sequence[tuple[int, int]], out: np.ndarray, threads: int) -> None:
    """A strided input gradient from one packing of its delta: every sub-pixel phase of
    ``out`` (``axes``: the :class:`~._kn2row.Phase` list of each axis) is the correlation of
    the padded delta with its own taps of ``w``, read from the same lanes and written to its
    own rows and columns of the same lanes (``_directc.correlate``'s ``origin`` and
    ``out_step``), then unpacked once.

    The phases one by one, each its own helper call, packed the delta (and unpacked, and
    copied to a strided view of the output) once per phase: 4 x 4 stride 2 (DCGAN),
    32 x 128 x 16 x 16 -> 64, 2 threads: 25.1 ms against 13.1 for the forward pass of the
    same layer; kn2row over the phases 18.8. Here it is the forward's one pack and one unpack
    around the same multiply-adds (BENCHMARKS.md, "Issue 13, third pass"). Each output's sum
    runs over its phase's taps in the loops' order, the bits of the phases one by one.

    Shape:
        - dz: ``(B, G, C, *o)``; w: ``(G, M, C, *k)``; out: ``(B, G, M, *i)`` (1-D or 2-D);
          ``pads``: the delta's ``(low, high)`` zero padding per axis, so that every phase's
          taps read inside it (``e0 + low >= 0``).
    """
    nd = dz.ndim - 3
    lift = 2 - nd
    flat_axes = ((Phase(0, 1, 1, 0, 1, 1, 0, 1),),) * lift + tuple(tuple(a) for a in axes)
    (pt, pb), (pl, pr) = [(0, 0)] * lift + [tuple(pp) for pp in pads]
    dz2 = np.ascontiguousarray(_as_2d(dz, nd))
    w2 = _as_2d(w, nd)
    out2 = _as_2d(out, nd)
    B, G, C, H, W = dz2.shape
    M = w2.shape[1]
    OH, OW = out2.shape[3:]
    hp, wp = pt + H + pb, pl + W + pr
    jobs, dead = [], False
    for combo in itertools.product(*flat_axes):
        if any(ph.m == 0 for ph in combo):
            continue
        if any(ph.n_taps == 0 for ph in combo):
            dead = True                         # outputs no tap reaches: zeros
            continue
        taps = tuple(slice(ph.t0, ph.t0 + ph.t_step * (ph.n_taps - 1) + 1, ph.t_step)
                     for ph in combo)
        jobs.append({"w": w2[(Ellipsis, *taps)],         # a view: the helper reads strides
                     "origin": (combo[0].e0 + pt, combo[1].e0 + pl),
                     "dilation": tuple(ph.e_step for ph in combo),
                     "outputs": tuple(ph.m for ph in combo),
                     "out_step": tuple(ph.s for ph in combo),
                     "out_first": tuple(ph.r for ph in combo)})
    dst = out2 if out2.flags.c_contiguous else np.empty(out2.shape, dz.dtype)
    unpacked = dst.reshape(B, 1, G * M * OH * OW)
    flat = dz2.reshape(B, G * C, H, W)
    live = {"live_rows": (pt, pt + H), "live_cols": (pl, pl + W)}
    narrow = get_tuning().narrow_tiles

    def phases(xs: np.ndarray, res: np.ndarray, share: Job) -> None:
        """Every phase into ``res`` (a ``share`` of one block: only its part)."""
        for ph in jobs:
            _directc.correlate(_share_input(xs, share), _share(ph["w"], share, False),
                               _share(res, share), None, stride=(1, 1),
                               dilation=ph["dilation"], narrow=narrow, origin=ph["origin"],
                               outputs=ph["outputs"], out_step=ph["out_step"],
                               out_first=ph["out_first"], **live)

    def packed(n0: int, n1: int) -> tuple[np.ndarray, np.ndarray]:
        xs = _packed(flat, n0, n1, G, C, hp, wp, top=pt, left=pl)
        res = scratch((n1 - n0, G, M, OH, OW, LANES), dz.dtype, "direct_out")
        if dead:
            res[...] = 0
        return xs, res

    def unpack(res: np.ndarray, n0: int) -> None:
        _directc.unpack_bands(res.reshape(res.shape[0], 1, G * M * OH * OW, LANES), unpacked,
                              first_block=n0)

    _over_blocks(-(-B // LANES), G, M, threads, packed, phases, unpack)
    if dst is not out2:
        np.copyto(out2, dst)


def whole(plan) -> bool:
    """Whether the helper packs and unpacks the depth fold of ``plan`` (a ``"depth"``
    :class:`~._plan.Plan`) itself (:func:`correlate_depth`, :func:`correlate_kernel_depth`):
    its 2-D leaf is the helper on whole samples, and neither the depth nor the 2-D padding
    crops."""
    leaf, pads = plan.inner[0], plan.inner[0].problem.pads
    return (plan.layout[3] >= 0 and leaf.step == "run" and leaf.realisation == "direct"
            and leaf.bands == 1 and leaf.problem.nd == 2
            and (pads is None or all(v >= 0 for p in pads for v in p)))


def correlate_depth(x: np.ndarray, w: np.ndarray, out: np.ndarray, bias: np.ndarray | None,
                    fold: Sequence[int], stride: Sequence[int], dilation: Sequence[int],
                    pads: Sequence[tuple[int, int]] | None, threads: int) -> None:
    """A 3-D correlation through its depth fold (:mod:`._depth`) without the folded copies:
    the lanes are packed straight from ``x`` (lane ``(b, o)``, plane ``(g, t, c)`` = depth
    ``o sd + t dd - d0`` of ``x[b, g, c]``) and the result unpacked straight into ``out``
    (``pack_padded`` and ``unpack_bands`` with ``depth=``). The same sums as the fold, then
    the 2-D helper, then the unfold: the folded input, the 2-D result and their copies (fresh
    memory, faulted in at every call) are not made.

    Shape:
        - x: ``(B, G, C, D, H, W)``; w: the folded kernel ``(G, M, kd * C, KH, KW)``;
          out: ``(B, G, M, OD, OH, OW)``; ``fold = (kd, sd, dd, d0, OD)``, ``d0 >= 0``.
    """
    kd, sd, dd, d0, OD = fold
    B, G, C, D, H, W = x.shape
    M = w.shape[1]
    OH, OW = out.shape[4:]
    (pt, pb), (pl, pr) = pads if pads is not None else ((0, 0), (0, 0))
    hp, wp = pt + H + pb, pl + W + pr
    flat = np.ascontiguousarray(x).reshape(B, G * C * D, H, W)
    w = np.ascontiguousarray(w)
    b_ = None if bias is None else np.ascontiguousarray(bias).reshape(G, M)
    dst = out if out.flags.c_contiguous else np.empty(out.shape, x.dtype)
    unpacked = dst.reshape(B, G * M * OD, OH * OW)
    live = {"live_rows": (pt, pt + H), "live_cols": (pl, pl + W)}
    narrow = get_tuning().narrow_tiles

    def correlate(xs: np.ndarray, res: np.ndarray, job: Job) -> None:
        _directc.correlate(_share_input(xs, job), _share(w, job, False), _share(res, job),
                           _share(b_, job, False), stride=tuple(stride),
                           dilation=tuple(dilation), narrow=narrow, **live)

    def packed(n0: int, n1: int) -> tuple[np.ndarray, np.ndarray]:
        xs = _packed(flat, n0, n1, G, kd * C, hp, wp, top=pt, left=pl,
                     depth=(D, kd, sd, dd, d0, OD), groups=G)
        return xs, scratch((n1 - n0, G, M, OH, OW, LANES), x.dtype, "direct_out")

    def unpack(res: np.ndarray, n0: int) -> None:
        _directc.unpack_bands(res.reshape(res.shape[0], G * M, OH * OW, LANES), unpacked,
                              first_block=n0, depth=OD)

    _over_blocks(-(-B * OD // LANES), G, M, threads, packed, correlate, unpack)
    if dst is not out:
        np.copyto(out, dst)


def correlate_kernel_depth(x: np.ndarray, dz: np.ndarray, kernel: Sequence[int],
                           fold: Sequence[int], stride: Sequence[int],
                           dilation: Sequence[int], pads: Sequence[tuple[int, int]] | None,
                           threads: int) -> np.ndarray:
    """The kernel gradient of :func:`correlate_depth`'s correlation, ``x`` and ``dz`` packed
    straight into the fold's lanes (``dz[b, g, m, o]`` is lane ``(b, o)``'s plane ``(g, m)``).

    Shape:
        - x: ``(B, G, C, D, H, W)``; dz: ``(B, G, M, OD, OH, OW)``; result: the folded kernel
          gradient ``(G, M, kd * C, *kernel)`` (2-D ``kernel``).
    """
    kd, sd, dd, d0, OD = fold
    B, G, C, D, H, W = x.shape
    M, OH, OW = dz.shape[2], dz.shape[4], dz.shape[5]
    (pt, pb), (pl, pr) = pads if pads is not None else ((0, 0), (0, 0))
    hp, wp = pt + H + pb, pl + W + pr
    flat = np.ascontiguousarray(x).reshape(B, G * C * D, H, W)
    zf = np.ascontiguousarray(dz).reshape(B, G * M * OD, OH, OW)
    narrow = get_tuning().narrow_tiles

    def packed(n0: int, n1: int) -> tuple[np.ndarray, np.ndarray]:
        xs = _packed(flat, n0, n1, G, kd * C, hp, wp, top=pt, left=pl,
                     depth=(D, kd, sd, dd, d0, OD), groups=G)
        zs = scratch((n1 - n0, G, M, OH, OW, LANES), x.dtype, "direct_dz")
        _directc.pack_padded(zf, zs.reshape(n1 - n0, G * M, OH, OW, LANES), first_block=n0,
                             depth=(OD, 1, 1, 1, 0, OD), groups=G)
        return xs, zs

    return _summed_over_blocks(-(-B * OD // LANES), G, M, threads, packed,
                               kernel_gradient(stride, dilation, narrow),
                               (G, M, kd * C, *kernel), x.dtype)
