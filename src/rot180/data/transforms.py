"""Normalisation and light augmentation of NCHW image batches, vectorised over the batch.

Augmentations take the images as stored (uint8, before normalisation, so that padding is the
background value 0) and an explicit :class:`numpy.random.Generator`; the same generator state
gives the same output bit for bit. None has a Python loop over images.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from numbers import Integral

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from ..functional import _validation as V

__all__ = ["MNIST_MEAN", "MNIST_STD", "normalize", "channel_stats", "random_crop",
           "random_shift", "random_hflip", "Augmentation"]

#: The usual MNIST constants (mean and std of the 60,000 training images scaled to [0, 1]).
MNIST_MEAN = 0.1307
MNIST_STD = 0.3081


def _check_images(images: object) -> np.ndarray:
    images = V.as_array(images, "images", convert="np.asarray(images)")
    if images.dtype.kind not in "iuf":
        raise TypeError(f"images must have an integer or float dtype (uint8 as stored), got "
                        f"{images.dtype}. Convert them with images.astype(np.uint8).")
    if images.ndim != 4:
        raise ValueError(f"images must be 4-D (N, C, H, W), got shape {images.shape}. Add a "
                         "channel axis with images[:, None] for grey images.")
    return images


def _max_value(value: object) -> float:
    out = V.real(value, "max_value")
    if out <= 0:
        raise ValueError(f"max_value must be positive (255 for 8-bit images), got {value!r}.")
    return out


def _per_channel(value: float | Sequence[float], channels: int, name: str,
                 dtype: np.dtype) -> np.ndarray:
    try:
        arr = np.asarray(value, dtype=np.float64).reshape(-1)
    except (TypeError, ValueError):
        raise TypeError(f"{name} must be a number or a sequence of numbers, got "
                        f"{type(value).__name__} {value!r}.") from None
    if not np.isfinite(arr).all():
        raise ValueError(f"{name} must be finite, got {value!r}.")
    if arr.size not in (1, channels):
        raise ValueError(f"{name} needs 1 or {channels} values (one per channel), got "
                         f"{arr.size}.")
    return arr.astype(dtype).reshape(1, -1, 1, 1)


def normalize(images: np.ndarray, *, mean: float | Sequence[float] = MNIST_MEAN,
              std: float | Sequence[float] = MNIST_STD, max_value: float = 255.0,
              dtype: type | np.dtype = np.float32) -> np.ndarray:
    """``(images / max_value - mean) / std``, per channel, computed in ``dtype``.

    The same arithmetic, in the same order and precision, as torchvision's ``ToTensor()``
    followed by ``Normalize(mean, std)`` for ``max_value=255`` and float32.

    Parameters
    ----------
    images : numpy.ndarray
        Any real dtype (uint8 as stored).
    mean, std : float or sequence of float
        One value, or one per channel, in units of ``images / max_value``.
    max_value : float
        The value that maps to 1 (255 for 8-bit images, 16 for ``digits8x8``).
    dtype : float32 or float64
        Output dtype; the whole computation runs in it.

    Shape
    -----
    ``(N, C, H, W)`` in and out.
    """
    images = _check_images(images)
    max_value = _max_value(max_value)
    dtype = V.float_dtype(dtype)
    std_arr = _per_channel(std, images.shape[1], "std", dtype)
    if np.any(std_arr <= 0):
        raise ValueError(f"std must be positive, got {std!r}.")
    out = images.astype(dtype)
    out /= dtype.type(max_value)
    out -= _per_channel(mean, images.shape[1], "mean", dtype)
    out /= std_arr
    return out


def channel_stats(images: np.ndarray, *, max_value: float = 255.0
                  ) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-channel mean and (population) standard deviation of ``images / max_value``.

    Accumulated in float64 over chunks of the batch, so 50,000 CIFAR images never become one
    float64 copy.

    Shape
    -----
    images ``(N, C, H, W)``; two tuples of ``C`` floats.
    """
    images = _check_images(images)
    max_value = _max_value(max_value)
    n, c = images.shape[:2]
    if 0 in images.shape:
        raise ValueError(f"channel_stats needs at least one pixel per channel, got shape "
                         f"{images.shape}.")
    total = np.zeros(c)
    squares = np.zeros(c)
    for start in range(0, n, 4096):
        chunk = images[start:start + 4096].astype(np.float64) / max_value
        total += chunk.sum(axis=(0, 2, 3))
        squares += np.square(chunk).sum(axis=(0, 2, 3))
    count = n * images.shape[2] * images.shape[3]
    mean = total / count
    std = np.sqrt(np.maximum(squares / count - mean**2, 0.0))
    return tuple(float(v) for v in mean), tuple(float(v) for v in std)


