"""Every family of convolution layer, rot180 against PyTorch CPU (and optional peers), one process.

``benchmarks/conv.py`` times six layers; this script times layers chosen from real architectures
in every family a user meets (depthwise, grouped, pointwise, dilated, asymmetric, 1-D, 3-D,
transposed, batch-1 inference, large-channel 3x3, strided down-sampling), prints each family's
geometric-mean ratio, and with ``--sweep N`` adds ``N`` random layers (fixed seed) and reports
the worst ratio among them: a layer no benchmark names must not fall off a cliff.

One training step of a layer is what a network does with it: the forward pass and, for the
delta ``dz``, the input, kernel and bias gradients. rot180 runs its ``nn`` layer
(``Conv{1,2,3}d`` / ``ConvTranspose{1,2,3}d``: ``forward`` then ``backward``); PyTorch runs the
same ``nn`` module with autograd (``backward(dz)`` with gradients for ``x``, ``w`` and ``b``).
Inference layers (``train=False``) time the forward pass alone (torch under ``no_grad``). Both
sides see the same float32 arrays; steps are warmed up, timed interleaved in blocks (see
``_common.interleaved``) and medians compared.

Work counted: ``2 N C_out (C_in/g) prod(k) prod(o)`` flops per pass (for a transposed layer,
``o`` is its *input* size: it is the input gradient of a conv), times 3 when training. GFLOP/s
are also given as a share of the machine's measured float32 ``np.matmul`` rate.

Usage::

    python benchmarks/families.py                  # every family + 50 random layers, 2 threads
    python benchmarks/families.py --families depthwise,3-D --sweep 0 --breakdown
    python benchmarks/families.py --sweep 100 --seed 1     # another 100 random layers
    python benchmarks/families.py --peers tensorflow,jax   # + optional peers (see _peers.py)
    python benchmarks/families.py --json out.json
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import (  # noqa: E402
    ForeignLoad,
    geomean,
    interleaved,
    machine_info,
    matmul_gflops,
    set_threads,
)


@dataclass(frozen=True)
class Layer:
    """One layer: a conv (or transposed conv) with PyTorch's arguments, per spatial axis."""

    name: str
    family: str
    n: int
    c_in: int
    size: tuple[int, ...]
    c_out: int
    kernel: tuple[int, ...]
    stride: tuple[int, ...] = ()
    padding: tuple[int, ...] = ()
    dilation: tuple[int, ...] = ()
    groups: int = 1
    transposed: bool = False
    output_padding: tuple[int, ...] = ()
    train: bool = True
    bias: bool = True
    nd: int = field(init=False)

    def __post_init__(self) -> None:
        nd = len(self.size)
        object.__setattr__(self, "nd", nd)
        for name, default in (("stride", 1), ("padding", 0), ("dilation", 1),
                              ("output_padding", 0)):
            value = getattr(self, name)
            if not value:
                object.__setattr__(self, name, (default,) * nd)
            elif len(value) == 1:
                object.__setattr__(self, name, tuple(value) * nd)
        if len(self.kernel) == 1:
            object.__setattr__(self, "kernel", tuple(self.kernel) * nd)

    @property
    def out_size(self) -> tuple[int, ...]:
        if self.transposed:
            return tuple((i - 1) * s - 2 * p + d * (k - 1) + a + 1 for i, k, s, p, d, a in zip(
                self.size, self.kernel, self.stride, self.padding, self.dilation,
                self.output_padding, strict=True))
        return tuple((i + 2 * p - d * (k - 1) - 1) // s + 1 for i, k, s, p, d in zip(
            self.size, self.kernel, self.stride, self.padding, self.dilation, strict=True))

    @property
    def flops(self) -> float:
        """Flops of one step: 3 passes when training (forward, both gradients), else 1."""
        conv_out = self.size if self.transposed else self.out_size
        outer = self.c_in if self.transposed else self.c_out
        inner = (self.c_out if self.transposed else self.c_in) // self.groups
        one = 2 * self.n * outer * inner * math.prod(self.kernel) * math.prod(conv_out)
        return one * (3 if self.train else 1)

    def describe(self) -> str:
        def axes(v: tuple[int, ...]) -> str:
            return "x".join(map(str, v))
        parts = [f"{self.n}x{self.c_in}x{axes(self.size)}->{self.c_out}", f"k{axes(self.kernel)}"]
        for label, v, default in (("s", self.stride, 1), ("p", self.padding, 0),
                                  ("d", self.dilation, 1), ("op", self.output_padding, 0)):
            if any(e != default for e in v):
                parts.append(f"{label}{axes(v)}")
        if self.groups > 1:
            parts.append(f"g{self.groups}")
        return " ".join(parts)


