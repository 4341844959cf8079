"""The engine's knobs in one place: a frozen :class:`Tuning` and the :func:`tuning` context.

Every threshold and switch the convolution engine consults lives in one dataclass. The
defaults are what the benchmarks chose (the measurement behind each is in ``BENCHMARKS.md``,
"Engine thresholds"); tests, ``rot180 bench`` and users change them the same way::

    with rot180.functional.tuning(force="im2col", threads=1):
        y = conv(x, w)              # every call in the block uses im2col where it accepts
                                    # the call, on one thread

Settings are held in a :class:`contextvars.ContextVar`: a ``with tuning(...)`` block affects
the code it runs (and the engine's worker threads, which run in a copy of the caller's
context), not another user thread's calls. Blocks nest; leaving one restores what was before.

``ROT180_PURE_NUMPY=1`` in the environment stays the one environment switch: it makes
``helper=False`` the default (the compiled helper is never used; the NumPy realisations do
everything).
"""

from __future__ import annotations

import contextlib
import contextvars
import dataclasses
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from . import _validation as V

__all__ = ["Tuning", "tuning", "get_tuning"]


def _helper_default() -> bool:
    return os.environ.get("ROT180_PURE_NUMPY", "") in ("", "0")


@dataclass(frozen=True)
class Tuning:
    """How the engine realises correlations. Results are the same sums whatever the settings
    (to rounding; bit for bit given the same realisation and thread count).

    Attributes:
        force: the name of a registered realisation (``rot180.functional.realisations()``) to use
            wherever it accepts a call; calls it does not accept (a 3-D call for the 2-D
            helper, a 3x3 kernel for ``"pointwise"``) are realised by the usual rule. None: the
            rule alone.
        threads: threads for one call's batch chunks. An explicit count is honoured as asked,
            capped neither by BLAS nor by the CPUs (so a 3-way split can be tested on 2 cores);
            None follows numpy's BLAS thread count (``threadpoolctl`` limits and
            ``OPENBLAS_NUM_THREADS`` are honoured), capped by the CPUs.
        helper: whether the optional compiled helper (the ``direct`` realisation) may be used.
            Default: on where it was built, off under ``ROT180_PURE_NUMPY=1``.
        chunk_bytes: bytes of expanded input (im2col columns, kn2row products) per batch chunk.
        kn2row_ratio: kn2row instead of im2col when ``kn2row_ratio * C_out < C_in``.
        kn2row_wide_max_positions: kn2row multiplies a chunk's samples side by side, one
            product, where a sample has at most this many positions (``_kn2row.kn2row``).
        fold_max_row: fold the batch into rows shorter than this (whole batch in one chunk).
        stack_min_fill: stack a strided input gradient's sub-pixel phases into one helper call
            when at least this fraction of the stacked kernel's taps are real ...
        stack_min_taps: ... and the stacked kernel has at least this many taps (or exactly 1).
        parallel_min_macs: run batch chunks on several threads from this many multiply-adds
            (2e7: with the thread team, 17 layers at batch 16-64 took 0.56-0.90 of one
            thread's time on two from 5.5e6, but at 5e6 the 50 random layers of
            families.py, batch 1-64, were 7-12 % slower than at 2e7 or 5e7, while
            resnet_small(16)'s step gains the same at 2e7 as at 5e6 (0.93 of 5e7's); 5e7
            before the team; BENCHMARKS.md, "Issue 13, eighth pass").
        direct_min_fill: the helper takes a batch (or its bands of rows) that fills at least
            this fraction of its blocks of 16 lanes.
        direct_bands: whether a small batch may be cut into bands of output rows for the helper.
        im2col_kernel_max_positions: a kernel gradient the helper would run in bands of at
            most this many output positions each ...
        im2col_kernel_min_channels: ... with ``C`` and ``M`` per group at least this many
            goes to im2col instead (``_plan._thin_bands``: 0.48-0.89 of the helper's time).
        narrow_tiles: run the helper's tiles for CPUs without AVX-512 even where it has it (to
            test both kinds on one machine).
        max_sample_bytes: the most one sample may expand to before a call raises ValueError.
        winograd_min_channels: ``winograd`` preferred where ``min(C, M)`` is at least this ...
        winograd_min_size: ... and the output is at least this many rows and columns (the
            first row of the table in ``_winograd._prefer``'s docstring, which says what each
            number was measured on: on a full-width AVX-512 Xeon 0.68-0.94 of the helper's
            time from 112 channels, 1.27-1.56 at 64) ...
        winograd_min_channels_any: ... or ``min(C, M)`` is at least this ...
        winograd_min_tiles_any: ... and the call has at least this many 2 x 2 output tiles,
            at any size (second row: 512 channels at 7 x 7, batch 8 0.84, batch 1 2.2) ...
        winograd_wide_min: ... or ``min(C, M)`` is at least this ...
        winograd_wide_max: ... and ``max(C, M)`` at least this ...
        winograd_wide_size: ... and the output at least this size (third row: 48 -> 64 at
            32 x 32 0.89 on the half-width EPYC, 1.33-1.41 on the Xeon, so by default its
            minimum is the first row's 112 and it adds nothing; 48 turns it on).
        winograd_min_tiles: never preferred below this many tiles a call, whatever the rows
            above say: with fewer, one chunk's products are shared out by output channels and
            the helper or im2col take less time (``_winograd._prefer``).
        winograd_chunk_tiles: about this many tiles per chunk of a call's tile rows (each
            chunk's 16 products pack ``U`` again; more tiles spill ``V`` and ``m`` from the
            caches): 256 against 128 (``_winograd._chunk_rows``'s docstring).
        winograd_fused_max_channels: the compiled products (``_winogradc.forward_tiles``:
            16 tiles in the vector lanes, each chunk gathered, multiplied and written in one
            call a thread) where ``max(C, M)`` is at most this; above, BLAS multiplies the
            compiled transforms' tiles (``_winograd._forward``'s docstring); ``winograd``
            is also preferred where that holds ...
        winograd_fused_min_channels: ... and ``min(C, M)`` is at least this, with the output
            at least ``winograd_min_size`` (``_winograd._prefer``'s table, second row).
        winograd_fused_chunk_tiles: ``winograd_chunk_tiles`` of the compiled products (128
            against 64-512: ``_winograd._chunk_rows``'s docstring).
        depthwise_max_cm: ``depthwise`` preferred where ``C * M`` per group is at most this
            (``_depthwise._prefer``'s docstring: 8 -> 0.87 of the rule's time, 16 -> 1.10; it
            accepts no more than ``_depthwise.ACCEPT_MAX_CM`` whatever this says) ...
        depthwise_min_groups: ... and, with more than one channel pair per group, there are
            at least this many groups (16 and 32 groups win, 1-4 do not) ...
        depthwise_min_row: ... and the output rows are at least this long, or strided along
            them (28 -> 0.77, 14 -> 1.08; 14 at stride 2 -> 0.85).
        depthwise_strided_min_groups: a strided input gradient of at least this many groups
            takes ``depthwise`` wherever it accepts the call (``C * M`` per group up to 64) and
            the sub-pixel phases would not be stacked: one pass over the stretched delta
            instead of a pass per phase (``_plan_input._one_leaf``: 0.29-0.81 of the phases'
            time over 2-D and 1-D layers of 8-64 groups, 2 threads; 1 group 0.81-1.16).
    """

    force: str | None = None
    threads: int | None = None
    helper: bool = dataclasses.field(default_factory=_helper_default)
    chunk_bytes: int = 4 * 2**20
    kn2row_ratio: float = 1
    kn2row_wide_max_positions: int = 256
    fold_max_row: int = 32
    stack_min_fill: float = 0.45
    stack_min_taps: int = 9
    parallel_min_macs: int = 2 * 10**7
    direct_min_fill: float = 0.75
    direct_bands: bool = True
    narrow_tiles: bool = False
    im2col_kernel_max_positions: int = 8
    im2col_kernel_min_channels: int = 96
    max_sample_bytes: int = 2 * 2**30
    winograd_min_channels: int = 112
    winograd_min_size: int = 14
    winograd_min_channels_any: int = 384
    winograd_min_tiles_any: int = 128
    winograd_wide_min: int = 112
    winograd_wide_max: int = 64
    winograd_wide_size: int = 32
    winograd_min_tiles: int = 64
    winograd_chunk_tiles: int = 256
    winograd_fused_max_channels: int = 192
    winograd_fused_min_channels: int = 48
    winograd_fused_chunk_tiles: int = 128
    depthwise_max_cm: int = 8
    depthwise_min_groups: int = 16
    depthwise_min_row: int = 16
    depthwise_strided_min_groups: int = 2

    def __post_init__(self) -> None:
        # Each field through the one checks module; the plain Python value is stored (numpy
        # numbers are taken, bools are not ints).
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if value is None and f.name in ("force", "threads"):
                continue
            object.__setattr__(self, f.name, _CHECKS[f.name](value, f.name))
        if self.threads is not None and self.threads > MAX_THREADS:
            raise ValueError(f"tuning: threads must be at most {MAX_THREADS}, got "
                             f"{self.threads}. Use os.cpu_count() ({os.cpu_count()}) or fewer, "
                             "or None to follow numpy's BLAS.")
        if self.force is not None:
            from ._registry import names  # the table imports this module

            if self.force not in names():
                raise ValueError(f"tuning: force={self.force!r} is not a realisation; the "
                                 f"realisations are {', '.join(map(repr, names()))} "
                                 "(rot180.functional.realisations()). Use one of them or None.")


