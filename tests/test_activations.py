"""Activation functions and layers against PyTorch float64 and finite differences."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from rot180 import nn
from rot180.functional import (
    leaky_relu,
    leaky_relu_grad,
    relu,
    relu_grad,
    sigmoid,
    sigmoid_grad,
    tanh,
    tanh_grad,
)
from rot180.gradcheck import gradcheck

TOL = 1e-10

# (our layer, torch layer, our function, its backward, whether backward reads the output)
CASES = {
    "relu": (lambda: nn.ReLU(), lambda: torch.nn.ReLU(), relu, relu_grad, False),
    "leaky": (lambda: nn.LeakyReLU(), lambda: torch.nn.LeakyReLU(), leaky_relu,
              leaky_relu_grad, False),
    "leaky0.3": (lambda: nn.LeakyReLU(0.3), lambda: torch.nn.LeakyReLU(0.3),
                 lambda x: leaky_relu(x, 0.3), lambda d, x: leaky_relu_grad(d, x, 0.3), False),
    "leaky-neg": (lambda: nn.LeakyReLU(-0.5), lambda: torch.nn.LeakyReLU(-0.5),
                  lambda x: leaky_relu(x, -0.5), lambda d, x: leaky_relu_grad(d, x, -0.5),
                  False),
    "sigmoid": (lambda: nn.Sigmoid(), lambda: torch.nn.Sigmoid(), sigmoid, sigmoid_grad, True),
    "tanh": (lambda: nn.Tanh(), lambda: torch.nn.Tanh(), tanh, tanh_grad, True),
}


def _input(rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
    x = 3 * rng.standard_normal(shape)
    x.flat[::7] = 0.0           # the kink: PyTorch's subgradient at 0
    return x


def _torch_pair(layer: torch.nn.Module, x: np.ndarray, dy: np.ndarray):
    xt = torch.tensor(x, requires_grad=True)
    y = layer(xt)
    y.backward(torch.tensor(dy))
    return y.detach().numpy(), xt.grad.numpy()


@pytest.mark.parametrize("shape", [(5,), (4, 7), (2, 3, 5, 4), (1, 2, 3, 2, 2)])
@pytest.mark.parametrize("name", list(CASES))
def test_layer_and_function_match_torch(name: str, shape: tuple[int, ...]) -> None:
    make, make_torch, f, f_grad, from_output = CASES[name]
    rng = np.random.default_rng(0)
    x = _input(rng, shape)
    dy = rng.standard_normal(shape)
    ty, tdx = _torch_pair(make_torch(), x, dy)
    layer = make()
    for mode in ("train", "eval"):
        getattr(layer, mode)()
        y = layer.forward(x)
        np.testing.assert_allclose(y, ty, rtol=0, atol=TOL)
        np.testing.assert_allclose(layer.backward(dy), tdx, rtol=0, atol=TOL)
    y = f(x)
    np.testing.assert_allclose(y, ty, rtol=0, atol=TOL)
    np.testing.assert_allclose(f_grad(dy, y if from_output else x), tdx, rtol=0, atol=TOL)
    assert layer.state_dict() == {} and list(layer.parameters()) == []


@pytest.mark.parametrize("name", list(CASES))
def test_gradcheck(name: str) -> None:
    rng = np.random.default_rng(1)
    x = 2 * rng.standard_normal((3, 4, 5))
    x[np.abs(x) < 1e-3] = 0.5   # keep finite differences away from the ReLU kink
    res = gradcheck(CASES[name][0](), x)
    assert res.ok, str(res)


@settings(max_examples=50, deadline=None)
@given(x=hnp.arrays(np.float64, hnp.array_shapes(max_dims=3, max_side=5),
                    elements=st.floats(-800, 800)))
def test_sigmoid_and_tanh_match_torch_without_overflow(x: np.ndarray) -> None:
    # Large |x| would overflow a naive exp; warnings are errors in this test suite.
    xt = torch.tensor(x)
    np.testing.assert_allclose(sigmoid(x), torch.sigmoid(xt).numpy(), rtol=1e-14, atol=1e-300)
    np.testing.assert_allclose(tanh(x), torch.tanh(xt).numpy(), rtol=1e-14, atol=1e-300)
    assert np.all((sigmoid(x) >= 0) & (sigmoid(x) <= 1))


def test_extreme_sigmoid_values() -> None:
    x = np.array([-1000.0, -40.0, 0.0, 40.0, 1000.0], dtype=np.float32)
    y = sigmoid(x)
    assert y.dtype == np.float32
    np.testing.assert_array_equal(y[[0, 2, 4]], np.array([0.0, 0.5, 1.0], np.float32))
    assert 0 < y[1] < 1e-17


@pytest.mark.parametrize("name", list(CASES))
def test_float32_preserved(name: str) -> None:
    make, _, f, f_grad, from_output = CASES[name]
    x = _input(np.random.default_rng(2), (3, 4)).astype(np.float32)
    layer = make()
    y = layer.forward(x)
    assert y.dtype == np.float32 and f(x).dtype == np.float32
    assert layer.backward(np.ones_like(y)).dtype == np.float32
    assert f_grad(np.ones_like(y), y if from_output else x).dtype == np.float32


def test_relu_nan_propagates_and_grad_at_zero_is_zero() -> None:
    x = np.array([np.nan, -1.0, 0.0, 2.0])
    y = relu(x)
    assert np.isnan(y[0]) and np.array_equal(y[1:], [0.0, 0.0, 2.0])
    np.testing.assert_array_equal(relu_grad(np.ones(3), x[1:]), [0.0, 0.0, 1.0])
    np.testing.assert_array_equal(leaky_relu_grad(np.ones(3), x[1:], 0.1), [0.1, 0.1, 1.0])


@pytest.mark.parametrize(("call", "exc", "match"), [
    (lambda: relu(np.arange(3)), TypeError, "float32 or float64"),
    (lambda: relu_grad(np.ones(3), np.ones(4)), ValueError, "same shape"),
    (lambda: sigmoid_grad(np.ones(3), np.ones(3, np.float32)), TypeError, "share one dtype"),
    (lambda: leaky_relu(np.ones(3), "0.1"), TypeError, "negative_slope must be a real number"),
    (lambda: nn.LeakyReLU(None), TypeError, "negative_slope must be a real number"),
    (lambda: nn.Tanh().backward(np.ones(3)), RuntimeError, "before forward"),
])
def test_bad_arguments_raise_clear_errors(call, exc, match) -> None:
    with pytest.raises(exc, match=match):
        call()
