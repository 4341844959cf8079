"""``rot180 saliency``: which pixels of one image move a trained network's loss the most.

The gradient ``∂loss/∂input`` is the rot180 rule applied through every layer (see
:mod:`rot180.explain.saliency`); it is drawn beside the image, with the predicted class.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

HELP = "draw ∂loss/∂input of one image through a trained checkpoint (a saliency map)"


def add_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = sub.add_parser("saliency", help=HELP, description=HELP + ".")
    p.add_argument("checkpoint", help="a .safetensors checkpoint written by rot180 train")
    p.add_argument("image", help="a PNG or JPEG image; converted to the model's input size")
    p.add_argument("--target", type=int, default=None,
                   help="class whose loss is differentiated (default: the predicted class)")
    p.add_argument("--out", default="saliency.png",
                   help="output figure, .png or .svg (default: %(default)s)")
    return p


def _normalization(meta: dict, dtype: np.dtype) -> tuple[np.ndarray, np.ndarray]:
    norm = meta.get("normalization") or {"mean": 0.0, "std": 1.0}
    mean = np.asarray(norm.get("mean", 0.0), dtype).reshape(-1, 1, 1)
    std = np.asarray(norm.get("std", 1.0), dtype).reshape(-1, 1, 1)
    return mean, std


def run(args: argparse.Namespace) -> int:
    from ..explain.saliency import saliency, saliency_figure
    from ..train.checkpoint import load_checkpoint
    from ..train.images import load_images

    ckpt = load_checkpoint(args.checkpoint)
    model = ckpt.build_model().eval()
    shape = tuple(ckpt.meta.get("image_shape", (1, 28, 28)))
    dtype = next(iter(model.parameters())).dtype
    mean, std = _normalization(ckpt.meta, dtype)
    raw = load_images([Path(args.image)], shape)
    image = raw[0].astype(dtype) / 255
    x = ((image - mean) / std)[None].astype(dtype)
    dx, pred = saliency(model, x, args.target)
    logits = model.forward(x)[0]
    prob = np.exp(logits - logits.max())
    prob /= prob.sum()
    names = ckpt.meta.get("class_names") or [str(i) for i in range(prob.size)]
    p = int(pred[0])
    target = p if args.target is None else args.target
    # dx is with respect to the normalised input; dividing by std makes it per raw pixel value.
    fig = saliency_figure(image, dx[0] / std, target_name=names[target],
                          title=f"{Path(args.image).name}: predicted {names[p]} "
                                f"({prob[p]:.1%})")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=100, facecolor="white")
    print(f"{args.image}: predicted {names[p]} ({prob[p]:.1%}); ∂loss/∂input for class "
          f"{names[target]} drawn in {out}")
    return 0
