"""``rot180 bench``: how fast this machine runs rot180's convolutions, no PyTorch needed.

Times one training step of each convolution layer (``conv``, ``conv_grad_input``,
``conv_grad_weight``; medians of ``--repeats`` calls after warm-up) and reports GFLOP/s and
the fraction of the machine's own float32 (or float64) matmul rate, measured in the same run
with the same thread count.

The matmul rate is measured interleaved with the layers, before the first and after each one,
and the best of these samples is the rate every share is taken of: other load on the machine
slows some samples, never speeds one up, so the best sample is the one closest to the machine's
own rate (one sample taken while the machine was busy made layers timed later read above
100 %). A layer that still runs faster than the best sample is not given a share above 100 %:
its share is left out and the table and the JSON say that the machine was busy.

``--engine numpy`` turns the optional compiled helper off for the run, so the two engines can
be compared; ``--force NAME`` runs every call a realisation of the engine's table accepts with
it (``rot180.functional.realisations()``), and ``--explain-plan`` prints how the engine
realises each layer (its three plans) instead of timing it. The side-by-side comparison with
PyTorch lives in ``benchmarks/conv.py`` (PyTorch is a test and benchmark dependency, never the
library's).

Layers are written ``N,C,*spatial:K,k,s,p`` (batch, channels, 1-3 spatial sizes; output
channels, kernel, stride, padding, the same along every axis). The default set is the six
layers of ``benchmarks/conv.py``.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import sys
import time
from collections.abc import Callable, Iterable
from contextlib import nullcontext
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from .._files import write_file
from ..functional import (
    _direct,
    conv,
    conv_grad_input,
    conv_grad_weight,
    get_tuning,
    plan,
    tuning,
)
from ..functional._registry import names as realisation_names
from ..functional._tuning import MAX_THREADS

__all__ = ["DEFAULT_LAYERS", "BenchRow", "Layer", "add_parser", "bench_layers", "explain",
           "format_rows", "matmul_gflops", "parse_layer", "run", "time_layer"]

BUSY = ("* faster than the best matmul rate measured in this run: the machine was busy while "
        "the rate was measured, so no share is given; rerun on an idle machine (or with fewer "
        "--threads).")

DEFAULT_LAYERS = (
    "64,1,28,28:6,5,1,2",
    "64,6,14,14:16,5,1,0",
    "64,32,32,32:64,3,1,1",
    "64,64,32,32:128,3,2,1",
    "32,128,16,16:128,3,1,1",
    "8,3,224,224:64,7,2,3",
)


#: Most bytes the arrays of one benchmarked layer may take (input, output, weights, gradients).
MAX_LAYER_BYTES = 4 * 2**30


@dataclass(frozen=True)
class Layer:
    """One convolution layer: input ``(batch, channels, *spatial)``, ``out_channels`` kernels
    of size ``kernel`` with ``stride`` and ``padding`` along every spatial axis."""

    batch: int
    channels: int
    spatial: tuple[int, ...]
    out_channels: int
    kernel: int
    stride: int
    padding: int

    def __str__(self) -> str:
        dims = ",".join(map(str, (self.batch, self.channels, *self.spatial)))
        return f"({dims})->{self.out_channels},{self.kernel},{self.stride},{self.padding}"

    def output_spatial(self) -> tuple[int, ...]:
        return tuple((n + 2 * self.padding - self.kernel) // self.stride + 1
                     for n in self.spatial)

    def flops(self) -> int:
        """Multiply-adds of the forward product, times 2 (flops), times 3 (forward and the two
        backward products)."""
        k = self.kernel ** len(self.spatial)
        return 3 * 2 * (self.batch * self.out_channels * self.channels * k
                        * math.prod(self.output_spatial()))


def parse_layer(spec: str) -> Layer:
    """``"N,C,*spatial:K,k,s,p"`` as a :class:`Layer`; a clear ``ValueError`` otherwise."""
    example = "64,32,32,32:64,3,1,1 (N,C,H,W:K,k,s,p)"
    try:
        left, right = spec.split(":")
        inp = [int(v) for v in left.split(",")]
        out = [int(v) for v in right.split(",")]
    except ValueError:
        raise ValueError(
            f"layer {spec!r} is not of the form N,C,*spatial:K,k,s,p; e.g. {example}.") from None
    if not 3 <= len(inp) <= 5 or len(out) != 4:
        raise ValueError(
            f"layer {spec!r}: expected 3-5 input sizes (N, C, 1-3 spatial) and 4 layer numbers "
            f"(K, k, s, p), got {len(inp)} and {len(out)}; e.g. {example}.")
    if min(inp) < 1 or min(out[:3]) < 1 or out[3] < 0:
        raise ValueError(
            f"layer {spec!r}: sizes, channels, kernel and stride must be >= 1 and padding >= 0.")
    layer = Layer(inp[0], inp[1], tuple(inp[2:]), *out)
    if min(layer.output_spatial()) < 1:
        raise ValueError(
            f"layer {spec!r}: the kernel {layer.kernel} does not fit the padded input "
            f"{tuple(n + 2 * layer.padding for n in layer.spatial)}; use a smaller kernel or "
            "more padding.")
    # The input, output, weights and their gradients are allocated (float64 at most) before
    # anything is timed: refuse what cannot fit rather than fail in numpy's allocator.
    nd = len(layer.spatial)
    elements = (2 * layer.batch * layer.channels * math.prod(layer.spatial)
                + 2 * layer.batch * layer.out_channels * math.prod(layer.output_spatial())
                + 2 * layer.out_channels * layer.channels * layer.kernel ** nd)
    if elements * 8 > MAX_LAYER_BYTES:
        raise ValueError(
            f"layer {spec!r}: its arrays need {elements * 8 / 2**30:,.1f} GiB, more than the "
            f"{MAX_LAYER_BYTES / 2**30:g} GiB the bench allocates for one layer. Use smaller "
            "sizes (e.g. fewer samples N).")
    return layer


@dataclass(frozen=True)
class BenchRow:
    """Median milliseconds of one layer's three products, and the rates they give.

    ``fraction_of_matmul`` is ``gflops`` over the run's matmul rate, at most 1; ``None`` with
    ``busy`` when the layer ran faster than the rate measured (the machine was busy then).
    """

    layer: str
    forward_ms: float
    grad_input_ms: float
    grad_weight_ms: float
    gflops: float
    fraction_of_matmul: float | None
    busy: bool = False

    @property
    def total_ms(self) -> float:
        return self.forward_ms + self.grad_input_ms + self.grad_weight_ms


def _median_ms(fn: Callable[[], object], repeats: int, warmup: int = 2) -> float:
    for _ in range(warmup):
        fn()
    return statistics.median(_timed(fn) for _ in range(repeats)) * 1e3


def matmul_gflops(dtype: np.dtype, n: int = 1024, repeats: int = 7) -> float:
    """The machine's matmul rate: best of ``repeats`` products of ``n x n`` matrices."""
    rng = np.random.default_rng(0)
    a = rng.standard_normal((n, n)).astype(dtype)
    b = rng.standard_normal((n, n)).astype(dtype)
    a @ b
    best = min(_timed(lambda: a @ b) for _ in range(repeats))
    return 2 * n ** 3 / best / 1e9


