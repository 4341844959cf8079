"""Convolution arithmetic: rot180.functional.shapes against Dumoulin & Visin (2016).

V. Dumoulin and F. Visin, "A guide to convolution arithmetic for deep learning",
arXiv:1603.07285. Each row names the paper's relationship and the figure whose numbers it uses
(square inputs and kernels: ``i x i`` input, ``k x k`` kernel); rows marked ``extra`` are our
own cases of the same relationship. Every row is checked three ways: against the library, against
the relationship's own closed form, and against PyTorch's output shapes.

Relationships 1-6 and 15 are direct convolutions, 7 is pooling, 8-14 are the transposed
convolutions (the input gradient), 14 being the general one with the remainder
``a = (i + 2p - k) mod s`` that PyTorch calls ``output_padding``.
"""

from __future__ import annotations

import itertools
import warnings
from typing import NamedTuple

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import assume, given
from hypothesis import strategies as st

from rot180.functional import shapes
from rot180.functional.shapes import (
    conv_output_shape,
    conv_output_size,
    grad_input_padding,
    live_window,
    resolve_padding,
    stride_remainder,
    tap_outputs,
    transposed_output_size,
)


class Direct(NamedTuple):
    rel: int
    source: str
    i: int
    k: int
    s: int
    p: int
    d: int
    o: int


# The relationships as the paper states them (``d`` only in relationship 15).
DIRECT_FORMULA = {
    1: lambda i, k, s, p, d: (i - k) + 1,
    2: lambda i, k, s, p, d: (i - k) + 2 * p + 1,
    3: lambda i, k, s, p, d: i,
    4: lambda i, k, s, p, d: i + (k - 1),
    5: lambda i, k, s, p, d: (i - k) // s + 1,
    6: lambda i, k, s, p, d: (i + 2 * p - k) // s + 1,
    7: lambda i, k, s, p, d: (i - k) // s + 1,
    15: lambda i, k, s, p, d: (i + 2 * p - k - (k - 1) * (d - 1)) // s + 1,
}

DIRECT = [
    Direct(1, "fig 2.1", i=4, k=3, s=1, p=0, d=1, o=2),
    Direct(1, "extra", i=7, k=1, s=1, p=0, d=1, o=7),
    Direct(2, "fig 2.2", i=5, k=4, s=1, p=2, d=1, o=6),
    Direct(2, "extra", i=3, k=5, s=1, p=3, d=1, o=5),
    Direct(3, "fig 2.3", i=5, k=3, s=1, p=1, d=1, o=5),
    Direct(3, "extra", i=6, k=5, s=1, p=2, d=1, o=6),
    Direct(4, "fig 2.4", i=5, k=3, s=1, p=2, d=1, o=7),
    Direct(4, "extra", i=2, k=4, s=1, p=3, d=1, o=5),
    Direct(5, "fig 2.5", i=5, k=3, s=2, p=0, d=1, o=2),
    Direct(5, "extra", i=8, k=3, s=3, p=0, d=1, o=2),
    Direct(6, "fig 2.6", i=5, k=3, s=2, p=1, d=1, o=3),
    Direct(6, "fig 2.7", i=6, k=3, s=2, p=1, d=1, o=3),
    Direct(6, "extra", i=9, k=4, s=3, p=2, d=1, o=4),
    Direct(7, "figs 1.5-1.6", i=5, k=3, s=1, p=0, d=1, o=3),
    Direct(7, "extra", i=7, k=2, s=2, p=0, d=1, o=3),
    Direct(15, "fig 5.1", i=7, k=3, s=1, p=0, d=2, o=3),
    Direct(15, "extra", i=10, k=3, s=2, p=1, d=3, o=3),
]


class Transposed(NamedTuple):
    """The transpose of a convolution ``(i, k, s, p)``, seen as a direct convolution of the
    (stretched) ``i'`` with ``k' = k``, ``s' = 1``, padding ``p'`` and ``a`` extra zeros on the
    high side; it recovers ``o' = i``."""

    rel: int
    source: str
    i: int
    k: int
    s: int
    p: int
    i_t: int        # i': the forward output size, input of the transpose
    p_t: int        # p': the paper's padding of the equivalent direct convolution
    a: int          # the remainder
    o_t: int        # o': the transpose's output size (= i)


