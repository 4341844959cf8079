r"""N-d convolution (1, 2 or 3 spatial dimensions) and its backward pass by the rot180 rule.

Notation
--------
``x``  input ``(N, C_in, *i)``            ``w``  kernel ``(C_out, C_in / groups, *k)``
``z``  output ``(N, C_out, *o)``          ``dz`` the delta ``dC/dz``, same shape as ``z``
``s, p, d, g``  stride, padding ``(p_lo, p_hi)``, dilation, groups (per spatial dimension)

Derivation (one spatial dimension, one channel; the rest is bookkeeping)
------------------------------------------------------------------------
The forward pass is a cross-correlation of the padded input ``xp``::

    z[q] = sum_t w[t] * xp[q*s + t*d] + b                                    (1)

so the layer is an MLP whose output ``q`` is wired to the inputs ``q*s + t*d`` only (cut
connections) with the same weights ``w[t]`` for every ``q`` (shared weights). Back-propagation
through an MLP sums, for every input, the deltas of the outputs it feeds times the connecting
weight::

    dxp[m] = sum_{q, t : q*s + t*d = m} dz[q] * w[t]                           (2)

Stretch ``dz`` by the stride, ``u[q*s] = dz[q]`` and zero elsewhere, so the constraint becomes
``m - t*d`` being a position of ``u``. Substituting ``t = (k-1) - t'`` (``t'`` indexes the
rotated kernel ``rot180(w)[t'] = w[k-1-t']``)::

    dxp[m] = sum_{t'} rot180(w)[t'] * u[m - d(k-1) + t'*d]                     (3)

which is a stride-1, dilation-``d`` correlation of ``u`` padded by ``d(k-1)`` on each side with
the rotated kernel: the **full** correlation with ``rot180(w)``. Cutting the forward padding off
``dxp`` turns the ``d(k-1)`` into ``d(k-1) - p_lo`` low and ``d(k-1) - p_hi + a`` high, where
``a = (i + p_lo + p_hi - d(k-1) - 1) mod s`` re-creates the input cells no window reached (their
gradient is zero). Negative amounts crop. With several channels and groups, the delta of input
channel ``c`` is the sum over the output channels ``o`` of its group of ``dz[o]`` through
``w[o, c]``: the kernel's two channel axes swap within each group.

The kernel gradient reads (1) the other way round: ``dw[t] = sum_q dz[q] * xp[q*s + t*d]``, a
**valid** correlation of ``xp`` with ``dz`` in which ``dz`` plays the kernel dilated by ``s`` and
the output is sampled with stride ``d``. The bias gradient is ``sum_q dz[q]``.

With a true convolution forward (``flip=True``, ``z = x * w`` with the kernel flipped) the
forward kernel is ``rot180(w)``, so the backward rule correlates with ``rot180(rot180(w)) = w``
itself, a true convolution with ``rot180(w)``: both views are one fact.

All three functions finish in the same engine, :mod:`rot180.functional._engine`: the forward
pass and the input gradient in its ``correlate`` (the input gradient through
``correlate_stretched``, which skips the zeros the stretching inserts), the kernel gradient in
``correlate_kernel``, which contracts the same input windows over batch and positions.
See ``docs/derivation.md`` for the worked 3x3 by 2x2 example.

Non-finite values (IEEE semantics)
----------------------------------
Every function sums over the **real connections only**, the unrolled matrix's semantics
(:func:`rot180.functional.reference.conv_matrix`): a padding cell, and a zero that the stride
inserts into the delta, is a cut connection, not a multiplied zero. So an ``inf`` weight makes
``inf`` (or NaN, with ``inf - inf``) exactly the outputs whose windows reach an input through
that tap, and ``0 * inf = NaN`` only where a real input (or delta) of zero meets it; a NaN
anywhere in a window makes that output NaN. With finite operands the two readings agree, so
the fast paths (which pad, or skip padding, as suits them) run unchanged; a call with a
non-finite value where it could meet a cut connection (the engine checks the weights, and a
kernel gradient's result, both small; see :mod:`._clipped` for the cost) takes a path that
visits only the real connections (:mod:`._clipped`, kn2row over the
sub-pixel phases), so every path, the helper or not, gives the same NaN and ``inf`` positions.
PyTorch differs where it multiplies the padding: its forward, so an ``inf`` weight gives NaN at
every output whose window overlaps the padding, and its kernel gradient, so an ``inf`` in the
delta of an output whose window reads padding gives NaN there (``[inf, 1, 1, 1]`` through a
width-1 kernel with padding 1 on two inputs: PyTorch NaN, rot180 3). Its input gradient, through
col2im, already skips padding and stretch zeros and agrees with ours.

Zero-size batches: ``N = 0`` gives an empty output of the right shape, empty input gradients
and zero kernel and bias gradients, as PyTorch.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from . import _engine
from . import _validation as V
from .shapes import grad_input_padding, stride_remainder

__all__ = ["conv", "conv_grad_input", "conv_grad_weight", "conv_grad_bias", "rot180"]

Padding = int | str | Sequence[int] | Sequence[tuple[int, int]]


def rot180(w: np.ndarray) -> np.ndarray:
    """Rotate a kernel by 180 degrees: reverse every spatial axis (all axes after the first two).

    Shape:
        - w: ``(C_out, C_in/groups, *k)``; output: same shape

    >>> import numpy as np
    >>> rot180(np.arange(4.0).reshape(1, 1, 2, 2))[0, 0]
    array([[3., 2.],
           [1., 0.]])
    """
    w = V.float_array(w, "w")
    if w.ndim < 3:
        raise ValueError(
            f"rot180: expected a kernel (C_out, C_in/groups, *k) with at least one spatial axis, "
            f"got {w.ndim}-D shape {w.shape}."
        )
    return w[(slice(None), slice(None)) + (slice(None, None, -1),) * (w.ndim - 2)]


def _batched(a: np.ndarray, nd: int) -> np.ndarray:
    return a if a.ndim == nd + 2 else a[None]


def _grouped_kernel(w: np.ndarray, groups: int) -> np.ndarray:
    """``(C_out, C_in/g, *k)`` as ``(g, C_out/g, C_in/g, *k)``."""
    return w.reshape(groups, w.shape[0] // groups, *w.shape[1:])


def conv(x: np.ndarray, w: np.ndarray, b: np.ndarray | None = None, *, stride: int = 1,
         padding: Padding = 0, dilation: int = 1, groups: int = 1, flip: bool = False
         ) -> np.ndarray:
    r"""N-d cross-correlation ``z = x \star w + b`` (``flip=True``: true convolution).

    Computes ``z[n, o, q] = b[o] + sum_{c, t} w[o, c, t] * xp[n, g(o)*C_in/g + c, q*s + t*d]``,
    exactly what ``torch.nn.functional.conv{1,2,3}d`` computes. With ``flip=True`` the kernel is
    rotated by 180 degrees first, giving the mathematical convolution. The sum runs over the
    real connections only: a tap on a padding cell adds nothing, even for an ``inf`` weight
    (module docstring, "Non-finite values").

    Args:
        x: input, float32 or float64.
        w: kernel of the same dtype.
        b: optional bias ``(C_out,)``.
        stride, dilation: int or one int per spatial dimension (a one-entry tuple is used for
            every dimension, as PyTorch), >= 1.
        padding: int, one int per dimension (or a one-entry tuple), one ``(low, high)`` pair
            per dimension, or ``"valid"``, ``"same"`` (stride 1 only) or ``"full"``.
        groups: split channels into this many independent groups.
        flip: compute a true convolution instead of a correlation.

    Shape:
        - x: ``(N, C_in, *i)`` (``N = 0`` allowed) or unbatched ``(C_in, *i)``, with 1, 2 or 3
          spatial dims
        - w: ``(C_out, C_in / groups, *k)``
        - b: ``(C_out,)``
        - output: ``(N, C_out, *o)``, ``o = floor((i + p_lo + p_hi - d(k-1) - 1) / s) + 1``

    >>> import numpy as np
    >>> x = np.arange(9.0).reshape(1, 1, 3, 3); w = np.ones((1, 1, 2, 2))
    >>> conv(x, w)[0, 0]
    array([[ 8., 12.],
           [20., 24.]])
    """
    x, w, b, spec = V.conv_args(x, w, b, stride=stride, padding=padding, dilation=dilation,
                                groups=groups, op="conv")
    return conv_spec(x, w, b, spec, flip)


def conv_spec(x: np.ndarray, w: np.ndarray, b: np.ndarray | None, spec: V.ConvSpec,
              flip: bool = False) -> np.ndarray:
    """:func:`conv` on arguments already checked against ``spec`` (layers resolve their spec
    once, at construction, and check each input against it)."""
    if flip:
        w = rot180(w)
    xb = _batched(x, spec.nd)
    if xb.shape[0] == 0:
        return np.empty((0, spec.out_channels, *spec.output_spatial(xb.shape[2:])), x.dtype)
    g = spec.groups
    xg = xb.reshape(xb.shape[0], g, xb.shape[1] // g, *xb.shape[2:])
    bg = None if b is None else b.reshape(g, -1)
    z = _engine.correlate(xg, _grouped_kernel(w, g), spec.stride, spec.dilation, bias=bg,
                          pads=spec.padding)
    z = z.reshape(z.shape[0], spec.out_channels, *z.shape[3:])
    return z if x.ndim == spec.nd + 2 else z[0]


def conv_grad_input(dz: np.ndarray, w: np.ndarray, input_shape: Sequence[int], *,
                    stride: int = 1, padding: Padding = 0, dilation: int = 1, groups: int = 1,
                    flip: bool = False) -> np.ndarray:
    r"""Input gradient ``dC/dx`` of :func:`conv`, computed by the rot180 rule as one forward conv.

    ``dx = stretch_s(dz), padded by d(k-1) - p_lo low and d(k-1) - p_hi + a high, \star
    rot180(w)`` with the kernel's channel axes swapped within each group, stride 1 and dilation
    ``d``; ``a = (i + p_lo + p_hi - d(k-1) - 1) mod s`` is the stride remainder. With
    ``flip=True`` (true-convolution forward) the correlation is with ``w`` itself.

    ``input_shape`` is needed because a stride maps several input sizes to one output size: it
    carries the remainder ``a = i - ((o-1)s - p_lo - p_hi + d(k-1) + 1)``, PyTorch's
    ``output_padding``, which may be anything PyTorch's ``conv_transpose`` accepts: ``0 <= a <
    max(s, d)``. For ``s <= a < d`` no forward pass of that size gives ``o`` outputs (it gives
    more); the result is then the transposed convolution's, as if ``dz`` had extra zero cells.
    Padding and stretch zeros are cut connections, never multiplied (module docstring).

    Shape:
        - dz: ``(N, C_out, *o)`` (or unbatched; ``N = 0`` gives an empty gradient)
        - w: ``(C_out, C_in / groups, *k)``
        - input_shape: the forward input's full shape ``(N, C_in, *i)``, or just ``i``
        - output: ``input_shape``, ``i = (o-1)s - p_lo - p_hi + d(k-1) + a + 1``
    """
    dz, w, spec, shp = V.grad_input_args(dz, w, input_shape, stride=stride, padding=padding,
                                         dilation=dilation, groups=groups, op="conv_grad_input")
    return conv_grad_input_spec(dz, w, shp, spec, flip)


def conv_grad_input_spec(dz: np.ndarray, w: np.ndarray, shp: tuple[int, ...],
                         spec: V.ConvSpec, flip: bool = False) -> np.ndarray:
    """:func:`conv_grad_input` on checked arguments; ``shp`` is the full input shape."""
    nd, g = spec.nd, spec.groups
    dzb = _batched(dz, nd)
    if dzb.shape[0] == 0:
        return np.zeros(shp, dz.dtype)
    pads = grad_input_padding(shp[-nd:], spec.kernel, spec.stride, spec.padding, spec.dilation,
                              output=dz.shape[-nd:])
    dzb = dzb.reshape(dzb.shape[0], g, dzb.shape[1] // g, *dzb.shape[2:])
    wr = w if flip else rot180(w)
    # (g, C_out/g, C_in/g, *k) -> (g, C_in/g, C_out/g, *k): input channels become outputs.
    wt = _grouped_kernel(wr, g).swapaxes(1, 2)
    # = correlate(stretch_pad(dz, stride, pads), wt, 1, dilation), skipping the inserted zeros.
    dx = _engine.correlate_stretched(dzb, wt, spec.stride, pads, spec.dilation)
    return dx.reshape(shp)


def conv_grad_weight(x: np.ndarray, dz: np.ndarray, weight_shape: Sequence[int], *,
                     stride: int = 1, padding: Padding = 0, dilation: int = 1, groups: int = 1,
                     flip: bool = False) -> np.ndarray:
    r"""Kernel gradient ``dC/dw`` of :func:`conv`: the valid correlation of the input with ``dz``.

    ``dw[o, c, t] = sum_{n, q} dz[n, o, q] * xp[n, c, q*s + t*d]``. Read as a correlation,
    ``dz`` is the kernel: the forward **stride becomes the dilation** of ``dz`` (its taps sit
    ``s`` apart on the input) and the forward **dilation becomes the stride** (neighbouring
    kernel taps ``t`` sample the input ``d`` apart). The batch axis is summed as the
    contraction channel. Input cells of the stride remainder ``a`` feed no output and are
    cropped first. With ``flip=True`` the result is rotated by 180 degrees. Products with
    padding cells are never summed, so an ``inf`` in ``dz`` reaches only the taps whose inputs
    it met (module docstring, "Non-finite values").

    Shape:
        - x: ``(N, C_in, *i)`` (or unbatched; ``N = 0`` gives a zero gradient)
        - dz: ``(N, C_out, *o)``, matching ``conv(x, w)``
        - weight_shape: ``(C_out, C_in / groups, *k)``
        - output: ``weight_shape``
    """
    x, dz, spec, wshape = V.grad_weight_args(x, dz, weight_shape, stride=stride,
                                             padding=padding, dilation=dilation, groups=groups,
                                             op="conv_grad_weight")
    return conv_grad_weight_spec(x, dz, wshape, spec, flip)


def conv_grad_weight_spec(x: np.ndarray, dz: np.ndarray, wshape: tuple[int, ...],
                          spec: V.ConvSpec, flip: bool = False) -> np.ndarray:
    """:func:`conv_grad_weight` on checked arguments; ``wshape`` is the weight's shape."""
    nd, g = spec.nd, spec.groups
    xb, dzb = _batched(x, nd), _batched(dz, nd)
    if xb.shape[0] == 0:
        return np.zeros(wshape, x.dtype)
    pads = tuple(
        (lo, hi - stride_remainder(i, k, s, lo, hi, d))
        for i, k, s, (lo, hi), d in zip(xb.shape[2:], spec.kernel, spec.stride, spec.padding,
                                        spec.dilation, strict=True)
    )
    n = xb.shape[0]
    xg = xb.reshape(n, g, xb.shape[1] // g, *xb.shape[2:])
    dzg = dzb.reshape(n, g, dzb.shape[1] // g, *dzb.shape[2:])
    # dz is the kernel (dilated by s), the output is sampled with stride d; (g, C_out/g, C_in/g, *k)
    dw = _engine.correlate_kernel(xg, dzg, spec.kernel, spec.stride, spec.dilation, pads)
    dw = dw.reshape(wshape)
    return rot180(dw) if flip else dw


def conv_grad_bias(dz: np.ndarray) -> np.ndarray:
    """Bias gradient ``dC/db = sum of dz`` over the batch and every spatial position.

    Shape:
        - dz: ``(N, C_out, *o)`` (``N = 0`` gives zeros); output: ``(C_out,)``
    """
    dz = V.float_array(dz, "dz")
    if dz.ndim < 3:
        raise ValueError(
            f"conv_grad_bias: expected dz of shape (N, C_out, *spatial), got {dz.ndim}-D shape "
            f"{dz.shape}. For an unbatched delta use dz[None]."
        )
    return dz.sum(axis=(0, *range(2, dz.ndim)))
