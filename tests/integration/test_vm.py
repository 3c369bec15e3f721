"""The VM that stays up (`drlab vm start|status|stop`, lab.host.vm).

The first test runs the server's protocol on this host (the server is a process
like any other): commands, their output and exit codes, bad input. The second
boots the real VM and drives `scripts/drlab` across separate commands, then kills
the VM's host process and checks that `drlab cleanup` leaves nothing."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from lab.util import wait_for

REPO = Path(__file__).resolve().parents[2]


def _env(tmp_path: Path) -> dict[str, str]:
    """Its own VM directory and record, so the machine's VM (if any) is not touched."""
    return {**os.environ, "DRLAB_VM_DIR": str(tmp_path / "vm"),
            "DRLAB_RUN_DIR": str(tmp_path / "run"), "DRLAB_TIMEOUT_SCALE": "10"}


def _drlab(env: dict[str, str], *args: str, stdin: str | None = None,
           script: bool = False, timeout: float = 600) -> subprocess.CompletedProcess:
    cmd = ([str(REPO / "scripts/drlab")] if script else [sys.executable, "-m", "lab"])
    return subprocess.run([*cmd, *args], capture_output=True, text=True, env=env,
                          input=stdin, timeout=timeout, cwd=REPO)


def _marked(vm_dir: Path) -> list[str]:
    p = subprocess.run(["pgrep", "-af", str(vm_dir)], capture_output=True, text=True)
    return [x for x in p.stdout.splitlines() if "pgrep" not in x]


def test_the_servers_protocol_on_this_host(tmp_path):
    from lab.builder.ownership import proc_start_time

    env = _env(tmp_path)
    d = tmp_path / "vm"
    for sub in ("req", "run", "out"):
        (d / sub).mkdir(parents=True)
    server = subprocess.Popen([sys.executable, "-m", "lab", "vm", "serve", str(d)], env=env,
                              cwd=REPO)
    try:
        wait_for(lambda: (d / "ready").exists(), 60, "the server to be ready")
        (tmp_path / "run").mkdir()
        (tmp_path / "run" / "vm.json").write_text(json.dumps({
            "pid": server.pid, "start_time": proc_start_time(server.pid), "kernel": "-",
            "memory": "-", "accel": "none: this host", "started": 0, "dir": str(d)}))
        p = _drlab(env, "vm", "status")
        assert p.returncode == 0 and "VM running" in p.stdout and "ready" in p.stdout
        # a record from before a reboot of the host names no running VM
        rec = json.loads((tmp_path / "run" / "vm.json").read_text())
        (tmp_path / "run" / "vm.json").write_text(json.dumps({**rec, "boot_id": "x"}))
        assert _drlab(env, "vm", "status").returncode == 1
        (tmp_path / "run" / "vm.json").write_text(json.dumps(rec))
        p = _drlab(env, "vm", "run", "--", "scenarios", "--json")
        assert p.returncode == 0, p.stderr
        assert len(json.loads(p.stdout)) >= 30
        p = _drlab(env, "vm", "run", "--", "scenario", "run", "no-such-thing")
        assert (p.returncode, p.stderr) == (2, "drlab: error: no scenario 'no-such-thing'; "
                                               "see `drlab scenarios`\n")
        assert list((d / "out").iterdir()) == [] and list((d / "req").iterdir()) == []
    finally:
        (d / "stop").touch()
        server.wait(timeout=30)
    assert server.returncode == 0
    # the server is gone: its record is stale and says so
    p = _drlab(env, "vm", "status")
    assert p.returncode == 1 and "no VM is running (the VM booted by pid" in p.stdout
    p = _drlab(env, "vm", "run", "--", "scenarios")
    assert p.returncode == 3 and "scripts/drlab vm start" in p.stderr


def test_a_lab_outlives_its_command_in_the_vm_and_nothing_outlives_the_vm(tmp_path):
    """scripts/drlab up, check, shell, down as separate commands on a host without IPVS
    (they run in the VM); vm stop; a killed VM host process, then drlab cleanup."""
    env = _env(tmp_path)
    d = tmp_path / "vm"
    p = _drlab(env, "vm", "start")
    assert p.returncode == 0, p.stdout + p.stderr
    try:
        assert "VM running" in p.stdout and "ready" in p.stdout
        p = _drlab(env, "vm", "start")
        assert p.returncode == 2 and "already running" in p.stderr
        p = _drlab(env, "up", "--name", "twice", script=True)
        assert p.returncode == 0, p.stdout + p.stderr
        p = _drlab(env, "check", "twice", script=True)
        assert p.returncode == 0, p.stdout + p.stderr
        assert "OK" in p.stdout
        p = _drlab(env, "shell", "twice", "rs1", script=True, stdin="ip -o addr show lo\n")
        assert p.returncode == 0, p.stdout + p.stderr
        assert "192.0.2.100/32" in p.stdout  # the VIP on rs1's lo, from inside its namespace
        p = _drlab(env, "down", "twice", script=True)
        assert p.returncode == 0, p.stdout + p.stderr
        p = _drlab(env, "status", "twice", script=True)
        assert p.returncode == 2 and "twice" in p.stderr  # gone, and said so
    finally:
        p = _drlab(env, "vm", "stop")
    assert p.returncode == 0 and "VM stopped" in p.stdout, p.stdout + p.stderr
    assert _marked(d) == [] and not d.exists() and not (tmp_path / "run" / "vm.json").exists()
    # SIGKILL of the process that booted the VM, then cleanup: no qemu, no directory
    p = _drlab(env, "vm", "start")
    assert p.returncode == 0, p.stdout + p.stderr
    rec = json.loads((tmp_path / "run" / "vm.json").read_text())
    os.kill(rec["pid"], signal.SIGKILL)  # vm-run only: its qemu lives on
    p = _drlab(env, "vm", "status")
    assert p.returncode == 1 and "is gone" in p.stdout
    p = _drlab(env, "cleanup")
    assert p.returncode == 0, p.stdout + p.stderr
    assert _marked(d) == [] and not d.exists()
    assert f"removed {d}" in p.stdout


@pytest.fixture(autouse=True)
def _nothing_left(tmp_path):
    yield
    left = _marked(tmp_path / "vm")
    for line in left:
        os.kill(int(line.split()[0]), signal.SIGKILL)
    assert left == []
