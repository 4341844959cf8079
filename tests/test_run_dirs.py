"""Nothing a user saved is lost: an existing run is never overwritten by accident, two runs never
share a directory, a finished run can be extended, a full disk reports the first error and
leaves every file whole, and a killed write's temporaries are cleaned. Also the printed resume
command and the validation / test split.
"""

from __future__ import annotations

import dataclasses
import os
import shlex
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

import rot180.commands.train as train_cmd
from _training import fill_disk_on_write, fill_disk_under, signal_at_step, use_subsets
from rot180.cli import main
from rot180.data import split_indices
from rot180.train import TrainConfig, Trainer, TrainingInterrupted, load_checkpoint, rundir
from rot180.train import metrics as M
from rot180.train import trainer as trainer_mod

FAST = ["--batch-size", "32", "--no-progress"]
pytestmark = pytest.mark.usefixtures("one_thread")  # see conftest.py


@pytest.fixture(autouse=True)
def small_data(monkeypatch):
    use_subsets(monkeypatch, 256, 128, seed=1)


def cfg(out: Path, **kw) -> TrainConfig:
    return TrainConfig(**{"epochs": 2, "batch_size": 32, "out": str(out), **kw})


def quiet(c: TrainConfig, **kw) -> Trainer:
    return Trainer(c, progress=False, log=lambda s: None, **kw)


def run_cli(capsys, *argv) -> tuple[int, str, str]:
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def snapshot(d: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(d.iterdir()) if p.is_file()}


# -- item 5: an existing run is refused, kept, or replaced on request ------------------------
def test_an_explicit_out_holding_a_run_is_refused_and_left_alone(tmp_path, capsys) -> None:
    out = tmp_path / "mine"
    assert run_cli(capsys, "train", "--epochs", "1", "--out", out, *FAST)[0] == 0
    before = snapshot(out)
    code, _, err = run_cli(capsys, "train", "--model", "resnet_small", "--epochs", "1",
                           "--out", out, *FAST)
    assert code == 2
    assert (f"rot180: error: --out {out} already holds a rot180 run (last.safetensors, "
            "best.safetensors, metrics.csv, curves.png). Pass --resume to continue it, "
            "--overwrite to replace it (its files are deleted), or choose another --out.") in err
    assert snapshot(out) == before
    # the library refuses it too (the check runs again under the lock)
    with pytest.raises(rundir.RunExistsError, match="already holds a rot180 run"):
        quiet(cfg(out, epochs=1)).fit()
    assert snapshot(out) == before


