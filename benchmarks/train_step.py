"""Whole-network training steps, rot180 against PyTorch CPU twins: time and peak memory.

One step at batch 64, float32, is forward, softmax cross-entropy, backward (the parameters'
gradients only: nothing needs the data's) and an SGD update (momentum 0.9, weight decay 5e-4),
BatchNorm in training mode. Models: ``lenet5`` (28x28x1 inputs), ``resnet16`` / ``resnet32``
(``resnet_small(width=16 / 32)``) and ``vgg32`` (``vgg_small(width=32)``), all 32x32x3.

Each PyTorch twin is built from our model by walking its modules (``_twins.torch_twin``) and
gets our ``state_dict()`` with ``load_state_dict(strict=True)``; both see the same batch. A
guard prints how far the first step's losses and, after 3 steps, the parameters and buffers
lie apart (expected: < 1e-4 relative and ~1e-3 at most). Time is the median step time, both
libraries interleaved in blocks in one process (``_common.interleaved``), with the same thread
count for numpy's BLAS, rot180's engine (which follows it) and torch. Peak memory is measured
in child processes (one per library and model, the same script): the growth of the peak
resident set size over a few steps, after imports, weights and data are in place, so it counts
what the step itself allocates (activations, caches, gradients, buffers).

``--profile MODEL`` adds per-top-level-layer forward / backward medians for both sides (ours by
wall clock around each layer's call; torch by wall clock around each child's forward and by
tensor hooks that fire as each layer's output gradient is ready) and torch.profiler's top 15
operators by self CPU time.

    python benchmarks/train_step.py [--models lenet5,resnet16,resnet32,vgg32] [--repeats N]
        [--threads N] [--batch 64] [--json out.json] [--profile MODEL]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import ForeignLoad, geomean, interleaved, machine_info, set_threads  # noqa: E402
from _twins import max_param_gap, torch_twin  # noqa: E402

# name: (builder keywords, input sample shape, default repeats, warm-up steps, block, memory steps)
# Repeats are sized for a whole run of ~2-4 minutes on 2 cores (steps of ~5 ms and ~50-200 ms).
MODELS = {
    "lenet5": (("lenet5", {}), (1, 28, 28), 200, 20, 10, 30),
    "resnet16": (("resnet_small", {"width": 16}), (3, 32, 32), 30, 3, 3, 6),
    "resnet32": (("resnet_small", {"width": 32}), (3, 32, 32), 30, 3, 3, 6),
    "vgg32": (("vgg_small", {"width": 32}), (3, 32, 32), 30, 3, 3, 6),
}
LR, MOMENTUM, WEIGHT_DECAY = 0.01, 0.9, 5e-4


def build(name: str, seed: int = 0):
    from rot180 import models

    (builder, kw), _, *_ = MODELS[name]
    return getattr(models, builder)(seed=seed, **kw)


def batch_of(name: str, batch: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return (rng.standard_normal((batch, *MODELS[name][1]), dtype=np.float32),
            rng.integers(0, 10, batch))


def make_ours(model, x: np.ndarray, y: np.ndarray):
    """Our step on ``model``: returns ``(step, loss, optimizer)``; ``step()`` returns the loss."""
    from rot180.nn import SoftmaxCrossEntropy
    from rot180.optim import SGD

    loss = SoftmaxCrossEntropy()
    opt = SGD(model.parameters(), lr=LR, momentum=MOMENTUM, weight_decay=WEIGHT_DECAY)

    def step() -> float:
        value = loss.forward(model.forward(x), y)
        opt.zero_grad()
        model.backward_params(loss.backward())   # as PyTorch: no gradient for the data
        opt.step()
        return float(value)

    return step, loss, opt


def make_torch(twin, x: np.ndarray, y: np.ndarray):
    """The same step on the torch twin: ``(step, loss, optimizer, x, y)`` (torch tensors)."""
    import torch

    loss = torch.nn.CrossEntropyLoss()
    opt = torch.optim.SGD(twin.parameters(), lr=LR, momentum=MOMENTUM,
                          weight_decay=WEIGHT_DECAY)
    xt, yt = torch.from_numpy(x.copy()), torch.from_numpy(y.copy())

    def step() -> float:
        opt.zero_grad()
        value = loss(twin(xt), yt)
        value.backward()
        opt.step()
        return value.item()

    return step, loss, opt, xt, yt


def recorded(fn, samples: list[float]):
    """``fn`` that also appends each call's wall time to ``samples`` (``interleaved`` reports
    medians only; the fastest step is kept too: it is the figure least moved by other load)."""
    def call() -> object:
        t0 = time.perf_counter()
        out = fn()
        samples.append(time.perf_counter() - t0)
        return out

    return call


def guarded_pair(name: str, batch: int):
    """Both steps on equal weights, checked: the first step's losses and, after 3 steps, every
    parameter and buffer. Returns the two steps and the figures (printed, not asserted)."""
    model = build(name)
    x, y = batch_of(name, batch)
    twin = torch_twin(model)
    ours, theirs = make_ours(model, x, y)[0], make_torch(twin, x, y)[0]
    a, b = ours(), theirs()
    loss_gap = abs(a - b) / max(abs(b), 1e-12)
    for _ in range(2):
        ours(), theirs()
    gap, where = max_param_gap(model, twin)
    print(f"  {name}: first loss {a:.6f} vs torch {b:.6f} (relative gap {loss_gap:.1e}); "
          f"after 3 steps the largest parameter gap {gap:.1e} ({where})"
          + ("" if loss_gap < 1e-4 and gap < 1e-3 else "  <-- LARGER THAN EXPECTED"))
    return ours, theirs, loss_gap, gap


# -- peak memory (child processes) ------------------------------------------------------------

def _status_kib(field: str) -> int:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise RuntimeError(f"{field} not in /proc/self/status")


def peak_growth_mib(lib: str, name: str, batch: int, threads: int) -> float:
    """Run in a child: how far the resident set grows above its size once everything is set up,
    at its peak over the model's memory steps (MiB). Linux: the peak (VmHWM) is reset through
    /proc/self/clear_refs, so what imports and set-up allocated earlier does not count."""
    set_threads(threads)
    import torch  # noqa: F401  both children carry the same imports

    model = build(name)
    x, y = batch_of(name, batch)
    if lib == "ours":
        step = make_ours(model, x, y)[0]
    else:
        step = make_torch(torch_twin(model), x, y)[0]
        del model
    with open("/proc/self/clear_refs", "w") as fh:
        fh.write("5")
    base = _status_kib("VmRSS")
    for _ in range(MODELS[name][5]):
        step()
    return (_status_kib("VmHWM") - base) / 1024


def child_peak(lib: str, name: str, batch: int, threads: int) -> float:
    out = subprocess.run(
        [sys.executable, __file__, "--memory-child", lib, "--models", name, "--batch",
         str(batch), "--threads", str(threads)], check=True, capture_output=True, text=True)
    return float(out.stdout.strip().splitlines()[-1])


# -- per-layer profile ------------------------------------------------------------------------

def _describe(m) -> str:
    kind = type(m).__name__
    if kind == "Conv2d":
        k, s = m.kernel_size, m.stride[0]
        return f"Conv2d {m.in_channels}->{m.out_channels} {k[0]}x{k[1]}" + (
            f" /{s}" if s != 1 else "")
    if kind == "Residual":
        first = next(c for _, c in m.named_modules() if type(c).__name__ == "Conv2d")
        return f"Residual {first.in_channels}->{first.out_channels}" + (
            f" /{first.stride[0]}" if first.stride[0] != 1 else "")
    if kind == "BatchNorm2d":
        return f"BatchNorm2d {m.num_features}"
    if kind == "Linear":
        return f"Linear {m.in_features}->{m.out_features}"
    return kind


def profile(name: str, batch: int, repeats: int) -> None:
    """Median forward / backward time of every top-level layer, ours beside torch's, then
    torch.profiler's top operators. Both sides alternate step by step, with a pause between
    (the other library's spinning worker threads go to sleep)."""
    import torch

    model = build(name)
    x, y = batch_of(name, batch)
    twin = torch_twin(model)
    _, loss, opt = make_ours(model, x, y)
    _, tloss, topt, xt, yt = make_torch(twin, x, y)
    ours_layers, torch_layers = list(model), list(twin)
    n = len(ours_layers)
    # rows 0..n-1 the layers, n the loss, n+1 the optimizer (zero_grad + step); [fwd, bwd] each
    times = {lib: [[[], []] for _ in range(n + 2)] for lib in ("ours", "torch")}
    now = time.perf_counter

    def ours_step() -> None:
        t, h = times["ours"], x
        for i, m in enumerate(ours_layers):
            t0 = now()
            h = m.forward(h)
            t[i][0].append(now() - t0)
        t0 = now()
        loss.forward(h, y)
        t1 = now()
        opt.zero_grad()
        t2 = now()
        dy = loss.backward()
        t3 = now()
        t[n][0].append(t1 - t0)
        t[n][1].append(t3 - t2)
        for i in reversed(range(n)):
            t0 = now()
            if i:
                dy = ours_layers[i].backward(dy)
            else:
                ours_layers[0].backward_params(dy)
            t[i][1].append(now() - t0)
        t0 = now()
        opt.step()
        t[n + 1][1].append(now() - t0 + t2 - t1)

    def torch_step() -> None:
        t, h, ready = times["torch"], xt, [0.0] * n
        t0 = now()
        topt.zero_grad()
        t_zero = now() - t0
        for i, m in enumerate(torch_layers):
            t0 = now()
            h = m(h)
            t[i][0].append(now() - t0)
            # fires when the gradient of layer i's output is ready: layer i's backward starts
            h.register_hook(lambda g, i=i: ready.__setitem__(i, now()))
        t0 = now()
        value = tloss(h, yt)
        t[n][0].append(now() - t0)
        start = now()
        value.backward()
        end = now()
        t[n][1].append(ready[n - 1] - start)
        for i in range(n):   # layer i's backward ends when layer i-1's output gradient is ready
            t[i][1].append((ready[i - 1] if i else end) - ready[i])
        t0 = now()
        topt.step()
        t[n + 1][1].append(now() - t0 + t_zero)

    for _ in range(3):
        ours_step(), torch_step()
    for lib in times:
        times[lib] = [[[], []] for _ in range(n + 2)]
    for _ in range(repeats):
        time.sleep(0.05)
        ours_step()
        time.sleep(0.05)
        torch_step()

    def ms(lib: str, row: int, k: int) -> float:
        v = times[lib][row][k]
        return float(np.median(v)) * 1e3 if v else 0.0

    names = [f"{i:>2} {_describe(m)}" for i, m in enumerate(ours_layers)]
    names += ["   loss", "   optimizer"]
    print(f"\nprofile of {name}, batch {batch}: medians over {repeats} steps (ms)")
    print(f"  {'layer':<26} {'ours fwd':>9} {'torch fwd':>9} {'ours bwd':>9} {'torch bwd':>9}"
          f" {'ratio':>6}")
    totals = {"ours": 0.0, "torch": 0.0}
    for row, label in enumerate(names):
        o, t = ms("ours", row, 0) + ms("ours", row, 1), ms("torch", row, 0) + ms("torch", row, 1)
        totals["ours"] += o
        totals["torch"] += t
        print(f"  {label:<26} {ms('ours', row, 0):9.2f} {ms('torch', row, 0):9.2f} "
              f"{ms('ours', row, 1):9.2f} {ms('torch', row, 1):9.2f} {o / max(t, 1e-9):6.2f}")
    print(f"  {'sum of the medians':<26} {totals['ours']:9.2f} {totals['torch']:9.2f}"
          f" {'':>19} {totals['ours'] / totals['torch']:6.2f}")

    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
        for _ in range(10):
            torch_step()
    print(f"\ntorch.profiler, {name}, 10 steps: top 15 operators by self CPU time")
    print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=15))


