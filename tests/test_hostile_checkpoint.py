"""Hostile checkpoints end fast with a CheckpointError that names the file: never a hang (FIFO),
an endless read (/dev/zero, /dev/urandom), a huge allocation (forged ``width``/``num_classes``),
a RecursionError (metadata nested 100,000 deep) or a stray AttributeError/KeyError/IndexError/
ZeroDivisionError/OverflowError from metadata of the wrong types. Weights of the wrong dtype are
listed, not cast.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from safetensors.numpy import save as st_save

from rot180.models import lenet5, resnet_small
from rot180.train import CheckpointError, TrainConfig, Trainer, load_checkpoint
from rot180.train.checkpoint import MAX_CHECKPOINT_BYTES

pytestmark = pytest.mark.usefixtures("one_thread")  # see conftest.py

CARD = {"model": "lenet5", "model_config": {"num_classes": 10, "in_channels": 1},
        "image_shape": [1, 28, 28], "class_names": [str(d) for d in range(10)],
        "data": {"name": "mnist5k", "mean": [0.1307], "std": [0.3081], "max_value": 255.0}}


def forge(path: Path, meta: object, state: dict[str, np.ndarray] | None = None) -> Path:
    """A safetensors file with lenet5's tensors (or ``state``) and ``meta`` as rot180 JSON."""
    tensors = state if state is not None else lenet5().state_dict()
    text = meta if isinstance(meta, str) else json.dumps(meta)
    path.write_bytes(st_save(tensors, metadata={"rot180": text}))
    return path


def use(path: Path) -> None:
    """Everything evaluate/predict/saliency do with a checkpoint before any data."""
    ckpt = load_checkpoint(path)
    ckpt.card()
    ckpt.build_model()


# -- not a regular file, or too big ------------------------------------------------------------
@pytest.mark.parametrize("device", ["/dev/zero", "/dev/urandom", "/dev/null"])
def test_a_device_is_refused_at_once(device) -> None:
    if not os.path.exists(device):
        pytest.fail(f"{device} is missing on this machine")
    t0 = time.perf_counter()
    with pytest.raises(CheckpointError, match=f"{device}: is a character device, not a regular"):
        load_checkpoint(device)
    assert time.perf_counter() - t0 < 1


def test_a_fifo_is_refused_without_blocking(tmp_path) -> None:
    fifo = tmp_path / "last.safetensors"
    os.mkfifo(fifo)    # no writer: a plain open() would block for ever
    t0 = time.perf_counter()
    with pytest.raises(CheckpointError, match=r"last\.safetensors: is a FIFO \(named pipe\)"):
        load_checkpoint(fifo)
    assert time.perf_counter() - t0 < 1


def test_a_file_over_the_size_limit_is_refused_before_reading(tmp_path) -> None:
    big = tmp_path / "big.safetensors"
    with open(big, "wb") as f:            # sparse: no disk used
        f.truncate(MAX_CHECKPOINT_BYTES + 1)
    with pytest.raises(CheckpointError, match=r"big\.safetensors: is 1,073,741,825 bytes, more "
                                              r"than any checkpoint file"):
        load_checkpoint(big)


def test_metadata_nested_100000_deep_is_a_checkpoint_error(tmp_path) -> None:
    path = forge(tmp_path / "deep.safetensors", "[" * 100_000 + "]" * 100_000)
    with pytest.raises(CheckpointError, match=r"deep\.safetensors: .*nested too deeply"):
        load_checkpoint(path)


# -- the configuration must agree with the tensors, before anything is built -------------------
@pytest.mark.parametrize(("model", "config", "message"), [
    ("vgg_small", {"width": 10**6}, r"model_config\['width'\] must be in 1 \.\. 100000, "
                                    r"got 1000000"),
    ("vgg_small", {"width": 4096}, r"model_config says in_channels=3, but the tensor 0\.weight"),
    ("lenet5", {"num_classes": 50_000}, r"num_classes=50000, but the tensor 11\.weight has shape "
                                        r"\(10, 84\)"),
    ("lenet5", {"in_channels": 3}, r"in_channels=3, but the tensor 0\.weight has shape "
                                   r"\(6, 1, 5, 5\)"),
    ("resnet_small", {"width": 2048, "in_channels": 1}, r"width=2048, but the tensor 0\.weight"),
    ("lenet5", {"seed": 3}, r"model_config of lenet5 takes \['num_classes', 'in_channels'\], not "
                            r"\['seed'\]"),
    ("lenet5", {"num_classes": True}, r"model_config\['num_classes'\] must be an int, got bool"),
    ("alexnet", {}, r"model must be one of \['lenet5', 'resnet_small', 'vgg_small'\]"),
])
def test_a_forged_configuration_is_refused_before_the_model_is_built(tmp_path, model, config,
                                                                     message) -> None:
    state = (resnet_small(in_channels=1).state_dict() if model == "resnet_small"
             else lenet5().state_dict())
    path = forge(tmp_path / "forged.safetensors", {**CARD, "format": "rot180-checkpoint-v1",
                                                    "model": model, "model_config": config},
                 state)
    t0 = time.perf_counter()
    with pytest.raises(CheckpointError, match=message) as info:
        load_checkpoint(path).build_model()
    assert str(info.value).startswith(str(path))
    assert time.perf_counter() - t0 < 2     # nothing of the forged size was allocated


