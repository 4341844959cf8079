"""Conv{1,2,3}d and ConvTranspose{1,2,3}d layers against torch.nn twins and finite differences.

Each layer's weights go to the torch module through our ``state_dict()`` (whose keys and shapes
must equal torch's), then output, input gradient and parameter gradients must agree in float64
to 1e-10. Transposed configurations are derived from conv configurations (the transposed layer
maps the conv's output size back to its input size, ``output_padding`` = the stride remainder),
plus hand-picked cases with ``stride <= output_padding < dilation``.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np
import pytest
import torch

from conftest import ConvConfig, random_configs
from rot180.gradcheck import gradcheck
from rot180.nn.conv import (
    Conv1d,
    Conv2d,
    Conv3d,
    ConvTranspose1d,
    ConvTranspose2d,
    ConvTranspose3d,
)

TOL = 1e-10
OURS = {False: (Conv1d, Conv2d, Conv3d), True: (ConvTranspose1d, ConvTranspose2d,
                                               ConvTranspose3d)}
THEIRS = {False: (torch.nn.Conv1d, torch.nn.Conv2d, torch.nn.Conv3d),
          True: (torch.nn.ConvTranspose1d, torch.nn.ConvTranspose2d, torch.nn.ConvTranspose3d)}


@dataclass(frozen=True)
class Case:
    """Constructor arguments of one layer (ours and torch's alike) and its input shape."""

    transposed: bool
    nd: int
    args: tuple
    kwargs: dict[str, Any]
    x_shape: tuple[int, ...]

    def ours(self, dtype: type = np.float64, rng: Any = 0):
        return OURS[self.transposed][self.nd - 1](*self.args, **self.kwargs, dtype=dtype,
                                                  rng=rng)

    def theirs(self) -> torch.nn.Module:
        return THEIRS[self.transposed][self.nd - 1](*self.args, **self.kwargs).double()

    def __str__(self) -> str:
        kind = "T" if self.transposed else ""
        kw = ",".join(f"{k}={v}" for k, v in self.kwargs.items())
        return f"Conv{kind}{self.nd}d{self.args}{kw}-x{self.x_shape}".replace(" ", "")


def conv_case(cfg: ConvConfig, bias: bool) -> Case:
    kw = {"stride": cfg.stride, "padding": cfg.padding, "dilation": cfg.dilation,
          "groups": cfg.groups, "bias": bias}
    return Case(False, cfg.nd, (cfg.c_in, cfg.c_out, cfg.kernel), kw, cfg.x_shape)


def transposed_case(cfg: ConvConfig, bias: bool) -> Case:
    """The transposed layer undoing ``cfg``'s shapes: input the conv output, output its input."""
    pads = cfg.padding if cfg.form != "valid" else 0
    kw = {"stride": cfg.stride, "padding": pads, "output_padding": cfg.remainders,
          "groups": cfg.groups, "bias": bias, "dilation": cfg.dilation}
    return Case(True, cfg.nd, (cfg.c_out, cfg.c_in, cfg.kernel), kw, cfg.z_shape)


CONV_CASES = [conv_case(c, bias=i % 3 != 0) for i, c in enumerate(
    random_configs(48, seed=1998, forms=("int", "tuple", "valid", "same")))]
HAND_TRANSPOSED = [  # output_padding >= stride, allowed because it is < dilation
    Case(True, 1, (2, 3, 3), {"padding": 1, "output_padding": 2, "dilation": 3}, (2, 2, 5)),
    Case(True, 2, (4, 2, (2, 3)), {"stride": (1, 2), "output_padding": (1, 1),
                                   "dilation": (2, 1), "groups": 2}, (3, 4, 3, 4)),
    Case(True, 3, (2, 2, 2), {"padding": 1, "output_padding": (1, 0, 2), "dilation": 3,
                              "bias": False, "stride": (1, 2, 2)}, (2, 3, 3, 2)),
]
TRANSPOSED_CASES = [transposed_case(c, bias=i % 3 != 1) for i, c in enumerate(
    random_configs(45, seed=1986, forms=("int", "tuple", "valid")))] + HAND_TRANSPOSED
ALL_CASES = CONV_CASES + TRANSPOSED_CASES


pytestmark = pytest.mark.usefixtures("one_thread")  # see conftest.py


def torch_run(module: torch.nn.Module, x: np.ndarray, dy: np.ndarray):
    xt = torch.from_numpy(x).requires_grad_()
    with warnings.catch_warnings():
        # torch warns that an even dilated span under padding='same' needs a padded copy.
        warnings.filterwarnings("ignore", message="Using padding='same'", category=UserWarning)
        yt = module(xt)
    yt.backward(torch.from_numpy(dy))
    grads = {n: p.grad.numpy() for n, p in module.named_parameters()}
    return yt.detach().numpy(), xt.grad.numpy(), grads


def copy_to_torch(ours, theirs: torch.nn.Module) -> None:
    sd, tsd = ours.state_dict(), theirs.state_dict()
    assert list(sd) == list(tsd)
    assert {k: v.shape for k, v in sd.items()} == {k: tuple(v.shape) for k, v in tsd.items()}
    theirs.load_state_dict({k: torch.from_numpy(v) for k, v in sd.items()})


def maxerr(a: np.ndarray, b: np.ndarray) -> float:
    assert a.shape == b.shape
    return float(np.max(np.abs(a - b)))


@pytest.mark.parametrize("mode", ["train", "eval"])
@pytest.mark.parametrize("case", ALL_CASES, ids=str)
def test_matches_torch(case: Case, mode: str):
    rng = np.random.default_rng(7)
    ours, theirs = case.ours(), case.theirs()
    copy_to_torch(ours, theirs)
    getattr(ours, mode)()
    getattr(theirs, mode)()
    x = rng.standard_normal(case.x_shape)
    y = ours.forward(x)
    dy = rng.standard_normal(y.shape)
    dx = ours.backward(dy)
    ty, tdx, tgrads = torch_run(theirs, x, dy)
    assert maxerr(y, ty) <= TOL
    assert maxerr(dx, tdx) <= TOL
    names = [n for n, _ in ours.named_parameters()]
    assert names == list(tgrads)
    for n, p in ours.named_parameters():
        assert maxerr(p.grad, tgrads[n]) <= TOL, n


@pytest.mark.parametrize("case", CONV_CASES[:10] + TRANSPOSED_CASES[:8] + HAND_TRANSPOSED,
                         ids=str)
def test_gradcheck(case: Case):
    res = gradcheck(case.ours(rng=3), np.random.default_rng(5).standard_normal(case.x_shape),
                    max_entries=25, seed=1)
    assert res.ok, str(res)
    assert {e.name for e in res.errors} >= {"x", "weight"}


def test_gradcheck_detects_a_wrong_kernel_gradient():
    """The checker is not vacuous here: a layer whose dw is scaled by 2 must fail."""
    layer = Conv2d(2, 3, 3, stride=2, dtype=np.float64, rng=0)
    right = layer.backward

    def wrong(dy):
        before = layer.weight.grad.copy()
        dx = right(dy)
        layer.weight.grad += layer.weight.grad - before
        return dx

    layer.backward = wrong  # type: ignore[method-assign]
    res = gradcheck(layer, np.random.default_rng(0).standard_normal((2, 2, 6, 5)))
    assert res["x"].ok and not res["weight"].ok


@pytest.mark.parametrize("case", [CONV_CASES[1], CONV_CASES[4], TRANSPOSED_CASES[2],
                                  HAND_TRANSPOSED[1]], ids=str)
def test_grads_accumulate(case: Case):
    rng = np.random.default_rng(11)
    ours, theirs = case.ours(), case.theirs()
    copy_to_torch(ours, theirs)
    x1, x2 = rng.standard_normal(case.x_shape), rng.standard_normal(case.x_shape)
    first = {}
    for x in (x1, x2):
        y = ours.forward(x)
        dy = rng.standard_normal(y.shape)
        ours.backward(dy)
        first = first or {n: p.grad.copy() for n, p in ours.named_parameters()}
        torch_run(theirs, x, dy)  # torch accumulates into .grad the same way
    for n, p in dict(theirs.named_parameters()).items():
        assert maxerr(dict(ours.named_parameters())[n].grad, p.grad.numpy()) <= TOL
        assert maxerr(dict(ours.named_parameters())[n].grad, first[n]) > 1e-3
    ours.zero_grad()
    assert all(not p.grad.any() for p in ours.parameters())


@pytest.mark.parametrize("case", [CONV_CASES[0], CONV_CASES[5], TRANSPOSED_CASES[0],
                                  HAND_TRANSPOSED[2]], ids=str)
def test_float32_stays_float32(case: Case):
    rng = np.random.default_rng(2)
    ours = case.ours(dtype=np.float32)
    assert all(p.dtype == np.float32 for p in ours.parameters())
    x = rng.standard_normal(case.x_shape).astype(np.float32)
    y = ours.forward(x)
    dx = ours.backward(np.ones_like(y))
    assert y.dtype == dx.dtype == np.float32
    assert all(p.grad.dtype == np.float32 for p in ours.parameters())
    ref = case.ours(dtype=np.float64)
    # load_state_dict lists dtype mismatches rather than casting: cast the arrays explicitly
    ref.load_state_dict({k: v.astype(np.float64) for k, v in ours.state_dict().items()})
    y64 = ref.forward(x.astype(np.float64))
    assert maxerr(y.astype(np.float64), y64) <= 1e-4 * max(1.0, np.abs(y64).max())
    with pytest.raises(TypeError, match="does not match the layer's float32"):
        ours.forward(x.astype(np.float64))


@pytest.mark.parametrize("case", [CONV_CASES[3], TRANSPOSED_CASES[5]], ids=str)
def test_load_state_dict_from_torch(case: Case):
    torch.manual_seed(0)
    theirs = case.theirs()
    ours = case.ours(rng=1)
    ours.load_state_dict({k: v.numpy() for k, v in theirs.state_dict().items()})
    x = np.random.default_rng(0).standard_normal(case.x_shape)
    ty, _, _ = torch_run(theirs, x, np.zeros(theirs(torch.from_numpy(x)).shape))
    assert maxerr(ours.forward(x), ty) <= TOL


def test_unbatched_matches_batched_of_one():
    rng = np.random.default_rng(3)
    for layer in (Conv2d(2, 4, 3, padding=1, groups=2, dtype=np.float64, rng=0),
                  ConvTranspose2d(2, 4, 3, stride=2, output_padding=1, dtype=np.float64,
                                  rng=0)):
        x = rng.standard_normal((2, 5, 4))
        y = layer.forward(x)
        dy = rng.standard_normal(y.shape)
        dx = layer.backward(dy)
        g = [p.grad.copy() for p in layer.parameters()]
        layer.zero_grad()
        np.testing.assert_allclose(layer.forward(x[None])[0], y, rtol=0, atol=1e-13)
        np.testing.assert_allclose(layer.backward(dy[None])[0], dx, rtol=0, atol=1e-13)
        for a, p in zip(g, layer.parameters(), strict=True):
            np.testing.assert_allclose(p.grad, a, rtol=0, atol=1e-13)


def test_attributes_and_repr_as_torch():
    ours = Conv2d(4, 8, (3, 5), stride=2, padding=1, groups=2, bias=False)
    theirs = torch.nn.Conv2d(4, 8, (3, 5), stride=2, padding=1, groups=2, bias=False)
    for attr in ("in_channels", "out_channels", "kernel_size", "stride", "padding", "dilation",
                 "groups", "padding_mode"):
        assert getattr(ours, attr) == getattr(theirs, attr), attr
    assert repr(ours) == repr(theirs)
    t_ours = ConvTranspose1d(2, 3, 3, stride=2, output_padding=1)
    assert repr(t_ours) == repr(torch.nn.ConvTranspose1d(2, 3, 3, stride=2, output_padding=1))
    assert t_ours.output_padding == (1,)
    assert Conv1d(1, 1, 2, padding="same").padding == "same"


@pytest.mark.parametrize("make, exc, match", [
    (lambda: Conv2d(3, 4, 3, groups=2), ValueError, "in_channels must be divisible by groups"),
    (lambda: Conv2d(4, 3, 3, groups=2), ValueError, "out_channels must be divisible by groups"),
    (lambda: Conv2d(4, 4, 3, groups=0), ValueError, "Conv2d: groups must be >= 1, got 0"),
    (lambda: Conv2d(0, 4, 3), ValueError, "Conv2d: in_channels must be >= 1, got 0"),
    (lambda: Conv2d(2.0, 4, 3), TypeError, "in_channels must be an int"),
    (lambda: Conv2d(2, 4, 0), ValueError, "kernel_size must be >= 1"),
    (lambda: Conv1d(2, 4, (3, 3)), ValueError, "one entry per spatial dimension"),
    (lambda: Conv2d(2, 4, 3, stride=0), ValueError, "stride must be >= 1"),
    (lambda: Conv2d(2, 4, 3, dilation=(1, 0)), ValueError, "dilation must be >= 1"),
    (lambda: Conv2d(2, 4, 3, padding=-1), ValueError, "padding must be non-negative"),
    (lambda: Conv2d(2, 4, 3, padding="full"), ValueError, "Invalid padding string 'full'"),
    (lambda: Conv2d(2, 4, 3, stride=2, padding="same"), ValueError,
     "padding='same' is not supported for strided convolutions"),
    (lambda: Conv2d(2, 4, 3, padding_mode="reflect"), ValueError, "only 'zeros' is supported"),
    (lambda: Conv2d(2, 4, 3, dtype=np.int32), TypeError, "dtype must be float32 or float64"),
    (lambda: Conv2d(2, 4, 3, rng="seed"), TypeError, "rng must be a numpy.random.Generator"),
    (lambda: ConvTranspose2d(2, 4, 3, stride=2, output_padding=2), ValueError,
     "output padding must be smaller than either stride or dilation"),
    (lambda: ConvTranspose1d(2, 4, 3, output_padding=-1), ValueError,
     "output padding must be smaller"),
    (lambda: ConvTranspose2d(2, 4, 3, padding="same"), ValueError,
     "does not accept a padding string"),
    (lambda: ConvTranspose3d(2, 4, 3, padding_mode="circular"), ValueError,
     "only 'zeros' is supported"),
])
def test_bad_constructor_arguments(make, exc, match):
    with pytest.raises(exc, match=match):
        make()


def test_bad_forward_and_backward_calls():
    layer = Conv2d(2, 3, 3, dtype=np.float64, rng=0)
    with pytest.raises(RuntimeError, match="backward called before forward"):
        layer.backward(np.zeros((1, 3, 2, 2)))
    with pytest.raises(ValueError, match=r"expected input of shape \(N, 2"):
        layer.forward(np.zeros((1, 3, 5, 5)))
    with pytest.raises(ValueError, match=r"expected input of shape"):
        layer.forward(np.zeros((5, 5)))
    with pytest.raises(TypeError, match="Conv2d: x must be a numpy array, got list"):
        layer.forward([[1.0]])
    with pytest.raises(ValueError, match="kernel is larger than the padded input"):
        layer.forward(np.zeros((1, 2, 2, 5)))
    layer.forward(np.zeros((1, 2, 5, 5)))
    with pytest.raises(ValueError, match=r"Conv2d\.backward: dy has shape \(1, 3, 4, 3\) but the "
                                         r"forward output had shape \(1, 3, 3, 3\)"):
        layer.backward(np.zeros((1, 3, 4, 3)))
    tl = ConvTranspose1d(1, 1, 1, padding=1, dtype=np.float64)
    with pytest.raises(ValueError, match="crops more than the transposed convolution"):
        tl.forward(np.zeros((1, 1, 1)))


def test_the_spec_is_resolved_once_and_again_for_a_new_weight_shape() -> None:
    """The layer checks its settings at construction into one ConvSpec that every call reuses;
    replacing the weight by one of another shape rebuilds it (and the results follow it)."""
    from rot180.functional import conv, conv_grad_input
    from rot180.nn import Parameter

    layer = Conv2d(2, 3, 3, stride=2, padding="valid", dilation=1, dtype=np.float64, rng=0)
    spec = layer._spec()
    x = np.random.default_rng(1).standard_normal((2, 2, 9, 9))
    layer.forward(x)
    assert layer._spec() is spec and spec.padding == ((0, 0), (0, 0))
    w = np.random.default_rng(2).standard_normal((4, 2, 2, 2))
    layer.weight = Parameter(w)
    layer.bias = Parameter(np.zeros(4))
    y = layer.forward(x)
    assert layer._spec() is not spec and layer._spec().kernel == (2, 2)
    np.testing.assert_array_equal(y, conv(x, w, np.zeros(4), stride=2))
    dy = np.ones_like(y)
    np.testing.assert_array_equal(layer.backward(dy), conv_grad_input(dy, w, x.shape, stride=2))
