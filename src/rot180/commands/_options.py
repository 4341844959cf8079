"""Option checks shared by the commands: messages name the option, as argparse's own do."""

from __future__ import annotations

import argparse
from pathlib import Path

__all__ = ["at_least_one", "figure_path", "FIGURE_SUFFIXES"]

FIGURE_SUFFIXES = (".png", ".svg", ".pdf")


def at_least_one(text: str) -> int:
    """argparse ``type=`` for counts: an int >= 1 (``--top 0`` is a usage error, exit 2)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an int >= 1, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected an int >= 1, got {value}")
    return value


def figure_path(text: str, option: str = "--out") -> Path:
    """The path of a figure to write: not an existing directory, ending in a known suffix."""
    path = Path(text)
    if path.is_dir():
        raise ValueError(f"{option} {path} is a directory; {option} names the figure file to "
                         f"write, e.g. {option} {path / 'figure.png'}.")
    if path.suffix.lower() not in FIGURE_SUFFIXES:
        raise ValueError(f"{option} {path}: expected a file name ending in "
                         f"{', '.join(FIGURE_SUFFIXES)}, got {path.suffix or 'no suffix'!r}. "
                         f"Add the suffix, e.g. {option} {path.with_suffix('.png')}.")
    return path
