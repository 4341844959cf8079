"""``rot180 explain``: golden text of the article's example, the other formats, the options, the
pooling explanation, and the errors."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest

from rot180.cli import main
from rot180.explain.pooling import pooling_example
from rot180.functional.pool import avg_pool, max_pool

GOLDEN = Path(__file__).parent / "golden" / "explain_default.txt"


def _run(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(["explain", *argv])
    out = capsys.readouterr()
    return code, out.out, out.err


def test_default_is_the_articles_example(capsys):
    """No options: the article's 3x3 input, 2x2 kernel, convolution convention, verbatim."""
    code, out, _ = _run(capsys)
    assert code == 0
    assert out == GOLDEN.read_text(encoding="utf-8")


def test_golden_text_says_what_the_issue_asks():
    """The golden file itself holds the article's table and the sections in the right order."""
    text = GOLDEN.read_text(encoding="utf-8")
    assert "convention: convolution" in text
    assert "∂C/∂x11 = δ11·w22\n" in text
    assert "∂C/∂x12 = δ11·w21 + δ12·w22\n" in text
    order = ["z11 = w22·x11", "W:", "Wᵀ:", "∂C/∂x11 =", "stretched, padded delta",
             "rot180(w), the forward pass correlates with it",
             "verified: equal in all 9 cells"]
    positions = [text.index(s) for s in order]
    assert positions == sorted(positions)


def test_correlation_convention(capsys):
    code, out, _ = _run(capsys, "--convention", "correlation")
    assert code == 0
    assert "convention: correlation" in out
    assert "∂C/∂x11 = δ11·w11\n" in out
    assert "∂C/∂x22 = δ11·w22 + δ12·w21 + δ21·w12 + δ22·w11" in out
    assert "rot180(w), the rotated kernel that slides over the padded delta" in out


@pytest.mark.parametrize(("argv", "cells", "expect"), [
    (["--input", "7", "--kernel", "3", "--stride", "2", "--dilation", "2"], 7,
     "stretch by s = 2"),
    (["--input", "5x4", "--kernel", "2x3", "--stride", "2,1", "--padding", "1:0,2"], 20,
     "padding (1,0),(2,2)"),
    (["--input", "4x4", "--kernel", "3x3", "--padding", "same"], 16, "padding 1,"),
    (["--input", "3x3", "--kernel", "2x2", "--padding", "full"], 9, "output 4x4"),
    (["--input", "3x3", "--kernel", "2x2", "--channels", "2,3"], 18, "channels 2→3"),
])
def test_options(capsys, argv, cells, expect):
    code, out, _ = _run(capsys, *argv)
    assert code == 0
    assert expect in out
    assert f"\nverified: equal in all {cells} cells (section 3 = section 4" in out


def test_formats(capsys):
    code, md, _ = _run(capsys, "--format", "markdown")
    assert code == 0
    assert "## 3. Input deltas by the chain rule" in md
    assert r"\partial C/\partial x_{11} &= \delta_{11} w_{22}" in md
    assert "| $z_{11}$ | $w_{22}$ |" in md
    code, tex, _ = _run(capsys, "--format", "latex")
    assert code == 0
    assert tex.startswith(r"\documentclass{article}") and tex.rstrip().endswith(r"\end{document}")
    assert r"\section*{3. Input deltas by the chain rule}" in tex
    assert tex.count(r"\begin{") == tex.count(r"\end{")
    assert "δ" not in tex.replace(r"\delta", "")     # every delta typeset as math


@pytest.mark.parametrize(("argv", "match"), [
    (["--input", "3x3x3"], "invalid size"),
    (["--input", "4", "--kernel", "2x2"], "is 1-D but kernel_shape"),
    (["--input", "2x2", "--kernel", "3x3"], "larger than the padded input"),
    (["--mode", "max"], "--mode applies only to rot180 explain pooling"),
    (["pooling", "--channels", "2,2"], "--channels applies only to rot180 explain"),
    (["--input", "30x30"], "at most 400"),
    (["--channels", "3"], "invalid channels"),
    (["--padding", "same", "--stride", "2"], "only defined for stride 1"),
])
def test_errors(capsys, argv, match):
    code, _, err = _run(capsys, *argv)
    assert code == 2
    assert re.search(match, err)


@pytest.mark.parametrize("mode", ["max", "mean"])
def test_pooling(capsys, mode):
    code, out, _ = _run(capsys, "pooling", "--mode", mode)
    assert code == 0
    assert f"{mode} pooling, input 4x4, window 2, stride 2" in out
    assert out.rstrip().endswith("verified: equal in all 16 cells (the chain rule of section 2 "
                                 "and the rule of section 3)")
    if mode == "max":     # the tie in the last window goes to its first maximum
        assert "∂C/∂x34 = δ22 = 4" in out and "∂C/∂x43 = 0" in out
    else:
        assert "∂C/∂x11 = δ11/4 = 0.25" in out


@pytest.mark.parametrize(("mode", "shape", "k", "s", "p"), [
    ("max", (4, 4), (2, 2), None, (0, 0)), ("mean", (4, 4), (2, 2), None, (0, 0)),
    ("max", (5, 6), (3, 3), (2, 2), (1, 1)), ("mean", (5, 6), (3, 2), (2, 1), (1, 0)),
    ("max", (7,), (3,), (2,), (1,)), ("mean", (7,), (3,), (1,), (0,)),
])
def test_pooling_example_against_pool(mode, shape, k, s, p):
    """The chain rule of the pooling example agrees with the rule; the forward pass agrees with
    rot180.functional.pool; a delta sums to the same total before and after the upsample when
    no window overlaps padding (mean) or always (max)."""
    ex = pooling_example(mode, shape, k, s, p)
    assert ex.verified and ex.mismatches == ()
    x = ex.x[None, None]
    y = max_pool(x, k, s, p)[0] if mode == "max" else avg_pool(x, k, s, p)
    np.testing.assert_array_equal(ex.y, y[0, 0])
    if mode == "max":
        assert ex.chain.sum() == pytest.approx(ex.delta.sum())


def test_out_writes_figures(capsys, tmp_path):
    code, _, err = _run(capsys, "--input", "3", "--kernel", "2", "--out", str(tmp_path))
    assert code == 0
    names = sorted(p.name for p in tmp_path.iterdir())
    for stem in ("network", "delta_table", "windows", "unrolled", "stretch", "pooling"):
        assert f"{stem}.png" in names and f"{stem}.svg" in names
    assert "sweep.gif" in names
    assert "wrote 13 figure files" in err
    code, _, err = _run(capsys, "pooling", "--out", str(tmp_path / "pool"))
    assert code == 0 and (tmp_path / "pool" / "pooling.png").stat().st_size > 0
