"""The model card: what a checkpoint says about the model and the data it was trained on.

One typed, validated object, written by the trainer into every checkpoint and read back by
``evaluate``, ``predict`` and ``saliency`` alike, so that all three rebuild the same network and
feed it the same input. Its fields live at the top level of the checkpoint's metadata (the layout
every rot180 checkpoint has had), and :meth:`ModelCard.to_meta` writes exactly these keys::

    {"model": "lenet5", "model_config": {"num_classes": 10, "in_channels": 1},
     "image_shape": [1, 28, 28], "class_names": ["0", ..., "9"],
     "data": {"name": "mnist5k", "mean": [0.1307], "std": [0.3081], "max_value": 255.0}}

Model input from an image (:meth:`ModelCard.model_input`): a uint8 image ``u`` in ``0 .. 255``
(as read from a PNG or JPEG) is put on the data set's scale, ``v = round(u max_value / 255)``
(``max_value`` is 255 for 8-bit sets, 16 for ``digits8x8``), then normalised exactly as in
training, ``x = (v / max_value - mean) / std`` per channel.

Everything read from a file is untrusted: :meth:`ModelCard.from_meta` checks every type and range
and raises :class:`~rot180.train.checkpoint.CheckpointError` naming the file and the field;
:func:`check_model_spec` also checks that the configuration agrees with the tensors in the file
(the first convolution's channels, the classifier's rows) *before* the model is built, so a
forged ``width`` or ``num_classes`` cannot make it allocate more than the file itself holds.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..functional import _validation as V
from ..models import image_size_error

__all__ = ["ModelCard", "check_model_spec", "probabilities", "CONFIG_KEYS"]

#: The configuration keys each model of the zoo accepts from a checkpoint (nothing else: a
#: ``seed`` or ``dtype`` in a file is refused).
CONFIG_KEYS: dict[str, tuple[str, ...]] = {
    "lenet5": ("num_classes", "in_channels"),
    "vgg_small": ("num_classes", "in_channels", "width"),
    "resnet_small": ("num_classes", "in_channels", "width"),
}
_DEFAULT_WIDTH = {"vgg_small": 32, "resnet_small": 16}
_MAX_SIDE = 4096          # image height or width
_MAX_NAME = 200           # characters in a class or data set name
_MAX_COUNT = 100_000      # classes, channels, width: far above any model here
_MAX_NORM = 1e3           # |mean| and std, in units of image / max_value (images are in [0, 1])
_MIN_STD = 1e-6


def _error(path: Path | str, what: str) -> Exception:
    from .checkpoint import CheckpointError

    return CheckpointError(f"{path}: {what}. The checkpoint's metadata is damaged or was not "
                           "written by rot180 train; use a checkpoint that rot180 train wrote.")


def _int(value: object, name: str, path: Path | str, lo: int = 1, hi: int = _MAX_COUNT) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise _error(path, f"{name} must be an int, got {type(value).__name__}")
    if not lo <= value <= hi:
        raise _error(path, f"{name} must be in {lo} .. {hi}, got {value}")
    return value


def _floats(value: object, name: str, path: Path | str, n: int, *, positive: bool,
            lo: float = -_MAX_NORM, hi: float = _MAX_NORM) -> tuple[float, ...]:
    if not isinstance(value, list) or len(value) != n:
        raise _error(path, f"{name} must be a list of {n} numbers (one per channel), got "
                           f"{_describe(value)}")
    out = []
    for v in value:
        if isinstance(v, bool) or not isinstance(v, int | float) or not math.isfinite(v) \
                or (positive and v <= 0) or not lo <= v <= hi:
            raise _error(path, f"{name} must hold finite numbers in [{lo:g}, {hi:g}], got "
                               f"{_describe(v)}")
        out.append(float(v))
    return tuple(out)


def _describe(value: object) -> str:
    text = repr(value)
    return f"{type(value).__name__} {text if len(text) <= 60 else text[:57] + '...'}"


def _mapping(value: object, name: str, path: Path | str) -> Mapping[str, Any]:
    if not isinstance(value, dict):
        raise _error(path, f"{name} must be a JSON object, got {_describe(value)}")
    return value


def check_model_spec(meta: Mapping[str, Any], state: Mapping[str, np.ndarray],
                     path: Path | str) -> tuple[str, dict[str, int]]:
    """The validated ``(model, model_config)`` of a checkpoint, consistent with its tensors.

    Checks, before anything is built: the name is a model of the zoo, the configuration holds
    only that model's keys with ints in range, and it agrees with the tensors in the file: the
    first convolution ``0.weight`` has ``in_channels`` input channels (and ``width`` outputs for
    vgg_small / resnet_small), and the classifier (the last top-level 2-D ``.weight``) has
    ``num_classes`` rows. The model built from the result is then no larger than the file.
    """
    from ..models import MODELS

    name = meta.get("model")
    if not isinstance(name, str) or name not in MODELS:
        raise _error(path, f"model must be one of {sorted(MODELS)}, got {_describe(name)}")
    config = dict(_mapping(meta.get("model_config", {}), "model_config", path))
    unknown = sorted(set(config) - set(CONFIG_KEYS[name]))
    if unknown:
        raise _error(path, f"model_config of {name} takes {list(CONFIG_KEYS[name])}, not "
                           f"{unknown}")
    for key, value in config.items():
        config[key] = _int(value, f"model_config[{key!r}]", path)
    first = state.get("0.weight")
    if first is None or first.ndim != 4:
        raise _error(path, f"{name} starts with a convolution, but the file has no 4-D tensor "
                           "'0.weight'")
    want = {"in_channels": (first.shape[1], config.get("in_channels", 1 if name == "lenet5"
                                                                     else 3))}
    if name in _DEFAULT_WIDTH:
        want["width"] = (first.shape[0], config.get("width", _DEFAULT_WIDTH[name]))
    tops = [k for k in state if k.split(".")[0].isdigit() and k.count(".") == 1
            and k.endswith(".weight") and state[k].ndim == 2]
    if not tops:
        raise _error(path, f"{name} ends with a Linear classifier, but the file has no 2-D "
                           "top-level weight")
    classifier = max(tops, key=lambda k: int(k.split(".")[0]))
    want["num_classes"] = (state[classifier].shape[0], config.get("num_classes", 10))
    for key, (found, said) in want.items():
        if found != said:
            where = classifier if key == "num_classes" else "0.weight"
            raise _error(path, f"model_config says {key}={said}, but the tensor {where} has "
                               f"shape {tuple(state[where].shape)} ({key}={found})")
    return name, config


@dataclass(frozen=True)
class ModelCard:
    """What the network is and how its input was prepared (see the module docstring).

    Attributes:
        model: a name of :data:`rot180.models.MODELS`.
        model_config: the keyword arguments it was built with (``num_classes``, ...).
        image_shape: ``(C, H, W)`` of the images it was trained on.
        class_names: one name per output, in output order.
        data: the data set's name.
        mean, std: per-channel normalisation, in units of ``image / max_value``.
        max_value: the stored value that maps to 1 (255, or 16 for digits8x8).
    """

    model: str
    model_config: dict[str, int]
    image_shape: tuple[int, int, int]
    class_names: tuple[str, ...]
    data: str
    mean: tuple[float, ...]
    std: tuple[float, ...]
    max_value: float

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def to_meta(self) -> dict[str, Any]:
        """The metadata entries of a checkpoint (JSON types only)."""
        return {"model": self.model, "model_config": dict(self.model_config),
                "image_shape": list(self.image_shape), "class_names": list(self.class_names),
                "data": {"name": self.data, "mean": list(self.mean), "std": list(self.std),
                         "max_value": self.max_value}}

    @classmethod
    def from_meta(cls, meta: Mapping[str, Any], state: Mapping[str, np.ndarray],
                  path: Path | str) -> ModelCard:
        """Read and validate the card of a checkpoint; :class:`CheckpointError` if anything is
        missing, of the wrong type, out of range, or inconsistent with the tensors."""
        model, config = check_model_spec(meta, state, path)
        in_channels = state["0.weight"].shape[1]
        shape = meta.get("image_shape")
        if not isinstance(shape, list) or len(shape) != 3:
            raise _error(path, f"image_shape must be a list [C, H, W], got {_describe(shape)}")
        c, h, w = (_int(v, "image_shape", path, 1, _MAX_SIDE) for v in shape)
        if problem := image_size_error(model, (c, h, w), "its image_shape"):
            raise _error(path, f"image_shape {[c, h, w]} does not fit the model: {problem}")
        if c != in_channels:
            raise _error(path, f"image_shape has {c} channels but the model takes {in_channels}")
        names = meta.get("class_names")
        n_out = config.get("num_classes", 10)
        # printable: a name is echoed to the terminal (no escape sequences, no carriage return)
        if not isinstance(names, list) or len(names) != n_out or not all(
                isinstance(s, str) and 0 < len(s) <= _MAX_NAME and s.isprintable()
                for s in names):
            raise _error(path, f"class_names must be a list of {n_out} names (one per output), "
                               f"got {_describe(names)}")
        data = _mapping(meta.get("data"), "data", path)
        name = data.get("name")
        if not isinstance(name, str) or not 0 < len(name) <= _MAX_NAME or not name.isprintable():
            raise _error(path, f"data.name must be a data set name, got {_describe(name)}")
        max_value = data.get("max_value")
        if isinstance(max_value, bool) or not isinstance(max_value, int | float) \
                or not 1 <= max_value <= 65535:
            raise _error(path, f"data.max_value must be a number in [1, 65535], got "
                               f"{_describe(max_value)}")
        return cls(model, config, (c, h, w), tuple(names), name,
                   _floats(data.get("mean"), "data.mean", path, c, positive=False),
                   _floats(data.get("std"), "data.std", path, c, positive=True,
                           lo=_MIN_STD),
                   float(max_value))

    def check_images(self, shape: Sequence[int], source: str) -> None:
        """ValueError in the user's terms when images of ``shape = (C, H, W)`` are not what
        this model was trained on (``source`` names them, e.g. ``"--data digits8x8"``)."""
        if tuple(shape) != self.image_shape:
            need = "x".join(map(str, self.image_shape))
            raise ValueError(
                f"this {self.model} checkpoint needs {need} images (C x H x W, as in "
                f"{self.data}); {source} has {'x'.join(map(str, shape))}. Use data of the "
                f"checkpoint's size (--data {self.data}), or a checkpoint trained on this data."
            )

    def model_input(self, raw: np.ndarray, dtype: np.dtype | type = np.float32, *,
                    max_value: float = 255.0) -> np.ndarray:
        """Model input from images whose white is ``max_value`` (255: uint8 read from a PNG or
        JPEG; a data set's own ``max_value`` for its stored images): put on the training scale,
        then normalised as in training (module docstring). Images already on that scale are
        normalised exactly as the training loader did, bit for bit.

        Shape:
            - raw: ``(N, C, H, W)``, ``(C, H, W) == image_shape``; output: the same, float
        """
        from ..data import normalize

        raw = V.as_array(raw, "raw", "model_input",
                         convert=f"rot180.data.load_images(paths, {self.image_shape})")
        if raw.ndim != 4 or raw.shape[1:] != self.image_shape:
            want = ", ".join(map(str, self.image_shape))
            raise ValueError(
                f"model_input expects images of shape (N, {want}), got "
                f"{raw.shape}. Read files with "
                "rot180.data.load_images(paths, card.image_shape)."
            )
        scaled = raw if max_value == self.max_value else np.round(
            raw * (self.max_value / max_value))
        return normalize(scaled, mean=self.mean, std=self.std, max_value=self.max_value,
                         dtype=dtype)


def probabilities(logits: np.ndarray) -> np.ndarray:
    """Softmax of each row of ``(N, classes)`` logits, in float64 (what predict and saliency
    print)."""
    z = logits.astype(np.float64)
    z = np.exp(z - z.max(axis=1, keepdims=True))
    return z / z.sum(axis=1, keepdims=True)
