"""``backward_params``: the parameter gradients of ``backward`` without the input's delta.

A training step needs no delta for the data (PyTorch skips it too), and for the first
convolution of a network it is a whole extra correlation. The gradients must be exactly those
of ``backward`` (the same functions run on the same arrays), and the skipped work must really
be skipped.
"""

from __future__ import annotations

import numpy as np
import pytest

import rot180.nn.conv as nn_conv
import rot180.nn.linear as nn_linear
from rot180.models import lenet5, resnet_small, vgg_small
from rot180.nn import (
    Conv1d,
    Conv2d,
    Conv3d,
    ConvTranspose2d,
    Flatten,
    Linear,
    MaxPool2d,
    ReLU,
    Sequential,
)


def _grads(model, x: np.ndarray, use_params: bool) -> dict[str, np.ndarray]:
    model.zero_grad()
    y = model.forward(x)
    dy = np.random.default_rng(1).standard_normal(y.shape).astype(y.dtype)
    out = model.backward_params(dy) if use_params else model.backward(dy)
    if use_params:
        assert out is None
    return {n: p.grad.copy() for n, p in model.named_parameters()}


MODELS = [
    ("lenet5", lambda: lenet5(seed=0), (4, 1, 28, 28)),
    ("vgg_small", lambda: vgg_small(seed=0), (2, 3, 32, 32)),
    ("resnet_small", lambda: resnet_small(seed=0), (2, 3, 32, 32)),
    ("conv1d", lambda: Conv1d(3, 4, 3, stride=2, padding=1, rng=0), (2, 3, 9)),
    ("conv3d", lambda: Conv3d(2, 3, 2, dilation=2, groups=1, rng=0), (2, 2, 5, 5, 5)),
    ("linear", lambda: Linear(6, 5, rng=0), (3, 4, 6)),
    ("transposed", lambda: ConvTranspose2d(3, 2, 3, stride=2, rng=0), (2, 3, 4, 4)),
    ("mlp", lambda: Sequential(Flatten(), Linear(12, 5, rng=0), ReLU(), Linear(5, 2, rng=1)),
     (3, 3, 2, 2)),
]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize(("name", "make", "shape"), MODELS, ids=[m[0] for m in MODELS])
def test_same_parameter_gradients_as_backward(name, make, shape, dtype) -> None:
    model = make().astype(dtype)
    x = np.random.default_rng(0).standard_normal(shape).astype(dtype)
    full = _grads(model, x, use_params=False)
    params = _grads(model, x, use_params=True)
    assert list(full) == list(params) and full
    for n in full:
        np.testing.assert_array_equal(params[n], full[n], err_msg=f"{name} {n}")


def test_first_convolution_skips_its_input_gradient(monkeypatch) -> None:
    model = lenet5(seed=0)
    x = np.random.default_rng(0).standard_normal((2, 1, 28, 28)).astype(np.float32)
    calls: list[tuple[int, ...]] = []
    real = nn_conv.conv_grad_input_spec

    def spy(dz, w, input_shape, spec, *args):
        calls.append(tuple(input_shape))
        return real(dz, w, input_shape, spec, *args)

    monkeypatch.setattr(nn_conv, "conv_grad_input_spec", spy)
    y = model.forward(x)
    model.backward_params(np.ones_like(y))
    assert calls == [(2, 6, 14, 14)]          # the second conv's, not the first's (2, 1, 28, 28)
    calls.clear()
    model.backward(np.ones_like(y))
    assert calls == [(2, 6, 14, 14), (2, 1, 28, 28)]


def test_linear_skips_its_input_gradient(monkeypatch) -> None:
    def boom(*_a, **_k):
        raise AssertionError("linear_grad_input must not run")

    layer = Linear(4, 3, rng=0)
    y = layer.forward(np.ones((2, 4), np.float32))
    monkeypatch.setattr(nn_linear, "linear_grad_input", boom)
    layer.backward_params(np.ones_like(y))
    np.testing.assert_array_equal(layer.bias.grad, [2, 2, 2])


def test_other_modules_fall_back_to_backward() -> None:
    pool = MaxPool2d(2)
    y = pool.forward(np.arange(16, dtype=np.float32).reshape(1, 1, 4, 4))
    assert pool.backward_params(np.ones_like(y)) is None


@pytest.mark.parametrize(("layer", "x", "bad"), [
    (Conv2d(1, 2, 3, rng=0), np.ones((2, 1, 5, 5), np.float32), np.ones((2, 2, 4, 3), np.float32)),
    (Linear(4, 3, rng=0), np.ones((2, 4), np.float32), np.ones((2, 4), np.float32)),
    (Linear(4, 3, rng=0), np.ones((2, 4), np.float32), np.ones((3, 3), np.float32)),
], ids=["conv", "linear-features", "linear-batch"])
def test_a_wrong_delta_is_refused_before_anything_accumulates(layer, x, bad) -> None:
    layer.forward(x)
    with pytest.raises(ValueError, match=r"dy has shape .* but the forward output had shape"):
        layer.backward_params(bad)
    assert all(not np.any(p.grad) for p in layer.parameters())
    with pytest.raises(TypeError, match="dtype float64 but the forward output had float32"):
        layer.backward_params(bad.astype(np.float64))


@pytest.mark.parametrize("layer", [Conv2d(1, 2, 3, rng=0), Linear(4, 3, rng=0)],
                         ids=["conv", "linear"])
def test_before_forward_is_a_clear_error(layer) -> None:
    with pytest.raises(RuntimeError, match="backward called before forward"):
        layer.backward_params(np.ones((1, 2, 3, 3), np.float32))
