"""Training faults: signals mid-epoch, kill -9 while a checkpoint is written, a full disk, a
blow-up of the loss, resuming with other settings. Each test injects the fault and checks what
survives.

The trainer runs on a few hundred embedded digits (``load_dataset`` is wrapped where the trainer
looks it up); everything else is the real thing.
"""

from __future__ import annotations

import errno
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest

from _training import fill_disk_on_write, signal_at_step, use_subsets
from rot180.cli import main
from rot180.train import (
    CheckpointError,
    TrainConfig,
    Trainer,
    TrainingDiverged,
    TrainingInterrupted,
    load_checkpoint,
    save_checkpoint,
)

FAULTS = {"injected": 0, "survived": 0}   # tallied for RELIABILITY.md


pytestmark = pytest.mark.usefixtures("one_thread")  # see conftest.py


@pytest.fixture(autouse=True)
def small_data(monkeypatch):
    use_subsets(monkeypatch, 256, 128, seed=1)


def cfg(out: Path, **kw) -> TrainConfig:
    return TrainConfig(**{"epochs": 3, "batch_size": 32, "lr": 0.05, "out": str(out), **kw})


def trainer(c: TrainConfig) -> Trainer:
    return Trainer(c, progress=False, log=lambda s: None)


def curve(history: list[dict]) -> list[tuple]:
    return [tuple(r[k] for k in ("epoch", "train_loss", "train_acc", "val_loss", "val_acc"))
            for r in history]


@pytest.mark.parametrize(("sig", "step"), [(signal.SIGINT, 11), (signal.SIGTERM, 5),
                                           (signal.SIGINT, 8), (signal.SIGTERM, 16)])
def test_signal_mid_epoch_saves_and_resume_is_exact(tmp_path, sig, step) -> None:
    """A signal stops after the current step with a mid-epoch checkpoint; resuming from it gives
    the uninterrupted run's curve and weights, bit for bit. Step 8 and 16 end an epoch."""
    whole = trainer(cfg(tmp_path / "whole"))
    whole.fit()

    t = trainer(cfg(tmp_path / "cut"))
    signal_at_step(t, step, sig)
    FAULTS["injected"] += 1
    with pytest.raises(TrainingInterrupted, match=f"{sig.name} received: stopped"):
        t.fit()
    assert signal.getsignal(sig) is not None and signal.getsignal(sig) != t._stop_on_signals
    ckpt = load_checkpoint(tmp_path / "cut" / "last.safetensors")
    assert ckpt.meta["step"] == step

    again = trainer(cfg(tmp_path / "cut"))
    again.resume()
    again.fit()
    assert curve(again.history) == curve(whole.history)
    last_a = load_checkpoint(tmp_path / "cut" / "last.safetensors").model_state
    last_b = load_checkpoint(tmp_path / "whole" / "last.safetensors").model_state
    for k in last_b:
        np.testing.assert_array_equal(last_a[k], last_b[k], err_msg=k)
    FAULTS["survived"] += 1


def test_signal_handlers_are_restored(tmp_path) -> None:
    before = signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)
    trainer(cfg(tmp_path, epochs=1)).fit()
    assert (signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)) == before


def test_cli_prints_the_resume_command_and_exits_130(tmp_path, capsys, monkeypatch) -> None:
    real_fit = Trainer.fit

    def fit_with_sigint(self: Trainer):
        signal_at_step(self, 3, signal.SIGINT)
        return real_fit(self)

    monkeypatch.setattr(Trainer, "fit", fit_with_sigint)
    out = tmp_path / "run"
    rc = main(["train", "--epochs", "2", "--batch-size", "32", "--out", str(out),
               "--no-progress", "--seed", "3"])
    err = capsys.readouterr().err
    assert rc == 130
    assert "SIGINT received: stopped at step 3 (epoch 1, batch 3 of 8)" in err
    cmd = f"resume with: rot180 train --epochs 2 --batch-size 32 --seed 3 --out {out} --resume"
    assert cmd in err
    assert "Traceback" not in err
    monkeypatch.setattr(Trainer, "fit", real_fit)
    assert main(cmd.split(": ", 1)[1].split()[1:] + ["--no-progress"]) == 0


_WRITER = textwrap.dedent("""
    import sys
    from rot180.nn import Linear, Sequential
    from rot180.train import save_checkpoint
    model = Sequential(Linear(2000, 2000, rng=0))   # 16 MB of weights: writes take a while
    i = 0
    while True:
        i += 1
        for p in model.parameters():
            p.data[...] = i
        save_checkpoint(sys.argv[1], model, None, step=i)
        print(i, flush=True)
""")


def test_kill_9_while_writing_never_damages_the_previous_checkpoint(tmp_path) -> None:
    """SIGKILL a process at random moments while it rewrites a checkpoint in a loop; every
    time, the file on disk is a complete checkpoint (of some earlier step)."""
    path = tmp_path / "ckpt.safetensors"
    script = tmp_path / "writer.py"
    script.write_text(_WRITER)
    rng = np.random.default_rng(0)
    for _ in range(6):
        proc = subprocess.Popen([sys.executable, str(script), str(path)],
                                stdout=subprocess.PIPE, text=True)
        assert proc.stdout is not None
        proc.stdout.readline()                   # at least one checkpoint is complete
        time.sleep(float(rng.uniform(0.0, 0.05)))
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        proc.stdout.close()
        FAULTS["injected"] += 1
        ckpt = load_checkpoint(path)            # never raises: the file is always whole
        step = ckpt.meta["step"]
        assert step >= 1
        np.testing.assert_array_equal(ckpt.model_state["0.weight"],
                                      np.full((2000, 2000), step, np.float32))
        FAULTS["survived"] += 1


