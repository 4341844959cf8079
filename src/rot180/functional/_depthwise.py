r"""Depthwise (and few-channel grouped) correlations: one plane at a time, no expansion.

Why. A depthwise layer (``groups = C_in``: MobileNet, EfficientNet) has one input and one or a
few output channels per group, so each output is ``k^D`` multiply-adds of a single plane. The
generic paths pay for a layout that does not fit: im2col copies every window ``k^D`` times for
products with one row; the helper ``direct`` puts 16 samples in vector lanes, which costs a
transpose of every input and output plane (as many bytes moved as multiply-adds made), and a
small batch leaves lanes empty. Here the vectors run along an output *row* of the arrays' own
NCHW layout instead, and each output plane is computed in one pass from its (padded) input
plane with the window's taps as broadcast scalars.

How (``_depthwisec.c``). Per plane ``(b, g)``: the group's ``C`` input planes are copied once,
zero-padded, into a scratch buffer split by *column phase*. Along a row, output ``q`` of tap
``tx`` reads padded column ``q s + tx d = (q + j0) s + r`` with ``r = tx d mod s`` and
``j0 = floor(tx d / s)``; keeping the row's columns of each residue ``r`` side by side
(``P_r[j] = xp[j s + r]``) makes every tap one contiguous vector load ``P_r[q + j0 ...]``,
whatever the stride and dilation (only residues some tap reads are built: at most ``k``).
Forward: tiles of up to 4 vectors (64 float32 outputs) of an output row, two rows at a time
where the rows are not strided (each input vector loaded once for both), accumulate every
channel and tap in registers. Kernel gradient: per tap row, one pass over the delta rows with up
to 5 taps x 2-4 vectors of accumulators, summed over all rows, then over the lanes (a fixed
tree). Any stride, dilation, padding (negative pads are a crop), 1-D (height 1) and 2-D,
float32 and float64, strided inputs and outputs (the sub-pixel phases write into
``out[..., r::s]``).

Threads: the forward pass splits the planes ``B x G`` into one contiguous range per thread;
the kernel gradient splits the groups (each group's sum over the batch runs whole in one call,
so its bits do not depend on the thread count), or, with fewer groups than threads, the batch
(partial sums added in range order). Chunks come from the shapes and the thread count alone.

The input gradient reaches it through its forward correlations (:mod:`._plan_input`): the
padded delta (stride 1) and each sub-pixel phase (or the stacked phases, ``M`` = phases) are
forward problems with the same few channels per group. It also runs a strided input gradient
as one ``grad_input`` leaf, when a plan names it: the delta is copied per plane *stretched*
(``s - 1`` zeros between entries, the plane's padding around them) and correlated at stride 1,
rows of zeros skipped (half the taps at stride 2), every output row written once, contiguous;
the phases instead write ``out[..., r::s]`` in ``s^D`` passes over the whole output (measured,
16x32x112x112 3x3 stride 2, 1 thread: 4.1 ms against 14.4 for the phases; BENCHMARKS.md).
Zeros are only ever multiplied by (finite, checked) weights: a non-finite delta meets real
taps only.

When (:func:`_prefer`): measured on this machine (AMD EPYC Zen 4, AVX-512, 2 cores, 1 thread,
CPU clock, float32, forward + both gradients of 3x3 layers, batch 32, forced against the rule
without it; BENCHMARKS.md, "Depthwise"): C x M per group 1 x 1 at 56x56 0.62 of the rule's
time, 1 x 2 0.64, 2 x 2 0.73, 2 x 4 0.87, 4 x 4 (28x28) 1.10; output rows (1 x 1, stride 1) 28:
0.77 (1 x 4), 14: 1.08, 12: 1.35, 7: 1.72 (the rule folds the batch into short rows, which
needs stride 1 along them), 14 at stride 2: 0.85. Against the helper alone (``direct``, which
keeps a tile of output channels in registers; these loops re-read the input plane per output
channel), few groups: G = 1, 1 x 1: forward 0.93 of its time; 1 x 4: 1.14; 1 x 6 (LeNet's first
layer): 1.39; G = 2, 1 x 2: 1.08; G = 4, 1 x 1: 0.93, 1 x 2: 1.10 (forward; the gradients alike).
"""

from __future__ import annotations

import numpy as np

