"""The Trainer: outputs of a run, bit-for-bit reproducibility, exact resume, divergence.

Runs are kept short by serving the Trainer a fixed few hundred digits of each split of the
embedded ``mnist5k`` (``load_dataset`` is wrapped where the trainer looks it up); everything
else (model, augmentation, shuffling, schedule, checkpoints) is the real thing.
"""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from _training import use_subsets
from rot180.train import TrainConfig, Trainer, TrainingDiverged, load_checkpoint
from rot180.train import metrics as M
from rot180.train import trainer as trainer_mod

N_TRAIN, N_TEST = 320, 160          # the subsets of the data set's train and test splits
N_VAL = N_TRAIN // 10                # carved out of the train subset (val_fraction 0.1)
COMPARED = ("epoch", "train_loss", "train_acc", "val_loss", "val_acc")   # all but seconds


pytestmark = pytest.mark.usefixtures("one_thread")  # see conftest.py


@pytest.fixture(autouse=True)
def small_data(monkeypatch):
    use_subsets(monkeypatch, N_TRAIN, N_TEST, seed=0)   # seed 0's subsets hold all ten digits


def config(out: Path, **changes) -> TrainConfig:
    base = {"data": "mnist5k", "epochs": 2, "batch_size": 16, "lr": 0.05, "out": str(out),
            "seed": 0}
    return TrainConfig(**{**base, **changes})


def fit(cfg: TrainConfig, lines: list[str] | None = None) -> Trainer:
    t = Trainer(cfg, progress=False, log=(lines.append if lines is not None else lambda s: None))
    t.fit()
    return t


def compared(history: list[dict]) -> list[tuple]:
    return [tuple(r[c] for c in COMPARED) for r in history]


def weights(path: Path) -> dict[str, np.ndarray]:
    return load_checkpoint(path).model_state


def assert_same_weights(a: dict[str, np.ndarray], b: dict[str, np.ndarray]) -> None:
    assert set(a) == set(b)
    for k in a:
        np.testing.assert_array_equal(a[k], b[k], err_msg=k)


# -- one run and what it writes ---------------------------------------------------------------
def test_fit_writes_metrics_curves_and_checkpoints(tmp_path) -> None:
    lines: list[str] = []
    t = fit(config(tmp_path), lines)
    assert (len(t.train_set), len(t.val_set), len(t.test_set)) == (N_TRAIN - N_VAL, N_VAL,
                                                                     N_TEST)
    assert len(np.unique(t.train_set.labels)) == 10

    text = (tmp_path / "metrics.csv").read_text()
    assert text.splitlines()[0] == "epoch,train_loss,train_acc,val_loss,val_acc,seconds"
    rows = M.read_metrics_csv(tmp_path / "metrics.csv")
    assert [r["epoch"] for r in rows] == [1, 2]
    for row, hist in zip(rows, t.history, strict=True):
        for c in M.METRIC_COLUMNS:
            assert math.isclose(row[c], hist[c], rel_tol=1e-5), c
        assert 0 <= row["train_acc"] <= 1 and 0 <= row["val_acc"] <= 1 and row["seconds"] > 0

    # it learns: the loss falls and held-out accuracy is well above chance (10 %)
    assert rows[1]["train_loss"] < rows[0]["train_loss"]
    assert rows[1]["val_loss"] < rows[0]["val_loss"]
    assert rows[1]["val_acc"] > 0.25

    png = tmp_path / "curves.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with Image.open(png) as im:
        assert im.size[0] > 200 and im.size[1] > 100

    last = load_checkpoint(tmp_path / "last.safetensors")
    best = load_checkpoint(tmp_path / "best.safetensors")
    assert last.meta["epoch"] == 2 and last.meta["step"] == 2 * t.steps_per_epoch
    assert last.optimizer_state is not None and best.optimizer_state is None
    best_epoch = max(rows, key=lambda r: r["val_acc"])["epoch"]
    assert best.meta["epoch"] == best_epoch
    assert best.meta["best_val_acc"] == max(r["val_acc"] for r in t.history)
    assert last.meta["config"] == dataclasses.asdict(t.cfg)
    assert last.meta["model"] == "lenet5" and last.meta["image_shape"] == [1, 28, 28]
    assert_same_weights(last.model_state, t.model.state_dict())
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]

    assert len(lines) == 2
    assert lines[0].startswith("epoch   1/2  loss ") and "val_acc" in lines[0]
    assert lines[0].endswith("img/s")


