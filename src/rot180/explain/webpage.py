"""``rot180 explain --html``: one self-contained interactive page (HTML, CSS and JS inline).

(Named ``webpage``, not ``page``: a submodule ``page`` would be bound over the function
:func:`rot180.explain.page` the first time it is imported.)

The page computes everything itself, in ``_page/page.js`` (the index arithmetic of
:mod:`rot180.functional.shapes`) and ``_page/pool.js`` (the pooling view, the arithmetic of
:mod:`rot180.functional._poolspec`), so a student can change every setting offline. What Python
knows and the page needs (the palette, the size limit, the library's error messages) is put
into the page as one JSON blob by :func:`page_config`; nothing is copied by hand.

The error messages are the library's own: each template is the message
:func:`rot180.functional.conv` raises for a sentinel layer, with the sentinel values replaced
by ``{name}`` placeholders. A change of wording in the library changes the page; a change that
drops a value the page fills in makes :func:`messages` raise.
"""

from __future__ import annotations

import html
import json
from importlib import resources
from pathlib import Path

import numpy as np

from . import _draw as D

__all__ = ["Page", "messages", "page", "page_config", "page_html", "pool_messages", "write_page"]

#: Most cells per map the page draws (more is unreadable, and the unrolled matrix grows as
#: the square): the same limit as ``rot180 explain``.
MAX_CELLS = 400
MAX_CHANNELS = 4


def _caught(x_shape: tuple[int, ...], w_shape: tuple[int, ...], **kw: object) -> str:
    from ..functional import conv

    try:
        conv(np.zeros(x_shape), np.zeros(w_shape), **kw)
    except (ValueError, TypeError) as e:
        return str(e)
    raise RuntimeError(f"conv accepted the sentinel layer {x_shape}, {w_shape}, {kw}")


def _template(msg: str, subs: list[tuple[str, str]]) -> str:
    for literal, slot in subs:
        if msg.count(literal) != 1:
            raise RuntimeError(f"cannot template the library message {msg!r}: {literal!r} "
                               f"occurs {msg.count(literal)} times")
        msg = msg.replace(literal, slot)
    return msg


def _pool_caught(shape: tuple[int, ...], *args: object) -> str:
    from ..functional import max_pool

    try:
        max_pool(np.zeros(shape), *args)
    except (ValueError, TypeError) as e:
        return str(e)
    raise RuntimeError(f"max_pool accepted the sentinel pooling {shape}, {args}")


def pool_messages() -> dict[str, str]:
    """The messages of :func:`rot180.functional.max_pool` / ``avg_pool`` (``_poolspec``) for
    the pooling view's invalid settings. ``{op}`` is ``max_pool`` or ``avg_pool``; the other
    placeholders are the values the check quotes (tuples as Python writes them)."""
    t, c, big = _template, _pool_caught, (1, 1, 1013, 5)
    op = ("max_pool:", "{op}:")
    return {
        "pool_zero_input": t(c((1, 1, 0, 1063), (2, 2)), [op, ("(1, 1, 0, 1063)", "{x_shape}")]),
        "pool_positive": t(c((1, 1, 5, 5), (0, 1069)),
                           [("kernel_size must", "{name} must"), ("(0, 1069)", "{value}"),
                            ("of 2 positive", "of {nd} positive")]),
        "pool_padding": t(c((1, 1, 5, 5), (2061, 2061), 2, (1033, 1033)),
                          [op, ("(1033, 1033)", "{pads}"), ("(2061, 2061)", "{ks}")]),
        "pool_larger": t(c(big, (4099, 1), (1, 1), (1031, 0)),
                         [op, ("axis 0:", "axis {ax}:"), ("kernel 4099", "kernel {k}"),
                          ("input 1013", "input {i}"), ("padding 1031", "padding {p}")]),
        "pool_larger_dilated": t(c(big, (1021, 1), (1, 1), (509, 0), (1031, 1)),
                                 [op, ("axis 0:", "axis {ax}:"), ("kernel 1021", "kernel {k}"),
                                  ("by 1031", "by {d}"), ("spans 1051621", "spans {span}"),
                                  ("input 1013", "input {i}"), ("padding 509", "padding {p}")]),
        "pool_empty": t(c(big, (2, 1), (1, 1), (1, 0), (1014, 1)),
                        [op, ("window 0 along", "window {q} along"),
                         ("axis 0 reads", "axis {ax} reads"),
                         ("kernel 2, dilation 1014 and padding 1 put",
                          "kernel {k}, dilation {d} and padding {p} put"),
                         ("size 1013.", "size {i}.")]),
    }