# -- main -------------------------------------------------------------------------------------

def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--models", default=",".join(MODELS),
                   help=f"comma-separated, of {', '.join(MODELS)} (default: all)")
    p.add_argument("--repeats", type=int, default=None,
                   help="timed steps per library and model (default: 200 for lenet5, 30 for "
                        "the others)")
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--json", default=None, help="write every row and the machine's facts here")
    p.add_argument("--profile", default=None, choices=tuple(MODELS),
                   help="also print per-layer times and torch.profiler's table for this model")
    p.add_argument("--memory-child", choices=("ours", "torch"), help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    names = [s.strip() for s in args.models.split(",") if s.strip()]
    unknown = [s for s in names if s not in MODELS]
    if unknown or not names:
        p.error(f"--models: unknown {unknown or 'empty list'}; choose from {', '.join(MODELS)} "
                "(e.g. --models resnet16,vgg32)")

    threads = set_threads(args.threads)
    if args.memory_child:
        print(peak_growth_mib(args.memory_child, names[0], args.batch, threads))
        return 0

    info = machine_info(threads)
    print(f"training steps, batch {args.batch}, float32, {threads} thread(s); {info['blas']} "
          f"({info['blas_kernel']}), torch {info['torch']}, {info['cpu']}")
    print("guard (same weights, same batch):")
    rows = []
    for name in names:
        ours, theirs, loss_gap, param_gap = guarded_pair(name, args.batch)
        _, _, repeats, warmup, block, _ = MODELS[name]
        repeats = args.repeats or repeats
        load = ForeignLoad()
        s_ours: list[float] = []
        s_torch: list[float] = []
        t_ours, t_torch = interleaved([recorded(ours, s_ours), recorded(theirs, s_torch)],
                                      repeats=repeats, warmup=warmup, block=block, pause=0.05)
        best = min(s_ours[warmup:]) / min(s_torch[warmup:])
        foreign = load.fraction()
        m_ours = child_peak("ours", name, args.batch, threads)
        m_torch = child_peak("torch", name, args.batch, threads)
        rows.append({"model": name, "repeats": repeats, "ours_ms": t_ours * 1e3,
                     "torch_ms": t_torch * 1e3, "ratio": t_ours / t_torch,
                     "best_ratio": best, "ours_peak_mib": m_ours, "torch_peak_mib": m_torch,
                     "peak_ratio": m_ours / max(m_torch, 1e-9), "loss_gap": loss_gap,
                     "param_gap": param_gap, "foreign_load": foreign})

    g_time, g_best, g_peak = (geomean([max(r[k], 1e-9) for r in rows])
                              for k in ("ratio", "best_ratio", "peak_ratio"))
    print(f"\n  {'model':<9} {'ours ms':>8} {'torch ms':>8} {'ratio':>6} {'best':>5}   "
          f"{'ours MiB':>8} {'torch MiB':>9} {'ratio':>6}   other load")
    for r in rows:
        load = "?" if r["foreign_load"] is None else f"{r['foreign_load']:.0%}"
        print(f"  {r['model']:<9} {r['ours_ms']:8.2f} {r['torch_ms']:8.2f} {r['ratio']:6.2f} "
              f"{r['best_ratio']:5.2f}   {r['ours_peak_mib']:8.1f} {r['torch_peak_mib']:9.1f} "
              f"{r['peak_ratio']:6.2f}   {load:>10}")
    print(f"  {'geomean':<9} {'':>17} {g_time:6.2f} {g_best:5.2f}   {'':>18} {g_peak:6.2f}")
    print("  (time: median step; best: the fastest steps' ratio; memory: peak RSS growth over a "
          "few steps,\n   in child processes; other load: other processes' share of the machine "
          "while timing)")
    busy = [r["model"] for r in rows if (r["foreign_load"] or 0) > 0.2]
    if busy:
        print(f"  note: other processes used over 20% of the machine while timing {busy}"
              + ("; torch's OpenMP threads suffer more from lost cores than ours, so those "
                 "medians lean our way (the best column less so)" if threads > 1 else "")
              + ". Rerun on a quiet machine for figures to record.")
    if args.json:
        Path(args.json).write_text(json.dumps(
            {"machine": info, "batch": args.batch, "rows": rows,
             "geomean_ratio": g_time, "geomean_best_ratio": g_best,
             "geomean_peak_ratio": g_peak}, indent=2))
    if args.profile:
        profile(args.profile, args.batch, repeats=20 if args.profile != "lenet5" else 100)
    return 0


if __name__ == "__main__":
    sys.exit(main())
