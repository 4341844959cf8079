"""Optional download of MNIST, Fashion-MNIST, KMNIST and CIFAR-10, verified by SHA-256.

Every file is written atomically: it streams into a temporary file in the target directory,
its SHA-256 is computed on the way, and only a file whose digest matches is renamed
(``os.replace``) to its final name. A failed or mismatching download leaves nothing behind.

The digests in :data:`SOURCES` are those of the canonical files; each was taken from at least
two independent public projects that pin it (they could not be recomputed here, offline). A
mirror serves the same bytes, so one digest covers all mirrors. CIFAR-10 is fetched in its
binary version (fixed-size records, no pickle). ``base_url`` replaces the mirrors (tests point
it at a local server).
"""

from __future__ import annotations

import hashlib
import http.client
import os
import tarfile
import tempfile
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .errors import DataError, DownloadError

__all__ = ["RemoteFile", "Source", "SOURCES", "default_root", "fetch_file", "download"]


@dataclass(frozen=True)
class RemoteFile:
    """One file of a data set: its name on the server and on disk, and its SHA-256."""

    name: str
    sha256: str | None


@dataclass(frozen=True)
class Source:
    """Where a data set lives: mirrors tried in order, the files, and archive members.

    ``extract`` maps an archive's name to ``(member directory, member names)``: after the
    archive is verified those regular files are copied out (no other member is touched, so a
    crafted path cannot escape the target directory).
    """

    mirrors: tuple[str, ...]
    files: tuple[RemoteFile, ...]
    extract: dict[str, tuple[str, tuple[str, ...]]] | None = None


_IDX = ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz",
        "t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz")


def _idx_files(*digests: str) -> tuple[RemoteFile, ...]:
    return tuple(RemoteFile(n, d) for n, d in zip(_IDX, digests, strict=True))


SOURCES: dict[str, Source] = {
    # yann.lecun.com is the original address but refuses many automated downloads; the
    # PyTorch mirror serves byte-identical files.
    "mnist": Source(
        ("https://ossci-datasets.s3.amazonaws.com/mnist/", "https://yann.lecun.com/exdb/mnist/"),
        _idx_files("440fcabf73cc546fa21475e81ea370265605f56be210a4024d2ca8f203523609",
                   "3552534a0a558bbed6aed32b30c495cca23d567ec52cac8be1a0730e8010255c",
                   "8d422c7b0a1c1c79245a5bcf07fe86e33eeafee792b84584aec276f5a2dbc4e6",
                   "f7ae60f92e00ec6debd23a6088c31dbd2371eca3ffa0defaefb259924204aec6")),
    "fashion-mnist": Source(
        ("http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",),
        _idx_files("08dc20ab1689590a0bcd66e874647b6ee8464e2d501b5a3f1f78831db19a3fdc",
                   "b0197879cbda89f3dc7b894f9fd52b858e68ea4182b6947c9d8c2b67e5f18dcc",
                   "78dcbbfb5a27efaf1b6c1d616caca68560be8766c5bffcb2791df9273a534229",
                   "42bd18137a62d5998cdeae52bf3a0676ac6b706f5cf8439b47bb5b151ae3dccf")),
    "kmnist": Source(
        ("http://codh.rois.ac.jp/kmnist/dataset/kmnist/",),
        _idx_files("51467d22d8cc72929e2a028a0428f2086b092bb31cfb79c69cc0a90ce135fde4",
                   "e38f9ebcd0f3ebcdec7fc8eabdcdaef93bb0df8ea12bee65224341c8183d8e17",
                   "edd7a857845ad6bb1d0ba43fe7e794d164fe2dce499a1694695a792adfac43c5",
                   "20bb9a0ef54c7db3efc55a92eef5582c109615df22683c380526788f98e42a1c")),
    # The binary version: fixed-size records, no pickle.
    "cifar10": Source(
        ("https://www.cs.toronto.edu/~kriz/",),
        (RemoteFile("cifar-10-binary.tar.gz",
                    "c4a38c50a1bc5f3a1c5537f2155ab9d68f9f25eb1ed8d9ddda3db29a59bca1dd"),),
        extract={"cifar-10-binary.tar.gz": (
            "cifar-10-batches-bin",
            tuple(f"data_batch_{i}.bin" for i in range(1, 6)) + ("test_batch.bin",
                                                                 "batches.meta.txt"))}),
}


def default_root() -> Path:
    """Where data sets live unless a ``root`` is given: ``$ROT180_DATA`` or
    ``~/.cache/rot180/data``; each set in a subdirectory named after it."""
    env = os.environ.get("ROT180_DATA")
    return Path(env) if env else Path.home() / ".cache" / "rot180" / "data"


def _sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        while chunk := fh.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def _reason(exc: BaseException) -> str:
    if isinstance(exc, urllib.error.HTTPError):
        return f"HTTP {exc.code} {exc.reason}"
    if isinstance(exc, urllib.error.URLError):
        return str(exc.reason)
    return str(exc) or type(exc).__name__


@contextmanager
def _progress(total: int | None, desc: str, enabled: bool) -> Iterator[Any]:
    """A tqdm bar in bytes, or a no-op when disabled or tqdm is not installed."""
    bar: Any = None
    if enabled:
        try:
            from tqdm import tqdm
        except ImportError:  # tqdm is optional: no bar, same download
            bar = None
        else:
            bar = tqdm(total=total, desc=desc, unit="B", unit_scale=True, unit_divisor=1024,
                       leave=False)
    try:
        yield bar
    finally:
        if bar is not None:
            bar.close()


