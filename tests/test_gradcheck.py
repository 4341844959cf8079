"""rot180.gradcheck: accepts right gradients, rejects wrong ones, on functions and on layers."""

from __future__ import annotations

import doctest
import importlib

import numpy as np
import pytest

import rot180
from rot180 import gradcheck
from rot180.functional import conv, conv_grad_input, conv_grad_weight
from rot180.functional import rot180 as rot
from rot180.gradcheck import GradcheckResult

KW = {"stride": 2, "padding": ((1, 0), 2), "dilation": (1, 2)}   # remainder a != 0 below


def _conv_problem(rng: np.random.Generator):
    x = rng.standard_normal((2, 3, 6, 7))
    w = rng.standard_normal((4, 3, 3, 2))
    return x, w


def _conv(x, w):
    return conv(x, w, **KW)


def _right_grads(dz, x, w):
    return conv_grad_input(dz, w, x.shape, **KW), conv_grad_weight(x, dz, w.shape, **KW)


def test_module_and_function_are_public():
    assert rot180.gradcheck is gradcheck
    assert callable(gradcheck)


def test_accepts_the_rot180_rule(rng: np.random.Generator):
    x, w = _conv_problem(rng)
    res = gradcheck(_conv, (x, w), grad_fn=_right_grads, names=("x", "w"))
    assert isinstance(res, GradcheckResult)
    assert res.ok and bool(res)
    assert [e.name for e in res.errors] == ["x", "w"]
    assert res["x"].checked == x.size and res["w"].shape == w.shape
    assert res.max_abs < 1e-7 and res.max_rel < 1e-4


def test_rejects_the_unrotated_kernel(rng: np.random.Generator):
    """The classic bug: the input gradient correlates with w instead of rot180(w)."""
    x, w = _conv_problem(rng)

    def wrong(dz, x, w):
        return conv_grad_input(dz, rot(w), x.shape, **KW), conv_grad_weight(x, dz, w.shape, **KW)

    res = gradcheck(_conv, (x, w), grad_fn=wrong, names=("x", "w"))
    assert not res.ok
    assert not res["x"].ok and res["x"].max_abs > 1e-2
    assert res["w"].ok
    assert "FAIL" in str(res)


def test_random_projection_catches_what_a_plain_sum_hides():
    """A gradient landing on the wrong position sums to the right total: dz = 1 would miss it."""
    x = np.arange(1.0, 6.0)
    right = gradcheck(lambda a: np.roll(a, 1), x, grad_fn=lambda dz, a: (np.roll(dz, -1),))
    wrong = gradcheck(lambda a: np.roll(a, 1), x, grad_fn=lambda dz, a: (dz,))
    assert right.ok
    assert not wrong.ok


def test_nonlinear_function_and_skipped_integer_input(rng: np.random.Generator):
    x = rng.standard_normal((3, 4))
    labels = np.array([0, 3, 1])

    def pick_tanh(a, idx):
        return np.tanh(a)[np.arange(len(idx)), idx]

    def grad(dz, a, idx):
        g = np.zeros_like(a)
        g[np.arange(len(idx)), idx] = dz * (1 - np.tanh(a[np.arange(len(idx)), idx]) ** 2)
        return g, None

    res = gradcheck(pick_tanh, (x, labels), grad_fn=grad)
    assert res.ok
    assert [e.name for e in res.errors] == ["input0"]


def test_float32_inputs_are_checked_in_float64(rng: np.random.Generator):
    x, w = (a.astype(np.float32) for a in _conv_problem(rng))
    seen = []

    def f(a, b):
        seen.append(a.dtype)
        return _conv(a, b)

    assert gradcheck(f, (x, w), grad_fn=_right_grads, max_entries=5).ok
    assert set(seen) == {np.dtype(np.float64)}
    assert x.dtype == np.float32   # the caller's arrays are untouched


def test_max_entries_samples_reproducibly(rng: np.random.Generator):
    x, w = _conv_problem(rng)
    a = gradcheck(_conv, (x, w), grad_fn=_right_grads, max_entries=10, seed=3)
    b = gradcheck(_conv, (x, w), grad_fn=_right_grads, max_entries=10, seed=3)
    assert [e.checked for e in a.errors] == [10, 10]
    assert a == b
    assert "10/252" in str(a)


# --- layers ----------------------------------------------------------------------------------

