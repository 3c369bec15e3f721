"""lab.cli.main: how a verb's failure reaches the user."""

from lab import cli
from lab.cli import scenarios
from lab.util import wait_for


def test_a_wait_that_runs_out_is_one_line_and_exit_1(monkeypatch, capsys):
    """A verb whose wait runs out (links never up, an election that never ends) says
    what it waited for in one line, exit 1 ("a check failed"), without a traceback."""
    monkeypatch.setattr(scenarios, "cmd_scenarios",
                        lambda args: wait_for(lambda: False, 0.01, "a thing that never happens"))
    assert cli.main(["scenarios"]) == 1
    out = capsys.readouterr()
    assert out.out == ""
    assert out.err.startswith("drlab: error: timed out after ")
    assert out.err.endswith("waiting for a thing that never happens\n")
    assert out.err.count("\n") == 1


def test_a_bad_timeout_scale_is_one_line_and_exit_2_not_a_traceback_at_import():
    """DRLAB_TIMEOUT_SCALE set empty, to a word, zero or a negative number: importing the
    lab does not fail (it crashed at import with ValueError before); drlab says one line,
    exit 2; pytest's plugin makes it a usage error. Empty means unset."""
    import os
    import subprocess
    import sys

    from lab.util import parse_scale

    assert parse_scale(None) == (1.0, None) and parse_scale("") == (1.0, None)
    assert parse_scale("2.5") == (2.5, None)
    for bad in ("x", "0", "-1", "inf", "nan"):
        scale, why = parse_scale(bad)
        assert scale == 1.0 and why is not None and repr(bad) in why
    for value, rc in (("", 0), ("x", 2)):
        p = subprocess.run([sys.executable, "-m", "lab", "scenarios"], capture_output=True,
                           text=True, env=dict(os.environ, DRLAB_TIMEOUT_SCALE=value))
        assert p.returncode == rc, p.stderr
        assert "Traceback" not in p.stderr
        assert p.stderr.count("\n") == (1 if rc else 0)