TRANSPOSED_FORMULA = {
    8: lambda i_t, k, s, p, a: i_t + (k - 1),
    9: lambda i_t, k, s, p, a: i_t + (k - 1) - 2 * p,
    10: lambda i_t, k, s, p, a: i_t,
    11: lambda i_t, k, s, p, a: i_t - (k - 1),
    12: lambda i_t, k, s, p, a: s * (i_t - 1) + k,
    13: lambda i_t, k, s, p, a: s * (i_t - 1) + k - 2 * p,
    14: lambda i_t, k, s, p, a: s * (i_t - 1) + a + k - 2 * p,
}

TRANSPOSED = [
    Transposed(8, "fig 4.1", i=4, k=3, s=1, p=0, i_t=2, p_t=2, a=0, o_t=4),
    Transposed(9, "fig 4.2", i=5, k=4, s=1, p=2, i_t=6, p_t=1, a=0, o_t=5),
    Transposed(10, "fig 4.3", i=5, k=3, s=1, p=1, i_t=5, p_t=1, a=0, o_t=5),
    Transposed(11, "fig 4.4", i=5, k=3, s=1, p=2, i_t=7, p_t=0, a=0, o_t=5),
    Transposed(12, "fig 4.5", i=5, k=3, s=2, p=0, i_t=2, p_t=2, a=0, o_t=5),
    Transposed(12, "extra", i=7, k=4, s=3, p=0, i_t=2, p_t=3, a=0, o_t=7),
    Transposed(13, "fig 4.6", i=5, k=3, s=2, p=1, i_t=3, p_t=1, a=0, o_t=5),
    Transposed(14, "fig 4.7", i=6, k=3, s=2, p=1, i_t=3, p_t=1, a=1, o_t=6),
    Transposed(14, "extra", i=8, k=3, s=3, p=1, i_t=3, p_t=1, a=1, o_t=8),
    Transposed(14, "extra", i=9, k=3, s=3, p=1, i_t=3, p_t=1, a=2, o_t=9),
    Transposed(14, "extra", i=5, k=2, s=3, p=0, i_t=2, p_t=1, a=0, o_t=5),
    Transposed(14, "extra", i=7, k=2, s=3, p=0, i_t=2, p_t=1, a=2, o_t=7),
]


def _ids(rows):
    return [f"rel{r.rel}-{r.source.replace(' ', '')}-i{r.i}k{r.k}s{r.s}p{r.p}" for r in rows]


def _zeros(*shape: int) -> torch.Tensor:
    return torch.zeros(shape, dtype=torch.float64)


@pytest.mark.parametrize("row", DIRECT, ids=_ids(DIRECT))
def test_direct_relationships(row: Direct):
    i, k, s, p, d = row.i, row.k, row.s, row.p, row.d
    assert DIRECT_FORMULA[row.rel](i, k, s, p, d) == row.o        # the table is the paper's
    assert conv_output_size(i, k, s, p, d=d) == row.o
    assert conv_output_size(i, k, s, p, p, d) == row.o
    assert conv_output_shape((i, i), (k, k), (s, s), ((p, p), (p, p)), (d, d)) == (row.o,) * 2
    a = stride_remainder(i, k, s, p, d=d)
    assert a == (i + 2 * p - d * (k - 1) - 1) % s
    assert (row.o - 1) * s + d * (k - 1) + 1 + a == i + 2 * p      # every cell accounted for
    if row.rel == 7:
        pooled = F.max_pool2d(_zeros(1, 1, i, i), k, stride=s, padding=p)
        assert tuple(pooled.shape[2:]) == (row.o, row.o)
        assert shapes.pool_output_size(i, k, s, p) == row.o
    z = F.conv2d(_zeros(1, 1, i, i), _zeros(1, 1, k, k), stride=s, padding=p, dilation=d)
    assert tuple(z.shape[2:]) == (row.o, row.o)


@pytest.mark.parametrize("row", TRANSPOSED, ids=_ids(TRANSPOSED))
def test_transposed_relationships(row: Transposed):
    i, k, s, p, a = row.i, row.k, row.s, row.p, row.a
    assert row.o_t == i
    assert TRANSPOSED_FORMULA[row.rel](row.i_t, k, s, p, a) == row.o_t
    # the forward convolution this is the transpose of
    assert conv_output_size(i, k, s, p) == row.i_t
    assert stride_remainder(i, k, s, p) == a == (i + 2 * p - k) % s
    assert transposed_output_size(row.i_t, k, s, p, output_padding=a) == row.o_t
    # the paper's equivalent direct convolution: stretched input, k' = k, s' = 1, p' = k - p - 1
    # low and p' + a high; that padding is exactly what the input-gradient rule uses
    assert row.p_t == k - p - 1
    assert grad_input_padding((i,), (k,), (s,), ((p, p),), (1,)) == ((row.p_t, row.p_t + a),)
    stretched = (row.i_t - 1) * s + 1
    assert conv_output_size(stretched, k, 1, row.p_t, row.p_t + a) == row.o_t
    # torch: the forward shape, and the transpose with output_padding = a recovers i
    z = F.conv2d(_zeros(1, 1, i, i), _zeros(1, 1, k, k), stride=s, padding=p)
    assert tuple(z.shape[2:]) == (row.i_t, row.i_t)
    t = F.conv_transpose2d(_zeros(1, 1, row.i_t, row.i_t), _zeros(1, 1, k, k), stride=s,
                           padding=p, output_padding=a)
    assert tuple(t.shape[2:]) == (row.o_t, row.o_t)