def _timed(fn: Callable[[], object]) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def time_layer(layer: Layer, *, repeats: int, dtype: np.dtype) -> tuple[float, float, float]:
    """Median milliseconds of forward, input gradient and kernel gradient of ``layer`` on
    random data."""
    rng = np.random.default_rng(0)
    x = rng.standard_normal((layer.batch, layer.channels, *layer.spatial)).astype(dtype)
    w = rng.standard_normal(
        (layer.out_channels, layer.channels, *(layer.kernel,) * len(layer.spatial))).astype(dtype)
    kw = {"stride": layer.stride, "padding": layer.padding}
    dz = rng.standard_normal((layer.batch, layer.out_channels, *layer.output_spatial())
                             ).astype(dtype)
    f = _median_ms(lambda: conv(x, w, **kw), repeats)
    gi = _median_ms(lambda: conv_grad_input(dz, w, x.shape, **kw), repeats)
    gw = _median_ms(lambda: conv_grad_weight(x, dz, w.shape, **kw), repeats)
    return f, gi, gw


def _row(layer: Layer, times: tuple[float, float, float], mm_gflops: float) -> BenchRow:
    rate = layer.flops() / (sum(times) / 1e3) / 1e9
    busy = rate > mm_gflops
    return BenchRow(str(layer), *times, rate, None if busy else rate / mm_gflops, busy)


