"""rot180.data downloads, against a local HTTP server on 127.0.0.1 (never the internet).

The server serves files generated in each test; the data set table is pointed at their digests
with ``monkeypatch``. Checks: a verified download, a checksum mismatch that leaves no file, an
HTTP error, a closed port, a connection cut short, mirror fallback, re-use of verified files,
and the CIFAR-10 archive unpacked member by member.
"""

from __future__ import annotations

import functools
import gzip
import hashlib
import http.server
import io
import re
import socket
import struct
import tarfile
import threading
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from rot180.data import (
    SOURCES,
    DataError,
    DownloadError,
    RemoteFile,
    Source,
    download,
    fetch_file,
    load_dataset,
)


class _Handler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args: object) -> None:  # keep test output clean
        pass

    def do_GET(self) -> None:
        if self.path.startswith("/short/"):  # announces 1000 bytes, sends 10, hangs up
            self.send_response(200)
            self.send_header("Content-Length", "1000")
            self.end_headers()
            self.wfile.write(b"0123456789")
            self.close_connection = True
            return
        super().do_GET()


@dataclass
class Server:
    url: str
    root: Path

    def put(self, name: str, content: bytes) -> str:
        """Serve ``content`` as ``name``; return its SHA-256."""
        (self.root / name).write_bytes(content)
        return hashlib.sha256(content).hexdigest()


@pytest.fixture
def server(tmp_path, monkeypatch):
    for var in ("http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY", "all_proxy",
                "ALL_PROXY"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("no_proxy", "*")
    served = tmp_path / "served"
    served.mkdir()
    httpd = http.server.ThreadingHTTPServer(
        ("127.0.0.1", 0), functools.partial(_Handler, directory=str(served)))
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.02},
                              daemon=True)
    thread.start()
    try:
        yield Server(f"http://127.0.0.1:{httpd.server_address[1]}/", served)
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join()


