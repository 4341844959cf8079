"""A layer's settings changed after construction (or after a forward) are used, or refused
with the construction's message: the spec a layer keeps is keyed on every setting it depends on
(the weight's shape, stride, padding, dilation, groups, output_padding, the bias; pooling's
kernel, stride, padding, dilation, ceil_mode, count_include_pad, divisor_override), so none is
read stale. Oracle: the public functions with the new settings."""

from __future__ import annotations

import numpy as np
import pytest

from rot180 import nn
from rot180.functional import avg_pool, conv, conv_grad_input, conv_grad_weight, max_pool

RNG = np.random.default_rng(0)
X = RNG.standard_normal((2, 2, 8, 8))
XT = RNG.standard_normal((2, 2, 4, 4))


def _conv(**kw: object) -> nn.Conv2d:
    return nn.Conv2d(2, 3, 3, bias=False, dtype=np.float64, rng=0, **kw)  # type: ignore[arg-type]


@pytest.mark.parametrize("name, value, kw", [
    ("stride", (2, 2), {"stride": 2}),
    ("stride", [2, 1], {"stride": (2, 1)}),
    ("padding", [[0, 1], [2, 2]], {"padding": ((0, 1), (2, 2))}),
    ("dilation", (2, 2), {"dilation": 2}),
    ("padding", (1, 1), {"padding": 1}),
    ("padding", "same", {"padding": "same"}),
])
def test_conv_setting_changed_after_a_forward_is_used(name: str, value: object,
                                                      kw: dict) -> None:
    layer = _conv()
    layer(X)
    setattr(layer, name, value)
    y = layer(X)
    w = layer.weight.data
    np.testing.assert_allclose(y, conv(X, w, **kw), rtol=1e-12, atol=1e-12)
    dy = RNG.standard_normal(y.shape)
    np.testing.assert_allclose(layer.backward(dy), conv_grad_input(dy, w, X.shape, **kw),
                               rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(layer.weight.grad, conv_grad_weight(X, dy, w.shape, **kw),
                               rtol=1e-12, atol=1e-12)


def test_conv_same_padding_follows_a_replaced_kernel() -> None:
    layer = _conv(padding="same")
    layer.weight = nn.Parameter(RNG.standard_normal((3, 2, 5, 5)))
    y = layer(X)
    assert y.shape == (2, 3, 8, 8)
    np.testing.assert_allclose(y, conv(X, layer.weight.data, padding="same"), atol=1e-12)


@pytest.mark.parametrize("change, exc, match", [
    (lambda m: setattr(m, "groups", 2), ValueError, r"Conv2d: groups=2 must divide"),
    (lambda m: setattr(m, "groups", 2.0), TypeError, r"Conv2d: groups must be an int"),
    (lambda m: setattr(m, "stride", 0), ValueError, r"Conv2d: stride must be >= 1"),
    (lambda m: setattr(m, "dilation", (1, 2, 3)), ValueError,
     r"Conv2d: dilation must have one entry per spatial dimension"),
    (lambda m: setattr(m, "padding", "full"), ValueError, r"Conv2d: Invalid padding string"),
    (lambda m: (setattr(m, "padding", "same"), setattr(m, "stride", 2)), ValueError,
     r"Conv2d: padding='same' is not supported for strided"),
    (lambda m: setattr(m, "weight", nn.Parameter(np.ones((4, 2, 3, 3)))), ValueError,
     r"Conv2d: bias must have shape \(C_out,\) = \(4,\)"),
])
def test_conv_setting_changed_to_a_bad_value_is_refused(change, exc, match) -> None:
    layer = nn.Conv2d(2, 3, 3, dtype=np.float64, rng=0)
    layer(X)
    change(layer)
    with pytest.raises(exc, match=match):
        layer(X)


def _convt(**kw: object) -> nn.ConvTranspose2d:
    return nn.ConvTranspose2d(2, 3, 3, bias=False, dtype=np.float64, rng=0,
                              **kw)  # type: ignore[arg-type]


@pytest.mark.parametrize("init, changes, kw", [
    ({}, {"stride": (2, 2)}, {"stride": 2}),
    ({"stride": 2}, {"output_padding": (1, 1)}, {"stride": 2}),
    ({}, {"padding": (1, 1)}, {"padding": 1}),
    ({}, {"dilation": (2, 2)}, {"dilation": 2}),
])
def test_conv_transpose_setting_changed_is_used(init: dict, changes: dict, kw: dict) -> None:
    """Before the fix the output size followed the new stride but the cached spec did not:
    values off by up to 1.07 for stride 1 -> 2."""
    layer = _convt(**init)
    layer(XT)
    for k, v in changes.items():
        setattr(layer, k, v)
    y = layer(XT)
    w = layer.weight.data
    op = changes.get("output_padding", (0, 0))
    s = kw.get("stride", 1)
    d = kw.get("dilation", 1)
    p = kw.get("padding", 0)
    out = tuple((i - 1) * s - 2 * p + d * 2 + a + 1 for i, a in zip(XT.shape[2:], op, strict=True))
    np.testing.assert_allclose(y, conv_grad_input(XT, w, (2, 3, *out), **kw), atol=1e-12)
    dy = RNG.standard_normal(y.shape)
    np.testing.assert_allclose(layer.backward(dy), conv(dy, w, **kw), atol=1e-12)
    np.testing.assert_allclose(layer.weight.grad, conv_grad_weight(dy, XT, w.shape, **kw),
                               atol=1e-12)


def test_conv_transpose_replaced_weight_sets_kernel_and_channels() -> None:
    layer = _convt()
    w5 = RNG.standard_normal((2, 3, 5, 5))
    layer.weight = nn.Parameter(w5)
    y = layer(XT)
    np.testing.assert_allclose(y, conv_grad_input(XT, w5, (2, 3, 8, 8)), atol=1e-12)
    w4 = RNG.standard_normal((2, 4, 3, 3))
    layer.weight = nn.Parameter(w4)
    y = layer(XT)
    np.testing.assert_allclose(y, conv_grad_input(XT, w4, (2, 4, 6, 6)), atol=1e-12)


@pytest.mark.parametrize("change, exc, match", [
    (lambda m: setattr(m, "output_padding", (2, 2)), ValueError,
     r"ConvTranspose2d: output padding must be smaller"),
    (lambda m: setattr(m, "output_padding", 1.0), TypeError,
     r"ConvTranspose2d: output_padding must be an int"),
    (lambda m: setattr(m, "padding", "same"), ValueError,
     r"ConvTranspose2d does not accept a padding string"),
    (lambda m: setattr(m, "weight", nn.Parameter(np.ones((2, 4, 3, 3)))), ValueError,
     r"ConvTranspose2d: bias must have shape \(C_out,\) = \(4,\)"),
])
def test_conv_transpose_bad_change_is_refused(change, exc, match) -> None:
    layer = nn.ConvTranspose2d(2, 3, 3, stride=2, dtype=np.float64, rng=0)
    layer(XT)
    change(layer)
    with pytest.raises(exc, match=match):
        layer(XT)


@pytest.mark.parametrize("changes, fn, kw", [
    ({"kernel_size": (4, 4), "stride": (4, 4)}, max_pool, {"kernel_size": 4}),
    ({"stride": 1}, max_pool, {"kernel_size": 2, "stride": 1}),
    ({"dilation": 2}, max_pool, {"kernel_size": 2, "dilation": 2}),
    ({"ceil_mode": True, "stride": 3}, max_pool, {"kernel_size": 2, "stride": 3,
                                                   "ceil_mode": True}),
    ({"padding": 1}, avg_pool, {"kernel_size": 2, "padding": 1}),
    ({"padding": 1, "count_include_pad": False}, avg_pool,
     {"kernel_size": 2, "padding": 1, "count_include_pad": False}),
    ({"divisor_override": 1}, avg_pool, {"kernel_size": 2, "divisor_override": 1}),
])
def test_pool_setting_changed_after_a_forward_is_used(changes: dict, fn, kw: dict) -> None:
    layer = nn.MaxPool2d(2) if fn is max_pool else nn.AvgPool2d(2)
    layer(X)
    for k, v in changes.items():
        setattr(layer, k, v)
    y = layer(X)
    ref = fn(X, **kw)
    np.testing.assert_array_equal(y, ref[0] if isinstance(ref, tuple) else ref)


@pytest.mark.parametrize("layer, name, value, exc, match", [
    (nn.MaxPool2d(2), "kernel_size", 2.0, TypeError, r"MaxPool2d: kernel_size must be an int"),
    (nn.MaxPool2d(2), "padding", 2, ValueError, r"MaxPool2d: pad should be at most half"),
    (nn.MaxPool2d(2), "ceil_mode", 1, TypeError, r"MaxPool2d: ceil_mode must be True or False"),
    (nn.AvgPool2d(2), "count_include_pad", None, TypeError,
     r"AvgPool2d: count_include_pad must be True or False"),
    (nn.AvgPool2d(2), "divisor_override", 0, ValueError, r"AvgPool2d: divisor_override"),
])
def test_pool_setting_changed_to_a_bad_value_is_refused(layer, name, value, exc,
                                                        match) -> None:
    layer(X)
    setattr(layer, name, value)
    with pytest.raises(exc, match=match):
        layer(X)
