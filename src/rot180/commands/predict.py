"""``rot180 predict``: classify image files (PNG/JPEG) with a trained checkpoint."""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from ..data.images import load_images
from ..train.card import probabilities
from ..train.checkpoint import load_checkpoint
from ._options import at_least_one

HELP = "classify PNG/JPEG images with a checkpoint; prints the top classes"


def add_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = sub.add_parser("predict", help=HELP, description=HELP + ".")
    p.add_argument("checkpoint", help="a .safetensors checkpoint written by rot180 train")
    p.add_argument("images", nargs="+", help="image files; converted to the model's input size")
    p.add_argument("--top", type=at_least_one, default=3,
                   help="how many classes to show, >= 1 (default: 3)")
    return p


def run(args: argparse.Namespace) -> int:
    ckpt = load_checkpoint(args.checkpoint)
    card = ckpt.card()
    model = ckpt.build_model().eval()
    dtype = next(iter(model.parameters())).dtype
    raw = load_images([Path(p) for p in args.images], card.image_shape)
    prob = probabilities(model.forward(card.model_input(raw, dtype)))
    k = min(args.top, prob.shape[1])
    for path, pr in zip(args.images, prob, strict=True):
        order = np.argsort(-pr, kind="stable")[:k]
        tops = "  ".join(f"{card.class_names[i]}: {pr[i]:.1%}" for i in order)
        print(f"{path}: {card.class_names[order[0]]}   ({tops})")
    return 0
