"""``Optimizer``: parameter groups, per-parameter state, ``state_dict`` in PyTorch's layout.

An optimizer owns everything an update needs besides ``p.data`` and ``p.grad``: the
hyperparameters of each parameter group and the per-parameter state (momentum buffers, Adam's
moments, step counts). Layers never update parameters; :meth:`Optimizer.step` does, in place on
``p.data`` and in the parameter's own dtype (float32 stays float32).

``state_dict()`` follows ``torch.optim.Optimizer.state_dict``: parameters are replaced by their
running index over all groups, ``{"state": {index: {name: value}}, "param_groups": [{hyper...,
"params": [indices]}]}``. Every value is a Python scalar, tuple, list or numpy array, so a
checkpoint can store the arrays (e.g. with safetensors) and the rest as JSON; after a JSON round
trip the integer keys come back as strings and tuples as lists, which ``load_state_dict`` accepts.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import numpy as np

from ..functional import _validation as check
from ..nn.module import Module, Parameter

__all__ = ["Optimizer", "ParamsT"]

ParamsT = Iterable[Parameter] | Iterable[Mapping[str, Any]]


class Optimizer:
    """Base class: subclasses define :meth:`_check_group` and :meth:`_update`.

    Parameters
    ----------
    params
        An iterable of :class:`~rot180.nn.Parameter` (e.g. ``model.parameters()``), or of dicts
        ``{"params": [...], "lr": ..., ...}`` giving some groups their own hyperparameters; keys a
        group leaves out take the optimizer's defaults, as in PyTorch.
    defaults
        The hyperparameters of the subclass, already validated.
    """

    #: state entries that are arrays shaped like the parameter / non-negative ints
    _state_arrays: tuple[str, ...] = ()
    _state_ints: tuple[str, ...] = ()

    def __init__(self, params: ParamsT, defaults: dict[str, Any]) -> None:
        self.defaults = defaults
        self.state: dict[Parameter, dict[str, Any]] = {}
        self.param_groups: list[dict[str, Any]] = []
        if isinstance(params, Parameter | Module | np.ndarray | Mapping) or not isinstance(
                params, Iterable):
            raise TypeError(
                "params given to the optimizer should be an iterable of Parameters or dicts, but "
                f"got {type(params).__name__}. Pass model.parameters() or a list of param groups."
            )
        _reject_set(params)
        groups = list(params)
        if not groups:
            raise ValueError(
                "optimizer got an empty parameter list. Pass model.parameters() of a model that "
                "has parameters."
            )
        if not isinstance(groups[0], Mapping):
            groups = [{"params": groups}]
        for group in groups:
            self.add_param_group(group)

    # -- to implement ------------------------------------------------------------------------
    def _check_group(self, group: dict[str, Any]) -> None:
        """Validate and normalise the hyperparameters of ``group`` in place."""
        raise NotImplementedError

    def _update(self, p: Parameter, grad: np.ndarray, state: dict[str, Any],
                group: dict[str, Any]) -> None:
        """Update ``p.data`` in place from ``grad``, reading and writing ``state``."""
        raise NotImplementedError

    def _required_state(self, group: dict[str, Any]) -> tuple[str, ...]:
        """Entries a non-empty loaded state must have (the rest are created lazily)."""
        return ()

    # -- groups ------------------------------------------------------------------------------
    def add_param_group(self, param_group: Mapping[str, Any]) -> None:
        """Add a group ``{"params": [...], hyperparameter: value, ...}``; defaults fill the gaps.

        Raises
        ------
        TypeError
            If ``params`` is a set (its order changes between runs) or holds a non-Parameter.
        ValueError
            If a parameter appears twice, or already belongs to another group.
        """
        if not isinstance(param_group, Mapping):
            raise TypeError(f"param group must be a dict, got {type(param_group).__name__}.")
        if "params" not in param_group:
            raise ValueError(
                f"param group must have a 'params' entry, got keys {sorted(param_group)}."
            )
        group = dict(param_group)
        params = group["params"]
        if isinstance(params, Parameter):
            params = [params]
        else:
            _reject_set(params)
            params = list(params)
        for p in params:
            if not isinstance(p, Parameter):
                raise TypeError(
                    "optimizer can only optimize Parameters, but one of the params is "
                    f"{type(p).__name__}. Pass model.parameters(), or wrap arrays in "
                    "rot180.nn.Parameter."
                )
        if len({id(p) for p in params}) != len(params):
            raise ValueError(
                "parameter group contains a parameter more than once. Pass each parameter once."
            )
        taken = {id(p) for g in self.param_groups for p in g["params"]}
        if any(id(p) in taken for p in params):
            raise ValueError(
                "some parameters appear in more than one parameter group. Put each parameter in "
                "exactly one group."
            )
        for name, value in self.defaults.items():
            group.setdefault(name, value)
        self._check_group(group)
        group["params"] = params
        self.param_groups.append(group)

    def _all_params(self) -> Iterable[Parameter]:
        for group in self.param_groups:
            yield from group["params"]

    # -- the update --------------------------------------------------------------------------
    def step(self, closure: Callable[[], float] | None = None) -> float | None:
        """Update every parameter that has a gradient, in place; return ``closure()`` if given.

        ``closure`` (optional) recomputes the loss and the gradients before the update.
        """
        loss = closure() if closure is not None else None
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is None:
                    continue
                grad = _checked_grad(p, type(self).__name__)
                state = self.state.get(p, {})
                self._update(p, grad, state, group)
                if state:
                    self.state[p] = state
        return loss

    def zero_grad(self) -> None:
        """Set every parameter's gradient to zeros, in place (gradients accumulate with ``+=``)."""
        for p in self._all_params():
            if p.grad is not None:
                p.zero_grad()

    # -- state -------------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        """Copies of the hyperparameters and state, parameters named by their running index.

        Returns
        -------
        dict
            ``{"state": {index: {name: int | ndarray}}, "param_groups": [{name: value, ...,
            "params": [index, ...]}]}``, as PyTorch lays it out; only parameters that have
            state appear under ``"state"``.
        """
        index: dict[int, int] = {}
        groups = []
        for group in self.param_groups:
            packed = {k: copy.deepcopy(v) for k, v in group.items() if k != "params"}
            packed["params"] = []
            for p in group["params"]:
                index[id(p)] = len(index)
                packed["params"].append(index[id(p)])
            groups.append(packed)
        state = {}
        for p in self._all_params():
            if self.state.get(p):
                state[index[id(p)]] = {
                    k: (v.copy() if isinstance(v, np.ndarray) else v)
                    for k, v in self.state[p].items()
                }
        return {"state": state, "param_groups": groups}

    def load_state_dict(self, state_dict: Mapping[str, Any]) -> None:
        """Restore hyperparameters and state saved by :meth:`state_dict` (or its JSON form).

        The optimizer must hold the same number of groups and parameters per group, in the same
        order, as the one that was saved. Arrays are copied and cast to each parameter's dtype.
        Saved hyperparameters replace the current ones (learning rates included), as in PyTorch:
        create any scheduler *before* loading, since creating one rewrites ``group["lr"]``.

        Raises
        ------
        ValueError
            On a malformed or mismatched structure, an unknown or missing entry, an array of the
            wrong shape, or a non-finite value.
        TypeError
            On a state array that is not numeric.
        """
        if not isinstance(state_dict, Mapping) or not {"state", "param_groups"} <= set(
                state_dict):
            raise ValueError(
                "optimizer state_dict must be a dict with keys 'state' and 'param_groups'. "
                "Pass what Optimizer.state_dict() returned."
            )
        saved_groups, saved_state = state_dict["param_groups"], state_dict["state"]
        if not isinstance(saved_groups, list | tuple) or not all(
                isinstance(g, Mapping) and isinstance(g.get("params"), list | tuple)
                for g in saved_groups):
            raise ValueError(
                "optimizer state_dict['param_groups'] must be a list of dicts, each with a "
                "'params' list of parameter indices. Pass what Optimizer.state_dict() returned."
            )
        if not isinstance(saved_state, Mapping) or not all(
                isinstance(v, Mapping) for v in saved_state.values()):
            raise ValueError(
                "optimizer state_dict['state'] must map parameter indices to dicts of state "
                "entries. Pass what Optimizer.state_dict() returned."
            )
        if len(saved_groups) != len(self.param_groups):
            raise ValueError(
                "loaded state dict has a different number of parameter groups: expected "
                f"{len(self.param_groups)}, got {len(saved_groups)}. Build the optimizer with "
                "the same param groups as the saved one."
            )
        by_index: dict[int, tuple[Parameter, dict[str, Any]]] = {}
        new_groups = []
        for i, (group, saved) in enumerate(zip(self.param_groups, saved_groups, strict=True)):
            if len(saved["params"]) != len(group["params"]):
                raise ValueError(
                    f"loaded state dict contains a parameter group that doesn't match the size "
                    f"of optimizer's group: group {i} has {len(group['params'])} parameters, "
                    f"the saved one {len(saved['params'])}."
                )
            new = {k: copy.deepcopy(v) for k, v in saved.items() if k != "params"}
            missing = [k for k in self.defaults if k not in new]
            if missing:
                raise ValueError(
                    f"loaded param group {i} lacks hyperparameters {missing}. Pass a state_dict "
                    f"saved from {type(self).__name__}."
                )
            self._check_group(new)
            new["params"] = group["params"]
            new_groups.append(new)
            for idx, p in zip(saved["params"], group["params"], strict=True):
                by_index[_index(idx)] = (p, new)
        new_state = {}
        for key, entry in saved_state.items():
            idx = _index(key)
            if idx not in by_index:
                raise ValueError(
                    f"loaded state refers to parameter index {idx}, but the param groups hold "
                    f"indices 0..{len(by_index) - 1}."
                )
            p, group = by_index[idx]
            new_state[p] = self._load_param_state(idx, p, entry, group)
        for group, new in zip(self.param_groups, new_groups, strict=True):
            group.clear()  # in place: schedulers and callers may hold these dicts
            group.update(new)
        self.state = {p: s for p, s in new_state.items() if s}

    def _load_param_state(self, idx: int, p: Parameter, entry: Mapping[str, Any],
                          group: dict[str, Any]) -> dict[str, Any]:
        unknown = [k for k in entry if k not in self._state_arrays + self._state_ints]
        if unknown:
            raise ValueError(
                f"loaded state of parameter {idx} has unknown entries {unknown}; "
                f"{type(self).__name__} keeps {list(self._state_arrays + self._state_ints)}."
            )
        missing = [k for k in self._required_state(group) if k not in entry]
        if entry and missing:
            raise ValueError(f"loaded state of parameter {idx} lacks entries {missing}.")
        out: dict[str, Any] = {}
        for k, v in entry.items():
            if k in self._state_ints:
                # an int, or the float a JSON round trip may make of it (3.0)
                n = int(v) if isinstance(v, float) and v.is_integer() else v
                try:
                    out[k] = check.integer(n, k, type(self).__name__, low=0)
                except (TypeError, ValueError) as exc:
                    raise ValueError(f"state '{k}' of parameter {idx} must be an int >= 0, got "
                                     f"{v!r} ({exc}) Pass what state_dict() returned.") from None
            else:
                # an array, or a list of numbers after a JSON round trip; never another library's
                arr = check.as_array(v, f"state '{k}' of parameter {idx}", type(self).__name__,
                                     sequences=True, convert="numpy.asarray(...), as "
                                     "Optimizer.state_dict() saves it")
                if arr.dtype.kind not in "iuf":
                    raise TypeError(
                        f"state '{k}' of parameter {idx}: expected a numeric array, got dtype "
                        f"{arr.dtype}. Load a state_dict saved by Optimizer.state_dict()."
                    )
                if arr.shape != p.shape:
                    raise ValueError(
                        f"state '{k}' of parameter {idx}: expected shape {p.shape}, got "
                        f"{arr.shape}. Load a state_dict saved for the same model."
                    )
                out[k] = np.array(arr, dtype=p.dtype, copy=True)
                # A one-time scan at load: a NaN here would poison every later step silently.
                if not np.isfinite(out[k]).all():
                    raise ValueError(
                        f"state '{k}' of parameter {idx} holds NaN or infinite values. The "
                        "saved run had diverged: load an earlier checkpoint."
                    )
        return out

    def __repr__(self) -> str:
        lines = [f"{type(self).__name__} ("]
        for i, group in enumerate(self.param_groups):
            lines.append(f"Parameter Group {i}")
            for k in sorted(group):
                if k != "params":
                    lines.append(f"    {k}: {group[k]}")
        return "\n".join(lines) + "\n)"


def _checked_grad(p: Parameter, where: str) -> np.ndarray:
    grad = check.as_array(p.grad, f"the gradient of {p!r}", where,
                          convert="p.grad = np.asarray(...); zero it with p.zero_grad()")
    if grad.shape != p.data.shape:
        raise ValueError(
            f"{where}: gradient of {p!r} must be an array of shape {p.data.shape}, got "
            f"{grad.shape}. Zero it with p.zero_grad()."
        )
    if grad.dtype != p.data.dtype:
        raise TypeError(
            f"{where}: gradient of {p!r} has dtype {grad.dtype}; expected {p.data.dtype}. "
            "rot180 never upcasts silently: cast the gradient to the parameter's dtype."
        )
    return grad


def _index(key: object) -> int:
    """A saved parameter index: an int, or its string form after a JSON round trip."""
    if isinstance(key, str) and key.isdigit():
        return int(key)
    try:
        return check.integer(key, "parameter index", low=0)
    except (TypeError, ValueError):
        raise ValueError(
            f"loaded state refers to parameter index {key!r}; expected a non-negative int (or "
            "its string form). Pass what Optimizer.state_dict() returned."
        ) from None


def _reject_set(params: object) -> None:
    if isinstance(params, set | frozenset):
        raise TypeError(
            "optimizer parameters need to be organized in ordered collections, but the ordering "
            "of parameters in sets will change between runs. Please use a list instead."
        )
