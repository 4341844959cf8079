"""Every path the README and docs/*.md name is one the commands write (or a file that exists),
and the README's commands say where they live (``.venv/bin/`` or the activated venv)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from rot180.train import rundir

ROOT = Path(__file__).resolve().parents[1]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
FIGURE_STEMS = ("network", "delta_table", "windows", "unrolled", "stretch", "pooling")


def _text(path: Path) -> str:
    return path.read_text(encoding="utf-8")


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: p.name)
def test_run_paths_are_the_trainers(doc, tmp_path):
    default = rundir.default_out("lenet5", "mnist5k", tmp_path)[0].name
    for run, name in re.findall(r"runs/([\w.-]+)/([\w.]+)", _text(doc)):
        assert run == default, f"{doc.name} names runs/{run}/, the trainer writes runs/{default}/"
        assert name in (*rundir.RUN_FILES, "confusion.png"), f"{doc.name}: runs/{run}/{name}"


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: p.name)
def test_pictures_exist(doc):
    for target in re.findall(r"!\[[^\]]*\]\(([^)]+)\)", _text(doc)):
        assert (doc.parent / target).is_file(), f"{doc.name} shows {target}, which is missing"


def test_readme_names_the_figure_the_command_writes():
    readme = _text(ROOT / "README.md")
    see = readme.split("## See the rule", 1)[1].split("##", 1)[0]
    out = re.search(r"rot180 explain .*--out (\S+)", see).group(1)
    for name in re.findall(rf"`{re.escape(out)}/(\w+)\.png`", see):
        assert name in FIGURE_STEMS
    assert f"`{out}/windows.png`" in see


def test_readme_commands_say_where_rot180_is():
    readme = _text(ROOT / "README.md")
    assert ".venv/bin/activate" in readme
    for block in re.findall(r"```sh\n(.*?)```", readme, re.S):
        for line in block.splitlines():
            if line.startswith(("rot180", "pip")):
                pytest.fail(f"README command without .venv/bin/: {line}")