def test_the_default_out_is_per_model_and_data_and_never_reused(tmp_path, capsys,
                                                                monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    code, out, _ = run_cli(capsys, "train", "--epochs", "1", *FAST)
    assert code == 0 and "-> runs/lenet5-mnist5k\n" in out
    first = snapshot(tmp_path / "runs" / "lenet5-mnist5k")
    code, out, _ = run_cli(capsys, "train", "--epochs", "1", "--seed", "4", *FAST)  # run again
    assert code == 0
    assert out.startswith("runs/lenet5-mnist5k holds an earlier run (kept); this run goes to "
                          "runs/lenet5-mnist5k-2. To go on with that one instead, pass --out "
                          "runs/lenet5-mnist5k --resume (an interrupted run), or add --epochs N "
                          "to extend a finished one.\n")
    assert snapshot(tmp_path / "runs" / "lenet5-mnist5k") == first
    code, out, _ = run_cli(capsys, "train", "--model", "resnet_small", "--epochs", "1", *FAST)
    assert code == 0 and "-> runs/resnet_small-mnist5k\n" in out
    assert sorted(p.name for p in (tmp_path / "runs").iterdir()) == [
        "lenet5-mnist5k", "lenet5-mnist5k-2", "resnet_small-mnist5k"]
    assert load_checkpoint(tmp_path / "runs/lenet5-mnist5k-2/last.safetensors").meta["config"][
        "seed"] == 4


def test_overwrite_replaces_the_run_and_keeps_none_of_its_files(tmp_path, capsys) -> None:
    out = tmp_path / "r"
    assert run_cli(capsys, "train", "--epochs", "1", "--out", out, *FAST)[0] == 0
    (out / "confusion.png").write_bytes(b"old picture")
    (out / "notes.txt").write_text("the user's own file")
    code, _, err = run_cli(capsys, "train", "--epochs", "1", "--seed", "7", "--out", out,
                           "--overwrite", *FAST)
    assert code == 0, err
    assert load_checkpoint(out / "best.safetensors").meta["config"]["seed"] == 7
    assert not (out / "confusion.png").exists() and (out / "notes.txt").exists()
    code, _, err = run_cli(capsys, "train", "--out", out, "--overwrite", "--resume", *FAST)
    assert code == 2 and "--resume and --overwrite contradict each other" in err


# -- item 5: one run per directory at a time ---------------------------------------------------
def test_a_second_run_into_a_locked_directory_is_refused(tmp_path) -> None:
    out = tmp_path / "r"
    with rundir.RunLock(out):
        assert (out / ".rot180.lock").read_text() == f"{os.getpid()}\n"
        with pytest.raises(rundir.RunLockedError,
                           match=rf"--out {out} is in use by another rot180 run \(pid "
                                 rf"{os.getpid()} holds .*\.rot180\.lock\)\. Wait for it"):
            quiet(cfg(out, epochs=1)).fit()
    assert not out.joinpath("last.safetensors").exists()
    quiet(cfg(out, epochs=1)).fit()               # released: the run goes ahead
    assert not (out / ".rot180.lock").exists()


_HOLDER = textwrap.dedent("""
    import sys, time
    from rot180.train.rundir import RunLock
    with RunLock(sys.argv[1]):
        print("locked", flush=True)
        time.sleep(60)
""")


def test_a_live_holder_is_refused_and_a_killed_ones_lock_is_taken_over(tmp_path,
                                                                       capsys) -> None:
    out = tmp_path / "r"
    holder = subprocess.Popen([sys.executable, "-c", _HOLDER, str(out)], stdout=subprocess.PIPE,
                              text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        code, _, err = run_cli(capsys, "train", "--epochs", "1", "--out", out, *FAST)
        assert code == 2
        assert f"--out {out} is in use by another rot180 run (pid {holder.pid} holds" in err
    finally:
        holder.send_signal(signal.SIGKILL)   # dies holding the lock: its file stays behind
        holder.wait()
        holder.stdout.close()
    assert (out / ".rot180.lock").read_text().strip() == str(holder.pid)
    code, _, err = run_cli(capsys, "train", "--epochs", "1", "--out", out, *FAST)
    assert code == 0, err


# -- item 5: --resume --epochs N extends a finished run ---------------------------------------
def test_resume_with_more_epochs_extends_a_finished_run_with_a_warm_restart(tmp_path) -> None:
    first = quiet(cfg(tmp_path / "a", epochs=2))
    first.fit()
    assert first.opt.param_groups[0]["lr"] < 1e-6           # cosine ended at 0
    lines: list[str] = []
    more = Trainer(cfg(tmp_path / "a", epochs=4), progress=False, log=lines.append)
    more.resume()
    assert "extending to 4 epochs (warm restart" in lines[0]
    assert more.opt.param_groups[0]["lr"] == more.cfg.lr     # back to the base rate, no warm-up
    more.fit()
    assert [r["epoch"] for r in more.history] == [1, 2, 3, 4]
    assert more.history[:2] == first.history
    assert more.opt.param_groups[0]["lr"] < 1e-6             # cosine over the added epochs
    last = load_checkpoint(tmp_path / "a" / "last.safetensors").meta
    assert last["epoch"] == 4 and last["schedule_start_epoch"] == 2
    assert len(M.read_metrics_csv(tmp_path / "a" / "metrics.csv")) == 4


def test_an_interrupted_extension_resumes_exactly(tmp_path) -> None:
    for name in ("whole", "cut"):
        quiet(cfg(tmp_path / name, epochs=1)).fit()
    whole = quiet(cfg(tmp_path / "whole", epochs=3))
    whole.resume()
    whole.fit()

    cut = quiet(cfg(tmp_path / "cut", epochs=3))
    cut.resume()
    signal_at_step(cut, cut.steps_per_epoch + 3, signal.SIGINT)   # 3 steps into the extension
    with pytest.raises(TrainingInterrupted):
        cut.fit()
    again = quiet(cfg(tmp_path / "cut", epochs=3))
    again.resume()
    again.fit()
    keys = ("epoch", "train_loss", "train_acc", "val_loss", "val_acc")   # all but seconds
    assert [[r[k] for k in keys] for r in again.history] == \
        [[r[k] for k in keys] for r in whole.history]
    a = load_checkpoint(tmp_path / "whole" / "last.safetensors")
    b = load_checkpoint(tmp_path / "cut" / "last.safetensors")
    for k, v in a.model_state.items():
        np.testing.assert_array_equal(b.model_state[k], v, err_msg=k)


def test_extension_is_refused_for_fewer_epochs_or_an_unfinished_run(tmp_path) -> None:
    quiet(cfg(tmp_path, epochs=2)).fit()
    with pytest.raises(ValueError, match=r"--resume --epochs 1: the run in .* already trained 2 "
                                         r"epochs; to extend it pass more \(e\.g\. --epochs 12\)"):
        quiet(cfg(tmp_path, epochs=1)).resume()
    t = quiet(cfg(tmp_path / "cut", epochs=2))
    signal_at_step(t, 3, signal.SIGTERM)
    with pytest.raises(TrainingInterrupted):
        t.fit()
    with pytest.raises(ValueError, match=r"--resume --epochs 5: the run in .* is not finished "
                                         r"\(epoch 0 of 2\); resume it with --epochs 2 first"):
        quiet(cfg(tmp_path / "cut", epochs=5)).resume()
    with pytest.raises(ValueError, match=r"other settings \(lr: saved 0\.05, now 0\.1\)"):
        quiet(cfg(tmp_path, epochs=4, lr=0.1)).resume()   # the rest must still match


# -- item 6: a full disk, a killed write ------------------------------------------------------
def test_a_full_disk_reports_the_checkpoint_error_not_the_plots(tmp_path, monkeypatch) -> None:
    t = quiet(cfg(tmp_path, epochs=3))
    with monkeypatch.context() as patch:
        real = M.write_metrics_csv
        calls = {"n": 0}

        def then_full(*a, **k):   # epoch 1 is saved whole; from epoch 2 on the disk is full
            calls["n"] += 1
            real(*a, **k)
            if calls["n"] == 1:
                fill_disk_under(patch, tmp_path)

        patch.setattr(trainer_mod.M, "write_metrics_csv", then_full)
        with pytest.raises(OSError, match=r"could not write checkpoint .*(best|last)\.safetensors: "
                                          r"No space left on device\. Nothing was replaced") \
                as info:
            t.fit()
    assert "figure" not in str(info.value)          # the curves failed too, and said nothing
    assert load_checkpoint(tmp_path / "last.safetensors").meta["epoch"] == 1
    assert not (tmp_path / "curves.png").exists()    # never an empty or torn picture
    assert not [p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp")]


def test_a_full_disk_at_the_curves_keeps_the_previous_picture(tmp_path, monkeypatch) -> None:
    quiet(cfg(tmp_path, epochs=1)).fit()
    png = (tmp_path / "curves.png").read_bytes()
    t = quiet(cfg(tmp_path, epochs=2))
    t.resume()
    real = M.plot_curves

    def full_disk_plot(rows, path):
        fill_disk_on_write(monkeypatch)
        return real(rows, path)

    monkeypatch.setattr(trainer_mod.M, "plot_curves", full_disk_plot)
    with pytest.raises(OSError, match=r"could not write figure .*curves\.png: No space left on "
                                      r"device\. Nothing was replaced: the previous figure"):
        t.fit()
    monkeypatch.undo()
    assert (tmp_path / "curves.png").read_bytes() == png
    assert load_checkpoint(tmp_path / "last.safetensors").meta["epoch"] == 2


def test_temporaries_of_a_killed_write_are_removed_by_the_next_run(tmp_path) -> None:
    quiet(cfg(tmp_path, epochs=1)).fit()
    left = [".last.safetensors.k3_x9abc.tmp", ".metrics.csv.0a1b2c3d.tmp"]
    for name in left:
        (tmp_path / name).write_bytes(b"half a file")
    kept = [".hidden.tmp", "notes.tmp", ".last.safetensors.short.tmp"]   # not the pattern
    for name in kept:
        (tmp_path / name).write_bytes(b"the user's")
    t = quiet(cfg(tmp_path, epochs=2))
    t.resume()
    t.fit()
    names = {p.name for p in tmp_path.iterdir()}
    assert not names & set(left) and set(kept) <= names


# -- item 14: the resume command works as printed; the split that picks best is not the test --
@pytest.mark.parametrize("on_path", [False, True])
def test_the_resume_command_names_the_program_the_user_ran(tmp_path, monkeypatch,
                                                           on_path) -> None:
    script = tmp_path / "my venv" / "bin" / "rot180"
    script.parent.mkdir(parents=True)
    script.write_text("#!/bin/sh\n")
    monkeypatch.setattr(sys, "argv", [str(script), "train"])
    monkeypatch.setattr(train_cmd.shutil, "which",
                        lambda name: str(script) if on_path else None)
    out = tmp_path / "a run"
    cmd = train_cmd.resume_command(cfg(out, epochs=3))
    program = "rot180" if on_path else shlex.quote(str(script))
    assert cmd == (f"{program} train --epochs 3 --batch-size 32 --out {shlex.quote(str(out))} "
                   "--resume")
    assert shlex.split(cmd)[0] == ("rot180" if on_path else str(script))


def test_the_printed_resume_command_resumes_the_run(tmp_path, capsys, monkeypatch) -> None:
    monkeypatch.setattr(sys, "argv", [".venv/bin/rot180"])
    monkeypatch.setattr(train_cmd.shutil, "which", lambda name: None)
    real_fit = Trainer.fit

    def fit_with_sigint(self: Trainer):
        signal_at_step(self, 3, signal.SIGINT)
        return real_fit(self)

    monkeypatch.setattr(Trainer, "fit", fit_with_sigint)
    code, _, err = run_cli(capsys, "train", "--epochs", "2", "--out", tmp_path / "r", *FAST)
    assert code == 130
    cmd = err.split("resume with: ", 1)[1].strip()
    assert cmd.startswith(".venv/bin/rot180 train --epochs 2 --batch-size 32 --out ")
    monkeypatch.setattr(Trainer, "fit", real_fit)
    words = shlex.split(cmd)
    assert main(words[1:] + ["--no-progress"]) == 0
    assert load_checkpoint(tmp_path / "r" / "last.safetensors").meta["epoch"] == 2


def test_best_is_chosen_on_a_validation_cut_and_the_test_split_is_scored_at_the_end(
        tmp_path) -> None:
    t = quiet(cfg(tmp_path, epochs=2))
    whole = trainer_mod.load_dataset("mnist5k", split="train")
    keep, val = split_indices(whole.labels, test_size=0.1, seed=trainer_mod.VAL_SEED)
    np.testing.assert_array_equal(t.train_set.images, whole.images[keep])
    np.testing.assert_array_equal(t.val_set.images, whole.images[val])
    assert len(t.val_set) == 26 and not set(keep) & set(val)
    # stratified: each digit's count in the validation cut is its quota, rounded one way or other
    quota = np.bincount(whole.labels, minlength=10) * 26 / len(whole)
    assert np.all(np.abs(np.bincount(t.val_set.labels, minlength=10) - quota) < 1)
    test = trainer_mod.load_dataset("mnist5k", split="test")
    np.testing.assert_array_equal(t.test_set.images, test.images)
    t.fit()
    best = load_checkpoint(tmp_path / "best.safetensors")
    assert best.meta["best_val_acc"] == max(r["val_acc"] for r in t.history)
    r = t.test_result
    for name, model in (("best", best.build_model()), ("last", t.model)):
        loss, acc, _ = trainer_mod.evaluate_model(model, test)
        assert r[f"{name}_acc"] == acc and r[f"{name}_loss"] == pytest.approx(loss, rel=1e-6)
    assert r["images"] == len(test) == 128 and r["last_epoch"] == 2
    assert dataclasses.asdict(t.cfg)["val_fraction"] == 0.1


def test_a_file_where_the_default_out_would_go_is_named_as_a_file(tmp_path, monkeypatch) -> None:
    """It was called "an earlier run", with a --resume hint that then failed on the file."""
    from rot180.train.rundir import default_out

    monkeypatch.chdir(tmp_path)
    (tmp_path / "runs").mkdir()
    (tmp_path / "runs" / "lenet5-mnist5k").write_text("not a run")
    chosen, note = default_out("lenet5", "mnist5k")
    assert chosen == Path("runs/lenet5-mnist5k-2")
    assert note == "runs/lenet5-mnist5k is a file (kept); this run goes to runs/lenet5-mnist5k-2."
