"""rot180.data readers: IDX files, CIFAR-10 binary and python batches, the pickle-subset reader.

Every file is built here from its format's definition (``struct`` and raw bytes, never the
reader under test), then read back; each corruption must raise a DataError naming the file and
the problem.
"""

from __future__ import annotations

import gzip
import pickle  # used only to *write* test streams (dumps); nothing is ever loaded with it
import struct
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rot180.data import (
    DataError,
    load_cifar10_dir,
    load_dataset,
    load_idx_dir,
    load_idx_pair,
    parse_cifar_binary,
    parse_cifar_python,
    parse_idx,
    read_cifar_binary,
    read_cifar_python,
    read_idx,
)
from rot180.data._pickle_subset import parse_pickle_data

_CODES = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


def idx_bytes(arr: np.ndarray, code: int = 0x08) -> bytes:
    """The IDX encoding of ``arr``, from the format's definition."""
    header = bytes([0, 0, code, arr.ndim]) + struct.pack(f">{arr.ndim}I", *arr.shape)
    return header + arr.astype(_CODES[code]).tobytes()


def digits(n: int, seed: int, size: int = 28) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return (rng.integers(0, 256, (n, size, size), dtype=np.uint8),
            rng.integers(0, 10, n, dtype=np.uint8))


# --- IDX ----------------------------------------------------------------------------------

@pytest.mark.parametrize(("code", "dtype"), [(0x08, np.uint8), (0x09, np.int8),
                                             (0x0B, np.int16), (0x0C, np.int32),
                                             (0x0D, np.float32), (0x0E, np.float64)])
@pytest.mark.parametrize("compress", [False, True])
def test_idx_round_trip(tmp_path, code, dtype, compress):
    arr = (np.arange(2 * 3 * 5) * 37 - 100).reshape(2, 3, 5).astype(dtype)
    raw = idx_bytes(arr, code)
    path = tmp_path / "x-idx3-ubyte"  # no .gz suffix: compression is detected by content
    path.write_bytes(gzip.compress(raw) if compress else raw)
    out = read_idx(path)
    assert out.dtype == np.dtype(dtype) and out.dtype.isnative and out.flags.writeable
    np.testing.assert_array_equal(out, arr)


@pytest.mark.parametrize(("data", "match"), [
    (b"\x00\x00\x08", r"f: 3 bytes is too short for an IDX file"),
    (b"\x1f\x00\x08\x01" + b"\x00" * 8, r"f: bad magic number 0x1f000801"),
    (b"\x00\x00\x07\x01\x00\x00\x00\x01\x00", r"f: unknown IDX type code 0x07; expected one "
                                              r"of 0x08 \(uint8\)"),
    (b"\x00\x00\x08\x00", r"f: the header declares 0 dimensions"),
    (b"\x00\x00\x08\x03\x00\x00\x00\x02\x00\x00", r"f: truncated header: 3 dimensions need 16 "
                                                  r"header bytes, the file has 10"),
    (idx_bytes(np.zeros((2, 28, 28), np.uint8))[:-568],
     r"f: truncated: the header announces 2x28x28 uint8 = 1568 data bytes, the file holds "
     r"1000\. Delete it and download it again"),
    (idx_bytes(np.zeros((3,), np.int16), 0x0B) + b"\x00", r"f: 1 unexpected bytes after the "
                                                          r"data: the header announces 3 int16"),
])
def test_idx_corruption_errors(data, match):
    with pytest.raises(DataError, match=match):
        parse_idx(data, source="f")


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=40), st.booleans())
def test_parse_idx_fails_only_with_data_error(blob, zero_prefix):
    data = b"\x00\x00" + blob if zero_prefix else blob
    try:
        out = parse_idx(data, source="fuzz")
    except DataError:
        return
    assert out.size * out.itemsize == len(data) - 4 - 4 * out.ndim


def test_idx_truncated_gzip_and_missing_file(tmp_path):
    path = tmp_path / "train-images-idx3-ubyte.gz"
    path.write_bytes(gzip.compress(idx_bytes(digits(4, 0)[0]))[:-20])
    with pytest.raises(DataError, match=r"train-images-idx3-ubyte.gz: corrupt or truncated "
                                        r"gzip data"):
        read_idx(path)
    with pytest.raises(DataError, match=r"nothing-here: no such file"):
        read_idx(tmp_path / "nothing-here")


