"""Readers for IDX files: MNIST, Fashion-MNIST and KMNIST, raw or gzip-compressed.

The IDX format (LeCun et al.) is a 4-byte magic number, ``0x00 0x00 <type> <ndim>``, then
``ndim`` big-endian uint32 dimension sizes, then the values, big-endian, row-major. Every field
is checked against the file's length before a byte of data is read, so a truncated download
reports what is missing instead of producing a wrongly shaped array. Files are read only if
regular (never a FIFO or a device) and no larger than :data:`MAX_IDX_BYTES`; gzip data is
expanded only as far as its header announces.
"""

from __future__ import annotations

import gzip
import math
import struct
import zlib
from pathlib import Path
from typing import BinaryIO

import numpy as np

from ..functional import _validation as V
from ._open import open_data_file
from .errors import DataError

__all__ = ["IDX_DTYPES", "IDX_FILES", "parse_idx", "read_idx", "load_idx_pair",
           "find_idx_file", "load_idx_dir", "read_maybe_gzip", "MAX_IDX_BYTES"]

#: IDX type code -> big-endian numpy dtype.
IDX_DTYPES: dict[int, str] = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4",
                              0x0D: ">f4", 0x0E: ">f8"}

#: Standard file names (without ``.gz``) of the images and labels of each split.
IDX_FILES: dict[str, tuple[str, str]] = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}

_GZIP_MAGIC = b"\x1f\x8b"
#: Largest IDX file read, and largest it may expand to: 1 GiB (the biggest standard IDX file,
#: EMNIST ByClass's training images, is 547 MB; MNIST's is 47 MB).
MAX_IDX_BYTES = 2**30


def read_maybe_gzip(path: str | Path) -> bytearray | bytes:
    """The bytes of IDX file ``path``, gunzipped when the file starts with the gzip magic number.

    Detection is by content, not by the ``.gz`` suffix, so a renamed file still reads. Only
    regular files of at most :data:`MAX_IDX_BYTES` are read. Compressed data is expanded in
    bounded steps: the header first, then at most the data size it announces plus one byte, so
    a small file that expands to gigabytes (a gzip bomb) stops there with a :class:`DataError`.
    The data goes straight into one buffer of the announced size, which :func:`parse_idx`
    then uses in place: one copy of the file in memory, not three.
    """
    with open_data_file(path, expected="an IDX file", max_bytes=MAX_IDX_BYTES) as (f, size):
        if f.read(2) != _GZIP_MAGIC:
            f.seek(0)
            data = bytearray(size)
            got = f.readinto(data)
            if got != size or f.read(1):
                raise DataError(f"{path}: the file changed size while it was read "
                                f"({size:,} bytes expected, {got:,} read). Try again.")
            return data
        f.seek(0)
        try:
            with gzip.GzipFile(fileobj=f, mode="rb") as gz:
                return _read_announced(gz, str(path))
        except (OSError, EOFError, zlib.error) as exc:
            raise DataError(f"{path}: corrupt or truncated gzip data ({exc}). Delete the file "
                            "and download it again.") from exc


def _read_announced(stream: BinaryIO, source: str) -> bytearray | bytes:
    """Header, then at most the announced data + 1 byte, of a decompressing stream, into one
    buffer allocated only once the header's sizes are checked."""
    head = stream.read(4)
    if len(head) < 4 or head[:2] != b"\0\0" or head[2] not in IDX_DTYPES or not head[3]:
        return head   # not an IDX header: parse_idx says what is wrong with it
    head += stream.read(4 * head[3])
    shape, dtype, header = _parse_header(head, source)   # a truncated header stops here
    expected = math.prod(shape) * dtype.itemsize
    if header + expected > MAX_IDX_BYTES:
        raise DataError(f"{source}: the header announces {_described(shape, dtype)}, more than "
                        f"the {MAX_IDX_BYTES:,} bytes read from an IDX file. The header is "
                        "corrupt.")
    buffer = bytearray(header + expected)
    buffer[:header] = head
    view, got = memoryview(buffer)[header:], 0
    while got < expected:
        n = stream.readinto(view[got:got + (16 << 20)])
        if not n:
            break
        got += n
    view.release()
    if got < expected:   # truncated: parse_idx says how much is missing
        return bytes(buffer[:header + got])
    if stream.read(1):
        raise DataError(f"{source}: the gzip data expands beyond the {header + expected:,} bytes "
                        f"its header announces ({_described(shape, dtype)}); reading stopped "
                        "there. The file is corrupt or crafted: delete it and download it "
                        "again.")
    return buffer


def _described(shape: tuple[int, ...], dtype: np.dtype) -> str:
    count = math.prod(shape) * dtype.itemsize
    return f"{'x'.join(map(str, shape))} {dtype.name} = {count} data bytes"


