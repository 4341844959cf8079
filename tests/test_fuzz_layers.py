"""Property and fuzz tests of the layers (:mod:`rot180.nn`), the loss modules and the optimizers.

Valid random configurations must agree with an independent oracle: the direct-loop convolution
reference for ``Conv{1,2,3}d``, and otherwise the PyTorch float64 twin built with the same
arguments and weights (output, input gradient, parameter gradients, running statistics, optimizer
updates). Invalid ones (one fault each: a bad constructor argument, an input of the wrong ndim,
channels, dtype or type, a ``dy`` that is not the gradient of the last output, a corrupted
optimizer ``state_dict``) must raise the documented exception: ``ValueError`` for values and
shapes, ``TypeError`` for types and dtypes, ``RuntimeError`` for ``backward`` before ``forward``;
never another exception type, never a wrong shape, and nothing half-done: a rejected ``backward``
leaves the accumulated gradients, and a rejected ``load_state_dict`` the optimizer, unchanged.

Generated cases: the sum of the ``max_examples`` below is 5,000 (see ``BUDGET``); with the
10,000 of ``test_fuzz_functional.py`` that makes 15,000. :func:`test_generated_case_count`
checks that each test ran its budget and prints the total with ``pytest -rP``.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from hypothesis import strategies as st

from _fuzzing import CaseCounter, raises
from conftest import ConvConfig, conv_configs
from rot180 import nn
from rot180.functional.reference import (
    conv_direct,
    conv_grad_input_direct,
    conv_grad_weight_direct,
)
from rot180.optim import SGD, Adam, AdamW

_COUNTER = CaseCounter()
fuzz, CASES, BUDGET = _COUNTER.fuzz, _COUNTER.cases, _COUNTER.budget


def close(a: np.ndarray, b: np.ndarray | torch.Tensor, tol: float = 1e-10) -> None:
    b = b.detach().numpy() if isinstance(b, torch.Tensor) else np.asarray(b)
    assert isinstance(a, np.ndarray | np.generic) and a.shape == b.shape, (np.shape(a), b.shape)
    scale = max(1.0, float(np.abs(b).max())) if b.size else 1.0
    assert np.allclose(a, b, rtol=0, atol=tol * scale), np.abs(a - b).max()


BAD_DTYPES = (np.int64, np.uint8, np.float16, np.complex128, np.bool_, object)
NON_ARRAYS = (None, "x", [[1.0, 2.0]], 3.0, {"x": 1})
seeds = st.integers(0, 2**32 - 1)
CONV = (nn.Conv1d, nn.Conv2d, nn.Conv3d)
CONVT = (nn.ConvTranspose1d, nn.ConvTranspose2d, nn.ConvTranspose3d)


def t64(a: np.ndarray, grad: bool = False) -> torch.Tensor:
    return torch.tensor(np.asarray(a, np.float64), requires_grad=grad)


def grads(module: nn.Module) -> dict[str, np.ndarray]:
    return {k: p.grad.copy() for k, p in module.named_parameters()}


# -- Conv{1,2,3}d against the direct-loop reference --------------------------------------------

@fuzz(600, cfg=conv_configs(max_out=3, max_channels=3, max_kernel=3,
                            forms=("int", "tuple", "pairs", "valid", "same")),
      bias=st.booleans(), seed=seeds)
def test_conv_layers_match_the_direct_reference(cfg: ConvConfig, bias: bool, seed: int) -> None:
    rng = np.random.default_rng(seed)
    layer = CONV[cfg.nd - 1](cfg.c_in, cfg.c_out, cfg.kernel, **cfg.kwargs, bias=bias,
                             dtype=np.float64, rng=rng)
    x, _, _, dz = cfg.arrays(rng)
    w = layer.weight.data
    b = layer.bias.data if bias else None
    kw = cfg.kwargs
    close(layer.forward(x), conv_direct(x, w, b, **kw))
    close(layer.backward(dz), conv_grad_input_direct(dz, w, x.shape, **kw))
    close(layer.weight.grad, conv_grad_weight_direct(x, dz, w.shape, **kw))
    if bias:
        axes = tuple(i for i in range(dz.ndim) if i != dz.ndim - cfg.nd - 1)
        close(layer.bias.grad, dz.sum(axis=axes))


# -- every other layer against its PyTorch float64 twin ----------------------------------------

@st.composite
def twins(draw: Callable) -> tuple[Callable, Callable, tuple[int, ...]]:
    """``(make ours, make theirs, input shape)`` of one random layer configuration."""
    kind = draw(st.sampled_from(["convT", "linear", "max", "avg", "adaptive", "relu", "leaky",
                                 "sigmoid", "tanh", "flatten", "bn", "identity"]))
    nd = draw(st.integers(1, 3))
    n = draw(st.integers(1, 3))
    c = draw(st.integers(1, 3))
    small = 3 if nd < 3 else 2
    if kind == "convT":
        g = draw(st.integers(1, 2))
        cin, cout = g * draw(st.integers(1, 2)), g * draw(st.integers(1, 2))
        k = tuple(draw(st.integers(1, 3)) for _ in range(nd))
        s = tuple(draw(st.integers(1, 3)) for _ in range(nd))
        d = tuple(draw(st.integers(1, 2)) for _ in range(nd))
        p = tuple(draw(st.integers(0, 2)) for _ in range(nd))
        op = tuple(draw(st.integers(0, max(sj, dj) - 1)) for sj, dj in zip(s, d, strict=True))
        # input size large enough that no padding crops the whole output
        i = tuple(draw(st.integers(1, small)) + 2 * pj for pj in p)
        args = (cin, cout, k)
        kw = {"stride": s, "padding": p, "output_padding": op, "groups": g, "dilation": d,
              "bias": draw(st.booleans())}
        return (lambda: CONVT[nd - 1](*args, **kw, dtype=np.float64),
                lambda: getattr(torch.nn, f"ConvTranspose{nd}d")(*args, **kw).double(),
                (n, cin, *i))
    if kind == "linear":
        fi, fo = draw(st.integers(1, 5)), draw(st.integers(1, 5))
        lead = tuple(draw(st.integers(1, 3)) for _ in range(draw(st.integers(0, 2))))
        b = draw(st.booleans())
        return (lambda: nn.Linear(fi, fo, b, dtype=np.float64),
                lambda: torch.nn.Linear(fi, fo, b).double(), (*lead, fi))
    if kind in ("max", "avg"):
        k = tuple(draw(st.integers(1, 3)) for _ in range(nd))
        s = tuple(draw(st.integers(1, 3)) for _ in range(nd))
        p = tuple(draw(st.integers(0, kj // 2)) for kj in k)
        # torch's AvgPool3d also wants the unpadded input >= kernel (a torch restriction)
        low = (0 if kind == "avg" and nd == 3 else 2)
        i = tuple(draw(st.integers(max(1, kj - low * pj), kj - low * pj + small))
                  for kj, pj in zip(k, p, strict=True))
        kw = {"stride": s, "padding": p, "ceil_mode": draw(st.booleans())}
        if kind == "avg":
            kw["count_include_pad"] = draw(st.booleans())
        name = f"{'Max' if kind == 'max' else 'Avg'}Pool{nd}d"
        lead = (n, c) if draw(st.booleans()) else (c,)
        return (lambda: getattr(nn, name)(k, **kw), lambda: getattr(torch.nn, name)(k, **kw),
                (*lead, *i))
    if kind == "adaptive":
        i = tuple(draw(st.integers(1, 4)) for _ in range(nd))
        o: Any = tuple(draw(st.one_of(st.none(), st.integers(1, ij + 1))) for ij in i)
        if nd == 1:
            o = draw(st.integers(1, i[0] + 1))
        name = f"AdaptiveAvgPool{nd}d"
        return (lambda: getattr(nn, name)(o), lambda: getattr(torch.nn, name)(o), (n, c, *i))
    if kind == "bn":
        shape = (draw(st.integers(2, 3)), c) + tuple(draw(st.integers(1, 3)) for _ in range(nd))
        if nd == 1 and draw(st.booleans()):
            shape = shape[:2]   # BatchNorm1d takes (N, C) too
        kw = {"eps": draw(st.sampled_from([1e-5, 0.1])),
              "momentum": draw(st.sampled_from([0.1, 0.5, None])),
              "affine": draw(st.booleans()), "track_running_stats": draw(st.booleans())}
        train = draw(st.booleans())
        name = f"BatchNorm{nd}d"

        def ours() -> nn.Module:
            return getattr(nn, name)(c, **kw, dtype=np.float64).train(train)

        def theirs() -> torch.nn.Module:
            return getattr(torch.nn, name)(c, **kw).double().train(train)
        return ours, theirs, shape
    shape = tuple(draw(st.integers(1, 3)) for _ in range(draw(st.integers(1, 4))))
    if kind == "flatten":
        start = draw(st.integers(-len(shape), len(shape) - 1))
        end = draw(st.integers(start % len(shape), len(shape) - 1))
        end -= draw(st.sampled_from([0, len(shape)]))      # negative end counts from the end
        return (lambda: nn.Flatten(start, end), lambda: torch.nn.Flatten(start, end), shape)
    slope = draw(st.floats(-1, 1))
    ours_, theirs_ = {"relu": (nn.ReLU, torch.nn.ReLU), "sigmoid": (nn.Sigmoid, torch.nn.Sigmoid),
                      "tanh": (nn.Tanh, torch.nn.Tanh), "identity": (nn.Identity,
                                                                     torch.nn.Identity),
                      "leaky": (lambda: nn.LeakyReLU(slope),
                                lambda: torch.nn.LeakyReLU(slope))}[kind]
    return ours_, theirs_, shape


@fuzz(1400, twin=twins(), seed=seeds)
def test_layers_match_their_torch_twin(twin: tuple, seed: int) -> None:
    make_ours, make_theirs, shape = twin
    rng = np.random.default_rng(seed)
    theirs = make_theirs()
    ours = make_ours()
    with torch.no_grad():   # non-default affine parameters, so that they are tested
        for p in theirs.parameters():
            p.copy_(torch.tensor(rng.uniform(-1.5, 1.5, tuple(p.shape))))
    state = {k: v.detach().numpy().copy() for k, v in theirs.state_dict().items()}
    ours.load_state_dict(state)
    x = rng.standard_normal(shape) * 2
    xt = t64(x, grad=True)
    yt = theirs(xt)
    y = ours.forward(x)
    close(y, yt)
    dy = rng.standard_normal(y.shape)
    yt.backward(t64(dy))
    close(ours.backward(dy), xt.grad)
    for name, p in theirs.named_parameters():
        close(dict(ours.named_parameters())[name].grad, p.grad)
    for name, buf in theirs.named_buffers():
        close(np.asarray(dict(ours.named_buffers())[name], np.float64), buf.double())


# -- layer calls with one fault ---------------------------------------------------------------

LAYERS: dict[str, tuple[Callable[[], nn.Module], tuple[int, ...], str]] = {
    # name: (factory, a valid input shape, faults that apply: n=ndim c=channels p=params
    #        s=spatial too small f=float input required)
    "Conv1d": (lambda: nn.Conv1d(2, 3, 3, dtype=np.float32), (2, 2, 5), "ncpsf"),
    "Conv2d": (lambda: nn.Conv2d(2, 3, (2, 3), padding=(1, 0), dtype=np.float64),
               (1, 2, 4, 4), "ncpsf"),
    "Conv3d": (lambda: nn.Conv3d(1, 2, 2, stride=2, dtype=np.float32), (1, 1, 3, 3, 3),
               "ncpsf"),
    "ConvTranspose2d": (lambda: nn.ConvTranspose2d(2, 3, 3, stride=2, output_padding=1,
                                                   dtype=np.float32), (2, 2, 3, 3), "ncpf"),
    "Linear": (lambda: nn.Linear(4, 3, dtype=np.float32), (5, 4), "cpf"),
    "Linear64": (lambda: nn.Linear(3, 2, dtype=np.float64), (2, 2, 3), "cpf"),
    "MaxPool2d": (lambda: nn.MaxPool2d(2, padding=1), (2, 3, 5, 5), "nf"),
    "AvgPool1d": (lambda: nn.AvgPool1d(3, stride=2), (2, 2, 7), "nsf"),
    "AdaptiveAvgPool2d": (lambda: nn.AdaptiveAvgPool2d((2, 3)), (2, 2, 5, 4), "nf"),
    "GlobalAvgPool2d": (nn.GlobalAvgPool2d, (2, 3, 3, 3), "nf"),
    "ReLU": (nn.ReLU, (2, 3), "f"),
    "LeakyReLU": (lambda: nn.LeakyReLU(0.2), (4,), "f"),
    "Sigmoid": (nn.Sigmoid, (2, 2, 2), "f"),
    "Tanh": (nn.Tanh, (3, 1), "f"),
    "Dropout": (lambda: nn.Dropout(0.3, rng=0), (4, 5), "f"),
    "Flatten": (nn.Flatten, (2, 3, 4), ""),     # a reshape: any dtype, any ndim >= 2
    "BatchNorm1d": (lambda: nn.BatchNorm1d(3, dtype=np.float64), (4, 3), "ncpf"),
    "BatchNorm2d": (lambda: nn.BatchNorm2d(2), (2, 2, 3, 3), "ncpf"),
    "Sequential": (lambda: nn.Sequential(nn.Conv2d(1, 2, 3), nn.ReLU(), nn.Flatten(),
                                         nn.Linear(8, 2)), (2, 1, 4, 4), "ncpsf"),
}
LAYER_FAULTS = {
    "input ndim": ("n", ValueError),
    "input channels": ("c", ValueError),
    "input spatial too small": ("s", ValueError),
    "input dtype not float": ("f", TypeError),
    "input dtype mixed with the parameters": ("p", TypeError),
    "input not an array": ("", TypeError),
    "backward before forward": ("", RuntimeError),
    "dy shape": ("", ValueError),
    "dy dtype": ("", TypeError),
    "dy not an array": ("", TypeError),
}


@fuzz(1300, name=st.sampled_from(sorted(LAYERS)), fault=st.sampled_from(sorted(LAYER_FAULTS)),
      seed=seeds, data=st.data())
def test_layer_faults_raise_the_documented_error(name: str, fault: str, seed: int,
                                                 data: st.DataObject) -> None:
    make, shape, applies = LAYERS[name]
    need, exc = LAYER_FAULTS[fault]
    if need and need not in applies:
        fault, (need, exc) = "dy shape", LAYER_FAULTS["dy shape"]
    layer = make()
    params = list(layer.parameters())
    dtype = params[0].dtype if params else np.dtype(data.draw(st.sampled_from(
        [np.float32, np.float64])))
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(shape).astype(dtype)
    pick = data.draw
    if fault == "backward before forward":
        raises(exc, lambda: layer.backward(np.ones(shape, dtype)), "before forward")
        return
    if fault.startswith("input"):
        if fault == "input ndim":
            bad = pick(st.sampled_from([x.reshape(-1), x[None, None]]))
        elif fault == "input channels":
            axis = -1 if "Linear" in name else 1
            bad = np.concatenate([x, x.take([0], axis=axis)], axis=axis)
        elif fault == "input spatial too small":
            bad = x[..., :1]
        elif fault == "input dtype not float":
            bad = x.astype(pick(st.sampled_from(BAD_DTYPES)))
        elif fault == "input dtype mixed with the parameters":
            bad = x.astype(np.float64 if dtype == np.float32 else np.float32)
        else:
            bad = pick(st.sampled_from(NON_ARRAYS))
        match = "astype" if "dtype" in fault else ""
        raises(exc, lambda: layer.forward(bad), match)
        return
    y = layer.forward(x)
    before = grads(layer)
    if fault == "dy shape":
        options = [y[None], np.concatenate([y, y], axis=-1), y.reshape(-1), y[..., :-1],
                   np.ones(y.shape[::-1], y.dtype)]
        dy = pick(st.sampled_from([o for o in options if o.shape != y.shape]))
    elif fault == "dy dtype":
        dy = y.astype(pick(st.sampled_from(
            [np.float64 if y.dtype == np.float32 else np.float32, *BAD_DTYPES])))
    else:
        dy = pick(st.sampled_from(NON_ARRAYS))
    raises(exc, lambda: layer.backward(dy))
    after = grads(layer)
    assert all(np.array_equal(before[k], after[k]) for k in before), "gradients changed"
    assert layer.backward(np.ones_like(y)).shape == x.shape   # the cache survived


# -- constructors with one bad argument ---------------------------------------------------------

def _ctor_cases() -> dict[str, tuple[Callable[[Any], object], st.SearchStrategy, type]]:
    neg = st.integers(-10**6, 0)
    nonfinite = st.sampled_from([math.nan, math.inf, -math.inf])
    not_int = st.one_of(st.floats(allow_nan=True), st.text(max_size=3), st.none(),
                        st.booleans(), st.lists(st.integers(), max_size=2))
    not_real_or_none = st.one_of(st.text(max_size=3), st.booleans(),
                                 st.lists(st.floats(), max_size=2), st.just(np.ones(2)))
    not_real = st.one_of(not_real_or_none, st.none())
    not_bool = st.one_of(st.integers(), st.text(max_size=3), st.none())
    outside_unit = st.floats().filter(lambda f: not 0 <= f <= 1)
    return {
        "Conv2d in_channels <= 0": (lambda v: nn.Conv2d(v, 2, 3), neg, ValueError),
        "Conv2d in_channels not an int": (lambda v: nn.Conv2d(v, 2, 3), not_int, TypeError),
        "Conv1d kernel <= 0": (lambda v: nn.Conv1d(1, 2, v), neg, ValueError),
        # (one entry broadcasts to every axis, as in PyTorch's as_tuple rule)
        "Conv3d kernel wrong length": (lambda v: nn.Conv3d(1, 2, (3,) * v),
                                       st.sampled_from([0, 2, 4, 5]), ValueError),
        "Conv2d stride <= 0": (lambda v: nn.Conv2d(1, 2, 3, stride=(1, v)), neg, ValueError),
        "Conv2d dilation <= 0": (lambda v: nn.Conv2d(1, 2, 3, dilation=v), neg, ValueError),
        "Conv2d padding < 0": (lambda v: nn.Conv2d(1, 2, 3, padding=v - 1), neg, ValueError),
        "Conv2d padding bad string": (lambda v: nn.Conv2d(1, 2, 3, padding=v), st.text(
            max_size=6).filter(lambda t: t not in ("valid", "same")), ValueError),
        "Conv2d padding not an int": (lambda v: nn.Conv2d(1, 2, 3, padding=v), st.one_of(
            st.floats(), st.none(), st.just((1.0, 1.0)), st.just({"a": 1})), TypeError),
        "Conv2d same with stride": (lambda v: nn.Conv2d(1, 2, 3, stride=v, padding="same"),
                                    st.integers(2, 10**6), ValueError),
        "Conv2d padding_mode": (lambda v: nn.Conv2d(1, 2, 3, padding_mode=v), st.one_of(
            st.text(max_size=8).filter(lambda t: t != "zeros"), st.none()), ValueError),
        "Conv2d groups not dividing": (lambda v: nn.Conv2d(4, 6, 3, groups=v),
                                       st.integers(3, 10**6), ValueError),
        "Conv2d groups <= 0": (lambda v: nn.Conv2d(4, 4, 3, groups=v), neg, ValueError),
        "Conv2d groups not an int": (lambda v: nn.Conv2d(4, 4, 3, groups=v), not_int,
                                     TypeError),
        "Conv2d dtype": (lambda v: nn.Conv2d(1, 2, 3, dtype=v), st.sampled_from(
            [np.int32, np.float16, "foo", complex, "i8", np.uint8, bool]), TypeError),
        "Conv2d bias not a bool": (lambda v: nn.Conv2d(1, 2, 3, bias=v), not_bool, TypeError),
        "ConvTranspose2d output_padding too big": (
            lambda v: nn.ConvTranspose2d(1, 2, 3, stride=2, output_padding=v),
            st.integers(2, 10**6), ValueError),
        "ConvTranspose1d padding string": (lambda v: nn.ConvTranspose1d(1, 2, 3, padding=v),
                                           st.text(max_size=5), ValueError),
        "Linear features <= 0": (lambda v: nn.Linear(3, v), neg, ValueError),
        "Linear features not an int": (lambda v: nn.Linear(v, 3), not_int, TypeError),
        "Linear dtype": (lambda v: nn.Linear(3, 2, dtype=v), st.sampled_from(
            [np.int64, "int", np.complex64, object, "U3"]), TypeError),
        "MaxPool2d kernel <= 0": (lambda v: nn.MaxPool2d(v), neg, ValueError),
        "MaxPool2d padding over half": (lambda v: nn.MaxPool2d(2 * v, padding=v + 1),
                                        st.integers(1, 10**6), ValueError),
        "AvgPool2d ceil_mode not a bool": (lambda v: nn.AvgPool2d(2, ceil_mode=v), not_bool,
                                           TypeError),
        "AdaptiveAvgPool2d size <= 0": (lambda v: nn.AdaptiveAvgPool2d((v, 2)), neg,
                                        ValueError),
        "LeakyReLU slope not finite": (lambda v: nn.LeakyReLU(v), nonfinite, ValueError),
        "LeakyReLU slope not a number": (lambda v: nn.LeakyReLU(v), not_real, TypeError),
        "Dropout p out of [0, 1]": (lambda v: nn.Dropout(v), outside_unit, ValueError),
        "Dropout p not a number": (lambda v: nn.Dropout(v), not_real, TypeError),
        "Flatten dims not ints": (lambda v: nn.Flatten(v), not_int, TypeError),
        "BatchNorm2d num_features <= 0": (lambda v: nn.BatchNorm2d(v), neg, ValueError),
        "BatchNorm2d eps <= 0 or not finite": (
            lambda v: nn.BatchNorm2d(2, eps=v),
            st.floats().filter(lambda f: not 0 < f < math.inf), ValueError),
        "BatchNorm2d eps not a number": (lambda v: nn.BatchNorm2d(2, eps=v), not_real,
                                         TypeError),
        "BatchNorm1d momentum out of [0, 1]": (lambda v: nn.BatchNorm1d(2, momentum=v),
                                               outside_unit, ValueError),
        "BatchNorm1d momentum not a number": (lambda v: nn.BatchNorm1d(2, momentum=v),
                                              not_real_or_none, TypeError),
        "BatchNorm3d affine not a bool": (lambda v: nn.BatchNorm3d(2, affine=v), not_bool,
                                          TypeError),
        "SoftmaxCrossEntropy smoothing": (lambda v: nn.SoftmaxCrossEntropy(v), outside_unit,
                                          ValueError),
        "MSELoss reduction": (lambda v: nn.MSELoss(reduction=v), st.one_of(
            st.text(max_size=5).filter(lambda t: t not in ("mean", "sum")), st.none()),
            ValueError),
    }


CTOR_CASES = _ctor_cases()


@fuzz(500, case=st.sampled_from(sorted(CTOR_CASES)), data=st.data())
def test_constructor_faults_raise_the_documented_error(case: str, data: st.DataObject) -> None:
    make, values, exc = CTOR_CASES[case]
    value = data.draw(values)
    raises(exc, lambda: make(value))


# -- optimizers -------------------------------------------------------------------------------

def _hyper(draw: Callable, valid: st.SearchStrategy, kind: str) -> tuple[Any, type | None]:
    """A valid value, or (with one fault) a value of a bad type or value, and its exception."""
    if kind == "type":
        return draw(st.sampled_from(["0.1", None, [0.1], True, np.ones(2)])), TypeError
    if kind == "value":
        return draw(st.sampled_from([math.nan, math.inf, -math.inf, -0.5])), ValueError
    return draw(valid), None


@st.composite
def optimizer_cases(draw: Callable) -> tuple[str, dict, type | None]:
    name = draw(st.sampled_from(["SGD", "Adam", "AdamW"]))
    if name == "SGD":
        momentum = draw(st.sampled_from([0.0, 0.5, 0.9]))
        nesterov = momentum > 0 and draw(st.booleans())
        kw: dict[str, Any] = {"lr": draw(st.floats(0, 1)), "momentum": momentum,
                              "dampening": 0.0 if nesterov else draw(st.floats(0, 1)),
                              "weight_decay": draw(st.sampled_from([0.0, 0.01, 0.3])),
                              "nesterov": nesterov}
    else:
        kw = {"lr": draw(st.floats(0, 0.5)),
              "betas": (draw(st.floats(0, 0.99)), draw(st.floats(0, 0.999))),
              "eps": draw(st.sampled_from([1e-8, 1e-3])),
              "weight_decay": draw(st.sampled_from([0.0, 0.01, 0.3])),
              "amsgrad": draw(st.booleans())}
    fault = draw(st.sampled_from(["none", "none", "type", "value", "flag", "betas"]))
    exc: type | None = None
    if fault in ("type", "value"):
        key = draw(st.sampled_from(sorted(k for k, v in kw.items() if isinstance(v, float)
                                          and k != "dampening")))
        kw[key], exc = _hyper(draw, st.nothing(), fault)
    elif fault == "flag":
        kw["nesterov" if name == "SGD" else "amsgrad"] = draw(st.sampled_from([1, "yes", None]))
        exc = TypeError
    elif fault == "betas" and name != "SGD":
        kw["betas"], exc = draw(st.sampled_from([
            ((0.9,), TypeError), ((0.9, 0.99, 0.9), TypeError), (0.9, TypeError),
            ((1.0, 0.9), ValueError), ((0.9, -0.1), ValueError), ((math.nan, 0.9), ValueError),
            (("0.9", 0.9), TypeError)]))
    return name, kw, exc


@fuzz(500, case=optimizer_cases(), seed=seeds)
def test_optimizers_match_torch_or_raise(case: tuple, seed: int) -> None:
    name, kw, exc = case
    rng = np.random.default_rng(seed)
    values = [rng.standard_normal(s) for s in [(3, 2), (4,)]]
    ours = [nn.Parameter(v.copy()) for v in values]
    make = {"SGD": SGD, "Adam": Adam, "AdamW": AdamW}[name]
    if exc is not None:
        raises(exc, lambda: make(ours, **kw))
        return
    opt = make(ours, **kw)
    theirs = [torch.tensor(v, requires_grad=True) for v in values]
    topt = getattr(torch.optim, name)(theirs, **kw, foreach=False)
    for _ in range(3):
        for p, t in zip(ours, theirs, strict=True):
            g = rng.standard_normal(p.shape)
            p.grad[...] = g
            t.grad = torch.tensor(g)
        opt.step()
        topt.step()
    for p, t in zip(ours, theirs, strict=True):
        close(p.data, t, 1e-9)


def _corruptions(name: str) -> list[str]:
    base = ["drop state", "drop param_groups", "not a dict", "param_groups not a list",
            "group not a dict", "group lacks params", "params not a list", "group lacks lr",
            "lr NaN", "lr a string", "extra group", "params count", "state not a dict",
            "state entry not a dict", "state index out of range", "state index negative",
            "state index a word", "unknown state entry", "state array shape",
            "state array strings", "state array NaN"]
    return base + (["step negative", "step fractional", "step missing"]
                   if name != "SGD" else [])


@fuzz(500, name=st.sampled_from(["SGD", "Adam"]), json=st.booleans(), seed=seeds, data=st.data())
def test_optimizer_load_state_dict_rejects_corruption_atomically(name: str, json: bool,
                                                                 seed: int,
                                                                 data: st.DataObject) -> None:
    rng = np.random.default_rng(seed)
    params = [nn.Parameter(rng.standard_normal((2, 3))), nn.Parameter(rng.standard_normal(3))]
    opt = SGD(params, lr=0.1, momentum=0.9) if name == "SGD" else Adam(params, lr=0.01)
    for p in params:
        p.grad[...] = rng.standard_normal(p.shape)
    opt.step()
    saved = opt.state_dict()
    if json:   # what a JSON round trip gives: str keys, lists for tuples
        saved["state"] = {str(k): v for k, v in saved["state"].items()}
        for g in saved["param_groups"]:
            g.update({k: list(v) for k, v in g.items() if isinstance(v, tuple)})
    fault = data.draw(st.sampled_from(["none", *_corruptions(name)]))
    sd: Any = copy.deepcopy(saved)
    key0 = next(iter(sd["state"]))
    entry = sd["state"][key0]
    array_key = "momentum_buffer" if name == "SGD" else "exp_avg"
    exc: type[Exception] = ValueError
    if fault == "drop state":
        del sd["state"]
    elif fault == "drop param_groups":
        del sd["param_groups"]
    elif fault == "not a dict":
        sd = data.draw(st.sampled_from([None, [], "state", 3]))
    elif fault == "param_groups not a list":
        sd["param_groups"] = data.draw(st.sampled_from([3, "groups", None, {"params": [0]}]))
    elif fault == "group not a dict":
        sd["param_groups"] = [5]
    elif fault == "group lacks params":
        del sd["param_groups"][0]["params"]
    elif fault == "params not a list":
        sd["param_groups"][0]["params"] = data.draw(st.sampled_from([0, "01", None]))
    elif fault == "group lacks lr":
        del sd["param_groups"][0]["lr"]
    elif fault == "lr NaN":
        sd["param_groups"][0]["lr"] = data.draw(st.sampled_from([math.nan, -1.0, math.inf]))
    elif fault == "lr a string":
        sd["param_groups"][0]["lr"], exc = "0.1", TypeError
    elif fault == "extra group":
        sd["param_groups"].append(copy.deepcopy(sd["param_groups"][0]))
    elif fault == "params count":
        sd["param_groups"][0]["params"] = sd["param_groups"][0]["params"][:1]
    elif fault == "state not a dict":
        sd["state"] = data.draw(st.sampled_from([[1], "state", 3]))
    elif fault == "state entry not a dict":
        sd["state"][key0] = data.draw(st.sampled_from([5, None, [1.0]]))
    elif fault == "state index out of range":
        sd["state"][data.draw(st.sampled_from([2, 7, "9"]))] = entry
    elif fault == "state index negative":
        sd["state"][-1] = entry
    elif fault == "state index a word":
        sd["state"][data.draw(st.sampled_from(["a", "", "1.5", None]))] = entry
    elif fault == "unknown state entry":
        entry["velocity"] = entry[array_key]
    elif fault == "state array shape":
        entry[array_key] = data.draw(st.sampled_from([entry[array_key][:1], np.zeros(7),
                                                      np.float64(1.0)]))
    elif fault == "state array strings":
        entry[array_key], exc = np.full(np.shape(entry[array_key]), "a"), TypeError
    elif fault == "state array NaN":
        arr = np.array(entry[array_key], dtype=np.float64)
        arr.flat[0] = data.draw(st.sampled_from([math.nan, math.inf]))
        entry[array_key] = arr
    elif fault == "step negative":
        entry["step"] = -1
    elif fault == "step fractional":
        entry["step"] = data.draw(st.sampled_from([1.5, "1", None]))
    elif fault == "step missing":
        del entry["step"]
    before = opt.state_dict()
    if fault == "none":
        opt.load_state_dict(sd)
    else:
        raises(exc, lambda: opt.load_state_dict(sd))
    after = opt.state_dict()   # unchanged, or what was saved: the same either way
    assert before["param_groups"] == after["param_groups"]
    for k, v in before["state"].items():
        for name_, arr in v.items():
            assert np.array_equal(arr, after["state"][k][name_])


# -- loss modules ------------------------------------------------------------------------------

@fuzz(200, n=st.integers(1, 4), c=st.integers(1, 4), smoothing=st.sampled_from([0.0, 0.2]),
      reduction=st.sampled_from(["mean", "sum"]), soft=st.booleans(), seed=seeds,
      fault=st.sampled_from(["none", "none", "labels", "nan targets", "mixed dtype",
                             "outputs not an array"]))
def test_loss_modules_match_torch_or_raise(n: int, c: int, smoothing: float, reduction: str,
                                           soft: bool, seed: int, fault: str) -> None:
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, c)).astype(np.float32)
    labels = rng.integers(0, c, n)
    t = rng.dirichlet(np.ones(c), n).astype(np.float32) if soft else labels
    ce = nn.SoftmaxCrossEntropy(smoothing, reduction=reduction)
    mse = nn.MSELoss(reduction=reduction)
    target = rng.standard_normal((n, c)).astype(np.float32)
    if fault == "none":
        xt = t64(x, grad=True)
        lt = torch.nn.functional.cross_entropy(
            xt, t64(t) if soft else torch.tensor(labels), label_smoothing=smoothing,
            reduction=reduction)
        lt.backward()
        assert isinstance(ce(x, t), float) and math.isclose(ce(x, t), lt.item(), rel_tol=1e-5,
                                                            abs_tol=1e-5)
        g = ce.backward()
        assert g.dtype == np.float32
        close(g, xt.grad, 1e-5)
        mt = torch.nn.functional.mse_loss(t64(x), t64(target), reduction=reduction)
        assert math.isclose(mse(x, target), mt.item(), rel_tol=1e-5, abs_tol=1e-5)
        assert mse.backward().shape == x.shape
        return
    if fault == "labels":
        raises(ValueError, lambda: ce(x, np.append(labels, c)[1:] if n else labels))
    elif fault == "nan targets":
        bad = target.copy()
        bad[0, 0] = np.nan
        raises(ValueError, lambda: mse(x, bad))
    elif fault == "mixed dtype":
        raises(TypeError, lambda: mse(x, target.astype(np.float64)))
    else:
        raises(TypeError, lambda: ce("logits", labels))


# -- the count --------------------------------------------------------------------------------

def test_generated_case_count() -> None:
    """Every fuzz test that ran in this session ran its whole budget; prints the total."""
    ran = {name: CASES[name] for name in BUDGET if CASES[name]}
    short = {name: (n, BUDGET[name]) for name, n in ran.items() if n < BUDGET[name]}
    assert not short, f"tests that ran fewer cases than their budget: {short}"
    assert sum(BUDGET.values()) >= 5_000
    print(f"test_fuzz_layers: {sum(ran.values())} generated cases run "
          f"(budget {sum(BUDGET.values())})")

