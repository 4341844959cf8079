"""The model card: one record of model, image shape, classes and normalisation, written by
``rot180 train`` and read by ``evaluate``, ``predict`` and ``saliency`` alike. Every checkpoint
here was written by ``rot180 train`` itself (a two-epoch run on a few hundred digits), so a key
that the trainer does not write cannot make a test pass. Also the commands' option errors, in
the user's terms (exit 2, no traceback).
"""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import io
import re
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import rot180.commands.evaluate as evaluate_cmd
from _training import subset_loader
from rot180.cli import main
from rot180.data import load_dataset
from rot180.models import lenet5
from rot180.train import load_checkpoint, save_checkpoint
from rot180.train import trainer as trainer_mod
from rot180.train.card import ModelCard, probabilities

N_TRAIN, N_TEST = 320, 160
FAST = ["--batch-size", "16", "--no-progress"]

pytestmark = pytest.mark.usefixtures("one_thread")  # see conftest.py


def _subset(real):
    return subset_loader(real, N_TRAIN, N_TEST, seed=0)


@pytest.fixture(autouse=True, scope="module")
def small_data():
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(trainer_mod, "load_dataset", _subset(trainer_mod.load_dataset))
        mp.setattr(evaluate_cmd, "load_dataset", _subset(evaluate_cmd.load_dataset))
        yield


def run_cli(capsys, *argv) -> tuple[int, str, str]:
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    """best.safetensors of a two-epoch ``rot180 train`` run."""
    out = tmp_path_factory.mktemp("run") / "lenet"
    with contextlib.redirect_stdout(io.StringIO()):
        assert main(["train", "--epochs", "2", "--out", str(out), *FAST]) == 0
    return out / "best.safetensors"


@pytest.fixture(scope="module")
def pngs(tmp_path_factory) -> tuple[list[Path], np.ndarray]:
    """Five test-split digits saved as lossless 28x28 PNGs, and the stored images."""
    d = tmp_path_factory.mktemp("png")
    test = load_dataset("mnist5k", split="test")
    idx = [3, 140, 402, 611, 977]
    paths = []
    for i in idx:
        Image.fromarray(test.images[i, 0]).save(d / f"digit_{i}.png")
        paths.append(d / f"digit_{i}.png")
    return paths, test.images[idx]


# -- item 1: predict and saliency see the same input ------------------------------------------
def test_the_trainer_writes_the_card_that_the_commands_read(checkpoint) -> None:
    card = load_checkpoint(checkpoint).card()
    train = load_dataset("mnist5k", split="train")
    assert card == ModelCard("lenet5", {"num_classes": 10, "in_channels": 1}, (1, 28, 28),
                             tuple(str(d) for d in range(10)), "mnist5k", train.mean, train.std,
                             255.0)
    assert ModelCard.from_meta(card.to_meta(), load_checkpoint(checkpoint).model_state,
                               checkpoint) == card


def test_predict_and_saliency_give_the_same_class_and_probability(checkpoint, pngs, tmp_path,
                                                                   capsys) -> None:
    paths, images = pngs
    code, out, err = run_cli(capsys, "predict", checkpoint, *paths, "--top", "1")
    assert code == 0, err
    predicted = [re.fullmatch(r".*: (\d)   \(\1: ([\d.]+)%\)", line).groups()
                 for line in out.splitlines()]
    assert len(predicted) == len(paths)

    # the model on the stored digits, normalised as the training loader does
    model = load_checkpoint(checkpoint).build_model().eval()
    test = load_dataset("mnist5k", split="test")
    x = next(iter(dataclasses.replace(test, images=images, labels=np.zeros(5, np.int64))
                  .loader(batch_size=5)))[0]
    prob = probabilities(model.forward(x))

    for path, (digit, pct), p in zip(paths, predicted, prob, strict=True):
        code, out, err = run_cli(capsys, "saliency", checkpoint, path,
                                 "--out", tmp_path / f"{path.stem}.png")
        assert code == 0, err
        m = re.fullmatch(rf"{re.escape(str(path))}: predicted (\d) \(([\d.]+)%\); ∂loss/∂input "
                         r"for class \1 drawn in .*", out.strip())
        assert m, out
        assert (m.group(1), m.group(2)) == (digit, pct)       # saliency says what predict says
        assert int(digit) == int(p.argmax())                  # and both what the model says
        assert float(pct) == pytest.approx(100 * p.max(), abs=0.051)


def test_model_input_is_the_training_normalisation_bit_for_bit() -> None:
    for name in ("mnist5k", "digits8x8"):
        test = load_dataset(name, split="test")
        card = ModelCard("resnet_small", {}, tuple(test.images.shape[1:]), test.classes, name,
                         test.mean, test.std, test.max_value)
        for dtype in (np.float32, np.float64):
            want = next(iter(test.loader(batch_size=16, dtype=dtype)))[0]
            got = card.model_input(test.images[:16], dtype, max_value=test.max_value)
            assert got.dtype == want.dtype
            np.testing.assert_array_equal(got, want)
    # a PNG's 0..255 is put on digits8x8's 0..16 scale before the same normalisation
    eight = dataclasses.replace(card, max_value=16.0)
    raw = np.array([0, 255, 128], np.uint8).reshape(1, 1, 1, 3)
    eight = dataclasses.replace(eight, image_shape=(1, 1, 3), mean=(0.0,), std=(1.0,))
    np.testing.assert_array_equal(eight.model_input(raw, np.float64)[0, 0, 0],
                                  [0.0, 1.0, 8 / 16])


