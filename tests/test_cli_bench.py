"""``rot180 bench``: layer specs, the table, JSON, the engine switch and its errors.

Only structure and sanity are asserted (times are positive, rates follow from them); speed
itself is never asserted in tests.
"""

from __future__ import annotations

import argparse
import ast
import json
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rot180 import cli
from rot180.commands import bench
from rot180.functional import _direct, get_tuning, tuning


def test_parse_layer_reads_every_rank() -> None:
    assert bench.parse_layer("64,32,32,32:64,3,1,1") == bench.Layer(64, 32, (32, 32), 64, 3, 1, 1)
    assert bench.parse_layer("8,3,40:5,7,3,3").spatial == (40,)
    assert bench.parse_layer("2,1,4,5,6:1,2,1,0").output_spatial() == (3, 4, 5)
    assert str(bench.parse_layer("8,3,224,224:64,7,2,3")) == "(8,3,224,224)->64,7,2,3"


def test_flops_count_three_products() -> None:
    layer = bench.parse_layer("2,3,6,6:4,3,1,0")          # output 4x4
    assert layer.flops() == 3 * 2 * (2 * 4 * 3 * 9 * 16)


@pytest.mark.parametrize(("spec", "match"), [
    ("64,32,32,32", "not of the form"),
    ("64,32:64,3,1,1", "expected 3-5 input sizes"),
    ("1,2,3,4,5,6:1,1,1,1", "expected 3-5 input sizes"),
    ("64,3,8,8:4,3,1", "4 layer numbers"),
    ("64,3,8,8:4,3,0,1", "must be >= 1"),
    ("64,3,8,8:4,3,1,-1", "padding >= 0"),
    ("64,3,4,4:4,7,1,0", "does not fit the padded input"),
    ("a,b:c", "not of the form"),
    # arrays of many GB: refused here, not a numpy MemoryError traceback when allocated
    ("1,1,8,8:1,3,1,1000000", r"its arrays need 59,605.0 GiB, more than the 4 GiB"),
    ("100000,100000,8,8:1,3,1,1", r"its arrays need 9,536.9 GiB"),
])
def test_bad_layer_specs_say_what_is_wrong(spec, match) -> None:
    with pytest.raises(ValueError, match=match):
        bench.parse_layer(spec)


def test_cli_prints_a_row_per_layer_and_writes_json(tmp_path, capsys) -> None:
    out = tmp_path / "bench.json"
    rc = cli.main(["bench", "--layer", "16,2,9,9:3,3,1,1", "--layer", "16,2,20:4,5,2,2",
                   "--repeats", "2", "--json", str(out)])
    assert rc == 0
    text = capsys.readouterr().out.splitlines()
    assert text[0].startswith("rot180 bench: float32, threads default, compiled helper")
    assert "matmul rate" in text[0]
    assert text[1].split()[:2] == ["layer", "(N,C,*i)->K,k,s,p"]
    assert [line.split()[0] for line in text[3:]] == ["(16,2,9,9)->3,3,1,1", "(16,2,20)->4,5,2,2"]
    data = json.loads(out.read_text())
    assert data["matmul_gflops"] > 0 and len(data["layers"]) == 2
    assert data["matmul_gflops"] == max(data["matmul_gflops_samples"])
    assert len(data["matmul_gflops_samples"]) == 3          # before, between, after the layers
    for row in data["layers"]:
        parts = (row["forward_ms"], row["grad_input_ms"], row["grad_weight_ms"])
        assert all(v > 0 for v in parts)
        assert row["total_ms"] == pytest.approx(sum(parts))
        if row["busy"]:       # this machine is shared: a busy one is said, never > 100 %
            assert row["fraction_of_matmul"] is None and data["warnings"] == [bench.BUSY]
        else:
            assert row["fraction_of_matmul"] == pytest.approx(
                row["gflops"] / data["matmul_gflops"])
            assert row["fraction_of_matmul"] <= 1


