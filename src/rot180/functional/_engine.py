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

How a correlation is realised: a frozen :class:`~._plan.Plan` made once per shape from the
shapes and the :class:`~._tuning.Tuning` in force (cached), then executed. Its leaves name a
realisation of the table in :mod:`._registry` (``rot180.functional.realisations()``), chosen
by :func:`._registry.choose` or forced by ``tuning(force=...)``; all give the same sums:

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
    2-D calls whose batch fills at least ``direct_min_fill`` of its blocks of 16 (LeNet's and
    most training batches), or does so once each sample is cut into bands of output rows
    (batch 8 of a 224x224 image: 4 bands each; a single image: 14-32): the forward pass, the
    stride-1 input gradient and the kernel gradient. Without the extension (no C compiler at
    install, or ``ROT180_PURE_NUMPY=1``) the NumPy paths above do everything.

Sub-pixel (polyphase) decomposition, in :func:`correlate_stretched`
    Stretching inserts ``s - 1`` zeros between delta entries, so along each axis output
    ``i = r + s*m`` meets non-zeros only through the taps ``t`` with
    ``(r + t*d - low) % s == 0``: the sub-kernel ``w[t0::s/gcd(s, d)]``, dilation
    ``d/gcd(s, d)``, reading ``dz[m + (r + t*d - low)/s]``. Each of the ``s^D`` phases is a
    dense stride-1 correlation of the *unstretched* delta (:class:`Phase`), written into
    ``out[..., r::s]``: the same sums without the ``1 - 1/s^D`` multiplications by zero. For
    the helper the phases can also be stacked into one correlation with ``s^D`` times the
    output channels, each sub-kernel placed in a common kernel (:func:`._plan._stacked`), where few
    of that kernel's taps are zeros (7x7 stride 2: 49 of 64; ``stack_min_fill``,
    ``stack_min_taps``).

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

Work proportional to the data (:func:`._layout.live`)
    Outputs whose windows lie in the padding, and taps that read only padding, are not
    computed: padding far wider than the kernel, or a dilation far larger than the input, pads
    by the live taps' span only. Only the sub-pixel phases of residues below the input size
    are built (a stride of 10**6 on 4 cells: 4 phases). A sample whose padded copy, im2col
    columns or kn2row products would still exceed ``max_sample_bytes`` raises ValueError.

Memory: expanded buffers are processed in batch chunks of about ``chunk_bytes`` and come
from :func:`~rot180.functional._parallel.scratch` (per thread), so repeated calls reuse the
same pages instead of page-faulting fresh allocations. float32 stays float32 throughout.

Threads (:mod:`rot180.functional._parallel`): from ``parallel_min_macs`` multiply-adds a
call, its batch chunks (gather, product, output write; or kn2row's product and sums) run on as
many Python threads as numpy's BLAS would use, each with single-threaded BLAS, so that the
copies and sums run in parallel too, not only the products. A folded batch is split into one
part per thread. Smaller calls run on the caller's thread; every call holds BLAS at one
thread (OpenBLAS's own workers would spin against the pool afterwards). Chunks and
parts come from the shapes and the thread count alone; each writes its own samples of the
output, and kernel gradients are summed over chunks in chunk order, so results never depend on
thread timing (and the pooled path gives the same bits as running its chunks one by one).

Thresholds: fields of :class:`~._tuning.Tuning` (measured: BENCHMARKS.md, Engine thresholds).

Code: the plan in :mod:`._plan` (shape arithmetic in :mod:`._layout`), the table and the rule
in :mod:`._registry`; executing a plan in :mod:`._forward`, :mod:`._stretched` (input
gradient) and :mod:`._kernel` (kernel gradient); padding and folding in :mod:`._padding`. The
im2col and 1x1 paths live in :mod:`._im2col`, kn2row in :mod:`._kn2row`, the direct loops in
:mod:`._direct` (C in ``_directc.c``), the thread pool and scratch buffers in
:mod:`._parallel`. This module holds the three entry points.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from . import _clipped, _forward
from ._kernel import correlate_kernel
from ._kn2row import Phase
from ._layout import guard as _guard  # noqa: F401  (nn/conv.py sizes its output with it)
from ._padding import pad, stretch_pad
from ._plan import Plan, lookup
from ._stretched import correlate_stretched

__all__ = ["correlate", "correlate_stretched", "correlate_kernel", "pad", "stretch_pad",
           "Phase", "plan_of"]


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
    # Always planned as an entry point's own call (top=True), also when ``out`` is given: the
    # plan, a forced realisation and the printed plan must not depend on who allocates.
    plan = lookup("forward", x.shape, w.shape, w.shape[3:], stride, dilation, pads, x.dtype,
                  True)
    if out is None:
        out = np.empty((x.shape[0], *w.shape[:2], *plan.out), x.dtype)
    # Only w can meet a cut connection here: every path multiplies an input cell only by the
    # taps that read it (padding cells are what an infinite weight must not be multiplied by).
    if plan.realisation == "clipped" or not _clipped.finite(w):
        return _clipped.correlate(x, w, stride, dilation, out, bias, pads)
    return _forward.run(plan, x, w, out, bias)


def plan_of(entry: str, x_shape: Sequence[int], w_shape: Sequence[int], kernel: Sequence[int],
            stride: Sequence[int], dilation: Sequence[int],
            pads: Sequence[tuple[int, int]] | None, dtype: np.dtype) -> Plan:
    """The plan an entry point would execute for these engine-level shapes (``entry``:
    ``"forward"`` (x, w), ``"grad_input"`` (dz, w) or ``"grad_weight"`` (x, dz)), under the
    settings in force here."""
    return lookup(entry, tuple(x_shape), tuple(w_shape), tuple(kernel), tuple(stride),
                  tuple(dilation), pads, np.dtype(dtype), True)