def test_idx_pair_checks(tmp_path):
    images, labels = digits(6, 1)
    (tmp_path / "img").write_bytes(idx_bytes(images))
    (tmp_path / "lab").write_bytes(idx_bytes(labels))
    (tmp_path / "lab5").write_bytes(idx_bytes(labels[:5]))
    (tmp_path / "bad").write_bytes(idx_bytes(np.array([1, 2, 12, 0, 0, 0], np.uint8)))
    x, y = load_idx_pair(tmp_path / "img", tmp_path / "lab")
    assert x.shape == (6, 1, 28, 28) and x.dtype == np.uint8 and y.dtype == np.int64
    np.testing.assert_array_equal(x[:, 0], images)
    np.testing.assert_array_equal(y, labels)
    with pytest.raises(DataError, match=r"lab: expected an image file .* files swapped\?"):
        load_idx_pair(tmp_path / "lab", tmp_path / "img")
    with pytest.raises(DataError, match=r"img holds 6 images but .*lab5 holds 5 labels"):
        load_idx_pair(tmp_path / "img", tmp_path / "lab5")
    with pytest.raises(DataError, match=r"bad: label 12 is out of range; expected 0 \.\. 9"):
        load_idx_pair(tmp_path / "img", tmp_path / "bad")


def write_idx_set(directory: Path, *, compress: bool, seed: int = 0,
                  dotted: bool = False) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """The four standard files of an MNIST-style set (7 train, 3 test images)."""
    directory.mkdir(parents=True, exist_ok=True)
    splits = {"train": digits(7, seed), "test": digits(3, seed + 1)}
    prefixes = {"train": "train", "test": "t10k"}
    for split, (images, labels) in splits.items():
        for kind, arr, nd in (("images", images, 3), ("labels", labels, 1)):
            name = f"{prefixes[split]}-{kind}{'.' if dotted else '-'}idx{nd}-ubyte"
            raw = idx_bytes(arr)
            if compress:
                (directory / (name + ".gz")).write_bytes(gzip.compress(raw))
            else:
                (directory / name).write_bytes(raw)
    return splits


@pytest.mark.parametrize(("compress", "dotted"), [(False, False), (True, False), (True, True)])
def test_load_idx_dir(tmp_path, compress, dotted):
    splits = write_idx_set(tmp_path, compress=compress, dotted=dotted)
    for split, (images, labels) in splits.items():
        x, y = load_idx_dir(tmp_path, split)
        np.testing.assert_array_equal(x[:, 0], images)
        np.testing.assert_array_equal(y, labels)
    (tmp_path / ("t10k-labels-idx1-ubyte" + (".gz" if compress else ""))).unlink(
        missing_ok=True)
    if not dotted:
        with pytest.raises(DataError, match=r"no t10k-labels-idx1-ubyte or "
                                            r"t10k-labels-idx1-ubyte.gz found\. Try this"):
            load_idx_dir(tmp_path, "test", hint="Try this.")
    with pytest.raises(ValueError, match=r"split must be one of \('test', 'train'\)"):
        load_idx_dir(tmp_path, "val")


@pytest.mark.parametrize("name", ["mnist", "fashion-mnist", "kmnist"])
@pytest.mark.parametrize("layout", ["flat", "named", "torchvision"])
def test_load_dataset_reads_idx_sets_from_root(tmp_path, name, layout):
    folder = {"mnist": "MNIST", "fashion-mnist": "FashionMNIST", "kmnist": "KMNIST"}[name]
    target = {"flat": tmp_path, "named": tmp_path / name,
              "torchvision": tmp_path / folder / "raw"}[layout]
    splits = write_idx_set(target, compress=True)
    test = load_dataset(name, root=tmp_path, split="test")
    full = load_dataset(name, root=tmp_path, split="all")
    np.testing.assert_array_equal(test.images[:, 0], splits["test"][0])
    assert len(full) == 10 and test.classes[0] in ("0", "T-shirt/top", "o")
    np.testing.assert_array_equal(full.labels, np.concatenate([splits["train"][1],
                                                               splits["test"][1]]))


# --- CIFAR-10, binary version ---------------------------------------------------------------

