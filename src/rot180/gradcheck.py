"""Finite-difference gradient checking for any function or layer.

The check reduces the output to a scalar with a fixed random projection ``d`` (seeded),
``L = <f(x), d>``, so one backward call with ``dz = d`` yields ``dL/dx`` for every input at once,
and compares it with central differences in float64::

    dL/dx[j]  ~  (L(x + eps e_j) - L(x - eps e_j)) / (2 eps)

A random ``d`` (rather than ``dz = 1``) makes errors that cancel in a plain sum, such as a
gradient landing on the wrong output position, visible. For big inputs, ``max_entries`` checks a
seeded random sample of coordinates instead of all of them.

Two kinds of target are accepted, told apart by duck typing:

* a function ``f(*inputs) -> array`` with its analytic backward
  ``grad_fn(dz, *inputs) -> tuple`` (one gradient per input, ``None`` for inputs not to check);
* a layer with ``forward(x)``, ``backward(dy) -> dx`` and ``named_parameters()`` yielding
  ``(name, parameter)`` with ``.data`` and ``.grad`` arrays (the :mod:`rot180.nn` protocol).

>>> import numpy as np
>>> res = gradcheck(lambda a, b: a * b, (np.ones(3), np.arange(3.0)),
...                 grad_fn=lambda dz, a, b: (dz * b, dz * a))
>>> res.ok
True
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from .functional import _validation as V

__all__ = ["GradError", "GradcheckResult", "gradcheck"]


@dataclass(frozen=True)
class GradError:
    """Agreement of one analytic gradient with central differences.

    ``max_rel`` is ``max |analytic - numeric| / max(|analytic|, |numeric|)`` over the checked
    coordinates (0 where both are 0). ``ok`` holds when every coordinate satisfies
    ``|analytic - numeric| <= atol + rtol * max(|analytic|, |numeric|)``.
    """

    name: str
    shape: tuple[int, ...]
    checked: int
    max_abs: float
    max_rel: float
    ok: bool


@dataclass(frozen=True)
class GradcheckResult:
    """Per-input (and per-parameter) errors of one :func:`gradcheck` run."""

    errors: tuple[GradError, ...]
    eps: float
    atol: float
    rtol: float
    seed: int

    @property
    def ok(self) -> bool:
        return all(e.ok for e in self.errors)

    @property
    def max_abs(self) -> float:
        return max((e.max_abs for e in self.errors), default=0.0)

    @property
    def max_rel(self) -> float:
        return max((e.max_rel for e in self.errors), default=0.0)

    def __getitem__(self, name: str) -> GradError:
        for e in self.errors:
            if e.name == name:
                return e
        raise KeyError(f"no gradient named {name!r}; checked: {[e.name for e in self.errors]}")

    def __bool__(self) -> bool:
        return self.ok

    def __str__(self) -> str:
        head = ("name", "shape", "checked", "max abs err", "max rel err", "status")
        rows = [
            (e.name, str(e.shape), f"{e.checked}/{int(np.prod(e.shape))}", f"{e.max_abs:.3e}",
             f"{e.max_rel:.3e}", "ok" if e.ok else "FAIL")
            for e in self.errors
        ]
        widths = [max(len(r[i]) for r in (head, *rows)) for i in range(len(head))]

        def line(r: Sequence[str]) -> str:
            return "  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip()

        verdict = "PASS" if self.ok else "FAIL"
        return "\n".join([
            f"gradcheck (central differences, eps={self.eps:g}, atol={self.atol:g}, "
            f"rtol={self.rtol:g}, seed={self.seed})",
            line(head),
            *(line(r) for r in rows),
            f"result: {verdict}",
        ])


def _as_float64(a: object, name: str) -> np.ndarray:
    arr = np.asarray(a)
    if not np.issubdtype(arr.dtype, np.floating):
        raise TypeError(
            f"gradcheck: {name} must be a floating-point array to be perturbed, got dtype "
            f"{arr.dtype}. Return None as its gradient to leave it unchecked."
        )
    return np.array(arr, dtype=np.float64)  # a private copy: perturbed in place below


def _coordinates(size: int, max_entries: int | None, rng: np.random.Generator) -> np.ndarray:
    if max_entries is None or max_entries >= size:
        return np.arange(size)
    return np.sort(rng.choice(size, size=max_entries, replace=False))


def _compare(name: str, analytic: object, numeric_at: Callable[[int], float], shape: tuple,
             coords: np.ndarray, atol: float, rtol: float) -> GradError:
    a = np.asarray(analytic, dtype=np.float64)
    if a.shape != shape:
        raise ValueError(
            f"gradcheck: the analytic gradient of {name} has shape {a.shape}, expected {shape} "
            "(the shape of what it differentiates). Check the backward's return value."
        )
    num = np.array([numeric_at(int(j)) for j in coords])
    ana = a.ravel()[coords]
    err = np.abs(ana - num)
    scale = np.maximum(np.abs(ana), np.abs(num))
    rel = np.divide(err, scale, out=np.zeros_like(err), where=scale > 0)
    ok = bool(np.all(err <= atol + rtol * scale))
    return GradError(name, shape, len(coords), float(err.max(initial=0.0)),
                     float(rel.max(initial=0.0)), ok)


def _central(loss: Callable[[], float], arr: np.ndarray, eps: float) -> Callable[[int], float]:
    """Central difference of ``loss`` along flat coordinate ``j`` of ``arr``, perturbed in place."""
    flat = arr.reshape(-1)  # a view: arr is contiguous (made by np.array)

    def at(j: int) -> float:
        orig = flat[j]
        flat[j] = orig + eps
        up = loss()
        flat[j] = orig - eps
        down = loss()
        flat[j] = orig
        return (up - down) / (2 * eps)

    return at


def gradcheck(target: Any, inputs: np.ndarray | Sequence[Any], *,
              grad_fn: Callable[..., Sequence[Any]] | None = None,
              names: Sequence[str] | None = None, eps: float = 1e-6, atol: float = 1e-6,
              rtol: float = 1e-4, max_entries: int | None = None, seed: int = 0
              ) -> GradcheckResult:
    """Compare analytic gradients with central finite differences, in float64.

    Args:
        target: a function ``f(*inputs) -> array`` (then ``grad_fn`` is required), or a layer
            with ``forward(x)``, ``backward(dy) -> dx`` and ``named_parameters()``.
        inputs: the point to check at: a tuple of arrays for a function (one array is taken as
            a 1-tuple), the input ``x`` for a layer. Floating arrays are copied to float64;
            other inputs (integer labels, say) are passed unchanged and must get ``None``.
        grad_fn: for a function, ``grad_fn(dz, *inputs)`` returning one gradient per input
            (``None`` to skip one); ``dz`` has the output's shape.
        names: labels of the function's inputs in the result (default ``input0``, ...).
        eps: finite-difference step.
        atol, rtol: a coordinate passes when ``|analytic - numeric| <= atol + rtol *
            max(|analytic|, |numeric|)``.
        max_entries: check at most this many coordinates per array (a seeded random sample);
            ``None`` checks all.
        seed: seeds the projection ``d`` and the coordinate sample.

    A layer is run with its parameters temporarily replaced by float64 copies and fresh zero
    ``.grad`` arrays; the originals are restored afterwards. The layer must be deterministic
    (dropout off) and ``backward`` must fill or accumulate into each parameter's ``.grad``.

    Returns:
        A :class:`GradcheckResult`; ``print`` it for a table, test ``.ok`` for the verdict.

    Shape:
        - inputs: any shapes ``f`` accepts; ``f`` returns one array ``z`` of any shape
        - grad_fn result: one array per input, each of that input's shape
    """
    if max_entries is not None:
        max_entries = V.integer(max_entries, "max_entries", "gradcheck",
                                fix="Pass None to check every entry.")
    eps = V.real(eps, "eps", "gradcheck", low=0, low_open=True)
    rng = np.random.default_rng(seed)
    if callable(getattr(target, "forward", None)) and callable(getattr(target, "backward", None)):
        if grad_fn is not None or names is not None:
            raise TypeError(
                "gradcheck: grad_fn and names are for functions; a layer supplies backward() "
                "and named_parameters()."
            )
        errors = _check_layer(target, inputs, eps, atol, rtol, max_entries, rng)
    elif callable(target):
        if grad_fn is None:
            raise TypeError(
                "gradcheck: checking a function needs its analytic backward: pass "
                "grad_fn=lambda dz, *inputs: (grad_0, grad_1, ...)."
            )
        errors = _check_function(target, inputs, grad_fn, names, eps, atol, rtol,
                                 max_entries, rng)
    else:
        raise TypeError(
            f"gradcheck: target must be a function or a layer with forward/backward, got "
            f"{type(target).__name__}."
        )
    return GradcheckResult(tuple(errors), eps, atol, rtol, seed)


def _check_function(f: Callable, inputs: Any, grad_fn: Callable, names: Sequence[str] | None,
                    eps: float, atol: float, rtol: float, max_entries: int | None,
                    rng: np.random.Generator) -> list[GradError]:
    inputs = (inputs,) if isinstance(inputs, np.ndarray) else tuple(inputs)
    names = tuple(names) if names is not None else tuple(f"input{k}" for k in range(len(inputs)))
    if len(names) != len(inputs):
        raise ValueError(f"gradcheck: got {len(names)} names for {len(inputs)} inputs.")
    args = [np.array(a, dtype=np.float64) if np.issubdtype(np.asarray(a).dtype, np.floating)
            else a for a in inputs]
    d = rng.standard_normal(np.shape(f(*args)))
    grads = grad_fn(d, *args)
    grads = (grads,) if isinstance(grads, np.ndarray) else tuple(grads)
    if len(grads) != len(args):
        raise ValueError(
            f"gradcheck: grad_fn returned {len(grads)} gradients for {len(args)} inputs; return "
            "one per input (None for an input not to check)."
        )

    def loss() -> float:
        return float(np.sum(np.asarray(f(*args), dtype=np.float64) * d))

    errors = []
    for name, arg, g in zip(names, args, grads, strict=True):
        if g is None:
            continue
        if not (isinstance(arg, np.ndarray) and arg.dtype == np.float64):
            raise TypeError(
                f"gradcheck: grad_fn returned a gradient for {name}, which is not a "
                f"floating-point array ({type(arg).__name__}) and cannot be perturbed. "
                "Return None for it."
            )
        coords = _coordinates(arg.size, max_entries, rng)
        errors.append(_compare(name, g, _central(loss, arg, eps), arg.shape, coords, atol, rtol))
    return errors


def _check_layer(layer: Any, x: Any, eps: float, atol: float, rtol: float,
                 max_entries: int | None, rng: np.random.Generator) -> list[GradError]:
    params = list(layer.named_parameters()) if hasattr(layer, "named_parameters") else []
    saved = [(p, p.data, getattr(p, "grad", None)) for _, p in params]
    try:
        for _, p in params:
            p.data = _as_float64(p.data, "parameter")
            p.grad = np.zeros_like(p.data)
        x64 = _as_float64(x, "x")
        d = rng.standard_normal(np.shape(layer.forward(x64)))
        dx = layer.backward(d)
        analytic = [("x", dx, x64)] + [(n, p.grad.copy(), p.data) for n, p in params]

        def loss() -> float:
            return float(np.sum(np.asarray(layer.forward(x64), dtype=np.float64) * d))

        errors = []
        for name, g, arr in analytic:
            if g is None:
                continue
            coords = _coordinates(arr.size, max_entries, rng)
            errors.append(_compare(name, g, _central(loss, arr, eps), arr.shape, coords,
                                   atol, rtol))
        return errors
    finally:
        for p, data, grad in saved:
            p.data, p.grad = data, grad