def L(name: str, family: str, n: int, c_in: int, size, c_out: int, k, **kw) -> Layer:
    def tup(v):
        return ((v,) if isinstance(v, int) else tuple(v))
    return Layer(name, family, n, c_in, tup(size), c_out, tup(k),
                 **{key: tup(v) if key in ("stride", "padding", "dilation", "output_padding")
                    else v for key, v in kw.items()})


# Layers from real networks, at batch sizes a CPU user trains with.
LAYERS: list[Layer] = [
    # depthwise (groups = C): MobileNetV2 / EfficientNet blocks
    L("mobilenetv2 dw 3x3", "depthwise", 32, 96, (56, 56), 96, 3, padding=1, groups=96),
    L("mobilenetv2 dw 3x3 s2", "depthwise", 32, 144, (56, 56), 144, 3, stride=2, padding=1,
      groups=144),
    L("efficientnet dw 5x5", "depthwise", 32, 240, (28, 28), 240, 5, padding=2, groups=240),
    L("mobilenet dw 3x3 s2 (112)", "depthwise", 16, 32, (112, 112), 32, 3, stride=2,
      padding=1, groups=32),
    # grouped: ResNeXt-50 (32x4d) bottlenecks
    L("resnext 3x3 g32", "grouped", 32, 128, (28, 28), 128, 3, padding=1, groups=32),
    L("resnext 3x3 s2 g32", "grouped", 32, 256, (28, 28), 256, 3, stride=2, padding=1,
      groups=32),
    L("shufflenet 1x1 g4", "grouped", 32, 240, (28, 28), 240, 1, groups=4),
    # pointwise 1x1
    L("resnet bottleneck expand 1x1", "pointwise", 32, 64, (28, 28), 256, 1),
    L("resnet shortcut 1x1 s2", "pointwise", 32, 256, (28, 28), 512, 1, stride=2),
    L("mobilenetv2 project 1x1", "pointwise", 32, 144, (56, 56), 24, 1),
    # dilated: DeepLab ASPP / WaveNet-style context
    L("deeplab 3x3 d2", "dilated", 8, 64, (64, 64), 64, 3, padding=2, dilation=2),
    L("deeplab 3x3 d4", "dilated", 8, 128, (32, 32), 128, 3, padding=4, dilation=4),
    # asymmetric kernels: Inception-v3
    L("inception 1x7", "asymmetric", 32, 128, (17, 17), 128, (1, 7), padding=(0, 3)),
    L("inception 7x1", "asymmetric", 32, 128, (17, 17), 192, (7, 1), padding=(3, 0)),
    L("inception 1x3 (8x8)", "asymmetric", 32, 384, (8, 8), 384, (1, 3), padding=(0, 1)),
    # 1-D: speech and text
    L("speech 1-D k5 (80 mel)", "1-D", 16, 80, (400,), 256, 5, padding=2),
    L("text 1-D k3", "1-D", 32, 128, (256,), 128, 3, padding=1),
    L("speech 1-D k3 s2", "1-D", 16, 256, (400,), 256, 3, stride=2, padding=1),
    L("wav2vec raw audio k10 s5", "1-D", 4, 1, (16000,), 64, 10, stride=5),
    # 3-D: video (C3D) and medical (3-D U-Net)
    L("video 3x3x3 16->32", "3-D", 4, 16, (8, 28, 28), 32, 3, padding=1),
    L("medical 3x3x3 32^3", "3-D", 2, 32, (32, 32, 32), 32, 3, padding=1),
    L("medical 3x3x3 s2", "3-D", 2, 32, (32, 32, 32), 64, 3, stride=2, padding=1),
    # transposed 2-D: DCGAN generator, U-Net decoder
    L("dcgan 4x4 s2", "transposed", 32, 128, (16, 16), 64, 4, stride=2, padding=1,
      transposed=True),
    L("dcgan 4x4 s2 (8x8, 256)", "transposed", 32, 256, (8, 8), 128, 4, stride=2, padding=1,
      transposed=True),
    L("unet 3x3 s2 output_padding 1", "transposed", 16, 64, (32, 32), 32, 3, stride=2,
      padding=1, output_padding=1, transposed=True),
    # batch-1 inference (forward only)
    L("resnet50 3x3 256 @14 (N=1)", "batch-1", 1, 256, (14, 14), 256, 3, padding=1,
      train=False),
    L("mobilenet dw 3x3 @112 (N=1)", "batch-1", 1, 32, (112, 112), 32, 3, padding=1, groups=32,
      train=False),
    L("resnet stem 7x7 s2 (N=1)", "batch-1", 1, 3, (224, 224), 64, 7, stride=2, padding=3,
      train=False),
    # large-channel 3x3
    L("resnet 3x3 256 @14", "large-channel", 8, 256, (14, 14), 256, 3, padding=1),
    L("vgg 3x3 512 @7", "large-channel", 8, 512, (7, 7), 512, 3, padding=1),
    L("resnet 3x3 s2 256->512", "large-channel", 8, 256, (14, 14), 512, 3, stride=2, padding=1),
    # strided down-sampling that doubles the channels (ResNet stage entries)
    L("resnet_small 3x3 s2 16->32", "strided", 64, 16, (32, 32), 32, 3, stride=2, padding=1),
    L("resnet18 3x3 s2 128->256", "strided", 16, 128, (28, 28), 256, 3, stride=2, padding=1),
]

