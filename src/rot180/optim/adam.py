"""Adam (L2 weight decay in the gradient) and AdamW (decoupled weight decay)."""

from __future__ import annotations

from typing import Any

import numpy as np

from ..functional import _validation as check
from ..nn.module import Parameter
from .optimizer import Optimizer, ParamsT

__all__ = ["Adam", "AdamW"]


class Adam(Optimizer):
    r"""Adam, step for step as ``torch.optim.Adam`` (single-tensor, ``foreach=False``, not fused).

    For each parameter ``w`` with gradient ``g``, one :meth:`step` does, in this order
    (``t`` counts this parameter's steps from 1; ``m``, ``v`` start at zero)::

        g = g + weight_decay * w                       # if weight_decay != 0
        m = lerp(m, g, 1 - beta1)                      # = beta1*m + (1-beta1)*g
        v = beta2 * v + (1 - beta2) * g * g
        bias_correction1 = 1 - beta1**t
        bias_correction2 = 1 - beta2**t
        step_size = lr / bias_correction1
        v_hat = max(v_hat, v) if amsgrad else v       # amsgrad keeps the running maximum
        denom = sqrt(v_hat) / sqrt(bias_correction2) + eps
        w = w - step_size * m / denom

    **Weight decay is the L2 term of the loss.** Adding ``weight_decay * w`` to the gradient is
    the gradient of ``(weight_decay / 2) * ||w||²``: ``weight_decay=λ`` minimises
    ``L(w) + (λ/2)·||w||²`` (factor 1/2; a regulariser written ``λ'·||w||²`` is
    ``weight_decay = 2λ'``). In Adam this term is then rescaled per coordinate by ``1/denom``;
    :class:`AdamW` decays the weights directly instead.

    Parameters
    ----------
    params
        ``model.parameters()``, or a list of param-group dicts.
    lr
        Learning rate, ``>= 0``.
    betas
        Decay rates ``(beta1, beta2)`` of the first and second moment averages, each in ``[0, 1)``.
    eps
        Added to the denominator for numerical stability, ``>= 0``.
    weight_decay
        L2 coefficient λ, ``>= 0`` (penalty ``(λ/2)·||w||²``).
    amsgrad
        Normalise by the running maximum of ``v`` (AMSGrad).

    Notes
    -----
    Arithmetic runs in each parameter's dtype (float32 stays float32); the scalar bias
    corrections are computed in Python floats, as PyTorch does. ``state_dict()["state"][i]``
    holds ``{"step": int, "exp_avg": m, "exp_avg_sq": v}`` (and ``"max_exp_avg_sq"`` with
    amsgrad).
    """

    _state_arrays = ("exp_avg", "exp_avg_sq", "max_exp_avg_sq")
    _state_ints = ("step",)
    _decoupled = False

    def __init__(self, params: ParamsT, lr: float = 1e-3, *,
                 betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8,
                 weight_decay: float = 0.0, amsgrad: bool = False) -> None:
        defaults = {"lr": lr, "betas": betas, "eps": eps, "weight_decay": weight_decay,
                    "amsgrad": amsgrad}
        self._check_group(defaults)
        super().__init__(params, defaults)

    def _check_group(self, group: dict[str, Any]) -> None:
        name = type(self).__name__
        group["lr"] = check.real(group["lr"], "lr", name, low=0, invalid="learning rate")
        group["betas"] = _betas(group["betas"], name)
        group["eps"] = check.real(group["eps"], "eps", name, low=0, invalid="epsilon value")
        group["weight_decay"] = check.real(group["weight_decay"], "weight_decay", name, low=0,
                                           invalid="weight_decay value")
        group["amsgrad"] = check.flag(group["amsgrad"], "amsgrad", name)

    def _required_state(self, group: dict[str, Any]) -> tuple[str, ...]:
        base = ("step", "exp_avg", "exp_avg_sq")
        return base + ("max_exp_avg_sq",) if group["amsgrad"] else base

    def _update(self, p: Parameter, grad: np.ndarray, state: dict[str, Any],
                group: dict[str, Any]) -> None:
        t = p.data.dtype.type  # Python-float scalars are rounded to the parameter's dtype
        if not state:
            state["step"] = 0
            state["exp_avg"] = np.zeros_like(p.data)
            state["exp_avg_sq"] = np.zeros_like(p.data)
            if group["amsgrad"]:
                state["max_exp_avg_sq"] = np.zeros_like(p.data)
        lr, (beta1, beta2), eps = group["lr"], group["betas"], group["eps"]
        weight_decay = group["weight_decay"]
        exp_avg, exp_avg_sq = state["exp_avg"], state["exp_avg_sq"]
        state["step"] += 1
        step = state["step"]

        if weight_decay != 0:
            if self._decoupled:
                p.data *= t(1 - lr * weight_decay)
            else:
                grad = grad + t(weight_decay) * p.data

        _lerp_(exp_avg, grad, t(1 - beta1))
        exp_avg_sq *= t(beta2)
        exp_avg_sq += t(1 - beta2) * grad * grad

        bias_correction1 = 1 - beta1**step
        bias_correction2 = 1 - beta2**step
        step_size = lr / bias_correction1
        bias_correction2_sqrt = bias_correction2**0.5

        if group["amsgrad"]:
            if "max_exp_avg_sq" not in state:  # amsgrad switched on after some steps
                state["max_exp_avg_sq"] = np.zeros_like(p.data)
            np.maximum(state["max_exp_avg_sq"], exp_avg_sq, out=state["max_exp_avg_sq"])
            second = state["max_exp_avg_sq"]
        else:
            second = exp_avg_sq
        denom = np.sqrt(second) / t(bias_correction2_sqrt)
        denom += t(eps)
        p.data += t(-step_size) * exp_avg / denom