def test_best_checkpoint_predicts_what_evaluate_model_reports(tmp_path) -> None:
    t = fit(config(tmp_path, epochs=1))
    model = load_checkpoint(tmp_path / "best.safetensors").build_model()
    loss, acc, pred = trainer_mod.evaluate_model(model, t.val_set)
    assert acc == t.history[0]["val_acc"]
    assert loss == pytest.approx(t.history[0]["val_loss"], rel=1e-6)
    assert pred.shape == (N_VAL,) and acc == np.mean(pred == t.val_set.labels)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_dtype_is_kept_end_to_end(tmp_path, dtype) -> None:
    t = fit(config(tmp_path, epochs=1, dtype=dtype))
    want = np.dtype(dtype)
    assert all(p.dtype == want for p in t.model.parameters())
    assert load_checkpoint(tmp_path / "last.safetensors").model_state["0.weight"].dtype == want


# -- reproducibility --------------------------------------------------------------------------
def test_same_seed_reproduces_the_run_bit_for_bit(tmp_path) -> None:
    a = fit(config(tmp_path / "a"))
    b = fit(config(tmp_path / "b"))
    c = fit(config(tmp_path / "c", seed=1))
    assert compared(a.history) == compared(b.history)
    assert_same_weights(weights(tmp_path / "a" / "last.safetensors"),
                        weights(tmp_path / "b" / "last.safetensors"))
    assert compared(a.history) != compared(c.history)
    assert not np.array_equal(a.model.state_dict()["0.weight"], c.model.state_dict()["0.weight"])


class Killed(BaseException):
    """Stands for SIGKILL: nothing after it runs (not even ``except Exception`` handlers)."""


def _kill_mid_epoch_2(monkeypatch, t: Trainer) -> None:
    real = t.opt.step

    def step(*args, **kwargs):
        if t.step == t.steps_per_epoch + 3:     # three updates into epoch 2
            raise Killed
        return real(*args, **kwargs)

    monkeypatch.setattr(t.opt, "step", step)


def _kill_after_epoch_1_checkpoint(monkeypatch, t: Trainer) -> None:
    def write_csv(*args, **kwargs):              # runs right after last.safetensors is written
        raise Killed

    monkeypatch.setattr(trainer_mod.M, "write_metrics_csv", write_csv)


@pytest.mark.parametrize(("kill", "optimizer"), [(_kill_mid_epoch_2, "sgd"),
                                                 (_kill_after_epoch_1_checkpoint, "adamw")])
def test_resume_continues_exactly_like_an_uninterrupted_run(tmp_path, monkeypatch, kill,
                                                            optimizer) -> None:
    cfg = {"epochs": 3, "optimizer": optimizer, "lr": 0.05 if optimizer == "sgd" else 2e-3}
    whole = fit(config(tmp_path / "whole", **cfg))

    with monkeypatch.context() as patch:
        doomed = Trainer(config(tmp_path / "killed", **cfg), progress=False, log=lambda s: None)
        kill(patch, doomed)
        with pytest.raises(Killed):
            doomed.fit()
    assert load_checkpoint(tmp_path / "killed" / "last.safetensors").meta["epoch"] == 1

    lines: list[str] = []
    again = Trainer(config(tmp_path / "killed", **cfg), progress=False, log=lines.append)
    again.resume()
    assert lines[0].startswith("resumed from") and "at epoch 1" in lines[0]
    assert again.epoch == 1 and again.step == again.steps_per_epoch
    again.fit()

    # the loss curve (losses and accuracies, every epoch) and the weights are identical
    assert compared(again.history) == compared(whole.history)
    assert [r["epoch"] for r in again.history] == [1, 2, 3]
    for name in ("last", "best"):
        assert_same_weights(weights(tmp_path / "whole" / f"{name}.safetensors"),
                            weights(tmp_path / "killed" / f"{name}.safetensors"))
    a = load_checkpoint(tmp_path / "whole" / "last.safetensors")
    b = load_checkpoint(tmp_path / "killed" / "last.safetensors")
    assert a.meta["step"] == b.meta["step"] and a.meta["rng_state"] == b.meta["rng_state"]
    assert a.meta["scheduler"] == b.meta["scheduler"]
    rows_a = M.read_metrics_csv(tmp_path / "whole" / "metrics.csv")
    rows_b = M.read_metrics_csv(tmp_path / "killed" / "metrics.csv")
    assert compared(rows_a) == compared(rows_b)