def fetch_file(url: str, dest: str | Path, *, sha256: str | None = None,
               progress: bool = True, timeout: float = 60.0) -> Path:
    """Download ``url`` to ``dest`` atomically, checking its SHA-256 when one is given.

    Raises
    ------
    DownloadError
        ``"could not download <url>: <reason>. Download it manually into <dir>"`` when the
        server cannot be reached, answers with an HTTP error or sends fewer bytes than it
        announced; ``"checksum mismatch for <url>: ..."`` when the digest differs. In both
        cases no file is left at ``dest`` and the temporary file is removed.
    """
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    manual = f"Download it manually into {dest.parent}"
    fd, tmp_name = tempfile.mkstemp(dir=dest.parent, prefix=f".{dest.name}.", suffix=".part")
    tmp = Path(tmp_name)
    try:
        digest = hashlib.sha256()
        with os.fdopen(fd, "wb") as out:
            request = urllib.request.Request(url, headers={"User-Agent": "rot180"})
            try:
                with urllib.request.urlopen(request, timeout=timeout) as response:
                    length = response.headers.get("Content-Length")
                    total = int(length) if length and length.isdigit() else None
                    received = 0
                    with _progress(total, dest.name, progress) as bar:
                        while chunk := response.read(1 << 16):
                            out.write(chunk)
                            digest.update(chunk)
                            received += len(chunk)
                            if bar is not None:
                                bar.update(len(chunk))
            except (OSError, http.client.HTTPException) as exc:  # URLError is an OSError
                raise DownloadError(f"could not download {url}: {_reason(exc)}. "
                                    f"{manual}.") from exc
            if total is not None and received != total:
                raise DownloadError(f"could not download {url}: the connection closed after "
                                    f"{received} of {total} bytes. {manual}.")
            out.flush()
            os.fsync(out.fileno())
        got = digest.hexdigest()
        if sha256 is not None and got != sha256.lower():
            raise DownloadError(f"checksum mismatch for {url}: expected SHA-256 {sha256}, got "
                                f"{got}. Nothing was saved. Try again later or from another "
                                f"mirror; or {manual[0].lower()}{manual[1:]} and check it.")
        os.replace(tmp, dest)
    finally:
        tmp.unlink(missing_ok=True)
    return dest


def _extract(archive: Path, target: Path, member_dir: str, names: tuple[str, ...]) -> None:
    """Copy the named regular files out of a tar archive, each atomically."""
    out_dir = target / member_dir
    out_dir.mkdir(parents=True, exist_ok=True)
    try:
        with tarfile.open(archive, "r:*") as tar:
            for name in names:
                if (out_dir / name).is_file():
                    continue
                try:
                    member = tar.getmember(f"{member_dir}/{name}")
                except KeyError as exc:
                    raise DataError(f"{archive}: member {member_dir}/{name} is missing; the "
                                    "archive is not the expected one.") from exc
                source = tar.extractfile(member) if member.isfile() else None
                if source is None:
                    raise DataError(f"{archive}: {member_dir}/{name} is not a regular file.")
                fd, tmp_name = tempfile.mkstemp(dir=out_dir, prefix=f".{name}.", suffix=".part")
                try:
                    with os.fdopen(fd, "wb") as out, source:
                        while chunk := source.read(1 << 20):
                            out.write(chunk)
                    os.replace(tmp_name, out_dir / name)
                finally:
                    Path(tmp_name).unlink(missing_ok=True)
    except (tarfile.TarError, EOFError, OSError) as exc:
        raise DataError(f"{archive}: cannot extract ({exc}). Delete it and download it "
                        "again.") from exc


def download(name: str, root: str | Path | None = None, *, base_url: str | None = None,
             progress: bool = True, timeout: float = 60.0) -> Path:
    """Fetch data set ``name`` into ``root`` (default ``default_root() / name``); return it.

    Files already present with the right SHA-256 are kept; others are fetched from each mirror
    in turn (or from ``base_url`` alone when given) and verified. Archives (CIFAR-10) are then
    unpacked next to themselves.

    Parameters
    ----------
    name : str
        ``"mnist"``, ``"fashion-mnist"``, ``"kmnist"`` or ``"cifar10"``.
    root : str or Path, optional
        Target directory; the files land directly in it.
    base_url : str, optional
        Replaces the mirrors: file ``f`` is fetched from ``base_url.rstrip("/") + "/" + f``.
    progress : bool
        Show a tqdm progress bar per file (if tqdm is installed).
    timeout : float
        Seconds to wait for the server before giving up.

    Raises
    ------
    ValueError
        For an unknown ``name``.
    DownloadError
        When a file cannot be fetched from any mirror or fails its checksum; the message
        lists each URL tried and says where to put the file by hand.
    """
    if name not in SOURCES:
        raise ValueError(f"cannot download {name!r}: known data sets are "
                         f"{', '.join(sorted(SOURCES))}.")
    source = SOURCES[name]
    target = Path(root) if root is not None else default_root() / name
    target.mkdir(parents=True, exist_ok=True)
    mirrors = (base_url,) if base_url else source.mirrors
    for remote in source.files:
        dest = target / remote.name
        if dest.is_file() and (remote.sha256 is None or _sha256_of(dest) == remote.sha256):
            continue
        errors: list[str] = []
        for mirror in mirrors:
            url = mirror.rstrip("/") + "/" + remote.name
            try:
                fetch_file(url, dest, sha256=remote.sha256, progress=progress, timeout=timeout)
                break
            except DownloadError as exc:
                errors.append(str(exc))
        else:
            raise DownloadError(" / ".join(errors))
    for archive, (member_dir, names) in (source.extract or {}).items():
        _extract(target / archive, target, member_dir, names)
    return target