def cifar_records(n: int, seed: int) -> tuple[np.ndarray, np.ndarray, bytes]:
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 256, (n, 3, 32, 32), dtype=np.uint8)
    labels = rng.integers(0, 10, n)
    blob = b"".join(bytes([int(lab)]) + img.tobytes() for img, lab in zip(images, labels,
                                                                         strict=True))
    return images, labels, blob


def test_cifar_binary_round_trip(tmp_path):
    images, labels, blob = cifar_records(4, 0)
    path = tmp_path / "data_batch_1.bin"
    path.write_bytes(blob)
    x, y = read_cifar_binary(path)
    assert x.shape == (4, 3, 32, 32) and x.dtype == np.uint8 and y.dtype == np.int64
    np.testing.assert_array_equal(x, images)
    np.testing.assert_array_equal(y, labels)
    # Plane order: the 1,024 bytes after the label are the red channel, row-major.
    assert blob[1:1025] == images[0, 0].tobytes()


@pytest.mark.parametrize(("cut", "match"), [
    (1, r"b: 6145 bytes is not a whole number of 3073-byte records .*: 1 records and 3072 "
        r"bytes left over"),
    (6146, r"b: 0 bytes is not a whole number"),
])
def test_cifar_binary_truncated(cut, match):
    with pytest.raises(DataError, match=match):
        parse_cifar_binary(cifar_records(2, 1)[2][:-cut], source="b")


def test_cifar_binary_bad_label():
    blob = bytearray(cifar_records(3, 2)[2])
    blob[3073] = 57
    with pytest.raises(DataError, match=r"b: record 1 has label 57; CIFAR-10 labels are 0-9"):
        parse_cifar_binary(bytes(blob), source="b")


# --- CIFAR-10, python version: pickle protocol 2 as Python 2's cPickle writes it ---------------

def _int(v: int) -> bytes:
    if v < 256:
        return b"K" + bytes([v])
    return b"M" + struct.pack("<H", v) if v < 65536 else b"J" + struct.pack("<i", v)


def _str(b: bytes) -> bytes:
    return b"U" + bytes([len(b)]) + b if len(b) < 256 else b"T" + struct.pack("<i", len(b)) + b


def py2_batch(pixels: np.ndarray, labels: list[int], *, dtype: bytes = b"u1",
              module: bytes = b"numpy.core.multiarray") -> bytes:
    """A CIFAR-10 python batch byte for byte in the layout of cPickle (protocol 2)."""
    n, width = pixels.shape
    out = b"\x80\x02}q\x01(" + _str(b"data") + b"q\x02"
    out += b"c" + module + b"\n_reconstruct\nq\x03cnumpy\nndarray\nq\x04K\x00\x85U\x01b\x87Rq\x05"
    out += b"(K\x01" + _int(n) + _int(width) + b"\x86"
    out += b"cnumpy\ndtype\nq\x06" + _str(dtype) + b"K\x00K\x01\x87Rq\x07"
    out += b"(K\x03U\x01|NNNJ\xff\xff\xff\xffJ\xff\xff\xff\xffK\x00tb"
    out += b"\x89" + _str(pixels.tobytes()) + b"tb"
    out += _str(b"labels") + b"q\x08](" + b"".join(_int(v) for v in labels) + b"e"
    out += _str(b"batch_label") + b"q\t" + _str(b"training batch 1 of 5") + b"q\n"
    out += _str(b"filenames") + b"q\x0b](" + b"".join(_str(f"f{i}.png".encode())
                                                    for i in range(n)) + b"h\x02eu."
    return out


def test_cifar_python_round_trip(tmp_path):
    images, labels, _ = cifar_records(3, 3)
    path = tmp_path / "data_batch_1"
    path.write_bytes(py2_batch(images.reshape(3, -1), labels.tolist()))
    x, y = read_cifar_python(path)
    np.testing.assert_array_equal(x, images)
    np.testing.assert_array_equal(y, labels)
    obj = parse_pickle_data(path.read_bytes())
    assert obj[b"batch_label"] == b"training batch 1 of 5"
    assert obj[b"filenames"][:2] == [b"f0.png", b"f1.png"]
    assert obj[b"filenames"][-1] == b"data"  # BINGET: the memoised key string