# -- the card's fields, one wrong type or value at a time ---------------------------------------
def _set(meta: dict, dotted: str, value: object) -> dict:
    meta = json.loads(json.dumps(meta))
    *head, last = dotted.split(".")
    target = meta
    for k in head:
        target = target[k]
    target[last] = value
    return meta


@pytest.mark.parametrize(("field", "value", "message"), [
    ("image_shape", "28x28", r"image_shape must be a list \[C, H, W\], got str"),
    ("image_shape", [1, 28], r"image_shape must be a list \[C, H, W\]"),
    ("image_shape", [1, 0, 28], r"image_shape must be in 1 \.\. 4096, got 0"),
    ("image_shape", [1, 28, 1e300], r"image_shape must be an int, got float"),
    ("image_shape", [3, 28, 28], r"image_shape has 3 channels but the model takes 1"),
    ("class_names", None, r"class_names must be a list of 10 names"),
    ("class_names", ["a"] * 9, r"class_names must be a list of 10 names"),
    ("class_names", list(range(10)), r"class_names must be a list of 10 names"),
    ("data", [], r"data must be a JSON object, got list"),
    ("data.name", 7, r"data\.name must be a data set name, got int 7"),
    ("data.std", [0.0], r"data\.std must hold finite numbers in \[1e-06, 1000\], got float 0\.0"),
    ("data.std", [1e-320], r"data\.std must hold finite numbers in \[1e-06, 1000\]"),
    ("data.mean", [1e308], r"data\.mean must hold finite numbers in \[-1000, 1000\]"),
    ("data.std", [], r"data\.std must be a list of 1 numbers"),
    ("data.mean", ["0.1"], r"data\.mean must hold finite numbers in .*, got str"),
    ("data.max_value", 0, r"data\.max_value must be a number in \[1, 65535\], got int 0"),
    ("data.max_value", 1e-300, r"data\.max_value must be a number in \[1, 65535\]"),
    ("data.max_value", 1e400, r"data\.max_value must be a number in \[1, 65535\]"),
    # names are echoed to the terminal: no escape sequences or carriage returns
    ("class_names", ["0", "\x1b[31mRED\x1b[0m\rOVERWRITTEN"] + [str(i) for i in range(2, 10)],
     r"class_names must be a list of 10 names"),
    ("data.name", "mnist\x1b[2J", r"data\.name must be a data set name"),
    # a LeNet card that claims 4096x4096 images (it cost 9 s and 1.7 GB before an error)
    ("image_shape", [1, 4096, 4096], r"image_shape \[1, 4096, 4096\] does not fit the model: "
                                     r"lenet5 needs 28x28 images"),
    ("model_config", "small", r"model_config must be a JSON object, got str"),
])
def test_each_malformed_card_field_is_a_checkpoint_error(tmp_path, field, value,
                                                         message) -> None:
    meta = _set({**CARD, "format": "rot180-checkpoint-v1"}, field, value)
    path = forge(tmp_path / "bad.safetensors", meta)
    with pytest.raises(CheckpointError, match=message) as info:
        use(path)
    assert str(info.value).startswith(str(path))


# -- weights of the wrong dtype are listed, not cast -------------------------------------------
def test_weights_of_the_wrong_dtype_are_listed_not_cast(tmp_path) -> None:
    state = lenet5().state_dict()
    state["3.weight"] = state["3.weight"].astype(np.float16)
    state["11.bias"] = np.zeros(10, np.int32)
    path = forge(tmp_path / "mixed.safetensors", {**CARD, "format": "rot180-checkpoint-v1"}, state)
    with pytest.raises(CheckpointError, match=r"mixed\.safetensors: weights of the wrong dtype: ") \
            as info:
        load_checkpoint(path).build_model()
    msg = str(info.value)
    assert "3.weight is float16 (expected float32)" in msg
    assert "11.bias is int32 (expected float32)" in msg


