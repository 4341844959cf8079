"""Pooling options PyTorch takes (issue 11, item 11): max-pooling ``dilation`` and average
pooling ``divisor_override``, with clear errors for bad values of the new arguments, and
average pooling of non-finite values. Every forward and backward is compared with PyTorch
autograd in float64 (to 1e-12; the argmax exactly) over a sweep of 1-3-D shapes, and the dilated
max pool also with a direct loop written from PyTorch's CPU kernel (the taps ``q*s - p + t*d``
inside the input, the first maximum in row-major order). Where PyTorch refuses a configuration,
rot180 must refuse it too.
"""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch
import torch.nn.functional as TF

import rot180.functional as F
from _pool_torch_common import (
    AVG_CASES,
    MAX_CASES,
    R_AVG,
    R_AVG_GRAD,
    R_MAX,
    R_MAX_GRAD,
    T_AVG,
    T_MAX,
    TOL,
    Case,
)
from rot180 import nn


def _torch_max(c: Case, x: np.ndarray, dy_seed: int):
    """PyTorch's output, indices and input gradient, or the exception it raised."""
    xt = torch.tensor(x, requires_grad=True)
    try:
        y, idx = T_MAX[c.nd](xt, c.kernel, c.stride, c.padding, c.dilation,
                             ceil_mode=c.ceil_mode, return_indices=True)
    except RuntimeError as exc:
        return exc
    if _padding_only(c):
        # PyTorch returns -inf and the index of a tap outside the input (off the plane, or
        # wrapped onto another row); rot180 refuses such a window.
        assert torch.isneginf(y).any()
        return "window of padding only"
    dy = np.random.default_rng(dy_seed).standard_normal(tuple(y.shape))
    y.backward(torch.tensor(dy))
    return y.detach().numpy(), idx.numpy(), dy, xt.grad.numpy()


def _taps(c: Case, q: tuple[int, ...]) -> list[list[int]]:
    """The input coordinates, per spatial axis, of the taps of window ``q`` inside the input."""
    return [[qj * s - p + t * d for t in range(k) if 0 <= qj * s - p + t * d < i]
            for qj, s, p, d, k, i in zip(q, c.stride, c.padding, c.dilation, c.kernel,
                                          c.spatial, strict=True)]


def _padding_only(c: Case) -> bool:
    """Some window has no tap inside the input (possible only with dilation)."""
    out = []
    for i, k, s, p, d in zip(c.spatial, c.kernel, c.stride, c.padding, c.dilation, strict=True):
        # PyTorch's pooling_output_shape: floor division, and in ceil mode the last window
        # must start inside the input or the low padding.
        o = (i + 2 * p - d * (k - 1) - 1 + (s - 1 if c.ceil_mode else 0)) // s + 1
        out.append(o - 1 if c.ceil_mode and (o - 1) * s >= i + p else o)
    return any(not all(_taps(c, q)) for q in itertools.product(*(range(o) for o in out)))


def _max_loop(c: Case, x: np.ndarray, out: tuple[int, ...], dy: np.ndarray):
    """PyTorch's CPU max-pool kernel, written out: real taps only, first maximum wins (a NaN
    always replaces the running maximum)."""
    lead = x.shape[:-c.nd]
    y, idx, dx = np.empty(lead + out), np.empty(lead + out, np.int64), np.zeros_like(x)
    for q in itertools.product(*(range(o) for o in out)):
        cells = list(itertools.product(*_taps(c, q)))
        for n in itertools.product(*(range(a) for a in lead)):
            best, val = cells[0], -np.inf
            for cell in cells:
                v = x[n + cell]
                if v > val or np.isnan(v):
                    best, val = cell, v
            y[n + q] = val
            idx[n + q] = np.ravel_multi_index(best, c.spatial)
            dx[n + best] += dy[n + q]
    return y, idx, dx


# -- item 11: dilation ---------------------------------------------------------------------------

