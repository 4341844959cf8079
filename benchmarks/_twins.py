"""PyTorch twins of rot180 models: the same module tree, the same weights, built generically.

``torch_twin(model)`` walks a rot180 model (``Sequential``, ``Residual``, the layers the zoo
uses) and builds the matching ``torch.nn`` tree: ``Sequential`` children keep their names
``"0"``, ``"1"``, ... and a ``Residual`` becomes :class:`TorchResidual`, whose submodules are
named ``block`` and ``shortcut`` as ours, so ``model.state_dict()`` loads into the twin with
``load_state_dict(strict=True)``: every name and shape must match, nothing is renamed.

A module the walk does not know raises ``TypeError`` naming it (add its case to ``_twin_of``).
torch is a benchmark peer only; nothing under ``src/`` imports this file.

Shape:
    - the twin takes and returns what the rot180 model does, as torch tensors (NCHW)
"""

from __future__ import annotations

import numpy as np


def _torch_residual_class():
    from torch import nn

    class TorchResidual(nn.Module):
        """``out = block(x) + (shortcut(x) if shortcut else x)``, rot180's ``Residual``."""

        def __init__(self, block: nn.Module, shortcut: nn.Module | None) -> None:
            super().__init__()
            self.block = block
            self.shortcut = shortcut  # None registers no submodule: no "shortcut.*" names

        def forward(self, x):
            return self.block(x) + (x if self.shortcut is None else self.shortcut(x))

    return TorchResidual


def _conv_padding(m) -> str | tuple[int, ...]:
    """Our resolved padding as torch's Conv2d takes it: a string, or one int per side pair."""
    if isinstance(m.padding, str):
        return m.padding
    if all(isinstance(p, int) for p in m.padding):
        return tuple(m.padding)
    raise TypeError(
        f"torch_twin: Conv2d padding {m.padding!r} has (low, high) pairs, which torch.nn.Conv2d "
        "does not take. Use symmetric padding (one int per axis) in a benchmarked model."
    )


def _twin_of(m, residual_cls):
    """The torch module that computes what our module ``m`` computes (its weights not set)."""
    from torch import nn

    from rot180 import nn as ours

    kind = type(m)
    if kind is ours.Sequential:
        return nn.Sequential(*(_twin_of(c, residual_cls) for c in m))
    if kind is ours.Residual:
        short = None if m.shortcut is None else _twin_of(m.shortcut, residual_cls)
        return residual_cls(_twin_of(m.block, residual_cls), short)
    if kind is ours.Conv2d:
        return nn.Conv2d(m.in_channels, m.out_channels, m.kernel_size, stride=m.stride,
                         padding=_conv_padding(m), dilation=m.dilation, groups=m.groups,
                         bias=m.bias is not None, padding_mode=m.padding_mode)
    if kind is ours.BatchNorm2d:
        return nn.BatchNorm2d(m.num_features, eps=m.eps, momentum=m.momentum, affine=m.affine,
                              track_running_stats=m.track_running_stats)
    if kind is ours.ReLU:
        return nn.ReLU()
    if kind is ours.MaxPool2d:
        return nn.MaxPool2d(m.kernel_size, m.stride, m.padding, m.dilation,
                            ceil_mode=m.ceil_mode)
    if kind is ours.AdaptiveAvgPool2d:
        return nn.AdaptiveAvgPool2d(m.output_size)
    if kind is ours.Flatten:
        return nn.Flatten(m.start_dim, m.end_dim)
    if kind is ours.Linear:
        return nn.Linear(m.in_features, m.out_features, bias=m.bias is not None)
    raise TypeError(
        f"torch_twin: no PyTorch twin for {kind.__name__}. Known: Sequential, Residual, "
        "Conv2d, BatchNorm2d, ReLU, MaxPool2d, AdaptiveAvgPool2d, Flatten, Linear; add a case "
        "to benchmarks/_twins.py::_twin_of."
    )


def torch_twin(model):
    """A ``torch.nn.Module`` with ``model``'s structure, weights and buffers, in the same
    training mode (float32 or float64 as the weights are)."""
    import torch

    twin = _twin_of(model, _torch_residual_class())
    state = model.state_dict()
    floats = {v.dtype for v in state.values() if np.issubdtype(v.dtype, np.floating)}
    if floats == {np.dtype(np.float64)}:
        twin = twin.double()
    # Copies: torch must not share (and later update) our arrays.
    twin.load_state_dict({k: torch.from_numpy(np.array(v, copy=True)) for k, v in state.items()},
                         strict=True)
    return twin.train(model.training)


def max_param_gap(model, twin) -> tuple[float, str]:
    """The largest ``|ours - torch| / max(1, |torch|)`` over every parameter and buffer, and
    its name: how far two models that started equal have drifted apart."""
    theirs = {k: v.detach().numpy() for k, v in twin.state_dict().items()}
    worst, where = 0.0, ""
    for k, v in model.state_dict().items():
        if not np.issubdtype(v.dtype, np.floating):
            continue
        gap = float(np.max(np.abs(v - theirs[k]) / np.maximum(1.0, np.abs(theirs[k]))))
        if gap >= worst:
            worst, where = gap, k
    return worst, where
