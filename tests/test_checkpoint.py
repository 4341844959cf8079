"""Checkpoints: safetensors + JSON, exact round trips, PyTorch interop, atomic writes, clear errors.

The PyTorch side is the oracle for the file format: ``safetensors.torch.load_file`` must read our
file into the equivalent ``torch.nn`` model, whose logits then equal ours.
"""

from __future__ import annotations

import errno
import json
import os
import stat
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.numpy import save_file as st_save_file
from safetensors.torch import load_file as torch_load_file

from _training import fill_disk_on_write
from rot180 import optim
from rot180.models import build_model, lenet5, resnet_small
from rot180.nn import SoftmaxCrossEntropy, StateDictError
from rot180.train import Checkpoint, CheckpointError, load_checkpoint, save_checkpoint
from rot180.train import checkpoint as ckpt_mod
from test_models import TWINS  # the PyTorch twins of the zoo, written independently there

pytestmark = pytest.mark.usefixtures("one_thread")  # see conftest.py


def _batch(rng: np.random.Generator, n: int = 8, dtype=np.float32):
    return rng.standard_normal((n, 1, 28, 28)).astype(dtype), rng.integers(0, 10, n)


def _train_steps(model, opt, rng, steps: int, dtype=np.float32) -> list[float]:
    loss = SoftmaxCrossEntropy()
    out = []
    for _ in range(steps):
        x, y = _batch(rng, dtype=dtype)
        out.append(loss.forward(model.forward(x), y))
        opt.zero_grad()
        model.backward(loss.backward())
        opt.step()
    return out


OPTIMIZERS = {
    "sgd": lambda ps: optim.SGD(ps, lr=0.05, momentum=0.9, weight_decay=5e-4, nesterov=True),
    "adam": lambda ps: optim.Adam(ps, lr=1e-3, betas=(0.8, 0.99), weight_decay=1e-4),
    "adamw": lambda ps: optim.AdamW(ps, lr=1e-3, amsgrad=True),
}


# -- round trips ------------------------------------------------------------------------------
@pytest.mark.parametrize("opt_name", sorted(OPTIMIZERS))
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_round_trip_restores_model_optimizer_and_meta(tmp_path, opt_name, dtype) -> None:
    rng = np.random.default_rng(0)
    model = lenet5(seed=1, dtype=dtype)
    opt = OPTIMIZERS[opt_name](model.parameters())
    _train_steps(model, opt, rng, 3, dtype)
    gen = np.random.default_rng(42)
    gen.random(5)
    meta = {"model": "lenet5", "model_config": {"num_classes": 10, "in_channels": 1},
            "epoch": 3, "step": 12, "history": [{"epoch": 1, "val_acc": 0.1 + 0.2}],
            "rng_state": gen.bit_generator.state, "note": "héllo"}
    path = save_checkpoint(tmp_path / "ck.safetensors", model, opt, **meta)
    assert path == tmp_path / "ck.safetensors"

    ck = load_checkpoint(path)
    assert isinstance(ck, Checkpoint) and ck.path == path
    for k, v in meta.items():
        assert ck.meta[k] == v, k          # floats round-trip exactly through JSON
    assert ck.meta["optimizer_class"] == type(opt).__name__
    own = model.state_dict()
    assert set(ck.model_state) == set(own)
    for k, v in own.items():
        assert ck.model_state[k].dtype == v.dtype
        np.testing.assert_array_equal(ck.model_state[k], v)

    # the restored pair continues exactly as the original one does
    model2 = ck.build_model()
    assert all(p.dtype == dtype for p in model2.parameters())
    opt2 = OPTIMIZERS[opt_name](model2.parameters())
    opt2.load_state_dict(ck.optimizer_state)
    restored_gen = np.random.default_rng()
    restored_gen.bit_generator.state = ck.meta["rng_state"]
    assert restored_gen.random() == gen.random()
    a = _train_steps(model, opt, np.random.default_rng(5), 3, dtype)
    b = _train_steps(model2, opt2, np.random.default_rng(5), 3, dtype)
    assert a == b
    for (k, p), (_, q) in zip(model.named_parameters(), model2.named_parameters(), strict=True):
        np.testing.assert_array_equal(p.data, q.data, err_msg=k)


