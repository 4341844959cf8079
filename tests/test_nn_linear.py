"""Linear layer and rot180.functional.linear against torch.nn.Linear and finite differences."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from rot180.functional.linear import (
    linear,
    linear_grad_bias,
    linear_grad_input,
    linear_grad_weight,
)
from rot180.gradcheck import gradcheck
from rot180.nn.linear import Linear

TOL = 1e-10
SHAPES = [(4, 5), (5,), (2, 3, 5), (1, 5)]


def twin(ours: Linear) -> torch.nn.Linear:
    theirs = torch.nn.Linear(ours.in_features, ours.out_features,
                             bias=ours.bias is not None).double()
    sd, tsd = ours.state_dict(), theirs.state_dict()
    assert list(sd) == list(tsd)
    assert {k: v.shape for k, v in sd.items()} == {k: tuple(v.shape) for k, v in tsd.items()}
    theirs.load_state_dict({k: torch.from_numpy(v) for k, v in sd.items()})
    return theirs


@pytest.mark.parametrize("mode", ["train", "eval"])
@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("x_shape", SHAPES)
def test_matches_torch(x_shape: tuple[int, ...], bias: bool, mode: str):
    rng = np.random.default_rng(0)
    ours = Linear(5, 3, bias=bias, dtype=np.float64, rng=1)
    theirs = twin(ours)
    getattr(ours, mode)()
    getattr(theirs, mode)()
    x = rng.standard_normal(x_shape)
    y = ours.forward(x)
    dy = rng.standard_normal(y.shape)
    dx = ours.backward(dy)
    xt = torch.from_numpy(x).requires_grad_()
    yt = theirs(xt)
    yt.backward(torch.from_numpy(dy))
    assert np.abs(y - yt.detach().numpy()).max() <= TOL
    assert np.abs(dx - xt.grad.numpy()).max() <= TOL
    tp = dict(theirs.named_parameters())
    assert [n for n, _ in ours.named_parameters()] == list(tp)
    for n, p in ours.named_parameters():
        assert np.abs(p.grad - tp[n].grad.numpy()).max() <= TOL


@pytest.mark.parametrize("x_shape", SHAPES[:3])
def test_gradcheck(x_shape):
    res = gradcheck(Linear(5, 3, dtype=np.float64, rng=2),
                    np.random.default_rng(1).standard_normal(x_shape))
    assert res.ok, str(res)
    assert [e.name for e in res.errors] == ["x", "weight", "bias"]


def test_functional_against_loops():
    """The three gradients from their definitions, entry by entry."""
    rng = np.random.default_rng(3)
    x, w, dy = rng.standard_normal((4, 5)), rng.standard_normal((3, 5)), rng.standard_normal((4, 3))
    y = linear(x, w)
    for n in range(4):
        for o in range(3):
            assert abs(y[n, o] - sum(x[n, i] * w[o, i] for i in range(5))) < 1e-12
    dx, dw, db = linear_grad_input(dy, w), linear_grad_weight(x, dy), linear_grad_bias(dy)
    for n in range(4):
        for i in range(5):
            assert abs(dx[n, i] - sum(dy[n, o] * w[o, i] for o in range(3))) < 1e-12
    for o in range(3):
        assert abs(db[o] - sum(dy[n, o] for n in range(4))) < 1e-12
        for i in range(5):
            assert abs(dw[o, i] - sum(dy[n, o] * x[n, i] for n in range(4))) < 1e-12


def test_grads_accumulate_and_zero():
    rng = np.random.default_rng(4)
    layer = Linear(5, 3, dtype=np.float64, rng=0)
    theirs = twin(layer)
    for _ in range(2):
        x = rng.standard_normal((2, 5))
        dy = rng.standard_normal((2, 3))
        layer.forward(x)
        layer.backward(dy)
        theirs(torch.from_numpy(x)).backward(torch.from_numpy(dy))
    for n, p in theirs.named_parameters():
        assert np.abs(dict(layer.named_parameters())[n].grad - p.grad.numpy()).max() <= TOL
    layer.zero_grad()
    assert not any(p.grad.any() for p in layer.parameters())


def test_float32_stays_float32():
    layer = Linear(5, 3, rng=0)
    assert layer.weight.dtype == layer.bias.dtype == np.float32
    x = np.random.default_rng(0).standard_normal((2, 5)).astype(np.float32)
    y = layer.forward(x)
    dx = layer.backward(np.ones_like(y))
    assert y.dtype == dx.dtype == layer.weight.grad.dtype == layer.bias.grad.dtype == np.float32
    with pytest.raises(TypeError, match="does not match the layer's float32"):
        layer.forward(x.astype(np.float64))


def test_load_state_dict_from_torch():
    torch.manual_seed(0)
    theirs = torch.nn.Linear(6, 2).double()
    ours = Linear(6, 2, dtype=np.float64, rng=0)
    ours.load_state_dict({k: v.numpy() for k, v in theirs.state_dict().items()})
    x = np.random.default_rng(0).standard_normal((3, 6))
    assert np.abs(ours.forward(x) - theirs(torch.from_numpy(x)).detach().numpy()).max() <= TOL


def test_repr_as_torch():
    assert repr(Linear(4, 2, bias=False)) == repr(torch.nn.Linear(4, 2, bias=False))


@pytest.mark.parametrize("make, exc, match", [
    (lambda: Linear(0, 3), ValueError, "Linear: in_features must be >= 1, got 0"),
    (lambda: Linear(3, -1), ValueError, "Linear: out_features must be >= 1, got -1"),
    (lambda: Linear(3.5, 2), TypeError, "in_features must be an int"),
    (lambda: Linear(3, 2, dtype=np.int64), TypeError, "dtype must be float32 or float64"),
    (lambda: Linear(3, 2, rng=1.5), TypeError, "rng must be a numpy.random.Generator"),
])
def test_bad_constructor_arguments(make, exc, match):
    with pytest.raises(exc, match=match):
        make()


def test_bad_calls():
    layer = Linear(4, 2, dtype=np.float64)
    with pytest.raises(RuntimeError, match="backward called before forward"):
        layer.backward(np.zeros((1, 2)))
    with pytest.raises(ValueError, match=r"expected x of shape \(\*, 4\)"):
        layer.forward(np.zeros((3, 5)))
    with pytest.raises(TypeError, match="dtype float32 or float64"):
        layer.forward(np.zeros((3, 4), dtype=np.int64))
    layer.forward(np.zeros((3, 4)))
    with pytest.raises(ValueError, match="must share their leading"):
        layer.backward(np.zeros((2, 2)))
    with pytest.raises(ValueError, match="weight must be 2-D"):
        linear(np.zeros(3), np.zeros(3))
    with pytest.raises(ValueError, match=r"bias must have shape \(out_features,\)"):
        linear(np.zeros(3), np.zeros((2, 3)), np.zeros(3))
