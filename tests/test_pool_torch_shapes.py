"""Pooling shapes as PyTorch takes them (issue 11, items 11 and 12): zero-size batches give
empty results while any other zero-size axis is refused, and the dimension-named functions
(``max_pool2d`` ...) read ``(C, *spatial)`` as unbatched and ``(N, C, *spatial)`` as batched.
Every forward and backward is compared with PyTorch autograd in float64 (to 1e-12; the argmax
exactly); where PyTorch refuses an input, rot180 must refuse it too.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as TF

import rot180.functional as F
from _pool_torch_common import (
    R_AVG,
    R_AVG_GRAD,
    R_MAX,
    R_MAX_GRAD,
    T_ADAPTIVE,
    T_AVG,
    T_MAX,
    TOL,
)
from rot180 import nn

# -- item 11: zero-size batches ------------------------------------------------------------------

def _zero_batch_cases():
    for nd in (1, 2, 3):
        sp = (5, 6, 4)[:nd]
        yield pytest.param(nd, "max", sp, id=f"max{nd}d")
        yield pytest.param(nd, "avg", sp, id=f"avg{nd}d")
        yield pytest.param(nd, "adaptive", sp, id=f"adaptive{nd}d")


@pytest.mark.parametrize(("nd", "kind", "spatial"), list(_zero_batch_cases()))
def test_zero_size_batch_gives_empty_result_like_torch(nd: int, kind: str, spatial) -> None:
    x = np.zeros((0, 3, *spatial))
    xt = torch.tensor(x, requires_grad=True)
    if kind == "max":
        ty = T_MAX[nd](xt, 2, 1, 1, 2, ceil_mode=True)
        y, idx = R_MAX[nd](x, 2, 1, 1, 2, ceil_mode=True)
        dx = R_MAX_GRAD[nd](np.zeros(y.shape), idx, x.shape, 2, 1, 1, 2, ceil_mode=True)
        dx_bincount = F.max_pool_grad(np.zeros(y.shape), idx, x.shape)
        layer = getattr(nn, f"MaxPool{nd}d")(2, 1, 1, 2, ceil_mode=True)
        assert idx.shape == y.shape and idx.dtype == np.int64 and dx_bincount.shape == x.shape
    elif kind == "avg":
        ty = T_AVG[nd](xt, 3, 2, 1)
        y = R_AVG[nd](x, 3, 2, 1, count_include_pad=False)
        dx = R_AVG_GRAD[nd](np.zeros(y.shape), x.shape, 3, 2, 1, count_include_pad=False)
        layer = getattr(nn, f"AvgPool{nd}d")(3, 2, 1, divisor_override=2)
    else:
        ty = T_ADAPTIVE[nd](xt, 2)
        y = F.adaptive_avg_pool(x, 2)
        dx = F.adaptive_avg_pool_grad(np.zeros(y.shape), x.shape)
        layer = getattr(nn, f"AdaptiveAvgPool{nd}d")(2)
        g = F.global_avg_pool(x)
        assert g.shape == (0, 3) + (1,) * nd
        assert F.global_avg_pool_grad(g, x.shape).shape == x.shape
    ty.sum().backward()
    assert y.shape == tuple(ty.shape) and y.size == 0
    assert dx.shape == x.shape == tuple(xt.grad.shape)
    ly = layer.forward(x)
    assert ly.shape == y.shape
    assert layer.backward(np.zeros_like(ly)).shape == x.shape


@pytest.mark.parametrize("shape", [(0, 4, 4), (2, 0, 4, 4), (2, 3, 0, 4)])
def test_zero_size_axes_other_than_the_batch_are_refused_like_torch(shape) -> None:
    x = np.zeros(shape)
    with pytest.raises(RuntimeError):
        TF.max_pool2d(torch.tensor(x), 2)
    with pytest.raises(ValueError, match="only the batch axis|Only the batch axis"):
        F.max_pool2d(x, 2)
    with pytest.raises(ValueError, match="Only the batch axis"):
        F.avg_pool2d(x, 2)
    with pytest.raises(ValueError, match="Only the batch axis"):
        nn.MaxPool2d(2).forward(x)


# -- item 12: unbatched inputs and the dimension-named functions -------------------------------

def test_issue_example_unbatched_2d_pools_the_last_two_axes() -> None:
    x = np.random.default_rng(7).standard_normal((2, 3, 6))
    y, idx = F.max_pool2d(x, 3)
    ty, tidx = TF.max_pool2d(torch.tensor(x), 3, return_indices=True)
    assert y.shape == (2, 1, 2) == tuple(ty.shape)
    np.testing.assert_array_equal(y, ty.numpy())
    np.testing.assert_array_equal(idx, tidx.numpy())
    # The same array is a batched 1-D input to max_pool1d, as to torch's.
    assert F.max_pool1d(x, 3)[0].shape == (2, 3, 2) == tuple(TF.max_pool1d(torch.tensor(x),
                                                                           3).shape)
    # The generic function reads an int as batched unless told nd=.
    assert F.max_pool(x, 3)[0].shape == (2, 3, 2)
    assert F.max_pool(x, 3, nd=2)[0].shape == (2, 1, 2)
    assert F.avg_pool(x, 3, nd=2).shape == (2, 1, 2)


NAMED = [
    # nd, spatial, kernel, stride, padding, dilation (max only); one-entry tuples broadcast
    (1, (9,), 3, 2, 1, 2),
    (1, (8,), (3,), (2,), (1,), (2,)),
    (2, (7, 8), (3,), (2,), (1,), (2,)),
    (2, (7, 8), (3, 2), 1, (1, 0), (1, 2)),
    (3, (5, 6, 4), 2, (2,), (1,), 1),
    (3, (5, 6, 5), (3, 2, 3), (1, 2, 2), 1, (2, 1, 1)),
]


@pytest.mark.parametrize("batched", [False, True])
@pytest.mark.parametrize(("nd", "spatial", "k", "s", "p", "d"), NAMED)
def test_named_functions_match_torch_functional(nd, spatial, k, s, p, d, batched) -> None:
    rng = np.random.default_rng(8)
    x = rng.standard_normal(((2, 3) if batched else (3,)) + spatial)
    for ceil_mode in (False, True):
        xt = torch.tensor(x, requires_grad=True)
        ty, tidx = T_MAX[nd](xt, k, s, p, d, ceil_mode=ceil_mode, return_indices=True)
        y, idx = R_MAX[nd](x, k, s, p, d, ceil_mode=ceil_mode)
        np.testing.assert_array_equal(y, ty.detach().numpy())
        np.testing.assert_array_equal(idx, tidx.numpy())
        dy = rng.standard_normal(y.shape)
        ty.backward(torch.tensor(dy))
        np.testing.assert_allclose(R_MAX_GRAD[nd](dy, idx, x.shape, k, s, p, d,
                                                  ceil_mode=ceil_mode),
                                   xt.grad.numpy(), rtol=0, atol=TOL)
        xt = torch.tensor(x, requires_grad=True)
        ty = T_AVG[nd](xt, k, s, p, ceil_mode=ceil_mode, count_include_pad=False)
        y = R_AVG[nd](x, k, s, p, ceil_mode=ceil_mode, count_include_pad=False)
        np.testing.assert_allclose(y, ty.detach().numpy(), rtol=0, atol=TOL)
        dy = rng.standard_normal(y.shape)
        ty.backward(torch.tensor(dy))
        np.testing.assert_allclose(R_AVG_GRAD[nd](dy, x.shape, k, s, p, ceil_mode=ceil_mode,
                                                  count_include_pad=False),
                                   xt.grad.numpy(), rtol=0, atol=TOL)
