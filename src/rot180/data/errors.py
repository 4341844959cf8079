"""Exceptions raised by :mod:`rot180.data`.

:class:`DataError` is a :class:`ValueError`: a data file that exists but is not what it claims
to be (bad magic number, truncated, wrong sizes, a checksum that does not match) is a bad value.
:class:`DownloadError` is also an :class:`OSError`, so code that already handles network and
file-system failures catches it too. :class:`ImageWarning` is a :class:`UserWarning` for an
image that reads but cannot mean anything to a model (blank or nearly uniform).
"""

from __future__ import annotations

__all__ = ["DataError", "DownloadError", "ImageWarning"]


class DataError(ValueError):
    """A data set file is missing, malformed or fails verification.

    Messages name the file, say what was expected and what was found, and how to fix it.
    """


class DownloadError(DataError, OSError):
    """A download failed (network unreachable, HTTP error) or its checksum did not match."""


class ImageWarning(UserWarning):
    """An input image read fine but is blank or nearly uniform; the message names the file.

    The CLI shows it; ``warnings.simplefilter("error", ImageWarning)`` turns it into an error.
    """
