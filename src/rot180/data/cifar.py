"""Readers for CIFAR-10 batches: the binary version (preferred) and the python version.

* Binary (``cifar-10-batches-bin/data_batch_{1..5}.bin``, ``test_batch.bin``): records of one
  label byte and 3,072 pixel bytes (1,024 red, then green, then blue, each 32x32 row-major).
  Trivially safe to read, and what :func:`rot180.data.download` fetches.
* Python (``cifar-10-batches-py/data_batch_{1..5}``, ``test_batch``): pickled dicts. They are
  decoded by :func:`~rot180.data._pickle_subset.parse_pickle_data`, which reads the stream as
  data and executes nothing; :mod:`pickle` is never called.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..functional import _validation as V
from ._open import open_data_file
from ._pickle_subset import parse_pickle_data
from .errors import DataError

__all__ = ["CIFAR10_CLASSES", "CIFAR_BIN_DIR", "CIFAR_PY_DIR", "parse_cifar_binary",
           "read_cifar_binary", "parse_cifar_python", "read_cifar_python", "find_cifar10_dir",
           "load_cifar10_dir", "MAX_BATCH_BYTES"]

CIFAR10_CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse",
                   "ship", "truck")
CIFAR_BIN_DIR = "cifar-10-batches-bin"
CIFAR_PY_DIR = "cifar-10-batches-py"
_PIXELS = 3 * 32 * 32
_RECORD = 1 + _PIXELS
_BATCHES = {"train": [f"data_batch_{i}" for i in range(1, 6)], "test": ["test_batch"]}
#: Largest batch file read, binary or python: twice a real batch (10,000 images, 30.7 MB).
MAX_BATCH_BYTES = 64 * 2**20


def _check_labels(labels: np.ndarray, source: str) -> None:
    if labels.size and int(labels.max()) > 9:
        first = int(np.flatnonzero(labels > 9)[0])
        raise DataError(f"{source}: record {first} has label {int(labels[first])}; CIFAR-10 "
                        "labels are 0-9. Is this a CIFAR-100 file?")


def _short(value: int) -> str:
    """A label for a message: a huge one (a crafted stream) as a power of two."""
    if abs(value) < 10**9:
        return str(value)
    return f"{'-' if value < 0 else ''}~2**{abs(value).bit_length() - 1}"


def parse_cifar_binary(data: bytes, *, source: str = "<bytes>") -> tuple[np.ndarray, np.ndarray]:
    """Decode one binary CIFAR-10 batch.

    Shape
    -----
    images ``(N, 3, 32, 32)`` uint8 (NCHW, RGB); labels ``(N,)`` int64, ``N = len(data) / 3073``.

    Raises
    ------
    DataError
        If the length is not a positive multiple of 3,073 bytes or a label exceeds 9.
    """
    whole, rest = divmod(len(data), _RECORD)
    if whole == 0 or rest:
        raise DataError(f"{source}: {len(data)} bytes is not a whole number of 3073-byte "
                        f"records (1 label byte + 3072 pixel bytes): {whole} records and "
                        f"{rest} bytes left over. The file is truncated or not a CIFAR-10 "
                        "binary batch; download it again.")
    records = np.frombuffer(data, dtype=np.uint8).reshape(whole, _RECORD)
    labels = records[:, 0].astype(np.int64)
    _check_labels(labels, source)
    return records[:, 1:].reshape(whole, 3, 32, 32).copy(), labels


def read_cifar_binary(path: str | Path) -> tuple[np.ndarray, np.ndarray]:
    """Read one binary batch file; see :func:`parse_cifar_binary`."""
    return parse_cifar_binary(_read_batch(path), source=str(path))


def parse_cifar_python(data: bytes, *, source: str = "<bytes>") -> tuple[np.ndarray, np.ndarray]:
    """Decode one python-version CIFAR-10 batch (a pickled dict) without unpickling it.

    The dict must hold ``data`` (uint8 array, ``N x 3072``) and ``labels`` (``N`` ints
    0-9); keys may be byte or text strings, other keys are ignored.

    Shape
    -----
    images ``(N, 3, 32, 32)`` uint8; labels ``(N,)`` int64.
    """
    obj = parse_pickle_data(data, source=source)
    if not isinstance(obj, dict):
        raise DataError(f"{source}: expected a pickled dict, found {type(obj).__name__}.")
    fields = {k.decode("latin-1") if isinstance(k, bytes) else k: v for k, v in obj.items()}
    missing = [k for k in ("data", "labels") if k not in fields]
    if missing:
        raise DataError(f"{source}: the batch dict lacks {missing}; found keys "
                        f"{sorted(map(str, fields))}. Is this a CIFAR-10 python batch?")
    pixels, labels = fields["data"], fields["labels"]
    if not isinstance(pixels, np.ndarray) or pixels.dtype != np.uint8 or pixels.ndim != 2 \
            or pixels.shape[1] != _PIXELS:
        got = (f"{pixels.dtype} array of shape {pixels.shape}" if isinstance(pixels, np.ndarray)
               else type(pixels).__name__)
        raise DataError(f"{source}: 'data' must be a uint8 array of shape (N, 3072), got {got}.")
    if not isinstance(labels, list | tuple) or not all(isinstance(v, int) for v in labels):
        raise DataError(f"{source}: 'labels' must be a list of ints.")
    if len(labels) != pixels.shape[0]:
        raise DataError(f"{source}: {pixels.shape[0]} images but {len(labels)} labels.")
    # Checked as Python ints: one label of 2**100 would overflow int64 in np.array.
    if labels and min(labels) < 0:
        raise DataError(f"{source}: negative label {_short(min(labels))}; expected 0-9.")
    if labels and max(labels) > 9:
        first = next(i for i, v in enumerate(labels) if v > 9)
        raise DataError(f"{source}: record {first} has label {_short(labels[first])}; "
                        "CIFAR-10 labels are 0-9. Is this a CIFAR-100 file?")
    label_array = np.array(labels, dtype=np.int64)
    return pixels.reshape(-1, 3, 32, 32), label_array


def read_cifar_python(path: str | Path) -> tuple[np.ndarray, np.ndarray]:
    """Read one python-version batch file; see :func:`parse_cifar_python`."""
    return parse_cifar_python(_read_batch(path), source=str(path))


def _read_batch(path: str | Path) -> bytes:
    """The bytes of a batch file: a regular file of at most :data:`MAX_BATCH_BYTES`."""
    with open_data_file(path, expected="a CIFAR-10 batch file",
                        max_bytes=MAX_BATCH_BYTES) as (f, size):
        data = f.read(size + 1)
    if len(data) != size:
        raise DataError(f"{path}: the file changed size while it was read ({size:,} bytes "
                        f"expected, {len(data):,} read). Try again.")
    return data


def find_cifar10_dir(root: str | Path) -> tuple[Path, str] | None:
    """Locate the batches under ``root``: ``(directory, "bin" | "py")`` or ``None``.

    ``root`` may be the batches directory itself or contain ``cifar-10-batches-bin`` or
    ``cifar-10-batches-py``; the binary version wins when both are present.
    """
    root = Path(root)
    for directory in (root / CIFAR_BIN_DIR, root):
        if (directory / "test_batch.bin").is_file() or (directory / "data_batch_1.bin").is_file():
            return directory, "bin"
    for directory in (root / CIFAR_PY_DIR, root):
        if (directory / "test_batch").is_file() or (directory / "data_batch_1").is_file():
            return directory, "py"
    return None


def load_cifar10_dir(root: str | Path, split: str = "train", *,
                     hint: str = "") -> tuple[np.ndarray, np.ndarray]:
    """Read the ``"train"`` (5 batches, 50,000 images) or ``"test"`` split under ``root``.

    ``hint`` is appended to the error raised when the batches are missing (how to get them).

    Shape
    -----
    images ``(N, 3, 32, 32)`` uint8; labels ``(N,)`` int64.
    """
    V.option(split, sorted(_BATCHES), "split")
    found = find_cifar10_dir(root)
    if found is None:
        raise DataError(f"{root}: no CIFAR-10 batches found (looked for {CIFAR_BIN_DIR}/ and "
                        f"{CIFAR_PY_DIR}/). {hint}".rstrip())
    directory, kind = found
    reader = read_cifar_binary if kind == "bin" else read_cifar_python
    suffix = ".bin" if kind == "bin" else ""
    parts = []
    for name in _BATCHES[split]:
        path = directory / (name + suffix)
        if not path.is_file():
            raise DataError(f"{directory}: {path.name} is missing; the set is incomplete. "
                            f"{hint}".rstrip())
        parts.append(reader(path))
    images = np.concatenate([p[0] for p in parts])
    labels = np.concatenate([p[1] for p in parts])
    return images, labels
