"""Data-parallel training under ``mpiexec -n 2`` and ``-n 3`` on localhost (MPICH's hydra from
the ``mpich`` wheel; ``-n 3`` oversubscribes a 2-core machine, which hydra allows).

Each test launches the venv's ``mpiexec`` with a timeout. Where CI is set, a missing mpiexec or
mpi4py is a failure, never a skip.

* Equivalence, against each definition: N ranks with batch b equal one process with batch
  ``N b`` (float64, 20 steps, loss and weights within 1e-12 relative) where the ranks' sums make
  the single batch: lenet5 (no BatchNorm), resnet_small with ``--sync-bn``; resnet_small with
  per-rank statistics equals one process that normalises each rank's sub-batch on its own and
  averages the sub-batches' gradients (and keeps rank 0's running statistics), and differs from
  the ``N b`` run (the control that shows the comparison can fail).
* Bit-for-bit: two identical runs give identical bytes; SIGTERM to mpiexec writes the mid-epoch
  checkpoint once and prints the resume command, and resuming gives the uninterrupted bytes.
* Faults: a rank that raises, or dies, stops the whole launch with a non-zero status, and the
  message names the rank; ranks started with different settings refuse, naming the setting.
"""

from __future__ import annotations

import importlib.util
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from rot180.train.checkpoint import load_checkpoint
from rot180.train.config import TrainConfig
from rot180.train.trainer import Trainer

HERE = Path(__file__).parent
MPIEXEC = Path(sys.executable).parent / "mpiexec"
RTOL = 1e-12

CASES = {   # model:data:val_fraction:per-rank batch:bn, 20 global batches of training images
    2: ["lenet5:mnist5k:0.1:90:rank", "resnet_small:digits8x8:0.11:32:sync",
        "resnet_small:digits8x8:0.11:32:rank"],
    3: ["lenet5:mnist5k:0.1:60:rank", "resnet_small:digits8x8:0.3324:16:sync",
        "resnet_small:digits8x8:0.3324:16:rank"],
}


def need_mpi() -> None:
    missing = [what for what, ok in (
        (f"mpiexec ({MPIEXEC})", MPIEXEC.exists()),
        ("mpi4py", importlib.util.find_spec("mpi4py") is not None)) if not ok]
    if missing:
        message = (f"{' and '.join(missing)} missing: install the test extra "
                   "(pip install -e '.[test]' brings mpi4py and MPICH)")
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)