def messages() -> dict[str, str]:
    """The library's error messages for every invalid setting the page's controls can make.

    Placeholders: ``{w_shape}``, ``{x_shape}`` (Python tuple reprs), ``{groups}``, ``{c_out}``,
    ``{c_in}``, ``{stride}``, ``{dilation}``, ``{padding}`` (the value as the code snippet
    passes it), ``{stride_t}``, ``{nd}``, ``{ax}``, ``{extent}``, ``{i}``, ``{lo}``, ``{hi}``,
    ``{sum}``; the pooling view's as :func:`pool_messages`.
    """
    t = _template
    return {
        "zero_weight": t(_caught((3, 5), (1013, 0, 1019)), [("(1013, 0, 1019)", "{w_shape}")]),
        "groups_low": t(_caught((3, 5), (3, 3, 2), groups=0), [("got 0.", "got {groups}.")]),
        "groups_out": t(_caught((1037, 5), (1033, 1, 3), groups=1037),
                        [("(1033, 1, 3)", "{w_shape}"), ("=1037", "={groups}"),
                         ("=1033", "={c_out}")]),
        "stride": t(_caught((1, 5, 5, 5), (1, 1, 1, 1, 1), stride=-1039),
                    [("-1039", "{stride}"), ("of 3 positive", "of {nd} positive")]),
        "dilation": t(_caught((1, 5, 5, 5), (1, 1, 1, 1, 1), dilation=-1039),
                      [("-1039", "{dilation}"), ("of 3 positive", "of {nd} positive")]),
        "same_stride": t(_caught((1, 5), (1, 1, 3), padding="same", stride=1043),
                         [("(1043,)", "{stride_t}")]),
        "negative_padding": t(_caught((1, 5), (1, 1, 3), padding=-1049),
                              [("-1049", "{padding}")]),
        "groups_in": t(_caught((1051, 5), (1053, 1, 3), groups=1053),
                       [("(1051, 5)", "{x_shape}"), ("=1053", "={groups}"),
                        ("=1051", "={c_in}")]),
        "zero_input": t(_caught((1061, 0), (1, 1061, 3)), [("(1061, 0)", "{x_shape}")]),
        "extent": t(_caught((1, 1063), (1, 1, 1069), padding=((1087, 1091),), dilation=1097),
                    [("axis 0:", "axis {ax}:"), ("1171597", "{extent}"),
                     ("input 1063", "input {i}"), ("1087+1091", "{lo}+{hi}"),
                     ("3241", "{sum}")]),
        **pool_messages(),
        "too_big": (f"rot180 explain writes out every cell; a map of {{cells}} cells is too "
                    f"many to read (at most {MAX_CELLS}). Choose a smaller input or kernel, "
                    f"less padding, or fewer channels."),
        "not_int": "{name} must be a whole number, got \"{text}\". Type digits only.",
    }


def page_config(settings: dict | None = None) -> dict:
    """Everything the page takes from Python: palette, limits, messages, the opening layer."""
    return {
        "palette": {"taps": list(D.TAP_COLORS), "ink": D.INK, "delta": D.DELTA_FACE,
                    "pad": D.PAD_FACE, "stretch": D.STRETCH_FACE, "remainder": D.REMAINDER_FACE,
                    "input": D.TAP_COLORS[0], "output": D.TAP_COLORS[1]},
        "maxCells": MAX_CELLS, "maxChannels": MAX_CHANNELS,
        "messages": messages(),
        "settings": settings or {},
    }


def _asset(name: str) -> str:
    return resources.files(__package__).joinpath("_page", name).read_text(encoding="utf-8")


def page_html(settings: dict | None = None, *, title: str = "rot180: why the kernel turns"
              ) -> str:
    """The whole page as one string (CSS, JS and the config inline; no network).

    ``settings`` opens the page on a layer: keys ``input``, ``kernel`` (lists of 1 or 2 ints),
    ``stride``, ``dilation`` (int or list), ``padding`` (int, list, list of pairs, or
    ``"same"``/``"full"``/``"valid"``), ``channels`` ([C_in, C_out]), ``groups``,
    ``convention``.
    """
    blob = json.dumps(page_config(settings), ensure_ascii=True).replace("</", "<\\/")
    out = _asset("page.html")
    for key, value in (("{{TITLE}}", html.escape(title)), ("{{CSS}}", _asset("page.css")),
                       ("{{CONFIG}}", blob), ("{{POOLJS}}", _asset("pool.js")),
                       ("{{JS}}", _asset("page.js"))):
        out = out.replace(key, value)
    return out


class Page:
    """The page for Jupyter: displayed inline through ``_repr_html_`` (an iframe, so the page's
    script and styles stay apart from the notebook's)."""

    def __init__(self, text: str) -> None:
        self.html = text

    def _repr_html_(self) -> str:
        return (f'<iframe srcdoc="{html.escape(self.html, quote=True)}" '
                'style="width:100%;height:900px;border:0" title="rot180 explain"></iframe>')


def page(**settings: object) -> Page:
    """The interactive page, for a notebook cell: ``rot180.explain.page(input=[5, 5])``.

    Keyword arguments as the ``settings`` of :func:`page_html`.
    """
    return Page(page_html(dict(settings)))


def write_page(path: str | Path, settings: dict | None = None, *, overwrite: bool = False
               ) -> Path:
    """Write the page to ``path`` atomically; refuse to replace a different existing file
    unless ``overwrite=True`` (the same content is left as it is)."""
    from .._files import write_file

    path = Path(path)
    text = page_html(settings)
    if path.exists() and not overwrite:
        if path.is_file() and path.read_text(encoding="utf-8", errors="replace") == text:
            return path
        raise ValueError(f"{path} exists and differs from the page; pass overwrite=True "
                         "(--overwrite) to replace it, or choose another path.")
    write_file(path, text.encode("utf-8"), "page")
    return path
