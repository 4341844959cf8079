"""rot180.data batches, normalisation and augmentation.

Oracles: numpy's own ``Generator.permutation`` for the order, PyTorch float32 arithmetic (what
torchvision's ``ToTensor`` + ``Normalize`` compute) for normalisation, and per-image reference
loops replaying the same generator draws for the augmentations.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from rot180.data import (
    Augmentation,
    DataLoader,
    as_generator,
    batches,
    channel_stats,
    normalize,
    random_crop,
    random_hflip,
    random_shift,
)


def images_labels(n: int = 23, c: int = 1, size: int = 6, seed: int = 0
                  ) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return (rng.integers(1, 256, (n, c, size, size), dtype=np.uint8),
            rng.integers(0, 10, n).astype(np.int64))


# --- batches ------------------------------------------------------------------------------

@pytest.mark.parametrize("drop_last", [False, True])
@pytest.mark.parametrize("batch_size", [1, 5, 23, 40])
def test_batches_follow_the_seeded_permutation(batch_size, drop_last):
    images, labels = images_labels()
    order = np.random.default_rng(7).permutation(23)
    got = list(batches(images, labels, batch_size, shuffle=True, rng=7, drop_last=drop_last))
    full = 23 // batch_size * batch_size if drop_last else 23
    assert [len(y) for _, y in got] == [min(batch_size, full - s)
                                        for s in range(0, full, batch_size)]
    if got:
        np.testing.assert_array_equal(np.concatenate([y for _, y in got]), labels[order[:full]])
        np.testing.assert_array_equal(np.concatenate([x for x, _ in got]), images[order[:full]])


def test_batches_without_shuffle_are_in_order():
    images, labels = images_labels()
    got = np.concatenate([y for _, y in batches(images, labels, 4)])
    np.testing.assert_array_equal(got, labels)


def test_batches_errors():
    images, labels = images_labels()
    with pytest.raises(ValueError, match=r"batch_size must be >= 1, got 0"):
        next(batches(images, labels, 0))
    with pytest.raises(TypeError, match=r"batch_size must be an int, got float"):
        next(batches(images, labels, 2.0))
    with pytest.raises(ValueError, match=r"must share the first dimension N"):
        next(batches(images, labels[:-1], 2))
    with pytest.raises(TypeError, match=r"rng must be a numpy.random.Generator, an int seed or "
                                        r"None, got str"):
        as_generator("seed")


# --- DataLoader ---------------------------------------------------------------------------

def epoch(loader: DataLoader) -> list[tuple[np.ndarray, np.ndarray]]:
    return [(x.copy(), y.copy()) for x, y in loader]


def assert_same_epochs(a, b):
    assert len(a) == len(b)
    for (xa, ya), (xb, yb) in zip(a, b, strict=True):
        assert xa.dtype == xb.dtype
        np.testing.assert_array_equal(xa, xb)
        np.testing.assert_array_equal(ya, yb)


@pytest.mark.parametrize("augment", [None, Augmentation(max_shift=2, hflip=True)])
def test_loader_is_reproducible_and_resumes_exactly(augment):
    images, labels = images_labels(c=3)
    make = lambda seed: DataLoader(images, labels, batch_size=5, shuffle=True,  # noqa: E731
                                   rng=seed, augment=augment)
    run = make(3)
    first, second = epoch(run), epoch(run)
    replay = make(3)
    assert_same_epochs(epoch(replay), first)
    state = json.loads(json.dumps(replay.rng_state()))  # survives a JSON checkpoint
    assert_same_epochs(epoch(replay), second)
    resumed = make(99)  # another seed, then the saved state
    resumed.set_rng_state(state)
    assert_same_epochs(epoch(resumed), second)
    assert not np.array_equal(first[0][1], second[0][1])  # each epoch is a new order


def test_loader_shares_a_given_generator():
    images, labels = images_labels()
    rng = np.random.default_rng(1)
    loader = DataLoader(images, labels, batch_size=4, shuffle=True, rng=rng)
    assert loader.rng is rng
    state = rng.bit_generator.state
    ys = np.concatenate([y for _, y in loader])
    np.testing.assert_array_equal(ys, labels[np.random.default_rng(1).permutation(23)])
    assert rng.bit_generator.state != state


@pytest.mark.parametrize(("drop_last", "expected"), [(False, 5), (True, 4)])
def test_loader_len(drop_last, expected):
    images, labels = images_labels()
    loader = DataLoader(images, labels, batch_size=5, drop_last=drop_last)
    assert len(loader) == expected == len(list(loader))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_loader_normalises_like_torchvision(dtype):
    images, labels = images_labels(c=3)
    mean, std = (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)
    x, y = next(iter(DataLoader(images, labels, batch_size=8, mean=mean, std=std,
                                dtype=dtype)))
    tdtype = torch.float32 if dtype == np.float32 else torch.float64
    t = torch.from_numpy(images[:8]).to(tdtype).div(255)
    t = t.sub(torch.tensor(mean, dtype=tdtype)[:, None, None])
    t = t.div(torch.tensor(std, dtype=tdtype)[:, None, None])
    assert x.dtype == dtype and y.dtype == np.int64
    np.testing.assert_array_equal(x, t.numpy())


def test_loader_rejects_bad_arguments():
    images, labels = images_labels()
    with pytest.raises(ValueError, match=r"images must be 4-D \(N, C, H, W\), got shape "
                                         r"\(23, 36\)"):
        DataLoader(images.reshape(23, -1), labels, batch_size=2)
    with pytest.raises(TypeError, match=r"augment must be callable"):
        DataLoader(images, labels, batch_size=2, augment=3)
    with pytest.raises(TypeError, match=r"dtype must be float32 or float64, got float16"):
        DataLoader(images, labels, batch_size=2, dtype=np.float16)
    with pytest.raises(ValueError, match=r"state is not a PCG64 state \(got 'MT19937'\)"):
        DataLoader(images, labels, batch_size=2).set_rng_state(
            np.random.Generator(np.random.MT19937(0)).bit_generator.state)


# --- normalisation ------------------------------------------------------------------------

def test_normalize_default_is_mnist_and_max_value_scales():
    images = np.array([0, 255, 16, 8], dtype=np.uint8).reshape(1, 1, 2, 2)
    np.testing.assert_allclose(normalize(images, dtype=np.float64),
                               (images / 255 - 0.1307) / 0.3081, rtol=1e-15)
    np.testing.assert_allclose(normalize(images, mean=0.0, std=1.0, max_value=16,
                                         dtype=np.float64), images / 16, rtol=1e-15)


@pytest.mark.parametrize(("kwargs", "error", "match"), [
    ({"mean": (0.1, 0.2)}, ValueError, r"mean needs 1 or 3 values \(one per channel\), got 2"),
    ({"std": 0.0}, ValueError, r"std must be positive"),
    ({"dtype": np.int32}, TypeError, r"dtype must be float32 or float64, got int32"),
])
def test_normalize_errors(kwargs, error, match):
    with pytest.raises(error, match=match):
        normalize(np.zeros((1, 3, 2, 2), np.uint8), **kwargs)


def test_channel_stats_equal_numpy():
    images, _ = images_labels(n=5000, c=2, size=3)  # more than one 4,096-image chunk
    mean, std = channel_stats(images)
    scaled = images / 255.0
    np.testing.assert_allclose(mean, scaled.mean(axis=(0, 2, 3)), rtol=1e-12)
    np.testing.assert_allclose(std, scaled.std(axis=(0, 2, 3)), rtol=1e-9)


# --- augmentation -------------------------------------------------------------------------

def crop_reference(images, dy, dx, h, w, padding):
    padded = np.pad(images, ((0, 0), (0, 0), (padding, padding), (padding, padding)))
    return np.stack([padded[i, :, dy[i]:dy[i] + h, dx[i]:dx[i] + w]
                     for i in range(len(images))])


@settings(max_examples=40, deadline=None)
@given(st.integers(1, 6), st.integers(1, 3), st.integers(2, 7), st.integers(2, 7),
       st.integers(0, 3), st.integers(0, 2**32 - 1), st.data())
def test_random_crop_equals_reference_loop(n, c, height, width, padding, seed, draw):
    images = np.random.default_rng(seed).integers(0, 256, (n, c, height, width),
                                                  dtype=np.uint8)
    h = draw.draw(st.integers(1, height + 2 * padding))
    w = draw.draw(st.integers(1, width + 2 * padding))
    out = random_crop(images, np.random.default_rng(seed), size=(h, w), padding=padding)
    replay = np.random.default_rng(seed)
    dy = replay.integers(0, height + 2 * padding - h + 1, size=n)
    dx = replay.integers(0, width + 2 * padding - w + 1, size=n)
    assert out.shape == (n, c, h, w) and out.dtype == np.uint8
    np.testing.assert_array_equal(out, crop_reference(images, dy, dx, h, w, padding))


@pytest.mark.parametrize("dtype", [np.uint8, np.float32, np.float64])
def test_random_shift_moves_by_at_most_max_shift(dtype):
    images = images_labels(n=50, size=8)[0].astype(dtype)
    out = random_shift(images, np.random.default_rng(0), max_shift=2)
    assert out.shape == images.shape and out.dtype == dtype
    for img, moved in zip(images, out, strict=True):
        matches = [(sy, sx) for sy in range(-2, 3) for sx in range(-2, 3)
                   if np.array_equal(moved, shifted(img, sy, sx))]
        assert matches, "every output is the input translated by |s| <= 2, zero filled"
    assert not np.array_equal(out, images)


def shifted(img: np.ndarray, sy: int, sx: int) -> np.ndarray:
    """``img`` translated by ``(sy, sx)`` with zero fill, by explicit slicing."""
    out = np.zeros_like(img)
    h, w = img.shape[1:]
    out[:, max(sy, 0):h + min(sy, 0), max(sx, 0):w + min(sx, 0)] = \
        img[:, max(-sy, 0):h - max(sy, 0), max(-sx, 0):w - max(sx, 0)]
    return out


def test_random_hflip_equals_reference():
    images = images_labels(n=40, c=3)[0]
    out = random_hflip(images, np.random.default_rng(5), p=0.5)
    flips = np.random.default_rng(5).random(40) < 0.5
    assert 0 < flips.sum() < 40
    for img, got, flip in zip(images, out, flips, strict=True):
        np.testing.assert_array_equal(got, img[:, :, ::-1] if flip else img)
    np.testing.assert_array_equal(random_hflip(images, np.random.default_rng(0), p=0.0), images)


def test_augmentation_is_reproducible_and_keeps_dtype():
    images = images_labels(n=16, c=3, size=8)[0]
    aug = Augmentation(max_shift=4, hflip=True)
    a = aug(images, np.random.default_rng(11))
    b = aug(images, np.random.default_rng(11))
    c = aug(images, np.random.default_rng(12))
    assert a.shape == images.shape and a.dtype == np.uint8
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)
    assert Augmentation()(images, np.random.default_rng(0)) is images


@pytest.mark.parametrize(("call", "error", "match"), [
    (lambda x, r: random_shift(x, r, max_shift=-1), ValueError, r"max_shift must be >= 0"),
    (lambda x, r: random_crop(x, r, size=9, padding=1), ValueError,
     r"crop size \(9, 9\) must be positive and fit the padded image \(8, 8\)"),
    (lambda x, r: random_crop(x, r, size=2, padding=-1), ValueError, r"padding must be >= 0"),
    (lambda x, r: random_hflip(x, r, p=1.5), ValueError,
     r"p must be finite and >= 0 and <= 1, got 1.5"),
    (lambda x, r: random_hflip(x, 0), TypeError, r"rng must be a numpy.random.Generator, got "
                                                 r"int"),
    (lambda x, r: random_hflip(x[0], r), ValueError, r"images must be 4-D"),
])
def test_augmentation_errors(call, error, match):
    with pytest.raises(error, match=match):
        call(np.zeros((2, 1, 6, 6), np.uint8), np.random.default_rng(0))
