"""Shared test helpers: random convolution configurations.

A :class:`ConvConfig` is one valid call of :func:`rot180.functional.conv`: shapes, stride,
padding (in any accepted form), dilation and groups. Configurations come from one drawing
routine, fed either by a seeded numpy generator (:func:`random_configs`, for
``pytest.mark.parametrize``) or by hypothesis (:func:`conv_configs`, a strategy that shrinks).

The resolved padding and every size are computed here from the definitions, not with
:mod:`rot180.functional.shapes`, so that tests using them stay independent oracles. Sizes are
built backwards from the output: pick ``o`` and the stride remainder ``a`` per dimension, then
``i = (o-1)s + a + d(k-1) + 1 - p_lo - p_hi``; half the strided dimensions get ``a != 0`` on
purpose, since that is where hand-written backward passes go wrong.

Options: ``--rot180-force=NAME`` runs every test with ``tuning(force=NAME)`` (a realisation
of ``rot180.functional.realisations()``), ``--rot180-tuning=key=value,...`` with any
settings of :class:`rot180.functional.Tuning` (``threads=1,chunk_bytes=1``), so that the whole
suite can be run with each realisation forced. The settings hold in the tests' own thread
(and the engine's workers); a test's own ``with tuning(...)`` blocks nest inside them.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

# Every run draws the same examples: CI is reproducible, and a red run is a real bug rather
# than an unlucky draw. (Exploration with fresh random examples: HYPOTHESIS_PROFILE=explore.)
settings.register_profile("ci", derandomize=True, database=None,
                          suppress_health_check=[HealthCheck.too_slow])
settings.register_profile("explore", derandomize=False)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))

PADDING_FORMS = ("int", "tuple", "pairs", "valid", "same", "full")
CHANNEL_MODES = ("plain", "grouped", "depthwise")


@dataclass(frozen=True)
class ConvConfig:
    """One valid convolution configuration; ``batch=None`` means an unbatched input."""

    nd: int
    batch: int | None
    c_in: int
    c_out: int
    groups: int
    kernel: tuple[int, ...]
    stride: int | tuple[int, ...]
    dilation: int | tuple[int, ...]
    padding: Any            # exactly what is passed as ``padding=``
    form: str               # one of PADDING_FORMS
    pads: tuple[tuple[int, int], ...]   # padding resolved from the definition
    spatial: tuple[int, ...]

    @property
    def strides(self) -> tuple[int, ...]:
        return _per_dim(self.stride, self.nd)

    @property
    def dilations(self) -> tuple[int, ...]:
        return _per_dim(self.dilation, self.nd)

    @property
    def span(self) -> tuple[int, ...]:
        """``d(k-1)`` per dimension."""
        return tuple(d * (k - 1) for k, d in zip(self.kernel, self.dilations, strict=True))

    @property
    def out_spatial(self) -> tuple[int, ...]:
        return tuple((i + lo + hi - t - 1) // s + 1 for i, (lo, hi), t, s in
                     zip(self.spatial, self.pads, self.span, self.strides, strict=True))

    @property
    def remainders(self) -> tuple[int, ...]:
        """The stride remainder ``a = (i + p_lo + p_hi - d(k-1) - 1) mod s`` per dimension."""
        return tuple((i + lo + hi - t - 1) % s for i, (lo, hi), t, s in
                     zip(self.spatial, self.pads, self.span, self.strides, strict=True))

    @property
    def lead(self) -> tuple[int, ...]:
        return () if self.batch is None else (self.batch,)

    @property
    def x_shape(self) -> tuple[int, ...]:
        return (*self.lead, self.c_in, *self.spatial)

    @property
    def w_shape(self) -> tuple[int, ...]:
        return (self.c_out, self.c_in // self.groups, *self.kernel)

    @property
    def z_shape(self) -> tuple[int, ...]:
        return (*self.lead, self.c_out, *self.out_spatial)

    @property
    def kwargs(self) -> dict[str, Any]:
        """Keyword arguments for conv / conv_grad_input / conv_grad_weight."""
        return {"stride": self.stride, "padding": self.padding, "dilation": self.dilation,
                "groups": self.groups}

    @property
    def symmetric(self) -> bool:
        return all(lo == hi for lo, hi in self.pads)

    def arrays(self, rng: np.random.Generator, dtype: type = np.float64
               ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Random ``x, w, b, dz`` of this configuration's shapes."""
        return tuple(rng.standard_normal(shape).astype(dtype)
                     for shape in (self.x_shape, self.w_shape, (self.c_out,), self.z_shape))

    def __str__(self) -> str:
        n = "u" if self.batch is None else self.batch
        return (f"{self.nd}d-n{n}-c{self.c_in}to{self.c_out}g{self.groups}-i{self.spatial}"
                f"-k{self.kernel}-s{self.stride}-d{self.dilation}-p{self.padding!r}"
                ).replace(" ", "")


