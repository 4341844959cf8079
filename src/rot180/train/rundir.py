"""Run directories: one run per directory, never overwritten by accident, never shared.

Rules (enforced by :meth:`rot180.train.Trainer.fit` under the lock, and by ``rot180 train``):

- A directory *holds a run* when it contains any of :data:`RUN_FILES`. A new run into such a
  directory is refused (:class:`RunExistsError`) unless it resumes it (``--resume``) or replaces
  it (``--overwrite``, which deletes those files first, so no file of the old run survives
  beside the new one's).
- The default directory is ``runs/<model>-<data>`` (:func:`default_out`); when that one holds a
  run, the next free ``runs/<model>-<data>-2``, ``-3``, ... is taken, and the command says so.
- A run holds ``<dir>/.rot180.lock`` while it trains (:class:`RunLock`): an exclusive
  ``fcntl.flock`` on the file, which also records the holder's pid. A second run into the same
  directory is refused while the first is alive; the kernel drops the lock of a process that
  dies (even by ``kill -9``), so a stale lock file is simply taken over.
- Temporary files (``.NAME.XXXXXXXX.tmp``) that an atomic write left behind when its process was
  killed are deleted by the next run that takes the lock (:func:`remove_stale_temporaries`).
"""

from __future__ import annotations

import contextlib
import errno
import os
import re
from pathlib import Path

__all__ = ["RUN_FILES", "LOCK_NAME", "RunExistsError", "RunLockedError", "RunLock",
           "holds_run", "default_out", "remove_stale_temporaries", "remove_run_files",
           "check_out_dir"]

#: Files that only a rot180 run writes into its directory.
RUN_FILES = ("last.safetensors", "best.safetensors", "metrics.csv", "curves.png")
LOCK_NAME = ".rot180.lock"
# atomic_write_bytes' temporaries: "." + name + "." + mkstemp's 8 random characters + ".tmp"
_TEMPORARY = re.compile(r"^\..+\.[A-Za-z0-9_]{8}\.tmp$")


class RunExistsError(ValueError):
    """The output directory already holds a run, and neither resume nor overwrite was asked."""


class RunLockedError(ValueError):
    """Another live process is training into the same directory."""


def holds_run(directory: str | os.PathLike) -> list[str]:
    """The names of :data:`RUN_FILES` present in ``directory`` (empty: it holds no run)."""
    d = Path(directory)
    return [name for name in RUN_FILES if (d / name).exists()]


def check_out_dir(directory: str | os.PathLike, option: str = "--out") -> None:
    """ValueError when ``directory`` exists but is not a directory (a file, say)."""
    d = Path(directory)
    if d.exists() and not d.is_dir():
        raise ValueError(f"{option} {d} is an existing file; {option} names the directory for "
                         f"the run's files. Choose a directory path (e.g. {option} runs/mine).")


def default_out(model: str, data: str, root: str | os.PathLike = "runs") -> tuple[Path, str]:
    """``runs/<model>-<data>``, or the first ``-2``, ``-3``, ... that holds no run; and a note
    for the user when a numbered one was taken (else ``""``)."""
    base = Path(root) / f"{model}-{data}"
    if not holds_run(base) and not (base.exists() and not base.is_dir()):
        return base, ""
    n = 2
    while holds_run(Path(f"{base}-{n}")) or Path(f"{base}-{n}").is_file():
        n += 1
    chosen = Path(f"{base}-{n}")
    if not base.is_dir():
        return chosen, f"{base} is a file (kept); this run goes to {chosen}."
    return chosen, (f"{base} holds an earlier run (kept); this run goes to {chosen}. To go on "
                    f"with that one instead, pass --out {base} --resume (an interrupted run), "
                    "or add --epochs N to extend a finished one.")


def refuse_existing(directory: Path, found: list[str]) -> RunExistsError:
    return RunExistsError(
        f"--out {directory} already holds a rot180 run ({', '.join(found)}). Pass --resume to "
        "continue it, --overwrite to replace it (its files are deleted), or choose another "
        "--out."
    )


def remove_stale_temporaries(directory: str | os.PathLike) -> list[str]:
    """Delete the temporary files an interrupted atomic write left in ``directory``; call it
    only while holding the :class:`RunLock` (nobody else writes there then)."""
    removed = []
    with contextlib.suppress(FileNotFoundError):
        for entry in os.scandir(directory):
            if entry.is_file(follow_symlinks=False) and _TEMPORARY.match(entry.name):
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(entry.path)
                    removed.append(entry.name)
    return sorted(removed)


def remove_run_files(directory: str | os.PathLike) -> None:
    """Delete the files of the run in ``directory`` (``--overwrite``); other files stay."""
    for name in (*RUN_FILES, "confusion.png"):
        with contextlib.suppress(FileNotFoundError):
            os.unlink(Path(directory) / name)


class RunLock:
    """Exclusive right to write into a run directory, held from ``__enter__`` to ``__exit__``.

    ``fcntl.flock(LOCK_EX | LOCK_NB)`` on ``<dir>/.rot180.lock`` (the pid of the holder is
    written into it for the message a second run gets). Locks belong to the open file, so a
    second ``RunLock`` on the same directory fails even in the same process. Where ``fcntl``
    does not exist (Windows) the lock file is created with ``O_CREAT | O_EXCL`` and taken over
    when the pid it names no longer runs.
    """

    def __init__(self, directory: str | os.PathLike) -> None:
        self.directory = Path(directory)
        self.path = self.directory / LOCK_NAME
        self._fd: int | None = None

    def __enter__(self) -> RunLock:
        self.directory.mkdir(parents=True, exist_ok=True)
        try:
            import fcntl
        except ImportError:  # pragma: no cover - not POSIX
            self._fd = self._exclusive_create()
            return self
        while True:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o666)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError as exc:
                holder = os.pread(fd, 32, 0).decode(errors="replace").strip()
                os.close(fd)
                if exc.errno not in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                    raise
                raise self._busy(holder) from None
            # The holder before us unlinks the file as it lets go: a lock on that old inode
            # guards nothing, so lock again the file that the path names now.
            try:
                same = os.stat(self.path).st_ino == os.fstat(fd).st_ino
            except FileNotFoundError:
                same = False
            if same:
                break
            os.close(fd)
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        self._fd = fd
        return self

    def _busy(self, holder: str) -> RunLockedError:
        who = f"pid {holder}" if holder else "another process"
        return RunLockedError(
            f"--out {self.directory} is in use by another rot180 run ({who} holds "
            f"{self.path}). Wait for it to finish, or choose another --out."
        )

    def _exclusive_create(self) -> int:  # pragma: no cover - not POSIX
        for _ in range(2):
            try:
                fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o666)
            except FileExistsError:
                holder = self.path.read_text(errors="replace").strip()
                if holder.isdigit() and _alive(int(holder)):
                    raise self._busy(holder) from None
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(self.path)  # a dead process's lock: take it over
                continue
            os.write(fd, f"{os.getpid()}\n".encode())
            return fd
        raise self._busy("")

    def __exit__(self, *exc: object) -> None:
        if self._fd is not None:
            with contextlib.suppress(OSError):
                os.unlink(self.path)  # before closing: nobody can lock the old inode after
            os.close(self._fd)
            self._fd = None


def _alive(pid: int) -> bool:  # pragma: no cover - not POSIX
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