def env() -> dict[str, str]:
    out = {k: v for k, v in os.environ.items() if not k.startswith(("PMI_", "OMPI_", "SLURM_"))}
    out.update(OPENBLAS_NUM_THREADS="1", OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    return out


def mpiexec(n: int, *args: str | Path, cwd: Path, timeout: float = 120
            ) -> subprocess.CompletedProcess:
    need_mpi()
    return subprocess.run([str(MPIEXEC), "-n", str(n), sys.executable, *map(str, args)],
                          cwd=cwd, env=env(), capture_output=True, text=True, timeout=timeout)


def rot180(*args: str) -> list[str]:
    return ["-c", "import sys; from rot180.cli import main; sys.exit(main())", *args]


# -- equivalence --------------------------------------------------------------------------------

def one_process(case: str, ranks: int, out: Path) -> tuple[dict, dict]:
    """The definition, in this process: batch ``ranks * b``; with per-rank statistics each
    rank's sub-batch (positions ``r::ranks`` of the global batch) runs forward and backward on
    its own, the gradients are averaged, and rank 0's running statistics are kept."""
    model, data, val_fraction, batch, bn = case.split(":")
    cfg = TrainConfig(model=model, data=data, epochs=1, batch_size=ranks * int(batch),
                      dtype="float64", val_fraction=float(val_fraction), out=str(out))
    t = Trainer(cfg, progress=False, log=lambda _line: None)
    if bn == "sync" or model == "lenet5":
        r = t.train_epoch()
        return t.model.state_dict(), {"train_loss": r.train_loss, "val_loss": r.val_loss}
    t.model.train()
    total = seen = 0.0
    for x, y in t.loader:
        t.opt.zero_grad()
        for rank in range(ranks):
            logits = t.model.forward(x[rank::ranks])
            total += t.loss.forward(logits, y[rank::ranks]) * len(y[rank::ranks])
            t.model.backward_params(t.loss.backward())
            if rank == 0:
                kept = {(id(m), k): getattr(m, k).copy() for _, m in t.model.named_modules()
                        for k in m._buffers}
        for p in t.model.parameters():
            p.grad /= ranks
        for _, m in t.model.named_modules():
            for k in m._buffers:
                getattr(m, k)[...] = kept[id(m), k]
        t.opt.step()
        t.sched.step()
        seen += len(y)
    val_loss = t.evaluate(t.val_set)[0]
    return t.model.state_dict(), {"train_loss": total / seen, "val_loss": val_loss}


def relative(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.max(np.abs(a - b)) / max(np.max(np.abs(b)), 1e-300))


@pytest.mark.parametrize("ranks", [2, 3])
def test_ranks_equal_their_definition(tmp_path, ranks) -> None:
    done = mpiexec(ranks, HERE / "mpi_cases.py", tmp_path, *CASES[ranks], cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    for case in CASES[ranks]:
        ckpt = load_checkpoint(tmp_path / f"{case}.safetensors")
        state, losses = one_process(case, ranks, tmp_path / "single" / case.replace(":", "_"))
        assert ckpt.model_state.keys() == state.keys()
        worst = max(relative(ckpt.model_state[k], v) for k, v in state.items()
                    if v.dtype.kind == "f")
        assert worst <= RTOL, (case, worst)
        for k, v in state.items():
            if v.dtype.kind != "f":
                assert np.array_equal(ckpt.model_state[k], v), (case, k)
        for key, value in losses.items():
            assert abs(ckpt.meta[key] - value) <= RTOL * abs(value), (case, key)
    # The control: per-rank statistics are not the N b batch's (BatchNorm sees b samples).
    per_rank = next(c for c in CASES[ranks] if c.endswith(":rank") and "resnet" in c)
    ckpt = load_checkpoint(tmp_path / f"{per_rank}.safetensors")
    synced, _ = one_process(per_rank.replace(":rank", ":sync"), ranks, tmp_path / "control")
    assert max(relative(ckpt.model_state[k], v) for k, v in synced.items()
               if v.dtype.kind == "f") > 1e-6


# -- bit for bit, signals and resume ------------------------------------------------------------

TRAIN = ("train", "--model", "lenet5", "--data", "mnist5k", "--epochs", "3", "--batch-size",
         "4", "--schedule", "step", "--seed", "3")


def tensors(path: Path) -> dict[str, bytes]:
    return {k: v.tobytes() for k, v in load_checkpoint(path).model_state.items()}


def interrupt(cwd: Path, sig: signal.Signals, bar: str, *args: str) -> str:
    """Start ``mpiexec -n 2 rot180 TRAIN ARGS``, send ``sig`` to mpiexec as soon as rank 0's
    progress bar ``bar`` shows, and return its stderr once every rank has stopped (checking
    that it failed and printed the resume command once)."""
    proc = subprocess.Popen([str(MPIEXEC), "-n", "2", sys.executable, *rot180(*TRAIN, *args)],
                            cwd=cwd, env=env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            start_new_session=True)
    try:
        seen = b""
        deadline = time.monotonic() + 60
        while bar.encode() not in seen and time.monotonic() < deadline:
            chunk = os.read(proc.stderr.fileno(), 4096)
            if not chunk:
                break
            seen += chunk
        assert bar.encode() in seen, seen[-2000:]
        time.sleep(0.05)
        proc.send_signal(sig)
        _, rest = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    err = (seen + rest).decode(errors="replace")
    assert proc.returncode == 130, err[-2000:]
    assert err.count("resume with: ") == 1, err[-2000:]
    command = err.split("resume with: ")[1].splitlines()[0]
    assert command.startswith("mpiexec -n 2 ") and command.endswith("--resume")
    return err


def test_runs_repeat_bit_for_bit_and_signals_resume_exactly(tmp_path) -> None:
    need_mpi()
    for name in ("a", "b"):
        done = mpiexec(2, *rot180(*TRAIN, "--no-progress", "--out", name), cwd=tmp_path)
        assert done.returncode == 0, done.stderr[-3000:]
        assert done.stdout.count("epoch   3/3") == 1          # rank 0 alone prints
    whole = tensors(tmp_path / "a" / "last.safetensors")
    assert tensors(tmp_path / "b" / "last.safetensors") == whole

    err = interrupt(tmp_path, signal.SIGTERM, "epoch 2/3", "--out", "cut")
    ckpt = load_checkpoint(tmp_path / "cut" / "last.safetensors")
    assert ckpt.meta["partial_epoch"] is not None and ckpt.meta["world_size"] == 2
    assert "SIGTERM received: stopped at step" in err
    # The resumed run, stopped again (Ctrl-C this time) in its last epoch.
    err = interrupt(tmp_path, signal.SIGINT, "epoch 3/3", "--out", "cut", "--resume")
    assert "SIGINT received: stopped at step" in err
    assert load_checkpoint(tmp_path / "cut" / "last.safetensors").meta["epoch"] == 2

    done = mpiexec(2, *rot180(*TRAIN, "--no-progress", "--out", "cut", "--resume"),
                   cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    assert tensors(tmp_path / "cut" / "last.safetensors") == whole

    # Another number of ranks is refused, with the reason and the fix.
    done = mpiexec(3, *rot180(*TRAIN, "--no-progress", "--out", "cut", "--resume",
                              "--epochs", "3"), cwd=tmp_path, timeout=60)
    assert done.returncode == 2
    assert done.stderr.count("written by a run on 2 process(es)") == 1   # rank 0 says it
    assert "mpiexec -n 2" in done.stderr
    # A run directory that holds a run (found by rank 0 alone) stops every rank cleanly.
    done = mpiexec(2, *rot180(*TRAIN, "--no-progress", "--out", "cut"), cwd=tmp_path,
                   timeout=60)
    assert done.returncode == 2 and done.stderr.count("already holds a rot180 run") == 1


# -- faults -------------------------------------------------------------------------------------

SMALL = ("train", "--model", "resnet_small", "--data", "digits8x8", "--epochs", "2",
         "--batch-size", "16", "--no-progress")


@pytest.mark.parametrize("mode", ["raise", "exit"])
def test_a_failing_rank_stops_every_rank(tmp_path, mode) -> None:
    started = time.monotonic()
    done = mpiexec(2, HERE / "mpi_fault.py", mode, 1, 5, *SMALL, "--out", "run", cwd=tmp_path,
                   timeout=60)
    assert done.returncode != 0
    assert time.monotonic() - started < 60
    if mode == "raise":
        assert ("rot180: rank 1 of 2 failed: RuntimeError: injected failure at step 5"
                in done.stderr), done.stderr[-2000:]
        assert "MPI_Abort" in done.stderr


def test_ranks_that_disagree_refuse_to_start(tmp_path) -> None:
    need_mpi()
    words = [sys.executable, *rot180(*SMALL, "--out", "run")]
    done = subprocess.run([str(MPIEXEC), "-n", "1", *words, "--seed", "1", ":", "-n", "1",
                           *words, "--seed", "2"], cwd=tmp_path, env=env(),
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 2, done.stderr[-2000:]
    assert "the 2 ranks disagree on setting seed (rank 0: 1; rank 1: 2)" in done.stderr
    assert done.stderr.count("disagree") == 1      # rank 0 alone says it
    assert not (tmp_path / "run" / "last.safetensors").exists()
