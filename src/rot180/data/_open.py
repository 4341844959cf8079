"""Opening data files: regular files only, no larger than their format ever is.

A path may name a FIFO (reading blocks until a writer comes), a device (``/dev/zero`` never
ends) or a file far larger than the format allows; :func:`rot180._files.open_regular` refuses
each from ``fstat`` on the open descriptor, before a byte is read. This module puts the data
readers' own messages (``no such file``, ``is a directory; expected ...``) in front of it.
"""

from __future__ import annotations

import os
from contextlib import AbstractContextManager
from pathlib import Path
from typing import BinaryIO

from .._files import open_regular
from .errors import DataError

__all__ = ["open_data_file"]


def open_data_file(path: str | Path, *, expected: str,
                   max_bytes: int) -> AbstractContextManager[tuple[BinaryIO, int]]:
    """Open a data file for reading: yields ``(file, size)``.

    ``expected`` names the format in messages ("an IDX file"). Raises :class:`DataError`
    naming the file when it is missing, a directory, a FIFO, a device or socket, unreadable,
    or larger than ``max_bytes``; :class:`TypeError` when ``path`` is not a path.
    """
    if not isinstance(path, str | Path):
        raise TypeError(f"path must be a str or pathlib.Path, got {type(path).__name__}.")
    path = Path(path)
    if path.is_dir():
        raise DataError(f"{path}: is a directory; expected {expected}.")
    if not os.path.lexists(path):
        raise DataError(f"{path}: no such file; expected {expected}.")
    return open_regular(path, max_bytes=max_bytes, what="data file", error=DataError)
