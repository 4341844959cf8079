"""Convolution forward + backward: rot180 against PyTorch CPU, one process, same threads, float32.

One step is the forward ``conv`` and the three gradients (``conv_grad_input``,
``conv_grad_weight``, ``conv_grad_bias``); PyTorch runs ``F.conv2d`` forward and autograd
backward for ``x``, ``w`` and ``b``. Both see the same float32 arrays and the same delta. Steps
are warmed up, then timed interleaved in blocks of three (ours x3, torch x3, ...; with several
threads an untimed pause between blocks) and the medians compared.

Work counted: ``3 x 2 N K C k^2 Ho Wo`` flops (forward, input gradient, kernel gradient),
reported as GFLOP/s and as a fraction of the machine's measured float32 ``np.matmul`` rate.

Usage::

    python benchmarks/conv.py                       # all six layers, BLAS's own thread count
    python benchmarks/conv.py --repeats 30 --layers 3,4 --threads 1 --json out.json
    python benchmarks/conv.py --breakdown           # also time each of the four functions
    python benchmarks/conv.py --threads 1 --clock cpu   # steadier on a busy machine
"""

from __future__ import annotations

import argparse
import json
import sys
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

# (N, C, H, W) -> K, k, s, p
LAYERS = [
    ((64, 1, 28, 28), 6, 5, 1, 2),
    ((64, 6, 14, 14), 16, 5, 1, 0),
    ((64, 32, 32, 32), 64, 3, 1, 1),
    ((64, 64, 32, 32), 128, 3, 2, 1),
    ((32, 128, 16, 16), 128, 3, 1, 1),
    ((8, 3, 224, 224), 64, 7, 2, 3),
]


def layer_name(layer) -> str:
    (n, c, h, w), k_out, k, s, p = layer
    return f"({n},{c},{h},{w})->{k_out},{k},{s},{p}"


def layer_flops(layer) -> float:
    (n, c, h, w), k_out, k, s, p = layer
    ho = (h + 2 * p - k) // s + 1
    wo = (w + 2 * p - k) // s + 1
    return 3 * 2 * n * k_out * c * k * k * ho * wo


def make_steps(layer, seed: int = 0):
    """Return (ours, torch, pieces) callables for one training step of the layer."""
    import torch
    import torch.nn.functional as F

    from rot180.functional import conv, conv_grad_bias, conv_grad_input, conv_grad_weight

    (n, c, h, w), k_out, k, s, p = layer
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, c, h, w), dtype=np.float32)
    wt = (rng.standard_normal((k_out, c, k, k), dtype=np.float32) / np.sqrt(c * k * k)).astype(
        np.float32)
    b = rng.standard_normal(k_out, dtype=np.float32)
    kw = dict(stride=s, padding=p)
    dz = rng.standard_normal(conv(x, wt, b, **kw).shape, dtype=np.float32)

    def ours():
        z = conv(x, wt, b, **kw)
        dx = conv_grad_input(dz, wt, x.shape, **kw)
        dw = conv_grad_weight(x, dz, wt.shape, **kw)
        db = conv_grad_bias(dz)
        return z, dx, dw, db

    tx = torch.from_numpy(x).requires_grad_(True)
    tw = torch.from_numpy(wt).requires_grad_(True)
    tb = torch.from_numpy(b).requires_grad_(True)
    tdz = torch.from_numpy(dz)

    def theirs():
        tx.grad = tw.grad = tb.grad = None
        z = F.conv2d(tx, tw, tb, stride=s, padding=p)
        z.backward(tdz)
        return z, tx.grad, tw.grad, tb.grad

    def t_bwd(mask):
        def f():
            with torch.no_grad():
                return torch.ops.aten.convolution_backward(
                    tdz, tx, tw, [k_out], [s, s], [p, p], [1, 1], False, [0, 0], 1, mask)
        return f

    pieces = {
        "conv": (lambda: conv(x, wt, b, **kw),
                 lambda: F.conv2d(tx.detach(), tw.detach(), tb.detach(), stride=s, padding=p)),
        "grad_input": (lambda: conv_grad_input(dz, wt, x.shape, **kw),
                       t_bwd([True, False, False])),
        "grad_weight": (lambda: conv_grad_weight(x, dz, wt.shape, **kw),
                        t_bwd([False, True, False])),
        "grad_bias": (lambda: conv_grad_bias(dz), lambda: tdz.sum(dim=(0, 2, 3))),
    }
    return ours, theirs, pieces


