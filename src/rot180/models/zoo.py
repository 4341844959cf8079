"""The networks themselves, as plain ``Sequential`` stacks with PyTorch-compatible names."""

from __future__ import annotations

import numpy as np

from ..nn import (
    AdaptiveAvgPool2d,
    BatchNorm2d,
    Conv2d,
    Flatten,
    Linear,
    MaxPool2d,
    ReLU,
    Residual,
    Sequential,
)

__all__ = ["lenet5", "vgg_small", "resnet_small"]


def _rng(seed: int | np.random.Generator | None) -> np.random.Generator:
    return seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)


def lenet5(*, num_classes: int = 10, in_channels: int = 1, seed: int | np.random.Generator |
           None = 0, dtype: type = np.float32) -> Sequential:
    """LeNet-5 for 28x28 inputs, indices 0-11 exactly as below (PyTorch default init).

    ``Conv2d(1,6,5,padding=2), ReLU, MaxPool2d(2), Conv2d(6,16,5), ReLU, MaxPool2d(2), Flatten,
    Linear(400,120), ReLU, Linear(120,84), ReLU, Linear(84,10)``

    Shape:
        - input: ``(N, in_channels, 28, 28)``; output: ``(N, num_classes)`` logits
    """
    rng = _rng(seed)
    kw = {"rng": rng, "dtype": dtype}
    return Sequential(
        Conv2d(in_channels, 6, 5, padding=2, **kw), ReLU(), MaxPool2d(2),
        Conv2d(6, 16, 5, **kw), ReLU(), MaxPool2d(2),
        Flatten(),
        Linear(400, 120, **kw), ReLU(),
        Linear(120, 84, **kw), ReLU(),
        Linear(84, num_classes, **kw),
    )


def _conv_bn_relu(cin: int, cout: int, kw: dict, stride: int = 1) -> list:
    return [Conv2d(cin, cout, 3, stride=stride, padding=1, bias=False, **kw),
            BatchNorm2d(cout, dtype=kw["dtype"]), ReLU()]


def vgg_small(*, num_classes: int = 10, in_channels: int = 3, width: int = 32,
              seed: int | np.random.Generator | None = 0, dtype: type = np.float32) -> Sequential:
    """A small VGG-style network for 32x32 images: three conv-BN-ReLU pairs with max pooling.

    Shape:
        - input: ``(N, in_channels, 32, 32)``; output: ``(N, num_classes)``
    """
    rng = _rng(seed)
    kw = {"rng": rng, "dtype": dtype}
    w = width
    return Sequential(
        *_conv_bn_relu(in_channels, w, kw), *_conv_bn_relu(w, w, kw), MaxPool2d(2),
        *_conv_bn_relu(w, 2 * w, kw), *_conv_bn_relu(2 * w, 2 * w, kw), MaxPool2d(2),
        *_conv_bn_relu(2 * w, 4 * w, kw), MaxPool2d(2),
        Flatten(), Linear(4 * w * 4 * 4, num_classes, **kw),
    )


def _basic_block(cin: int, cout: int, stride: int, kw: dict) -> Residual:
    block = Sequential(*_conv_bn_relu(cin, cout, kw, stride),
                       Conv2d(cout, cout, 3, padding=1, bias=False, **kw),
                       BatchNorm2d(cout, dtype=kw["dtype"]))
    shortcut = None
    if stride != 1 or cin != cout:
        shortcut = Sequential(Conv2d(cin, cout, 1, stride=stride, bias=False, **kw),
                              BatchNorm2d(cout, dtype=kw["dtype"]))
    return Residual(block, shortcut)


def resnet_small(*, num_classes: int = 10, in_channels: int = 3, width: int = 16,
                 seed: int | np.random.Generator | None = 0, dtype: type = np.float32
                 ) -> Sequential:
    """A small ResNet for 32x32 images: a stem and three stages of one basic block each.

    Shape:
        - input: ``(N, in_channels, 32, 32)``; output: ``(N, num_classes)``
    """
    rng = _rng(seed)
    kw = {"rng": rng, "dtype": dtype}
    w = width
    return Sequential(
        *_conv_bn_relu(in_channels, w, kw),
        _basic_block(w, w, 1, kw), ReLU(),
        _basic_block(w, 2 * w, 2, kw), ReLU(),
        _basic_block(2 * w, 4 * w, 2, kw), ReLU(),
        AdaptiveAvgPool2d(1), Flatten(), Linear(4 * w, num_classes, **kw),
    )
