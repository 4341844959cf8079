"""BatchNorm1d/2d/3d against PyTorch float64 (train and eval, running statistics, state_dict)
and finite differences."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from rot180 import nn
from rot180.functional import batch_norm, batch_norm_grad, batch_stats
from rot180.gradcheck import gradcheck

TOL = 1e-10
SHAPES = {"BatchNorm1d": [(6, 3), (4, 3, 5)], "BatchNorm2d": [(3, 3, 4, 5)],
          "BatchNorm3d": [(2, 3, 3, 2, 4)]}
CASES = [(name, shape) for name, shapes in SHAPES.items() for shape in shapes]
OPTIONS = [
    {},
    {"momentum": None},
    {"affine": False},
    {"track_running_stats": False},
    {"eps": 1e-3, "momentum": 0.3},
]


def _pair(name: str, options: dict, rng: np.random.Generator):
    """Our layer and PyTorch's, with the same random weights and running statistics."""
    ours = getattr(nn, name)(3, dtype=np.float64, **options)
    theirs = getattr(torch.nn, name)(3, dtype=torch.float64, **options)
    with torch.no_grad():
        for t in theirs.parameters():
            t.copy_(torch.tensor(rng.uniform(0.5, 1.5, 3)))
        if theirs.track_running_stats:
            theirs.running_mean.copy_(torch.tensor(rng.standard_normal(3)))
            theirs.running_var.copy_(torch.tensor(rng.uniform(0.5, 2.0, 3)))
    ours.load_state_dict({k: v.numpy() for k, v in theirs.state_dict().items()})
    return ours, theirs


def _state_equal(ours: nn.Module, theirs: torch.nn.Module) -> None:
    ts = theirs.state_dict()
    os_ = ours.state_dict()
    assert list(os_) == list(ts)
    for k, v in ts.items():
        assert os_[k].shape == tuple(v.shape), k
        assert os_[k].dtype == v.numpy().dtype, k
        np.testing.assert_allclose(os_[k], v.numpy(), rtol=0, atol=TOL, err_msg=k)


@pytest.mark.parametrize("options", OPTIONS, ids=str)
@pytest.mark.parametrize(("name", "shape"), CASES)
def test_matches_torch_over_train_and_eval_steps(name: str, shape: tuple, options: dict) -> None:
    rng = np.random.default_rng(0)
    ours, theirs = _pair(name, options, rng)
    _state_equal(ours, theirs)
    # Three training steps (running statistics move), then one in eval mode.
    for mode in ("train", "train", "train", "eval"):
        getattr(ours, mode)()
        getattr(theirs, mode)()
        x = 2 * rng.standard_normal(shape) + 1
        dy = rng.standard_normal(shape)
        ours.zero_grad()
        y = ours.forward(x)
        dx = ours.backward(dy)
        xt = torch.tensor(x, requires_grad=True)
        theirs.zero_grad()
        yt = theirs(xt)
        yt.backward(torch.tensor(dy))
        np.testing.assert_allclose(y, yt.detach().numpy(), rtol=0, atol=TOL)
        np.testing.assert_allclose(dx, xt.grad.numpy(), rtol=0, atol=TOL)
        for (n, p), t in zip(ours.named_parameters(), theirs.parameters(), strict=True):
            np.testing.assert_allclose(p.grad, t.grad.numpy(), rtol=0, atol=TOL, err_msg=n)
        _state_equal(ours, theirs)


@pytest.mark.parametrize("name", list(SHAPES))
def test_state_dict_round_trip_with_torch(name: str) -> None:
    rng = np.random.default_rng(1)
    ours, theirs = _pair(name, {}, rng)
    theirs.train()
    x = rng.standard_normal(SHAPES[name][0])
    theirs(torch.tensor(x))        # num_batches_tracked = 1, stats moved
    ours.load_state_dict({k: v.numpy() for k, v in theirs.state_dict().items()})
    assert ours.num_batches_tracked.dtype == np.int64 and ours.num_batches_tracked.shape == ()
    assert int(ours.num_batches_tracked) == 1
    fresh = getattr(torch.nn, name)(3, dtype=torch.float64)
    fresh.load_state_dict({k: torch.tensor(v) for k, v in ours.state_dict().items()})
    ours.eval()
    fresh.eval()
    np.testing.assert_allclose(ours.forward(x), fresh(torch.tensor(x)).detach().numpy(), rtol=0,
                               atol=TOL)
    assert list(dict(ours.named_buffers())) == ["running_mean", "running_var",
                                                "num_batches_tracked"]


@pytest.mark.parametrize("options", [{}, {"affine": False}, {"track_running_stats": False}],
                         ids=str)
