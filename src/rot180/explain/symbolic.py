r"""Symbolic proof of the rot180 rule for one layer the user chooses (1-D or 2-D).

Two computations of the same gradient are made with SymPy and compared cell by cell:

* **the chain rule through the unrolled network.** The layer is written out as an MLP: a list
  of edges ``input cell -> output cell`` (cut connections), each carrying one kernel symbol
  (shared weights). A cell's delta is the sum, over the edges leaving it, of the delta at the
  far end times the edge's weight: the plain back-propagation rule, with no convolution in
  sight. The edges come from the forward definition alone,
  ``z[q] = sum_t w_f[t] * xp[q*s + t*d]`` with ``w_f = w`` (correlation) or ``rot180(w)``
  (true convolution).
* **the rule.** Stretch the delta by the stride (``s - 1`` zeros between entries), pad it by
  ``d(k-1) - p_lo`` before and ``d(k-1) - p_hi + a`` after (the sizes come from
  :func:`rot180.functional.shapes.grad_input_padding`), and correlate it (stride 1,
  dilation ``d``) with ``rot180(w)``; with a true-convolution forward, with ``w`` itself.

``verified`` is true only if every cell of the difference expands to zero. The kernel gradient
is checked the same way against the valid correlation of the padded input with the delta.

Symbols are 1-based, as in the source article: ``x11``, ``w22``, ``δ12`` (1-D: ``x1``, ``w2``,
``δ1``). With ``channels=(C_in, C_out)`` they carry the channel first: ``x2_11`` (input channel
2), ``δ1_11`` (output channel 1), ``w12_21`` (tap 21 of the kernel ``w[1, 2]`` from input
channel 2 to output channel 1, PyTorch's ``(C_out, C_in, *k)`` layout). An index gets commas
(``x1,10``) once a size reaches 10.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import sympy as sp

from ..functional import shapes
from ._symbolic_layer import (
    CONVENTIONS,
    Channels,
    Edge,
    Padding,
    _compare,
    _layer,
    _public,
    _rot180,
    _unrolled,
)

__all__ = [
    "CONVENTIONS",
    "Derivation",
    "Edge",
    "WeightDerivation",
    "derive_input_gradient",
    "derive_weight_gradient",
]


@dataclass(frozen=True)
class Derivation:
    """The input gradient of one layer, by the chain rule and by the rot180 rule.

    Single channel (``channels=None``): ``x``, ``delta_in``, ``rule`` are matrices of the input's
    shape, ``w``, ``forward_kernel``, ``rule_kernel`` of the kernel's, ``delta_out`` and ``z`` of
    the output's, ``padded_delta`` of the stretched and padded delta (1-D: one-row matrices).
    With ``channels=(C_in, C_out)`` these are tuples of matrices, one per channel; kernels are
    nested ``[j][i]`` (output channel ``j``, input channel ``i``, PyTorch's layout).

    Attributes:
        z: each output as its weighted sum of inputs (the forward pass, bias omitted).
        delta_in: ``dC/dx`` by the chain rule through the unrolled network.
        rule: ``dC/dx`` by the rule: ``padded_delta`` correlated with ``rule_kernel``.
        forward_kernel: what the forward pass correlates with (``w``, or ``rot180(w)`` for a
            true convolution).
        rule_kernel: what the rule correlates with (``rot180(w)``, or ``w`` itself).
        unrolled: ``W`` with ``z = W x`` flattened in C order (rows: outputs, columns: inputs);
            the chain rule is ``delta_in = W^T delta_out``.
        grad_padding: ``(low, high)`` padding of the stretched delta per axis (negative: crop).
        verified: every cell of ``delta_in - rule`` expands to zero.
        mismatches: the input cells (symbol names) where it does not.
        arrays: the same quantities as numpy object arrays with their channel axes:
            ``x (C_in, *i)``, ``w (C_out, C_in, *k)``, ``delta_out``, ``z (C_out, *o)``, ...
    """

    input_shape: tuple[int, ...]
    kernel_shape: tuple[int, ...]
    output_shape: tuple[int, ...]
    stride: tuple[int, ...]
    padding: tuple[tuple[int, int], ...]
    dilation: tuple[int, ...]
    remainder: tuple[int, ...]
    grad_padding: tuple[tuple[int, int], ...]
    convention: str
    channels: Channels
    x: object
    w: object
    delta_out: object
    z: object
    delta_in: object
    rule: object
    forward_kernel: object
    rule_kernel: object
    padded_delta: object
    unrolled: sp.ImmutableMatrix
    edges: tuple[Edge, ...] = field(repr=False)
    verified: bool
    mismatches: tuple[str, ...]
    arrays: dict[str, np.ndarray] = field(repr=False, compare=False)

    @property
    def nd(self) -> int:
        return len(self.input_shape)

    @property
    def unrolled_transpose(self) -> sp.ImmutableMatrix:
        """``W^T``: back-propagation through the MLP, ``dC/dx = W^T delta``."""
        return self.unrolled.T

    @property
    def cells(self) -> int:
        """Number of input cells compared (all channels)."""
        return int(np.prod(self.arrays["x"].shape))


def _stretch_pad(delta: np.ndarray, stride: tuple[int, ...],
                 pads: tuple[tuple[int, int], ...]) -> np.ndarray:
    """Symbolic ``stretch_s`` then pad (or crop): entry ``q`` lands at ``low + q*s``."""
    o = delta.shape[1:]
    size = tuple((n - 1) * s + 1 + lo + hi for n, s, (lo, hi) in zip(o, stride, pads, strict=True))
    out = np.full((delta.shape[0], *size), sp.Integer(0), dtype=object)
    for pos in np.ndindex(*delta.shape):
        at = tuple(lo + q * s for q, s, (lo, _) in zip(pos[1:], stride, pads, strict=True))
        if all(0 <= v < n for v, n in zip(at, size, strict=True)):
            out[(pos[0], *at)] = delta[pos]
    return out


def derive_input_gradient(input_shape: int | Sequence[int], kernel_shape: int | Sequence[int],
                          *, stride: int | Sequence[int] = 1, padding: Padding = 0,
                          dilation: int | Sequence[int] = 1, convention: str = "correlation",
                          channels: tuple[int, int] | None = None) -> Derivation:
    """Derive ``dC/dx`` of a 1-D or 2-D layer symbolically, twice, and compare.

    The chain rule sums, for every input cell, the deltas of the outputs it feeds times the
    connecting weight (index bookkeeping over the unrolled network). The rule correlates the
    stretched, padded delta with ``rot180(w)`` (``convention="correlation"``, the CNN forward
    ``z = x ⋆ w``) or with ``w`` itself, i.e. convolves it with ``rot180(w)``
    (``convention="convolution"``, the forward ``z = x * w``). With channels, the delta of input
    channel ``i`` sums over output channels ``j`` through the kernel ``w[j, i]``.

    Args:
        input_shape, kernel_shape: spatial sizes, 1 or 2 ints (an int means 1-D).
        stride, dilation: int or one int per axis, >= 1.
        padding: int, one int per axis, ``(low, high)`` pairs, or ``"valid"``, ``"same"``
            (stride 1), ``"full"``, as :func:`rot180.functional.conv`.
        convention: the forward pass, ``"correlation"`` or ``"convolution"``.
        channels: ``(C_in, C_out)``; ``None`` for one channel without channel indices.

    Shape:
        - output size per axis ``o = floor((i + p_lo + p_hi - d(k-1) - 1) / s) + 1``
        - padded delta per axis ``(o-1)s + 1 + low + high`` with ``low = d(k-1) - p_lo``,
          ``high = d(k-1) - p_hi + a``, ``a`` the stride remainder

    >>> d = derive_input_gradient((3, 3), (2, 2), convention="convolution")
    >>> d.delta_in[0, 0], d.verified
    (w22*δ11, True)
    """
    op = "derive_input_gradient"
    layer = _layer(input_shape, kernel_shape, stride, padding, dilation, convention, channels, op)
    nd, multi = layer.nd, layer.channels is not None

    delta_in = np.full(layer.x.shape, sp.Integer(0), dtype=object)
    collected: dict[tuple[int, ...], list] = {}
    for e in layer.edges:
        collected.setdefault(e.inp, []).append(layer.delta[e.out] * e.weight)
    for pos, terms in collected.items():
        delta_in[pos] = sp.Add(*terms)

    pads = shapes.grad_input_padding(layer.input_shape, layer.kernel_shape, layer.stride,
                                     layer.padding, layer.dilation)
    padded = _stretch_pad(layer.delta, layer.stride, pads)
    w_rule = _rot180(layer.w, nd) if layer.convention == "correlation" else layer.w
    # Valid, stride-1, dilation-d correlation of each padded delta with the rule kernel, summed
    # over the output channels; the rule promises exactly i cells per axis.
    out = tuple(n - dd * (kk - 1) for n, kk, dd in
                zip(padded.shape[1:], layer.kernel_shape, layer.dilation, strict=True))
    c_in, c_out = layer.x.shape[0], layer.delta.shape[0]
    rule = np.empty((c_in, *out), dtype=object)
    for c, m in itertools.product(range(c_in), np.ndindex(*out)):
        rule[(c, *m)] = sp.Add(*(
            w_rule[(j, c, *t)] * padded[(j, *(mm + tt * dd for mm, tt, dd in
                                             zip(m, t, layer.dilation, strict=True)))]
            for j in range(c_out) for t in np.ndindex(*layer.kernel_shape)))

    mismatches = _compare(delta_in, rule, layer.x)
    arrays = {"x": layer.x, "w": layer.w, "delta_out": layer.delta, "z": layer.z,
              "delta_in": delta_in, "rule": rule, "forward_kernel": layer.w_forward,
              "rule_kernel": w_rule, "padded_delta": padded}

    def pub(name: str) -> object:
        return _public(arrays[name], 2 if "kernel" in name or name == "w" else 1, multi)

    return Derivation(
        layer.input_shape, layer.kernel_shape, layer.output_shape, layer.stride, layer.padding,
        layer.dilation, layer.remainder, pads, layer.convention, layer.channels,
        pub("x"), pub("w"), pub("delta_out"), pub("z"), pub("delta_in"),
        _public(rule, 1, multi),
        pub("forward_kernel"), pub("rule_kernel"), pub("padded_delta"), _unrolled(layer),
        layer.edges, not mismatches, mismatches, arrays)


@dataclass(frozen=True)
class WeightDerivation:
    """The kernel gradient of one layer, by the chain rule and by the valid-correlation rule.

    Fields as :class:`Derivation`; ``delta_w`` is ``dC/dw`` by the chain rule (each shared weight
    sums ``delta * input`` over every edge that carries it) and ``rule`` is the valid
    correlation of the padded input (its stride-remainder cells cropped) with the delta
    dilated by the stride, sampled with the dilation as stride; for a true-convolution forward,
    rotated by 180 degrees. ``padded_input`` is that cropped, padded input.
    """

    input_shape: tuple[int, ...]
    kernel_shape: tuple[int, ...]
    output_shape: tuple[int, ...]
    stride: tuple[int, ...]
    padding: tuple[tuple[int, int], ...]
    dilation: tuple[int, ...]
    remainder: tuple[int, ...]
    convention: str
    channels: Channels
    x: object
    w: object
    delta_out: object
    z: object
    delta_w: object
    rule: object
    padded_input: object
    verified: bool
    mismatches: tuple[str, ...]
    arrays: dict[str, np.ndarray] = field(repr=False, compare=False)


def derive_weight_gradient(input_shape: int | Sequence[int], kernel_shape: int | Sequence[int],
                           *, stride: int | Sequence[int] = 1, padding: Padding = 0,
                           dilation: int | Sequence[int] = 1, convention: str = "correlation",
                           channels: tuple[int, int] | None = None) -> WeightDerivation:
    """Derive ``dC/dw`` symbolically by the chain rule and by the rule, and compare.

    Rule: ``dw[j, i, t] = sum_q delta_j[q] * xp_i[q*s + t*d]``, the **valid** correlation of
    the padded input with the delta (the forward stride becomes the delta's dilation, the
    forward dilation the stride); rotated by 180 degrees for a true-convolution forward.
    Arguments as :func:`derive_input_gradient`.

    Shape:
        - output: the kernel's shape ``k``

    >>> d = derive_weight_gradient((3, 3), (2, 2))
    >>> d.delta_w[0, 0], d.verified
    (x11*δ11 + x12*δ12 + x21*δ21 + x22*δ22, True)
    """
    op = "derive_weight_gradient"
    layer = _layer(input_shape, kernel_shape, stride, padding, dilation, convention, channels, op)
    nd, multi = layer.nd, layer.channels is not None

    collected: dict[sp.Symbol, list] = {}
    for e in layer.edges:
        collected.setdefault(e.weight, []).append(layer.delta[e.out] * layer.x[e.inp])
    delta_w = np.empty(layer.w.shape, dtype=object)
    for pos in np.ndindex(*layer.w.shape):
        delta_w[pos] = sp.Add(*collected.get(layer.w[pos], []))

    # Pad the input, cropping the a remainder cells at the high end: they meet no delta.
    crop = tuple((lo, hi - a) for (lo, hi), a in zip(layer.padding, layer.remainder, strict=True))
    c_in = layer.x.shape[0]
    size = tuple(n + lo + hi for n, (lo, hi) in zip(layer.input_shape, crop, strict=True))
    xp = np.full((c_in, *size), sp.Integer(0), dtype=object)
    for pos in np.ndindex(*layer.x.shape):
        at = tuple(m + lo for m, (lo, _) in zip(pos[1:], crop, strict=True))
        if all(0 <= v < n for v, n in zip(at, size, strict=True)):
            xp[(pos[0], *at)] = layer.x[pos]
    rule = np.empty(layer.w.shape, dtype=object)
    for pos in np.ndindex(*layer.w.shape):
        j, c, t = pos[0], pos[1], pos[2:]
        rule[pos] = sp.Add(*(
            layer.delta[(j, *q)] * xp[(c, *(tt * dd + qq * ss for tt, dd, qq, ss in
                                            zip(t, layer.dilation, q, layer.stride,
                                                strict=True)))]
            for q in np.ndindex(*layer.output_shape)))
    if layer.convention == "convolution":
        rule = _rot180(rule, nd)

    mismatches = _compare(delta_w, rule, layer.w)
    arrays = {"x": layer.x, "w": layer.w, "delta_out": layer.delta, "z": layer.z,
              "delta_w": delta_w, "rule": rule, "padded_input": xp}
    return WeightDerivation(
        layer.input_shape, layer.kernel_shape, layer.output_shape, layer.stride, layer.padding,
        layer.dilation, layer.remainder, layer.convention, layer.channels,
        _public(layer.x, 1, multi), _public(layer.w, 2, multi), _public(layer.delta, 1, multi),
        _public(layer.z, 1, multi), _public(delta_w, 2, multi), _public(rule, 2, multi),
        _public(xp, 1, multi), not mismatches, mismatches, arrays)