@pytest.mark.parametrize("c", MAX_CASES, ids=str)
def test_dilated_max_pool_matches_torch_and_direct_loop(c: Case) -> None:
    x = c.input(seed=1)
    theirs = _torch_max(c, x, dy_seed=2)
    args = (c.kernel, c.stride, c.padding, c.dilation)
    if not isinstance(theirs, tuple):   # PyTorch refuses (or returns an index off the plane)
        with pytest.raises(ValueError, match="larger than the padded input|reads padding only"):
            R_MAX[c.nd](x, *args, ceil_mode=c.ceil_mode)
        return
    ty, tidx, dy, tdx = theirs
    y, idx = R_MAX[c.nd](x, *args, ceil_mode=c.ceil_mode)
    np.testing.assert_array_equal(y, ty)
    np.testing.assert_array_equal(idx, tidx)     # return_indices stays right with dilation
    dx = R_MAX_GRAD[c.nd](dy, idx, x.shape, *args, ceil_mode=c.ceil_mode)
    np.testing.assert_allclose(dx, tdx, rtol=0, atol=TOL)
    # Without the geometry (np.bincount), and through the generic function with nd=.
    np.testing.assert_allclose(R_MAX_GRAD[c.nd](dy, idx, x.shape), tdx, rtol=0, atol=TOL)
    gy, gidx = F.max_pool(x, c.kernel[:1] if len(set(c.kernel)) == 1 else c.kernel,
                          c.stride, c.padding, c.dilation, ceil_mode=c.ceil_mode, nd=c.nd)
    np.testing.assert_array_equal(gidx, tidx)
    ry, ridx, rdx = _max_loop(c, x, y.shape[-c.nd:], dy)
    np.testing.assert_array_equal(y, ry)
    np.testing.assert_array_equal(idx, ridx)
    np.testing.assert_allclose(dx, rdx, rtol=0, atol=TOL)


def test_dilated_sweep_covers_what_it_claims() -> None:
    """The sweep holds dilated, ceil-mode, padded, unbatched and refused cases."""
    kinds = {"dilated": 0, "ceil": 0, "padded": 0, "unbatched": 0, "refused": 0, "ok": 0}
    for c in MAX_CASES:
        kinds["dilated"] += any(d > 1 for d in c.dilation)
        kinds["ceil"] += c.ceil_mode
        kinds["padded"] += any(c.padding)
        kinds["unbatched"] += len(c.lead) == 1
        ok = isinstance(_torch_max(c, c.input(1), 2), tuple)
        kinds["ok" if ok else "refused"] += 1
    assert min(kinds.values()) >= 3, kinds


@pytest.mark.parametrize("ceil_mode", [False, True])
def test_dilated_max_pool_all_minus_inf_window_reports_first_real_tap(ceil_mode: bool) -> None:
    # Window 0 starts in the padding: its first real tap is cell 1 (= -1 + 2), not cell 0.
    x = np.full((1, 1, 7, 7), -np.inf)
    x[0, 0, 4:, 4:] = 1.0
    args = ((3, 3), (2, 2), (1, 1), (2, 2))
    y, idx = F.max_pool2d(x, *args, ceil_mode=ceil_mode)
    ty, tidx = TF.max_pool2d(torch.tensor(x), *args, ceil_mode=ceil_mode, return_indices=True)
    np.testing.assert_array_equal(y, ty.numpy())
    np.testing.assert_array_equal(idx, tidx.numpy())
    assert idx[0, 0, 0, 0] == 1 * 7 + 1


def test_dilation_output_size_and_padding_rule_follow_torch() -> None:
    x = np.zeros((1, 1, 9))
    # o = floor((9 + 2 - 3 * 2 - 1) / 1) + 1 = 5; padding 1 <= 3 // 2 is allowed although the
    # dilated extent is 7, and padding 2 is refused although 2 <= 7 // 2.
    assert F.max_pool1d(x, 3, 1, 1, 3)[0].shape == (1, 1, 5)
    with pytest.raises(ValueError, match="padding must be between 0 and half the kernel size"):
        F.max_pool1d(x, 3, 1, 2, 3)
    with pytest.raises(RuntimeError, match="half of kernel size"):
        TF.max_pool1d(torch.tensor(x), 3, 1, 2, 3)
    # A ceil-mode window may reach past the padded input, as long as it starts inside it.
    y = F.avg_pool1d(np.ones((1, 1, 2)), 3, 2, ceil_mode=True)
    np.testing.assert_array_equal(y, TF.avg_pool1d(torch.ones(1, 1, 2, dtype=torch.float64), 3,
                                                   2, ceil_mode=True).numpy())
    with pytest.raises(ValueError, match=r"kernel 3 dilated by 3 spans 7 > input 4 \+ 2"):
        F.max_pool1d(np.zeros((1, 4)), 3, 1, 1, 3)
    with pytest.raises(ValueError, match="window 0 along spatial axis 0 reads padding only"):
        F.max_pool1d(np.zeros((1, 1, 2)), 2, 1, 1, 3)


