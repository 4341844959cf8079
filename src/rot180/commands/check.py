"""``rot180 check``: a quick self-verification of the convolution core, no PyTorch needed.

Draws a few hundred random float64 configurations (1, 2 and 3 spatial dimensions, strides,
every padding form, dilation, groups, and input sizes with a non-zero stride remainder) and
compares the fast path (:func:`~rot180.functional.conv` and its three gradients, the input
gradient computed by the rot180 rule) with oracles that share no code with it: the direct loops
and the unrolled matrix of :mod:`rot180.functional.reference`, and the adjoint identities

    <conv(x, w), dz> == <x, conv_grad_input(dz, w)> == <w, conv_grad_weight(x, dz)>

which hold because the convolution is linear in ``x`` and in ``w``.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..functional import _validation as V
from ..functional import conv, conv_grad_bias, conv_grad_input, conv_grad_weight
from ..functional import reference as ref
from ..functional.shapes import resolve_padding

__all__ = ["CheckReport", "CheckRow", "add_parser", "format_report", "run", "run_checks"]

CHECKS = (
    "conv vs direct loops",
    "conv vs conv_matrix",
    "grad_input vs direct",
    "grad_input vs conv_matrix^T",
    "grad_weight vs direct",
    "grad_bias vs sum",
    "adjoint identity (input)",
    "adjoint identity (weight)",
)
# float64 on sizes this small: round-off is ~1e-14, while any indexing mistake is O(1).
TOLERANCE = 1e-9
_FORMS = ("int", "tuple", "pairs", "valid", "same", "full")


@dataclass(frozen=True)
class Config:
    """One random convolution configuration; ``batch=None`` means an unbatched input."""

    batch: int | None
    c_in: int
    c_out: int
    groups: int
    kernel: tuple[int, ...]
    spatial: tuple[int, ...]
    kwargs: dict[str, Any] = field(hash=False)

    @property
    def nd(self) -> int:
        return len(self.kernel)

    def __str__(self) -> str:
        lead = "" if self.batch is None else f"{self.batch}, "
        opts = ", ".join(f"{k}={v!r}" for k, v in self.kwargs.items())
        return (f"x ({lead}{self.c_in}, {', '.join(map(str, self.spatial))}) w ({self.c_out}, "
                f"{self.c_in // self.groups}, {', '.join(map(str, self.kernel))}) {opts}")


@dataclass(frozen=True)
class CheckRow:
    """The worst disagreement of one check over every configuration."""

    name: str
    configs: int
    max_abs_err: float
    tolerance: float
    worst: str     # the configuration with the largest error

    @property
    def passed(self) -> bool:
        # Written so that a NaN error fails.
        return self.configs > 0 and bool(self.max_abs_err <= self.tolerance)


@dataclass(frozen=True)
class CheckReport:
    """Result of :func:`run_checks`: one row per check plus what the configurations covered."""

    rows: tuple[CheckRow, ...]
    n_configs: int
    seed: int
    per_nd: dict[int, int]
    with_remainder: int     # configurations with a non-zero stride remainder somewhere

    @property
    def passed(self) -> bool:
        return all(r.passed for r in self.rows)


def _pick(rng: np.random.Generator, seq: tuple) -> Any:
    return seq[int(rng.integers(len(seq)))]


def _per_dim_or_int(rng: np.random.Generator, nd: int, hi: int) -> int | tuple[int, ...]:
    if rng.integers(2):
        return int(rng.integers(1, hi + 1))
    return tuple(int(v) for v in rng.integers(1, hi + 1, size=nd))


def draw_config(rng: np.random.Generator) -> Config:
    """One random valid configuration, small enough that the dense matrix stays cheap."""
    nd = int(rng.integers(1, 4))
    max_k, max_o = {1: (4, 4), 2: (3, 3), 3: (2, 2)}[nd]
    groups = _pick(rng, (1, 1, 2, 3))
    c_in = groups * int(rng.integers(1, 3))
    c_out = groups * int(rng.integers(1, 3))
    kernel = tuple(int(v) for v in rng.integers(1, max_k + 1, size=nd))
    form = _pick(rng, _FORMS)
    stride = 1 if form == "same" else _per_dim_or_int(rng, nd, 3)
    dilation = _per_dim_or_int(rng, nd, 2)
    padding: Any = {
        "int": int(rng.integers(0, 3)),
        "tuple": tuple(int(v) for v in rng.integers(0, 3, size=nd)),
        "pairs": tuple((int(lo), int(hi)) for lo, hi in rng.integers(0, 3, size=(nd, 2))),
        "valid": "valid", "same": "same", "full": "full",
    }[form]
    st = (stride,) * nd if isinstance(stride, int) else stride
    dl = (dilation,) * nd if isinstance(dilation, int) else dilation
    pads = resolve_padding(padding, kernel, dl, st)
    spatial = []
    for k, s, d, (lo, hi) in zip(kernel, st, dl, pads, strict=True):
        # Build i from the output size and a chosen remainder a, so a != 0 is common.
        o, a = int(rng.integers(1, max_o + 1)), int(rng.integers(0, s))
        i = (o - 1) * s + a + d * (k - 1) + 1 - lo - hi
        while i < 1:
            i += s
        spatial.append(i)
    batch = None if rng.integers(8) == 0 else int(rng.integers(1, 3))
    kwargs = {"stride": stride, "padding": padding, "dilation": dilation, "groups": groups,
              "flip": bool(rng.integers(4) == 0)}
    return Config(batch, c_in, c_out, groups, kernel, tuple(spatial), kwargs)


def _has_remainder(cfg: Config) -> bool:
    kw = cfg.kwargs
    nd = cfg.nd
    st = (kw["stride"],) * nd if isinstance(kw["stride"], int) else kw["stride"]
    dl = (kw["dilation"],) * nd if isinstance(kw["dilation"], int) else kw["dilation"]
    pads = resolve_padding(kw["padding"], cfg.kernel, dl, st)
    return any((i + lo + hi - d * (k - 1) - 1) % s
               for i, k, s, d, (lo, hi) in zip(cfg.spatial, cfg.kernel, st, dl, pads,
                                               strict=True))


def _errors(cfg: Config, rng: np.random.Generator) -> dict[str, float]:
    """Max absolute error of every check on one configuration."""
    kw = cfg.kwargs
    lead = () if cfg.batch is None else (cfg.batch,)
    x = rng.standard_normal((*lead, cfg.c_in, *cfg.spatial))
    w = rng.standard_normal((cfg.c_out, cfg.c_in // cfg.groups, *cfg.kernel))
    b = rng.standard_normal(cfg.c_out)
    z = conv(x, w, **kw)
    dz = rng.standard_normal(z.shape)
    dx = conv_grad_input(dz, w, x.shape, **kw)
    dw = conv_grad_weight(x, dz, w.shape, **kw)
    db = conv_grad_bias(dz if cfg.batch is not None else dz[None])

    # The matrix is per sample: view every input as a batch of samples.
    xs, zs, dzs, dxs = (a.reshape(-1, *a.shape[-cfg.nd - 1:]) for a in (x, z, dz, dx))
    m = ref.conv_matrix(w, xs.shape[1:], **kw)
    dz_sum = np.array([dz.reshape(-1, *dz.shape[-cfg.nd - 1:])[:, o].sum()
                       for o in range(cfg.c_out)])
    inner = float(np.vdot(z, dz))

    def gap(a: np.ndarray | float, b_: np.ndarray | float) -> float:
        return float(np.max(np.abs(np.asarray(a) - np.asarray(b_)), initial=0.0))

    return {
        "conv vs direct loops": gap(conv(x, w, b, **kw), ref.conv_direct(x, w, b, **kw)),
        "conv vs conv_matrix": gap(zs.reshape(len(xs), -1), xs.reshape(len(xs), -1) @ m.T),
        "grad_input vs direct": gap(dx, ref.conv_grad_input_direct(dz, w, x.shape, **kw)),
        "grad_input vs conv_matrix^T": gap(dxs.reshape(len(xs), -1),
                                           dzs.reshape(len(xs), -1) @ m),
        "grad_weight vs direct": gap(dw, ref.conv_grad_weight_direct(x, dz, w.shape, **kw)),
        "grad_bias vs sum": gap(db, dz_sum),
        "adjoint identity (input)": gap(inner, np.vdot(x, dx)),
        "adjoint identity (weight)": gap(inner, np.vdot(w, dw)),
    }


def run_checks(n_configs: int = 300, *, seed: int = 0, progress: bool = False) -> CheckReport:
    """Run every check on ``n_configs`` random configurations; return the data, print nothing.

    ``progress`` shows a tqdm bar on stderr (when tqdm is installed).
    """
    n_configs = V.integer(n_configs, "--configs", fix="Try --configs 300.")
    rng = np.random.default_rng(seed)
    worst = {name: (0.0, "") for name in CHECKS}
    per_nd = {1: 0, 2: 0, 3: 0}
    with_remainder = 0
    for _ in _progress(range(n_configs), n_configs, progress):
        cfg = draw_config(rng)
        per_nd[cfg.nd] += 1
        with_remainder += _has_remainder(cfg)
        try:
            errs = _errors(cfg, rng)
        except Exception as exc:  # noqa: BLE001 - a crash on a valid config is a failed check
            errs = dict.fromkeys(CHECKS, float("inf"))
            cfg_note = f"{cfg} raised {type(exc).__name__}: {exc}"
        else:
            cfg_note = str(cfg)
        for name, err in errs.items():
            if not err <= worst[name][0]:     # NaN counts as worse than anything
                worst[name] = (err, cfg_note)
    rows = tuple(CheckRow(name, n_configs, worst[name][0], TOLERANCE, worst[name][1])
                 for name in CHECKS)
    return CheckReport(rows, n_configs, seed, per_nd, with_remainder)


def _progress(it: Iterable, total: int, show: bool) -> Iterable:
    if not show:
        return it
    try:
        from tqdm import tqdm
    except ImportError:   # tqdm is an optional extra; the check runs without a bar
        return it
    return tqdm(it, total=total, desc="rot180 check", unit="config", file=sys.stderr,
                leave=False)


def format_report(report: CheckReport) -> str:
    """The report as a table, one row per check, then the verdict."""
    dims = ", ".join(f"{nd}-D {n}" for nd, n in report.per_nd.items())
    head = ("check", "configs", "max abs error", "tolerance", "status")
    rows = [(r.name, str(r.configs), f"{r.max_abs_err:.2e}", f"{r.tolerance:.0e}",
             "PASS" if r.passed else "FAIL") for r in report.rows]
    widths = [max(len(row[i]) for row in (head, *rows)) for i in range(len(head))]

    def fmt(row: tuple[str, ...]) -> str:
        return "  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip()

    lines = [
        f"rot180 check: {report.n_configs} random float64 configurations (seed {report.seed}): "
        f"{dims}; {report.with_remainder} with a non-zero stride remainder",
        fmt(head),
        fmt(tuple("-" * w for w in widths)),
        *(fmt(r) for r in rows),
    ]
    failed = [r for r in report.rows if not r.passed]
    for r in failed:
        lines.append(f"FAIL {r.name}: worst at {r.worst}")
    lines.append("all checks passed" if not failed else f"{len(failed)} check(s) failed")
    return "\n".join(lines)


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "check",
        help="self-verify conv and its rot180 backward against reference oracles",
        description="Compare conv and its three gradients with the direct-loop reference, "
                    "the unrolled matrix and the adjoint identities on random float64 "
                    "configurations. No PyTorch needed.",
    )
    parser.add_argument("--configs", type=int, default=300, metavar="N",
                        help="number of random configurations (default: 300)")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default: 0)")
    return parser


def run(args: argparse.Namespace) -> int:
    report = run_checks(args.configs, seed=args.seed, progress=True)
    print(format_report(report))
    return 0 if report.passed else 1
