"""``rot180 explain``: derive, prove and draw why the backward pass rotates the kernel by 180°.

``rot180 explain`` prints, for the layer you choose, the forward sums, the unrolled matrix and
its transpose, the input deltas by the chain rule, the stretched and padded delta with the
rotated kernel that slides over it, and whether the two agree in every cell (checked with
SymPy). With no options it is the source article's example: a 3x3 input, a 2x2 kernel and the
article's convention, a true convolution forward (its table starts ``δ11·w22``).
``rot180 explain pooling`` does the same for the pooling upsample rule on numbers.
"""

from __future__ import annotations

import argparse
import math
import sys

HELP = "derive, verify and draw why the backward pass rotates the kernel by 180°"
TOPICS = ("conv", "pooling")
MAX_CELLS = 400   # a symbolic derivation of more input cells is unreadable (and slow)


def _ints(text: str, sep: str, name: str) -> tuple[int, ...]:
    try:
        values = tuple(int(v) for v in text.split(sep))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"invalid {name} {text!r}: expected integers separated by {sep!r}"
        ) from None
    if len(values) not in (1, 2) or any(v < 0 for v in values):
        raise argparse.ArgumentTypeError(
            f"invalid {name} {text!r}: expected 1 or 2 non-negative integers (1-D or 2-D)"
        )
    return values


def sizes(text: str) -> tuple[int, ...]:
    """``"3x3" -> (3, 3)``, ``"5" -> (5,)``."""
    return _ints(text.lower(), "x", "size")


def per_axis(text: str) -> int | tuple[int, ...]:
    """``"2" -> 2`` (every axis), ``"2,1" -> (2, 1)``."""
    values = _ints(text, ",", "value")
    return values[0] if len(values) == 1 else values


def padding(text: str) -> int | str | tuple:
    """An int, ``"1,2"`` per axis, ``"1:0,2"`` (``low:high`` pairs), or valid / same / full."""
    if text in ("valid", "same", "full"):
        return text
    if ":" not in text:
        return per_axis(text)
    out = []
    for part in text.split(","):
        pair = _ints(part, ":", "padding")
        out.append(pair if len(pair) == 2 else pair[0])
    return tuple(out)


def channels(text: str) -> tuple[int, int]:
    values = _ints(text, ",", "channels")
    if len(values) != 2 or min(values) < 1:
        raise argparse.ArgumentTypeError(f"invalid channels {text!r}: expected IN,OUT, e.g. 2,3")
    return values[0], values[1]


def add_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = sub.add_parser(
        "explain", help=HELP, description=HELP + ". With no options: the article's example "
        "(3x3 input, 2x2 kernel, convolution convention).",
        epilog="examples: rot180 explain; rot180 explain --input 5x5 --kernel 3x3 --stride 2 "
        "--padding 1 --convention correlation; rot180 explain --input 7 --kernel 3 "
        "--dilation 2; rot180 explain pooling --mode mean; rot180 explain --out figures")
    p.add_argument("topic", nargs="?", choices=TOPICS, default="conv",
                   help="conv (default): a convolution layer; pooling: the pooling upsample rule")
    p.add_argument("--input", type=sizes, default=None, metavar="SIZE",
                   help="input size, e.g. 3x3 (2-D) or 5 (1-D); default 3x3 (pooling: 4x4)")
    p.add_argument("--kernel", type=sizes, default=None, metavar="SIZE",
                   help="kernel (pooling window) size; default 2x2")
    p.add_argument("--stride", type=per_axis, default=None, metavar="S",
                   help="stride, one int or one per axis (2,1); default 1 (pooling: the window)")
    p.add_argument("--padding", type=padding, default=None, metavar="P",
                   help="int, per axis (1,2), low:high pairs (1:0,2), or valid/same/full; "
                   "default 0")
    p.add_argument("--dilation", type=per_axis, default=None, metavar="D",
                   help="dilation, one int or one per axis; default 1 (none)")
    p.add_argument("--channels", type=channels, default=None, metavar="IN,OUT",
                   help="input and output channels; the delta of input channel i sums over "
                   "the output channels j through kernel w[j, i]")
    p.add_argument("--convention", choices=("correlation", "convolution"), default=None,
                   help="the forward pass: convolution (default, as in the article: z = x * w) "
                   "or correlation (what CNN libraries compute)")
    p.add_argument("--mode", choices=("max", "mean"), default=None,
                   help="pooling only: max (default) or mean")
    p.add_argument("--format", choices=("text", "markdown", "latex"), default="text")
    p.add_argument("--out", metavar="DIR", default=None,
                   help="also write the figures (PNG, SVG and an animated GIF) into DIR")
    p.add_argument("--html", metavar="PATH", default=None,
                   help="write the interactive page (one self-contained HTML file, no network) "
                   "to PATH, opened on the layer the other options give, and stop")
    p.add_argument("--overwrite", action="store_true",
                   help="with --html: replace PATH if it exists and differs")
    p.add_argument("--no-progress", dest="progress", action="store_false",
                   help="no progress bar while --out draws (there is none when stderr is not "
                   "a terminal)")
    return p