def test_optimizer_state_arrays_survive_exactly(tmp_path) -> None:
    model = lenet5(seed=0)
    opt = optim.Adam(model.parameters(), lr=1e-3)
    _train_steps(model, opt, np.random.default_rng(1), 2)
    save_checkpoint(tmp_path / "a.safetensors", model, opt, model="lenet5")
    got = load_checkpoint(tmp_path / "a.safetensors").optimizer_state
    want = opt.state_dict()
    assert set(got["state"]) == set(want["state"])
    for i, entry in want["state"].items():
        assert set(got["state"][i]) == set(entry)
        for name, value in entry.items():
            np.testing.assert_array_equal(got["state"][i][name], value)


def test_model_only_checkpoint_has_no_optimizer(tmp_path) -> None:
    save_checkpoint(tmp_path / "m.safetensors", lenet5(), model="lenet5")
    ck = load_checkpoint(tmp_path / "m.safetensors")
    assert ck.optimizer_state is None
    assert not any(k.startswith("optimizer.") for k in ck.model_state)


def test_bn_model_round_trip_keeps_buffers_and_their_dtypes(tmp_path) -> None:
    model = resnet_small(seed=0, width=4)
    model.forward(np.random.default_rng(0).standard_normal((2, 3, 32, 32)).astype(np.float32))
    save_checkpoint(tmp_path / "r.safetensors", model, model="resnet_small",
                    model_config={"width": 4})
    ck = load_checkpoint(tmp_path / "r.safetensors")
    assert ck.model_state["1.num_batches_tracked"].dtype == np.int64
    assert ck.model_state["1.num_batches_tracked"].shape == ()   # 0-d, as in PyTorch
    assert ck.model_state["1.num_batches_tracked"] == 1
    rebuilt = ck.build_model()
    for k, v in model.state_dict().items():
        np.testing.assert_array_equal(rebuilt.state_dict()[k], v)


def test_meta_must_be_json(tmp_path) -> None:
    with pytest.raises(TypeError, match="metadata must be JSON-serialisable"):
        save_checkpoint(tmp_path / "x.safetensors", lenet5(), when=object())
    with pytest.raises(TypeError, match="metadata must be JSON-serialisable"):
        save_checkpoint(tmp_path / "x.safetensors", lenet5(), loss=float("nan"))
    assert not (tmp_path / "x.safetensors").exists()


# -- PyTorch reads the file -------------------------------------------------------------------
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_file_loads_in_pytorch_and_gives_the_same_logits(tmp_path, dtype) -> None:
    rng = np.random.default_rng(3)
    model = lenet5(seed=2, dtype=dtype)
    opt = optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    _train_steps(model, opt, rng, 2, dtype)      # a trained model, with optimizer entries
    path = save_checkpoint(tmp_path / "t.safetensors", model, opt, model="lenet5")

    tensors = torch_load_file(str(path))
    assert any(k.startswith("optimizer.") for k in tensors)
    weights = {k: v for k, v in tensors.items() if not k.startswith("optimizer.")}
    twin = TWINS["lenet5"]().to(torch.float64 if dtype == np.float64 else torch.float32)
    twin.load_state_dict(weights, strict=True)
    assert weights["0.weight"].dtype == (torch.float64 if dtype == np.float64 else torch.float32)

    x, _ = _batch(rng, 16, dtype)
    model.eval()
    ours = model.forward(x)
    with torch.no_grad():
        theirs = twin(torch.from_numpy(x)).numpy()
    assert ours.dtype == theirs.dtype == dtype
    tol = 1e-10 if dtype == np.float64 else 1e-5
    np.testing.assert_allclose(ours, theirs, rtol=tol, atol=tol)
    assert np.array_equal(ours.argmax(1), theirs.argmax(1))