def random_crop(images: np.ndarray, rng: np.random.Generator, *, size: int | tuple[int, int],
                padding: int = 0) -> np.ndarray:
    """Pad every image with ``padding`` zeros on each side, then cut a random ``size`` window.

    Offsets ``(dy, dx)`` are drawn as ``rng.integers(0, H + 2p - h + 1, N)`` then the same for
    ``dx``; image ``n`` of the output is ``padded[n, :, dy:dy + h, dx:dx + w]``. One gather over
    a strided window view does the whole batch.

    Shape
    -----
    ``(N, C, H, W)`` -> ``(N, C, h, w)`` with ``(h, w) = size``, ``h <= H + 2p``, ``w <= W + 2p``.
    """
    images, rng = _check_images(images), V.generator(rng, seeds=False)
    pair = (size, size) if isinstance(size, Integral) else size
    if not isinstance(pair, Sequence) or len(pair) != 2:
        raise TypeError(f"size must be an int or a pair (h, w) of ints, got {size!r}.")
    h, w = (V.integer(v, "size", low=1) for v in pair)
    padding = V.integer(padding, "padding", low=0)
    n, _, height, width = images.shape
    room_y, room_x = height + 2 * padding - h, width + 2 * padding - w
    if h < 1 or w < 1 or room_y < 0 or room_x < 0:
        raise ValueError(f"crop size {(h, w)} must be positive and fit the padded image "
                         f"{(height + 2 * padding, width + 2 * padding)}.")
    pad = ((0, 0), (0, 0), (padding, padding), (padding, padding))
    padded = np.pad(images, pad) if padding else images
    dy = rng.integers(0, room_y + 1, size=n)
    dx = rng.integers(0, room_x + 1, size=n)
    windows = sliding_window_view(padded, (h, w), axis=(2, 3))  # (N, C, room+1, room+1, h, w)
    return windows[np.arange(n), :, dy, dx]


def random_shift(images: np.ndarray, rng: np.random.Generator, *, max_shift: int) -> np.ndarray:
    """Translate each image by a random ``(sy, sx)`` in ``[-max_shift, max_shift]``, filling
    with zeros: :func:`random_crop` back to the original size from a ``max_shift`` padding.

    Shape
    -----
    ``(N, C, H, W)`` in and out; dtype kept.
    """
    images = _check_images(images)
    max_shift = V.integer(max_shift, "max_shift", low=0)
    return random_crop(images, rng, size=images.shape[2:], padding=max_shift)


def random_hflip(images: np.ndarray, rng: np.random.Generator, *, p: float = 0.5) -> np.ndarray:
    """Mirror each image left-right with probability ``p`` (draws ``rng.random(N) < p``).

    Shape
    -----
    ``(N, C, H, W)`` in and out; dtype kept; always a new array.
    """
    images, rng = _check_images(images), V.generator(rng, seeds=False)
    p = V.real(p, "p", low=0, high=1)
    flip = rng.random(images.shape[0]) < p
    out = images.copy()
    out[flip] = images[flip][..., ::-1]
    return out


@dataclass(frozen=True)
class Augmentation:
    """A light augmentation: random shift by up to ``max_shift`` pixels, then optional flip.

    ``Augmentation(max_shift=2)`` suits digits; ``Augmentation(max_shift=4, hflip=True)`` is
    the usual CIFAR "pad 4, random 32x32 crop, horizontal flip". Calling it draws the shift
    offsets, then the flips, from the generator given.
    """

    max_shift: int = 0
    hflip: bool = False

    def __post_init__(self) -> None:
        V.integer(self.max_shift, "max_shift", low=0)
        V.flag(self.hflip, "hflip")

    def __call__(self, images: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        out = random_shift(images, rng, max_shift=self.max_shift) if self.max_shift else images
        return random_hflip(out, rng) if self.hflip else out
