"""Pooling layers (:mod:`rot180.nn`) and adaptive and global average pooling against PyTorch
float64 and finite differences, float32 kept through every pooling function and layer, clear
errors for bad arguments, and a pooling layer's one spec per input shape.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as TF

from _pool_common import T_ADAPTIVE, TOL, _torch
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
    assert layer._spec_of is not first and layer._spec_of[0][0] == b.shape
    np.testing.assert_array_equal(y, avg_pool(b, 3, **kw))
    np.testing.assert_array_equal(layer.backward(np.ones_like(y)),
                                  avg_pool_grad(np.ones_like(y), b.shape, 3, **kw))
