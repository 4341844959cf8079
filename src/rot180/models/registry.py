"""Build a model by name (the names the CLI and checkpoints use)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ..nn import Module
from .zoo import lenet5, resnet_small, vgg_small

MODELS: dict[str, Callable[..., Module]] = {
    "lenet5": lenet5,
    "vgg_small": vgg_small,
    "resnet_small": resnet_small,
}


def build_model(name: str, **config: Any) -> Module:
    """``build_model("lenet5", num_classes=10)``; unknown names list the valid ones."""
    if name not in MODELS:
        raise ValueError(
            f"Unknown model {name!r}; valid names are {sorted(MODELS)}."
        )
    try:
        return MODELS[name](**config)
    except TypeError as exc:
        raise TypeError(f"Invalid configuration for model {name!r}: {exc}.") from None
