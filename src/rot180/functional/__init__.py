"""Stateless math on numpy arrays: convolution and its rot180 backward, pooling, activations,
losses, shape arithmetic and reference oracles. Imports nothing else from rot180."""

from . import reference, shapes
from .conv import conv, conv_grad_bias, conv_grad_input, conv_grad_weight, rot180
from .linear import linear, linear_grad_bias, linear_grad_input, linear_grad_weight
from .losses import (
    log_softmax,
    mse,
    mse_grad,
    softmax,
    softmax_cross_entropy,
    softmax_cross_entropy_grad,
)

__all__ = [
    "conv",
    "conv_grad_bias",
    "conv_grad_input",
    "conv_grad_weight",
    "linear",
    "linear_grad_bias",
    "linear_grad_input",
    "linear_grad_weight",
    "log_softmax",
    "mse",
    "mse_grad",
    "softmax",
    "softmax_cross_entropy",
    "softmax_cross_entropy_grad",
    "reference",
    "rot180",
    "shapes",
]
