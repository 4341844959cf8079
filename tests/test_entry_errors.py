"""Bad input at every public entry point outside convolution: the documented exception and its
message, one table row per bad input.

``ValueError`` for a wrong value or shape, ``TypeError`` for a wrong type or dtype,
``RuntimeError`` for ``backward`` before ``forward``; ``rot180.data.DataError`` (a
``ValueError``) for a bad data file or path. Each message names the argument, says what was
expected and what was received, and (asserted where it matters) how to fix it. Convolution's
own table is ``test_conv_errors.py``; the random counterpart of this file is
``test_fuzz_functional.py`` and ``test_fuzz_layers.py``.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

import rot180.functional as F
from rot180 import nn
from rot180.data import (
    Augmentation,
    DataError,
    DataLoader,
    batches,
    channel_stats,
    load_dataset,
    normalize,
    random_crop,
    random_hflip,
    random_shift,
    read_cifar_binary,
    read_idx,
    split_indices,
)
from rot180.nn import init
from rot180.optim import SGD, Adam, StepLR

NAN = math.nan
X = np.zeros((2, 3, 6, 6))
LOGITS = np.zeros((4, 3))
LABELS = np.array([0, 1, 2, 0])
IMAGES = np.zeros((4, 1, 4, 4), np.uint8)
RNG = np.random.default_rng(0)


def row(call: Callable[[], object], exc: type[Exception], match: str, id: str):
    return pytest.param(call, exc, match, id=id)


def after_forward(layer: nn.Module, x: np.ndarray) -> nn.Module:
    layer.forward(x)
    return layer


# -- functional: pooling ----------------------------------------------------------------------

POOLING = [
    row(lambda: F.max_pool(X, 0), ValueError,
        r"kernel_size must be >= 1 in every dimension, got 0\. Pass a positive int", "k=0"),
    row(lambda: F.max_pool(X, 2.5), TypeError,
        r"kernel_size must be an int or a tuple of 2 ints, got float 2\.5", "k float"),
    row(lambda: F.avg_pool(X, 2, stride=0), ValueError, r"stride must be >= 1", "stride 0"),
    row(lambda: F.max_pool(X, 2, padding=2), ValueError,
        r"max_pool: padding must be between 0 and half the kernel size, got padding=\(2, 2\)",
        "padding over half"),
    row(lambda: F.max_pool(X, 2, padding="same"), TypeError,
        r"padding must be an int or a tuple of 2 ints, got str 'same'", "padding string"),
    row(lambda: F.avg_pool(X, 7), ValueError,
        r"avg_pool: the window is larger than the padded input along spatial axis 0: kernel 7 "
        r"> input 6", "kernel > input"),
    row(lambda: F.max_pool(X.astype(np.int64), 2), TypeError,
        r"x must have dtype float32 or float64, got int64\. Convert it with "
        r"x\.astype\(np\.float32\)", "int input"),
    row(lambda: F.max_pool(None, 2), TypeError, r"x must be a numpy array, got NoneType",
        "None input"),
    row(lambda: F.max_pool(X[0, 0], (2, 2)), ValueError,
        r"max_pool: expected an input of at least 3 dimensions \(C, \*spatial\)", "2-D input"),
    row(lambda: F.max_pool(X[..., :0], 2), ValueError,
        r"max_pool: input must have no zero-size axis, got shape \(2, 3, 6, 0\)", "empty"),
    row(lambda: F.max_pool_grad(np.ones((2, 3, 3, 3)), np.zeros((2, 3, 3, 3), int),
                                (2, 3, 6.0, 6)), TypeError,
        r"max_pool_grad: input_shape must be a tuple of ints, got float 6\.0", "shape float"),
    row(lambda: F.max_pool_grad(np.ones((2, 3, 3, 3)), np.zeros((2, 3, 3, 3), int),
                                (2, 3, -6, 6)), ValueError,
        r"max_pool_grad: input_shape must have no zero-size or negative axis, got "
        r"\(2, 3, -6, 6\)", "shape negative"),
    row(lambda: F.avg_pool_grad(np.ones((2, 3, 3, 3)), np.array([2, 3, 6, 6]), 2), TypeError,
        r"avg_pool_grad: input_shape must be a tuple of ints, got ndarray\. Pass x\.shape",
        "shape array"),
    row(lambda: F.avg_pool_grad(np.ones((2, 3, 3, 4)), X.shape, 2), ValueError,
        r"avg_pool_grad: dy has shape \(2, 3, 3, 4\) but pooling input_shape \(2, 3, 6, 6\) "
        r"gives \(2, 3, 3, 3\)", "dy shape"),
    row(lambda: F.max_pool_grad(np.ones((2, 3, 3, 3)), np.ones((2, 3, 3, 3)), X.shape, 2),
        TypeError, r"argmax must be an integer numpy array", "argmax float"),
    row(lambda: F.adaptive_avg_pool(X, (2, 0)), ValueError,
        r"output_size must be >= 1 in every dimension, got \(2, 0\)", "adaptive size 0"),
    row(lambda: F.adaptive_avg_pool(X, 1.5), TypeError,
        r"output_size entries must be ints, got float 1\.5", "adaptive size float"),
    row(lambda: F.adaptive_avg_pool_grad(np.ones((2, 3, 0, 2)), X.shape), ValueError,
        r"adaptive_avg_pool_grad: dy \(2, 3, 0, 2\) must have as many axes as input_shape .* "
        r"and no zero-size axis", "adaptive dy empty"),
    row(lambda: F.global_avg_pool(X, nd=1.5), TypeError,
        r"global_avg_pool: nd must be an int, got float 1\.5", "global nd float"),
    row(lambda: F.global_avg_pool(X, nd=4), ValueError,
        r"global_avg_pool: expected x \(N, C, \*spatial\) with at least one spatial axis",
        "global nd too big"),
    row(lambda: F.global_avg_pool_grad(np.ones((2, 3, 1, 1)), (2, 3, 0, 6)), ValueError,
        r"global_avg_pool_grad: input_shape must have no zero-size or negative axis",
        "global shape 0"),
]

# -- functional: activations, softmax, linear, batch norm ---------------------------------------

ELEMENTWISE = [
    row(lambda: F.relu(np.ones(3, np.float16)), TypeError,
        r"x must have dtype float32 or float64, got float16", "relu float16"),
    row(lambda: F.sigmoid([[1.0], [1.0, 2.0]]), ValueError,
        r"x must be a rectangular array, got a ragged list", "ragged list"),
    row(lambda: F.tanh("1.0"), TypeError, r"x must be a numpy array, got str", "tanh str"),
    row(lambda: F.leaky_relu(np.ones(3), NAN), ValueError,
        r"leaky_relu: negative_slope must be finite, got nan", "slope nan"),
    row(lambda: F.leaky_relu_grad(np.ones(3), np.ones(3), "0.1"), TypeError,
        r"leaky_relu_grad: negative_slope must be a real number, got str", "slope str"),
    row(lambda: F.relu_grad(np.ones(3), np.ones(4)), ValueError,
        r"relu_grad: dy and x must have the same shape, got \(3,\) and \(4,\)", "grad shape"),
    row(lambda: F.tanh_grad(np.ones(3, np.float32), np.ones(3)), TypeError,
        r"All arrays must share one dtype, got dy: float32, y: float64\. Cast them",
        "grad mixed dtype"),
    row(lambda: F.softmax(LOGITS, axis=2), ValueError,
        r"softmax: axis 2 is out of range for a 2-D array; pass an axis in \[-2, 1\]",
        "softmax axis"),
    row(lambda: F.log_softmax(LOGITS, axis=1.0), TypeError,
        r"log_softmax: axis must be an int, got float 1\.0", "log_softmax axis float"),
    row(lambda: F.softmax(np.zeros((2, 0))), ValueError,
        r"softmax: expected x with at least one entry along axis -1, got shape \(2, 0\)",
        "softmax empty"),
    row(lambda: F.linear(np.ones((2, 5)), np.ones((3, 4))), ValueError,
        r"linear: expected x of shape \(\*, 4\) \(last axis = in_features\), got shape "
        r"\(2, 5\)\. Flatten image batches first", "linear in_features"),
    row(lambda: F.linear(np.ones((2, 0)), np.ones((3, 0))), ValueError,
        r"linear: weight must be 2-D \(out_features, in_features\) with no zero-size axis",
        "linear empty weight"),
    row(lambda: F.linear(np.ones(4, np.float32), np.ones((3, 4))), TypeError,
        r"All arrays must share one dtype, got x: float32, w: float64", "linear mixed"),
    row(lambda: F.linear_grad_bias(np.ones((2, 0))), ValueError,
        r"linear_grad_bias: expected dy of shape \(\*, out_features\), got \(2, 0\)",
        "linear_grad_bias empty"),
    row(lambda: F.linear_grad_weight(np.ones((2, 4)), np.ones((3, 2))), ValueError,
        r"linear_grad_weight: x \(2, 4\) and dy \(3, 2\) must share their leading",
        "linear_grad_weight batch"),
    row(lambda: F.batch_norm(X, np.zeros(3), np.ones(3), None, None, eps=0.0), ValueError,
        r"batch_norm: eps must be finite and > 0\.0, got 0\.0", "bn eps 0"),
    row(lambda: F.batch_norm(X, np.zeros(3), np.ones(3), None, None, eps="1e-5"), TypeError,
        r"batch_norm: eps must be a real number, got str", "bn eps str"),
    row(lambda: F.batch_norm(X, np.zeros(3), np.array([1.0, -2.0, 1.0]), None, None),
        ValueError, r"batch_norm: var \+ eps must be positive, got min\(var\) = -2\.0",
        "bn negative var"),
    row(lambda: F.batch_stats(np.ones((2, 0))), ValueError,
        r"batch_stats: expected x with no zero-size axis, got shape \(2, 0\)", "bn empty"),
    row(lambda: F.batch_norm_grad(X, X, np.ones(3), None, batch_statistics=1), TypeError,
        r"batch_norm_grad: batch_statistics must be True or False, got int 1", "bn flag"),
]

# -- functional: losses -----------------------------------------------------------------------

LOSSES = [
    row(lambda: F.softmax_cross_entropy(LOGITS, np.array([0, 1, 3, 0])), ValueError,
        r"class-index targets must lie in 0\.\.2 \(C = 3 logits per row\), got \[3\]\. "
        r"Check the labels", "label out of range"),
    row(lambda: F.softmax_cross_entropy(LOGITS, np.array([0.0, 1.0, NAN, 0.0])), ValueError,
        r"probability targets must have the logits' shape \(4, 3\), got \(4,\)\. Pass class "
        r"indices as an integer array", "float labels"),
    row(lambda: F.softmax_cross_entropy(LOGITS, np.full((4, 3), NAN)), ValueError,
        r"softmax_cross_entropy: probability targets must be finite, got 12 NaN or infinite "
        r"value\(s\) in shape \(4, 3\)", "NaN soft targets"),
    row(lambda: F.softmax_cross_entropy_grad(LOGITS, np.full((4, 3), np.inf)), ValueError,
        r"softmax_cross_entropy_grad: probability targets must be finite", "inf soft targets"),
    row(lambda: F.softmax_cross_entropy(LOGITS, LABELS.astype(bool)), TypeError,
        r"targets must be integer class indices \(N,\) or float probabilities \(N, C\), got "
        r"dtype bool\. Convert labels with targets\.astype\(np\.int64\)", "bool labels"),
    row(lambda: F.softmax_cross_entropy(LOGITS, [[0], [1, 2]]), ValueError,
        r"targets must be a rectangular array, got a ragged list", "ragged labels"),
    row(lambda: F.softmax_cross_entropy(LOGITS, LABELS, label_smoothing=NAN), ValueError,
        r"label_smoothing must be finite and >= 0 and <= 1, got nan", "smoothing nan"),
    row(lambda: F.softmax_cross_entropy(LOGITS, LABELS, label_smoothing="0.1"), TypeError,
        r"label_smoothing must be a real number, got str", "smoothing str"),
    row(lambda: F.softmax_cross_entropy(LOGITS, LABELS, reduction="avg"), ValueError,
        r"reduction must be one of \('mean', 'sum', 'none'\), got 'avg'", "reduction unknown"),
    row(lambda: F.mse(LOGITS, LOGITS, reduction=None), TypeError,
        r"mse: reduction must be a str, one of \('mean', 'sum', 'none'\), got NoneType",
        "reduction None"),
    row(lambda: F.softmax_cross_entropy(np.zeros((0, 3)), np.zeros(0, int)), ValueError,
        r"the mean over an empty batch is undefined, got shape \(0, 3\)\. Pass at least one "
        r"sample, or reduction='sum'", "empty batch"),
    row(lambda: F.mse(LOGITS, np.full((4, 3), NAN)), ValueError,
        r"mse: targets must be finite, got 12 NaN or infinite value\(s\)", "mse NaN targets"),
    row(lambda: F.mse_grad(LOGITS, LOGITS[:, :1]), ValueError,
        r"mse_grad: outputs \(4, 3\) and targets \(4, 1\) must have the same shape \(no "
        r"broadcasting", "mse shape"),
]

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

# -- optimizers and schedulers ----------------------------------------------------------------


def _sgd() -> SGD:
    p = nn.Parameter(np.zeros(3))
    p.grad[...] = 1.0
    opt = SGD([p], lr=0.1, momentum=0.9)
    opt.step()
    return opt


def _with_grad(grad: object) -> SGD:
    p = nn.Parameter(np.zeros(3))
    p.grad = grad  # type: ignore[assignment]
    return SGD([p], lr=0.1)


def _groups(**change: object) -> list[dict]:
    groups = _sgd().state_dict()["param_groups"]
    groups[0].update(change)
    return groups


OPTIMIZERS = [
    row(lambda: SGD([nn.Parameter(np.zeros(2))], lr=NAN), ValueError,
        r"lr must be finite and >= 0, got nan", "SGD lr nan"),
    row(lambda: SGD([nn.Parameter(np.zeros(2))], lr="0.1"), TypeError,
        r"lr must be a real number, got str '0\.1'", "SGD lr str"),
    row(lambda: SGD([nn.Parameter(np.zeros(2))], lr=-1.0), ValueError,
        r"Invalid learning rate: -1\.0 \(expected lr >= 0\)", "SGD lr negative"),
    row(lambda: Adam([nn.Parameter(np.zeros(2))], betas=(NAN, 0.9)), ValueError,
        r"Adam: betas\[0\] must be finite and >= 0 and < 1, got nan", "Adam betas nan"),
    row(lambda: SGD([np.zeros(3)], lr=0.1), TypeError,
        r"optimizer can only optimize Parameters, but one of the params is ndarray", "arrays"),
    row(lambda: _with_grad(np.zeros(3, np.float32)).step(), TypeError,
        r"has dtype float32; expected float64\. rot180 never upcasts silently", "step dtype"),
    row(lambda: _with_grad(np.zeros(4)).step(), ValueError,
        r"gradient of Parameter\(shape=\(3,\), dtype=float64\) must be an array of shape "
        r"\(3,\), got \(4,\)", "step shape"),
    row(lambda: _sgd().load_state_dict({"state": {}, "param_groups": [5]}), ValueError,
        r"optimizer state_dict\['param_groups'\] must be a list of dicts, each with a 'params' "
        r"list of parameter indices", "load group not a dict"),
    row(lambda: _sgd().load_state_dict({"state": [1], "param_groups": _groups()}), ValueError,
        r"optimizer state_dict\['state'\] must map parameter indices to dicts", "load state"),
    row(lambda: _sgd().load_state_dict({"state": {"a": {}}, "param_groups": _groups()}),
        ValueError, r"loaded state refers to parameter index 'a'; expected a non-negative int",
        "load index word"),
    row(lambda: _sgd().load_state_dict({"state": {0: {"momentum_buffer": np.full(3, NAN)}},
                                        "param_groups": _groups()}), ValueError,
        r"state 'momentum_buffer' of parameter 0 holds NaN or infinite values\. The saved run "
        r"had diverged", "load NaN buffer"),
    row(lambda: _sgd().load_state_dict({"state": {0: {"momentum_buffer": np.array(["a"] * 3)}},
                                        "param_groups": _groups()}), TypeError,
        r"state 'momentum_buffer' of parameter 0: expected a numeric array, got dtype <U1",
        "load string buffer"),
    row(lambda: _sgd().load_state_dict({"state": {}, "param_groups": _groups(lr=NAN)}),
        ValueError, r"lr must be finite and >= 0, got nan", "load lr nan"),
    row(lambda: StepLR(_sgd(), 2).load_state_dict({
        "step_size": 2, "gamma": 0.1, "last_epoch": "3", "_step_count": 1, "base_lrs": [0.1],
        "_last_lr": [0.1]}), TypeError, r"StepLR: last_epoch must be an int, got str '3'",
        "scheduler last_epoch"),
    row(lambda: StepLR(_sgd(), 2).load_state_dict({
        "step_size": 2, "gamma": 0.1, "last_epoch": 0, "_step_count": 1, "base_lrs": 0.1,
        "_last_lr": [0.1]}), ValueError, r"StepLR state_dict\['base_lrs'\] must be a list, got "
        r"float", "scheduler base_lrs"),
]

# -- data -------------------------------------------------------------------------------------

DATA = [
    row(lambda: normalize(IMAGES, std=NAN), ValueError, r"std must be finite, got nan",
        "normalize std nan"),
    row(lambda: normalize(IMAGES, std=0.0), ValueError, r"std must be positive, got 0\.0",
        "normalize std 0"),
    row(lambda: normalize(IMAGES, mean="a"), TypeError,
        r"mean must be a number or a sequence of numbers, got str 'a'", "normalize mean str"),
    row(lambda: normalize(IMAGES, max_value=0), ValueError,
        r"max_value must be positive \(255 for 8-bit images\), got 0", "normalize max 0"),
    row(lambda: normalize(IMAGES.astype(complex)), TypeError,
        r"images must have an integer or float dtype \(uint8 as stored\), got complex128",
        "normalize complex"),
    row(lambda: normalize(IMAGES, dtype="foo"), TypeError,
        r"dtype must be float32 or float64, got 'foo'\. Pass dtype=np\.float32", "normalize dtype"),
    row(lambda: channel_stats(IMAGES[:0]), ValueError,
        r"channel_stats needs at least one pixel per channel", "channel_stats empty"),
    row(lambda: DataLoader(IMAGES, np.array([0.5, 1.0, 2.0, 3.0]), batch_size=2), TypeError,
        r"labels must be integer class indices, got dtype float64", "loader float labels"),
    row(lambda: DataLoader(IMAGES[:0], LABELS[:0], batch_size=2), ValueError,
        r"DataLoader got no images \(N = 0\)", "loader empty"),
    row(lambda: DataLoader(IMAGES, LABELS, batch_size=2, shuffle="yes"), TypeError,
        r"shuffle must be True or False, got str 'yes'", "loader shuffle str"),
    row(lambda: DataLoader(IMAGES, LABELS, batch_size=2, std=NAN), ValueError,
        r"std must be finite, got nan", "loader std nan"),
    row(lambda: DataLoader(IMAGES, LABELS, batch_size=2, rng=-1), ValueError,
        r"rng seed must be >= 0, got -1", "loader seed"),
    row(lambda: next(batches(IMAGES, LABELS, 2, drop_last=1)), TypeError,
        r"drop_last must be True or False, got int 1", "batches drop_last"),
    row(lambda: random_crop(IMAGES, RNG, size=2.5), TypeError,
        r"size must be an int or a pair \(h, w\) of ints, got 2\.5", "crop size float"),
    row(lambda: random_crop(IMAGES, RNG, size=(2, 2, 2)), TypeError,
        r"size must be an int or a pair \(h, w\) of ints", "crop size triple"),
    row(lambda: random_crop(IMAGES, RNG, size=2, padding=1.5), TypeError,
        r"padding must be an int, got float 1\.5", "crop padding float"),
    row(lambda: random_crop(IMAGES, RNG, size=9), ValueError,
        r"crop size \(9, 9\) must be positive and fit the padded image \(4, 4\)", "crop big"),
    row(lambda: random_shift(IMAGES, RNG, max_shift="2"), TypeError,
        r"max_shift must be an int, got str '2'", "shift str"),
    row(lambda: random_hflip(IMAGES, RNG, p=NAN), ValueError,
        r"p must be finite and >= 0 and <= 1, got nan", "hflip nan"),
    row(lambda: Augmentation(max_shift=-1), ValueError, r"max_shift must be >= 0, got -1",
        "augmentation negative"),
    row(lambda: Augmentation(hflip="yes"), TypeError, r"hflip must be True or False",
        "augmentation flag"),
    row(lambda: split_indices(LABELS, test_size=NAN), ValueError,
        r"test_size must be finite, got nan", "split nan"),
    row(lambda: split_indices(LABELS, test_size=1, seed=-1), ValueError,
        r"seed must be >= 0, got -1", "split seed"),
    row(lambda: split_indices(LABELS.astype(float), test_size=1), TypeError,
        r"labels must be a 1-D integer array, got 1-D float64", "split float labels"),
    row(lambda: load_dataset("mnist5000"), ValueError,
        r"Unknown data set 'mnist5000'; valid names are mnist5k, digits8x8", "unknown name"),
    row(lambda: load_dataset("mnist", root=5), TypeError,
        r"root must be a directory path \(str or pathlib\.Path\), got int 5", "root int"),
    row(lambda: read_idx(None), TypeError, r"path must be a str or pathlib\.Path, got NoneType",
        "read_idx None"),
]


def _bad_paths(tmp: Path) -> list:
    return [
        (lambda: read_idx(tmp), DataError, rf"{tmp}: is a directory; expected an IDX file"),
        (lambda: read_idx(tmp / "missing"), DataError, r"missing: no such file"),
        (lambda: read_cifar_binary(tmp), DataError,
         rf"{tmp}: is a directory; expected a CIFAR-10 batch file"),
        (lambda: load_dataset("mnist", root=tmp / "nowhere"), DataError,
         r"mnist: no data found under .*nowhere\. Get it with --download"),
    ]


@pytest.mark.parametrize(("call", "exc", "match"),
                         POOLING + ELEMENTWISE + LOSSES + CONSTRUCTORS + FORWARD + BACKWARD
                         + OPTIMIZERS + DATA)
def test_bad_input_raises_the_documented_error(call: Callable, exc: type, match: str) -> None:
    with pytest.raises(exc, match=match):
        call()


def test_bad_paths_raise_data_errors(tmp_path: Path) -> None:
    for call, exc, match in _bad_paths(tmp_path):
        with pytest.raises(exc, match=match):
            call()
        assert issubclass(exc, ValueError)


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


def test_diverged_logits_give_a_nan_loss_not_an_error() -> None:
    """NaN or infinite logits are not rejected: the NaN loss is what the trainer detects."""
    logits = np.array([[np.inf, 0.0, 1.0], [np.nan, 0.0, 0.0]])
    assert np.isnan(F.softmax_cross_entropy(logits, np.array([0, 1])))
    assert np.isnan(F.softmax_cross_entropy_grad(logits, np.array([0, 1]))).any()
    assert np.isnan(F.mse(np.array([np.nan, 1.0]), np.zeros(2)))
    assert np.isinf(F.mse(np.array([1e200, 1.0]), np.zeros(2)))


def test_row_count() -> None:
    """The table above holds this many bad inputs (quoted in RELIABILITY.md)."""
    rows = (POOLING + ELEMENTWISE + LOSSES + CONSTRUCTORS + FORWARD + BACKWARD + OPTIMIZERS
            + DATA)
    assert len(rows) + len(_bad_paths(Path("."))) >= 152
