"""Build a model by name (the names the CLI and checkpoints use)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from ..nn import Module
from .zoo import lenet5, resnet_small, vgg_small

MODELS: dict[str, Callable[..., Module]] = {
    "lenet5": lenet5,
    "vgg_small": vgg_small,
    "resnet_small": resnet_small,
}

#: ``(H, W)`` each model is built for (its flattened classifier fixes it); None: any size of at
#: least 8x8 (resnet_small ends in an adaptive average pool).
IMAGE_SIZES: dict[str, tuple[int, int] | None] = {
    "lenet5": (28, 28),
    "vgg_small": (32, 32),
    "resnet_small": None,
}


def _takes(size: tuple[int, int] | None, h: int, w: int) -> bool:
    return (h, w) == size if size is not None else min(h, w) >= 8


def image_size_error(name: str, shape: Sequence[int], source: str) -> str:
    """``""`` if model ``name`` takes images of ``shape = (C, H, W)``, else the message that says
    so in the user's terms, e.g. ``vgg_small needs 32x32 images; --data mnist5k has 28x28``
    (``source`` names where the images come from). Names outside the table give ``""``."""
    if name not in IMAGE_SIZES:
        return ""
    h, w = (int(v) for v in shape[-2:])
    need = IMAGE_SIZES[name]
    if _takes(need, h, w):
        return ""
    fits = [f"--model {m}" for m, size in IMAGE_SIZES.items() if _takes(size, h, w)]
    wanted = "images of at least 8x8" if need is None else f"{need[0]}x{need[1]} images"
    return (f"{name} needs {wanted}; {source} has {h}x{w}. Choose a model made for {h}x{w} "
            f"images ({', '.join(fits) or 'none in the zoo'}) or data of {name}'s size.")


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
