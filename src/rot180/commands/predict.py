"""``rot180 predict``: classify image files (PNG/JPEG) with a trained checkpoint."""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from ..data import normalize
from ..train.checkpoint import load_checkpoint
from ..train.images import load_images

HELP = "classify PNG/JPEG images with a checkpoint; prints the top classes"


def add_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = sub.add_parser("predict", help=HELP, description=HELP + ".")
    p.add_argument("checkpoint", help="a .safetensors checkpoint written by rot180 train")
    p.add_argument("images", nargs="+", help="image files; converted to the model's input size")
    p.add_argument("--top", type=int, default=3, help="how many classes to show (default: 3)")
    return p


def run(args: argparse.Namespace) -> int:
    ckpt = load_checkpoint(args.checkpoint)
    model = ckpt.build_model()
    model.eval()
    shape = tuple(ckpt.meta.get("image_shape", (1, 28, 28)))
    names = ckpt.meta.get("class_names") or [str(i) for i in range(10)]
    norm = ckpt.meta.get("data", {})
    dtype = next(iter(model.parameters())).dtype
    raw = load_images([Path(p) for p in args.images], shape)
    max_value = float(norm.get("max_value", 255.0))
    x = normalize(np.round(raw * (max_value / 255.0)), mean=norm.get("mean", (0.0,)),
                  std=norm.get("std", (1.0,)), max_value=max_value, dtype=dtype)
    logits = model.forward(x)
    z = logits - logits.max(axis=1, keepdims=True)
    prob = np.exp(z) / np.exp(z).sum(axis=1, keepdims=True)
    k = max(1, min(args.top, prob.shape[1]))
    for path, pr in zip(args.images, prob, strict=True):
        order = np.argsort(-pr, kind="stable")[:k]
        tops = "  ".join(f"{names[i]}: {pr[i]:.1%}" for i in order)
        print(f"{path}: {names[order[0]]}   ({tops})")
    return 0
