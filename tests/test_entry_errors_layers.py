"""Bad input at the layers (:mod:`rot180.nn`: constructors, ``forward`` and ``backward``) and
``rot180.nn.init``: the documented exception and its message, one table row per bad input.
``ValueError`` for a wrong value or shape, ``TypeError`` for a wrong type or dtype,
``RuntimeError`` for ``backward`` before ``forward``; each message names the argument, says what
was expected and what was received, and (asserted where it matters) how to fix it. A rejected
``backward`` leaves the gradients and the forward cache intact. The random counterpart of this
file is ``test_fuzz_layers_*.py``; ``test_entry_errors_optim_data.py`` counts the rows of all
three tables.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest

from _entry_errors_common import NAN, row
from rot180 import nn
from rot180.nn import init


def after_forward(layer: nn.Module, x: np.ndarray) -> nn.Module:
    layer.forward(x)
    return layer


# -- layers: constructors ---------------------------------------------------------------------

CONSTRUCTORS = [
    row(lambda: nn.Linear(4, 2, bias="no"), TypeError,
        r"Linear: bias must be True or False, got str 'no'", "Linear bias str"),
    row(lambda: nn.Linear(4, 2, dtype="foo"), TypeError,
        r"Linear: dtype must be float32 or float64, got 'foo'\. Pass dtype=np\.float32",
        "Linear dtype unknown"),
    row(lambda: nn.Conv2d(2, 2, 3, groups=1.5), TypeError,
        r"Conv2d: groups must be an int, got float 1\.5", "Conv groups float"),
    row(lambda: nn.Conv2d(2, 2, 3, padding=1.5), TypeError,
        r"Conv2d: padding must be an int, a tuple of 2 ints or one of \('valid', 'same'\), got "
        r"float 1\.5", "Conv padding float"),
    row(lambda: nn.Conv2d(2, 2, 3, padding="bogus"), ValueError,
        r"Invalid padding string 'bogus', should be one of \('valid', 'same'\)",
        "Conv padding string"),
    row(lambda: nn.Conv2d(2, 2, 3, padding_mode="reflect"), ValueError,
        r"padding_mode='reflect' is not supported; only 'zeros' is supported\. For reflect/"
        r"replicate/circular padding, np\.pad the input first", "Conv padding_mode"),
    row(lambda: nn.Conv1d(2, 2, 3, bias=None), TypeError,
        r"Conv1d: bias must be True or False, got NoneType", "Conv bias None"),
    row(lambda: nn.MaxPool2d(2, padding=2), ValueError,
        r"MaxPool2d: pad should be at most half of kernel size", "MaxPool padding"),
    row(lambda: nn.AdaptiveAvgPool2d(0), ValueError,
        r"AdaptiveAvgPool2d: output_size must be a positive int or 2 entries", "Adaptive 0"),
    row(lambda: nn.LeakyReLU(NAN), ValueError,
        r"LeakyReLU: negative_slope must be finite, got nan", "LeakyReLU nan"),
    row(lambda: nn.Dropout(NAN), ValueError,
        r"Dropout: p must be finite and >= 0 and <= 1, got nan", "Dropout nan"),
    row(lambda: nn.BatchNorm2d(3, eps="1e-5"), TypeError,
        r"BatchNorm2d: eps must be a real number, got str", "BN eps str"),
    row(lambda: nn.BatchNorm2d(3, eps=NAN), ValueError,
        r"BatchNorm2d: eps must be finite and > 0\.0, got nan", "BN eps nan"),
    row(lambda: nn.BatchNorm1d(3, momentum="0.1"), TypeError,
        r"BatchNorm1d: momentum must be a real number, got str", "BN momentum str"),
    row(lambda: nn.BatchNorm1d(2.5), TypeError,
        r"BatchNorm1d: num_features must be an int, got float 2\.5", "BN num_features float"),
    row(lambda: nn.BatchNorm3d(3, track_running_stats="yes"), TypeError,
        r"BatchNorm3d: track_running_stats must be True or False", "BN flag"),
    row(lambda: nn.SoftmaxCrossEntropy(label_smoothing=NAN), ValueError,
        r"label_smoothing must be finite and >= 0 and <= 1, got nan", "CE smoothing nan"),
    row(lambda: init.calculate_gain("leaky_relu", NAN), ValueError,
        r"calculate_gain: negative_slope must be finite, got nan", "init gain nan"),
    row(lambda: init.constant_(np.zeros(3), "1"), TypeError,
        r"constant_: value must be a real number, got str '1'", "init constant str"),
    row(lambda: nn.MSELoss(reduction="none"), ValueError,
        r"MSELoss: reduction must be 'mean' or 'sum' \(forward returns one float\), got "
        r"'none'\. For per-sample losses use rot180\.functional\.losses", "MSE reduction"),
]

# -- layers: forward --------------------------------------------------------------------------

FORWARD = [
    row(lambda: nn.Linear(4, 2).forward(np.ones((3, 4))), TypeError,
        r"Linear: input dtype float64 does not match the layer's float32\. Cast the input with "
        r"x\.astype\(np\.float32\), or the model with model\.astype\(np\.float64\)",
        "Linear mixed dtype"),
    row(lambda: nn.Linear(4, 2).forward(np.ones((3, 5), np.float32)), ValueError,
        r"linear: expected x of shape \(\*, 4\)", "Linear in_features"),
    row(lambda: nn.Linear(4, 2).forward([[1.0] * 4]), TypeError,
        r"Linear: x must be a numpy array, got list\. Convert it with "
        r"np\.asarray\(x, dtype=np\.float32\)", "Linear list"),
    row(lambda: nn.Conv2d(3, 4, 3).forward(np.ones((4, 5, 5), np.float32)), ValueError,
        r"Conv2d: expected input of shape \(N, 3, \*2 spatial\) or unbatched \(3, \*2 "
        r"spatial\), got shape \(4, 5, 5\); the channel axis \(-3\) holds 4, expected 3 "
        r"channels", "Conv2d 3-D input, wrong channels"),
    # a 3-D input is read as unbatched (C, H, W): the message says which axis it took
    row(lambda: nn.Conv2d(3, 4, 3).forward(np.ones((1, 3, 5), np.float32)), ValueError,
        r"Conv2d: expected input of shape \(N, 3, \*2 spatial\) .*, got shape \(1, 3, 5\); "
        r"the channel axis \(-3\) holds 1, expected 3 channels", "Conv2d batched 1-D input"),
    row(lambda: nn.Conv2d(3, 4, 3).forward(np.ones((1, 3, 5, 5, 5), np.float32)), ValueError,
        r"Conv2d: expected input of shape \(N, 3, \*2 spatial\) .*, got 5-D shape",
        "Conv2d 5-D input"),
    row(lambda: nn.Conv2d(3, 4, 3).forward(np.ones((1, 3, 5, 5), np.int32)), TypeError,
        r"Conv2d: expected an input of dtype float32 or float64, got int32\. Cast it with "
        r"x\.astype\(np\.float32\)", "Conv2d int input"),
    row(lambda: nn.ConvTranspose1d(2, 2, 3).forward(np.ones((1, 2, 4), np.float16)),
        TypeError, r"ConvTranspose1d: expected an input of dtype float32 or float64, got "
        r"float16", "ConvTranspose float16"),
    row(lambda: nn.MaxPool2d(2).forward(np.ones((2, 3, 4), bool)), TypeError,
        r"MaxPool2d: expected an input of dtype float32 or float64, got bool", "MaxPool bool"),
    row(lambda: nn.AvgPool1d(2).forward(np.ones((2, 3, 4, 4))), ValueError,
        r"AvgPool1d: expected input of shape \(N, C, \*1 spatial\) or unbatched "
        r"\(C, \*1 spatial\), got 4-D shape", "AvgPool1d 4-D"),
    row(lambda: nn.AdaptiveAvgPool2d(1).forward(np.ones(4)), ValueError,
        r"AdaptiveAvgPool2d: expected input of shape .*, got 1-D shape \(4,\)", "Adaptive 1-D"),
    row(lambda: nn.ReLU().forward([1.0, -1.0]), TypeError,
        r"ReLU: x must be a numpy array, got list", "ReLU list"),
    row(lambda: nn.Sigmoid().forward(np.ones(3, complex)), TypeError,
        r"Sigmoid: expected an input of dtype float32 or float64, got complex128", "complex"),
    row(lambda: nn.Dropout(0.5, rng=0).forward(np.ones(3, object)), TypeError,
        r"Dropout: expected an input of dtype float32 or float64, got object", "Dropout obj"),
    row(lambda: nn.BatchNorm2d(3).forward(np.ones((2, 4, 2, 2), np.float32)), ValueError,
        r"BatchNorm2d: expected 4D input \(N, C, H, W\), got shape \(2, 4, 2, 2\); the channel "
        r"axis \(1\) holds 4, expected 3 channels", "BN channels"),
    row(lambda: nn.BatchNorm1d(3).forward(np.ones((2, 3))), TypeError,
        r"BatchNorm1d: input dtype float64 does not match the layer's float32\. .*"
        r"model\.astype", "BN mixed dtype"),
    row(lambda: nn.Flatten().forward("abc"), TypeError,
        r"Flatten: x must be a numpy array, got str", "Flatten str"),
    row(lambda: nn.SoftmaxCrossEntropy()(np.zeros((2, 3), np.float32), np.array([0, 5])),
        ValueError, r"must lie in 0\.\.2", "CE module label"),
    row(lambda: nn.MSELoss()(np.zeros(3), np.array([0.0, NAN, 1.0])), ValueError,
        r"mse: targets must be finite", "MSE module NaN target"),
]

# -- layers: backward -------------------------------------------------------------------------

X32 = np.ones((2, 3, 4, 4), np.float32)

BACKWARD = [
    row(lambda: nn.Linear(4, 2).backward(np.ones((1, 2), np.float32)), RuntimeError,
        r"Linear\.backward called before forward: run forward\(x\) first", "Linear before"),
    row(lambda: nn.Flatten().backward(np.ones((2, 48))), RuntimeError,
        r"Flatten\.backward called before forward", "Flatten before"),
    row(lambda: nn.SoftmaxCrossEntropy().backward(), RuntimeError,
        r"SoftmaxCrossEntropy\.backward called before forward", "CE before"),
    row(lambda: after_forward(nn.Linear(4, 2), np.ones((3, 4), np.float32)).backward(
        np.ones((3, 2))), TypeError,
        r"Linear\.backward: dy has dtype float64 but the forward output had float32\. Cast it "
        r"with dy\.astype\(np\.float32\)", "Linear dy dtype"),
    row(lambda: after_forward(nn.Flatten(), X32).backward(np.ones((4, 24), np.float32)),
        ValueError,
        r"Flatten\.backward: dy has shape \(4, 24\) but the forward output had shape \(2, 48\)\. "
        r"dy must be the gradient of this layer's last forward output", "Flatten dy layout"),
    row(lambda: after_forward(nn.AdaptiveAvgPool2d(2), X32).backward(
        np.ones((2, 3, 3, 3), np.float32)), ValueError,
        r"AdaptiveAvgPool2d\.backward: dy has shape \(2, 3, 3, 3\) but the forward output had "
        r"shape \(2, 3, 2, 2\)", "Adaptive dy shape"),
    row(lambda: after_forward(nn.ConvTranspose2d(3, 2, 3, stride=2), X32).backward(
        np.ones((2, 2, 10, 10), np.float32)), ValueError,
        r"ConvTranspose2d\.backward: dy has shape \(2, 2, 10, 10\) but the forward output had "
        r"shape \(2, 2, 9, 9\)", "ConvTranspose dy larger"),
    row(lambda: after_forward(nn.Conv2d(3, 2, 3), X32).backward(
        np.ones((2, 2, 3, 3), np.float32)), ValueError,
        r"Conv2d\.backward: dy has shape \(2, 2, 3, 3\) but the forward output had shape "
        r"\(2, 2, 2, 2\)",
        "Conv dy shape"),
    row(lambda: after_forward(nn.Dropout(0.5, rng=0), X32).backward(np.ones(X32.shape, int)),
        TypeError, r"Dropout\.backward: dy has dtype int64 but the forward output had float32",
        "Dropout dy int"),
    row(lambda: after_forward(nn.Dropout(0.5, rng=0).eval(), X32).backward(np.ones(3)),
        TypeError, r"Dropout\.backward: dy has dtype float64", "Dropout eval dy"),
    row(lambda: after_forward(nn.ReLU(), X32).backward(X32.tolist()), TypeError,
        r"ReLU\.backward: dy must be a numpy array, got list", "ReLU dy list"),
    row(lambda: after_forward(nn.MaxPool2d(2), X32).backward(np.ones((2, 3, 2, 3),
                                                                     np.float32)),
        ValueError, r"MaxPool2d\.backward: dy has shape \(2, 3, 2, 3\) but the forward output "
        r"had shape \(2, 3, 2, 2\)", "MaxPool dy shape"),
    row(lambda: after_forward(nn.BatchNorm2d(3), X32).backward(X32[:1]), ValueError,
        r"BatchNorm2d\.backward: dy has shape \(1, 3, 4, 4\) but the forward output had shape "
        r"\(2, 3, 4, 4\)", "BN dy batch"),
]


@pytest.mark.parametrize(("call", "exc", "match"), CONSTRUCTORS + FORWARD + BACKWARD)
def test_bad_input_raises_the_documented_error(call: Callable, exc: type, match: str) -> None:
    with pytest.raises(exc, match=match):
        call()


def test_a_rejected_backward_leaves_gradients_and_cache_intact() -> None:
    layer = nn.Linear(4, 2, rng=0)
    x = np.ones((3, 4), np.float32)
    layer.forward(x)
    layer.backward(np.ones((3, 2), np.float32))
    before = layer.weight.grad.copy(), layer.bias.grad.copy()
    with pytest.raises(ValueError, match="must share their leading"):
        layer.backward(np.ones((2, 2), np.float32))
    assert np.array_equal(layer.weight.grad, before[0])
    assert np.array_equal(layer.bias.grad, before[1])
    assert layer.backward(np.ones((3, 2), np.float32)).shape == x.shape