def test_tables_cover_every_relationship():
    assert {r.rel for r in DIRECT} == set(DIRECT_FORMULA) == {1, 2, 3, 4, 5, 6, 7, 15}
    assert {r.rel for r in TRANSPOSED} == set(TRANSPOSED_FORMULA) == set(range(8, 15))
    assert any(r.a > 0 for r in TRANSPOSED)
    assert any(stride_remainder(r.i, r.k, r.s, r.p) > 0 for r in DIRECT)


@given(i=st.integers(1, 40), k=st.integers(1, 7), s=st.integers(1, 5), d=st.integers(1, 4),
       lo=st.integers(0, 6), hi=st.integers(0, 6))
def test_transposed_size_with_remainder_inverts_output_size(i, k, s, d, lo, hi):
    """Relationship 14 in general (asymmetric padding, dilation): i is recovered exactly."""
    assume(i + lo + hi >= d * (k - 1) + 1)      # at least one window
    o = conv_output_size(i, k, s, lo, hi, d)
    a = stride_remainder(i, k, s, lo, hi, d)
    assert o >= 1 and 0 <= a < s
    assert transposed_output_size(o, k, s, lo, hi, d, output_padding=a) == i
    assert transposed_output_size(o, k, s, lo, hi, d) == i - a
    (low, high), = grad_input_padding((i,), (k,), (s,), ((lo, hi),), (d,))
    assert (low, high) == (d * (k - 1) - lo, d * (k - 1) - hi + a)
    assert (o - 1) * s + 1 + low + high - d * (k - 1) == i


@pytest.mark.parametrize(("padding", "kernel", "dilation", "stride", "expected"), [
    (0, (3,), (1,), None, ((0, 0),)),
    (2, (3, 3), (1, 1), None, ((2, 2), (2, 2))),
    (np.int64(1), (3, 3), (1, 1), (2, 2), ((1, 1), (1, 1))),
    ((1, 2), (3, 3), (1, 1), None, ((1, 1), (2, 2))),                 # one int per dimension
    ([0, 3, 1], (1, 2, 3), (1, 1, 1), None, ((0, 0), (3, 3), (1, 1))),
    (((0, 1), (2, 3)), (3, 3), (1, 1), None, ((0, 1), (2, 3))),      # (low, high) pairs
    (((0, 1), 2), (3, 3), (1, 1), None, ((0, 1), (2, 2))),           # a pair beside an int
    ((1, (0, 2), 3), (3, 3, 3), (1, 1, 1), None, ((1, 1), (0, 2), (3, 3))),
    ("valid", (3, 5), (2, 1), (3, 1), ((0, 0), (0, 0))),
    ("same", (3,), (1,), None, ((1, 1),)),
    ("same", (4,), (1,), (1,), ((1, 2),)),           # odd d(k-1): the extra cell goes high
    ("same", (3,), (2,), None, ((2, 2),)),
    ("same", (4,), (3,), None, ((4, 5),)),
    ("same", (1, 5), (1, 1), (1, 1), ((0, 0), (2, 2))),
    ("full", (3, 5), (1, 2), (2, 3), ((2, 2), (8, 8))),
    ("full", (1,), (3,), None, ((0, 0),)),
])
def test_resolve_padding_every_form(padding, kernel, dilation, stride, expected):
    assert resolve_padding(padding, kernel, dilation, stride) == expected


@pytest.mark.parametrize("k", [1, 2, 3, 4, 5])
@pytest.mark.parametrize("d", [1, 2, 3])
def test_same_padding_matches_torch(k, d):
    """'same' keeps the size, and puts the odd cell where torch does (the high side)."""
    (lo, hi), = resolve_padding("same", (k,), (d,))
    assert lo + hi == d * (k - 1) and hi - lo in (0, 1)
    x = torch.arange(1.0, 8.0, dtype=torch.float64)[None, None]
    w = torch.arange(1.0, k + 1.0, dtype=torch.float64)[None, None]
    with warnings.catch_warnings():
        # torch may warn (once per process) that an odd d(k-1) needs a padded copy
        warnings.filterwarnings("ignore", message="Using padding='same'", category=UserWarning)
        want = F.conv1d(x, w, padding="same", dilation=d)
    got = F.conv1d(F.pad(x, (lo, hi)), w, dilation=d)
    assert torch.equal(got, want)


