"""Stateless math on numpy arrays: convolution and its rot180 backward, pooling, activations,
losses, shape arithmetic and reference oracles. Imports nothing else from rot180."""

from . import reference, shapes
from .activations import (
    leaky_relu,
    leaky_relu_grad,
    relu,
    relu_grad,
    sigmoid,
    sigmoid_grad,
    tanh,
    tanh_grad,
)
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
from .normalization import batch_norm, batch_norm_grad, batch_stats
from .pool import (
    adaptive_avg_pool,
    adaptive_avg_pool_grad,
    avg_pool,
    avg_pool_grad,
    global_avg_pool,
    global_avg_pool_grad,
    max_pool,
    max_pool_grad,
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
    "adaptive_avg_pool",
    "adaptive_avg_pool_grad",
    "avg_pool",
    "avg_pool_grad",
    "batch_norm",
    "batch_norm_grad",
    "batch_stats",
    "global_avg_pool",
    "global_avg_pool_grad",
    "leaky_relu",
    "leaky_relu_grad",
    "max_pool",
    "max_pool_grad",
    "relu",
    "relu_grad",
    "sigmoid",
    "sigmoid_grad",
    "tanh",
    "tanh_grad",
    "reference",
    "rot180",
    "shapes",
]
