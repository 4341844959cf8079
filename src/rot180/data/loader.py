"""Mini-batches with seeded shuffling, light augmentation and normalisation.

Reproducibility and exact resume
--------------------------------
A :class:`DataLoader` owns (or shares) one :class:`numpy.random.Generator`. Each pass over the
data draws, in this order: one permutation (if ``shuffle``), then, per batch, the augmentation's
offsets and flips. Nothing else touches the generator, so the batches of every epoch follow
from its state at the start of that epoch.

To resume a run exactly, save the state at an epoch boundary and restore it before the next
epoch::

    state = loader.rng_state()              # a dict of str/int: json.dumps(state) works
    ...                                     # (write it in the checkpoint's metadata)
    loader.set_rng_state(json.loads(text))  # same batches, bit for bit, from here on

``rng_state()`` is ``loader.rng.bit_generator.state``; a trainer that keeps one generator for
everything can pass it as ``rng=`` and save ``rng.bit_generator.state`` itself.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import numpy as np

from ..functional import _validation as V
from ..functional._validation import generator as as_generator
from .transforms import MNIST_MEAN, MNIST_STD, normalize

__all__ = ["as_generator", "batches", "DataLoader"]


def _check_pair(images: object, labels: object) -> tuple[np.ndarray, np.ndarray]:
    images = V.as_array(images, "images", convert="np.asarray(images)")
    labels = V.as_array(labels, "labels", convert="np.asarray(labels)")
    if labels.dtype.kind not in "iu":
        raise TypeError(f"labels must be integer class indices, got dtype {labels.dtype}. "
                        "Convert them with labels.astype(np.int64) after checking they are "
                        "whole numbers.")
    if labels.ndim != 1 or images.ndim < 1 or images.shape[0] != labels.shape[0]:
        raise ValueError(f"images {images.shape} and labels {labels.shape} must share the "
                         "first dimension N, and labels must be 1-D (N,).")
    return images, labels


def batches(images: np.ndarray, labels: np.ndarray, batch_size: int, *, shuffle: bool = False,
            rng: np.random.Generator | int | None = None,
            drop_last: bool = False) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Yield ``(images[idx], labels[idx])`` for consecutive slices of one order of the data.

    The order is ``rng.permutation(N)`` when ``shuffle`` (drawn when iteration starts), else
    ``0 .. N-1``. The last, short batch is kept unless ``drop_last``.

    Shape
    -----
    ``(B, ...)`` and ``(B,)`` with ``B = batch_size`` (the last one possibly smaller).
    """
    images, labels = _check_pair(images, labels)
    batch_size = V.integer(batch_size, "batch_size")
    shuffle, drop_last = V.flag(shuffle, "shuffle"), V.flag(drop_last, "drop_last")
    n = labels.shape[0]
    order = as_generator(rng).permutation(n) if shuffle else np.arange(n)
    stop = n - n % batch_size if drop_last else n
    for start in range(0, stop, batch_size):
        idx = order[start:start + batch_size]
        yield images[idx], labels[idx]


class DataLoader:
    """Iterate over normalised, optionally augmented and shuffled mini-batches.

    Each ``iter(loader)`` is one epoch. Batches are ``(x, y)``: ``x`` is
    ``normalize(augment(images[idx], rng), mean=mean, std=std, max_value=max_value,
    dtype=dtype)`` and ``y`` int64 labels.

    Parameters
    ----------
    images : numpy.ndarray
        As stored (uint8), ``(N, C, H, W)``.
    labels : numpy.ndarray
        Integer labels, ``(N,)``.
    batch_size : int
    shuffle : bool
        Draw a new permutation from ``rng`` every epoch.
    rng : Generator, int or None
        The generator (shared, not copied) or a seed for a new one.
    drop_last : bool
        Drop the last batch when it is smaller than ``batch_size``.
    augment : callable, optional
        ``augment(images, rng) -> images``, e.g. :class:`~rot180.data.Augmentation`.
    mean, std, max_value :
        Normalisation, see :func:`~rot180.data.normalize` (MNIST constants by default).
    dtype : float32 or float64
        Dtype of ``x``.

    Examples
    --------
    >>> images = np.zeros((10, 1, 4, 4), dtype=np.uint8); labels = np.arange(10)
    >>> loader = DataLoader(images, labels, batch_size=4, shuffle=True, rng=0)
    >>> [y.tolist() for _, y in loader]
    [[4, 6, 2, 7], [3, 5, 9, 0], [8, 1]]
    """

    def __init__(self, images: np.ndarray, labels: np.ndarray, *, batch_size: int,
                 shuffle: bool = False, rng: np.random.Generator | int | None = None,
                 drop_last: bool = False,
                 augment: Callable[[np.ndarray, np.random.Generator], np.ndarray] | None = None,
                 mean: float | Sequence[float] = MNIST_MEAN,
                 std: float | Sequence[float] = MNIST_STD, max_value: float = 255.0,
                 dtype: type | np.dtype = np.float32) -> None:
        images, labels = _check_pair(images, labels)
        if images.ndim != 4:
            raise ValueError(f"images must be 4-D (N, C, H, W), got shape {images.shape}.")
        if images.shape[0] == 0:
            raise ValueError("DataLoader got no images (N = 0); pass at least one sample.")
        if augment is not None and not callable(augment):
            raise TypeError(f"augment must be callable (images, rng) -> images, got "
                            f"{type(augment).__name__}.")
        self.images, self.labels = images, labels.astype(np.int64, copy=False)
        self.batch_size = V.integer(batch_size, "batch_size")
        self.shuffle, self.drop_last = V.flag(shuffle, "shuffle"), V.flag(drop_last, "drop_last")
        self.rng = as_generator(rng)
        self.augment = augment
        self.mean, self.std, self.max_value = mean, std, max_value
        # Checks mean, std, max_value and dtype now rather than at the first batch.
        self.dtype = normalize(images[:1], mean=mean, std=std, max_value=max_value,
                               dtype=dtype).dtype

    def __len__(self) -> int:
        """Batches per epoch."""
        n = self.labels.shape[0]
        return n // self.batch_size if self.drop_last else -(-n // self.batch_size)

    def __iter__(self) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        for raw, y in batches(self.images, self.labels, self.batch_size, shuffle=self.shuffle,
                              rng=self.rng, drop_last=self.drop_last):
            if self.augment is not None:
                raw = self.augment(raw, self.rng)
            yield normalize(raw, mean=self.mean, std=self.std, max_value=self.max_value,
                            dtype=self.dtype), y

    def rng_state(self) -> dict[str, Any]:
        """A deep copy of ``rng.bit_generator.state``: plain str/int values, JSON-serialisable."""
        return copy.deepcopy(self.rng.bit_generator.state)

    def set_rng_state(self, state: dict[str, Any]) -> None:
        """Restore a state from :meth:`rng_state`; later epochs repeat bit for bit."""
        expected = type(self.rng.bit_generator).__name__
        if not isinstance(state, dict) or state.get("bit_generator") != expected:
            got = state.get("bit_generator") if isinstance(state, dict) else type(state).__name__
            raise ValueError(f"state is not a {expected} state (got {got!r}); pass the dict "
                             "returned by rng_state().")
        self.rng.bit_generator.state = state