from ._parallel import run_chunks, sum_chunks
from ._realisation import Problem, Realisation
from ._tuning import Tuning

try:
    from . import _depthwisec
except ImportError:                             # built without a C compiler: not available
    _depthwisec = None

__all__ = ["REALISATION", "built", "correlate", "correlate_kernel"]

# Accepted (forced, or preferred) up to this C * M per group: beyond it the plane-wise loops
# re-read each input plane M times and hold C of them; correct, never fast. (Where it is
# preferred, a narrower range, is Tuning's: see _prefer.)
ACCEPT_MAX_CM = 64


def built() -> bool:
    """Whether the compiled loops ``_depthwisec`` were built."""
    return _depthwisec is not None


def _accepts(p: Problem, t: Tuning) -> bool | str:
    if not t.helper or _depthwisec is None:
        return "the compiled helper is off or not built"
    if p.nd not in (1, 2):
        return "not 1-D or 2-D"
    if np.dtype(p.dtype) not in (np.float32, np.float64):
        return "not float32 or float64"
    C = p.x[2]
    M = p.w[2] if p.entry == "grad_weight" else p.w[1]
    if C * M > ACCEPT_MAX_CM:
        return f"more than {ACCEPT_MAX_CM} channel pairs per group (C * M)"
    return True


def _prefer(p: Problem, t: Tuning) -> bool:
    """Where it beats the rule's choice (:class:`~._tuning.Tuning` fields, the defaults shown;
    measured as the module docstring says, forward + both gradients of 3x3 layers, batch 32,
    1 thread, against the rule without it):

    ===========================  =============  ==============================================
    field                        default        measured, depthwise / rule
    ===========================  =============  ==============================================
    ``depthwise_max_cm``         8              C x M per group: 2 x 4 0.87, 4 x 4 1.10
    ``depthwise_min_groups``     16             with C x M > 1: 16 and 32 groups win, 1-4 not
    ``depthwise_min_row``        16             output rows (stride 1): 28 0.77, 14 1.08;
                                                14 at stride 2 0.85
    ===========================  =============  ==============================================

    Preferred where ``C * M <= depthwise_max_cm``, and ``C * M == 1`` or at least
    ``depthwise_min_groups`` groups, and output rows of at least ``depthwise_min_row`` or a
    stride along them: shorter stride-1 rows leave a vector's lanes half empty, and the rule
    folds the batch into them.
    """
    C = p.x[2]
    M = p.w[2] if p.entry == "grad_weight" else p.w[1]
    return (C * M <= t.depthwise_max_cm and (C * M == 1 or p.x[1] >= t.depthwise_min_groups)
            and (p.out_sp[-1] >= t.depthwise_min_row or p.stride[-1] > 1))


# --- the runners ------------------------------------------------------------------------------

def _as_2d(a: np.ndarray, nd: int) -> np.ndarray:
    """A 1-D correlation's operand as a 2-D one of height 1 (a view)."""
    return a if nd == 2 else a[..., None, :]


def _lift(nd: int, stride, dilation, pads) -> tuple[tuple[int, int], tuple[int, int],
                                                    tuple[int, int, int, int]]:
    pads = [(0, 0)] * nd if pads is None else list(pads)
    if nd == 1:
        stride, dilation, pads = (1, *stride), (1, *dilation), [(0, 0), *pads]
    (pt, pb), (pl, pr) = pads
    return tuple(stride), tuple(dilation), (pt, pb, pl, pr)


