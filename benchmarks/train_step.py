"""A full LeNet-5 training step, rot180 against PyTorch CPU: time and peak memory.

One step at batch 64 is forward, softmax cross-entropy, backward and an SGD-with-momentum
update. Both sides start from the same weights and see the same batch. Time is measured in one
process, interleaved in blocks (see ``_common.interleaved``), with the same thread count for
numpy's BLAS and torch. Peak memory is measured in two child processes (one per library, the
same script): the growth of the peak resident set size over 30 steps, after imports, weights and
data are in place, so it counts what the step itself allocates (activations, caches, gradients,
buffers).

    python benchmarks/train_step.py [--repeats 200] [--threads N] [--batch 64]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import ForeignLoad, interleaved, machine_info, set_threads  # noqa: E402


def make_ours(batch: int, seed: int = 0):
    from rot180.models import lenet5
    from rot180.nn import SoftmaxCrossEntropy
    from rot180.optim import SGD

    model = lenet5(seed=seed)
    loss = SoftmaxCrossEntropy()
    opt = SGD(model.parameters(), lr=0.01, momentum=0.9, weight_decay=5e-4)
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((batch, 1, 28, 28), dtype=np.float32)
    y = rng.integers(0, 10, batch)

    def step() -> float:
        logits = model.forward(x)
        value = loss.forward(logits, y)
        opt.zero_grad()
        model.backward_params(loss.backward())   # as PyTorch: no gradient for the data
        opt.step()
        return value

    return model, step


def make_torch(batch: int, state: dict | None = None, seed: int = 0):
    import torch
    from torch import nn

    model = nn.Sequential(
        nn.Conv2d(1, 6, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(6, 16, 5), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(),
        nn.Linear(400, 120), nn.ReLU(), nn.Linear(120, 84), nn.ReLU(), nn.Linear(84, 10))
    if state is not None:
        model.load_state_dict({k: torch.from_numpy(v.copy()) for k, v in state.items()})
    loss = nn.CrossEntropyLoss()
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, weight_decay=5e-4)
    rng = np.random.default_rng(seed)
    x = torch.from_numpy(rng.standard_normal((batch, 1, 28, 28), dtype=np.float32))
    y = torch.from_numpy(rng.integers(0, 10, batch))

    def step() -> float:
        opt.zero_grad()
        value = loss(model(x), y)
        value.backward()
        opt.step()
        return value.item()

    return model, step


def _status_kib(field: str) -> int:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise RuntimeError(f"{field} not in /proc/self/status")


def peak_growth_mib(lib: str, batch: int, steps: int, threads: int) -> float:
    """Run in a child: how far the resident set grows above its size once everything is set up,
    at its peak over ``steps`` steps (MiB). Linux: the peak (VmHWM) is reset through
    /proc/self/clear_refs, so what imports allocated earlier does not count."""
    set_threads(threads)
    import torch  # noqa: F401  both children carry the same imports

    _, step = make_ours(batch) if lib == "ours" else make_torch(batch)
    with open("/proc/self/clear_refs", "w") as fh:
        fh.write("5")
    base = _status_kib("VmRSS")
    for _ in range(steps):
        step()
    return (_status_kib("VmHWM") - base) / 1024


def child_peak(lib: str, batch: int, threads: int) -> float:
    out = subprocess.run(
        [sys.executable, __file__, "--memory-child", lib, "--batch", str(batch),
         "--threads", str(threads)], check=True, capture_output=True, text=True)
    return float(out.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--repeats", type=int, default=200)
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--json", default=None)
    p.add_argument("--memory-child", choices=("ours", "torch"), help=argparse.SUPPRESS)
    args = p.parse_args(argv)

    threads = set_threads(args.threads)
    if args.memory_child:
        print(peak_growth_mib(args.memory_child, args.batch, 30, threads))
        return 0

    model, ours = make_ours(args.batch)
    _, theirs = make_torch(args.batch, model.state_dict())
    assert abs(ours() - theirs()) < 1e-4, "the two steps must compute the same loss"
    load = ForeignLoad()
    t_ours, t_torch = interleaved([ours, theirs], repeats=args.repeats, warmup=20, block=10,
                                  pause=0.05)
    foreign = load.fraction()
    m_ours = child_peak("ours", args.batch, threads)
    m_torch = child_peak("torch", args.batch, threads)

    info = machine_info(threads)
    print(f"lenet5 training step, batch {args.batch}, float32, {threads} thread(s); "
          f"{info['blas']} ({info['blas_kernel']}), torch {info['torch']}")
    print(f"  time  rot180 {t_ours * 1e3:7.2f} ms   torch {t_torch * 1e3:7.2f} ms   "
          f"ratio {t_ours / t_torch:5.2f}")
    print(f"  peak memory growth  rot180 {m_ours:6.1f} MiB   torch {m_torch:6.1f} MiB   "
          f"ratio {m_ours / max(m_torch, 1e-9):5.2f}")
    if foreign is not None:
        print(f"  other processes used {foreign:.0%} of the machine meanwhile")
    if args.json:
        Path(args.json).write_text(json.dumps({
            "machine": info, "ours_ms": t_ours * 1e3, "torch_ms": t_torch * 1e3,
            "ratio": t_ours / t_torch, "ours_peak_mib": m_ours, "torch_peak_mib": m_torch,
            "foreign_load": foreign}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