def test_an_all_float16_checkpoint_lists_every_weight(tmp_path) -> None:
    state = {k: v.astype(np.float16) for k, v in lenet5().state_dict().items()}
    path = forge(tmp_path / "half.safetensors", {**CARD, "format": "rot180-checkpoint-v1"}, state)
    with pytest.raises(CheckpointError) as info:
        load_checkpoint(path).build_model()
    assert str(info.value).count("is float16 (expected float32)") == len(state)


# -- fuzzing: whatever the metadata, only CheckpointError comes out -----------------------------
JSON = st.recursive(
    st.none() | st.booleans() | st.integers(-2**70, 2**70) | st.floats(allow_nan=False)
    | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner,
                                                                max_size=4),
    max_leaves=12)
KEYS = ["model", "model_config", "image_shape", "class_names", "data", "epoch", "step",
        "history", "best_val_acc", "rng_state", "scheduler", "partial_epoch", "config",
        "optimizer", "schedule_start_epoch", "module_rng_states", "epoch_start_rng_state"]


@pytest.fixture(scope="module")
def small_data():
    """The trainer gets the first 100 images of each split (loaded once)."""
    import dataclasses
    import functools

    import rot180.train.trainer as trainer_mod

    real = trainer_mod.load_dataset

    @functools.cache
    def small(name, *, split="train", **kw):
        ds = real(name, split=split, **kw)
        return dataclasses.replace(ds, images=ds.images[:100], labels=ds.labels[:100])

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(trainer_mod, "load_dataset", small)
        yield


@pytest.fixture(scope="module")
def real_last(tmp_path_factory, small_data) -> tuple[dict, Path]:
    """The metadata of a last.safetensors that a (tiny) training run wrote."""
    out = tmp_path_factory.mktemp("run")
    Trainer(TrainConfig(epochs=1, batch_size=50, out=str(out)), progress=False,
            log=lambda s: None).fit()
    raw = (out / "last.safetensors").read_bytes()
    n = int.from_bytes(raw[:8], "little")
    meta = json.loads(json.loads(raw[8:8 + n])["__metadata__"]["rot180"])
    return meta, out


@settings(max_examples=150, derandomize=True, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture,
                                 HealthCheck.too_slow])
@given(key=st.sampled_from(KEYS), value=JSON, drop=st.booleans())
def test_fuzzed_metadata_only_ever_raises_checkpoint_error(real_last, tmp_path_factory, key,
                                                          value, drop) -> None:
    meta, out = real_last
    meta = json.loads(json.dumps(meta))
    if drop:
        meta.pop(key, None)
    else:
        meta[key] = value
    ckpt_dir = tmp_path_factory.mktemp("fuzz")
    path = ckpt_dir / "last.safetensors"
    good = load_checkpoint(out / "last.safetensors")
    tensors = dict(good.model_state)
    from rot180.train.checkpoint import _split_optimizer_state

    opt_tensors, _ = _split_optimizer_state(good.optimizer_state)
    tensors.update(opt_tensors)
    forge(path, meta, tensors)
    try:
        use(path)
    except CheckpointError:
        pass
    t = Trainer(TrainConfig(epochs=1, batch_size=50, out=str(ckpt_dir)), progress=False,
                log=lambda s: None)
    try:
        t.resume(path)
    except CheckpointError:
        pass
    except ValueError as exc:   # settings that differ (a config entry fuzzed) are refused
        assert str(exc).startswith("--resume"), exc


def test_evaluate_ignores_a_config_of_the_wrong_type(tmp_path, capsys) -> None:
    """Only the card is needed to evaluate; a malformed run config (used for data_root) is not
    an AttributeError."""
    from rot180.cli import main

    path = forge(tmp_path / "odd.safetensors", {**CARD, "format": "rot180-checkpoint-v1",
                                                 "config": [1, 2]})
    code = main(["evaluate", str(path), "--data", "digits8x8"])
    err = capsys.readouterr().err
    assert code == 2 and "this lenet5 checkpoint needs 1x28x28 images" in err
    assert "Traceback" not in err and "AttributeError" not in err
