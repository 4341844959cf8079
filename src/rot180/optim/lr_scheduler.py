"""Learning-rate schedulers: step decay, cosine annealing, linear warm-up, and their sequence.

Each scheduler follows ``torch.optim.lr_scheduler`` value for value: creating one records
``group["initial_lr"]`` and sets the learning rate of step 0; every :meth:`LRScheduler.step`
(called once per epoch or iteration, *after* ``optimizer.step()``) moves to the next value.
Like PyTorch, the sequences are computed *recursively* from the current ``group["lr"]`` (so they
compose with other changes to the rate); the closed forms in the docstrings agree with them up
to rounding. A sequence is switched in by :class:`SequentialLR` through the closed form at the
milestone, as in PyTorch.

``state_dict()`` is plain JSON (ints, floats, lists, dicts). To resume, create the optimizer and
the scheduler as at the start, then load the optimizer's state and then the scheduler's.
"""

from __future__ import annotations

import math
from bisect import bisect_right
from collections.abc import Mapping, Sequence
from typing import Any

from ..functional import _validation as check
from .optimizer import Optimizer

# A saved last_epoch is -1 before the first step.
_LOAD_FIX = "Pass what state_dict() returned."

__all__ = [
    "CosineAnnealingLR",
    "LRScheduler",
    "LinearWarmup",
    "SequentialLR",
    "StepLR",
    "warmup_cosine",
]


class LRScheduler:
    """Base class: subclasses give the recursive rule (:meth:`_get_lr`) and the closed form.

    Attributes
    ----------
    last_epoch
        Index of the current step: 0 after creation, ``k`` after ``k`` calls to :meth:`step`.
    base_lrs
        Each group's ``initial_lr``.
    """

    #: names of the constructor's hyperparameters, saved in ``state_dict``
    _hyper: tuple[str, ...] = ()

    def __init__(self, optimizer: Optimizer) -> None:
        if not isinstance(optimizer, Optimizer):
            raise TypeError(
                f"{type(optimizer).__name__} is not an Optimizer. Pass a rot180.optim optimizer, "
                "e.g. SGD(model.parameters(), lr=0.1)."
            )
        self.optimizer = optimizer
        for group in optimizer.param_groups:
            group.setdefault("initial_lr", group["lr"])
        self.base_lrs: list[float] = [g["initial_lr"] for g in optimizer.param_groups]
        self.last_epoch = -1
        self._is_initial = False
        self._initial_step()

    def _initial_step(self) -> None:
        self._step_count = 0
        self._is_initial = True
        try:
            self.step()
        finally:
            self._is_initial = False

    def step(self) -> None:
        """Advance one step and write the new learning rates into the optimizer's groups."""
        self._step_count += 1
        self._update_lr()

    def _update_lr(self, epoch: int | None = None) -> None:
        if epoch is None:
            self.last_epoch += 1
            values = self._get_lr()
        else:
            self.last_epoch = epoch
            values = self._closed_form_lr()
        for group, lr in zip(self.optimizer.param_groups, values, strict=True):
            group["lr"] = lr
        self._last_lr = [g["lr"] for g in self.optimizer.param_groups]

    def get_last_lr(self) -> list[float]:
        """The learning rate of each param group, as last set by this scheduler."""
        return list(self._last_lr)

    def _current(self) -> list[float]:
        return [g["lr"] for g in self.optimizer.param_groups]

    def _get_lr(self) -> list[float]:
        raise NotImplementedError

    def _closed_form_lr(self) -> list[float]:
        raise NotImplementedError

    def _set_hyper(self, **values: Any) -> None:
        raise NotImplementedError

    # -- state -------------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        """JSON-serialisable state: hyperparameters, step counters, base and last rates."""
        out: dict[str, Any] = {h: getattr(self, h) for h in self._hyper}
        out.update(last_epoch=self.last_epoch, _step_count=self._step_count,
                   base_lrs=list(self.base_lrs), _last_lr=list(self._last_lr))
        return out

    def load_state_dict(self, state_dict: Mapping[str, Any]) -> None:
        """Restore what :meth:`state_dict` returned; the optimizer's rates are not touched."""
        keys = (*self._hyper, "last_epoch", "_step_count", "base_lrs", "_last_lr")
        _require_keys(self, state_dict, keys)
        self._set_hyper(**{h: state_dict[h] for h in self._hyper})
        n = len(self.optimizer.param_groups)
        for name in ("base_lrs", "_last_lr"):
            _require_list(self, state_dict, name)
            if len(state_dict[name]) != n:
                raise ValueError(
                    f"{type(self).__name__} state has {len(state_dict[name])} {name}, the "
                    f"optimizer {n} param groups. Load a state saved with the same optimizer."
                )
        where = type(self).__name__
        self.last_epoch = check.integer(state_dict["last_epoch"], "last_epoch", where, low=-1,
                                        fix=_LOAD_FIX, means=_LOAD_FIX)
        self._step_count = check.integer(state_dict["_step_count"], "_step_count", where, low=0,
                                         fix=_LOAD_FIX, means=_LOAD_FIX)
        self.base_lrs = [check.real(v, "base_lrs", where) for v in state_dict["base_lrs"]]
        self._last_lr = [check.real(v, "_last_lr", where) for v in state_dict["_last_lr"]]

    def __repr__(self) -> str:
        hyper = ", ".join(f"{h}={getattr(self, h)!r}" for h in self._hyper)
        return f"{type(self).__name__}({hyper}, last_epoch={self.last_epoch})"