@pytest.mark.parametrize("name", ["vgg_small", "resnet_small"])
def test_batchnorm_models_load_in_pytorch_strictly(tmp_path, name) -> None:
    """BatchNorm's 0-d ``num_batches_tracked`` and running statistics must survive too."""
    rng = np.random.default_rng(4)
    model = build_model(name, seed=0, width=4, dtype=np.float64)
    model.train()
    for _ in range(2):                            # move the running statistics
        model.forward(rng.standard_normal((4, 3, 32, 32)))
    path = save_checkpoint(tmp_path / "bn.safetensors", model, model=name,
                           model_config={"width": 4})
    twin = TWINS[name](width=4).double()
    twin.load_state_dict(torch_load_file(str(path)), strict=True)
    assert int(twin.state_dict()["1.num_batches_tracked"]) == 2
    x = rng.standard_normal((3, 3, 32, 32))
    model.eval()
    twin.eval()
    with torch.no_grad():
        theirs = twin(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(model.forward(x), theirs, rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(load_checkpoint(path).build_model().eval().forward(x), theirs,
                               rtol=1e-10, atol=1e-10)


def test_no_pickle_only_header_and_raw_tensor_bytes(tmp_path) -> None:
    model = lenet5()
    opt = optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    _train_steps(model, opt, np.random.default_rng(0), 1)
    path = save_checkpoint(tmp_path / "p.safetensors", model, opt, model="lenet5", epoch=1)
    raw = path.read_bytes()
    n = int.from_bytes(raw[:8], "little")
    header = json.loads(raw[8:8 + n].decode("utf-8"))   # the safetensors header: plain JSON
    assert raw[8:9] == b"{"
    assert not raw.startswith(b"\x80")                   # a pickle stream starts with PROTO
    meta = json.loads(header.pop("__metadata__")["rot180"])
    assert meta["format"] == "rot180-checkpoint-v1" and meta["epoch"] == 1
    # everything after the header is exactly the tensors' raw bytes: nothing else hides there
    ends = sorted(v["data_offsets"][1] for v in header.values())
    assert len(raw) == 8 + n + ends[-1]
    assert set(model.state_dict()) <= set(header)


def test_file_permissions_follow_umask_not_0600(tmp_path) -> None:
    old = os.umask(0o022)
    try:
        path = save_checkpoint(tmp_path / "perm.safetensors", lenet5())
    finally:
        os.umask(old)
    assert stat.S_IMODE(path.stat().st_mode) == 0o644


# -- atomic writes ----------------------------------------------------------------------------
def _no_temp_files(directory: Path) -> bool:
    return sorted(p.name for p in directory.iterdir()) == ["ck.safetensors"]


@pytest.mark.parametrize("where", ["write", "fsync", "replace", "interrupt"])
def test_failed_write_keeps_the_previous_checkpoint(tmp_path, monkeypatch, where) -> None:
    path = tmp_path / "ck.safetensors"
    save_checkpoint(path, lenet5(seed=0), model="lenet5", epoch=1)
    before = path.read_bytes()

    def disk_full(*args, **kwargs):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    if where == "write":
        fill_disk_on_write(monkeypatch)   # half the file lands, then ENOSPC
        expected = OSError
    elif where == "fsync":
        monkeypatch.setattr(ckpt_mod.os, "fsync", disk_full)
        expected = OSError
    elif where == "replace":
        monkeypatch.setattr(ckpt_mod.os, "replace", disk_full)
        expected = OSError
    else:
        monkeypatch.setattr(ckpt_mod.os, "replace", interrupted)
        expected = KeyboardInterrupt
    with pytest.raises(expected):
        save_checkpoint(path, lenet5(seed=9), model="lenet5", epoch=2)
    monkeypatch.undo()
    assert path.read_bytes() == before
    assert _no_temp_files(tmp_path)
    assert load_checkpoint(path).meta["epoch"] == 1


def test_overwrite_replaces_the_file_whole(tmp_path) -> None:
    path = tmp_path / "ck.safetensors"
    save_checkpoint(path, lenet5(seed=0), model="lenet5", epoch=1)
    save_checkpoint(path, lenet5(seed=1), model="lenet5", epoch=2)
    ck = load_checkpoint(path)
    assert ck.meta["epoch"] == 2
    np.testing.assert_array_equal(ck.model_state["0.weight"], lenet5(seed=1)[0].weight.data)
    assert _no_temp_files(tmp_path)


def test_save_creates_missing_directories(tmp_path) -> None:
    path = save_checkpoint(tmp_path / "a" / "b" / "ck.safetensors", lenet5())
    assert load_checkpoint(path).model_state


# -- errors -----------------------------------------------------------------------------------
@pytest.fixture
def good_bytes(tmp_path) -> bytes:
    return save_checkpoint(tmp_path / "good.safetensors", lenet5(), model="lenet5").read_bytes()


def _bad_files(tmp_path: Path, good: bytes) -> dict[str, tuple[Path, str]]:
    files: dict[str, tuple[bytes, str]] = {
        "truncated": (good[: len(good) // 2], "not a valid safetensors checkpoint"),
        "header-only": (good[:8], "not a valid safetensors checkpoint"),
        "empty": (b"", "not a valid safetensors checkpoint"),
        "corrupt-header": (good[:8] + b"\xff\xfe" + good[10:], "not a valid safetensors"),
        "huge-header-length": ((2**62).to_bytes(8, "little") + good[8:],
                               "not a valid safetensors checkpoint"),
        "png": (b"\x89PNG\r\n\x1a\n" + bytes(200), "not a valid safetensors checkpoint"),
        "pickle": (b"\x80\x04\x95" + bytes(64), "not a valid safetensors checkpoint"),
        "text": (b"epoch,train_loss\n1,0.5\n", "not a valid safetensors checkpoint"),
    }
    out = {}
    for name, (data, msg) in files.items():
        p = tmp_path / f"{name}.safetensors"
        p.write_bytes(data)
        out[name] = (p, msg)
    plain = tmp_path / "plain.safetensors"        # valid safetensors, but not ours
    st_save_file({"w": np.zeros(3, np.float32)}, str(plain))
    out["plain-safetensors"] = (plain, "not a rot180 checkpoint")
    other = tmp_path / "other.safetensors"
    st_save_file({"w": np.zeros(3, np.float32)}, str(other),
                 metadata={"rot180": json.dumps({"format": "rot180-checkpoint-v99"})})
    out["future-format"] = (other, r"not a rot180 checkpoint \(metadata format "
                                   r"'rot180-checkpoint-v99', expected 'rot180-checkpoint-v1'\)")
    out["missing"] = (tmp_path / "nope.safetensors", "no such checkpoint file")
    out["directory"] = (tmp_path, "is a directory")
    return out


BAD = ["truncated", "header-only", "empty", "corrupt-header", "huge-header-length", "png",
       "pickle", "text", "plain-safetensors", "future-format", "missing", "directory"]


@pytest.mark.parametrize("kind", BAD)
def test_bad_files_raise_checkpoint_error_naming_the_file(tmp_path, good_bytes, kind) -> None:
    path, msg = _bad_files(tmp_path, good_bytes)[kind]
    with pytest.raises(CheckpointError, match=msg) as info:
        load_checkpoint(path)
    assert isinstance(info.value, ValueError)
    assert str(info.value).startswith(str(path))
    assert info.value.__cause__ is None          # no chained internals shown to the user


def test_checkpoint_error_is_a_value_error() -> None:
    assert issubclass(CheckpointError, ValueError)


def test_build_model_without_a_name_says_what_to_do(tmp_path) -> None:
    save_checkpoint(tmp_path / "anon.safetensors", lenet5())
    with pytest.raises(CheckpointError, match="records no model name.*load_state_dict"):
        load_checkpoint(tmp_path / "anon.safetensors").build_model()


def test_load_state_dict_lists_every_mismatch(tmp_path) -> None:
    save_checkpoint(tmp_path / "ten.safetensors", lenet5(), model="lenet5")
    state = dict(load_checkpoint(tmp_path / "ten.safetensors").model_state)
    three = lenet5(num_classes=3)
    with pytest.raises(StateDictError) as info:
        three.load_state_dict(state)
    msg = str(info.value)
    assert "11.weight: expected shape (3, 84), got (10, 84)" in msg
    assert "11.bias: expected shape (3,), got (10,)" in msg

    state["conv1.weight"] = state.pop("0.weight")
    state["extra"] = np.zeros(1, np.float32)
    with pytest.raises(ValueError, match="missing keys: 0.weight") as info:
        three.load_state_dict(state)
    msg = str(info.value)
    for part in ("unexpected keys: conv1.weight, extra", "11.weight: expected shape",
                 "11.bias: expected shape"):
        assert part in msg
    # a configuration that disagrees with the tensors is refused before a model is built
    save_checkpoint(tmp_path / "lie.safetensors", lenet5(), model="lenet5",
                    model_config={"num_classes": 3})
    with pytest.raises(CheckpointError, match=r"lie\.safetensors: model_config says "
                                              r"num_classes=3, but the tensor 11\.weight has "
                                              r"shape \(10, 84\)"):
        load_checkpoint(tmp_path / "lie.safetensors").build_model()
