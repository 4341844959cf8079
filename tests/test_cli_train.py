"""``rot180 train / evaluate / predict`` end to end through ``rot180.cli.main``.

The data sets are cut to a fixed few hundred images per split (``load_dataset`` is wrapped where
the trainer and ``evaluate`` look it up) so that a run takes about a second; everything else is
the real command line.
"""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import load_file as torch_load_file

import rot180.commands.evaluate as evaluate_cmd
from _training import subset_loader
from rot180 import optim
from rot180.cli import main
from rot180.data import load_dataset
from rot180.train import load_checkpoint
from rot180.train import metrics as M
from rot180.train import trainer as trainer_mod
from test_models import TWINS  # the PyTorch twins of the zoo, written independently there

N_TRAIN, N_VAL = 320, 160   # the subsets of the train and test splits; 32 of the 320 validate
FAST = ["--batch-size", "16", "--no-progress"]


def _first_few(real):
    return subset_loader(real, N_TRAIN, N_VAL, seed=0)


@pytest.fixture(autouse=True, scope="module")
def small_data_one_thread():
    from threadpoolctl import threadpool_limits

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    with pytest.MonkeyPatch.context() as mp, threadpool_limits(1):
        mp.setattr(trainer_mod, "load_dataset", _first_few(trainer_mod.load_dataset))
        mp.setattr(evaluate_cmd, "load_dataset", _first_few(evaluate_cmd.load_dataset))
        yield
    torch.set_num_threads(before)


def printed_test_accuracy(stdout: str, which: str) -> str:
    """The test accuracy of ``best`` or ``last`` in train's final line, as printed."""
    return re.search(rf"test accuracy \(\d+ images, used for no choice\):.* {which} "
                     r"(\d+\.\d\d%)", stdout).group(1)


def run_cli(capsys, *argv) -> tuple[int, str, str]:
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> tuple[Path, str]:
    """One 2-epoch ``rot180 train`` run shared by the evaluate / predict tests."""
    out = tmp_path_factory.mktemp("run")
    import contextlib
    import io

    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        code = main(["train", "--epochs", "2", "--out", str(out), *FAST])
    assert code == 0
    return out, buf.getvalue()


# -- train ------------------------------------------------------------------------------------
def test_train_prints_a_line_per_epoch_and_writes_everything(trained) -> None:
    out, stdout = trained
    assert ("training lenet5 on mnist5k: 288 images, 32 for validation, 160 for the final test"
            in stdout)
    epoch_lines = [line for line in stdout.splitlines() if line.startswith("epoch ")]
    assert len(epoch_lines) == 2
    assert re.fullmatch(r"epoch +1/2  loss \d\.\d{4}  acc +\d+\.\d\d%  val_loss \d\.\d{4}  "
                        r"val_acc +\d+\.\d\d% +\d+\.\ds +[\d,]+ img/s", epoch_lines[0])
    assert re.search(r"^best validation accuracy \d+\.\d\d% \(epoch \d\); test accuracy \(160 "
                     r"images, used for no choice\): best \d+\.\d\d%, last \d+\.\d\d%; ",
                     stdout, re.M)
    for name in ("metrics.csv", "curves.png", "best.safetensors", "last.safetensors"):
        assert (out / name).stat().st_size > 0, name
    rows = M.read_metrics_csv(out / "metrics.csv")
    assert list(rows[0]) == list(M.METRIC_COLUMNS) and len(rows) == 2
    assert rows[1]["train_loss"] < rows[0]["train_loss"]


def test_train_resnet_on_8x8_digits_then_evaluate(tmp_path, capsys) -> None:
    code, out, err = run_cli(capsys, "train", "--model", "resnet_small", "--data", "digits8x8",
                             "--epochs", "1", "--out", tmp_path, *FAST)
    assert code == 0, err
    assert "training resnet_small on digits8x8" in out and "epoch   1/1" in out
    best_test = printed_test_accuracy(out, "best")
    code, out, err = run_cli(capsys, "evaluate", tmp_path / "best.safetensors")
    assert code == 0, err
    assert "digits8x8 test split, 160 images" in out
    assert f"accuracy {best_test}" in out     # what train reported for best on the test split


def test_lenet5_on_8x8_digits_fails_cleanly(tmp_path, capsys) -> None:
    """LeNet-5 needs 28x28 inputs; 8x8 digits are an error message, not a traceback."""
    code, out, err = run_cli(capsys, "train", "--data", "digits8x8", "--epochs", "1",
                             "--out", tmp_path, *FAST)
    assert code == 2
    assert err.startswith("rot180: error:") and "Traceback" not in err