def _ranges(n: int, parts: int) -> list[tuple[int, int]]:
    parts = max(1, min(parts, n))
    step = -(-n // parts)
    return [(a, min(n, a + step)) for a in range(0, n, step)]


def correlate(x: np.ndarray, w: np.ndarray, stride, dilation, out: np.ndarray,
              bias: np.ndarray | None, threads: int, pads=None, insert=None) -> None:
    """``out[b, g, m, q] = bias[g, m] + sum_{c, t} w[g, m, c, t] xp[b, g, c, q*s + t*d]``, ``xp``
    the input zero-padded by ``pads`` (negative: cropped), written into ``out`` in place.
    ``insert``: ``xp`` is ``stretch_pad(x, insert, pads)`` instead (``insert - 1`` zeros between
    neighbouring entries, never multiplied: rows of zeros are skipped), the input gradient.

    Shape: as :func:`rot180.functional._engine.correlate` (``x`` and ``out`` may be strided).
    """
    nd = x.ndim - 3
    stride, dilation, pads = _lift(nd, stride, dilation, pads)
    insert = (1, 1) if insert is None else _lift(nd, insert, insert, None)[0]
    x2, out2 = _as_2d(x, nd), _as_2d(out, nd)
    w2 = np.ascontiguousarray(_as_2d(w, nd))
    G, M = w.shape[:2]
    b2 = None if bias is None else np.ascontiguousarray(bias, dtype=x.dtype).reshape(G, M)

    def part(r: tuple[int, int]) -> None:
        _depthwisec.correlate(x2, w2, out2, b2, stride=stride, dilation=dilation, pads=pads,
                              planes=r, insert=insert)

    run_chunks(part, _ranges(x.shape[0] * x.shape[1], threads), threads)


def correlate_kernel(x: np.ndarray, dz: np.ndarray, kernel, stride, dilation, threads: int,
                     pads=None) -> np.ndarray:
    """``dw[g, m, c, t] = sum_{b, q} dz[b, g, m, q] xp[b, g, c, q*s + t*d]``, shape
    ``(G, M, C, *kernel)``, ``xp`` the input zero-padded by ``pads`` (negative: cropped)."""
    nd = x.ndim - 3
    stride, dilation, pads = _lift(nd, stride, dilation, pads)
    x2, dz2 = _as_2d(x, nd), _as_2d(dz, nd)
    B, G, C = x.shape[:3]
    M = dz.shape[2]
    k2 = (1,) * (2 - nd) + tuple(kernel)
    if G >= threads or B < 2:
        # Whole groups per thread: each group's sum is one call's, whatever the split.
        dw = np.empty((G, M, C, *k2), x.dtype)

        def by_groups(r: tuple[int, int]) -> None:
            _depthwisec.correlate_kernel(x2, dz2, dw, stride=stride, dilation=dilation,
                                         pads=pads, groups=r)

        run_chunks(by_groups, _ranges(G, threads), threads)
        return dw.reshape(G, M, C, *kernel)

    def by_samples(r: tuple[int, int]) -> np.ndarray:
        part = np.empty((G, M, C, *k2), x.dtype)
        _depthwisec.correlate_kernel(x2, dz2, part, stride=stride, dilation=dilation,
                                     pads=pads, samples=r)
        return part

    return sum_chunks(by_samples, _ranges(B, threads), threads).reshape(G, M, C, *kernel)


# One of its multiply-adds costs about ten of a large matrix product's (memory-bound: it reads
# each input once per few taps). Measured, 2 threads, 16x32x112x112 3x3 stride 2 (2.6e6 MACs a
# pass, below parallel_min_macs): the kernel gradient 8.45 -> 5.24 ms on two threads, the
# forward pass 4.9 -> 5.1 (even); so its MACs count ten times against parallel_min_macs (5e7
# then: threads from 5e6 of its MACs; 2e7 since the thread team: from 2e6).
COST = 10.0


def _forward(plan, x: np.ndarray, w: np.ndarray, out: np.ndarray,
             bias: np.ndarray | None) -> None:
    p = plan.problem
    if p.entry == "grad_input":                 # x is the delta: stretched by the stride
        correlate(x, w, (1,) * p.nd, p.dilation, out, bias, plan.threads, p.pads, p.stride)
    else:
        correlate(x, w, p.stride, p.dilation, out, bias, plan.threads, p.pads)


def _kernel(plan, x: np.ndarray, dz: np.ndarray) -> np.ndarray:
    p = plan.problem
    return correlate_kernel(x, dz, p.kernel, p.stride, p.dilation, plan.threads, p.pads)


_DEFAULT = Tuning()      # the description states the default thresholds
REALISATION = Realisation(
    "depthwise", "plane-wise loops, vectors along an output row (few channels per group)",
    f"1-D/2-D float32/64 forward and kernel gradients with C * M <= {ACCEPT_MAX_CM} per group "
    f"(preferred by default to {_DEFAULT.depthwise_max_cm} in {_DEFAULT.depthwise_min_groups}+ "
    f"groups, rows >= {_DEFAULT.depthwise_min_row} or strided: Tuning.depthwise_*), helper on",
    _accepts,
    _forward, _kernel, pads_itself=True, prefer=_prefer, cost=COST)
