"""Progress lines: done/total, elapsed and an estimate, live on a terminal, periodic in logs."""

from __future__ import annotations

import io

import pytest

from lab.util import Progress, wait_for


@pytest.fixture
def err():
    return io.StringIO()


def test_a_log_gets_counted_lines_with_an_estimate_and_a_last_line(err):
    p = Progress(enabled=True, interval=0, tty=False, stream=err)
    p.start("scenario run", 4)
    p.step("a")
    p.step("b")
    p("a message")
    p.finish()
    lines = err.getvalue().splitlines()
    [first] = [x for x in lines if x.startswith("drlab: scenario run: 1/4 done")]
    assert first.startswith("drlab: scenario run: 1/4 done, 0s elapsed, about ")
    assert first.endswith("left (a)")
    assert "drlab: a message" in lines
    assert lines[-1].startswith("drlab: scenario run: 2/4 done, 0s elapsed, about ")


def test_a_long_item_is_not_silent_and_lines_are_spaced_by_the_interval(err):
    p = Progress(enabled=True, interval=0.05, tty=False, stream=err)
    with p:
        p.start("matrix", 2)
        wait_for(lambda: err.getvalue().count("0/2 done") >= 2, 5, "two ticker lines")
        p.step()
        p.step()  # within the interval of the last line: not written
    lines = err.getvalue().splitlines()
    assert all("matrix: " in x for x in lines)
    assert lines[-1].startswith("drlab: matrix: 2/2 done")


def test_a_terminal_gets_one_live_line(err, capsys):
    p = Progress(enabled=True, tty=True, stream=err)
    p.start("validate", 3)
    p.step("x")
    out = err.getvalue()
    assert out.endswith("validate: 1/3 done, 0s elapsed, about 0s left (x)") and "\n" not in out
    p.echo("result")  # stdout: the live line is taken off first
    assert err.getvalue().endswith("\r\x1b[K")
    assert capsys.readouterr().out == "result\n"
    p.finish()
    assert err.getvalue().endswith("\r\x1b[Kdrlab: validate: 1/3 done, 0s elapsed, about 0s left\n")


def test_silent_unless_enabled(err):
    p = Progress(stream=err)
    p.start("x", 1)
    p.step()
    p("message")
    p.finish()
    assert err.getvalue() == ""
