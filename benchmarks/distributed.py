"""Data-parallel training steps on MPI: samples/s, the share of a step spent waiting on the
gradient reduction, and an alpha-beta model of that reduction fitted to measured times and
extrapolated to 8-64 ranks.

What is timed. One training step as ``rot180 train`` runs it on a rank (float32, SGD momentum
0.9, BatchNorm in training mode): forward, loss, backward with the gradient buckets
(:mod:`rot180.train._buckets`: each bucket's reduction starts as its layers' backward finishes),
the wait for the rest, the optimizer step. Per-rank batch ``b``; ``N`` ranks at one BLAS thread
each, launched with the venv's ``mpiexec -n N``, against one process with batch ``N b`` on ``N``
threads (the same cores). Samples/s = ``N b`` / median step time (the slowest rank's).

Communication wait: the time :meth:`GradientBuckets.finish` blocks (after the backward pass),
as a share of the step; what the backward pass already overlapped is not in it.

The alpha-beta model. The bucket reduction is an ``Ialltoall`` (each rank receives its ``1/N``
chunk from every rank), a rank-ordered sum, then an ``Iallgather``: ``2 (N-1)`` messages of
``n / N`` bytes per rank, so ``t(N, n) = 2 (N-1) alpha + 2 (N-1)/N n beta`` (the sum's
``(N-1)/N n`` flops folded into ``beta``). ``alpha`` and ``beta`` are fitted (least squares)
to the times measured at ``N = 2`` for bucket sizes 4 KiB - 16 MiB; the fit is checked against
``N = 3`` where the machine allows (oversubscribed on 2 cores: an upper bound), then evaluated
for the model's buckets at 8-64 ranks. On one machine the messages go through shared memory, so
``alpha`` and ``beta`` are those of shared memory, not of a network: rerun it on the cluster
(``srun -n 2 python benchmarks/distributed.py --worker comm``) for its figures.

    python benchmarks/distributed.py [--model resnet_small] [--batch 32] [--steps 12]
        [--ranks 1,2] [--bucket-kib 4096] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve()
MPIEXEC = Path(sys.executable).parent / "mpiexec"
SIZES = [2**k for k in range(12, 25, 2)]          # bucket bytes: 4 KiB .. 16 MiB
PROJECTED = (8, 16, 32, 64)
SHAPES = {"lenet5": (1, 28, 28), "resnet_small": (3, 32, 32), "vgg_small": (3, 32, 32)}


# -- workers (one process, or every rank of an mpiexec launch) ---------------------------------

def step_worker(model_name: str, batch: int, steps: int, bucket_bytes: int) -> dict:
    from rot180 import optim
    from rot180.models import build_model
    from rot180.nn import SoftmaxCrossEntropy
    from rot180.train import distributed as D
    from rot180.train._buckets import GradientBuckets

    w = D.world()
    model = build_model(model_name, seed=0, num_classes=10, in_channels=SHAPES[model_name][0])
    loss = SoftmaxCrossEntropy()
    opt = optim.SGD(list(model.parameters()), lr=0.01, momentum=0.9, weight_decay=5e-4)
    rng = np.random.default_rng(w.rank)
    x = rng.normal(size=(batch, *SHAPES[model_name])).astype(np.float32)
    y = rng.integers(0, 10, batch)
    grads = GradientBuckets(model, w, bucket_bytes) if w.size > 1 else None
    times, waits = [], []
    for i in range(steps + 2):                     # 2 warm-up steps
        t0 = time.perf_counter()
        wait0 = grads.wait_seconds if grads else 0.0
        loss.forward(model.forward(x), y)
        opt.zero_grad()
        if grads:
            grads.begin()
        model.backward_params(loss.backward())
        if grads:
            grads.finish()
        opt.step()
        if i >= 2:
            times.append(time.perf_counter() - t0)
            waits.append((grads.wait_seconds if grads else 0.0) - wait0)
    mine = np.array([np.median(times), np.median(np.array(waits) / np.array(times))])
    every = [mine] if w.size == 1 else w.allgather_object(mine.tolist())
    slowest = max(every, key=lambda r: r[0])
    buckets = [] if grads is None else [int(b.send.nbytes) for b in grads.buckets]
    return {"ranks": w.size, "batch": batch, "step_s": float(slowest[0]),
            "wait_share": float(max(r[1] for r in every)),
            "samples_per_s": w.size * batch / float(slowest[0]), "buckets": buckets}


def comm_worker(repeats: int = 15) -> dict:
    """Median time of one bucket reduction (as GradientBuckets does it) per size."""
    from rot180.nn import Parameter
    from rot180.train import distributed as D
    from rot180.train._buckets import _Bucket

    w = D.world()
    out = {}
    for nbytes in SIZES:
        p = Parameter(np.ones(nbytes // 4, np.float32))
        b = _Bucket([p], w.size)
        times = []
        for i in range(repeats + 2):
            w.comm.Barrier()
            t0 = time.perf_counter()
            b.pack()
            req = w.grad_comm.Ialltoall(b.send, b.recv)
            req.Wait()
            b.average(w.size)
            w.gather_comm.Iallgather(b.total, b.send).Wait()
            b.unpack()
            if i >= 2:
                times.append(time.perf_counter() - t0)
        every = w.allgather_object(float(np.median(times)))
        out[nbytes] = max(every)
    return {"ranks": w.size, "times": out}


# -- the driver -----------------------------------------------------------------------------------

def launch(ranks: int, threads: int, args: list[str], timeout: float = 600) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PMI_", "OMPI_", "SLURM_"))}
    env.update(OPENBLAS_NUM_THREADS=str(threads), OMP_NUM_THREADS=str(threads),
               MKL_NUM_THREADS=str(threads))
    cmd = [sys.executable, str(HERE), *args]
    if ranks > 1:
        cmd = [str(MPIEXEC), "-n", str(ranks), *cmd]
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def fit_alpha_beta(times: dict[int, float], ranks: int) -> tuple[float, float]:
    """Least squares of ``t = 2 (N-1) alpha + 2 (N-1)/N n beta`` over the measured sizes, in
    relative terms (each row divided by its time: a 4 KiB bucket weighs as much as 16 MiB)."""
    n = np.array(sorted(times), float)
    t = np.array([times[k] for k in sorted(times)])
    design = np.stack([np.full_like(n, 2 * (ranks - 1)), 2 * (ranks - 1) / ranks * n], axis=1)
    (alpha, beta), *_ = np.linalg.lstsq(design / t[:, None], np.ones_like(t), rcond=None)
    return float(alpha), float(beta)


def model_time(alpha: float, beta: float, ranks: int, nbytes: float) -> float:
    return 2 * (ranks - 1) * alpha + 2 * (ranks - 1) / ranks * nbytes * beta


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--worker", choices=("step", "comm"))
    ap.add_argument("--model", default="resnet_small", choices=sorted(SHAPES))
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--bucket-kib", type=int, default=4096)
    ap.add_argument("--ranks", default=None, help="default: 1,2 (and 4 with 4 cores)")
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    if args.worker == "step":
        result = step_worker(args.model, args.batch, args.steps, args.bucket_kib * 1024)
    elif args.worker == "comm":
        result = comm_worker()
    if args.worker:
        from rot180.train import distributed as D
        if D.world().is_root:
            print(json.dumps(result))
        return

    cores = os.cpu_count() or 1
    ranks = ([int(r) for r in args.ranks.split(",")] if args.ranks else
             [r for r in (1, 2, 4) if r <= cores])
    common = ["--model", args.model, "--steps", str(args.steps), "--bucket-kib",
              str(args.bucket_kib)]
    rows = []
    for n in ranks:
        mpi = launch(n, 1, [*common, "--batch", str(args.batch), "--worker", "step"])
        one = launch(1, n, [*common, "--batch", str(n * args.batch), "--worker", "step"])
        rows.append((n, mpi, one))
    print(f"{args.model}, float32, per-rank batch {args.batch}, median of {args.steps} steps, "
          f"buckets of {args.bucket_kib} KiB, {cores} cores")
    print("| ranks x 1 thread | samples/s | comm wait | one process, same threads, batch N b |"
          " ratio |")
    print("|---|---|---|---|---|")
    for n, mpi, one in rows:
        print(f"| {n} | {mpi['samples_per_s']:.0f} | {mpi['wait_share']:.1%} | "
              f"{one['samples_per_s']:.0f} ({n} threads) | "
              f"{mpi['samples_per_s'] / one['samples_per_s']:.2f} |")

    comm2 = launch(2, 1, ["--worker", "comm"])["times"]
    comm2 = {int(k): v for k, v in comm2.items()}
    alpha, beta = fit_alpha_beta(comm2, 2)
    comm3 = {int(k): v for k, v in launch(3, 1, ["--worker", "comm"])["times"].items()}
    print(f"\nbucket reduction (Ialltoall + ordered sum + Iallgather), measured; fit at 2 ranks:"
          f" alpha {alpha * 1e6:.1f} us, beta {beta * 1e9:.3f} ns/byte "
          f"({1 / beta / 1e9:.2f} GB/s)")
    print("| bucket | 2 ranks measured | model | 3 ranks measured | model |")
    print("|---|---|---|---|---|")
    for nbytes in sorted(comm2):
        print(f"| {nbytes / 2**10:.0f} KiB | {comm2[nbytes] * 1e3:.3f} ms | "
              f"{model_time(alpha, beta, 2, nbytes) * 1e3:.3f} ms | "
              f"{comm3[nbytes] * 1e3:.3f} ms | {model_time(alpha, beta, 3, nbytes) * 1e3:.3f} ms |")
    buckets = next((mpi["buckets"] for n, mpi, _ in rows if mpi["buckets"]), [])
    step = next((mpi["step_s"] for n, mpi, _ in rows if n > 1), rows[0][1]["step_s"])
    print(f"\nprojected, {args.model}'s buckets {[round(b / 2**20, 2) for b in buckets]} MiB, "
          f"per step (no overlap counted), against the measured {step * 1e3:.0f} ms step:")
    print("| ranks | reduction per step | share of the step |")
    print("|---|---|---|")
    projected = {}
    for n in PROJECTED:
        t = sum(model_time(alpha, beta, n, b) for b in buckets)
        projected[n] = t
        print(f"| {n} | {t * 1e3:.2f} ms | {t / (step + t):.1%} |")
    if args.json:
        Path(args.json).write_text(json.dumps({
            "rows": [{"ranks": n, "mpi": m, "one_process": o} for n, m, o in rows],
            "comm_2": comm2, "comm_3": comm3, "alpha_s": alpha, "beta_s_per_byte": beta,
            "projected_s": projected}, indent=1))


if __name__ == "__main__":
    main()
