"""Reading and writing a user's files safely.

Writing: :func:`atomic_write_bytes` (temporary file, fsync, rename) for every file rot180
writes, so a crash or a full disk never leaves a torn or empty file.

Reading: regular files only, size known before a byte is read.

A path may name a FIFO (``open`` blocks until a writer comes), a device (``/dev/zero`` never
ends, ``/dev/urandom`` fills memory) or a file far larger than its kind ever is. Every reader of
checkpoints and data files opens through :func:`open_regular`, which opens without blocking,
checks with ``fstat`` on the open descriptor (no window between the check and the read) that it
is a regular file no larger than the caller's limit, and only then hands it over.
"""

from __future__ import annotations

import contextlib
import errno
import os
import stat
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

__all__ = ["open_regular", "read_regular", "atomic_write_bytes", "write_file",
           "write_error"]


def _kind(mode: int) -> str:
    for test, name in ((stat.S_ISDIR, "a directory"), (stat.S_ISFIFO, "a FIFO (named pipe)"),
                       (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"),
                       (stat.S_ISSOCK, "a socket")):
        if test(mode):
            return name
    return "not a regular file"


@contextlib.contextmanager
def open_regular(path: str | os.PathLike, *, max_bytes: int, what: str,
                 error: type[Exception] = ValueError) -> Iterator[tuple[BinaryIO, int]]:
    """Open ``path`` for reading if it is a regular file of at most ``max_bytes`` bytes.

    Yields ``(file, size)``. Raises ``error`` (a ``ValueError`` subclass such as
    ``CheckpointError``) naming the file, what it is and the fix; a missing file raises
    ``error`` too. ``what`` names the kind of file in messages ("checkpoint", "IDX file").
    """
    path = Path(path)
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
    except FileNotFoundError:
        raise error(f"{path}: no such {what}. Check the path.") from None
    except IsADirectoryError:
        raise error(f"{path}: is a directory, not a {what}; pass the file inside it.") from None
    except PermissionError:
        raise error(f"{path}: permission denied reading the {what}.") from None
    except OSError as exc:   # a socket, a symlink loop, a name too long, a file as a directory
        raise error(f"{path}: cannot open the {what}: {exc.strerror or exc}. Pass the path of "
                    "a regular file.") from None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise error(f"{path}: is {_kind(info.st_mode)}, not a regular file; a {what} must "
                        "be a regular file. Pass the path of the file itself.")
        if info.st_size > max_bytes:
            raise error(f"{path}: is {info.st_size:,} bytes, more than any {what} this reader "
                        f"accepts ({max_bytes:,} bytes). Check that this is the right file.")
        if hasattr(os, "O_NONBLOCK"):  # regular files never block; reads are plain from here
            os.set_blocking(fd, True)
        f = os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise
    with f:
        yield f, info.st_size


def read_regular(path: str | os.PathLike, *, max_bytes: int, what: str,
                 error: type[Exception] = ValueError) -> bytes:
    """The bytes of a regular file of at most ``max_bytes`` (see :func:`open_regular`).

    Reads at most ``size + 1`` bytes, so a file that grows while it is read cannot make the
    read unbounded; a file that changed size is refused.
    """
    with open_regular(path, max_bytes=max_bytes, what=what, error=error) as (f, size):
        data = f.read(size + 1)
    if len(data) != size:
        raise error(f"{Path(path)}: the {what} changed size while it was read "
                    f"({size:,} bytes expected, {len(data):,} read). Try again.")
    return data


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically: temp file, fsync, rename, fsync the directory.

    On any failure (a full disk, say) the temporary file is removed and the previous file at
    ``path``, if any, is left untouched.
    """
    path = Path(path)
    directory = path.parent if str(path.parent) else Path(".")
    directory.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=directory)
    try:
        os.fchmod(fd, 0o666 & ~_umask())  # mkstemp creates 0600; give the usual permissions
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    with contextlib.suppress(OSError):  # not every filesystem lets a directory be fsync'ed
        dfd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_error(exc: OSError, path: str | os.PathLike, what: str) -> OSError:
    """The error to raise when writing ``what`` ("checkpoint", "figure") to ``path`` failed:
    the same errno, and a message that says nothing was replaced and gives the fix for *this*
    failure (a full disk, a path through an existing file, no permission)."""
    code = exc.errno
    if code in (errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC), errno.EFBIG):
        fix = "Free some disk space (or choose another --out) and try again."
    elif code in (errno.ENOTDIR, errno.EEXIST, errno.EISDIR):
        fix = ("A part of the path is an existing file where a directory is needed (or the "
               "path is a directory): choose another --out.")
    elif code in (errno.EACCES, errno.EPERM, errno.EROFS):
        fix = "There is no permission to write there: choose another --out."
    else:
        fix = "Choose another --out, or check the disk, and try again."
    return OSError(code, f"could not write {what} {path}: {exc.strerror or exc}. Nothing was "
                         f"replaced: the previous {what} at that path, if any, is intact. {fix}")


def write_file(path: str | os.PathLike, data: bytes, what: str) -> Path:
    """:func:`atomic_write_bytes`, and on failure an ``OSError`` (:func:`write_error`) that says
    what failed, that nothing was replaced, and the fix. ``what`` names the file in the message
    ("checkpoint", "figure", "metrics file")."""
    try:
        atomic_write_bytes(path, data)
    except OSError as exc:
        raise write_error(exc, path, what) from exc
    return Path(path)