@pytest.mark.parametrize("protocol", [2, 3, 4])
def test_cifar_python_from_a_real_pickler(protocol):
    """Streams written by Python's pickler (serialised only: this test never unpickles)."""
    images, labels, _ = cifar_records(2, 4)
    batch = {"batch_label": "testing batch 1 of 1", "labels": labels.tolist(),
             "data": images.reshape(2, -1), "filenames": ["a.png", "b.png"]}
    x, y = parse_cifar_python(pickle.dumps(batch, protocol=protocol), source="p")
    np.testing.assert_array_equal(x, images)
    np.testing.assert_array_equal(y, labels)
    wide = np.arange(6, dtype=">i4").reshape(2, 3)
    out = parse_pickle_data(pickle.dumps({"w": wide, "f": np.asfortranarray(wide.astype("<f8")),
                                          "x": (1.5, None, True, -7, 2**70)}, protocol=protocol))
    np.testing.assert_array_equal(out["w"], wide)
    np.testing.assert_array_equal(out["f"], wide)
    assert out["x"] == (1.5, None, True, -7, 2**70)


@pytest.mark.parametrize(("stream", "match"), [
    (b"\x80\x02cos\nsystem\nq\x00U\x02lsR.", r"s: refusing to load the global os.system \(at "
                                             r"byte 2\)\. .*nothing is executed"),
    (b"\x80\x02cbuiltins\neval\n.", r"refusing to load the global builtins.eval"),
    (b"\x80\x04\x8c\x08builtins\x8c\x04exec\x93.", r"refusing to load the global builtins.exec"),
    (b"\x80\x02I1\n.", r"s: unsupported pickle opcode b'I' \(at byte 2\)"),
    (b"\x80\x02]q\x00h\x00a.", r"s: a self-referencing container is not plain data"),
    (b"\x80\x02}q\x00(U\x04dataT\x10\x00\x00\x00abc", r"s: truncated: 16 bytes needed, 3 left"),
    (b"\x80\x02K\x01.K", r"s: 1 unexpected bytes after STOP"),
    (b"\x80\x02K\x01", r"s: truncated: 1 bytes needed, 0 left"),
    (b"\x80\x02h\x05.", r"s: memo key 5 was never stored"),
    (b"\x80\x02a.", r"s: stack underflow"),
    (b"\x80\x02cnumpy\ndtype\n.", r"a bare Global is not data"),
    (b"\x80\x02cnumpy\ndtype\nU\x02u1\x85R.", r"a bare DtypeStub is not data"),
    (b"\x80\x02X\x02\x00\x00\x00\xff\xfe.", r"s: invalid UTF-8 text"),
    (b"\x80\x02cnumpy.core.multiarray\n_reconstruct\ncnumpy\nndarray\nK\x00\x85U\x01b\x87R.",
     r"s: an array was never given its contents"),
    (b"\x80\x02])R.", r"s: REDUCE on something other than a whitelisted name"),
    (b"\x80\x02c_codecs\nencode\nX\x01\x00\x00\x00aX\x04\x00\x00\x00utf8\x86R.",
     r"s: unexpected call _codecs.encode\('a', 'utf8'\)"),
    (b"\x80\x02]K\x01b.", r"s: BUILD on list is not supported"),
    (b"\x80\x02T\xff\xff\xff\xff.", r"s: negative length -1"),
    (b"\x80\x02}(]K\x02u.", r"s: dict key of type list"),
    (b"\x80\x02}(]\x85K\x02u.", r"s: unhashable dict key"),
])
def test_pickle_subset_refuses(stream, match):
    with pytest.raises(DataError, match=match):
        parse_pickle_data(stream, source="s")


@settings(max_examples=300, deadline=None)
@given(st.data())
def test_pickle_subset_fails_only_with_data_error(draw):
    """Any corruption of a valid stream is either still readable or a DataError."""
    stream = bytearray(py2_batch(np.arange(8, dtype=np.uint8).reshape(2, 4), [1, 2]))
    if draw.draw(st.booleans()):
        for _ in range(draw.draw(st.integers(1, 3))):
            stream[draw.draw(st.integers(0, len(stream) - 1))] = draw.draw(st.integers(0, 255))
    else:
        del stream[draw.draw(st.integers(0, len(stream) - 1)):]
    try:
        parse_cifar_python(bytes(stream), source="fuzz")
    except DataError:
        pass