def explain(layer: Layer, dtype: np.dtype) -> str:
    """The engine's plans of ``layer``'s forward pass and two gradients, indented."""
    nd = len(layer.spatial)
    p = plan((layer.batch, layer.channels, *layer.spatial),
             (layer.out_channels, layer.channels, *(layer.kernel,) * nd), stride=layer.stride,
             padding=layer.padding, dtype=dtype)
    return "\n".join("  " + line for line in str(p).splitlines())


def bench_layers(layers: Iterable[Layer], *, repeats: int, dtype: np.dtype,
                 matmul_rate: Callable[[], float] | None = None,
                 timer: Callable[..., tuple[float, float, float]] = time_layer,
                 ) -> tuple[list[BenchRow], list[float]]:
    """Time every layer, sampling the matmul rate before the first and after each one.

    Returns the rows, whose shares are of the best sample, and the samples in order.
    ``matmul_rate`` (GFLOP/s; default: :func:`matmul_gflops` of ``dtype``, best of 3) and
    ``timer`` (``time_layer``'s signature) are the seams a test replaces to make the machine
    slow or busy on purpose.
    """
    if matmul_rate is None:
        def matmul_rate() -> float:
            return matmul_gflops(dtype, repeats=3)
    samples = [matmul_rate()]
    times = []
    for layer in layers:
        times.append((layer, timer(layer, repeats=repeats, dtype=dtype)))
        samples.append(matmul_rate())
    best = max(samples)
    return [_row(layer, t, best) for layer, t in times], samples


def format_rows(rows: Iterable[BenchRow], header: str) -> str:
    head = ("layer (N,C,*i)->K,k,s,p", "forward ms", "grad_input ms", "grad_weight ms",
            "total ms", "GFLOP/s", "of matmul")
    rows = list(rows)
    body = [(r.layer, f"{r.forward_ms:.2f}", f"{r.grad_input_ms:.2f}", f"{r.grad_weight_ms:.2f}",
             f"{r.total_ms:.2f}", f"{r.gflops:.1f}",
             "busy*" if r.fraction_of_matmul is None else f"{r.fraction_of_matmul:.0%}")
            for r in rows]
    widths = [max(len(row[i]) for row in (head, *body)) for i in range(len(head))]

    def fmt(row: tuple[str, ...]) -> str:
        return "  ".join(c.rjust(w) if i else c.ljust(w)
                         for i, (c, w) in enumerate(zip(row, widths, strict=True)))

    notes = [BUSY] if any(r.busy for r in rows) else []
    return "\n".join([header, fmt(head), fmt(tuple("-" * w for w in widths)),
                      *(fmt(r) for r in body), *notes])


def _progress(items: list, desc: str) -> Iterable:
    try:
        from tqdm import tqdm
    except ImportError:   # tqdm is an optional extra; the bench runs without a bar
        return items
    return tqdm(items, desc=desc, unit="layer", file=sys.stderr, leave=False)