def _per_dim(v: int | tuple[int, ...], nd: int) -> tuple[int, ...]:
    return (v,) * nd if isinstance(v, int) else tuple(v)


@dataclass
class _Drawer:
    """Two primitives (an int in [lo, hi], an element of a sequence) over any random source."""

    integer: Callable[[int, int], int]
    choice: Callable[[Sequence], Any]

    def coin(self, one_in: int = 2) -> bool:
        return self.integer(1, one_in) == 1


def _numpy_drawer(rng: np.random.Generator) -> _Drawer:
    return _Drawer(lambda lo, hi: int(rng.integers(lo, hi + 1)),
                   lambda seq: seq[int(rng.integers(len(seq)))])


def _hypothesis_drawer(draw: Callable) -> _Drawer:
    return _Drawer(lambda lo, hi: draw(st.integers(lo, hi)),
                   lambda seq: draw(st.sampled_from(seq)))


def _int_or_tuple(r: _Drawer, nd: int, hi: int) -> int | tuple[int, ...]:
    """An int (same for every dimension) or a per-dimension tuple, each in [1, hi]."""
    if r.coin():
        return r.integer(1, hi)
    return tuple(r.integer(1, hi) for _ in range(nd))


def _draw_config(r: _Drawer, *, nds: Sequence[int] = (1, 2, 3),
                 forms: Sequence[str] = PADDING_FORMS, max_batch: int = 3,
                 unbatched: bool = True, max_kernel: int = 5, max_stride: int = 3,
                 max_dilation: int = 3, max_out: int = 3, max_channels: int = 3,
                 max_padding: int = 3) -> ConvConfig:
    nd = r.choice(tuple(nds))
    batch = None if unbatched and r.coin(6) else r.integer(1, max_batch)
    mode = r.choice(CHANNEL_MODES)
    if mode == "plain":
        groups, c_in, c_out = 1, r.integer(1, max_channels), r.integer(1, max_channels)
    elif mode == "grouped":
        groups = r.integer(2, 3)
        c_in = groups * r.integer(1, 2)
        c_out = groups * r.integer(1, 2)
    else:   # depthwise: groups = C_in, C_out a multiple of C_in (the channel multiplier)
        groups = c_in = r.integer(1, 4)
        c_out = groups * r.integer(1, 2)
    kernel = tuple(r.integer(1, max_kernel) for _ in range(nd))
    form = r.choice(tuple(forms))
    stride = 1 if form == "same" else _int_or_tuple(r, nd, max_stride)
    if form == "same" and r.coin():
        stride = (1,) * nd
    dilation = _int_or_tuple(r, nd, max_dilation)
    strides, dilations = _per_dim(stride, nd), _per_dim(dilation, nd)
    span = [d * (k - 1) for k, d in zip(kernel, dilations, strict=True)]

    padding: Any
    if form == "int":
        p = r.integer(0, max_padding)
        padding, pads = p, ((p, p),) * nd
    elif form == "tuple":
        padding = tuple(r.integer(0, max_padding) for _ in range(nd))
        pads = tuple((p, p) for p in padding)
    elif form == "pairs":
        # One (low, high) pair per dimension; a lone int may stand for (p, p) beside a pair.
        entries = []
        for ax in range(nd):
            lo, hi = r.integer(0, max_padding), r.integer(0, max_padding)
            entries.append(lo if ax > 0 and lo == hi and r.coin() else (lo, hi))
        padding = tuple(entries)
        pads = tuple(e if isinstance(e, tuple) else (e, e) for e in entries)
    elif form == "valid":
        padding, pads = "valid", ((0, 0),) * nd
    elif form == "same":
        padding, pads = "same", tuple((t // 2, t - t // 2) for t in span)
    elif form == "full":
        padding, pads = "full", tuple((t, t) for t in span)
    else:
        raise ValueError(f"unknown padding form {form!r}")

    spatial = []
    for s, t, (lo, hi) in zip(strides, span, pads, strict=True):
        o = r.integer(1, max_out)
        if form == "same":
            spatial.append(o)
            continue
        a = r.integer(1, s - 1) if s > 1 and r.coin() else r.integer(0, s - 1)
        i = (o - 1) * s + a + t + 1 - lo - hi
        while i < 1:        # too much padding for this o: grow o, keeping the remainder a
            i += s
        spatial.append(i)
    return ConvConfig(nd, batch, c_in, c_out, groups, kernel, stride, dilation, padding, form,
                      pads, tuple(spatial))


def random_configs(n: int, seed: int, **limits: Any) -> list[ConvConfig]:
    """``n`` configurations from a seeded generator (for ``pytest.mark.parametrize``).

    ``limits`` are the keyword options of the drawing routine: ``nds``, ``forms``,
    ``max_batch``, ``unbatched``, ``max_kernel``, ``max_stride``, ``max_dilation``,
    ``max_out``, ``max_channels``, ``max_padding``.
    """
    r = _numpy_drawer(np.random.default_rng(seed))
    return [_draw_config(r, **limits) for _ in range(n)]


@st.composite
def conv_configs(draw: Callable, **limits: Any) -> ConvConfig:
    """Hypothesis strategy for a :class:`ConvConfig`; same ``limits`` as :func:`random_configs`."""
    return _draw_config(_hypothesis_drawer(draw), **limits)


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("rot180")
    group.addoption("--rot180-force", metavar="NAME", default=None,
                    help="run every test with rot180.functional.tuning(force=NAME)")
    group.addoption("--rot180-tuning", metavar="KEY=VALUE,...", default=None,
                    help="run every test with these rot180.functional.tuning settings "
                         "(ints, floats, true/false, none or names)")


def _value(text: str) -> object:
    low = text.strip().lower()
    if low in ("true", "false"):
        return low == "true"
    if low == "none":
        return None
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text.strip()


def _tuning_options(config: pytest.Config) -> dict[str, object]:
    settings: dict[str, object] = {}
    for item in filter(None, (config.getoption("--rot180-tuning") or "").split(",")):
        key, sep, value = item.partition("=")
        if not sep:
            raise pytest.UsageError(f"--rot180-tuning: expected key=value, got {item!r}; e.g. "
                                    "--rot180-tuning=threads=1,chunk_bytes=4096.")
        settings[key.strip()] = _value(value)
    if config.getoption("--rot180-force") is not None:
        settings["force"] = config.getoption("--rot180-force")
    return settings


def pytest_configure(config: pytest.Config) -> None:
    settings = _tuning_options(config)
    if settings:
        from rot180.functional import tuning

        try:                                    # a wrong name stops the run at once
            with tuning(**settings):
                pass
        except (TypeError, ValueError) as e:
            raise pytest.UsageError(str(e)) from None
    config.rot180_tuning = settings             # type: ignore[attr-defined]


def pytest_report_header(config: pytest.Config) -> str | None:
    settings = getattr(config, "rot180_tuning", {})
    return f"rot180 tuning: {settings}" if settings else None


@pytest.fixture(scope="session", autouse=True)
def _rot180_tuning(request: pytest.FixtureRequest):
    """The ``--rot180-force`` / ``--rot180-tuning`` settings around the whole session
    (session-scoped, so hypothesis's tests take it too)."""
    settings = getattr(request.config, "rot180_tuning", {})
    if not settings:
        yield
        return
    from rot180.functional import tuning

    with tuning(**settings):
        yield


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(20160723)


@pytest.fixture(scope="module")
def one_thread():
    """One BLAS thread (and one PyTorch thread when the module uses torch) for a test module:
    on a shared 2-core machine threads only wait for each other, and the trainer's bit-for-bit
    repeats hold for a fixed thread count. Use with ``pytest.mark.usefixtures("one_thread")``."""
    import sys

    from threadpoolctl import threadpool_limits

    torch = sys.modules.get("torch")
    before = torch.get_num_threads() if torch is not None else None
    if torch is not None:
        torch.set_num_threads(1)
    with threadpool_limits(1):
        yield
    if torch is not None:
        torch.set_num_threads(before)


# --- the explain page's browser (tests/_browser.py): one per test module that asks ---

@pytest.fixture(scope="module")
def html_path(tmp_path_factory):
    from rot180.explain import write_page

    return write_page(tmp_path_factory.mktemp("page") / "explain.html")


@pytest.fixture(scope="module")
def browser(html_path):
    from _browser import start_browser

    driver, profile = start_browser()
    driver.get(html_path.as_uri())
    yield driver
    from _browser import stop_browser

    stop_browser(driver, profile)


@pytest.fixture(autouse=True)
def _no_console_errors(request):
    yield
    if "browser" in request.fixturenames:
        from _browser import severe

        assert severe(request.getfixturevalue("browser")) == []