class AdamW(Adam):
    r"""AdamW, step for step as ``torch.optim.AdamW`` (single-tensor, ``foreach=False``).

    The same update as :class:`Adam` except that weight decay is *decoupled* from the gradient:
    before the moment updates, every step multiplies the weights by ``1 - lr * weight_decay``::

        w = w * (1 - lr * weight_decay)
        ... Adam's update with the plain gradient g ...

    Unlike Adam's L2 term, this decay is not rescaled by the adaptive denominator. For plain
    SGD it would equal an L2 term ``(weight_decay / 2)·||w||²`` in the loss (the gradient
    ``weight_decay * w`` times ``lr``); under Adam's rescaling the two differ, which is AdamW's
    point. Default ``weight_decay=1e-2``, as in PyTorch.

    Parameters
    ----------
    params, lr, betas, eps, amsgrad
        As :class:`Adam`.
    weight_decay
        Decoupled decay coefficient, ``>= 0``.
    """

    _decoupled = True

    def __init__(self, params: ParamsT, lr: float = 1e-3, *,
                 betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8,
                 weight_decay: float = 1e-2, amsgrad: bool = False) -> None:
        super().__init__(params, lr, betas=betas, eps=eps, weight_decay=weight_decay,
                         amsgrad=amsgrad)


def _lerp_(start: np.ndarray, end: np.ndarray, weight: np.floating) -> None:
    """``start += weight * (end - start)`` in place, rounded as ``torch.lerp``.

    Torch picks the formula by the weight's size so that the result is exact at both ends:
    ``start + w*(end-start)`` for ``|w| < 0.5``, otherwise ``end - (end-start)*(1-w)``.
    """
    diff = end - start
    if abs(weight) < 0.5:
        diff *= weight
        start += diff
    else:
        diff *= weight.dtype.type(1) - weight
        np.subtract(end, diff, out=start)


def _betas(value: object, where: str) -> tuple[float, float]:
    """Adam's ``(beta1, beta2)``, each in ``[0, 1)``."""
    if not isinstance(value, tuple | list) or len(value) != 2:
        raise TypeError(f"{where}: betas must be a pair (beta1, beta2), got {value!r}. "
                        f"{_BETAS_EXAMPLE}")
    return tuple(  # type: ignore[return-value]
        check.real(b, f"betas[{i}]", where, low=0, high=1, high_open=True,
                   invalid=f"beta parameter at index {i}", fix=_BETAS_EXAMPLE)
        for i, b in enumerate(value))


_BETAS_EXAMPLE = "Pass two numbers in [0, 1), e.g. betas=(0.9, 0.999)."
