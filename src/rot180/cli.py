"""The ``rot180`` command line: one argparse subcommand per module in :mod:`rot180.commands`.

Each name in :data:`_COMMANDS` is a module ``rot180.commands.<name>`` exposing
``add_parser(subparsers)`` (register its subparser and options) and ``run(args) -> int`` (the exit
status). Adding a command means adding its module and its name here; nothing else changes.

Errors a command raises for bad input or files (``ValueError``, ``TypeError``, ``OSError``) are
printed as ``rot180: error: <message>`` with exit status 2 and no traceback, as argparse does for
bad options.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from . import __version__

__all__ = ["build_parser", "main"]

_COMMANDS = ("train", "evaluate", "predict", "check", "explain", "saliency", "bench")


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


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``rot180`` with ``argv`` (default ``sys.argv[1:]``); return the exit status."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as stop:   # --help, --version, or a usage error already printed
        return stop.code if isinstance(stop.code, int) else 2
    try:
        return int(args._run(args))
    except (ValueError, TypeError, OSError) as err:
        print(f"rot180: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("rot180: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
