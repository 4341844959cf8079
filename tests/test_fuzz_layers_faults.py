"""Fuzz tests of the layers (:mod:`rot180.nn`) and the loss modules called wrongly, one fault
each: a bad constructor argument, an input of the wrong ndim, channels, dtype or type, a ``dy``
that is not the gradient of the last output. Each must raise the documented exception:
``ValueError`` for values and shapes, ``TypeError`` for types and dtypes, ``RuntimeError`` for
``backward`` before ``forward``; never another exception type, never a wrong shape, and nothing
half-done: a rejected ``backward`` leaves the accumulated gradients and the forward cache
unchanged. The 1,800 cases generated here count toward the suite's 5,000 (see
``test_fuzz_layers_oracles.py``).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np
from hypothesis import strategies as st

from _fuzz_layers_common import BAD_DTYPES, NON_ARRAYS, fuzz, grads, seeds
from _fuzzing import raises
from rot180 import nn

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
