"""``rot180 check`` and the command-line dispatcher: results, table, exit codes, error path."""

from __future__ import annotations

import importlib
import subprocess
import sys

import numpy as np
import pytest

from rot180 import cli
from rot180.commands import check
from rot180.functional import conv_grad_input, rot180


def test_run_checks_passes_and_covers_the_hard_cases():
    report = check.run_checks(40, seed=1)
    assert report.passed, check.format_report(report)
    assert [r.name for r in report.rows] == list(check.CHECKS)
    assert all(r.configs == 40 and r.max_abs_err <= r.tolerance for r in report.rows)
    assert sum(report.per_nd.values()) == 40 and min(report.per_nd.values()) > 0
    assert report.with_remainder > 0


def test_drawn_configs_cover_every_option():
    rng = np.random.default_rng(0)
    cfgs = [check.draw_config(rng) for _ in range(200)]
    paddings = {c.kwargs["padding"] if isinstance(c.kwargs["padding"], str)
                else type(c.kwargs["padding"]).__name__ for c in cfgs}
    assert {"valid", "same", "full", "int", "tuple"} <= paddings
    assert any(isinstance(c.kwargs["padding"], tuple) and isinstance(c.kwargs["padding"][0], tuple)
               for c in cfgs)
    assert any(c.groups > 1 for c in cfgs) and any(c.kwargs["flip"] for c in cfgs)
    assert any(c.kwargs["dilation"] != 1 for c in cfgs)
    assert any(c.batch is None for c in cfgs)


def test_a_wrong_rule_fails_the_right_rows(monkeypatch):
    """Forgetting the rotation must be caught by every input-gradient check and nothing else."""
    def unrotated(dz, w, input_shape, **kw):
        return conv_grad_input(dz, rot180(w), input_shape, **kw)

    monkeypatch.setattr(check, "conv_grad_input", unrotated)
    report = check.run_checks(30, seed=2)
    failed = {r.name for r in report.rows if not r.passed}
    assert failed == {"grad_input vs direct", "grad_input vs conv_matrix^T",
                      "adjoint identity (input)"}
    text = check.format_report(report)
    assert "FAIL grad_input vs direct: worst at x (" in text
    assert text.endswith("3 check(s) failed")


def test_a_crash_is_a_failed_check_not_an_error(monkeypatch):
    def broken(*args, **kwargs):
        raise IndexError("boom")

    monkeypatch.setattr(check, "conv_grad_weight", broken)
    report = check.run_checks(3, seed=0)
    assert not report.passed
    assert "raised IndexError: boom" in report.rows[0].worst


def test_main_check_prints_the_table(capsys):
    assert cli.main(["check", "--configs", "20", "--seed", "5"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("rot180 check: 20 random float64 configurations (seed 5)")
    for name in check.CHECKS:
        row = next(line for line in out.splitlines() if line.startswith(name + " "))
        assert row.split()[-1] == "PASS" and " 20 " in row
    assert "FAIL" not in out
    assert out.rstrip().endswith("all checks passed")


def test_main_check_exit_1_on_failure(monkeypatch, capsys):
    monkeypatch.setattr(check, "conv_grad_input",
                        lambda dz, w, s, **kw: conv_grad_input(dz, rot180(w), s, **kw))
    assert cli.main(["check", "--configs", "10"]) == 1
    assert "FAIL" in capsys.readouterr().out


@pytest.mark.parametrize(("argv", "message"), [
    (["check", "--configs", "0"], "rot180: error: --configs must be >= 1, got 0"),
    (["check", "--configs", "x"], "rot180 check: error: argument --configs: invalid int value"),
    ([], "rot180: error: the following arguments are required: COMMAND"),
    (["nonsense"], "rot180: error: argument COMMAND: invalid choice: 'nonsense'"),
])
def test_errors_exit_2_with_a_message(argv, message, capsys):
    assert cli.main(argv) == 2
    captured = capsys.readouterr()
    assert message in captured.err
    assert "Traceback" not in captured.err and captured.out == ""


@pytest.mark.parametrize("exc", [ValueError, TypeError, OSError])
def test_command_errors_become_exit_2(exc, monkeypatch, capsys):
    def failing(args):
        raise exc("cannot read data/missing.npz")

    monkeypatch.setattr(check, "run", failing)
    assert cli.main(["check"]) == 2
    assert capsys.readouterr().err == "rot180: error: cannot read data/missing.npz\n"


def test_help_and_version_exit_0(capsys):
    assert cli.main(["--version"]) == 0
    assert cli.main(["check", "--help"]) == 0
    out = capsys.readouterr().out
    assert "--configs N" in out and "--seed" in out


def test_every_registered_command_follows_the_protocol():
    cli.build_parser()      # registers every command; raises if one is broken
    for name in cli._COMMANDS:
        module = importlib.import_module(f"rot180.commands.{name}")
        assert callable(module.add_parser) and callable(module.run)


def test_process_exit_code_and_no_traceback():
    proc = subprocess.run([sys.executable, "-m", "rot180.cli", "check", "--configs", "-3"],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2
    assert proc.stderr == "rot180: error: --configs must be >= 1, got -3. Try --configs 300.\n"
