"""The layer a symbolic derivation unrolls: its checked settings, its symbols and its edges.

Shared by both derivations of :mod:`rot180.explain.symbolic` (the input gradient and the kernel
gradient); the settings are checked by the same spec as :func:`rot180.functional.conv`.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass
from numbers import Integral

import numpy as np
import sympy as sp

from ..functional import _validation as V
from ..functional import shapes

CONVENTIONS = ("correlation", "convolution")
DELTA = "δ"

Padding = int | str | Sequence[int] | Sequence[tuple[int, int]]
Channels = tuple[int, int] | None


@dataclass(frozen=True)
class Edge:
    """One connection of the unrolled network: ``output += weight * input``.

    ``out`` is ``(j, *q)`` (output channel, output cell) and ``inp`` is ``(i, *m)`` (input
    channel, input cell), both 0-based; ``weight`` is the kernel symbol the edge carries.
    """

    out: tuple[int, ...]
    inp: tuple[int, ...]
    weight: sp.Symbol


@dataclass(frozen=True)
class _Layer:
    """A validated layer with its symbols and its unrolled edges (shared by both derivations)."""

    nd: int
    input_shape: tuple[int, ...]
    kernel_shape: tuple[int, ...]
    output_shape: tuple[int, ...]
    stride: tuple[int, ...]
    padding: tuple[tuple[int, int], ...]
    dilation: tuple[int, ...]
    remainder: tuple[int, ...]
    convention: str
    channels: Channels
    x: np.ndarray          # (C_in, *i) symbols
    w: np.ndarray          # (C_out, C_in, *k) symbols
    delta: np.ndarray      # (C_out, *o) symbols
    w_forward: np.ndarray  # the kernel the forward pass correlates with
    z: np.ndarray          # (C_out, *o) weighted sums
    edges: tuple[Edge, ...]


def _spatial_sizes(value: object, name: str, op: str) -> tuple[int, ...]:
    if isinstance(value, Integral):  # a bool is refused by V.integer
        value = (V.integer(value, name, op, low=None),)
    if not isinstance(value, Sequence) or isinstance(value, str):
        raise TypeError(
            f"{op}: {name} must be an int (1-D) or a tuple of 1 or 2 ints, got "
            f"{type(value).__name__} {value!r}. Example: {name}=(3, 3)."
        )
    if len(value) not in (1, 2):
        raise ValueError(
            f"{op}: symbolic derivations cover 1-D and 2-D layers, got {len(value)}-D {name} "
            f"{tuple(value)}. Pass 1 or 2 sizes; for 3-D use rot180.functional.conv_grad_input "
            "numerically."
        )
    return V.positive_tuple(tuple(value), len(value), name, op)


def _channels_arg(channels: object, op: str) -> Channels:
    if channels is None:
        return None
    pair = V.int_tuple(channels, "channels", op, fix="Pass None or a pair of ints (C_in, C_out).")
    if len(pair) != 2:
        raise TypeError(
            f"{op}: channels must be None or a pair of ints (C_in, C_out), got {channels!r}."
        )
    if any(c < 1 for c in pair):
        raise ValueError(f"{op}: channels must be >= 1, got {pair}.")
    return pair[0], pair[1]


def _index(idx: Sequence[int], sizes: Sequence[int]) -> str:
    """1-based index string: ``(0, 1) -> "12"``; with commas once a size reaches 10."""
    sep = "," if max(sizes) >= 10 else ""
    return sep.join(str(v + 1) for v in idx)


def _symbols(base: str, lead: tuple[int, ...], spatial: tuple[int, ...],
             multichannel: bool) -> np.ndarray:
    """Object array ``(*lead, *spatial)`` of 1-based symbols named ``base[ch_]idx``."""
    out = np.empty(lead + spatial, dtype=object)
    for pos in np.ndindex(*out.shape):
        ch, cell = pos[:len(lead)], pos[len(lead):]
        prefix = _index(ch, lead) + "_" if multichannel else ""
        out[pos] = sp.Symbol(base + prefix + _index(cell, spatial))
    return out


def _rot180(w: np.ndarray, nd: int) -> np.ndarray:
    """Reverse the last ``nd`` (spatial) axes of an object array."""
    return w[(Ellipsis,) + (slice(None, None, -1),) * nd]


def _layer(input_shape: object, kernel_shape: object, stride: object, padding: object,
           dilation: object, convention: object, channels: object, op: str) -> _Layer:
    i = _spatial_sizes(input_shape, "input_shape", op)
    k = _spatial_sizes(kernel_shape, "kernel_shape", op)
    nd = len(i)
    if len(k) != nd:
        raise ValueError(
            f"{op}: input_shape {i} is {nd}-D but kernel_shape {k} is {len(k)}-D. Give both the "
            "same number of spatial sizes."
        )
    V.option(convention, CONVENTIONS, "convention", op, hint="the forward pass: "
             "cross-correlation as CNN libraries compute, or a true convolution")
    ch = _channels_arg(channels, op)
    c_in, c_out = ch if ch is not None else (1, 1)
    # The same spec and checks as rot180.functional.conv (stride, padding, kernel extent).
    spec = V.weight_spec((c_out, c_in, *k), stride=stride, padding=padding, dilation=dilation,
                         groups=1, op=op)
    V.input_shape_for(spec, (c_in, *i), "input_shape", op)
    s, d, pads = spec.stride, spec.dilation, spec.padding
    multi = ch is not None
    o = shapes.conv_output_shape(i, k, s, pads, d)
    a = tuple(shapes.stride_remainder(n, kk, ss, lo, hi, dd)
              for n, kk, ss, (lo, hi), dd in zip(i, k, s, pads, d, strict=True))
    x = _symbols("x", (c_in,), i, multi)
    w = _symbols("w", (c_out, c_in), k, multi)
    delta = _symbols(DELTA, (c_out,), o, multi)
    w_fwd = w if convention == "correlation" else _rot180(w, nd)

    # The unrolled network, from the forward definition only: output q of channel j reads
    # padded cell q*s + t*d through tap t; padding cells hold 0, so they carry no edge.
    edges = []
    z = np.empty((c_out, *o), dtype=object)
    for j, q in itertools.product(range(c_out), np.ndindex(*o)):
        terms = []
        for c, t in itertools.product(range(c_in), np.ndindex(*k)):
            m = tuple(qq * ss + tt * dd - lo
                      for qq, tt, ss, dd, (lo, _) in zip(q, t, s, d, pads, strict=True))
            if all(0 <= mm < n for mm, n in zip(m, i, strict=True)):
                weight = w_fwd[(j, c, *t)]
                edges.append(Edge((j, *q), (c, *m), weight))
                terms.append(weight * x[(c, *m)])
        z[(j, *q)] = sp.Add(*terms)
    return _Layer(nd, i, k, o, s, pads, d, a, str(convention), ch, x, w, delta, w_fwd, z,
                  tuple(edges))


def _matrix(a: np.ndarray) -> sp.ImmutableMatrix:
    """A 1-D array as a 1-row matrix, a 2-D array as a matrix (immutable, like the result)."""
    return sp.ImmutableMatrix([list(a)] if a.ndim == 1 else a.tolist())


def _public(a: np.ndarray, lead: int, multi: bool) -> object:
    """Strip the channel axes (single channel) or nest them as tuples of matrices."""
    if not multi:
        return _matrix(a[(0,) * lead])
    if lead == 1:
        return tuple(_matrix(a[c]) for c in range(a.shape[0]))
    return tuple(tuple(_matrix(a[j, c]) for c in range(a.shape[1])) for j in range(a.shape[0]))


def _compare(lhs: np.ndarray, rhs: np.ndarray, names: np.ndarray) -> tuple[str, ...]:
    """Names of the cells whose difference does not expand to zero."""
    if lhs.shape != rhs.shape:
        return tuple(str(n) for n in names.ravel())
    return tuple(str(names[pos]) for pos in np.ndindex(*lhs.shape)
                 if sp.expand(lhs[pos] - rhs[pos]) != 0)


def _unrolled(layer: _Layer) -> sp.ImmutableMatrix:
    """``W`` with ``z = W x``: one row per output cell, one column per input cell (C order)."""
    n_out = int(np.prod(layer.z.shape))
    n_in = int(np.prod(layer.x.shape))
    mat = sp.zeros(n_out, n_in)
    for e in layer.edges:
        mat[np.ravel_multi_index(e.out, layer.z.shape),
            np.ravel_multi_index(e.inp, layer.x.shape)] += e.weight
    return sp.ImmutableMatrix(mat)
