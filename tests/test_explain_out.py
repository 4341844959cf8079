"""``rot180 explain --out``: every file written atomically, a progress bar, per-axis labels on
the stretch figure, and ``w`` beside ``rot180(w)`` in the windows figure; every ``rot180``
command of docs/explain.md runs."""

from __future__ import annotations

import errno
import re
import shlex
from pathlib import Path

import pytest
from matplotlib.text import Text

from rot180 import _files
from rot180.cli import main
from rot180.explain import derive_input_gradient, windows, write_figures

ROOT = Path(__file__).resolve().parents[1]
SMALL = ["--input", "3", "--kernel", "2"]    # 1-D: the figures draw in about a second


def _texts(fig) -> list[str]:
    return [t.get_text() for t in fig.findobj(Text)]


def test_every_file_goes_through_atomic_write(tmp_path, monkeypatch):
    written = []
    real = _files.atomic_write_bytes

    def spy(path, data):
        written.append(Path(path))
        real(path, data)

    monkeypatch.setattr(_files, "atomic_write_bytes", spy)   # what write_file writes with
    paths = write_figures(derive_input_gradient(3, 2), tmp_path)
    on_disk = sorted(p for p in tmp_path.iterdir())
    assert sorted(written) == sorted(paths) == on_disk
    assert {p.suffix for p in on_disk} == {".png", ".svg", ".gif"}


def test_a_full_disk_leaves_the_old_figure_and_no_temporary_file(tmp_path, monkeypatch, capsys):
    old = b"\x89PNG previous figure"
    (tmp_path / "network.png").write_bytes(old)

    def full(src, dst):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(_files.os, "replace", full)
    code = main(["explain", *SMALL, "--out", str(tmp_path)])
    err = capsys.readouterr().err
    assert code == 2
    assert err.startswith("rot180: error: [Errno 28] could not write figure ")
    assert "Free some disk space" in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["network.png"]
    assert (tmp_path / "network.png").read_bytes() == old


def test_progress_bar_on_a_terminal_only(tmp_path, monkeypatch, capsys):
    assert main(["explain", *SMALL, "--out", str(tmp_path / "a")]) == 0
    assert "rot180 explain: figures" not in capsys.readouterr().err   # stderr is not a tty
    monkeypatch.setattr("sys.stderr.isatty", lambda: True)
    assert main(["explain", *SMALL, "--out", str(tmp_path / "b")]) == 0
    err = capsys.readouterr().err
    # The first render always happens (later ones are rate-limited by tqdm's mininterval, and
    # the bar is cleared at the end): its total counts 6 figures + 3 GIF frames.
    assert "rot180 explain: figures" in err and "0/9" in err
    assert main(["explain", *SMALL, "--no-progress", "--out", str(tmp_path / "c")]) == 0
    assert "rot180 explain: figures" not in capsys.readouterr().err


def test_stretch_labels_give_each_axis_its_own_padding_and_stride():
    d = derive_input_gradient((6, 5), (2, 3), stride=(2, 1), padding=((1, 0), (0, 0)))
    assert [p for p in d.grad_padding] == [(0, 2), (2, 2)] and d.remainder == (1, 0)
    texts = "\n".join(_texts(windows.stretch_figure(d)))
    assert "pad: rows low 0, high 2 (includes a = 1)\ncolumns low 2, high 2 (includes a = 0)" \
        in texts
    assert "rows 1, columns 0" in texts


@pytest.mark.parametrize(("convention", "slides", "forward"), [
    ("correlation", "rot180(w)", "forward: z = x ⋆ w, a correlation with w"),
    ("convolution", "w", "forward: z = x * w, a correlation with rot180(w)"),
])
def test_windows_figure_draws_w_beside_rot180_w(convention, slides, forward):
    texts = _texts(windows.windows_figure(derive_input_gradient((3, 3), (2, 2),
                                                                convention=convention)))
    assert f"{slides}  (slides below)" in texts
    assert {"w", "rot180(w)"} & set(texts) == {"w", "rot180(w)"} - {slides}
    assert any(t.startswith(forward) for t in texts)


def _doc_commands(text: str) -> list[list[str]]:
    commands = []
    for block in re.findall(r"```sh\n(.*?)```", text, re.S):
        for line in block.splitlines():
            line = line.split("#", 1)[0].strip()
            if line.startswith("rot180 explain"):
                commands.append(shlex.split(line)[1:])
    return commands


DOC_COMMANDS = _doc_commands((ROOT / "docs" / "explain.md").read_text(encoding="utf-8"))


def test_docs_name_the_commands():
    assert len(DOC_COMMANDS) >= 8
    overlapping = ["explain", "pooling", "--input", "5x5", "--kernel", "3", "--stride", "2"]
    assert overlapping in DOC_COMMANDS


@pytest.mark.parametrize("argv", DOC_COMMANDS, ids=" ".join)
def test_every_command_in_docs_explain_runs(argv, tmp_path, capsys):
    if "--out" in argv:
        argv = [*argv[:argv.index("--out")], "--out", str(tmp_path / "figures")]
    assert main(argv) == 0, capsys.readouterr().err


def test_the_overlapping_pooling_example_has_overlapping_windows(capsys):
    """docs/explain.md's "overlapping pooling windows": more than one window, stride < kernel
    (on the default 4x4 input the 3x3 window fitted once: nothing overlapped)."""
    line = next(a for a in DOC_COMMANDS if a[:2] == ["explain", "pooling"] and "--stride" in a)
    assert main(line) == 0
    head = capsys.readouterr().out.splitlines()[0]
    assert "window 3, stride 2" in head and head.endswith("output 2x2"), head


def test_an_out_through_an_existing_file_says_so(tmp_path, capsys):
    """explain --out a/b where a is a file: the fix for that failure, not "free disk space"."""
    (tmp_path / "a").write_text("a file")
    assert main(["explain", *SMALL, "--out", str(tmp_path / "a" / "b")]) == 2
    err = capsys.readouterr().err
    assert "existing file where a directory is needed" in err and "disk space" not in err


@pytest.mark.parametrize(("argv", "message"), [
    (["--padding", "1000000"], r"a padded input of 2000003x2000003 .* too many to read"),
    (["pooling", "--input", "1000x1000"], r"a pooling example of 1000x1000 .* too many"),
    (["--stride", "0"], r"stride must be >= 1"),          # 0 was taken as "unset": stride 1
    (["--dilation", "0"], r"dilation must be >= 1"),
])
def test_sizes_and_zeros_are_refused_before_any_work(argv, message, capsys):
    assert main(["explain", *argv]) == 2
    err = capsys.readouterr().err
    assert re.search(message, err) and "Traceback" not in err, err