def test_resume_of_a_finished_run_trains_no_more(tmp_path) -> None:
    first = fit(config(tmp_path, epochs=1))
    again = Trainer(config(tmp_path, epochs=1), progress=False, log=lambda s: None)
    again.resume()
    assert again.fit() == first.history
    assert_same_weights(again.model.state_dict(), first.model.state_dict())


def test_resume_refuses_another_model_or_a_best_checkpoint(tmp_path) -> None:
    fit(config(tmp_path, epochs=1))
    other = Trainer(config(tmp_path, model="resnet_small", epochs=1), progress=False,
                    log=lambda s: None)
    with pytest.raises(ValueError, match="written by a run with other settings "
                                         r"\(model: saved 'lenet5', now 'resnet_small'\)"):
        other.resume()
    same = Trainer(config(tmp_path, epochs=1), progress=False, log=lambda s: None)
    with pytest.raises(ValueError, match="has no optimizer state"):
        same.resume(tmp_path / "best.safetensors")


def test_resume_without_a_checkpoint_is_a_checkpoint_error(tmp_path) -> None:
    t = Trainer(config(tmp_path / "empty"), progress=False, log=lambda s: None)
    with pytest.raises(ValueError, match=r"last\.safetensors: no such checkpoint file"):
        t.resume()


# -- divergence -------------------------------------------------------------------------------
def test_nan_loss_raises_training_diverged_and_keeps_the_last_good_checkpoint(
        tmp_path, monkeypatch) -> None:
    t = Trainer(config(tmp_path, epochs=3), progress=False, log=lambda s: None)
    real = t.model.forward

    def forward(x):                   # a weight turns NaN three steps into epoch 2
        if t.step == t.steps_per_epoch + 3 and t.model.training:
            t.model[0].weight.data[0, 0, 0, 0] = np.nan
        return real(x)

    monkeypatch.setattr(t.model, "forward", forward)
    with pytest.raises(TrainingDiverged) as info:
        t.fit()
    msg = str(info.value)
    assert f"loss became nan at step {t.steps_per_epoch + 4} (epoch 2)" in msg
    assert "Try a smaller learning rate (--lr 0.005)" in msg
    assert "last.safetensors (epoch 1), is kept" in msg
    assert isinstance(info.value, RuntimeError)
    good = load_checkpoint(tmp_path / "last.safetensors")
    assert good.meta["epoch"] == 1
    assert np.all(np.isfinite(good.model_state["0.weight"]))
    assert good.build_model() is not None
    assert len(M.read_metrics_csv(tmp_path / "metrics.csv")) == 1


@pytest.mark.filterwarnings("ignore:overflow encountered:RuntimeWarning")
@pytest.mark.filterwarnings("ignore:invalid value encountered:RuntimeWarning")
def test_a_huge_learning_rate_diverges_in_the_first_epoch(tmp_path) -> None:
    t = Trainer(config(tmp_path, lr=1e6, schedule="none"), progress=False, log=lambda s: None)
    with pytest.raises(TrainingDiverged, match=r"at step \d+ \(epoch 1\).*No checkpoint was "
                                               r"written.*--lr 100000"):
        t.fit()
    assert not (tmp_path / "last.safetensors").exists()


