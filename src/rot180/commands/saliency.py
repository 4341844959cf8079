"""``rot180 saliency``: which pixels of one image move a trained network's loss the most.

The gradient ``∂loss/∂input`` is the rot180 rule applied through every layer (see
:mod:`rot180.explain.saliency`); it is drawn beside the image, with the predicted class. The
image is read and normalised through the checkpoint's model card
(:meth:`rot180.train.card.ModelCard.model_input`), exactly as ``rot180 predict`` feeds it, so both
commands give the same class and probability.
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


def run(args: argparse.Namespace) -> int:
    from ..data.images import load_images
    from ..explain.saliency import saliency, saliency_figure
    from ..train import metrics as M
    from ..train.card import probabilities
    from ..train.checkpoint import load_checkpoint
    from ._options import figure_path

    out = figure_path(args.out)
    ckpt = load_checkpoint(args.checkpoint)
    card = ckpt.card()
    if args.target is not None and not 0 <= args.target < card.num_classes:
        raise ValueError(f"--target must be a class index in 0..{card.num_classes - 1} (this "
                         f"checkpoint's {card.num_classes} classes), got {args.target}.")
    model = ckpt.build_model().eval()
    dtype = next(iter(model.parameters())).dtype
    raw = load_images([Path(args.image)], card.image_shape)
    x = card.model_input(raw, dtype)   # exactly what predict feeds the model
    dx, pred = saliency(model, x, args.target)
    prob = probabilities(model.forward(x))[0]
    p = int(pred[0])
    target = p if args.target is None else args.target
    image = raw[0].astype(dtype) / 255
    # dx is with respect to the normalised input x = (image - mean) / std (up to the rounding
    # to the data set's scale): dividing by std makes it per displayed pixel value.
    std = np.asarray(card.std, dtype).reshape(-1, 1, 1)
    names = card.class_names
    fig = saliency_figure(image, dx[0] / std, target_name=names[target],
                          title=f"{Path(args.image).name}: predicted {names[p]} "
                                f"({prob[p]:.1%})")
    M.save_figure(fig, out, dpi=100, facecolor="white")
    print(f"{args.image}: predicted {names[p]} ({prob[p]:.1%}); ∂loss/∂input for class "
          f"{names[target]} drawn in {out}")
    return 0