def test_full_disk_gives_a_clear_error_and_keeps_the_previous_checkpoint(tmp_path,
                                                                          monkeypatch) -> None:
    t = trainer(cfg(tmp_path, epochs=3))
    tmp_path.mkdir(exist_ok=True)
    t._run_epoch()
    t._run_epoch()   # two of three epochs done and saved
    good = load_checkpoint(tmp_path / "last.safetensors").model_state

    fill_disk_on_write(monkeypatch)
    t2 = trainer(cfg(tmp_path, epochs=3))
    t2.resume()
    FAULTS["injected"] += 1
    with pytest.raises(OSError, match=r"could not write checkpoint .*No space left on device\. "
                                      r"Nothing was replaced.*previous checkpoint.*intact"):
        t2.fit()
    monkeypatch.undo()
    after = load_checkpoint(tmp_path / "last.safetensors").model_state
    for k in good:
        np.testing.assert_array_equal(after[k], good[k])
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]
    FAULTS["survived"] += 1


def test_cli_full_disk_exits_2_without_traceback(tmp_path, monkeypatch, capsys) -> None:
    import rot180._files as _files

    def no_space(path, data):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(_files, "atomic_write_bytes", no_space)
    rc = main(["train", "--epochs", "1", "--out", str(tmp_path), "--no-progress"])
    err = capsys.readouterr().err
    assert rc == 2
    assert "rot180: error: [Errno 28] could not write checkpoint" in err
    assert "Traceback" not in err


def test_nan_loss_stops_and_keeps_the_last_good_checkpoint(tmp_path, monkeypatch) -> None:
    t = trainer(cfg(tmp_path, epochs=3))
    t.fit()  # three good epochs
    good = load_checkpoint(tmp_path / "last.safetensors").model_state

    t2 = trainer(cfg(tmp_path, epochs=3))
    t2.resume()
    t2.cfg.epochs = 4   # one more epoch, whose 3rd step blows up
    real = t2.loss.forward
    calls = {"n": 0}

    def blow_up(outputs, targets):
        calls["n"] += 1
        return float("nan") if calls["n"] == 3 else real(outputs, targets)

    t2.loss.forward = blow_up
    FAULTS["injected"] += 1
    with pytest.raises(TrainingDiverged, match=r"loss became nan at step 27 \(epoch 4\); last "
                                               r"finite mean loss \d\.\d{4}\. The last good "
                                               r"checkpoint, .*last\.safetensors \(epoch 3\), is "
                                               r"kept\. Try a smaller learning rate \(--lr "
                                               r"0\.005\)"):
        t2._run_epoch()
    after = load_checkpoint(tmp_path / "last.safetensors").model_state
    for k in good:
        np.testing.assert_array_equal(after[k], good[k])
    FAULTS["survived"] += 1


def test_exploding_weights_are_caught_on_the_held_out_loss(tmp_path) -> None:
    t = trainer(cfg(tmp_path, epochs=1))
    real_step = t.opt.step

    def explode() -> None:
        real_step()
        if t.step + 1 == 8:   # the epoch's last step leaves the weights infinite
            for p in t.model.parameters():
                p.data[...] = np.inf

    t.opt.step = explode
    FAULTS["injected"] += 1
    with pytest.raises(TrainingDiverged, match="held-out loss became nan after the epoch"):
        t.fit()
    assert not (tmp_path / "last.safetensors").exists()   # nothing bad was saved
    FAULTS["survived"] += 1


def test_resume_with_other_settings_lists_them(tmp_path) -> None:
    trainer(cfg(tmp_path, epochs=1)).fit()
    t = trainer(cfg(tmp_path, epochs=1, lr=0.1, batch_size=16))
    with pytest.raises(ValueError, match=r"other settings \(batch_size: saved 32, now 16; lr: "
                                         r"saved 0\.05, now 0\.1\)"):
        t.resume()


def test_resume_from_a_corrupt_checkpoint_is_a_checkpoint_error(tmp_path) -> None:
    trainer(cfg(tmp_path, epochs=1)).fit()
    p = tmp_path / "last.safetensors"
    p.write_bytes(p.read_bytes()[:1000])
    with pytest.raises(CheckpointError, match=r"last\.safetensors: not a valid safetensors"):
        trainer(cfg(tmp_path, epochs=1)).resume()


def test_a_model_that_cannot_take_the_images_fails_before_training(tmp_path) -> None:
    with pytest.raises(ValueError, match=r"lenet5 needs 28x28 images; --data digits8x8 has 8x8\. "
                                         r"Choose a model made for 8x8 images \(--model "
                                         r"resnet_small\)"):
        trainer(cfg(tmp_path, data="digits8x8"))


def test_fault_tally() -> None:
    """Runs last in this file: every injected fault was survived (figures for RELIABILITY.md)."""
    assert FAULTS["injected"] >= 12
    assert FAULTS["survived"] == FAULTS["injected"]


def test_checkpoint_save_is_atomic_against_a_crash_before_rename(tmp_path, monkeypatch) -> None:
    from rot180.models import lenet5

    path = tmp_path / "m.safetensors"
    save_checkpoint(path, lenet5(seed=0), None, model="lenet5")
    import rot180.train.checkpoint as ck

    def crash(*a):
        raise KeyboardInterrupt

    monkeypatch.setattr(ck.os, "replace", crash)
    with pytest.raises(KeyboardInterrupt):
        save_checkpoint(path, lenet5(seed=1), None, model="lenet5")
    monkeypatch.undo()
    np.testing.assert_array_equal(load_checkpoint(path).model_state["0.weight"],
                                  lenet5(seed=0).state_dict()["0.weight"])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.safetensors"]
