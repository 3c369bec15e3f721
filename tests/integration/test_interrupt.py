"""Ctrl-C (SIGINT) and SIGTERM during a test: the interrupted run cleans up itself."""

import os
import signal
import subprocess
import sys

import pytest

from lab.builder import netns, ownership
from lab.util import wait_for

pytestmark = [pytest.mark.netns, pytest.mark.subprocess]

HANGING_TEST = '''
import os
import signal

from lab.model import default_dr
from lab.roles import realserver


def test_hang(lab_factory):
    lab = lab_factory(default_dr(), roles=False)
    realserver.start_service(lab, "rs1")
    with open(os.environ["DRLAB_READY"], "w") as f:
        f.write(lab.id)
    signal.pause()  # until the parent interrupts us
'''


def interrupt_child_run(tmp_path, source, sig, ready, what, env=None):
    """Run ``source`` as a pytest file in a child, wait until ``ready()`` returns a
    value, send ``sig``; return (that value, the child's exit code, its output)."""
    (tmp_path / "test_child.py").write_text(source)
    p = subprocess.Popen([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                          "--no-host-check", str(tmp_path / "test_child.py")],
                         cwd=tmp_path, env=dict(os.environ, **(env or {})),
                         stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        value = wait_for(lambda: ready(p), timeout=60, what=what)
        p.send_signal(sig)
        out, _ = p.communicate(timeout=60)
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
    return value, p.returncode, out


SIGNALS = pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM],
                                  ids=["SIGINT", "SIGTERM"])


@SIGNALS
def test_interrupted_run_leaves_nothing(tmp_path, sig):
    ready = tmp_path / "ready"

    def built(_p):
        if not (ready.exists() and ready.read_text()):
            return None
        rec = next(r for r in ownership.records() if r.lab == ready.read_text())
        assert all(netns.exists(n) for n in rec.namespaces)
        return rec

    rec, rc, out = interrupt_child_run(tmp_path, HANGING_TEST, sig, built,
                                       "the child run to build its lab",
                                       env={"DRLAB_READY": str(ready)})
    assert rc != 0, out
    assert not any(netns.exists(n) for n in rec.namespaces), out
    assert not any(r.lab == rec.lab for r in ownership.records()), out
    assert ownership.proc_start_time(rec.pids[0][0]) is None


SLOW_SETUP = '''
from lab.model import default_dr


def test_build(lab_factory):
    for _ in range(50):  # big labs, one after another: the signal lands mid-build
        lab_factory(default_dr(rs=64), roles=False)
'''


@SIGNALS
def test_interrupted_during_setup_leaves_nothing(tmp_path, sig):
    # the record is written before anything is created: wait until the child has
    # one with namespaces half made, then interrupt it
    def building(p):
        recs = [r for r in ownership.records() if r.owner_pid == p.pid]
        return recs and any(netns.exists(n) for r in recs for n in r.namespaces) and \
            (p.pid, recs)

    (pid, recs), rc, out = interrupt_child_run(tmp_path, SLOW_SETUP, sig, building,
                                               "the child run to start building")
    assert rc != 0, out
    assert not [r for r in ownership.records() if r.owner_pid == pid], out
    assert not any(netns.exists(n) for r in recs for n in r.namespaces), out
