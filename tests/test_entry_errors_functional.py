"""Bad input at the public entry points of :mod:`rot180.functional` outside convolution
(pooling; activations, softmax, linear and batch norm; the losses): the documented exception
and its message, one table row per bad input. ``ValueError`` for a wrong value or shape,
``TypeError`` for a wrong type or dtype; each message names the argument, says what was
expected and what was received, and (asserted where it matters) how to fix it. NaN or infinite
logits are not rejected: the NaN loss is what the trainer detects. Convolution's own table is
``test_conv_errors.py``; the random counterpart of this file is ``test_fuzz_functional_*.py``;
``test_entry_errors_optim_data.py`` counts the rows of all three tables.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest

import rot180.functional as F
from _entry_errors_common import LABELS, LOGITS, NAN, X, row

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
        r"global_avg_pool: nd must be an int, the number of spatial dimensions \(1, 2 or 3\), "
        r"got float 1\.5", "global nd float"),
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


@pytest.mark.parametrize(("call", "exc", "match"), POOLING + ELEMENTWISE + LOSSES)
def test_bad_input_raises_the_documented_error(call: Callable, exc: type, match: str) -> None:
    with pytest.raises(exc, match=match):
        call()


def test_diverged_logits_give_a_nan_loss_not_an_error() -> None:
    """NaN or infinite logits are not rejected: the NaN loss is what the trainer detects."""
    logits = np.array([[np.inf, 0.0, 1.0], [np.nan, 0.0, 0.0]])
    assert np.isnan(F.softmax_cross_entropy(logits, np.array([0, 1])))
    assert np.isnan(F.softmax_cross_entropy_grad(logits, np.array([0, 1]))).any()
    assert np.isnan(F.mse(np.array([np.nan, 1.0]), np.zeros(2)))
    assert np.isinf(F.mse(np.array([1e200, 1.0]), np.zeros(2)))