def test_a_checkpoint_without_the_card_is_refused_not_guessed(tmp_path, capsys) -> None:
    """What the old saliency test wrote itself (a 'normalization' key, no data record): the
    commands refuse it instead of running the model on unnormalised input."""
    ckpt = tmp_path / "model.safetensors"
    save_checkpoint(ckpt, lenet5(), model="lenet5", model_config={}, image_shape=[1, 28, 28],
                    normalization={"mean": 0.1307, "std": 0.3081},
                    class_names=[str(i) for i in range(10)])
    Image.fromarray(np.zeros((28, 28), np.uint8)).save(tmp_path / "one.png")
    for argv in (["saliency", ckpt, tmp_path / "one.png"], ["predict", ckpt, tmp_path / "one.png"],
                 ["evaluate", ckpt]):
        code, _, err = run_cli(capsys, *argv)
        assert code == 2, argv
        assert f"{ckpt}: data must be a JSON object, got NoneType None" in err
        assert "Traceback" not in err


# -- item 10: options and sizes, in the user's terms ------------------------------------------
@pytest.mark.parametrize("top", ["0", "-2", "two"])
def test_predict_top_below_one_is_a_usage_error(checkpoint, pngs, capsys, top) -> None:
    code, _, err = run_cli(capsys, "predict", checkpoint, pngs[0][0], "--top", top)
    assert code == 2
    assert f"argument --top: expected an int >= 1, got {top if top == 'two' else int(top)}" \
        in err.replace("'two'", "two")
    assert "Traceback" not in err


def test_a_lenet_checkpoint_on_8x8_digits_says_which_size_it_needs(checkpoint, capsys) -> None:
    code, _, err = run_cli(capsys, "evaluate", checkpoint, "--data", "digits8x8")
    assert code == 2
    assert ("rot180: error: this lenet5 checkpoint needs 1x28x28 images (C x H x W, as in "
            "mnist5k); --data digits8x8 has 1x8x8. Use data of the checkpoint's size (--data "
            "mnist5k)") in err
    assert "Traceback" not in err


@pytest.mark.parametrize(("model", "data", "message"), [
    ("vgg_small", "mnist5k", "vgg_small needs 32x32 images; --data mnist5k has 28x28. Choose a "
                             "model made for 28x28 images (--model lenet5, --model resnet_small)"),
    ("lenet5", "digits8x8", "lenet5 needs 28x28 images; --data digits8x8 has 8x8"),
    ("vgg_small", "digits8x8", "vgg_small needs 32x32 images; --data digits8x8 has 8x8"),
])
def test_train_a_model_on_data_of_another_size(tmp_path, capsys, model, data, message) -> None:
    code, _, err = run_cli(capsys, "train", "--model", model, "--data", data, "--out",
                           tmp_path / "r", *FAST)
    assert code == 2
    assert f"rot180: error: {message}" in err and "Traceback" not in err
    assert not (tmp_path / "r").exists()


def test_out_options_naming_the_wrong_kind_of_path(checkpoint, pngs, tmp_path, capsys) -> None:
    a_file = tmp_path / "notes.txt"
    a_file.write_text("mine")
    a_dir = tmp_path / "figures"
    a_dir.mkdir()
    cases = [
        (["train", "--out", a_file, *FAST], f"--out {a_file} is an existing file; --out names "
                                            "the directory for the run's files"),
        (["evaluate", checkpoint, "--out", a_dir], f"--out {a_dir} is a directory; --out names "
                                                   "the figure file to write"),
        (["saliency", checkpoint, pngs[0][0], "--out", a_dir], f"--out {a_dir} is a directory"),
        (["saliency", checkpoint, pngs[0][0], "--out", tmp_path / "map.txt"],
         "expected a file name ending in .png, .svg, .pdf, got '.txt'"),
        (["saliency", checkpoint, pngs[0][0], "--target", "12"],
         "--target must be a class index in 0..9 (this checkpoint's 10 classes), got 12"),
    ]
    for argv, message in cases:
        code, _, err = run_cli(capsys, *argv)
        assert code == 2, argv
        assert message in err and "Traceback" not in err, err
    assert a_file.read_text() == "mine" and not any(a_dir.iterdir())


# -- item 6: figures are written whole or not at all ------------------------------------------
def test_a_full_disk_keeps_the_previous_figure_and_says_so(checkpoint, pngs, tmp_path, capsys,
                                                           monkeypatch) -> None:
    import rot180._files as _files

    sal, cm = tmp_path / "map.png", tmp_path / "cm.png"
    assert run_cli(capsys, "saliency", checkpoint, pngs[0][0], "--out", sal)[0] == 0
    assert run_cli(capsys, "evaluate", checkpoint, "--out", cm)[0] == 0
    before = sal.read_bytes(), cm.read_bytes()

    def no_space(path, data):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(_files, "atomic_write_bytes", no_space)
    for argv, path in ((["saliency", checkpoint, pngs[0][1], "--out", sal], sal),
                       (["evaluate", checkpoint, "--out", cm], cm)):
        code, _, err = run_cli(capsys, *argv)
        assert code == 2
        assert (f"rot180: error: [Errno 28] could not write figure {path}: No space left on "
                "device. Nothing was replaced: the previous figure at that path, if any, is "
                "intact.") in err
    assert (sal.read_bytes(), cm.read_bytes()) == before