# -- configuration ----------------------------------------------------------------------------
@pytest.mark.parametrize(("field", "value", "message"), [
    ("epochs", 0, "epochs must be an int >= 1, got 0"),
    ("batch_size", 0, "--batch-size must be an int >= 1, got 0"),
    ("lr", 0.0, "lr must be a finite number > 0, got 0.0"),
    ("lr", -0.1, "lr must be a finite number > 0"),
    ("lr", float("nan"), "lr must be a finite number > 0, got nan"),
    ("lr", float("inf"), "lr must be a finite number > 0, got inf"),
    ("optimizer", "rmsprop", r"optimizer must be one of \('sgd', 'adam', 'adamw'\), "
                             r"got 'rmsprop'"),
    ("schedule", "linear", r"schedule must be one of \('none', 'step', 'cosine'\)"),
    ("dtype", "float16", "dtype must be 'float32' or 'float64', got 'float16'"),
    ("weight_decay", -1e-4, "--weight-decay must be a finite number >= 0"),
    ("weight_decay", float("nan"), "--weight-decay must be a finite number >= 0, got nan"),
    ("val_fraction", 0.0, r"--val-fraction must be in \(0, 0.5\], got 0.0"),
    ("warmup_epochs", float("nan"), "--warmup-epochs must be a finite number >= 0, got nan"),
    ("warmup_epochs", -1.0, "--warmup-epochs must be a finite number >= 0, got -1.0"),
    ("warmup_epochs", 2.0, r"--warmup-epochs must be smaller than --epochs \(2\)"),
    ("seed", -1, "--seed must be an int >= 0, got -1"),
    ("label_smoothing", 1.0, r"--label-smoothing must be in \[0, 1\), got 1.0"),
    ("label_smoothing", -0.1, r"--label-smoothing must be in \[0, 1\)"),
    # the checks of functional._validation: the kind of value too, in the command line's terms
    ("epochs", 2.5, "--epochs must be an int >= 1, got 2.5"),
    ("epochs", "3", "--epochs must be an int >= 1, got '3'"),
    ("epochs", True, "--epochs must be an int >= 1, got True"),
    ("batch_size", 1.5, "--batch-size must be an int >= 1, got 1.5"),
    ("lr", True, "--lr must be a finite number > 0, got True"),
    ("lr", "0.1", "--lr must be a finite number > 0, got '0.1'"),
    ("val_fraction", None, r"--val-fraction must be in \(0, 0.5\], got None"),
])
def test_config_validate_errors(tmp_path, field, value, message) -> None:
    cfg = config(tmp_path, **{field: value})
    with pytest.raises(ValueError, match=message):
        cfg.validate()
    with pytest.raises(ValueError, match=message):      # the Trainer validates first
        Trainer(cfg, progress=False)
    assert not tmp_path.exists() or not any(tmp_path.iterdir())


def test_config_takes_numpy_numbers_as_python_ones(tmp_path) -> None:
    cfg = config(tmp_path, seed=np.int64(1), epochs=np.int32(2), lr=np.float32(0.5))
    cfg.validate()
    assert (cfg.seed, cfg.epochs, cfg.lr) == (1, 2, 0.5)
    assert (type(cfg.seed), type(cfg.epochs), type(cfg.lr)) == (int, int, float)


def test_trainer_still_exports_the_choices() -> None:
    from rot180.train import config as C
    from rot180.train import trainer

    assert (trainer.OPTIMIZERS, trainer.SCHEDULES) == (C.OPTIMIZERS, C.SCHEDULES)


def test_default_config_is_valid_and_the_issues_defaults() -> None:
    cfg = TrainConfig()
    cfg.validate()
    assert (cfg.model, cfg.data, cfg.optimizer) == ("lenet5", "mnist5k", "sgd")


@pytest.mark.parametrize(("field", "value", "message"), [
    ("model", "alexnet", "Unknown model 'alexnet'; valid names are"),
    ("data", "imagenet", "Unknown data set 'imagenet'; valid names are"),
])
def test_unknown_model_or_data_is_a_value_error(tmp_path, field, value, message) -> None:
    with pytest.raises(ValueError, match=message):
        Trainer(config(tmp_path, **{field: value}), progress=False)