@pytest.mark.parametrize("nd", [1, 2, 3])
def test_max_pool_layers_take_dilation_and_return_indices(nd: int) -> None:
    rng = np.random.default_rng(3)
    kw = {"kernel_size": 2, "stride": (2, 1, 1)[:nd], "padding": 1, "dilation": (2, 3, 1)[:nd],
          "ceil_mode": True}
    for shape in ((2, 3) + (7, 6, 5)[:nd], (3,) + (6, 7, 5)[:nd]):
        x = rng.standard_normal(shape)
        ours = getattr(nn, f"MaxPool{nd}d")(**kw)
        theirs = getattr(torch.nn, f"MaxPool{nd}d")(**kw)
        y = ours.forward(x)
        xt = torch.tensor(x, requires_grad=True)
        ty = theirs(xt)
        dy = rng.standard_normal(y.shape)
        ty.backward(torch.tensor(dy))
        np.testing.assert_array_equal(y, ty.detach().numpy())
        np.testing.assert_allclose(ours.backward(dy), xt.grad.numpy(), rtol=0, atol=TOL)
        y2, idx = getattr(nn, f"MaxPool{nd}d")(**kw, return_indices=True).forward(x)
        _, tidx = getattr(torch.nn, f"MaxPool{nd}d")(**kw, return_indices=True)(
            torch.tensor(x))
        np.testing.assert_array_equal(y2, y)
        np.testing.assert_array_equal(idx, tidx.numpy())
    assert "dilation=" in repr(ours)


# -- item 11: divisor_override -------------------------------------------------------------------

def _torch_avg(c: Case, x: np.ndarray, dy: np.ndarray | None, **kw):
    """PyTorch's average pooling and input gradient (for ``dy``; a seed when None), or the
    exception it raised; 1-D runs as 2-D with a unit axis, since PyTorch's avg_pool1d has no
    divisor_override."""
    xt = torch.tensor(x, requires_grad=True)
    try:
        if c.nd == 1:
            y = TF.avg_pool2d(xt.unsqueeze(-2), (1, *c.kernel), (1, *c.stride),
                              (0, *c.padding), **kw).squeeze(-2)
        else:
            y = T_AVG[c.nd](xt, c.kernel, c.stride, c.padding, **kw)
    except RuntimeError as exc:
        return exc
    if dy is None:
        dy = np.random.default_rng(5).standard_normal(tuple(y.shape))
    y.backward(torch.tensor(dy))
    return y.detach().numpy(), dy, xt.grad.numpy()


