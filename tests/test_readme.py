"""The README's code examples run as written, and its Quick start names exactly the two commands
that the Makefile and CI use."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()
BLOCKS = re.findall(r"```python\n(.*?)```", README, re.S)


@pytest.mark.parametrize("i", range(len(BLOCKS)))
def test_python_examples_run(i: int) -> None:
    exec(compile(BLOCKS[i], f"README.md block {i}", "exec"), {})  # our own documentation


def test_quick_start_is_make_run_and_make_test() -> None:
    quick = README.split("## Quick start", 1)[1].split("##", 1)[0]
    commands = re.findall(r"^make \w+", quick, re.M)
    assert commands == ["make run", "make test"]
    assert "make test" in (ROOT / ".ci" / "run").read_text()
    makefile = (ROOT / "Makefile").read_text()
    assert re.search(r"^run: ", makefile, re.M) and re.search(r"^test: ", makefile, re.M)
