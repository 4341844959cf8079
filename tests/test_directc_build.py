"""The helper's portable build: ``-DROT180_PORTABLE`` with plain ``cc -O2``.

The shipped build dispatches to target clones (x86-64-v4 / v3 / default) and pins a register
with an empty ``asm`` in the AVX-512 kernel gradient; a compiler or CPU without those gets the
plain vector code. This builds that variant (no clones, no target attributes, no asm) into a
temporary folder and runs the helper's tests against it in a subprocess, the module loaded in
place of the installed one: both tile kinds (wide and narrow), bands, packing, the argument
checks.
"""

from __future__ import annotations

import shlex
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

import rot180.functional._direct as D

SOURCE = Path(D.__file__).with_name("_directc.c")
TESTS = Path(__file__).parent
_CC = shlex.split(sysconfig.get_config_var("CC") or "cc")
_HEADERS = Path(sysconfig.get_paths()["include"], "Python.h")

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not D.available(), reason="the compiled helper is not built or off"),
    pytest.mark.skipif(shutil.which(_CC[0]) is None or not _HEADERS.exists()
                       or not sys.platform.startswith("linux"),
                       reason="needs a C compiler, Python's headers and Linux's -shared"),
]

# Load the built file as rot180.functional._directc before rot180 is imported, check that the
# helper is that file, and run pytest on the helper's tests.
_RUN = """
import importlib.machinery, importlib.util, sys
path, *args = sys.argv[1:]
name = "rot180.functional._directc"
loader = importlib.machinery.ExtensionFileLoader(name, path)
module = importlib.util.module_from_spec(importlib.util.spec_from_file_location(
    name, path, loader=loader))
loader.exec_module(module)
sys.modules[name] = module
import rot180.functional._direct as D
assert D._directc is module and D._directc.__file__ == path, D._directc
import pytest
sys.exit(pytest.main(args))
"""


def test_the_portable_build_passes_the_helpers_tests(tmp_path) -> None:
    lib = tmp_path / ("_directc" + sysconfig.get_config_var("EXT_SUFFIX"))
    build = subprocess.run([*_CC, "-O2", "-DROT180_PORTABLE", "-fPIC", "-shared",
                            "-Werror=implicit-function-declaration",
                            f"-I{_HEADERS.parent}", str(SOURCE), "-o", str(lib)],
                           capture_output=True, text=True, timeout=300)
    assert build.returncode == 0, build.stderr[-2000:]
    run = subprocess.run([sys.executable, "-c", _RUN, str(lib), "-q", "-p", "no:cacheprovider",
                          "-x", str(TESTS / "test_direct.py"), str(TESTS / "test_directc_args.py"),
                          "-k", "not pure_numpy"], capture_output=True, text=True, timeout=600,
                         cwd=TESTS.parent)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-2000:]
    # Nothing skipped: the register-tile tests ran for both tile kinds (their parameter).
    assert " passed" in run.stdout and "skipped" not in run.stdout, run.stdout[-500:]