def _parse_header(data: bytes, source: str) -> tuple[tuple[int, ...], np.dtype, int]:
    """``(shape, dtype, header length)`` from the first bytes of an IDX file."""
    if len(data) < 4:
        raise DataError(f"{source}: {len(data)} bytes is too short for an IDX file (the magic "
                        "number alone is 4 bytes). The file is truncated: download it again.")
    if data[0] != 0 or data[1] != 0:
        raise DataError(f"{source}: bad magic number 0x{data[:4].hex()}; an IDX file starts "
                        "with two zero bytes (0x0000<type><ndim>). This is not an IDX file, "
                        "or it is still compressed in a format other than gzip.")
    code, ndim = data[2], data[3]
    if code not in IDX_DTYPES:
        known = ", ".join(f"0x{c:02x} ({np.dtype(d).name})" for c, d in IDX_DTYPES.items())
        raise DataError(f"{source}: unknown IDX type code 0x{code:02x}; expected one of "
                        f"{known}.")
    if ndim == 0:
        raise DataError(f"{source}: the header declares 0 dimensions; expected 1 (labels) or "
                        "3 (images).")
    header = 4 + 4 * ndim
    if len(data) < header:
        raise DataError(f"{source}: truncated header: {ndim} dimensions need {header} header "
                        f"bytes, the file has {len(data)}. Download it again.")
    return struct.unpack(f">{ndim}I", data[4:header]), np.dtype(IDX_DTYPES[code]), header


def parse_idx(data: bytes, *, source: str = "<bytes>") -> np.ndarray:
    """Decode one IDX file's bytes.

    Parameters
    ----------
    data : bytes
        The whole (uncompressed) file.
    source : str
        File name for error messages.

    Returns
    -------
    numpy.ndarray
        A writable array in native byte order, dtype from the type code (0x08 uint8,
        0x09 int8, 0x0B int16, 0x0C int32, 0x0D float32, 0x0E float64).

    Shape
    -----
    The ``ndim`` sizes stored in the header.

    Raises
    ------
    DataError
        Bad magic number, unknown type code, zero dimensions, a header or data section
        shorter than announced, or bytes beyond the announced data.
    """
    shape, dtype, header = _parse_header(data, source)
    count = math.prod(shape)
    expected, actual = count * dtype.itemsize, len(data) - header
    described = _described(shape, dtype)
    if actual < expected:
        raise DataError(f"{source}: truncated: the header announces {described}, the file "
                        f"holds {actual}. Delete it and download it again.")
    if actual > expected:
        raise DataError(f"{source}: {actual - expected} unexpected bytes after the data: the "
                        f"header announces {described}, the file holds {actual}. The file is "
                        "corrupt or its header is wrong.")
    values = np.frombuffer(data, dtype=dtype, count=count, offset=header).reshape(shape)
    values = values.astype(dtype.newbyteorder("="), copy=False)   # a bytearray: used in place
    return values if values.flags.writeable else values.copy()


def read_idx(path: str | Path) -> np.ndarray:
    """Read an IDX file (raw or gzip-compressed); see :func:`parse_idx`."""
    return parse_idx(read_maybe_gzip(path), source=str(path))


def load_idx_pair(images_path: str | Path, labels_path: str | Path, *,
                  num_classes: int = 10) -> tuple[np.ndarray, np.ndarray]:
    """Read one split of an MNIST-style set: a 3-D uint8 image file and a 1-D uint8 label file.

    Returns
    -------
    images : numpy.ndarray
        uint8, with a channel axis added.
    labels : numpy.ndarray
        int64 in ``[0, num_classes)``.

    Shape
    -----
    images ``(N, 1, H, W)``; labels ``(N,)``.
    """
    images, labels = read_idx(images_path), read_idx(labels_path)
    if images.ndim != 3 or images.dtype != np.uint8:
        raise DataError(f"{images_path}: expected an image file (uint8, 3 dimensions N x H x "
                        f"W), got {images.dtype} with shape {images.shape}. Are the image and "
                        "label files swapped?")
    if labels.ndim != 1 or labels.dtype != np.uint8:
        raise DataError(f"{labels_path}: expected a label file (uint8, 1 dimension), got "
                        f"{labels.dtype} with shape {labels.shape}. Are the image and label "
                        "files swapped?")
    if images.shape[0] != labels.shape[0]:
        raise DataError(f"{images_path} holds {images.shape[0]} images but {labels_path} holds "
                        f"{labels.shape[0]} labels; the two files must come from the same "
                        "split.")
    if labels.size and int(labels.max()) >= num_classes:
        raise DataError(f"{labels_path}: label {int(labels.max())} is out of range; expected "
                        f"0 .. {num_classes - 1}.")
    return images[:, None], labels.astype(np.int64)


def find_idx_file(directory: str | Path, stem: str) -> Path | None:
    """``directory/stem`` or ``stem.gz``, also with the ``.idx`` spelling some mirrors use."""
    directory = Path(directory)
    dotted = stem.replace("-idx", ".idx")
    for name in (stem, stem + ".gz", dotted, dotted + ".gz"):
        if (directory / name).is_file():
            return directory / name
    return None


def load_idx_dir(directory: str | Path, split: str = "train", *,
                 hint: str = "") -> tuple[np.ndarray, np.ndarray]:
    """Read the ``"train"`` or ``"test"`` split from a directory of standard IDX file names.

    ``hint`` is appended to the error raised when a file is missing (how to get it).

    Shape
    -----
    images ``(N, 1, 28, 28)`` uint8; labels ``(N,)`` int64.
    """
    V.option(split, sorted(IDX_FILES), "split")
    paths = []
    for stem in IDX_FILES[split]:
        path = find_idx_file(directory, stem)
        if path is None:
            raise DataError(f"{directory}: no {stem} or {stem}.gz found. {hint}".rstrip())
        paths.append(path)
    return load_idx_pair(*paths)
