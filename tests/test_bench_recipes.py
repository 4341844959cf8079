"""``benchmarks/recipes.py``: its argument checks, its schedule against ours, and a short run of
both sides on the embedded digits (the full recipes are benchmarks, not tests; no timing is
asserted)."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from rot180.train import Trainer

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "recipes.py"


@pytest.fixture(scope="module")
def recipes():
    sys.path.insert(0, str(SCRIPT.parent))
    try:
        spec = importlib.util.spec_from_file_location("bench_recipes", SCRIPT)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
    finally:
        sys.path.remove(str(SCRIPT.parent))
    return module


@pytest.mark.parametrize(("argv", "match"), [
    (["--recipe", "mnist-lenet5", "--epochs", "0"], "--epochs must be an int >= 1"),
    (["--recipe", "mnist-lenet5", "--lr", "-1"], "--lr must be a finite number > 0"),
    (["--recipe", "fashion-resnet", "--batch-size", "0"], "--batch-size must be an int >= 1"),
])
def test_bad_settings_are_refused_in_option_terms(recipes, capsys, argv, match) -> None:
    assert recipes.main(argv) == 2
    assert match in capsys.readouterr().err


@pytest.mark.parametrize(("argv", "match"), [
    (["--recipe", "cifar-vgg"], "invalid choice: 'cifar-vgg'"),
    (["--recipe", "mnist-lenet5", "--side", "jax"], "invalid choice: 'jax'"),
    (["--recipe", "mnist-lenet5", "--threads", "0"], "--threads must be an int >= 1"),
])
def test_bad_options_stop_the_parser(recipes, capsys, argv, match) -> None:
    with pytest.raises(SystemExit):
        recipes.main(argv)
    assert match in capsys.readouterr().err


def test_an_existing_json_file_is_not_replaced(recipes, capsys, tmp_path) -> None:
    kept = tmp_path / "out.json"
    kept.write_text("mine")
    with pytest.raises(SystemExit):
        recipes.main(["--recipe", "mnist-lenet5", "--json", str(kept)])
    assert "is not replaced" in capsys.readouterr().err
    assert kept.read_text() == "mine"


@pytest.mark.parametrize(("schedule", "warmup"), [("cosine", 0.5), ("cosine", 0.0),
                                                 ("step", 0.5), ("none", 0.0)])
def test_lambda_factor_is_our_schedule_at_every_step(recipes, tmp_path, schedule,
                                                     warmup) -> None:
    """The closed form against the rates our scheduler sets, step by step (3 epochs)."""
    cfg = recipes.recipe_config("mnist-lenet5", str(tmp_path / "run"), data="mnist5k", epochs=3,
                                batch_size=256, lr=0.2)
    cfg.schedule, cfg.warmup_epochs = schedule, warmup
    trainer = Trainer(cfg, progress=False, log=lambda _line: None)
    steps = 3 * trainer.steps_per_epoch
    ours = np.array(recipes.our_lr_sequence(trainer, steps))
    factor = recipes.lr_factor(cfg, trainer.steps_per_epoch)
    theirs = np.array([0.2 * factor(t) for t in range(steps)])
    np.testing.assert_allclose(theirs, ours, rtol=0, atol=1e-12)
    assert len(set(ours.round(12))) > (1 if schedule != "none" else 0)


def test_a_model_that_cannot_take_the_data_is_an_error_not_a_traceback() -> None:
    done = subprocess.run(   # a child: the script sets the process's thread counts first
        [sys.executable, str(SCRIPT), "--recipe", "mnist-lenet5", "--data", "digits8x8",
         "--epochs", "1", "--threads", "1"], capture_output=True, text=True, timeout=120,
        check=False)
    assert done.returncode == 2
    assert "recipes.py: error: lenet5 needs 28x28 images" in done.stderr
    assert "Traceback" not in done.stderr


def test_both_sides_train_the_same_run(tmp_path) -> None:
    """One epoch of lenet5 on the embedded digits on both sides, in a child process (the script
    sets the process's thread counts): the same model and batches give the same epoch."""
    out = tmp_path / "run.json"
    done = subprocess.run(
        [sys.executable, str(SCRIPT), "--recipe", "mnist-lenet5", "--data", "mnist5k",
         "--epochs", "1", "--batch-size", "128", "--threads", "1", "--json", str(out)],
        capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    assert "ours/torch time:" in done.stdout
    report = json.loads(out.read_text())
    ours, torch_row = report["rows"]
    assert (ours["side"], torch_row["side"]) == ("ours", "torch")
    assert report["config"]["data"] == "mnist5k" and report["config"]["epochs"] == 1
    a, b = ours["history"][0], torch_row["history"][0]
    assert a["train_loss"] == pytest.approx(b["train_loss"], rel=1e-4)
    assert a["val_acc"] == pytest.approx(b["val_acc"], abs=0.01)
    assert report["schedule_check"]["max_gap_rel_lr"] < 1e-9
    assert report["schedule_check"]["steps"] == 29   # ceil(3,600 / 128)
    for row in (ours, torch_row):
        assert 0.3 < row["test_best"] <= 1 and row["wall_s"] > 0