def _count(low: int) -> Callable[[object, str], int]:
    return lambda v, name: V.integer(v, name, "tuning", low=low)


def _fraction(v: object, name: str) -> float:
    return V.real(v, name, "tuning", low=0)


def _force(v: object, name: str) -> str:
    if not isinstance(v, str):
        raise TypeError(f"tuning: force must be a realisation's name (a str) or None, got "
                        f"{V.type_name(v)} {v!r}. See rot180.functional.realisations().")
    return v


_CHECKS: dict[str, Callable[[object, str], object]] = {
    "force": _force,
    "threads": _count(1),
    "helper": lambda v, name: bool(V.flag(v, name, "tuning")),
    "chunk_bytes": _count(1),
    "kn2row_ratio": _fraction,
    "kn2row_wide_max_positions": _count(0),
    "fold_max_row": _count(0),
    "stack_min_fill": _fraction,
    "stack_min_taps": _count(0),
    "parallel_min_macs": _count(0),
    "direct_min_fill": _fraction,
    "direct_bands": lambda v, name: bool(V.flag(v, name, "tuning")),
    "narrow_tiles": lambda v, name: bool(V.flag(v, name, "tuning")),
    "im2col_kernel_max_positions": _count(0),
    "im2col_kernel_min_channels": _count(0),
    "max_sample_bytes": _count(1),
    # Thresholds: 0 lets every problem past that test (a rule turns off by a large value, or
    # helper=False); a chunk holds at least one tile row.
    "winograd_min_channels": _count(0),
    "winograd_min_size": _count(0),
    "winograd_min_channels_any": _count(0),
    "winograd_min_tiles_any": _count(0),
    "winograd_wide_min": _count(0),
    "winograd_wide_max": _count(0),
    "winograd_wide_size": _count(0),
    "winograd_min_tiles": _count(0),
    "winograd_chunk_tiles": _count(1),
    "winograd_fused_max_channels": _count(0),
    "winograd_fused_min_channels": _count(0),
    "winograd_fused_chunk_tiles": _count(1),
    "depthwise_max_cm": _count(0),
    "depthwise_min_groups": _count(0),
    "depthwise_min_row": _count(0),
    "depthwise_strided_min_groups": _count(0),
}
MAX_THREADS = 1024


_CURRENT: contextvars.ContextVar[Tuning] = contextvars.ContextVar("rot180_tuning")


def get_tuning() -> Tuning:
    """The settings in force here (the defaults outside any :func:`tuning` block)."""
    try:
        return _CURRENT.get()
    except LookupError:
        t = Tuning()
        _CURRENT.set(t)
        return t


@contextlib.contextmanager
def tuning(**changes: object) -> Iterator[Tuning]:
    """Change some of the engine's settings (:class:`Tuning`'s fields) inside a ``with`` block.

    Unknown names raise TypeError listing the known ones; a value of the wrong type or range
    raises TypeError / ValueError. Yields the settings in force inside the block.
    """
    known = [f.name for f in dataclasses.fields(Tuning)]
    unknown = sorted(set(changes) - set(known))
    if unknown:
        raise TypeError(f"tuning: unknown setting(s) {', '.join(map(repr, unknown))}; the "
                        f"settings are {', '.join(known)}.")
    new = dataclasses.replace(get_tuning(), **changes)
    token = _CURRENT.set(new)
    try:
        yield new
    finally:
        _CURRENT.reset(token)
