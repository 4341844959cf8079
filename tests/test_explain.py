"""rot180.explain.symbolic: the chain rule and the rot180 rule agree symbolically, and both agree
numerically with rot180.functional (itself verified against PyTorch) and with SymPy's own
derivatives of the forward sums."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import sympy as sp

from rot180.explain import conv_report, render, symbolic
from rot180.explain.symbolic import derive_input_gradient, derive_weight_gradient
from rot180.functional import conv, conv_grad_input, conv_grad_weight

CONVENTIONS = ("correlation", "convolution")


def _per_dim(v, nd):
    return (v,) * nd if isinstance(v, int) else tuple(v)


def _pairs(p, nd):
    if isinstance(p, int):
        return ((p, p),) * nd
    return tuple(e if isinstance(e, tuple) else (e, e) for e in p)


def _size(o, s, a, d, k, lo, hi):
    """Input size giving output ``o`` and stride remainder ``a`` (grown by s if too small)."""
    i = (o - 1) * s + a + d * (k - 1) + 1 - lo - hi
    while i < 1:
        i += s
    return i


def _grid_1d():
    out = []
    for k, s, d, p in itertools.product((1, 2, 3), (1, 2, 3), (1, 2), (0, 1, 2)):
        for a in sorted({0, s - 1}):
            i = _size(2, s, a, d, k, p, p)
            out.append(((i,), (k,), s, p, d))
    return out


def _grid_2d():
    out = []
    for k, s, d, p in itertools.product(((2, 2), (3, 2), (1, 3)), (1, (2, 3), 3), (1, (1, 2)),
                                        (0, 1, ((1, 0), (0, 2)))):
        ss, dd, pp = _per_dim(s, 2), _per_dim(d, 2), _pairs(p, 2)
        i = tuple(_size(2, ss[ax], ss[ax] - 1, dd[ax], k[ax], *pp[ax]) for ax in range(2))
        out.append((i, k, s, p, d))
    return out


GRID = _grid_1d() + _grid_2d()
GRID_IDS = [f"i{i}-k{k}-s{s}-p{p}-d{d}".replace(" ", "") for i, k, s, p, d in GRID]


def _remainder(i, k, s, p, d):
    nd = len(i)
    return tuple((n + lo + hi - dd * (kk - 1) - 1) % ss for n, kk, ss, (lo, hi), dd in
                 zip(i, k, _per_dim(s, nd), _pairs(p, nd), _per_dim(d, nd), strict=True))


def test_grid_is_broad():
    """The grid has what the issue asks: 1-D and 2-D, strides 1-3 with a non-zero remainder,
    padding, dilation; at least 50 configurations (each run in both conventions)."""
    assert len(GRID) >= 50
    assert {len(c[0]) for c in GRID} == {1, 2}
    assert any(max(_per_dim(c[2], len(c[0]))) == 3 and any(_remainder(*c)) for c in GRID)
    assert any(max(_per_dim(c[2], len(c[0]))) == 2 and any(_remainder(*c)) for c in GRID)
    assert any(c[3] != 0 for c in GRID) and any(max(_per_dim(c[4], len(c[0]))) > 1 for c in GRID)


@pytest.mark.parametrize("convention", CONVENTIONS)
@pytest.mark.parametrize(("i", "k", "s", "p", "d"), GRID, ids=GRID_IDS)
def test_rule_equals_chain_rule(i, k, s, p, d, convention):
    der = derive_input_gradient(i, k, stride=s, padding=p, dilation=d, convention=convention)
    assert der.verified, der.mismatches
    assert der.mismatches == ()
    assert der.remainder == _remainder(i, k, s, p, d)
    wd = derive_weight_gradient(i, k, stride=s, padding=p, dilation=d, convention=convention)
    assert wd.verified, wd.mismatches


def _values(symbols: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, dict]:
    vals = rng.standard_normal(symbols.shape)
    return vals, {s: sp.Float(v) for s, v in zip(symbols.ravel(), vals.ravel(), strict=True)}


def _numeric(exprs: np.ndarray, subs: dict) -> np.ndarray:
    return np.vectorize(lambda e: float(sp.sympify(e).xreplace(subs)), otypes=[float])(exprs)


NUMERIC = GRID[::5] + [((3, 3), (2, 2), 1, 0, 1), ((5, 4), (3, 2), 1, "same", (1, 2)),
                       ((4, 5), (2, 3), 1, "full", (2, 1)), ((6,), (3,), 2, "valid", 1)]


@pytest.mark.parametrize("channels", [None, (2, 3)])
@pytest.mark.parametrize("convention", CONVENTIONS)
@pytest.mark.parametrize(("i", "k", "s", "p", "d"), NUMERIC,
                         ids=[f"i{c[0]}-k{c[1]}-s{c[2]}-p{c[3]}-d{c[4]}".replace(" ", "")
                              for c in NUMERIC])
def test_symbolic_matches_functional(i, k, s, p, d, convention, channels, rng):
    """Substituting random numbers into the symbolic forward sums and gradients gives what
    rot180.functional computes (flip=True is the convolution convention)."""
    der = derive_input_gradient(i, k, stride=s, padding=p, dilation=d, convention=convention,
                                channels=channels)
    wder = derive_weight_gradient(i, k, stride=s, padding=p, dilation=d,
                                  convention=convention, channels=channels)
    arr = der.arrays
    x, xs = _values(arr["x"], rng)
    w, ws = _values(arr["w"], rng)
    dz, ds = _values(arr["delta_out"], rng)
    subs = {**xs, **ws, **ds}
    kw = {"stride": s, "padding": p, "dilation": d, "flip": convention == "convolution"}
    np.testing.assert_allclose(_numeric(arr["z"], subs), conv(x[None], w, **kw)[0],
                               rtol=1e-12, atol=1e-12)
    expect = conv_grad_input(dz[None], w, x[None].shape, **kw)[0]
    np.testing.assert_allclose(_numeric(arr["delta_in"], subs), expect, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(_numeric(arr["rule"], subs), expect, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(_numeric(wder.arrays["delta_w"], subs),
                               conv_grad_weight(x[None], dz[None], w.shape, **kw),
                               rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("convention", CONVENTIONS)
@pytest.mark.parametrize(("i", "k", "s", "p", "d", "channels"), [
    ((3, 3), (2, 2), 1, 0, 1, None),
    ((5, 4), (2, 3), (2, 1), ((1, 0), 1), (1, 2), None),
    ((7,), (3,), 3, 2, 2, None),
    ((4, 4), (2, 2), 2, 1, 1, (2, 2)),
])
def test_unrolled_matrix_is_the_jacobian(i, k, s, p, d, channels, convention):
    """W has one row per output and one column per input, and equals SymPy's Jacobian of the
    forward sums; the chain rule is W^T delta."""
    der = derive_input_gradient(i, k, stride=s, padding=p, dilation=d, convention=convention,
                                channels=channels)
    arr = der.arrays
    z, x = sp.Matrix(arr["z"].ravel()), sp.Matrix(arr["x"].ravel())
    assert der.unrolled.shape == (arr["z"].size, arr["x"].size)
    assert der.unrolled == z.jacobian(x)
    assert der.unrolled_transpose == der.unrolled.T
    back = der.unrolled.T * sp.Matrix(arr["delta_out"].ravel())
    assert all(sp.expand(a - b) == 0 for a, b in zip(back, arr["delta_in"].ravel(), strict=True))


def test_article_example():
    """The source article's 3x3 by 2x2 example (docs/derivation.md, section 6): its table in
    the convolution convention, ours in the correlation convention, and the rotated kernel."""
    art = derive_input_gradient((3, 3), (2, 2), convention="convolution")
    d11, d12, d21, d22 = art.delta_out
    w11, w12, w21, w22 = art.w
    assert art.verified and art.cells == 9
    assert art.delta_in[0, 0] == d11 * w22
    assert art.delta_in[0, 1] == d11 * w21 + d12 * w22
    assert art.delta_in[1, 1] == d11 * w11 + d12 * w12 + d21 * w21 + d22 * w22
    assert art.z[0, 0] == w22 * art.x[0, 0] + w21 * art.x[0, 1] + w12 * art.x[1, 0] + \
        w11 * art.x[1, 1]
    assert art.rule_kernel == art.w
    assert art.forward_kernel == sp.Matrix([[w22, w21], [w12, w11]])
    ours = derive_input_gradient((3, 3), (2, 2))
    assert ours.delta_in[0, 0] == d11 * w11
    assert ours.delta_in[1, 1] == d11 * w22 + d12 * w21 + d21 * w12 + d22 * w11
    assert ours.rule_kernel == sp.Matrix([[w22, w21], [w12, w11]])
    assert ours.padded_delta == sp.Matrix([[0, 0, 0, 0], [0, d11, d12, 0], [0, d21, d22, 0],
                                           [0, 0, 0, 0]])
    assert [s.name for s in ours.x] == ["x11", "x12", "x13", "x21", "x22", "x23", "x31", "x32",
                                        "x33"]
    wd = derive_weight_gradient((3, 3), (2, 2))
    x = ours.x
    assert wd.delta_w[0, 0] == d11 * x[0, 0] + d12 * x[0, 1] + d21 * x[1, 0] + d22 * x[1, 1]


def test_remainder_example_from_the_docs():
    """docs/derivation.md section 4: i = 6, k = 3, s = 2, p = 1 gives a = 1, pads (1, 2)."""
    der = derive_input_gradient(6, 3, stride=2, padding=1)
    (d1, d2, d3), (w1, w2, w3) = der.delta_out, der.w
    assert der.remainder == (1,) and der.grad_padding == ((1, 2),)
    assert list(der.padded_delta) == [0, d1, 0, d2, 0, d3, 0, 0]
    assert list(der.delta_in) == [w2 * d1, w3 * d1 + w1 * d2, w2 * d2, w3 * d2 + w1 * d3,
                                  w2 * d3, w3 * d3]


def test_symbol_names_and_channels():
    one = derive_input_gradient(4, 2)
    assert [s.name for s in one.x] == ["x1", "x2", "x3", "x4"]
    assert [s.name for s in one.delta_out] == ["δ1", "δ2", "δ3"]
    big = derive_input_gradient((10, 2), (1, 1))
    assert big.x[9, 1].name == "x10,2"
    multi = derive_input_gradient((2, 2), (2, 2), channels=(2, 3))
    assert len(multi.x) == 2 and len(multi.delta_out) == 3 and len(multi.w) == 3
    assert multi.x[1][0, 0].name == "x2_11"
    assert multi.w[2][1][0, 1].name == "w32_12"      # w[j=3, i=2], tap (1, 2)
    assert multi.delta_out[2][0, 0].name == "δ3_11"
    # Input channel i collects every output channel j through w[j, i].
    expect = sum(multi.delta_out[j][0, 0] * multi.w[j][1][1, 1] for j in range(3))
    assert sp.expand(multi.delta_in[1][1, 1] - expect) == 0
    assert multi.verified and multi.cells == 8


def test_a_wrong_rule_is_caught(monkeypatch):
    """Dropping the stride remainder from the padding (the classic bug) must fail verification
    and name the cells that differ."""
    def no_remainder(spatial, kernel, stride, padding, dilation):
        return tuple((d * (k - 1) - lo, d * (k - 1) - hi) for k, (lo, hi), d in
                     zip(kernel, padding, dilation, strict=True))

    monkeypatch.setattr(symbolic.shapes, "grad_input_padding", no_remainder)
    der = derive_input_gradient(6, 3, stride=2, padding=1)
    assert not der.verified
    assert der.mismatches == tuple(s.name for s in der.x)   # a shape mismatch: every cell
    text = render(conv_report(der))
    assert text.rstrip().endswith("NOT verified: the rule differs from the chain rule in 6 of 6 "
                                  "cells: x1, x2, x3, x4, x5, x6")
    der = derive_input_gradient(5, 3, stride=2, padding=1)   # a = 0: nothing to drop
    assert der.verified


def test_a_wrong_kernel_is_caught(monkeypatch):
    """Without the rotation the rule must fail in exactly the cells where it matters."""
    monkeypatch.setattr(symbolic, "_rot180", lambda w, nd: w)
    der = derive_input_gradient((3, 3), (2, 2))
    assert not der.verified
    assert "x22" in der.mismatches and "x11" in der.mismatches


@pytest.mark.parametrize(("kwargs", "error", "match"), [
    ({"input_shape": (3, 3, 3), "kernel_shape": (2, 2, 2)}, ValueError, "1-D and 2-D"),
    ({"input_shape": (3, 3), "kernel_shape": 2}, ValueError, "is 2-D but kernel_shape"),
    ({"input_shape": (2, 2), "kernel_shape": (3, 3)}, ValueError, "larger than the padded"),
    ({"input_shape": (3, 3), "kernel_shape": (2, 2), "convention": "conv"}, ValueError,
     "convention must be one of"),
    ({"input_shape": (3, 3), "kernel_shape": (2, 2), "stride": 0}, ValueError, "stride must"),
    ({"input_shape": (3, 3), "kernel_shape": (2, 2), "padding": "half"}, ValueError,
     "Invalid padding string"),
    ({"input_shape": (3, 3), "kernel_shape": (2, 2), "padding": "same", "stride": 2},
     ValueError, "only defined for stride 1"),
    ({"input_shape": (3, 3), "kernel_shape": (2, 2), "channels": (0, 1)}, ValueError,
     "channels must be >= 1"),
    ({"input_shape": (3, 3), "kernel_shape": (2, 2), "channels": 2}, TypeError,
     "pair of ints"),
    ({"input_shape": "3x3", "kernel_shape": (2, 2)}, TypeError, "input_shape must be"),
    ({"input_shape": (0, 3), "kernel_shape": (1, 1)}, ValueError, ">= 1 in every dimension"),
    ({"input_shape": (3, 3), "kernel_shape": (2, 2), "padding": -1}, ValueError,
     "non-negative"),
])
def test_bad_configurations(kwargs, error, match):
    with pytest.raises(error, match=match):
        derive_input_gradient(**kwargs)
    with pytest.raises(error, match=match):
        derive_weight_gradient(**kwargs)
