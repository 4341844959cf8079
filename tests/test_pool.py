"""Max, average and adaptive pooling (functional and layers) against PyTorch float64, a
direct-loop reference, the adjoint identity and finite differences."""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import numpy as np
import pytest
import torch
import torch.nn.functional as TF
from hypothesis import given, settings
from hypothesis import strategies as st

from rot180 import nn
from rot180.functional import (
    adaptive_avg_pool,
    adaptive_avg_pool_grad,
    avg_pool,
    avg_pool_grad,
    global_avg_pool,
    global_avg_pool_grad,
    max_pool,
    max_pool_grad,
)
from rot180.gradcheck import gradcheck

TOL = 1e-10
T_MAX = {1: TF.max_pool1d, 2: TF.max_pool2d, 3: TF.max_pool3d}
T_AVG = {1: TF.avg_pool1d, 2: TF.avg_pool2d, 3: TF.avg_pool3d}
T_ADAPTIVE = {1: TF.adaptive_avg_pool1d, 2: TF.adaptive_avg_pool2d, 3: TF.adaptive_avg_pool3d}


@dataclass(frozen=True)
class PoolConfig:
    nd: int
    lead: tuple[int, ...]          # (N, C) or (C,) for an unbatched input
    kernel: tuple[int, ...]
    stride: tuple[int, ...]
    padding: tuple[int, ...]
    ceil_mode: bool
    spatial: tuple[int, ...]
    ties: bool                     # integer-valued input: many tied maxima

    @property
    def shape(self) -> tuple[int, ...]:
        return self.lead + self.spatial

    def args(self) -> tuple:
        return self.kernel, self.stride, self.padding

    def input(self, rng: np.random.Generator, dtype: type = np.float64) -> np.ndarray:
        if self.ties:
            return rng.integers(-2, 3, self.shape).astype(dtype)
        return rng.standard_normal(self.shape).astype(dtype)

    def __str__(self) -> str:
        return (f"{self.nd}d-{self.lead}-i{self.spatial}-k{self.kernel}-s{self.stride}"
                f"-p{self.padding}{'-ceil' if self.ceil_mode else ''}"
                f"{'-ties' if self.ties else ''}").replace(" ", "")


