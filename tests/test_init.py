"""rot180.nn.init: PyTorch's default bounds, He and Glorot statistics, seeded reproducibility.

Oracles: torch.nn.init's fan and gain functions and torch layers' own weights (for the bounds),
and the closed-form moments of the uniform and normal distributions (checked statistically on
~10^5 draws with loose tolerances: the standard error of a std estimate is ~0.3 % here).
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from rot180.nn import init
from rot180.nn.conv import Conv1d, Conv2d, Conv3d, ConvTranspose2d, ConvTranspose3d
from rot180.nn.linear import Linear
from rot180.nn.module import Parameter

BIG = (96, 64, 4, 4)  # 98,304 draws; fan_in = 1024, fan_out = 1536

LAYERS = [
    (lambda **kw: Conv2d(4, 6, 3, groups=2, **kw),
     lambda: torch.nn.Conv2d(4, 6, 3, groups=2)),
    (lambda **kw: Conv1d(3, 5, 4, **kw), lambda: torch.nn.Conv1d(3, 5, 4)),
    (lambda **kw: Conv3d(2, 4, (1, 2, 3), **kw), lambda: torch.nn.Conv3d(2, 4, (1, 2, 3))),
    (lambda **kw: ConvTranspose2d(4, 6, 3, groups=2, **kw),
     lambda: torch.nn.ConvTranspose2d(4, 6, 3, groups=2)),
    (lambda **kw: ConvTranspose3d(2, 3, 2, **kw), lambda: torch.nn.ConvTranspose3d(2, 3, 2)),
    (lambda **kw: Linear(7, 3, **kw), lambda: torch.nn.Linear(7, 3)),
]


@pytest.mark.parametrize("ours, theirs", LAYERS)
def test_layer_default_bounds_as_torch(ours, theirs):
    t = theirs()
    fan_in = torch.nn.init._calculate_fan_in_and_fan_out(t.weight)[0]
    layer = ours(rng=0)
    assert init.calculate_fan_in_and_fan_out(layer.weight) == \
        torch.nn.init._calculate_fan_in_and_fan_out(t.weight)
    bound = 1 / math.sqrt(fan_in)
    for name, p in layer.named_parameters():
        assert p.shape == tuple(getattr(t, name).shape)
        assert np.abs(p.data).max() <= bound
        assert np.abs(getattr(t, name).detach().numpy()).max() <= bound  # torch agrees
        assert np.unique(p.data).size == p.data.size  # really drawn, not constant


def test_default_init_statistics():
    w, b = np.empty(BIG), np.empty(50_000)
    init.default_init_(w, b, rng=0)
    bound = 1 / math.sqrt(64 * 16)
    for a in (w, b):
        assert np.abs(a).max() <= bound and np.abs(a).max() > 0.999 * bound
        assert abs(a.std() / (bound / math.sqrt(3)) - 1) < 0.02
        assert abs(a.mean()) < 0.02 * bound


def test_same_seed_same_weights_bit_for_bit():
    for ours, _ in LAYERS:
        a, b, c = ours(rng=123), ours(rng=123), ours(rng=124)
        for (_, pa), (_, pb), (_, pc) in zip(a.named_parameters(), b.named_parameters(),
                                             c.named_parameters(), strict=True):
            assert np.array_equal(pa.data, pb.data)
            assert not np.array_equal(pa.data, pc.data)
    # A seed equals a fresh generator from that seed; a shared generator moves on.
    assert np.array_equal(Linear(3, 2, rng=5).weight.data,
                          Linear(3, 2, rng=np.random.default_rng(5)).weight.data)
    g = np.random.default_rng(5)
    assert not np.array_equal(Linear(3, 2, rng=g).weight.data, Linear(3, 2, rng=g).weight.data)
    # Unseeded layers draw fresh entropy.
    assert not np.array_equal(Linear(30, 20).weight.data, Linear(30, 20).weight.data)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_dtype_kept(dtype):
    layer = Conv2d(2, 3, 3, dtype=dtype, rng=0)
    assert layer.weight.dtype == layer.bias.dtype == dtype
    a = np.empty((8, 9), dtype)
    for fill in (init.kaiming_uniform_, init.kaiming_normal_, init.xavier_uniform_,
                 init.xavier_normal_, init.uniform_, init.normal_, init.zeros_, init.ones_):
        assert fill(a) is a and a.dtype == dtype


@pytest.mark.parametrize("nonlinearity, param", [
    ("relu", None), ("leaky_relu", None), ("leaky_relu", 0.2), ("leaky_relu", math.sqrt(5)),
    ("tanh", None), ("sigmoid", None), ("linear", None), ("conv2d", None),
    ("conv_transpose3d", None), ("selu", None),
])
def test_calculate_gain_as_torch(nonlinearity, param):
    assert init.calculate_gain(nonlinearity, param) == pytest.approx(
        torch.nn.init.calculate_gain(nonlinearity, param), rel=1e-15)


@pytest.mark.parametrize("shape", [(3, 4), (5, 2, 3), (6, 3, 2, 2), (2, 8, 1, 3, 2)])
def test_fans_as_torch(shape):
    assert init.calculate_fan_in_and_fan_out(np.empty(shape)) == \
        torch.nn.init._calculate_fan_in_and_fan_out(torch.empty(shape))
    assert init.calculate_fan_in_and_fan_out(shape) == \
        init.calculate_fan_in_and_fan_out(np.empty(shape))


@pytest.mark.parametrize("mode, nonlinearity, a", [
    ("fan_in", "relu", 0.0), ("fan_out", "relu", 0.0), ("fan_in", "leaky_relu", 0.1),
    ("fan_in", "leaky_relu", math.sqrt(5)),
])
def test_kaiming(mode, nonlinearity, a):
    fan = 1024 if mode == "fan_in" else 1536
    std = torch.nn.init.calculate_gain(nonlinearity, a) / math.sqrt(fan)
    u = init.kaiming_uniform_(np.empty(BIG), a, mode, nonlinearity, rng=1)
    bound = math.sqrt(3) * std
    assert np.abs(u).max() <= bound and np.abs(u).max() > 0.999 * bound
    assert abs(u.std() / std - 1) < 0.02
    n = init.kaiming_normal_(np.empty(BIG), a, mode, nonlinearity, rng=2)
    assert abs(n.std() / std - 1) < 0.02 and abs(n.mean()) < 0.02 * std
    assert np.abs(n).max() > 3.5 * std  # tails: not a clipped or uniform draw


@pytest.mark.parametrize("gain", [1.0, math.sqrt(2)])
def test_xavier(gain):
    std = gain * math.sqrt(2 / (1024 + 1536))
    u = init.xavier_uniform_(np.empty(BIG), gain, rng=3)
    assert np.abs(u).max() <= math.sqrt(3) * std
    assert abs(u.std() / std - 1) < 0.02
    n = init.xavier_normal_(Parameter(np.empty(BIG)), gain, rng=4)
    assert abs(n.std() / std - 1) < 0.02 and abs(n.mean()) < 0.02 * std


def test_plain_fills_and_parameters_in_place():
    p = Parameter(np.empty((200, 500)))
    out = init.uniform_(p, -2.0, 3.0, rng=0)
    assert out is p.data and out.min() >= -2.0 and out.max() < 3.0
    assert abs(out.mean() - 0.5) < 0.05 and abs(out.std() - 5 / math.sqrt(12)) < 0.02
    init.normal_(p, 1.0, 0.5, rng=0)
    assert abs(p.data.mean() - 1.0) < 0.01 and abs(p.data.std() - 0.5) < 0.01
    assert not init.zeros_(p).any()
    assert (init.ones_(p) == 1).all()
    assert (init.constant_(p, 0.25) == 0.25).all()
    a = init.normal_(np.empty(10), rng=9)
    assert np.array_equal(a, init.normal_(np.empty(10), rng=9))


@pytest.mark.parametrize("call, exc, match", [
    (lambda: init.kaiming_uniform_(np.empty(5)), ValueError, "at least 2 dimensions"),
    (lambda: init.kaiming_normal_(np.empty((3, 3)), mode="fan"), ValueError,
     "mode must be 'fan_in' or 'fan_out'"),
    (lambda: init.kaiming_uniform_(np.empty((3, 3)), nonlinearity="swish"), ValueError,
     "Unsupported nonlinearity 'swish'"),
    (lambda: init.calculate_gain("leaky_relu", "x"), TypeError,
     "calculate_gain: negative_slope must be a real number"),
    (lambda: init.uniform_(np.empty(3), 1.0, 0.0), ValueError, "low <= high"),
    (lambda: init.normal_(np.empty(3), 0.0, -1.0), ValueError, "std >= 0"),
    (lambda: init.zeros_([1.0, 2.0]), TypeError, "numpy array or a Parameter"),
    (lambda: init.ones_(np.zeros(3, np.int64)), TypeError, "float32 or float64"),
    (lambda: init.make_rng("0"), TypeError, "rng must be a numpy.random.Generator"),
    (lambda: init.make_rng(True), TypeError, "rng must be a numpy.random.Generator"),
    (lambda: init.make_rng(-1), ValueError, "rng seed must be >= 0, got -1"),
])
def test_errors(call, exc, match):
    with pytest.raises(exc, match=match):
        call()
