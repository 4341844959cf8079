"""``rot180.functional.tuning``: the engine's settings in one frozen dataclass, changed in a
``with`` block (a ContextVar), checked on the way in."""

from __future__ import annotations

import dataclasses
import math
import subprocess
import sys
import threading

import numpy as np
import pytest

from rot180.functional import Tuning, get_tuning, plan, realisations, tuning


def test_an_unknown_setting_is_a_type_error_listing_the_settings() -> None:
    with pytest.raises(TypeError, match=r"unknown setting\(s\) 'chunk_size'; the settings are "
                                        r"force, threads, helper, chunk_bytes"):
        with tuning(chunk_size=1):
            pass


@pytest.mark.parametrize(("name", "value", "want"), [
    ("chunk_bytes", "4096", "an int"), ("helper", 1, "True or False"),
    ("threads", True, "an int"), ("force", 3, r"a realisation's name \(a str\) or None"),
    ("stack_min_fill", None, "a real number"),
])
def test_a_value_of_the_wrong_type_is_a_type_error(name, value, want) -> None:
    with pytest.raises(TypeError, match=rf"tuning: {name} must be {want}, got "):
        with tuning(**{name: value}):
            pass


@pytest.mark.parametrize(("name", "value"), [
    ("threads", 0), ("chunk_bytes", 0), ("stack_min_fill", math.nan), ("kn2row_ratio", -1),
    ("threads", 10**6),
])
def test_a_value_out_of_range_is_a_value_error(name, value) -> None:
    with pytest.raises(ValueError, match=rf"tuning: {name} must be "):
        with tuning(**{name: value}):
            pass


def test_force_must_name_a_realisation_of_the_table() -> None:
    names = [r.name for r in realisations()]
    assert {"direct", "im2col", "kn2row", "pointwise", "clipped", "depthwise",
            "winograd"} <= set(names)
    with pytest.raises(ValueError, match=r"force='fft' is not a realisation; the "
                                         r"realisations are 'direct', 'im2col'"):
        with tuning(force="fft"):
            pass
    with pytest.raises(ValueError, match="is not a realisation"):
        Tuning(force="im2row")


def test_blocks_nest_and_each_restores_what_was_before() -> None:
    outer_before = get_tuning()
    with tuning(chunk_bytes=123) as outer:
        assert get_tuning() is outer and outer.chunk_bytes == 123
        with tuning(threads=1, chunk_bytes=7) as inner:
            assert (inner.threads, inner.chunk_bytes) == (1, 7)
            assert inner.fold_max_row == outer.fold_max_row
        assert get_tuning() is outer
    assert get_tuning() is outer_before


def test_leaving_a_block_by_an_exception_restores_the_settings() -> None:
    before = get_tuning()
    with pytest.raises(RuntimeError, match="inside"):
        with tuning(helper=False, force="im2col"):
            raise RuntimeError("inside")
    assert get_tuning() is before


def test_a_block_does_not_leak_into_another_thread() -> None:
    seen: dict[str, Tuning] = {}
    ready, done = threading.Event(), threading.Event()

    def other() -> None:
        ready.wait(10)
        seen["other"] = get_tuning()
        done.set()

    thread = threading.Thread(target=other)
    thread.start()
    with tuning(threads=1, chunk_bytes=99):
        ready.set()
        assert done.wait(10)
        seen["here"] = get_tuning()
    thread.join(10)
    assert seen["here"].chunk_bytes == 99
    assert seen["other"] == Tuning()            # a fresh thread starts from the defaults


def test_settings_are_frozen_and_hashable_plan_keys() -> None:
    t = Tuning()
    with pytest.raises(dataclasses.FrozenInstanceError):
        t.threads = 2                           # type: ignore[misc]
    assert hash(t) == hash(Tuning()) and t == Tuning()
    assert dataclasses.replace(t, threads=2) != t


def test_pure_numpy_in_the_environment_turns_the_helper_off_by_default() -> None:
    code = "from rot180.functional import Tuning; print(Tuning().helper)"
    env = {"ROT180_PURE_NUMPY": "1", "PATH": ""}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         env=env, timeout=60)
    assert out.stdout.strip() == "False", out.stderr[-400:]


def test_numpy_numbers_are_taken_and_stored_as_python_ones() -> None:
    """The fields go through the one checks module (rot180.functional._validation), as every
    other argument: numpy integers and bools are taken, as conv takes np.int64 strides."""
    with tuning(threads=np.int64(2), narrow_tiles=np.True_, stack_min_fill=np.float32(0.5)) as t:
        assert (t.threads, t.narrow_tiles, t.stack_min_fill) == (2, True, 0.5)
        assert type(t.threads) is int and type(t.narrow_tiles) is bool
        assert type(t.stack_min_fill) is float


_THRESHOLDS = ["winograd_min_channels", "winograd_min_size", "winograd_min_channels_any",
               "winograd_min_tiles_any", "winograd_wide_min", "winograd_wide_max",
               "winograd_wide_size", "winograd_min_tiles", "winograd_chunk_tiles",
               "winograd_fused_max_channels", "winograd_fused_min_channels",
               "winograd_fused_chunk_tiles", "kn2row_wide_max_positions",
               "depthwise_max_cm", "depthwise_min_groups", "depthwise_min_row"]


@pytest.mark.parametrize("name", _THRESHOLDS)
def test_the_specialised_thresholds_are_checked_fields(name) -> None:
    """Each of winograd's, kn2row's and depthwise's numbers is a field of its own, documented,
    checked: a wrong type is a TypeError and a negative count (a chunk of no tiles) a
    ValueError, both naming the field; numpy integers are taken."""
    assert name in (Tuning.__doc__ or ""), f"{name} has no Attributes entry"
    low = 1 if name in ("winograd_chunk_tiles", "winograd_fused_chunk_tiles") else 0
    for bad in ("8", 8.0, True, None):
        with pytest.raises(TypeError, match=rf"tuning: {name} must be an int, got "):
            with tuning(**{name: bad}):
                pass
    with pytest.raises(ValueError, match=rf"tuning: {name} must be >= {low}, got {low - 1}"):
        with tuning(**{name: low - 1}):
            pass
    with tuning(**{name: np.int64(low)}) as t:
        assert getattr(t, name) == low and type(getattr(t, name)) is int


def test_a_changed_field_is_a_new_plan_and_leaving_the_block_restores_the_old() -> None:
    """Plans are cached on the Tuning object (and the thread count): the same call planned
    before, inside and after a block that moves one threshold takes the block's choice inside
    only. (The 1 x 1 channel pair per group: depthwise by default, not with max_cm 0.)"""
    shape, w = (4, 16, 20, 20), (16, 1, 3, 3)

    def chosen() -> set[str]:
        p = plan(shape, w, padding=1, groups=16, which="forward")
        return {leaf.realisation for leaf in p.leaves()}

    if "depthwise" not in chosen():
        pytest.skip("depthwise is not the default choice here (helper off or not built)")
    with tuning(depthwise_max_cm=0):
        assert "depthwise" not in chosen()
        with tuning(depthwise_max_cm=1):
            assert chosen() == {"depthwise"}
    assert chosen() == {"depthwise"}
