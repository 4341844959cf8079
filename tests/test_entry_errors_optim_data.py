"""Bad input at the optimizers, the schedulers and :mod:`rot180.data`: the documented exception
and its message, one table row per bad input, and the count of the rows of all three tables
(with ``test_entry_errors_functional.py`` and ``test_entry_errors_layers.py``). ``ValueError``
for a wrong value or shape, ``TypeError`` for a wrong type or dtype; ``rot180.data.DataError``
(a ``ValueError``) for a bad data file or path. Each message names the argument, says what was
expected and what was received, and (asserted where it matters) how to fix it.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from _entry_errors_common import LABELS, NAN, row
from rot180 import nn
from rot180.data import (
    Augmentation,
    DataError,
    DataLoader,
    batches,
    channel_stats,
    load_dataset,
    normalize,
    random_crop,
    random_hflip,
    random_shift,
    read_cifar_binary,
    read_idx,
    split_indices,
)
from rot180.optim import SGD, Adam, StepLR
from test_entry_errors_functional import ELEMENTWISE, LOSSES, POOLING
from test_entry_errors_layers import BACKWARD, CONSTRUCTORS, FORWARD

IMAGES = np.zeros((4, 1, 4, 4), np.uint8)
RNG = np.random.default_rng(0)

# -- optimizers and schedulers ----------------------------------------------------------------


def _sgd() -> SGD:
    p = nn.Parameter(np.zeros(3))
    p.grad[...] = 1.0
    opt = SGD([p], lr=0.1, momentum=0.9)
    opt.step()
    return opt


def _with_grad(grad: object) -> SGD:
    p = nn.Parameter(np.zeros(3))
    p.grad = grad  # type: ignore[assignment]
    return SGD([p], lr=0.1)


def _groups(**change: object) -> list[dict]:
    groups = _sgd().state_dict()["param_groups"]
    groups[0].update(change)
    return groups


OPTIMIZERS = [
    row(lambda: SGD([nn.Parameter(np.zeros(2))], lr=NAN), ValueError,
        r"lr must be finite and >= 0, got nan", "SGD lr nan"),
    row(lambda: SGD([nn.Parameter(np.zeros(2))], lr="0.1"), TypeError,
        r"lr must be a real number, got str '0\.1'", "SGD lr str"),
    row(lambda: SGD([nn.Parameter(np.zeros(2))], lr=-1.0), ValueError,
        r"Invalid learning rate: -1\.0 \(expected lr >= 0\)", "SGD lr negative"),
    row(lambda: Adam([nn.Parameter(np.zeros(2))], betas=(NAN, 0.9)), ValueError,
        r"Adam: betas\[0\] must be finite and >= 0 and < 1, got nan", "Adam betas nan"),
    row(lambda: SGD([np.zeros(3)], lr=0.1), TypeError,
        r"optimizer can only optimize Parameters, but one of the params is ndarray", "arrays"),
    row(lambda: _with_grad(np.zeros(3, np.float32)).step(), TypeError,
        r"has dtype float32; expected float64\. rot180 never upcasts silently", "step dtype"),
    row(lambda: _with_grad(np.zeros(4)).step(), ValueError,
        r"gradient of Parameter\(shape=\(3,\), dtype=float64\) must be an array of shape "
        r"\(3,\), got \(4,\)", "step shape"),
    row(lambda: _sgd().load_state_dict({"state": {}, "param_groups": [5]}), ValueError,
        r"optimizer state_dict\['param_groups'\] must be a list of dicts, each with a 'params' "
        r"list of parameter indices", "load group not a dict"),
    row(lambda: _sgd().load_state_dict({"state": [1], "param_groups": _groups()}), ValueError,
        r"optimizer state_dict\['state'\] must map parameter indices to dicts", "load state"),
    row(lambda: _sgd().load_state_dict({"state": {"a": {}}, "param_groups": _groups()}),
        ValueError, r"loaded state refers to parameter index 'a'; expected a non-negative int",
        "load index word"),
    row(lambda: _sgd().load_state_dict({"state": {0: {"momentum_buffer": np.full(3, NAN)}},
                                        "param_groups": _groups()}), ValueError,
        r"state 'momentum_buffer' of parameter 0 holds NaN or infinite values\. The saved run "
        r"had diverged", "load NaN buffer"),
    row(lambda: _sgd().load_state_dict({"state": {0: {"momentum_buffer": np.array(["a"] * 3)}},
                                        "param_groups": _groups()}), TypeError,
        r"state 'momentum_buffer' of parameter 0: expected a numeric array, got dtype <U1",
        "load string buffer"),
    row(lambda: _sgd().load_state_dict({"state": {}, "param_groups": _groups(lr=NAN)}),
        ValueError, r"lr must be finite and >= 0, got nan", "load lr nan"),
    row(lambda: StepLR(_sgd(), 2).load_state_dict({
        "step_size": 2, "gamma": 0.1, "last_epoch": "3", "_step_count": 1, "base_lrs": [0.1],
        "_last_lr": [0.1]}), TypeError, r"StepLR: last_epoch must be an int, got str '3'",
        "scheduler last_epoch"),
    row(lambda: StepLR(_sgd(), 2).load_state_dict({
        "step_size": 2, "gamma": 0.1, "last_epoch": 0, "_step_count": 1, "base_lrs": 0.1,
        "_last_lr": [0.1]}), ValueError, r"StepLR state_dict\['base_lrs'\] must be a list, got "
        r"float", "scheduler base_lrs"),
]

# -- data -------------------------------------------------------------------------------------

DATA = [
    row(lambda: normalize(IMAGES, std=NAN), ValueError, r"std must be finite, got nan",
        "normalize std nan"),
    row(lambda: normalize(IMAGES, std=0.0), ValueError, r"std must be positive, got 0\.0",
        "normalize std 0"),
    row(lambda: normalize(IMAGES, mean="a"), TypeError,
        r"mean must be a number or a sequence of numbers, got str 'a'", "normalize mean str"),
    row(lambda: normalize(IMAGES, max_value=0), ValueError,
        r"max_value must be positive \(255 for 8-bit images\), got 0", "normalize max 0"),
    row(lambda: normalize(IMAGES.astype(complex)), TypeError,
        r"images must have an integer or float dtype \(uint8 as stored\), got complex128",
        "normalize complex"),
    row(lambda: normalize(IMAGES, dtype="foo"), TypeError,
        r"dtype must be float32 or float64, got 'foo'\. Pass dtype=np\.float32", "normalize dtype"),
    row(lambda: channel_stats(IMAGES[:0]), ValueError,
        r"channel_stats needs at least one pixel per channel", "channel_stats empty"),
    row(lambda: DataLoader(IMAGES, np.array([0.5, 1.0, 2.0, 3.0]), batch_size=2), TypeError,
        r"labels must be integer class indices, got dtype float64", "loader float labels"),
    row(lambda: DataLoader(IMAGES[:0], LABELS[:0], batch_size=2), ValueError,
        r"DataLoader got no images \(N = 0\)", "loader empty"),
    row(lambda: DataLoader(IMAGES, LABELS, batch_size=2, shuffle="yes"), TypeError,
        r"shuffle must be True or False, got str 'yes'", "loader shuffle str"),
    row(lambda: DataLoader(IMAGES, LABELS, batch_size=2, std=NAN), ValueError,
        r"std must be finite, got nan", "loader std nan"),
    row(lambda: DataLoader(IMAGES, LABELS, batch_size=2, rng=-1), ValueError,
        r"rng seed must be >= 0, got -1", "loader seed"),
    row(lambda: next(batches(IMAGES, LABELS, 2, drop_last=1)), TypeError,
        r"drop_last must be True or False, got int 1", "batches drop_last"),
    row(lambda: random_crop(IMAGES, RNG, size=2.5), TypeError,
        r"size must be an int or a pair \(h, w\) of ints, got 2\.5", "crop size float"),
    row(lambda: random_crop(IMAGES, RNG, size=(2, 2, 2)), TypeError,
        r"size must be an int or a pair \(h, w\) of ints", "crop size triple"),
    row(lambda: random_crop(IMAGES, RNG, size=2, padding=1.5), TypeError,
        r"padding must be an int, got float 1\.5", "crop padding float"),
    row(lambda: random_crop(IMAGES, RNG, size=9), ValueError,
        r"crop size \(9, 9\) must be positive and fit the padded image \(4, 4\)", "crop big"),
    row(lambda: random_shift(IMAGES, RNG, max_shift="2"), TypeError,
        r"max_shift must be an int, got str '2'", "shift str"),
    row(lambda: random_hflip(IMAGES, RNG, p=NAN), ValueError,
        r"p must be finite and >= 0 and <= 1, got nan", "hflip nan"),
    row(lambda: Augmentation(max_shift=-1), ValueError, r"max_shift must be >= 0, got -1",
        "augmentation negative"),
    row(lambda: Augmentation(hflip="yes"), TypeError, r"hflip must be True or False",
        "augmentation flag"),
    row(lambda: split_indices(LABELS, test_size=NAN), ValueError,
        r"test_size must be finite, got nan", "split nan"),
    row(lambda: split_indices(LABELS, test_size=1, seed=-1), ValueError,
        r"seed must be >= 0, got -1", "split seed"),
    row(lambda: split_indices(LABELS.astype(float), test_size=1), TypeError,
        r"labels must be a 1-D integer array, got 1-D float64", "split float labels"),
    row(lambda: load_dataset("mnist5000"), ValueError,
        r"Unknown data set 'mnist5000'; valid names are mnist5k, digits8x8", "unknown name"),
    row(lambda: load_dataset("mnist", root=5), TypeError,
        r"root must be a directory path \(str or pathlib\.Path\), got int 5", "root int"),
    row(lambda: read_idx(None), TypeError, r"path must be a str or pathlib\.Path, got NoneType",
        "read_idx None"),
]


def _bad_paths(tmp: Path) -> list:
    return [
        (lambda: read_idx(tmp), DataError, rf"{tmp}: is a directory; expected an IDX file"),
        (lambda: read_idx(tmp / "missing"), DataError, r"missing: no such file"),
        (lambda: read_cifar_binary(tmp), DataError,
         rf"{tmp}: is a directory; expected a CIFAR-10 batch file"),
        (lambda: load_dataset("mnist", root=tmp / "nowhere"), DataError,
         r"mnist: no data found under .*nowhere\. Get it with --download"),
    ]


@pytest.mark.parametrize(("call", "exc", "match"), OPTIMIZERS + DATA)
def test_bad_input_raises_the_documented_error(call: Callable, exc: type, match: str) -> None:
    with pytest.raises(exc, match=match):
        call()


def test_bad_paths_raise_data_errors(tmp_path: Path) -> None:
    for call, exc, match in _bad_paths(tmp_path):
        with pytest.raises(exc, match=match):
            call()
        assert issubclass(exc, ValueError)


def test_row_count() -> None:
    """The table above holds this many bad inputs (quoted in RELIABILITY.md)."""
    rows = (POOLING + ELEMENTWISE + LOSSES + CONSTRUCTORS + FORWARD + BACKWARD + OPTIMIZERS
            + DATA)
    assert len(rows) + len(_bad_paths(Path("."))) >= 152