def _only(args: argparse.Namespace, topic: str, names: tuple[str, ...]) -> None:
    given = [f"--{n}" for n in names if getattr(args, n) is not None]
    if given:
        other = "rot180 explain pooling" if topic == "conv" else "rot180 explain (conv)"
        verb = "applies" if len(given) == 1 else "apply"
        raise ValueError(f"{', '.join(given)} {verb} only to {other}; drop it or switch topic.")


def _check_size(spatial: tuple[int, ...], what: str, *, limit: int = MAX_CELLS,
                fix: str = "a smaller --input") -> None:
    cells = math.prod(spatial)
    if cells > limit:
        raise ValueError(
            f"rot180 explain writes out every cell; a {what} of {'x'.join(map(str, spatial))} "
            f"({cells} cells) is too many to read (at most {limit}). Choose {fix}.")


def _run_pooling(args: argparse.Namespace) -> int:
    from ..explain.document import render
    from ..explain.figures import pooling_figure
    from ..explain.pooling import pooling_example, pooling_report

    _only(args, "pooling", ("dilation", "channels", "convention"))
    spatial = args.input or (4, 4)
    kernel = args.kernel or (2,) * len(spatial)
    pad = 0 if args.padding is None else args.padding
    if isinstance(pad, str) or (isinstance(pad, tuple) and any(isinstance(v, tuple) for v in pad)):
        raise ValueError(f"pooling takes a symmetric int padding per axis, got {pad!r}.")
    _check_size(spatial, "pooling example")
    mode = args.mode or "max"
    ex = pooling_example(mode, spatial, kernel, args.stride, pad)
    print(render(pooling_report(ex), args.format), end="")
    if args.out:
        from pathlib import Path

        from ..explain._draw import save

        other = pooling_example("mean" if mode == "max" else "max", spatial, kernel,
                                args.stride, pad)
        paths = save(pooling_figure([ex, other]), Path(args.out), "pooling")
        print(f"wrote {', '.join(str(p) for p in paths)}", file=sys.stderr)
    return 0 if ex.verified else 1


def _run_html(args: argparse.Namespace) -> int:
    from ..explain.webpage import write_page

    if args.topic == "pooling" or args.mode is not None:
        raise ValueError("--html writes the whole page (the pooling view is on it); drop "
                         "'pooling' and --mode.")
    settings = {"input": args.input, "kernel": args.kernel, "stride": args.stride,
                "padding": args.padding, "dilation": args.dilation,
                "channels": args.channels, "convention": args.convention}
    path = write_page(args.html, {k: v for k, v in settings.items() if v is not None},
                      overwrite=args.overwrite)
    print(f"wrote {path}", file=sys.stderr)
    return 0


def run(args: argparse.Namespace) -> int:
    if getattr(args, "html", None):
        return _run_html(args)
    if args.topic == "pooling":
        return _run_pooling(args)
    _only(args, "conv", ("mode",))
    from ..explain.document import render
    from ..explain.report import conv_report
    from ..explain.symbolic import derive_input_gradient

    spatial = args.input or (3, 3)
    kernel = args.kernel or (2,) * len(spatial)
    cells = math.prod(spatial) * (args.channels[0] if args.channels else 1)
    if cells > MAX_CELLS:
        raise ValueError(
            f"rot180 explain derives every cell symbolically; {cells} input cells is too many "
            f"to read (at most {MAX_CELLS}). Choose a smaller --input or fewer --channels."
        )
    padding = 0 if args.padding is None else args.padding
    if not isinstance(padding, str):   # the padded input is drawn and derived cell by cell too
        from ..functional.shapes import as_tuple, resolve_padding

        nd = len(spatial)
        try:
            pairs = resolve_padding(padding, as_tuple(kernel, nd, "--kernel"),
                                    as_tuple(args.dilation or 1, nd, "--dilation"))
        except (ValueError, TypeError):
            pairs = ((0, 0),) * nd   # inconsistent settings: the derivation says what is wrong
        _check_size(tuple(i + lo + hi for i, (lo, hi) in zip(spatial, pairs, strict=True)),
                    "padded input", limit=4 * MAX_CELLS, fix="less --padding")
    # (0 is not "unset": stride 0 and dilation 0 go to the library, which refuses them)
    d = derive_input_gradient(spatial, kernel, stride=1 if args.stride is None else args.stride,
                              padding=padding,
                              dilation=1 if args.dilation is None else args.dilation,
                              convention=args.convention or "convolution",
                              channels=args.channels)
    print(render(conv_report(d), args.format), end="")
    if args.out:
        from ..explain.figures import write_figures

        paths = write_figures(d, args.out, progress=args.progress and sys.stderr.isatty())
        print(f"wrote {len(paths)} figure files to {args.out}: "
              f"{', '.join(p.name for p in paths)}", file=sys.stderr)
    return 0 if d.verified else 1
