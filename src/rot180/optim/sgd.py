"""Stochastic gradient descent with momentum, dampening, Nesterov and L2 weight decay."""

from __future__ import annotations

from typing import Any

import numpy as np

from ..functional import _validation as check
from ..nn.module import Parameter
from .optimizer import Optimizer, ParamsT

__all__ = ["SGD"]


class SGD(Optimizer):
    r"""Stochastic gradient descent, step for step as ``torch.optim.SGD`` (``foreach=False``).

    For each parameter ``w`` with gradient ``g`` (of the data loss), one :meth:`step` does,
    in this order::

        g = g + weight_decay * w                      # if weight_decay != 0
        if momentum != 0:
            buf = copy(g)                             # first step: no dampening
            buf = momentum * buf + (1 - dampening) * g    # later steps
            g = g + momentum * buf if nesterov else buf
        w = w - lr * g

    **Weight decay is the L2 term of the loss.** Adding ``weight_decay * w`` to the gradient is
    the gradient of ``(weight_decay / 2) * ||w||²``, so training with ``weight_decay=λ`` minimises
    ``L(w) + (λ/2)·||w||²`` -- note the factor 1/2: an article writing the regulariser as
    ``λ'·||w||²`` (no half) corresponds to ``weight_decay = 2λ'``.

    Parameters
    ----------
    params
        ``model.parameters()``, or a list of param-group dicts such as
        ``[{"params": a}, {"params": b, "lr": 0.01}]``.
    lr
        Learning rate, ``>= 0``.
    momentum
        Momentum factor, ``>= 0``; 0 turns momentum (and its buffer) off.
    dampening
        Scales the new gradient's share of the momentum buffer by ``1 - dampening``.
    weight_decay
        L2 coefficient λ, ``>= 0`` (the penalty is ``(λ/2)·||w||²``, see above).
    nesterov
        Nesterov momentum; needs ``momentum > 0`` and ``dampening == 0``.

    Notes
    -----
    Arithmetic runs in each parameter's dtype: a float32 parameter, its gradient and its buffer
    stay float32 (the Python-float hyperparameters are rounded to float32 first, as PyTorch does).
    ``state_dict()["state"][i]`` holds ``{"momentum_buffer": ndarray}`` once momentum is on.

    Examples
    --------
    >>> import numpy as np
    >>> from rot180.nn import Parameter
    >>> w = Parameter(np.array([1.0, -2.0]))
    >>> opt = SGD([w], lr=0.1, momentum=0.9)
    >>> w.grad[:] = [0.5, 0.5]
    >>> opt.step()
    >>> w.data
    array([ 0.95, -2.05])
    """

    _state_arrays = ("momentum_buffer",)

    def __init__(self, params: ParamsT, lr: float = 1e-3, *, momentum: float = 0.0,
                 dampening: float = 0.0, weight_decay: float = 0.0,
                 nesterov: bool = False) -> None:
        defaults = {"lr": lr, "momentum": momentum, "dampening": dampening,
                    "weight_decay": weight_decay, "nesterov": nesterov}
        self._check_group(defaults)
        super().__init__(params, defaults)

    def _check_group(self, group: dict[str, Any]) -> None:
        name = type(self).__name__
        group["lr"] = check.real(group["lr"], "lr", name, low=0, invalid="learning rate")
        group["momentum"] = check.real(group["momentum"], "momentum", name, low=0,
                                       invalid="momentum value")
        group["dampening"] = check.real(group["dampening"], "dampening", name)
        group["weight_decay"] = check.real(group["weight_decay"], "weight_decay", name, low=0,
                                           invalid="weight_decay value")
        group["nesterov"] = check.flag(group["nesterov"], "nesterov", name)
        if group["nesterov"] and (group["momentum"] <= 0 or group["dampening"] != 0):
            raise ValueError(
                "Nesterov momentum requires a momentum and zero dampening: got momentum="
                f"{group['momentum']}, dampening={group['dampening']}. Set momentum > 0 and "
                "dampening=0, or nesterov=False."
            )

    def _update(self, p: Parameter, grad: np.ndarray, state: dict[str, Any],
                group: dict[str, Any]) -> None:
        t = p.data.dtype.type  # hyperparameters rounded to the parameter's dtype, as torch does
        momentum, weight_decay = group["momentum"], group["weight_decay"]
        if weight_decay != 0:
            grad = grad + t(weight_decay) * p.data
        if momentum != 0:
            buf = state.get("momentum_buffer")
            if buf is None:
                buf = state["momentum_buffer"] = grad.copy()
            else:
                buf *= t(momentum)
                buf += t(1 - group["dampening"]) * grad
            grad = grad + t(momentum) * buf if group["nesterov"] else buf
        p.data += t(-group["lr"]) * grad
