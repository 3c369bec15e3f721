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
