"""Max and average pooling functions (:mod:`rot180.functional`) against PyTorch float64, a
direct-loop reference, the adjoint identity and finite differences: fixed and random
configurations (1-3-D, batched and unbatched, overlapping windows, padding, ceil mode, tied
maxima, NaN and all-``-inf`` windows) and a hypothesis sweep over any configuration.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from _pool_common import (
    CONFIGS,
    SPECIAL,
    T_AVG,
    TOL,
    PoolConfig,
    _avg_loop,
    _draw,
    _max_loop,
    _max_torch,
    _torch,
)
from rot180.functional import avg_pool, avg_pool_grad, max_pool, max_pool_grad
from rot180.gradcheck import gradcheck

# -- max pooling ------------------------------------------------------------------------------

@pytest.mark.parametrize("cfg", CONFIGS + SPECIAL, ids=str)
def test_max_pool_matches_torch(cfg: PoolConfig) -> None:
    rng = np.random.default_rng(0)
    x = cfg.input(rng)
    y, idx = max_pool(x, *cfg.args(), ceil_mode=cfg.ceil_mode)
    dy = rng.standard_normal(y.shape)
    ty, tidx, tdx = _max_torch(cfg, x, dy)
    assert y.shape == ty.shape and idx.dtype == np.int64
    np.testing.assert_array_equal(y, ty)
    np.testing.assert_array_equal(idx, tidx)
    dx = max_pool_grad(dy, idx, x.shape, *cfg.args(), ceil_mode=cfg.ceil_mode)
    np.testing.assert_allclose(dx, tdx, rtol=0, atol=TOL)
    if len(cfg.lead) == 2:   # the np.bincount path (no window geometry)
        np.testing.assert_allclose(max_pool_grad(dy, idx, x.shape), tdx, rtol=0, atol=TOL)


@pytest.mark.parametrize("cfg", CONFIGS[:12] + SPECIAL[:4], ids=str)
def test_max_pool_matches_direct_loop(cfg: PoolConfig) -> None:
    rng = np.random.default_rng(1)
    x = cfg.input(rng)
    y, idx = max_pool(x, *cfg.args(), ceil_mode=cfg.ceil_mode)
    dy = rng.standard_normal(y.shape)
    ry, ridx, rdx = _max_loop(cfg, x, dy)
    np.testing.assert_array_equal(y, ry)
    np.testing.assert_array_equal(idx, ridx)
    dx = max_pool_grad(dy, idx, x.shape, *cfg.args(), ceil_mode=cfg.ceil_mode)
    np.testing.assert_allclose(dx, rdx, rtol=0, atol=TOL)


def test_max_pool_ties_route_to_first_maximum_only() -> None:
    # Every 2x2 window is constant: the whole delta must go to its top-left cell.
    x = np.repeat(np.repeat(np.arange(6.0).reshape(1, 1, 2, 3), 2, axis=2), 2, axis=3)
    y, idx = max_pool(x, 2)
    dy = np.arange(1.0, 7.0).reshape(1, 1, 2, 3)
    dx = max_pool_grad(dy, idx, x.shape, 2)
    expect = np.zeros_like(x)
    expect[..., ::2, ::2] = dy
    np.testing.assert_array_equal(dx, expect)
    _, tidx, tdx = _max_torch(PoolConfig(2, (1, 1), (2, 2), (2, 2), (0, 0), False, (4, 6),
                                         True), x, dy)
    np.testing.assert_array_equal(idx, tidx)
    np.testing.assert_array_equal(dx, tdx)


def test_max_pool_overlapping_windows_sum_deltas() -> None:
    # k=3, s=2 over a constant row: window q picks its first cell 2q, so cells 2, 4 are the
    # argmax of one window each and the delta of window q lands on 2q alone; with a peak at
    # cell 2 both windows 0 and 1 pick it and their deltas add.
    x = np.zeros((1, 1, 7))
    x[..., 2] = 5.0
    y, idx = max_pool(x, 3, 2)
    np.testing.assert_array_equal(idx[0, 0], [2, 2, 4])
    dy = np.array([[[1.0, 10.0, 100.0]]])
    dx = max_pool_grad(dy, idx, x.shape, 3, 2)
    np.testing.assert_array_equal(dx[0, 0], [0, 0, 11, 0, 100, 0, 0])
    np.testing.assert_array_equal(max_pool_grad(dy, idx, x.shape), dx)   # bincount path
    _, _, tdx = _max_torch(PoolConfig(1, (1, 1), (3,), (2,), (0,), False, (7,), True), x, dy)
    np.testing.assert_array_equal(dx, tdx)


def test_max_pool_never_selects_padding_even_for_all_minus_inf_windows() -> None:
    x = np.full((1, 2, 5, 5), -np.inf)
    x[0, 1, 2:, 2:] = np.arange(9.0).reshape(3, 3)
    cfg = PoolConfig(2, (1, 2), (3, 3), (2, 2), (1, 1), True, (5, 5), False)
    y, idx = max_pool(x, *cfg.args(), ceil_mode=True)
    dy = np.ones_like(y)
    ty, tidx, tdx = _max_torch(cfg, x, dy)
    np.testing.assert_array_equal(y, ty)
    np.testing.assert_array_equal(idx, tidx)
    np.testing.assert_array_equal(max_pool_grad(dy, idx, x.shape, *cfg.args(), ceil_mode=True),
                                  tdx)


def test_max_pool_nan_propagates_like_torch() -> None:
    rng = np.random.default_rng(2)
    x = rng.standard_normal((2, 2, 6, 6))
    x[0, 0, 1, 1] = x[0, 0, 2, 2] = x[1, 1, 5, 0] = np.nan
    cfg = PoolConfig(2, (2, 2), (3, 3), (2, 2), (1, 1), False, (6, 6), False)
    y, idx = max_pool(x, *cfg.args())
    dy = rng.standard_normal(y.shape)
    ty, tidx, tdx = _max_torch(cfg, x, dy)
    np.testing.assert_array_equal(y, ty)      # NaN positions compare equal here
    np.testing.assert_array_equal(idx, tidx)
    np.testing.assert_allclose(max_pool_grad(dy, idx, x.shape, *cfg.args()), tdx, rtol=0,
                               atol=TOL)


def test_max_pool_gradcheck() -> None:
    rng = np.random.default_rng(3)
    x = rng.permutation(2 * 3 * 7 * 6).reshape(2, 3, 7, 6) / 10.0  # distinct: argmax is stable
    res = gradcheck(lambda a: max_pool(a, 3, 2, 1)[0], (x,),
                    grad_fn=lambda d, a: (max_pool_grad(d, max_pool(a, 3, 2, 1)[1], a.shape,
                                                        3, 2, 1),),
                    eps=1e-4)
    assert res.ok, str(res)


# -- average pooling -------------------------------------------------------------------------

@pytest.mark.parametrize("count_include_pad", [True, False])
@pytest.mark.parametrize("cfg", CONFIGS + SPECIAL, ids=str)
def test_avg_pool_matches_torch(cfg: PoolConfig, count_include_pad: bool) -> None:
    rng = np.random.default_rng(4)
    x = cfg.input(rng)
    kw = {"ceil_mode": cfg.ceil_mode, "count_include_pad": count_include_pad}
    y = avg_pool(x, *cfg.args(), **kw)
    dy = rng.standard_normal(y.shape)
    xt = _torch(x)
    ty = T_AVG[cfg.nd](xt, *cfg.args(), **kw)
    ty.backward(torch.tensor(dy))
    np.testing.assert_allclose(y, ty.detach().numpy(), rtol=0, atol=TOL)
    np.testing.assert_allclose(avg_pool_grad(dy, x.shape, *cfg.args(), **kw), xt.grad.numpy(),
                               rtol=0, atol=TOL)


@pytest.mark.parametrize("count_include_pad", [True, False])
@pytest.mark.parametrize("cfg", CONFIGS[:9] + SPECIAL[:4], ids=str)
def test_avg_pool_matches_direct_loop_and_adjoint(cfg: PoolConfig,
                                                  count_include_pad: bool) -> None:
    rng = np.random.default_rng(5)
    x = cfg.input(rng)
    kw = {"ceil_mode": cfg.ceil_mode, "count_include_pad": count_include_pad}
    y = avg_pool(x, *cfg.args(), **kw)
    dy = rng.standard_normal(y.shape)
    dx = avg_pool_grad(dy, x.shape, *cfg.args(), **kw)
    ry, rdx = _avg_loop(cfg, x, dy, count_include_pad)
    np.testing.assert_allclose(y, ry, rtol=0, atol=TOL)
    np.testing.assert_allclose(dx, rdx, rtol=0, atol=TOL)
    # Average pooling is linear: <pool(x), dy> = <x, pool_grad(dy)>.
    assert np.isclose(np.vdot(y, dy), np.vdot(x, dx), rtol=1e-12, atol=1e-12)


def test_avg_pool_gradcheck() -> None:
    x = np.random.default_rng(6).standard_normal((2, 2, 5, 6))
    kw = {"count_include_pad": False, "ceil_mode": True}
    res = gradcheck(lambda a: avg_pool(a, 3, 2, 1, **kw), (x,),
                    grad_fn=lambda d, a: (avg_pool_grad(d, a.shape, 3, 2, 1, **kw),))
    assert res.ok, str(res)


# -- hypothesis: any configuration ------------------------------------------------------------

@st.composite
def pool_configs(draw) -> PoolConfig:
    return _draw(lambda lo, hi: draw(st.integers(lo, hi)))


@settings(max_examples=40, deadline=None)
@given(cfg=pool_configs(), count_include_pad=st.booleans())
def test_pooling_matches_torch_hypothesis(cfg: PoolConfig, count_include_pad: bool) -> None:
    rng = np.random.default_rng(7)
    x = cfg.input(rng)
    y, idx = max_pool(x, *cfg.args(), ceil_mode=cfg.ceil_mode)
    dy = rng.standard_normal(y.shape)
    ty, tidx, tdx = _max_torch(cfg, x, dy)
    np.testing.assert_array_equal(idx, tidx)
    np.testing.assert_allclose(max_pool_grad(dy, idx, x.shape, *cfg.args(),
                                             ceil_mode=cfg.ceil_mode), tdx, rtol=0, atol=TOL)
    kw = {"ceil_mode": cfg.ceil_mode, "count_include_pad": count_include_pad}
    xt = _torch(x)
    T_AVG[cfg.nd](xt, *cfg.args(), **kw).backward(torch.tensor(dy))
    np.testing.assert_allclose(avg_pool_grad(dy, x.shape, *cfg.args(), **kw), xt.grad.numpy(),
                               rtol=0, atol=TOL)


def test_adaptive_avg_pool_keeps_a_non_finite_value_in_its_own_windows() -> None:
    """A product with the averaging matrix gave 0 * inf = nan in windows without the inf; the
    non-finite case goes window by window (PyTorch: [inf, 5.5] and its adjoint)."""
    import torch

    from rot180.functional import adaptive_avg_pool, adaptive_avg_pool_grad

    x = np.array([[[1, 2, np.inf, 4, 5, 6, 7.0], [1, np.nan, 3, 4, 5, 6, 7]]])
    tx = torch.from_numpy(x).requires_grad_(True)
    ty = torch.nn.functional.adaptive_avg_pool1d(tx, 3)
    np.testing.assert_array_equal(adaptive_avg_pool(x, 3), ty.detach().numpy())
    dy = np.array([[[np.inf, 1.0, 2.0], [1.0, -np.inf, 0.5]]])
    ty.backward(torch.from_numpy(dy))
    np.testing.assert_array_equal(adaptive_avg_pool_grad(dy, x.shape), tx.grad.numpy())