def test_state_dict_keys_follow_torch_options(options: dict) -> None:
    ours = nn.BatchNorm2d(4, **options)
    theirs = torch.nn.BatchNorm2d(4, **options)
    assert {k: v.shape for k, v in ours.state_dict().items()} == {
        k: tuple(v.shape) for k, v in theirs.state_dict().items()}


@pytest.mark.parametrize("mode", ["train", "eval"])
@pytest.mark.parametrize(("name", "shape"), CASES)
def test_gradcheck(name: str, shape: tuple, mode: str) -> None:
    rng = np.random.default_rng(2)
    layer, _ = _pair(name, {}, rng)
    getattr(layer, mode)()
    res = gradcheck(layer, rng.standard_normal(shape))
    assert res.ok, str(res)


def test_functional_rule_matches_finite_differences_and_eval_rule() -> None:
    rng = np.random.default_rng(3)
    x = rng.standard_normal((4, 3, 5))
    w, b = rng.uniform(0.5, 1.5, 3), rng.standard_normal(3)

    def f(x, w, b):
        return batch_norm(x, *batch_stats(x), w, b, eps=1e-5)[0]

    def f_grad(dy, x, w, b):
        _, xh, r = batch_norm(x, *batch_stats(x), w, b, eps=1e-5)
        return batch_norm_grad(dy, xh, r, w)

    res = gradcheck(f, (x, w, b), grad_fn=f_grad)
    assert res.ok, str(res)
    # With fixed statistics the layer is affine in x: dx = dy * w / sqrt(var + eps).
    mean, var = rng.standard_normal(3), rng.uniform(0.5, 2, 3)
    _, xh, r = batch_norm(x, mean, var, w, b)
    dy = rng.standard_normal(x.shape)
    dx, _, _ = batch_norm_grad(dy, xh, r, w, batch_statistics=False)
    np.testing.assert_allclose(dx, dy * (w / np.sqrt(var + 1e-5))[:, None], rtol=1e-13)


def test_grads_accumulate_and_float32_preserved() -> None:
    rng = np.random.default_rng(4)
    layer = nn.BatchNorm2d(3)
    x = rng.standard_normal((2, 3, 4, 4)).astype(np.float32)
    dy = rng.standard_normal(x.shape).astype(np.float32)
    for _ in range(2):
        y = layer.forward(x)
        dx = layer.backward(dy)
    assert y.dtype == dx.dtype == np.float32
    assert layer.weight.grad.dtype == layer.running_var.dtype == np.float32
    once = batch_norm_grad(dy, *batch_norm(x, *batch_stats(x), layer.weight.data,
                                           layer.bias.data)[1:], layer.weight.data)
    np.testing.assert_allclose(layer.weight.grad, 2 * once[1], rtol=1e-5)
    np.testing.assert_allclose(layer.bias.grad, 2 * once[2], rtol=1e-5)
    assert int(layer.num_batches_tracked) == 2
    layer.astype(np.float64)
    assert layer.running_mean.dtype == np.float64 and layer.num_batches_tracked.dtype == np.int64
    assert layer.forward(x.astype(np.float64)).dtype == np.float64


@pytest.mark.parametrize(("call", "exc", "match"), [
    (lambda: nn.BatchNorm2d(3).forward(np.ones((2, 3, 4))), ValueError, "expected 4D input"),
    (lambda: nn.BatchNorm1d(3).forward(np.ones((2, 3, 4, 4))), ValueError,
     r"expected 2D or 3D input"),
    (lambda: nn.BatchNorm1d(3).forward(np.ones((2, 4), np.float32)), ValueError,
     "expected 3 channels"),
    (lambda: nn.BatchNorm1d(3).forward(np.ones((1, 3), np.float32)), ValueError,
     "more than 1 value per channel"),
    (lambda: nn.BatchNorm1d(3).forward(np.ones((2, 3))), TypeError, "does not match"),
    (lambda: nn.BatchNorm1d(0), ValueError, "num_features"),
    (lambda: nn.BatchNorm1d(3, momentum=2.0), ValueError, "momentum"),
    (lambda: nn.BatchNorm1d(3, dtype=np.int32), TypeError, "float32 or float64"),
    (lambda: nn.BatchNorm1d(3).backward(np.ones((2, 3))), RuntimeError, "before forward"),
    (lambda: batch_norm(np.ones((2, 3)), np.zeros(2), np.ones(3), None, None), ValueError,
     r"mean must have shape \(C,\)"),
])
def test_bad_arguments_raise_clear_errors(call, exc, match) -> None:
    with pytest.raises(exc, match=match):
        call()


def test_eval_with_one_sample_is_allowed() -> None:
    layer = nn.BatchNorm1d(3).eval()
    x = np.ones((1, 3), np.float32)
    np.testing.assert_allclose(layer.forward(x), x / np.sqrt(1 + 1e-5), rtol=1e-6)