def check_agreement(ours, theirs) -> float:
    """Largest relative difference between our step and torch's (a guard, not a test)."""
    worst = 0.0
    for a, t in zip(ours(), theirs(), strict=True):
        t = t.detach().numpy()
        worst = max(worst, float(np.abs(a - t).max() / max(1.0, np.abs(t).max())))
    return worst


def parse_layers(text: str | None) -> list[int]:
    if not text:
        return list(range(len(LAYERS)))
    idx = [int(v) - 1 for v in text.split(",")]
    for i in idx:
        if not 0 <= i < len(LAYERS):
            raise SystemExit(f"--layers takes numbers 1..{len(LAYERS)}, got {text!r}")
    return idx


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--repeats", type=int, default=15, help="timed steps per layer (median)")
    ap.add_argument("--warmup", type=int, default=3, help="untimed steps per side first")
    ap.add_argument("--layers", help="comma-separated layer numbers 1..6 (default: all)")
    ap.add_argument("--threads", type=int, help="threads for numpy's BLAS and torch "
                    "(default: numpy's BLAS thread count)")
    ap.add_argument("--clock", choices=["wall", "cpu"], default="wall",
                    help="wall time (default), or process CPU time: steadier on a shared "
                    "machine, meaningful with --threads 1 only")
    ap.add_argument("--pause", type=float,
                    help="untimed seconds between blocks so the other library's worker "
                    "threads stop spinning (default: 0.25 with several threads, else 0)")
    ap.add_argument("--breakdown", action="store_true",
                    help="also time each of conv / grad_input / grad_weight / grad_bias")
    ap.add_argument("--json", type=Path, help="write the results to this file")
    args = ap.parse_args(argv)

    threads = set_threads(args.threads)
    pause = args.pause if args.pause is not None else (0.25 if threads > 1 else 0.0)
    info = machine_info(threads)
    peak = matmul_gflops(clock=args.clock)
    info["matmul_gflops_2048_f32"] = round(peak, 1)
    info["clock"] = args.clock
    info["pause_s"] = pause
    for key, val in info.items():
        print(f"{key:>22}: {val}")
    print()
    hdr = (f"{'layer':<28}{'ours ms':>9}{'torch ms':>10}{'ratio':>7}{'GFLOP/s':>9}"
           f"{'of mm':>7}{'torch GF/s':>11}")
    print(hdr)
    print("-" * len(hdr))
    rows = []
    load = ForeignLoad()
    for i in parse_layers(args.layers):
        layer = LAYERS[i]
        ours, theirs, pieces = make_steps(layer)
        err = check_agreement(ours, theirs)
        t_ours, t_torch = interleaved([ours, theirs], args.repeats, args.warmup, args.clock,
                                       pause=pause)
        fl = layer_flops(layer)
        row = {
            "layer": layer_name(layer), "ours_ms": t_ours * 1e3, "torch_ms": t_torch * 1e3,
            "ratio": t_ours / t_torch, "gflops": fl / t_ours / 1e9,
            "frac_matmul": fl / t_ours / 1e9 / peak, "torch_gflops": fl / t_torch / 1e9,
            "max_rel_diff": err,
        }
        print(f"{row['layer']:<28}{row['ours_ms']:>9.2f}{row['torch_ms']:>10.2f}"
              f"{row['ratio']:>7.2f}{row['gflops']:>9.1f}{row['frac_matmul']:>7.0%}"
              f"{row['torch_gflops']:>11.1f}")
        if args.breakdown:
            row["pieces"] = {}
            for name, (f_ours, f_torch) in pieces.items():
                a, t = interleaved([f_ours, f_torch], args.repeats, 1, args.clock, pause=pause)
                row["pieces"][name] = {"ours_ms": a * 1e3, "torch_ms": t * 1e3}
                print(f"    {name:<24}{a * 1e3:>9.2f}{t * 1e3:>10.2f}{a / t:>7.2f}")
        rows.append(row)
    gm = geomean([r["ratio"] for r in rows])
    worst = max(rows, key=lambda r: r["ratio"])
    print("-" * len(hdr))
    print(f"geometric-mean ratio ours/torch: {gm:.2f}   worst: {worst['ratio']:.2f} "
          f"({worst['layer']})")
    foreign = load.fraction()
    if foreign is not None:
        print(f"other processes used {foreign:.0%} of the machine's CPU time during the run"
              + ("  (busy machine: rerun when idle)" if foreign > 0.1 else ""))
    if args.json:
        args.json.write_text(json.dumps({"machine": info, "repeats": args.repeats,
                                         "layers": rows, "geomean_ratio": gm,
                                         "worst_ratio": worst["ratio"],
                                         "foreign_cpu_fraction": foreign}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
