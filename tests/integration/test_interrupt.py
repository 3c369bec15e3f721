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


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_interrupted_run_leaves_nothing(tmp_path, sig):
    (tmp_path / "test_hang.py").write_text(HANGING_TEST)
    ready = tmp_path / "ready"
    env = dict(os.environ, DRLAB_READY=str(ready))
    p = subprocess.Popen([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                          "--no-host-check", str(tmp_path / "test_hang.py")],
                         cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                         text=True)
    try:
        lab_id = wait_for(lambda: ready.exists() and ready.read_text(), timeout=60,
                          what="the child run to build its lab")
        rec = next(r for r in ownership.records() if r.lab == lab_id)
        assert all(netns.exists(n) for n in rec.namespaces)
        server = rec.pids[0][0]
        p.send_signal(sig)
        out, _ = p.communicate(timeout=60)
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
    assert p.returncode != 0, out
    assert not any(netns.exists(n) for n in rec.namespaces), out
    assert not any(r.lab == lab_id for r in ownership.records()), out
    assert ownership.proc_start_time(server) is None


SLOW_SETUP = '''
from lab.model import default_dr


def test_build(lab_factory):
    for _ in range(50):  # big labs, one after another: the signal lands mid-build
        lab_factory(default_dr(rs=64), roles=False)
'''


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_interrupted_during_setup_leaves_nothing(tmp_path, sig):
    (tmp_path / "test_build.py").write_text(SLOW_SETUP)
    p = subprocess.Popen([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                          "--no-host-check", str(tmp_path / "test_build.py")],
                         cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                         text=True)
    try:
        # the record is written before anything is created: wait until the child
        # has one with namespaces half made, then interrupt it
        def building():
            recs = [r for r in ownership.records() if r.owner_pid == p.pid]
            return recs and any(netns.exists(n) for r in recs for n in r.namespaces) and recs
        recs = wait_for(building, timeout=60, what="the child run to start building")
        p.send_signal(sig)
        out, _ = p.communicate(timeout=60)
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
    assert p.returncode != 0, out
    assert not [r for r in ownership.records() if r.owner_pid == p.pid], out
    assert not any(netns.exists(n) for r in recs for n in r.namespaces), out