def _draw(integer, nd: int | None = None) -> PoolConfig:
    """One valid configuration from ``integer(lo, hi)``; half have stride != kernel."""
    nd = nd or integer(1, 3)
    kernel = tuple(integer(1, 3) for _ in range(nd))
    stride = tuple(integer(1, 3) for _ in range(nd))
    padding = tuple(integer(0, k // 2) for k in kernel)
    # i >= k (PyTorch's 3-D average pooling insists on it even with padding).
    spatial = tuple(k + integer(0, 4) for k in kernel)
    lead = (integer(1, 2), integer(1, 3)) if integer(0, 4) else (integer(1, 3),)
    return PoolConfig(nd, lead, kernel, stride, padding, bool(integer(0, 1)), spatial,
                      bool(integer(0, 1)))


def _configs(n: int, seed: int) -> list[PoolConfig]:
    rng = np.random.default_rng(seed)
    return [_draw(lambda lo, hi: int(rng.integers(lo, hi + 1)), nd=1 + i % 3) for i in range(n)]


CONFIGS = _configs(36, seed=3)
SPECIAL = [  # overlapping windows, padding and ceil mode that the draw may miss
    PoolConfig(2, (2, 3), (3, 3), (2, 2), (1, 1), False, (7, 8), True),
    PoolConfig(2, (2, 3), (3, 3), (2, 2), (0, 0), True, (6, 9), False),
    PoolConfig(1, (1, 2), (3,), (1,), (1,), False, (6,), True),
    PoolConfig(3, (1, 2), (3, 2, 3), (2, 1, 1), (1, 1, 0), True, (5, 4, 3), True),
    PoolConfig(2, (64, 6), (2, 2), (2, 2), (0, 0), False, (28, 28), False),  # LeNet's first pool
]


def _torch(x: np.ndarray) -> torch.Tensor:
    return torch.tensor(x, requires_grad=True)


def _max_torch(cfg: PoolConfig, x: np.ndarray, dy: np.ndarray):
    xt = _torch(x)
    y, idx = T_MAX[cfg.nd](xt, *cfg.args(), ceil_mode=cfg.ceil_mode, return_indices=True)
    y.backward(torch.tensor(dy))
    return y.detach().numpy(), idx.numpy(), xt.grad.numpy()


# -- a direct-loop reference, PyTorch's semantics written out position by position ------------

def _windows(cfg: PoolConfig):
    """Yield (output index, list of real input cells of its window in row-major order)."""
    out = tuple(_out_size(i, k, s, p, cfg.ceil_mode)
                for i, k, s, p in zip(cfg.spatial, cfg.kernel, cfg.stride, cfg.padding,
                                      strict=True))
    for q in itertools.product(*(range(o) for o in out)):
        ranges = [range(max(qj * s - p, 0), min(qj * s - p + k, i)) for qj, s, p, k, i in
                  zip(q, cfg.stride, cfg.padding, cfg.kernel, cfg.spatial, strict=True)]
        yield q, list(itertools.product(*ranges))


def _out_size(i: int, k: int, s: int, p: int, ceil_mode: bool) -> int:
    """From PyTorch's documented formula (independent of rot180.functional.shapes)."""
    if not ceil_mode:
        return (i + 2 * p - k) // s + 1
    o = int(np.ceil((i + 2 * p - k) / s)) + 1
    return o - 1 if (o - 1) * s >= i + p else o


def _max_loop(cfg: PoolConfig, x: np.ndarray, dy: np.ndarray):
    lead = x.shape[:-cfg.nd]
    wins = list(_windows(cfg))
    out = tuple(max(q[j] for q, _ in wins) + 1 for j in range(cfg.nd))
    y = np.empty(lead + out)
    idx = np.empty(lead + out, np.int64)
    dx = np.zeros_like(x)
    for n in itertools.product(*(range(a) for a in lead)):
        for q, cells in wins:
            best = max(cells, key=lambda c: x[n + c])  # max() keeps the first of equal keys
            y[n + q] = x[n + best]
            idx[n + q] = np.ravel_multi_index(best, cfg.spatial)
            dx[n + best] += dy[n + q]
    return y, idx, dx


def _avg_loop(cfg: PoolConfig, x: np.ndarray, dy: np.ndarray, count_include_pad: bool):
    lead = x.shape[:-cfg.nd]
    wins = list(_windows(cfg))
    out = tuple(max(q[j] for q, _ in wins) + 1 for j in range(cfg.nd))
    y = np.empty(lead + out)
    dx = np.zeros_like(x)
    for q, cells in wins:
        if count_include_pad:   # the window clipped to the padded input
            c = np.prod([min(qj * s - p + k, i + p) - (qj * s - p) for qj, s, p, k, i in
                         zip(q, cfg.stride, cfg.padding, cfg.kernel, cfg.spatial, strict=True)])
        else:
            c = len(cells)
        for n in itertools.product(*(range(a) for a in lead)):
            y[n + q] = sum(x[n + cell] for cell in cells) / c
            for cell in cells:
                dx[n + cell] += dy[n + q] / c
    return y, dx


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


# -- layers ------------------------------------------------------------------------------------

LAYER_CASES = [
    (1, {"kernel_size": 3, "stride": 2, "padding": 1}, (2, 3, 9)),
    (2, {"kernel_size": 2}, (2, 3, 8, 7)),
    (2, {"kernel_size": (3, 2), "stride": (2, 1), "padding": (1, 0), "ceil_mode": True},
     (3, 5, 6)),   # unbatched
    (3, {"kernel_size": 2, "stride": 1}, (1, 2, 3, 4, 3)),
]


@pytest.mark.parametrize("kind", ["Max", "Avg"])
@pytest.mark.parametrize(("nd", "kwargs", "shape"), LAYER_CASES)
def test_pool_layers_match_torch_modules(kind: str, nd: int, kwargs: dict, shape: tuple
                                         ) -> None:
    rng = np.random.default_rng(8)
    x = rng.standard_normal(shape)
    ours = getattr(nn, f"{kind}Pool{nd}d")(**kwargs)
    theirs = getattr(torch.nn, f"{kind}Pool{nd}d")(**kwargs)
    for mode in ("train", "eval"):
        getattr(ours, mode)()
        getattr(theirs, mode)()
        y = ours.forward(x)
        dy = rng.standard_normal(y.shape)
        xt = _torch(x)
        ty = theirs(xt)
        ty.backward(torch.tensor(dy))
        np.testing.assert_allclose(y, ty.detach().numpy(), rtol=0, atol=TOL)
        np.testing.assert_allclose(ours.backward(dy), xt.grad.numpy(), rtol=0, atol=TOL)
    assert ours.state_dict() == {} and list(ours.parameters()) == []


@pytest.mark.parametrize("nd", [1, 2, 3])
@pytest.mark.parametrize("output_size", [1, 2, 3, "mixed"])
def test_adaptive_avg_pool_matches_torch(nd: int, output_size: object) -> None:
    rng = np.random.default_rng(9)
    spatial = (7, 5, 4)[:nd]
    size = ((None, 2, 3)[:nd] if nd > 1 else (3,)) if output_size == "mixed" else output_size
    x = rng.standard_normal((2, 3, *spatial))
    layer = getattr(nn, f"AdaptiveAvgPool{nd}d")(size)
    y = layer.forward(x)
    dy = rng.standard_normal(y.shape)
    xt = _torch(x)
    ty = T_ADAPTIVE[nd](xt, size)
    ty.backward(torch.tensor(dy))
    np.testing.assert_allclose(y, ty.detach().numpy(), rtol=0, atol=TOL)
    np.testing.assert_allclose(layer.backward(dy), xt.grad.numpy(), rtol=0, atol=TOL)
    np.testing.assert_allclose(adaptive_avg_pool_grad(dy, x.shape), xt.grad.numpy(), rtol=0,
                               atol=TOL)


def test_adaptive_and_global_avg_pool_unbatched_and_gradcheck() -> None:
    rng = np.random.default_rng(10)
    x = rng.standard_normal((3, 6, 5))
    layer = nn.GlobalAvgPool2d()
    y = layer.forward(x)
    np.testing.assert_allclose(y, TF.adaptive_avg_pool2d(torch.tensor(x), 1).numpy(), rtol=0,
                               atol=TOL)
    dy = rng.standard_normal(y.shape)
    np.testing.assert_allclose(layer.backward(dy), np.broadcast_to(dy / 30, x.shape), rtol=0,
                               atol=TOL)
    res = gradcheck(nn.AdaptiveAvgPool2d((4, 3)), x)
    assert res.ok, str(res)
    res = gradcheck(global_avg_pool, (x[None],),
                    grad_fn=lambda d, a: (global_avg_pool_grad(d, a.shape),))
    assert res.ok, str(res)
    np.testing.assert_allclose(adaptive_avg_pool(x[None], 1), global_avg_pool(x[None]),
                               rtol=0, atol=TOL)


# -- dtypes and errors ---------------------------------------------------------------------------

def test_float32_preserved() -> None:
    x = np.random.default_rng(11).standard_normal((2, 3, 8, 8)).astype(np.float32)
    y, idx = max_pool(x, 3, 2, 1)
    assert y.dtype == np.float32 and idx.dtype == np.int64
    assert max_pool_grad(np.ones_like(y), idx, x.shape, 3, 2, 1).dtype == np.float32
    assert max_pool_grad(np.ones_like(y), idx, x.shape).dtype == np.float32
    a = avg_pool(x, 3, 2, 1, count_include_pad=False)
    assert a.dtype == np.float32
    assert avg_pool_grad(np.ones_like(a), x.shape, 3, 2, 1).dtype == np.float32
    for layer in (nn.MaxPool2d(2), nn.AvgPool2d(3, 1, 1), nn.AdaptiveAvgPool2d((3, 2)),
                  nn.GlobalAvgPool2d()):
        y = layer.forward(x)
        assert y.dtype == np.float32
        assert layer.backward(np.ones_like(y)).dtype == np.float32


@pytest.mark.parametrize(("call", "exc", "match"), [
    (lambda x: max_pool(x, 2, padding=2), ValueError, "at most half|half the kernel"),
    (lambda x: avg_pool(x, 9), ValueError, "larger than the padded input"),
    (lambda x: max_pool(x, (2, 2, 2, 2)), ValueError, "1, 2 or 3 spatial dimensions"),
    (lambda x: max_pool(x, 0), ValueError, "kernel_size must be >= 1"),
    (lambda x: max_pool(x, 2, stride=(1, 2, 3)), ValueError, "one entry per spatial"),
    (lambda x: max_pool(x.astype(np.int64), 2), TypeError, "float32 or float64"),
    (lambda x: max_pool(x, 2, ceil_mode=1), TypeError,
     "max_pool: ceil_mode must be True or False, got int 1"),
    (lambda x: avg_pool_grad(np.ones((2, 3, 4, 4)), x.shape, 2), ValueError,
     "dy has shape"),
    (lambda x: max_pool_grad(np.ones((2, 3, 3, 3)), np.zeros((2, 3, 3, 3)), x.shape),
     TypeError, "integer numpy array"),
    (lambda x: max_pool_grad(np.ones((2, 3, 3, 3)), np.full((2, 3, 3, 3), 36), x.shape),
     ValueError, r"must lie in \[0, 36\)"),
    (lambda x: max_pool_grad(np.ones((2, 3, 3, 3)), np.zeros((2, 3, 3, 2), np.int64),
                             x.shape), ValueError, "pooled output.s shape"),
    (lambda x: max_pool_grad(np.ones((2, 3, 2, 2)), np.zeros((2, 3, 2, 2), np.int64),
                             x.shape, 3, 1), ValueError, r"output.s shape \(2, 3, 4, 4\)"),
    (lambda x: adaptive_avg_pool(x, (2, 0)), ValueError, "output_size must be >= 1"),
    (lambda x: global_avg_pool_grad(np.ones((2, 3, 2, 1)), x.shape), ValueError,
     "does not broadcast"),
    (lambda x: nn.MaxPool2d(2).forward(x[0, 0]), ValueError, r"expected input of shape"),
    (lambda x: nn.MaxPool2d(3, padding=2), ValueError, "at most half of kernel size"),
    (lambda x: nn.AvgPool1d(2, count_include_pad=None), TypeError, "count_include_pad"),
    (lambda x: nn.AdaptiveAvgPool2d((1, 2, 3)), ValueError, "output_size must be"),
    (lambda x: nn.MaxPool2d(2).backward(x), RuntimeError, "before forward"),
])
def test_bad_arguments_raise_clear_errors(call, exc, match) -> None:
    x = np.zeros((2, 3, 6, 6))
    with pytest.raises(exc, match=match):
        call(x)


def test_pooling_layers_keep_one_spec_per_input_shape() -> None:
    """A pooling layer builds its spec for the first input of a shape and reuses it while the
    shape repeats; another shape gets its own, and the results are the functions'."""
    layer = nn.AvgPool2d(3, stride=2, padding=1, count_include_pad=False, ceil_mode=True)
    rng = np.random.default_rng(0)
    a, b = rng.standard_normal((2, 3, 9, 8)), rng.standard_normal((1, 3, 7, 7))
    layer.forward(a)
    first = layer._spec_of
    y = layer.forward(a)
    assert layer._spec_of is first
    kw = {"stride": 2, "padding": 1, "count_include_pad": False, "ceil_mode": True}
    np.testing.assert_array_equal(y, avg_pool(a, 3, **kw))
    y = layer.forward(b)
    assert layer._spec_of is not first and layer._spec_of[0] == b.shape
    np.testing.assert_array_equal(y, avg_pool(b, 3, **kw))
    np.testing.assert_array_equal(layer.backward(np.ones_like(y)),
                                  avg_pool_grad(np.ones_like(y), b.shape, 3, **kw))