def _thread_limit(threads: int | None):
    """A context that runs with ``threads`` BLAS threads (threadpoolctl), or changes nothing."""
    if threads is None:
        return nullcontext()
    if not 1 <= threads <= MAX_THREADS:
        raise ValueError(f"--threads must be between 1 and {MAX_THREADS}, got {threads}; "
                         f"this machine has {os.cpu_count()} CPUs.")
    from threadpoolctl import threadpool_limits  # a core dependency; imported when used
    return threadpool_limits(limits=threads, user_api="blas")


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "bench",
        help="time rot180's convolution layers on this machine (GFLOP/s, share of matmul rate)",
        description="Time forward, input gradient and kernel gradient of convolution layers "
                    "and compare the rate with this machine's matmul rate. For the comparison "
                    "with PyTorch see benchmarks/conv.py.",
    )
    parser.add_argument("--layer", action="append", metavar="N,C,*i:K,k,s,p", dest="layers",
                        help="a layer to time (repeatable); default: the six layers of "
                             "benchmarks/conv.py")
    parser.add_argument("--repeats", type=int, default=10, metavar="R",
                        help="timed calls per product; the median is reported (default: 10)")
    parser.add_argument("--threads", type=int, default=None,
                        help="BLAS and engine threads (default: as numpy's BLAS is set)")
    parser.add_argument("--dtype", choices=("float32", "float64"), default="float32")
    parser.add_argument("--engine", choices=("auto", "numpy"), default="auto",
                        help="'numpy' turns the compiled helper off for this run")
    parser.add_argument("--force", choices=realisation_names(), default=None,
                        help="use this realisation wherever it accepts the call "
                             "(rot180.functional.realisations())")
    parser.add_argument("--explain-plan", action="store_true",
                        help="print how the engine realises each layer instead of timing it")
    parser.add_argument("--json", type=Path, default=None, metavar="FILE",
                        help="also write the results as JSON")
    return parser


def run(args: argparse.Namespace, *, matmul_rate: Callable[[], float] | None = None,
        timer: Callable[..., tuple[float, float, float]] = time_layer) -> int:
    """The command; ``matmul_rate`` and ``timer`` are :func:`bench_layers`' seams."""
    if args.repeats < 1:
        raise ValueError(f"--repeats must be >= 1, got {args.repeats}. Try --repeats 10.")
    layers = [parse_layer(s) for s in (args.layers or DEFAULT_LAYERS)]
    if args.json is not None and (args.json.exists() and not args.json.is_file()
                                  or not args.json.parent.is_dir()):
        raise ValueError(f"--json {args.json}: expected a file path in an existing directory "
                         "(it names a directory, a device or a FIFO, or its folder is missing). "
                         "Choose another --json.")   # checked before minutes of timing
    dtype = np.dtype(args.dtype)
    settings: dict[str, object] = {}
    if args.engine == "numpy":
        settings["helper"] = False
    if getattr(args, "force", None) is not None:
        settings["force"] = args.force
    with tuning(**settings), _thread_limit(args.threads):
        if getattr(args, "explain_plan", False):
            for layer in layers:
                print(f"{layer}:\n{explain(layer, dtype)}")
            return 0
        rows, samples = bench_layers(_progress(layers, "rot180 bench"), repeats=args.repeats,
                                     dtype=dtype, matmul_rate=matmul_rate, timer=timer)
        helper = ("not built" if _direct._directc is None else
                  "on" if get_tuning().helper else "off")
    mm = max(samples)
    header = (f"rot180 bench: {args.dtype}, threads {args.threads or 'default'}, compiled "
              f"helper {helper}; matmul rate {mm:.1f} GFLOP/s (best of {len(samples)} samples "
              f"between the layers); medians of {args.repeats} calls")
    print(format_rows(rows, header))
    if args.json is not None:
        write_file(args.json, json.dumps({
            "dtype": args.dtype, "threads": args.threads, "engine": args.engine,
            "helper": helper, "matmul_gflops": mm, "matmul_gflops_samples": samples,
            "warnings": [BUSY] if any(r.busy for r in rows) else [],
            "layers": [{**asdict(r), "total_ms": r.total_ms} for r in rows]},
            indent=2).encode(), "bench results")
    return 0