class _Param:
    def __init__(self, data: np.ndarray) -> None:
        self.data = data
        self.grad = np.zeros_like(data)


class _Affine:
    """y = x @ W.T + b, with a backward that accumulates like rot180.nn modules do."""

    def __init__(self, rng: np.random.Generator, bug: str | None = None) -> None:
        self.weight = _Param(rng.standard_normal((3, 4)).astype(np.float32))
        self.bias = _Param(rng.standard_normal(3).astype(np.float32))
        self.bug = bug

    def named_parameters(self):
        yield "weight", self.weight
        yield "bias", self.bias

    def forward(self, x):
        self.x = x
        return np.tanh(x @ self.weight.data.T + self.bias.data)

    def backward(self, dy):
        y = np.tanh(self.x @ self.weight.data.T + self.bias.data)
        dpre = dy * (1 - y**2)
        self.weight.grad += dpre.T @ self.x
        # The bug: the bias gradient of the first sample only, not the batch sum.
        self.bias.grad += dpre[0] if self.bug == "bias" else dpre.sum(axis=0)
        return dpre @ self.weight.data


def test_layer_right_backward_passes_and_is_restored(rng: np.random.Generator):
    layer = _Affine(rng)
    weight_before, grad_before = layer.weight.data, layer.weight.grad
    res = gradcheck(layer, rng.standard_normal((5, 4)).astype(np.float32))
    assert res.ok, str(res)
    assert [e.name for e in res.errors] == ["x", "weight", "bias"]
    assert layer.weight.data is weight_before and layer.weight.data.dtype == np.float32
    assert layer.weight.grad is grad_before


def test_layer_wrong_parameter_gradient_is_named(rng: np.random.Generator):
    res = gradcheck(_Affine(rng, bug="bias"), rng.standard_normal((5, 4)))
    assert not res.ok
    assert res["x"].ok and res["weight"].ok and not res["bias"].ok
    table = str(res)
    assert "bias" in table and "FAIL" in table and "result: FAIL" in table


def test_table_lists_every_gradient(rng: np.random.Generator):
    x, w = _conv_problem(rng)
    table = str(gradcheck(_conv, (x, w), grad_fn=_right_grads, names=("x", "w"),
                          max_entries=4))
    lines = table.splitlines()
    assert "max abs err" in lines[1] and "max rel err" in lines[1]
    assert lines[2].startswith("x ") and lines[3].startswith("w ")
    assert lines[-1] == "result: PASS"


def test_docstring_example_runs():
    # The submodule, not the function of the same name that rot180 exports.
    module = importlib.import_module("rot180.gradcheck")
    assert doctest.testmod(module).failed == 0


@pytest.mark.parametrize(("kwargs", "exc", "match"), [
    ({}, TypeError, r"checking a function needs its analytic backward: pass grad_fn"),
    ({"grad_fn": lambda dz, a: (dz, dz)}, ValueError, r"grad_fn returned 2 gradients for 1"),
    ({"grad_fn": lambda dz, a: (dz[:2],)}, ValueError,
     r"analytic gradient of input0 has shape \(2,\), expected \(3,\)"),
    ({"grad_fn": lambda dz, a: (dz,), "max_entries": 0}, ValueError,
     r"gradcheck: max_entries must be >= 1, got 0\. Pass None to check every entry"),
    ({"grad_fn": lambda dz, a: (dz,), "eps": 0.0}, ValueError,
     r"gradcheck: eps must be finite and > 0, got 0\.0"),
    ({"grad_fn": lambda dz, a: (dz,), "names": ("a", "b")}, ValueError,
     r"got 2 names for 1 inputs"),
])
def test_bad_arguments(kwargs, exc, match):
    with pytest.raises(exc, match=match):
        gradcheck(lambda a: 2 * a, np.ones(3), **kwargs)


def test_bad_targets():
    with pytest.raises(TypeError, match=r"target must be a function or a layer"):
        gradcheck(42, np.ones(3))
    with pytest.raises(TypeError, match=r"which is not a floating-point array"):
        gradcheck(lambda a: a * 1.0, np.arange(3), grad_fn=lambda dz, a: (dz,))
    layer = _Affine(np.random.default_rng(0))
    with pytest.raises(TypeError, match=r"grad_fn and names are for functions"):
        gradcheck(layer, np.ones((2, 4)), grad_fn=lambda dz, x: (dz,))