def test_cifar_python_structure_errors():
    images = np.zeros((2, 3072), np.uint8)
    good = py2_batch(images, [1, 2])
    with pytest.raises(DataError, match=r"p: 2 images but 3 labels"):
        parse_cifar_python(py2_batch(images, [1, 2, 3]), source="p")
    with pytest.raises(DataError, match=r"p: record 1 has label 10"):
        parse_cifar_python(py2_batch(images, [1, 10]), source="p")
    with pytest.raises(DataError, match=r"unsupported array dtype 'O'"):
        parse_cifar_python(py2_batch(images, [1, 2], dtype=b"O"), source="p")
    with pytest.raises(DataError, match=r"unsupported array dtype 'u1' \(byte order ''\)"):
        parse_cifar_python(good.replace(b"U\x01|NNN", b"U\x00NNN"), source="p")
    with pytest.raises(DataError, match=r"refusing to load the global numpy.core.other"):
        parse_cifar_python(py2_batch(images, [1, 2], module=b"numpy.core.other"), source="p")
    with pytest.raises(DataError, match=r"'data' must be a uint8 array of shape \(N, 3072\), "
                                        r"got int16 array of shape \(2, 1536\)"):
        parse_cifar_python(py2_batch(images.view(np.int16), [1, 2], dtype=b"<i2"), source="p")
    short = good.replace(_str(images.tobytes()), _str(images.tobytes()[:-5]))
    with pytest.raises(DataError, match=r"array data has 6139 bytes, shape \(2, 3072\) of uint8 "
                                        r"needs 6144"):
        parse_cifar_python(short, source="p")
    with pytest.raises(DataError, match=r"p: the batch dict lacks \['labels'\]"):
        parse_cifar_python(good.replace(_str(b"labels"), _str(b"lables")), source="p")
    with pytest.raises(DataError, match=r"p: expected a pickled dict, found list"):
        parse_cifar_python(b"\x80\x02]q\x00.", source="p")


# --- CIFAR-10 directories -------------------------------------------------------------------

def write_cifar_dir(root: Path, kind: str) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Five 2-image training batches and a 3-image test batch, binary or python version."""
    directory = root / ("cifar-10-batches-bin" if kind == "bin" else "cifar-10-batches-py")
    directory.mkdir(parents=True)
    parts = {}
    for i, name in enumerate([f"data_batch_{k}" for k in range(1, 6)] + ["test_batch"]):
        images, labels, blob = cifar_records(3 if name == "test_batch" else 2, 10 + i)
        if kind == "bin":
            (directory / (name + ".bin")).write_bytes(blob)
        else:
            (directory / name).write_bytes(py2_batch(images.reshape(len(labels), -1),
                                                     labels.tolist()))
        parts[name] = (images, labels)
    train = [parts[f"data_batch_{k}"] for k in range(1, 6)]
    return {"train": (np.concatenate([p[0] for p in train]),
                      np.concatenate([p[1] for p in train])), "test": parts["test_batch"]}


@pytest.mark.parametrize("kind", ["bin", "py"])
def test_load_cifar10_dir(tmp_path, kind):
    expected = write_cifar_dir(tmp_path, kind)
    for split in ("train", "test"):
        x, y = load_cifar10_dir(tmp_path, split)
        np.testing.assert_array_equal(x, expected[split][0])
        np.testing.assert_array_equal(y, expected[split][1])
    data = load_dataset("cifar10", root=tmp_path, split="all")
    assert data.images.shape == (13, 3, 32, 32) and data.classes[9] == "truck"
    assert len(data.mean) == 3 and data.augmentation.hflip
    suffix = ".bin" if kind == "bin" else ""
    (tmp_path / f"cifar-10-batches-{kind}" / f"data_batch_3{suffix}").unlink()
    with pytest.raises(DataError, match=rf"data_batch_3{suffix} is missing; the set is "
                                        r"incomplete\. Get it"):
        load_dataset("cifar10", root=tmp_path)


def test_cifar_binary_preferred_over_python(tmp_path):
    binary = write_cifar_dir(tmp_path, "bin")
    write_cifar_dir(tmp_path, "py")
    np.testing.assert_array_equal(load_cifar10_dir(tmp_path, "test")[0], binary["test"][0])
