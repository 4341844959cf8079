"""``rot180 bench``: layer specs, the table, JSON, the engine switch and its errors.

Only structure and sanity are asserted (times are positive, rates follow from them); speed
itself is never asserted in tests.
"""

from __future__ import annotations

import ast
import json
from pathlib import Path

import pytest

from rot180 import cli
from rot180.commands import bench
from rot180.functional import _direct


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
    for row in data["layers"]:
        parts = (row["forward_ms"], row["grad_input_ms"], row["grad_weight_ms"])
        assert all(v > 0 for v in parts)
        assert row["total_ms"] == pytest.approx(sum(parts))
        assert row["fraction_of_matmul"] == pytest.approx(row["gflops"] / data["matmul_gflops"])


def test_engine_numpy_turns_the_helper_off_for_the_run_only(tmp_path, capsys) -> None:
    before = _direct.ENABLED
    seen = []
    real = bench.bench_layer

    def spy(*a, **k):
        seen.append(_direct.ENABLED)
        return real(*a, **k)

    bench.bench_layer = spy
    try:
        assert cli.main(["bench", "--layer", "16,2,9,9:3,3,1,1", "--repeats", "1",
                         "--engine", "numpy", "--dtype", "float64"]) == 0
    finally:
        bench.bench_layer = real
    assert seen == [False] and _direct.ENABLED == before
    head = capsys.readouterr().out.splitlines()[0]
    state = "compiled helper not built" if _direct._directc is None else "compiled helper off"
    assert head.startswith("rot180 bench: float64") and state in head


@pytest.mark.parametrize(("argv", "match"), [
    (["--repeats", "0"], "--repeats must be >= 1"),
    (["--threads", "0"], "--threads must be >= 1"),
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