def _args(**kw) -> argparse.Namespace:
    return argparse.Namespace(**{"layers": ["16,2,9,9:3,3,1,1"], "repeats": 1, "threads": None,
                                 "dtype": "float32", "engine": "auto", "json": None,
                                 "force": None, "explain_plan": False, **kw})


def _fixed_times(ms: float = 1.0):
    """A ``time_layer`` stand-in: every product takes ``ms`` milliseconds."""
    calls = []

    def timer(layer, *, repeats, dtype):
        calls.append((str(layer), repeats, np.dtype(dtype), get_tuning().helper))
        return ms, ms, ms

    return timer, calls


def test_engine_numpy_turns_the_helper_off_for_the_run_only(capsys) -> None:
    before = get_tuning()
    timer, calls = _fixed_times()
    assert bench.run(_args(engine="numpy", dtype="float64"), matmul_rate=lambda: 50.0,
                     timer=timer) == 0
    assert calls == [("(16,2,9,9)->3,3,1,1", 1, np.dtype(np.float64), False)]
    assert get_tuning() is before
    head = capsys.readouterr().out.splitlines()[0]
    state = "compiled helper not built" if _direct._directc is None else "compiled helper off"
    assert head.startswith("rot180 bench: float64") and state in head


def test_force_runs_the_layers_with_that_realisation(capsys) -> None:
    seen = []

    def timer(layer, *, repeats, dtype):
        seen.append(get_tuning().force)
        return 1.0, 1.0, 1.0

    before = get_tuning()
    assert bench.run(_args(force="kn2row"), matmul_rate=lambda: 50.0, timer=timer) == 0
    assert seen == ["kn2row"] and get_tuning() is before


def test_explain_plan_prints_the_three_plans_of_every_layer_without_timing(capsys) -> None:
    def timer(layer, *, repeats, dtype):
        raise AssertionError("--explain-plan does not time")

    layers = ["64,1,28,28:6,5,1,2", "4,8,9,9:4,1,2,0"]
    with tuning(force=None):                    # also under pytest --rot180-force
        assert bench.run(_args(layers=layers, explain_plan=True, engine="numpy"),
                         matmul_rate=lambda: 50.0, timer=timer) == 0
    out = capsys.readouterr().out
    assert out.count("forward: x") >= 2 and out.count("grad_input: dz") == 2
    assert out.count("grad_weight: x") == 2 and "direct" not in out     # helper off
    assert "(4,8,9,9)->4,1,2,0:" in out and "pointwise (chosen)" in out


def test_explain_plan_through_the_cli(capsys) -> None:
    assert cli.main(["bench", "--explain-plan", "--layer", "8,3,40:5,7,3,3",
                     "--force", "im2col"]) == 0
    out = capsys.readouterr().out
    assert "im2col (forced)" in out and "sub-pixel phases" in out


LAYER = bench.parse_layer("16,2,9,9:3,3,1,1")
GFLOPS = LAYER.flops() / 3e-3 / 1e9        # its rate when each product takes 1 ms


def test_one_slow_matmul_sample_no_longer_gives_more_than_100_percent() -> None:
    """The first sample is taken while the machine is busy (1 % of its rate): before, that one
    sample was the rate, and this layer read 2,500 %. Now the best sample counts."""
    samples = iter([GFLOPS / 25, 4 * GFLOPS, 2 * GFLOPS, 3 * GFLOPS])
    timer, calls = _fixed_times()
    rows, seen = bench.bench_layers([LAYER, LAYER, LAYER], repeats=2, dtype=np.float32,
                                    matmul_rate=lambda: next(samples), timer=timer)
    assert seen == [GFLOPS / 25, 4 * GFLOPS, 2 * GFLOPS, 3 * GFLOPS]   # before and after each
    assert len(calls) == 3
    for row in rows:
        assert not row.busy and row.fraction_of_matmul == pytest.approx(0.25)
    assert "25%" in bench.format_rows(rows, "h")