@pytest.fixture
def dead_url() -> str:
    """A local port with nothing listening."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}/"


def payload(n: int = 200_000, seed: int = 0) -> bytes:
    return np.random.default_rng(seed).integers(0, 256, n, dtype=np.uint8).tobytes()


def test_fetch_file_verified(server, tmp_path):
    digest = server.put("a.bin", payload())
    dest = tmp_path / "out" / "a.bin"
    assert fetch_file(server.url + "a.bin", dest, sha256=digest.upper(), progress=False) == dest
    assert dest.read_bytes() == payload()
    assert [p.name for p in dest.parent.iterdir()] == ["a.bin"]  # no temporary file left


def test_fetch_file_progress_bar(server, tmp_path, capsys):
    digest = server.put("a.bin", payload())
    fetch_file(server.url + "a.bin", tmp_path / "a.bin", sha256=digest, progress=True)
    assert "a.bin" in capsys.readouterr().err


def test_checksum_mismatch_leaves_no_file(server, tmp_path):
    actual = server.put("a.bin", payload())
    out = tmp_path / "out"
    wrong = "0" * 64
    with pytest.raises(DownloadError, match=rf"checksum mismatch for {server.url}a\.bin: expected "
                                            rf"SHA-256 {wrong}, got {actual}\. Nothing was "
                                            rf"saved\..* download it manually into "
                                            rf"{re.escape(str(out))}"):
        fetch_file(server.url + "a.bin", out / "a.bin", sha256=wrong, progress=False)
    assert list(out.iterdir()) == []


def test_http_error(server, tmp_path):
    out = tmp_path / "out"
    with pytest.raises(DownloadError, match=rf"could not download {server.url}missing\.bin: HTTP "
                                            rf"404 .*\. Download it manually into "
                                            rf"{re.escape(str(out))}\."):
        fetch_file(server.url + "missing.bin", out / "missing.bin", progress=False)
    assert list(out.iterdir()) == []


def test_unreachable_server(dead_url, tmp_path):
    with pytest.raises(DownloadError) as info:
        fetch_file(dead_url + "a.bin", tmp_path / "a.bin", progress=False, timeout=5)
    assert re.fullmatch(rf"could not download {dead_url}a\.bin: .+\. Download it manually into "
                        rf"{re.escape(str(tmp_path))}\.", str(info.value))
    assert isinstance(info.value, OSError) and isinstance(info.value, DataError)
    assert isinstance(info.value, ValueError)
    assert list(tmp_path.iterdir()) == []


def test_connection_cut_short(server, tmp_path):
    with pytest.raises(DownloadError, match=rf"could not download {server.url}short/x\.bin: "):
        fetch_file(server.url + "short/x.bin", tmp_path / "out" / "x.bin", progress=False)
    assert list((tmp_path / "out").iterdir()) == []


# --- whole data sets ------------------------------------------------------------------------

def idx_gz(arr: np.ndarray) -> bytes:
    header = bytes([0, 0, 0x08, arr.ndim]) + struct.pack(f">{arr.ndim}I", *arr.shape)
    return gzip.compress(header + arr.tobytes())


def serve_idx_set(server: Server, seed: int = 0) -> tuple[RemoteFile, ...]:
    rng = np.random.default_rng(seed)
    arrays = {"train-images-idx3-ubyte.gz": rng.integers(0, 256, (5, 28, 28), dtype=np.uint8),
              "train-labels-idx1-ubyte.gz": rng.integers(0, 10, 5, dtype=np.uint8),
              "t10k-images-idx3-ubyte.gz": rng.integers(0, 256, (2, 28, 28), dtype=np.uint8),
              "t10k-labels-idx1-ubyte.gz": rng.integers(0, 10, 2, dtype=np.uint8)}
    return tuple(RemoteFile(name, server.put(name, idx_gz(arr))) for name, arr in arrays.items())


@pytest.mark.parametrize("name", ["mnist", "fashion-mnist", "kmnist"])
def test_download_idx_set_then_load(server, tmp_path, monkeypatch, dead_url, name):
    monkeypatch.setitem(SOURCES, name, Source(("https://example.invalid/",),
                                              serve_idx_set(server)))
    root = tmp_path / "data"
    assert download(name, root, base_url=server.url, progress=False) == root
    test = load_dataset(name, root=root, split="test")
    assert test.images.shape == (2, 1, 28, 28)
    # Verified files are kept: a second call needs no server at all.
    download(name, root, base_url=dead_url, progress=False)


def test_stale_file_is_fetched_again(server, tmp_path, monkeypatch):
    files = serve_idx_set(server)
    monkeypatch.setitem(SOURCES, "mnist", Source((server.url,), files))
    (tmp_path / files[0].name).write_bytes(b"half a download")
    download("mnist", tmp_path, progress=False)
    assert (tmp_path / files[0].name).read_bytes() == (server.root / files[0].name).read_bytes()


def test_mirrors_are_tried_in_order(server, tmp_path, monkeypatch, dead_url):
    monkeypatch.setitem(SOURCES, "kmnist", Source((dead_url, server.url), serve_idx_set(server)))
    download("kmnist", tmp_path / "ok", progress=False)
    assert len(load_dataset("kmnist", root=tmp_path / "ok", split="all")) == 7
    monkeypatch.setitem(SOURCES, "kmnist", Source((dead_url, dead_url + "again/"),
                                                  SOURCES["kmnist"].files))
    with pytest.raises(DownloadError, match=rf"could not download {dead_url}train-images.* / "
                                            rf"could not download {dead_url}again/train-images"):
        download("kmnist", tmp_path / "fail", progress=False, timeout=5)


def test_load_dataset_download_flag(server, tmp_path, monkeypatch):
    monkeypatch.setitem(SOURCES, "fashion-mnist", Source(("https://example.invalid/",),
                                                         serve_idx_set(server, seed=4)))
    with pytest.raises(DataError, match="Get it with --download"):
        load_dataset("fashion-mnist", root=tmp_path)
    data = load_dataset("fashion-mnist", root=tmp_path, download=True, base_url=server.url,
                        progress=False)
    assert len(data) == 5 and data.classes[-1] == "Ankle boot"


def cifar_archive(members: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for name, content in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(content)
            tar.addfile(info, io.BytesIO(content))
    return buffer.getvalue()


def test_download_cifar10_unpacks_only_the_expected_members(server, tmp_path, monkeypatch):
    rng = np.random.default_rng(5)
    batches = {f"data_batch_{i}.bin": rng.integers(0, 10, (2, 3073), dtype=np.uint8).tobytes()
               for i in range(1, 6)}
    batches["test_batch.bin"] = rng.integers(0, 10, (1, 3073), dtype=np.uint8).tobytes()
    batches["batches.meta.txt"] = b"airplane\n"
    members = {f"cifar-10-batches-bin/{k}": v for k, v in batches.items()}
    members["../escape.txt"] = b"must not be written"
    digest = server.put("cifar-10-binary.tar.gz", cifar_archive(members))
    real = SOURCES["cifar10"]
    monkeypatch.setitem(SOURCES, "cifar10", Source(real.mirrors, (
        RemoteFile("cifar-10-binary.tar.gz", digest),), real.extract))
    root = tmp_path / "root"
    download("cifar10", root, base_url=server.url, progress=False)
    assert not (tmp_path / "escape.txt").exists()
    for name, content in batches.items():
        assert (root / "cifar-10-batches-bin" / name).read_bytes() == content
    test = load_dataset("cifar10", root=root, split="test")
    assert test.images.shape == (1, 3, 32, 32)
    np.testing.assert_array_equal(test.images.ravel(),
                                  np.frombuffer(batches["test_batch.bin"], np.uint8)[1:])


def test_cifar10_archive_without_a_member(server, tmp_path, monkeypatch):
    digest = server.put("cifar-10-binary.tar.gz",
                        cifar_archive({"cifar-10-batches-bin/data_batch_1.bin": b"x"}))
    real = SOURCES["cifar10"]
    monkeypatch.setitem(SOURCES, "cifar10", Source(real.mirrors, (
        RemoteFile("cifar-10-binary.tar.gz", digest),), real.extract))
    with pytest.raises(DataError, match=r"cifar-10-binary.tar.gz: member "
                                        r"cifar-10-batches-bin/data_batch_2.bin is missing"):
        download("cifar10", tmp_path, base_url=server.url, progress=False)


def test_unknown_download_name(tmp_path):
    with pytest.raises(ValueError, match=r"cannot download 'imagenet': known data sets are "
                                         r"cifar10, fashion-mnist, kmnist, mnist"):
        download("imagenet", tmp_path)


@pytest.mark.parametrize("name", sorted(SOURCES))
def test_source_table_is_well_formed(name):
    source = SOURCES[name]
    assert source.mirrors and all(re.match(r"https?://.+/$", m) for m in source.mirrors)
    for remote in source.files:
        assert re.fullmatch(r"[0-9a-f]{64}", remote.sha256 or ""), remote.name
