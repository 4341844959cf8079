"""Saliency: ``dloss/dinput`` of a trained network, the rot180 rule applied through every layer.

Nothing here differentiates anything: :func:`saliency` runs ``model.forward``, the loss's
``backward`` (``softmax(z) - e(y)``), and ``model.backward``, which hands the delta back layer by
layer (fully connected: ``W^T δ``; ReLU: ``δ ⊙ [z > 0]``; max pool: δ to the argmax;
convolution: the stretched, padded delta correlated with ``rot180(w)``) until it reaches the
image. The result says which pixels would change the loss of the chosen class most.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

from ..functional import _validation as V
from ..nn.loss import SoftmaxCrossEntropy

if TYPE_CHECKING:
    from matplotlib.figure import Figure

__all__ = ["saliency", "saliency_figure"]


def saliency(model: object, x: np.ndarray, target: int | Sequence[int] | None = None
             ) -> tuple[np.ndarray, np.ndarray]:
    """Gradient of the cross-entropy loss with respect to the input, and the predicted classes.

    The loss of sample ``n`` is ``-log softmax(model(x))[n, y_n]`` with ``y_n`` the predicted
    class (``target=None``) or the given class; losses are summed, not averaged, so each
    sample's gradient does not depend on the batch size. ``model`` follows the Module protocol
    (``forward(x) -> logits``, ``backward(d_logits) -> dx``); put it in eval mode first if it
    has dropout or batch normalisation. Like any backward pass it also accumulates parameter
    gradients (``model.zero_grad()`` clears them).

    Args:
        model: a network mapping ``x`` to logits.
        x: the input batch, float32 or float64.
        target: the class (one int for every sample, or one per sample) whose loss is
            differentiated; default the predicted class.

    Shape:
        - x: ``(N, C, H, W)`` (any layout the model accepts, batch first)
        - output: ``dx`` of ``x``'s shape and dtype, ``pred`` of shape ``(N,)`` (int64)
    """
    x = V.as_array(x, "x", "saliency", dtypes=V.FLOAT_DTYPES)
    if x.ndim < 2:
        raise ValueError(f"saliency: x must have a batch axis first, got shape {x.shape}.")
    logits = model.forward(x)   # type: ignore[attr-defined]
    logits = V.as_array(logits, "the model's output", "saliency",
                        convert="a model whose forward returns a numpy array")
    if logits.ndim != 2 or logits.shape[0] != x.shape[0]:
        raise ValueError(
            f"saliency: the model must return logits of shape (N, classes) = ({x.shape[0]}, C), "
            f"got {logits.shape}."
        )
    pred = logits.argmax(axis=1).astype(np.int64)
    if target is None:
        targets = pred
    else:
        targets = np.broadcast_to(np.asarray(target), pred.shape).astype(np.int64)
        bad = (targets < 0) | (targets >= logits.shape[1])
        if bad.any():
            raise ValueError(
                f"saliency: target must be a class index in 0..{logits.shape[1] - 1}, got "
                f"{np.asarray(target).tolist()}."
            )
    loss = SoftmaxCrossEntropy(reduction="sum")
    loss.forward(logits, targets)
    dx = model.backward(loss.backward())   # type: ignore[attr-defined]
    return dx, pred


def saliency_figure(image: np.ndarray, dx: np.ndarray, *, title: str, target_name: str
                    ) -> Figure:
    """Three panels: the image, the signed gradient, and its magnitude over the image.

    Shape:
        - image: ``(C, H, W)`` in ``[0, 1]`` (as displayed); dx: ``(C, H, W)``
    """
    from . import _draw as D

    img = image.mean(axis=0) if image.shape[0] != 3 else image.transpose(1, 2, 0)
    signed = dx.sum(axis=0)
    mag = np.abs(dx).max(axis=0)
    fig = D.new_figure(10.5, 4.1)
    fig.suptitle(title, fontsize=13, y=0.97)
    limit = float(np.abs(signed).max()) or 1.0
    panels = (
        ("the image", img, {"cmap": "gray", "vmin": 0, "vmax": 1}),
        (f"∂loss/∂x for class {target_name}\n(red: raising the pixel raises the loss)",
         signed, {"cmap": "RdBu_r", "vmin": -limit, "vmax": limit}),
        ("|∂loss/∂x| over the image", img, {"cmap": "gray", "vmin": 0, "vmax": 1}),
    )
    lefts = (0.02, 0.35, 0.69)
    for n, (text, data, style) in enumerate(panels):
        ax = fig.add_axes((lefts[n], 0.04, 0.28, 0.74))
        shown = ax.imshow(data, interpolation="nearest", **style)
        if n == 1:
            cax = fig.add_axes((lefts[n] + 0.285, 0.1, 0.012, 0.62))
            bar = fig.colorbar(shown, cax=cax)
            bar.formatter.set_powerlimits((-2, 2))
            bar.ax.tick_params(labelsize=8)
        if n == 2:
            ax.imshow(mag, cmap="inferno", alpha=0.65, interpolation="nearest",
                      vmin=0, vmax=float(mag.max()) or 1.0)
        ax.set_title(text, fontsize=10)
        ax.set_xticks([])
        ax.set_yticks([])
    return fig