@pytest.mark.parametrize(("spatial", "kernel", "stride", "padding", "dilation", "expected"), [
    ((6,), (3,), (2,), ((1, 1),), (1,), ((1, 2),)),    # rel 14, fig 4.7: p' = 1, a = 1
    ((5,), (3,), (2,), ((1, 1),), (1,), ((1, 1),)),    # rel 13, fig 4.6
    ((5,), (3,), (2,), ((0, 0),), (1,), ((2, 2),)),    # rel 12, fig 4.5
    ((4,), (3,), (1,), ((0, 0),), (1,), ((2, 2),)),    # rel 8, fig 4.1: full correlation
    ((5,), (4,), (1,), ((2, 2),), (1,), ((1, 1),)),    # rel 9, fig 4.2
    ((5,), (3,), (1,), ((2, 2),), (1,), ((0, 0),)),    # rel 11, fig 4.4
    ((7,), (3,), (1,), ((0, 0),), (2,), ((4, 4),)),    # fig 5.1, dilation: d(k-1)
    ((5,), (1,), (1,), ((2, 2),), (1,), ((-2, -2),)),  # padding beyond d(k-1): crop
    ((7, 8), (3, 2), (2, 3), ((0, 1), (2, 0)), (1, 2), ((2, 2), (0, 3))),
])
def test_grad_input_padding(spatial, kernel, stride, padding, dilation, expected):
    assert grad_input_padding(spatial, kernel, stride, padding, dilation) == expected
    out = conv_output_shape(spatial, kernel, stride, padding, dilation)
    for i, o, k, s, d, (lo, hi) in zip(spatial, out, kernel, stride, dilation, expected,
                                       strict=True):
        assert (o - 1) * s + 1 + lo + hi - d * (k - 1) == i


@pytest.mark.parametrize(("value", "nd", "expected"), [
    (2, 3, (2, 2, 2)),
    (np.int32(3), 2, (3, 3)),
    ((1, 2), 2, (1, 2)),
    ([4], 1, (4,)),
])
def test_as_tuple(value, nd, expected):
    out = shapes.as_tuple(value, nd, "stride")
    assert out == expected and all(type(v) is int for v in out)


def _reads(n, k, s, d, lo, hi):
    """Brute force: for every output, the taps whose input lies inside (not in the padding)."""
    o = (n + lo + hi - d * (k - 1) - 1) // s + 1
    return [[t for t in range(k) if 0 <= q * s + t * d - lo < n] for q in range(o)]


@pytest.mark.parametrize("s", [1, 2, 5])
@pytest.mark.parametrize("d", [1, 3])
def test_live_window_keeps_exactly_what_touches_the_input(s, d) -> None:
    for n, k, lo, hi in itertools.product(range(1, 6), range(1, 4), range(0, 9), range(0, 9)):
        if n + lo + hi < d * (k - 1) + 1:
            continue
        reads = _reads(n, k, s, d, lo, hi)
        qa, qb, ta, tb, lo2, hi2 = live_window(n, k, s, d, lo, hi)
        live_q = [q for q, ts in enumerate(reads) if ts]
        if qa == qb or ta == tb:        # nothing kept: nothing reads the input
            assert not live_q
            continue
        taps = sorted({t for ts in reads for t in ts}) or [ta]  # (a dilation may step over it)
        assert qa <= min(live_q, default=qa) and max(live_q, default=qa) < qb
        assert ta <= taps[0] and taps[-1] < tb
        if d == 1 and live_q:           # without gaps in the windows: exactly those
            assert (qa, qb, ta, tb) == (live_q[0], live_q[-1] + 1, taps[0], taps[-1] + 1)
        # the smaller correlation reads the same input cells through the same taps
        assert _reads(n, tb - ta, s, d, lo2, hi2) == [[t - ta for t in reads[q]]
                                                      for q in range(qa, qb)]
        for t in range(k):
            qs = [q for q, ts in enumerate(reads) if t in ts]
            assert tap_outputs(n, len(reads), t, s, d, lo) == (
                (qs[0], qs[-1] + 1) if qs else tap_outputs(n, len(reads), t, s, d, lo)[:1] * 2)