def test_a_layer_faster_than_every_sample_says_busy_instead_of_a_share(tmp_path,
                                                                       capsys) -> None:
    """Every sample slow (the machine busy throughout): no share above 100 %, a footnote in
    the table and a warning in the JSON."""
    out = tmp_path / "b.json"
    timer, _ = _fixed_times()
    rate = iter([GFLOPS / 2, GFLOPS / 3])
    assert bench.run(_args(json=out), matmul_rate=lambda: next(rate), timer=timer) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[3].split()[-1] == "busy*" and lines[-1] == bench.BUSY
    assert "machine was busy" in bench.BUSY
    data = json.loads(out.read_text())
    assert data["warnings"] == [bench.BUSY] and data["matmul_gflops"] == GFLOPS / 2
    (row,) = data["layers"]
    assert row["busy"] is True and row["fraction_of_matmul"] is None
    assert row["gflops"] == pytest.approx(GFLOPS)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.floats(1e-3, 1e4), min_size=4, max_size=4),
       st.lists(st.floats(1e-3, 1e3), min_size=3, max_size=3))
def test_no_sample_order_prints_a_share_above_100_percent(samples, ms) -> None:
    it = iter(samples)
    times = iter(ms)
    rows, _ = bench.bench_layers([LAYER] * 3, repeats=1, dtype=np.float32,
                                 matmul_rate=lambda: next(it),
                                 timer=lambda layer, **_: (next(times),) * 3)
    for row in rows:
        assert row.busy == (row.gflops > max(samples))
        assert row.busy or 0 < row.fraction_of_matmul <= 1
    shares = [line.split()[-1] for line in bench.format_rows(rows, "h").splitlines()[3:6]]
    assert all(c == "busy*" or int(c.rstrip("%")) <= 100 for c in shares)


@pytest.mark.parametrize(("argv", "match"), [
    (["--repeats", "0"], "--repeats must be >= 1"),
    (["--threads", "0"], "--threads must be between 1 and 1024"),
    (["--threads", "100000"], "--threads must be between 1 and 1024"),
    (["--layer", "1,2:3"], "expected 3-5 input sizes"),
])
def test_cli_errors_exit_2_without_traceback(argv, match, capsys) -> None:
    assert cli.main(["bench", "--layer", "16,2,9,9:3,3,1,1", *argv]) == 2
    err = capsys.readouterr().err
    assert err.startswith("rot180: error:") or "rot180: error:" in err
    assert match in err and "Traceback" not in err


def test_default_layers_are_the_benchmark_set() -> None:
    """The same six layers as benchmarks/conv.py (read from its source, which imports torch)."""
    source = (Path(__file__).parents[1] / "benchmarks" / "conv.py").read_text()
    table = source.split("LAYERS = [", 1)[1].split("]", 1)[0]
    theirs = [ast.literal_eval(line.strip().rstrip(",")) for line in table.strip().splitlines()]
    ours = [bench.parse_layer(s) for s in bench.DEFAULT_LAYERS]
    assert [((la.batch, la.channels, *la.spatial), la.out_channels, la.kernel, la.stride,
             la.padding) for la in ours] == theirs


@pytest.mark.parametrize("where", ["fifo", "directory", "missing folder"])
def test_a_json_path_that_cannot_be_written_is_refused_before_timing(tmp_path, where, capsys):
    """--json naming a FIFO blocked forever after the timing (write_text opened it); a
    directory or a missing folder failed only after minutes of timing, with a bare errno."""
    import os

    path = {"fifo": tmp_path / "f", "directory": tmp_path,
            "missing folder": tmp_path / "no" / "r.json"}[where]
    if where == "fifo":
        os.mkfifo(path)
    code = cli.main(["bench", "--layer", "1,1,8,8:1,3,1,1", "--json", str(path)])
    assert code == 2
    assert f"--json {path}: expected a file path in an existing directory" in \
        capsys.readouterr().err