def test_resume_via_the_cli_continues_exactly(tmp_path, capsys, monkeypatch) -> None:
    """Kill a run mid-epoch 2 (Ctrl-C), start it again with --resume: same curve, same weights,
    and the trained float64 checkpoint gives PyTorch's logits."""
    args = ["train", "--epochs", "2", "--dtype", "float64", *FAST]
    code, _, err = run_cli(capsys, *args, "--out", tmp_path / "whole")
    assert code == 0, err

    real_step = optim.SGD.step
    calls = {"n": 0}

    def step(self, *a, **k):
        calls["n"] += 1
        if calls["n"] == N_TRAIN // 16 + 3:
            raise KeyboardInterrupt
        return real_step(self, *a, **k)

    monkeypatch.setattr(optim.SGD, "step", step)
    code, _, err = run_cli(capsys, *args, "--out", tmp_path / "killed")
    assert code == 130 and "rot180: interrupted" in err
    monkeypatch.undo()
    assert load_checkpoint(tmp_path / "killed" / "last.safetensors").meta["epoch"] == 1

    code, out, err = run_cli(capsys, *args, "--out", tmp_path / "killed", "--resume")
    assert code == 0, err
    assert "resumed from" in out and "at epoch 1" in out
    assert "epoch   1/2" not in out and "epoch   2/2" in out
    keys = ("epoch", "train_loss", "train_acc", "val_loss", "val_acc")
    whole = load_checkpoint(tmp_path / "whole" / "last.safetensors")
    again = load_checkpoint(tmp_path / "killed" / "last.safetensors")
    assert [[r[k] for k in keys] for r in whole.meta["history"]] == \
        [[r[k] for k in keys] for r in again.meta["history"]]
    for k, v in whole.model_state.items():
        np.testing.assert_array_equal(again.model_state[k], v, err_msg=k)

    # acceptance: the trained checkpoint's logits equal those of its PyTorch twin
    path = tmp_path / "killed" / "best.safetensors"
    twin = TWINS["lenet5"]().double()
    twin.load_state_dict(torch_load_file(str(path)), strict=True)
    val = trainer_mod.load_dataset("mnist5k", split="test")
    x = next(iter(val.loader(batch_size=N_VAL, dtype=np.float64)))[0]
    ours = load_checkpoint(path).build_model().eval().forward(x)
    with torch.no_grad():
        theirs = twin.eval()(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(ours, theirs, rtol=1e-10, atol=1e-10)


@pytest.mark.filterwarnings("ignore:overflow encountered:RuntimeWarning")
@pytest.mark.filterwarnings("ignore:invalid value encountered:RuntimeWarning")
def test_divergence_is_an_error_message_not_a_traceback(tmp_path, capsys) -> None:
    code, _, err = run_cli(capsys, "train", "--lr", "1e6", "--schedule", "none", "--epochs", "1",
                           "--out", tmp_path, *FAST)
    assert code == 1
    assert err.startswith("rot180: error: loss became nan") and "--lr 100000" in err
    assert "Traceback" not in err


@pytest.mark.parametrize(("argv", "message"), [
    (["--model", "alexnet"], "Unknown model 'alexnet'"),
    (["--data", "imagenet"], "Unknown data set 'imagenet'"),
    (["--epochs", "0"], "epochs must be an int >= 1, got 0"),
    (["--lr", "-1"], "--lr must be a finite number > 0"),
    (["--weight-decay", "nan"], "--weight-decay must be a finite number >= 0, got nan"),
    (["--val-fraction", "0"], "--val-fraction must be in (0, 0.5], got 0.0"),
    (["--val-fraction", "1e-9"], "--val-fraction 1e-09 of the"),
    (["--optimizer", "rmsprop"], "invalid choice: 'rmsprop'"),
])
def test_train_errors_exit_2_without_traceback(tmp_path, capsys, argv, message) -> None:
    code, _, err = run_cli(capsys, "train", *argv, "--out", tmp_path, *FAST)
    assert code == 2
    assert "error:" in err and message in err and "Traceback" not in err


def test_resume_without_a_previous_run_is_an_error(tmp_path, capsys) -> None:
    code, _, err = run_cli(capsys, "train", "--resume", "--out", tmp_path / "none", *FAST)
    assert code == 2
    assert err.startswith("rot180: error:") and "no such checkpoint file" in err


# -- evaluate ---------------------------------------------------------------------------------
def test_evaluate_prints_accuracy_and_confusion_and_writes_png(trained, capsys) -> None:
    out_dir, stdout = trained
    code, out, err = run_cli(capsys, "evaluate", out_dir / "best.safetensors")
    assert code == 0, err
    acc = float(printed_test_accuracy(stdout, "best")[:-1]) / 100
    assert f"accuracy {acc:.2%} ({round(acc * N_VAL)}/{N_VAL})" in out
    lines = out.splitlines()
    head = next(i for i, line in enumerate(lines) if line.startswith("true\\pred"))
    table = lines[head + 1:head + 11]
    counts = np.array([[int(v) for v in line.split()[1:11]] for line in table])
    assert [line.split()[0] for line in table] == [str(d) for d in range(10)]
    assert counts.sum() == N_VAL and np.trace(counts) == round(acc * N_VAL)
    png = out_dir / "confusion.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert f"confusion matrix picture: {png}" in out


def test_evaluate_options(trained, tmp_path, capsys) -> None:
    out_dir, _ = trained
    code, out, err = run_cli(capsys, "evaluate", out_dir / "last.safetensors", "--split", "train",
                             "--out", tmp_path / "cm.png")
    assert code == 0, err
    assert f"train split, {N_TRAIN} images" in out
    assert (tmp_path / "cm.png").stat().st_size > 0


# -- predict ----------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def digit_pngs(tmp_path_factory) -> tuple[list[Path], list[int | None], np.ndarray]:
    """Three held-out digits as PNGs, white on black (as MNIST) and black on white (as on paper),
    and one as an RGB JPEG twice the size; ``which[j]`` is the digit (0-2) behind ``paths[j]``
    for the lossless same-size files, None for the JPEG."""
    d = tmp_path_factory.mktemp("png")
    val = load_dataset("mnist5k", split="test")
    idx = np.array([0, 350, 720])
    paths: list[Path] = []
    which: list[int | None] = []
    for k, i in enumerate(idx):
        img = val.images[i, 0]
        Image.fromarray(img).save(d / f"wob_{i}.png")
        Image.fromarray(255 - img).save(d / f"bow_{i}.png")
        paths += [d / f"wob_{i}.png", d / f"bow_{i}.png"]
        which += [k, k]
    Image.fromarray(val.images[idx[0], 0]).convert("RGB").resize((56, 56)).save(d / "big.jpg")
    paths.append(d / "big.jpg")
    which.append(None)
    return paths, which, val.images[idx]


def test_predict_prints_top_classes(trained, digit_pngs, capsys) -> None:
    out_dir, _ = trained
    paths, which, images = digit_pngs
    ckpt = out_dir / "best.safetensors"
    code, out, err = run_cli(capsys, "predict", ckpt, *paths)
    assert code == 0, err
    lines = out.splitlines()
    assert len(lines) == len(paths)

    # the model's own answer on the stored digits, normalised as in training
    model = load_checkpoint(ckpt).build_model().eval()
    val = load_dataset("mnist5k", split="test")
    x = next(iter(dataclasses.replace(val, images=images, labels=np.zeros(3, np.int64))
                  .loader(batch_size=3)))[0]
    logits = model.forward(x).astype(np.float64)
    prob = np.exp(logits - logits.max(1, keepdims=True))
    prob /= prob.sum(1, keepdims=True)

    answers = []
    for line, path, k in zip(lines, paths, which, strict=True):
        m = re.fullmatch(re.escape(str(path)) + r": (\d)   \((\d): ([\d.]+)%  (\d): [\d.]+%  "
                         r"(\d): [\d.]+%\)", line)
        assert m, line
        assert m.group(1) == m.group(2)
        answers.append(int(m.group(1)))
        if k is not None:   # lossless, same size, either polarity: exactly the model's answer
            assert answers[-1] == int(prob[k].argmax())
            assert float(m.group(3)) == pytest.approx(100 * prob[k].max(), abs=0.051)
    assert answers[-1] == answers[0]      # the enlarged RGB JPEG of the first digit


def test_predict_top_option(trained, digit_pngs, capsys) -> None:
    out_dir, _ = trained
    code, out, _ = run_cli(capsys, "predict", out_dir / "best.safetensors", digit_pngs[0][0],
                           "--top", "1")
    assert code == 0
    assert re.fullmatch(r".*: (\d)   \(\1: [\d.]+%\)", out.strip())


def test_predict_errors_exit_2_without_traceback(trained, digit_pngs, tmp_path, capsys) -> None:
    out_dir, _ = trained
    text = tmp_path / "notes.png"
    text.write_text("not an image")
    missing = tmp_path / "missing.safetensors"
    best = out_dir / "best.safetensors"
    png = digit_pngs[0][0]
    cases = [
        (["predict", missing, png], missing, "no such checkpoint file"),
        (["predict", png, png], png, "not a valid safetensors checkpoint"),
        (["predict", best, text], text, "not a readable image"),
        (["predict", best, tmp_path / "gone.png"], tmp_path / "gone.png", "no such image file"),
        (["evaluate", missing], missing, "no such checkpoint file"),
        (["evaluate", best, "--data", "imagenet"], "imagenet", "Unknown data set"),
    ]
    for argv, culprit, message in cases:
        code, _, err = run_cli(capsys, *argv)
        assert code == 2, argv
        assert err.startswith("rot180: error:"), err
        assert message in err and str(culprit) in err and "Traceback" not in err
