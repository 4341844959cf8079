"""BatchNorm (+ReLU), ReLU and pooling forward / backward: rot180 against PyTorch CPU, one process.

Each op is timed as a user's network runs it: our layers (``nn.BatchNorm2d``,
``Sequential(BatchNorm2d, ReLU)``, ``nn.ReLU``, ``nn.MaxPool2d(2)``, ``nn.AvgPool2d(2)``,
``nn.AdaptiveAvgPool2d(1)``) against ``torch.nn.functional`` on the same arrays:
``batch_norm(training=True)`` (running statistics updated, as the layer does), ``relu``,
``max_pool2d`` / ``avg_pool2d`` / ``adaptive_avg_pool2d``. A backward is timed alone: ours is the
layer's ``backward`` after one forward; torch's is ``torch.autograd.grad`` of a graph built once
(``retain_graph``), for the input and (BatchNorm) weight and bias. The timing rule is
``benchmarks/conv.py``'s (``_common.interleaved``: warm up, blocks of three, medians).

Usage::

    python benchmarks/elementwise.py --threads 2
    python benchmarks/elementwise.py --threads 2 --ops bn_fwd,bn_bwd --shapes 1,2 --repeats 21
    python benchmarks/elementwise.py --threads 1 --clock cpu --json out.json
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import ForeignLoad, geomean, interleaved, machine_info, set_threads  # noqa: E402

# (N, C, H, W), dtype: channels 16..512, spatial 4..112, batch 1..128.
SHAPES = [
    ((64, 32, 32, 32), "float32"),      # vgg_small(width=32)'s first block, batch 64
    ((64, 64, 16, 16), "float32"),
    ((64, 128, 8, 8), "float32"),
    ((64, 256, 4, 4), "float32"),
    ((128, 16, 32, 32), "float32"),
    ((8, 64, 56, 56), "float32"),       # ResNet stage 1 at batch 8
    ((2, 32, 112, 112), "float32"),
    ((1, 512, 14, 14), "float32"),      # batch 1
    ((32, 512, 4, 4), "float32"),
    ((64, 32, 32, 32), "float64"),
    ((16, 64, 28, 28), "float64"),
]
OPS = ["bn_fwd", "bn_bwd", "bnrelu_fwd", "bnrelu_bwd", "relu_fwd", "relu_bwd", "maxpool_fwd",
       "maxpool_bwd", "avgpool_fwd", "avgpool_bwd", "gap_fwd", "gap_bwd"]


def make_op(op: str, shape: tuple[int, ...], dtype: str, seed: int = 0):
    """(ours, theirs, check): two callables for one op, and a function giving the largest
    relative difference of their results (a guard, not a test)."""
    import torch
    import torch.nn.functional as F

    from rot180 import nn

    rng = np.random.default_rng(seed)
    dt = np.dtype(dtype)
    tdt = getattr(torch, dtype)
    c = shape[1]
    x = (2 * rng.standard_normal(shape) + 0.5).astype(dt)
    tx = torch.from_numpy(x.copy()).requires_grad_(True)
    kind, direction = op.rsplit("_", 1)

    if kind in ("bn", "bnrelu"):
        bn = nn.BatchNorm2d(c, dtype=dt)
        bn.weight.data[...] = rng.uniform(0.5, 1.5, c)
        bn.bias.data[...] = rng.uniform(-0.5, 0.5, c)
        layer = nn.Sequential(bn, nn.ReLU()) if kind == "bnrelu" else bn
        tw = torch.from_numpy(bn.weight.data.copy()).requires_grad_(True)
        tb = torch.from_numpy(bn.bias.data.copy()).requires_grad_(True)
        rm, rv = torch.zeros(c, dtype=tdt), torch.ones(c, dtype=tdt)

        def t_fwd():
            y = F.batch_norm(tx, rm, rv, tw, tb, training=True)
            return F.relu(y) if kind == "bnrelu" else y
        inputs = (tx, tw, tb)
    elif kind == "relu":
        layer = nn.ReLU()

        def t_fwd():
            return F.relu(tx)
        inputs = (tx,)
    else:
        layer = {"maxpool": lambda: nn.MaxPool2d(2), "avgpool": lambda: nn.AvgPool2d(2),
                 "gap": lambda: nn.AdaptiveAvgPool2d(1)}[kind]()
        t_op = {"maxpool": lambda t: F.max_pool2d(t, 2), "avgpool": lambda t: F.avg_pool2d(t, 2),
                "gap": lambda t: F.adaptive_avg_pool2d(t, 1)}[kind]

        def t_fwd():
            return t_op(tx)
        inputs = (tx,)

    y = layer.forward(x)
    dy = rng.standard_normal(y.shape).astype(dt)
    tdy = torch.from_numpy(dy)
    ty = t_fwd()

    def o_bwd():
        return layer.backward(dy)

    def t_bwd():
        return torch.autograd.grad(ty, inputs, tdy, retain_graph=True)

    def check() -> float:
        a = layer.forward(x)
        t = t_fwd().detach().numpy()
        worst = float(np.abs(a - t).max() / max(1.0, np.abs(t).max()))
        a = layer.backward(dy)
        t = torch.autograd.grad(t_fwd(), inputs, tdy)[0].numpy()
        return max(worst, float(np.abs(a - t).max() / max(1.0, np.abs(t).max())))

    if direction == "fwd":
        def o_fwd():
            return layer.forward(x)
        return o_fwd, t_fwd, check
    return o_bwd, t_bwd, check


def parse_list(text: str | None, names: list, what: str) -> list:
    if not text:
        return list(names) if what == "ops" else list(range(len(names)))
    if what == "ops":
        bad = [v for v in text.split(",") if v not in names]
        if bad:
            raise SystemExit(f"--ops takes some of {','.join(names)}, got {bad}")
        return text.split(",")
    idx = [int(v) - 1 for v in text.split(",")]
    if any(not 0 <= i < len(names) for i in idx):
        raise SystemExit(f"--shapes takes numbers 1..{len(names)}, got {text!r}")
    return idx


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--repeats", type=int, default=15, help="timed calls per op (median)")
    ap.add_argument("--warmup", type=int, default=3, help="untimed calls per side first")
    ap.add_argument("--ops", help=f"comma-separated ops (default: all of {','.join(OPS)})")
    ap.add_argument("--shapes", help=f"comma-separated shape numbers 1..{len(SHAPES)}")
    ap.add_argument("--threads", type=int, help="threads for numpy's BLAS, rot180 and torch "
                    "(default: numpy's BLAS thread count)")
    ap.add_argument("--clock", choices=["wall", "cpu"], default="wall")
    ap.add_argument("--pause", type=float, help="untimed seconds between blocks (default: "
                    "0.05 with several threads, else 0)")
    ap.add_argument("--json", type=Path, help="write the results to this file")
    args = ap.parse_args(argv)

    threads = set_threads(args.threads)
    pause = args.pause if args.pause is not None else (0.05 if threads > 1 else 0.0)
    info = machine_info(threads)
    info["clock"], info["pause_s"] = args.clock, pause
    for key, val in info.items():
        print(f"{key:>22}: {val}")
    print()
    ops = parse_list(args.ops, OPS, "ops")
    shapes = [SHAPES[i] for i in parse_list(args.shapes, SHAPES, "shapes")]
    hdr = f"{'op':<13}{'shape':<22}{'dtype':<9}{'ours ms':>9}{'torch ms':>10}{'ratio':>7}"
    print(hdr)
    print("-" * len(hdr))
    rows = []
    load = ForeignLoad()
    from rot180.functional import tuning

    with tuning(threads=threads):
        for op in ops:
            for shape, dtype in shapes:
                ours, theirs, check = make_op(op, shape, dtype)
                err = check()
                t_o, t_t = interleaved([ours, theirs], args.repeats, args.warmup, args.clock,
                                       pause=pause)
                row = {"op": op, "shape": list(shape), "dtype": dtype, "ours_ms": t_o * 1e3,
                       "torch_ms": t_t * 1e3, "ratio": t_o / t_t, "max_rel_diff": err}
                rows.append(row)
                print(f"{op:<13}{str(shape):<22}{dtype:<9}{t_o * 1e3:>9.3f}{t_t * 1e3:>10.3f}"
                      f"{t_o / t_t:>7.2f}" + (f"  (differs by {err:.1e})" if err > 1e-4 else ""),
                      flush=True)
    print("-" * len(hdr))
    print("geometric-mean ratio ours/torch per op:")
    per_op = {}
    for op in ops:
        r = [row["ratio"] for row in rows if row["op"] == op]
        per_op[op] = geomean(r)
        print(f"    {op:<13}{per_op[op]:>6.2f}   worst {max(r):.2f}")
    gm = geomean([r["ratio"] for r in rows])
    worst = max(rows, key=lambda r: r["ratio"])
    print(f"geometric-mean ratio ours/torch, all: {gm:.2f}   worst: {worst['ratio']:.2f} "
          f"({worst['op']} {tuple(worst['shape'])} {worst['dtype']})")
    foreign = load.fraction()
    if foreign is not None:
        print(f"other processes used {foreign:.0%} of the machine's CPU time during the run"
              + ("  (busy machine: rerun when idle)" if foreign > 0.1 else ""))
    if args.json:
        args.json.write_text(json.dumps({"machine": info, "repeats": args.repeats, "rows": rows,
                                         "geomean_per_op": per_op, "geomean_ratio": gm,
                                         "foreign_cpu_fraction": foreign}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