@pytest.mark.parametrize("divisor_override", [None, 1, 3, -2])
@pytest.mark.parametrize("count_include_pad", [True, False])
@pytest.mark.parametrize("c", AVG_CASES, ids=str)
def test_avg_pool_divisor_override_matches_torch(c: Case, count_include_pad: bool,
                                                 divisor_override: int | None) -> None:
    x = c.input(seed=4)
    kw = {"ceil_mode": c.ceil_mode, "count_include_pad": count_include_pad,
          "divisor_override": divisor_override}
    theirs = _torch_avg(c, x, None, **kw)
    if not isinstance(theirs, tuple):
        with pytest.raises(ValueError, match="larger than the padded input"):
            R_AVG[c.nd](x, c.kernel, c.stride, c.padding, **kw)
        return
    ty, dy, tdx = theirs
    y = R_AVG[c.nd](x, c.kernel, c.stride, c.padding, **kw)
    np.testing.assert_allclose(y, ty, rtol=0, atol=TOL)
    dx = R_AVG_GRAD[c.nd](dy, x.shape, c.kernel, c.stride, c.padding, **kw)
    np.testing.assert_allclose(dx, tdx, rtol=0, atol=TOL)
    # The average pool is linear: <pool(x), dy> = <x, pool_grad(dy)> (a second oracle).
    assert np.isclose(np.vdot(y, dy), np.vdot(x, dx), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("nd", [1, 2, 3])
def test_avg_pool_layers_take_divisor_override(nd: int) -> None:
    rng = np.random.default_rng(6)
    kw = {"kernel_size": 3, "stride": 2, "padding": 1, "ceil_mode": True,
          "divisor_override": 5}
    x = rng.standard_normal((2, 3) + (7, 6, 5)[:nd])
    ours = getattr(nn, f"AvgPool{nd}d")(**kw)
    y = ours.forward(x)
    dy = rng.standard_normal(y.shape)
    c = Case(nd, (2, 3), x.shape[2:], (3,) * nd, (2,) * nd, (1,) * nd, (1,) * nd, True, False)
    ty, _, tdx = _torch_avg(c, x, dy, ceil_mode=True, divisor_override=5)
    np.testing.assert_allclose(y, ty, rtol=0, atol=TOL)
    np.testing.assert_allclose(ours.backward(dy), tdx, rtol=0, atol=TOL)
    assert "divisor_override=5" in repr(ours)


@pytest.mark.parametrize(("call", "exc", "match"), [
    (lambda: F.max_pool2d(np.zeros((2, 3, 4, 5, 6)), 2), ValueError,
     r"max_pool2d: expected an input of 3 dimensions \(C, H, W\) or 4 \(N, C, H, W\), got 5-D"),
    (lambda: F.avg_pool1d(np.zeros(6), 2), ValueError,
     r"avg_pool1d: expected an input of 2 dimensions \(C, L\) or 3"),
    (lambda: F.max_pool3d_grad(np.zeros((1, 1, 1)), np.zeros((1, 1, 1), np.int64), (2, 2, 2),
                               2), ValueError, r"max_pool3d_grad: expected input_shape of 4"),
    (lambda: F.max_pool2d(np.zeros((1, 1, 4, 4)), 2, dilation=0), ValueError,
     r"dilation must be >= 1 in every dimension, got 0"),
    (lambda: F.max_pool2d(np.zeros((1, 1, 4, 4)), 2, dilation=(1, 2, 3)), ValueError,
     r"dilation must have one entry per spatial dimension \(2\)"),
    (lambda: F.avg_pool2d(np.zeros((1, 1, 4, 4)), 2, divisor_override=0), ValueError,
     r"avg_pool: divisor_override must not be zero, got 0\. Pass a non-zero int, or None"),
    (lambda: F.avg_pool2d_grad(np.zeros((1, 1, 2, 2)), (1, 1, 4, 4), 2, divisor_override=2.5),
     TypeError, r"avg_pool_grad: divisor_override must be an int or None, got float 2\.5"),
    (lambda: F.avg_pool(np.zeros((1, 1, 4, 4)), 2, count_include_pad=1), TypeError,
     r"avg_pool: count_include_pad must be True or False, got int 1"),
    (lambda: F.max_pool(np.zeros((1, 1, 4, 4)), 2, nd=2.0), TypeError,
     r"max_pool: nd must be an int, the number of spatial dimensions \(1, 2 or 3\), got "
     r"float 2\.0"),
    (lambda: F.max_pool(np.zeros((1, 1, 4, 4)), (2, 2), nd=4), ValueError,
     r"expected 1, 2 or 3 spatial dimensions, got 4"),
    (lambda: F.max_pool(np.zeros((1, 1, 4, 4)), (2, 2, 2), nd=2), ValueError,
     r"kernel_size must have one entry per spatial dimension \(2\)"),
    (lambda: F.max_pool_grad(np.zeros((0, 3, 2, 2)), np.zeros((0, 3, 2, 2), np.int64),
                             (0, 3, -4, 4), 2), ValueError,
     r"input_shape must have no zero-size or negative axis"),
    (lambda: nn.MaxPool2d(2, dilation=0), ValueError,
     r"MaxPool2d: dilation must be >= 1 in every dimension, got 0"),
    (lambda: nn.MaxPool1d(2, return_indices=1), TypeError,
     r"MaxPool1d: return_indices must be True or False"),
    (lambda: nn.AvgPool3d(2, divisor_override=0), ValueError,
     r"AvgPool3d: divisor_override must not be zero"),
    (lambda: nn.AvgPool2d(2, divisor_override="2"), TypeError,
     r"AvgPool2d: divisor_override must be an int or None, got str '2'\. Pass the number "
     r"every window "
     r"sum is divided by, or None"),
])
def test_new_arguments_are_checked_with_clear_errors(call, exc, match) -> None:
    with pytest.raises(exc, match=match):
        call()


def test_average_pooling_of_non_finite_values_is_torchs_and_silent() -> None:
    """inf - inf in a window is NaN, as in PyTorch, without numpy's RuntimeWarning (pytest turns
    warnings into errors here; the conv engine is silent in the same way)."""
    x = np.array([[[np.inf, -np.inf, 1.0, 2.0, np.nan, 0.0]]])
    want = torch.nn.functional.avg_pool1d(torch.tensor(x), 2).numpy()
    np.testing.assert_array_equal(F.avg_pool1d(x, 2), want)
    dy = np.array([[[np.inf, 1.0, np.nan]]])
    xt = torch.zeros(x.shape, dtype=torch.float64, requires_grad=True)
    torch.nn.functional.avg_pool1d(xt, 2).backward(torch.tensor(dy))
    np.testing.assert_array_equal(F.avg_pool1d_grad(dy, x.shape, 2), xt.grad.numpy())
    ya = F.adaptive_avg_pool(x, 2)
    np.testing.assert_array_equal(ya, torch.nn.functional.adaptive_avg_pool1d(
        torch.tensor(x), 2).numpy())
    assert np.isnan(F.global_avg_pool(x)).all()