class StepLR(LRScheduler):
    """Multiply the learning rate by ``gamma`` every ``step_size`` steps.

    Closed form: ``lr_t = base_lr * gamma ** (t // step_size)``.

    Parameters
    ----------
    optimizer
        The optimizer whose ``group["lr"]`` this scheduler sets.
    step_size
        Period of the decay, in steps, ``>= 1``.
    gamma
        Multiplicative factor, ``>= 0``.
    """

    _hyper = ("step_size", "gamma")

    def __init__(self, optimizer: Optimizer, step_size: int, *, gamma: float = 0.1) -> None:
        self._set_hyper(step_size=step_size, gamma=gamma)
        super().__init__(optimizer)

    def _set_hyper(self, *, step_size: object, gamma: object) -> None:
        self.step_size = check.integer(step_size, "step_size", type(self).__name__)
        self.gamma = check.real(gamma, "gamma", type(self).__name__, low=0, invalid="gamma value")

    def _get_lr(self) -> list[float]:
        if self.last_epoch == 0 or self.last_epoch % self.step_size != 0:
            return self._current()
        return [lr * self.gamma for lr in self._current()]

    def _closed_form_lr(self) -> list[float]:
        return [base * self.gamma ** (self.last_epoch // self.step_size) for base in self.base_lrs]


class CosineAnnealingLR(LRScheduler):
    r"""Cosine annealing from the base rate down to ``eta_min`` over ``T_max`` steps.

    Closed form: ``lr_t = eta_min + (base_lr - eta_min) * (1 + cos(pi * t / T_max)) / 2``;
    as in PyTorch, the rate is updated recursively,
    ``lr_t = eta_min + (lr_{t-1} - eta_min) * (1 + cos(pi t/T)) / (1 + cos(pi (t-1)/T))``,
    and keeps following the cosine (rising again) after ``T_max`` -- no restarts.

    Parameters
    ----------
    optimizer
        The optimizer whose ``group["lr"]`` this scheduler sets.
    T_max
        Half-period in steps, ``>= 1``.
    eta_min
        Lowest learning rate, ``>= 0``.
    """

    _hyper = ("T_max", "eta_min")

    def __init__(self, optimizer: Optimizer, T_max: int, *, eta_min: float = 0.0) -> None:
        self._set_hyper(T_max=T_max, eta_min=eta_min)
        super().__init__(optimizer)

    def _set_hyper(self, *, T_max: object, eta_min: object) -> None:
        self.T_max = check.integer(T_max, "T_max", type(self).__name__)
        self.eta_min = check.real(eta_min, "eta_min", type(self).__name__, low=0,
                                  invalid="eta_min value")

    def _get_lr(self) -> list[float]:
        if self._is_initial:
            return self._current()
        t, big_t, low = self.last_epoch, self.T_max, self.eta_min
        if (t - 1 - big_t) % (2 * big_t) == 0:
            # at the bottom of the cosine the ratio below is 0/0; step by the difference instead
            return [lr + (base - low) * (1 - math.cos(math.pi / big_t)) / 2
                    for lr, base in zip(self._current(), self.base_lrs, strict=True)]
        ratio = (1 + math.cos(math.pi * t / big_t)) / (1 + math.cos(math.pi * (t - 1) / big_t))
        return [ratio * (lr - low) + low for lr in self._current()]

    def _closed_form_lr(self) -> list[float]:
        return [self.eta_min + (base - self.eta_min)
                * (1 + math.cos(math.pi * self.last_epoch / self.T_max)) / 2
                for base in self.base_lrs]


class LinearWarmup(LRScheduler):
    """Scale the base rate by a factor growing linearly from ``start_factor`` to ``end_factor``.

    PyTorch's ``LinearLR``. Closed form:
    ``lr_t = base_lr * (start + (end - start) * min(t, total_iters) / total_iters)``: step 0 uses
    ``base_lr * start_factor``, step ``total_iters`` and later ``base_lr * end_factor``.

    Parameters
    ----------
    optimizer
        The optimizer whose ``group["lr"]`` this scheduler sets.
    start_factor
        Factor at step 0, in ``(0, 1]``.
    end_factor
        Factor from step ``total_iters`` on, in ``[0, 1]``; 1 for a warm-up.
    total_iters
        Length of the ramp in steps, ``>= 1``.
    """

    _hyper = ("start_factor", "end_factor", "total_iters")

    def __init__(self, optimizer: Optimizer, *, start_factor: float = 1.0 / 3,
                 end_factor: float = 1.0, total_iters: int = 5) -> None:
        self._set_hyper(start_factor=start_factor, end_factor=end_factor,
                        total_iters=total_iters)
        super().__init__(optimizer)

    def _set_hyper(self, *, start_factor: object, end_factor: object,
                   total_iters: object) -> None:
        start = check.real(start_factor, "start_factor", type(self).__name__)
        if not 0 < start <= 1:
            raise ValueError(
                "Starting multiplicative factor expected to be greater than 0 and less or equal "
                f"to 1, got start_factor={start}."
            )
        end = check.real(end_factor, "end_factor", type(self).__name__)
        if not 0 <= end <= 1:
            raise ValueError(
                f"Ending multiplicative factor expected to be between 0 and 1, got "
                f"end_factor={end}."
            )
        self.start_factor, self.end_factor = start, end
        self.total_iters = check.integer(total_iters, "total_iters", type(self).__name__)

    def _get_lr(self) -> list[float]:
        t, start, end = self.last_epoch, self.start_factor, self.end_factor
        if t == 0:
            return [lr * start for lr in self._current()]
        if self._is_initial or t > self.total_iters:
            return self._current()
        factor = 1.0 + (end - start) / (self.total_iters * start + (t - 1) * (end - start))
        return [lr * factor for lr in self._current()]

    def _closed_form_lr(self) -> list[float]:
        ramp = (self.end_factor - self.start_factor) * min(self.total_iters, self.last_epoch)
        return [base * (self.start_factor + ramp / self.total_iters) for base in self.base_lrs]


class SequentialLR(LRScheduler):
    """Run ``schedulers[i]`` from step ``milestones[i-1]`` on (PyTorch's ``SequentialLR``).

    At each milestone the next scheduler restarts at its own step 0 (its closed form, i.e. the
    base rate for a cosine); in between it advances by its recursive rule.

    Parameters
    ----------
    optimizer
        The optimizer every scheduler was created with.
    schedulers
        At least one scheduler (not itself a ``SequentialLR``).
    milestones
        ``len(schedulers) - 1`` strictly increasing steps ``>= 1``.
    """

    def __init__(self, optimizer: Optimizer, schedulers: Sequence[LRScheduler],
                 milestones: Sequence[int]) -> None:
        if not isinstance(optimizer, Optimizer):
            raise TypeError(f"{type(optimizer).__name__} is not an Optimizer.")
        schedulers = list(schedulers)
        if not schedulers:
            raise ValueError("SequentialLR expects at least one scheduler, but got no scheduler.")
        for i, s in enumerate(schedulers):
            if not isinstance(s, LRScheduler) or isinstance(s, SequentialLR):
                raise TypeError(
                    f"SequentialLR: scheduler at index {i} must be a StepLR, CosineAnnealingLR "
                    f"or LinearWarmup, got {type(s).__name__}."
                )
            if s.optimizer is not optimizer:
                raise ValueError(
                    f"SequentialLR expects all schedulers to belong to the same optimizer, but "
                    f"the {type(s).__name__} at index {i} has another one."
                )
        milestones = [check.integer(m, "milestone", type(self).__name__) for m in milestones]
        if len(milestones) != len(schedulers) - 1:
            raise ValueError(
                "SequentialLR expects one more scheduler than milestones, got "
                f"{len(schedulers)} schedulers and {len(milestones)} milestones."
            )
        if any(b <= a for a, b in zip(milestones, milestones[1:], strict=False)):
            raise ValueError(f"milestones must be strictly increasing, got {milestones}.")
        self.optimizer = optimizer
        self._schedulers = schedulers
        self._milestones = milestones
        self.last_epoch = 0
        # Undo the initial steps the schedulers took when they were created, then take the
        # first one's again: the sequence starts from the untouched base rates.
        for group in optimizer.param_groups:
            group["lr"] = group["initial_lr"]
        for s in schedulers:
            s.last_epoch -= 1
        first = schedulers[bisect_right(milestones, 0)]
        first._initial_step()
        self._last_lr = first.get_last_lr()

    def step(self) -> None:
        self.last_epoch += 1
        idx = bisect_right(self._milestones, self.last_epoch)
        scheduler = self._schedulers[idx]
        if idx > 0 and self._milestones[idx - 1] == self.last_epoch:
            scheduler._update_lr(0)
        else:
            scheduler.step()
        self._last_lr = scheduler.get_last_lr()

    def state_dict(self) -> dict[str, Any]:
        return {"last_epoch": self.last_epoch, "_milestones": list(self._milestones),
                "_last_lr": list(self._last_lr),
                "_schedulers": [s.state_dict() for s in self._schedulers]}

    def load_state_dict(self, state_dict: Mapping[str, Any]) -> None:
        _require_keys(self, state_dict, ("last_epoch", "_milestones", "_last_lr", "_schedulers"))
        for name in ("_milestones", "_last_lr", "_schedulers"):
            _require_list(self, state_dict, name)
        if len(state_dict["_schedulers"]) != len(self._schedulers):
            raise ValueError(
                f"SequentialLR state has {len(state_dict['_schedulers'])} schedulers, this one "
                f"{len(self._schedulers)}. Build the same sequence before loading."
            )
        for s, saved in zip(self._schedulers, state_dict["_schedulers"], strict=True):
            s.load_state_dict(saved)
        where = type(self).__name__
        self.last_epoch = check.integer(state_dict["last_epoch"], "last_epoch", where, low=-1,
                                        fix=_LOAD_FIX)
        self._milestones = [check.integer(m, "milestone", where) for m in state_dict["_milestones"]]
        self._last_lr = [check.real(v, "_last_lr", where) for v in state_dict["_last_lr"]]

    def __repr__(self) -> str:
        inner = ", ".join(repr(s) for s in self._schedulers)
        return f"SequentialLR([{inner}], milestones={self._milestones})"


def warmup_cosine(optimizer: Optimizer, *, warmup_steps: int, total_steps: int,
                  start_factor: float = 1.0 / 3, eta_min: float = 0.0) -> LRScheduler:
    """Linear warm-up for ``warmup_steps``, then cosine annealing to ``eta_min`` at ``total_steps``.

    The same as PyTorch's ``SequentialLR([LinearLR(start_factor, 1, warmup_steps),
    CosineAnnealingLR(total_steps - warmup_steps, eta_min)], milestones=[warmup_steps])``; with
    ``warmup_steps=0``, a plain :class:`CosineAnnealingLR`.
    """
    warmup_steps = check.integer(warmup_steps, "warmup_steps", "warmup_cosine", low=0)
    total_steps = check.integer(total_steps, "total_steps", "warmup_cosine")
    if total_steps <= warmup_steps:
        raise ValueError(
            f"total_steps must exceed warmup_steps, got total_steps={total_steps} and "
            f"warmup_steps={warmup_steps}."
        )
    if warmup_steps == 0:
        return CosineAnnealingLR(optimizer, total_steps, eta_min=eta_min)
    warmup = LinearWarmup(optimizer, start_factor=start_factor, total_iters=warmup_steps)
    cosine = CosineAnnealingLR(optimizer, total_steps - warmup_steps, eta_min=eta_min)
    return SequentialLR(optimizer, [warmup, cosine], milestones=[warmup_steps])


def _require_keys(owner: object, state_dict: Mapping[str, Any], keys: Sequence[str]) -> None:
    if not isinstance(state_dict, Mapping):
        raise TypeError(f"state_dict must be a dict, got {type(state_dict).__name__}.")
    missing = [k for k in keys if k not in state_dict]
    if missing:
        raise ValueError(
            f"{type(owner).__name__} state_dict lacks {missing}. Pass what "
            f"{type(owner).__name__}.state_dict() returned."
        )


def _require_list(owner: object, state_dict: Mapping[str, Any], key: str) -> None:
    if not isinstance(state_dict[key], list | tuple):
        raise ValueError(
            f"{type(owner).__name__} state_dict[{key!r}] must be a list, got "
            f"{type(state_dict[key]).__name__}. Pass what {type(owner).__name__}.state_dict() "
            "returned."
        )