FAMILIES = tuple(dict.fromkeys(layer.family for layer in LAYERS))


def random_layers(count: int, seed: int = 0, budget: tuple[float, float] = (3e7, 3e8)
                  ) -> list[Layer]:
    """``count`` random layers any of PyTorch's conv modules accepts, each of a training step
    between ``budget`` flops (so every one takes milliseconds, not seconds)."""
    rng = np.random.default_rng(seed)
    out: list[Layer] = []
    while len(out) < count:
        nd = int(rng.choice([1, 2, 2, 2, 3]))
        k = tuple(int(rng.choice([1, 2, 3, 3, 3, 5, 7])) for _ in range(nd))
        if rng.random() < 0.3:                        # a square kernel most of the time
            k = (k[0],) * nd
        stride = tuple(int(rng.choice([1, 1, 1, 2, 3])) for _ in range(nd))
        dilation = tuple(int(rng.choice([1, 1, 1, 2, 3])) for _ in range(nd))
        padding = tuple(int(rng.integers(0, d * (kk - 1) // 2 + 2)) for kk, d in
                        zip(k, dilation, strict=True))
        transposed = bool(rng.random() < 0.15)
        base = int(rng.choice([1, 3, 8, 16, 24, 32, 48, 64, 96, 128, 192, 256]))
        c_in = base
        c_out = int(rng.choice([8, 16, 32, 64, 128, 256]))
        groups = 1
        roll = rng.random()
        if roll < 0.15 and c_in > 1:
            groups = c_in                              # depthwise
            c_out = c_in * int(rng.choice([1, 1, 2]))
        elif roll < 0.3:
            g = int(rng.choice([2, 4, 8]))
            if c_in % g == 0 and c_out % g == 0:
                groups = g
        if transposed:
            c_in, c_out = c_out, c_in
            if c_in % groups or c_out % groups:
                groups = 1
        size = {1: lambda: (int(rng.integers(32, 2048)),),
                2: lambda: (int(rng.integers(6, 72)),) * 2,
                3: lambda: tuple(int(rng.integers(4, 20)) for _ in range(3))}[nd]()
        op = tuple(int(rng.integers(0, max(s, d))) if transposed else 0
                   for s, d in zip(stride, dilation, strict=True))
        n = int(rng.choice([1, 2, 4, 8, 16, 32, 64]))
        layer = Layer(f"random {len(out) + 1}", "random", n, c_in, size, c_out, k,
                      stride=stride, padding=padding, dilation=dilation, groups=groups,
                      transposed=transposed, output_padding=op, train=bool(rng.random() < 0.9))
        if (all(o >= 1 for o in layer.out_size) and budget[0] <= layer.flops <= budget[1]
                and _torch_accepts(layer)):
            out.append(layer)
    return out


def _torch_accepts(layer: Layer) -> bool:
    """Whether PyTorch takes the layer (a transposed conv's output padding must be < s or d)."""
    if any(p > d * (k - 1) // 2 + d for p, k, d in
           zip(layer.padding, layer.kernel, layer.dilation, strict=True)) and layer.transposed:
        return False
    return all(a < max(s, d) for a, s, d in
               zip(layer.output_padding, layer.stride, layer.dilation, strict=True))


# --- the two sides --------------------------------------------------------------------------

def arrays(layer: Layer, seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((layer.n, layer.c_in, *layer.size), dtype=np.float32)
    fan = (layer.c_in // layer.groups) * math.prod(layer.kernel)
    wshape = ((layer.c_in, layer.c_out // layer.groups) if layer.transposed
              else (layer.c_out, layer.c_in // layer.groups)) + layer.kernel
    w = (rng.standard_normal(wshape, dtype=np.float32) / np.sqrt(fan)).astype(np.float32)
    b = rng.standard_normal(layer.c_out, dtype=np.float32)
    dz = rng.standard_normal((layer.n, layer.c_out, *layer.out_size), dtype=np.float32)
    return {"x": x, "w": w, "b": b, "dz": dz}


def _kwargs(layer: Layer) -> dict:
    kw = dict(stride=layer.stride, padding=layer.padding, dilation=layer.dilation,
              groups=layer.groups)
    if layer.transposed:
        kw["output_padding"] = layer.output_padding
    return kw


def ours_step(layer: Layer, a: dict[str, np.ndarray]) -> Callable[[], tuple]:
    import rot180.nn as rnn

    cls = getattr(rnn, f"Conv{'Transpose' if layer.transposed else ''}{layer.nd}d")
    mod = cls(layer.c_in, layer.c_out, layer.kernel, **_kwargs(layer))
    mod.weight.data[...] = a["w"]
    mod.bias.data[...] = a["b"]
    x, dz = a["x"], a["dz"]
    if not layer.train:
        mod.eval()
        return lambda: (mod.forward(x),)

    def step() -> tuple:
        mod.zero_grad()
        z = mod.forward(x)
        dx = mod.backward(dz)
        return z, dx, mod.weight.grad, mod.bias.grad

    return step


def torch_step(layer: Layer, a: dict[str, np.ndarray]) -> Callable[[], tuple]:
    import torch

    cls = getattr(torch.nn, f"Conv{'Transpose' if layer.transposed else ''}{layer.nd}d")
    mod = cls(layer.c_in, layer.c_out, layer.kernel, **_kwargs(layer))
    with torch.no_grad():
        mod.weight.copy_(torch.from_numpy(a["w"]))
        mod.bias.copy_(torch.from_numpy(a["b"]))
    x = torch.from_numpy(a["x"])
    dz = torch.from_numpy(a["dz"])
    if not layer.train:
        def infer() -> tuple:
            with torch.no_grad():
                return (mod(x),)
        return infer
    xg = x.clone().requires_grad_(True)

    def step() -> tuple:
        xg.grad = None
        mod.zero_grad(set_to_none=True)
        z = mod(xg)
        z.backward(dz)
        return z, xg.grad, mod.weight.grad, mod.bias.grad

    return step


def agreement(ours: tuple, ref: tuple) -> float:
    """Largest difference relative to the reference's largest magnitude, over all outputs."""
    worst = 0.0
    for a, t in zip(ours, ref, strict=True):
        t = t.detach().numpy() if hasattr(t, "detach") else np.asarray(t)
        worst = max(worst, float(np.abs(np.asarray(a) - t).max() / max(1.0, np.abs(t).max())))
    return worst


# --- running ----------------------------------------------------------------------------------

def measure(layer: Layer, repeats: int, warmup: int, pause: float, peak: float,
            peers: list[str], breakdown: bool, clock: str = "wall",
            peer_max_s: float = 1.0) -> dict:
    a = arrays(layer)
    ours, theirs = ours_step(layer, a), torch_step(layer, a)
    ref = theirs()
    err = agreement(ours(), ref)
    fns, names = [ours, theirs], ["ours", "torch"]
    peer_err, notes, slow = {}, {}, {}
    for name in peers:
        import _peers
        try:
            fn = _peers.make_step(name, layer, a["x"], a["w"], a["b"], a["dz"])
            peer_err[name] = agreement(fn(), ref)          # compiles, where the peer does
        except NotImplementedError as exc:
            peer_err[name] = f"n/a: {exc}"
            continue
        notes[name] = getattr(fn, "note", "")
        t0 = time.perf_counter()
        fn()
        once = time.perf_counter() - t0
        if once > peer_max_s:          # e.g. JAX's grouped convolutions on a CPU: seconds a step
            slow[name] = once          # timed once, not interleaved
            continue
        fns.append(fn)
        names.append(name)
    times = dict(zip(names, interleaved(fns, repeats, warmup, clock, pause=pause), strict=True))
    times.update(slow)
    row = {"layer": layer.name, "family": layer.family, "shape": layer.describe(),
           "config": {k: v for k, v in asdict(layer).items() if k not in ("name", "family")},
           "ms": {k: v * 1e3 for k, v in times.items()}, "ratio": times["ours"] / times["torch"],
           "gflops": layer.flops / times["ours"] / 1e9,
           "frac_matmul": layer.flops / times["ours"] / 1e9 / peak,
           "torch_gflops": layer.flops / times["torch"] / 1e9, "max_rel_diff": err,
           "peer_diff": peer_err, "peer_note": notes, "peer_timed_once": sorted(slow)}
    others = {k: v for k, v in times.items() if k != "ours"}
    fastest = min(others, key=others.get)
    row["fastest_peer"] = fastest
    row["ratio_fastest"] = times["ours"] / others[fastest]
    if breakdown and layer.train:
        row["pieces"] = _pieces(layer, a, repeats, pause, clock)
    return row


def _pieces(layer: Layer, a: dict[str, np.ndarray], repeats: int, pause: float,
            clock: str) -> dict:
    """Forward and backward of each side, timed apart (ours: ``forward``; ``backward``)."""
    import torch

    import rot180.nn as rnn

    cls = getattr(rnn, f"Conv{'Transpose' if layer.transposed else ''}{layer.nd}d")
    mod = cls(layer.c_in, layer.c_out, layer.kernel, **_kwargs(layer))
    tcls = getattr(torch.nn, f"Conv{'Transpose' if layer.transposed else ''}{layer.nd}d")
    tmod = tcls(layer.c_in, layer.c_out, layer.kernel, **_kwargs(layer))
    x, dz = a["x"], a["dz"]
    tx = torch.from_numpy(x).requires_grad_(True)
    tdz = torch.from_numpy(dz)
    mod.forward(x)
    tz = tmod(tx)

    def t_fwd():
        with torch.no_grad():
            return tmod(tx)

    def t_bwd():
        return torch.autograd.grad(tz, (tx, tmod.weight, tmod.bias), tdz, retain_graph=True)

    out = {}
    for name, f_ours, f_torch in (("forward", lambda: mod.forward(x), t_fwd),
                                  ("backward", lambda: mod.backward(dz), t_bwd)):
        if name == "backward":
            mod.forward(x)
        t_o, t_t = interleaved([f_ours, f_torch], repeats, 1, clock, pause=pause)
        out[name] = {"ours_ms": t_o * 1e3, "torch_ms": t_t * 1e3, "ratio": t_o / t_t}
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--families", help=f"comma-separated families (default all: "
                    f"{', '.join(FAMILIES)})")
    ap.add_argument("--layers", help="comma-separated substrings of layer names to keep")
    ap.add_argument("--sweep", type=int, default=50, metavar="N",
                    help="also time N random layers (fixed --seed; default 50, 0: none) and "
                    "report the worst ratio")
    ap.add_argument("--seed", type=int, default=0, help="seed of the random sweep")
    ap.add_argument("--repeats", type=int, default=9, help="timed steps per layer (median)")
    ap.add_argument("--warmup", type=int, default=2, help="untimed steps per side first")
    ap.add_argument("--threads", type=int, default=2, help="threads for every library")
    ap.add_argument("--clock", choices=["wall", "cpu"], default="wall",
                    help="wall time (default), or process CPU time: steadier on a shared "
                    "machine, meaningful with --threads 1 only")
    ap.add_argument("--pause", type=float, help="untimed seconds between blocks (default: 0.1 "
                    "with several threads, else 0)")
    ap.add_argument("--peers", default="", help="optional peers: tensorflow,jax (see _peers.py)")
    ap.add_argument("--peer-max-s", type=float, default=1.0, metavar="S",
                    help="a peer's step slower than this is timed once, not interleaved "
                    "(marked *)")
    ap.add_argument("--breakdown", action="store_true",
                    help="also time forward and backward apart")
    ap.add_argument("--json", type=Path, help="write every row and the summary to this file")
    args = ap.parse_args(argv)

    peers = [p for p in args.peers.split(",") if p]
    if peers:
        import _peers
        _peers.configure(args.threads)
        found = _peers.available()
        for p in peers:
            if p not in found:
                raise SystemExit(f"--peers: unknown peer {p!r}; expected some of "
                                 f"{', '.join(found)}")
        absent = [p for p in peers if found[p].startswith("absent")]
        for p in absent:
            print(f"note: peer {p} skipped ({found[p]}); pip install 'rot180[bench]'")
        peers = [p for p in peers if p not in absent]
    threads = set_threads(args.threads)
    pause = args.pause if args.pause is not None else (0.1 if threads > 1 else 0.0)
    info = machine_info(threads)
    peak = matmul_gflops(clock=args.clock)
    info["matmul_gflops_2048_f32"] = round(peak, 1)
    info["clock"] = args.clock
    if peers:
        info["peers"] = {p: _peers.available()[p] for p in peers}
    for key, val in info.items():
        print(f"{key:>22}: {val}")

    layers = LAYERS
    if args.families:
        want = [f.strip() for f in args.families.split(",")]
        unknown = [f for f in want if f not in FAMILIES]
        if unknown:
            raise SystemExit(f"--families: unknown {unknown}; expected some of "
                             f"{', '.join(FAMILIES)}")
        layers = [la for la in layers if la.family in want]
    if args.layers:
        keys = [k.strip() for k in args.layers.split(",")]
        layers = [la for la in layers if any(k in la.name for k in keys)]
    if args.sweep:
        layers = layers + random_layers(args.sweep, args.seed)

    hdr = (f"{'layer':<30}{'shape':<44}{'ours ms':>9}{'torch ms':>9}{'ratio':>7}{'GF/s':>7}"
           f"{'of mm':>6}" + "".join(f"{p[:8]:>9}" for p in peers)
           + (f"{'vs best':>8}" if peers else ""))
    print()
    print(hdr)
    print("-" * len(hdr))
    rows = []
    load = ForeignLoad()
    family = None
    for layer in layers:
        if layer.family != family:
            family = layer.family
            print(f"[{family}]")
        row = measure(layer, args.repeats, args.warmup, pause, peak, peers, args.breakdown,
                      args.clock, args.peer_max_s)
        rows.append(row)
        ms = row["ms"]
        line = (f"{layer.name[:29]:<30}{row['shape'][:43]:<44}{ms['ours']:>9.2f}"
                f"{ms['torch']:>9.2f}{row['ratio']:>7.2f}{row['gflops']:>7.1f}"
                f"{row['frac_matmul']:>6.0%}")
        for p in peers:
            mark = "*" if p in row["peer_timed_once"] else ""
            line += f"{ms[p]:>8.2f}{mark or ' '}" if p in ms else f"{'n/a':>9}"
        if peers:
            line += f"{row['ratio_fastest']:>8.2f}"
        if row["max_rel_diff"] > 1e-3:
            line += f"   DIFFERS {row['max_rel_diff']:.1e}"
        print(line)
        for name, piece in row.get("pieces", {}).items():
            print(f"    {name:<26}{'':<44}{piece['ours_ms']:>9.2f}{piece['torch_ms']:>9.2f}"
                  f"{piece['ratio']:>7.2f}")
    print("-" * len(hdr))
    if peers:
        print("* timed once (slower than --peer-max-s). Peers' routes where they differ from "
              "their plain conv: see the JSON's peer_note.")
    summary = summarise(rows, peers)
    foreign = load.fraction()
    if foreign is not None:
        print(f"other processes used {foreign:.0%} of the machine's CPU time during the run"
              + ("  (busy machine: rerun when idle)" if foreign > 0.1 else ""))
    if args.json:
        args.json.write_text(json.dumps({"machine": info, "repeats": args.repeats,
                                         "rows": rows, "summary": summary,
                                         "foreign_cpu_fraction": foreign}, indent=2))
    return 0


def summarise(rows: list[dict], peers: list[str]) -> dict:
    """Print and return each family's geometric-mean ratio, its worst layer, and the totals."""
    summary: dict = {"families": {}}
    print(f"{'family':<16}{'layers':>7}{'geomean':>9}{'worst':>7}"
          + (f"{'vs best':>9}" if peers else "") + "  worst layer")
    for fam in dict.fromkeys(r["family"] for r in rows):
        sel = [r for r in rows if r["family"] == fam]
        worst = max(sel, key=lambda r: r["ratio"])
        entry = {"layers": len(sel), "geomean": geomean([r["ratio"] for r in sel]),
                 "worst": worst["ratio"], "worst_layer": worst["layer"]}
        if peers:
            entry["geomean_vs_fastest"] = geomean([r["ratio_fastest"] for r in sel])
        summary["families"][fam] = entry
        print(f"{fam:<16}{len(sel):>7}{entry['geomean']:>9.2f}{entry['worst']:>7.2f}"
              + (f"{entry['geomean_vs_fastest']:>9.2f}" if peers else "")
              + f"  {worst['layer']}")
    named = [r for r in rows if r["family"] != "random"]
    if named:
        summary["geomean"] = geomean([r["ratio"] for r in named])
        summary["worst"] = max(r["ratio"] for r in named)
        print(f"all named layers: geomean {summary['geomean']:.2f}, worst {summary['worst']:.2f}")
    return summary


if __name__ == "__main__":
    sys.exit(main())
