"""Attacks on the VM that stays up (`drlab vm`, lab.machine.vm) by another local user
(``nobody``, through setpriv), on this host: no VM boots (a fake virtme-ng that fails
stands in, should anything get that far).

* the VM's directory was the fixed name /tmp/drlab-vm: whoever made it first (a link,
  a directory of theirs) had root write requests into it, and the server ran them;
* a link, a file or someone's directory in the way of the VM's directory now is one
  error line (exit 2), nothing written through it or removed;
* `vm stop` and `drlab cleanup` found the VM's processes by their command line: any
  process naming the directory was killed;
* the server (the guest's end) ran any file in ``req/``, a link included."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from lab.util import wait_for

REPO = Path(__file__).resolve().parents[2]
NOBODY = ["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups"]

pytestmark = [pytest.mark.subprocess,
              pytest.mark.skipif(os.geteuid() != 0 or not shutil.which("setpriv"),
                                 reason="needs root and setpriv to act as nobody")]


def _nobody_uid() -> int:
    import pwd

    return pwd.getpwnam("nobody").pw_uid


def _kernel() -> str:
    images = sorted(Path("/boot").glob("vmlinuz-*"))
    if not images:
        pytest.skip("no /boot/vmlinuz-* (scripts/bootstrap --vm installs one)")
    return str(images[-1])


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    """A run directory of the test's own (the VM's directory and record in it) and a
    virtme-ng that notes it was called and fails: no VM boots, whatever happens."""
    vng = tmp_path / "vng"
    vng.write_text(f"#!/bin/sh\ntouch {tmp_path}/booted\nexit 1\n")
    vng.chmod(0o755)
    (tmp_path / "run").mkdir(mode=0o755)
    return {**os.environ, "DRLAB_RUN_DIR": str(tmp_path / "run"), "DRLAB_VNG": str(vng),
            # (the old code's name for the VM's directory: there too)
            "DRLAB_VM_DIR": str(tmp_path / "run" / "vm"), "DRLAB_TIMEOUT_SCALE": "1"}


@pytest.fixture
def theirs() -> Iterator[Path]:
    """A directory of nobody's, where other users can reach it (/tmp)."""
    d = Path(tempfile.mkdtemp(prefix="drlab-theirs."))
    d.chmod(0o755)
    os.chown(d, _nobody_uid(), -1)
    yield d
    shutil.rmtree(d)


def _drlab(env: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "lab", *args], capture_output=True,
                          text=True, env=env, timeout=120, cwd=REPO)


def _one_line(p: subprocess.CompletedProcess, rc: int, *words: str) -> None:
    assert p.returncode == rc, p.stdout + p.stderr
    assert "Traceback" not in p.stderr and p.stderr.count("\n") == 1, p.stderr
    assert p.stderr.startswith("drlab: error: "), p.stderr
    for w in words:
        assert w in p.stderr, p.stderr


def test_the_old_fixed_path_in_tmp_is_not_used(env, theirs, tmp_path):
    """nobody makes /tmp/drlab-vm a link to their directory first: root's `vm start`
    writes nothing there (it was where req/ was made and console.log opened)."""
    _kernel()
    old = Path("/tmp/drlab-vm")
    if os.path.lexists(old):
        pytest.skip(f"{old} exists already (not this test's)")
    env = {k: v for k, v in env.items() if k != "DRLAB_VM_DIR"}
    subprocess.run([*NOBODY, "ln", "-s", str(theirs), str(old)], check=True)
    try:
        p = _drlab(env, "vm", "start", "--accel", "tcg")
        assert "Traceback" not in p.stderr, p.stderr
        assert p.returncode == 3, p.stdout + p.stderr  # the fake VM ended, before ready
        assert list(theirs.iterdir()) == []
        assert old.is_symlink() and os.lstat(old).st_uid == _nobody_uid()
    finally:
        old.unlink()
    assert not (tmp_path / "run" / "vm").exists()  # vm start cleaned up after itself


@pytest.mark.parametrize("what", ["link", "their-dir", "file", "their-run-dir",
                                  "writable-run-dir"])
def test_something_in_the_way_of_the_vm_dir_is_one_line_and_untouched(env, theirs, tmp_path,
                                                                       what):
    _kernel()
    run, vm = tmp_path / "run", tmp_path / "run" / "vm"
    (theirs / "keep").write_text("theirs\n")
    os.chown(theirs / "keep", _nobody_uid(), -1)
    if what == "link":
        vm.symlink_to(theirs)
        why = f"{vm} is a symbolic link"
    elif what == "their-dir":  # non-empty: the old rmtree(ignore_errors=True) left it
        shutil.copytree(theirs, vm, symlinks=True)
        os.chown(vm, _nobody_uid(), -1)
        why = f"{vm} is owned by uid {_nobody_uid()}"
    elif what == "file":
        vm.write_text("in the way\n")
        why = f"{vm} is in the way: it is not a directory"
    elif what == "their-run-dir":
        os.chown(run, _nobody_uid(), -1)
        why = f"{run} is owned by uid {_nobody_uid()}"
    else:
        run.chmod(0o777)
        why = f"{run} has mode 0777: others may write into it"
    before = {p.name: p.read_bytes() for p in theirs.iterdir()}
    p = _drlab(env, "vm", "start", "--accel", "tcg")
    _one_line(p, 2, why)
    assert not (tmp_path / "booted").exists(), "a VM was booted"
    assert not (run / "vm.json").exists()
    assert {p.name: p.read_bytes() for p in theirs.iterdir()} == before
    if what in ("link", "their-dir", "file"):
        # nor does stop or cleanup remove it or write through it
        for args in (["vm", "stop"], ["cleanup"]):
            (run / "vm.json").write_text(json.dumps({  # a VM that is gone left it
                "pid": 1, "start_time": 1, "kernel": "-", "memory": "-", "accel": "-",
                "started": 0, "dir": str(vm)}))
            p = _drlab(env, *args)
            _one_line(p, 2, why)
            assert os.path.lexists(vm)
            assert {p.name: p.read_bytes() for p in theirs.iterdir()} == before
    if what == "their-dir":
        shutil.rmtree(vm)


def _theirs_naming(path: Path) -> subprocess.Popen:
    """A process of nobody's whose command line names ``path``."""
    p = subprocess.Popen([*NOBODY, "/usr/bin/python3", "-c", "import time; time.sleep(600)",
                          str(path)])  # (one process: killing it leaves no child behind)
    wait_for(lambda: str(path).encode() in Path(f"/proc/{p.pid}/cmdline").read_bytes()
             and Path(f"/proc/{p.pid}").stat().st_uid == _nobody_uid(), 10,
             "nobody's process to start")
    return p


def _gone_pid() -> tuple[int, int]:
    """(pid, start time) of a process that has ended."""
    from lab.builder.ownership import proc_start_time

    p = subprocess.Popen(["sleep", "60"])
    start = proc_start_time(p.pid)
    p.kill()
    p.wait()
    assert start is not None
    return p.pid, start


def test_a_process_naming_the_vm_dir_survives_stop_and_cleanup(env, tmp_path):
    """Processes are the VM's by pid and start time (its booting process, their
    sessions, their descendants), never by what their command line says."""
    run, vm = tmp_path / "run", tmp_path / "run" / "vm"
    vm.mkdir(mode=0o700)
    runs = Path(tempfile.mkdtemp(prefix="vm-run."))  # a killed scripts/vm-run's directory
    pid, start = _gone_pid()
    (runs / "owner").write_text(f"{pid} {start}\n")
    procs = [_theirs_naming(vm), _theirs_naming(runs)]
    try:
        for args in (["vm", "stop"], ["cleanup"]):
            if not vm.exists():
                vm.mkdir(mode=0o700)
            (run / "vm.json").write_text(json.dumps({
                "pid": pid, "start_time": start, "kernel": "-", "memory": "-", "accel": "-",
                "started": 0, "dir": str(vm)}))
            p = _drlab(env, *args)
            assert p.returncode == 0 and "Traceback" not in p.stderr, p.stdout + p.stderr
            assert not vm.exists() and not (run / "vm.json").exists()
            time.sleep(0.2)  # (a kill is asynchronous: give it the time it would take)
            assert [x.poll() for x in procs] == [None, None], args
        assert not runs.exists() and f"removed {runs}" in p.stdout, p.stdout
    finally:
        for x in procs:
            x.kill()
            x.wait()
        shutil.rmtree(runs, ignore_errors=True)


def test_the_server_runs_only_root_owned_regular_request_files(tmp_path, theirs):
    """A request that is a link (to a file of nobody's) or a file of nobody's in
    ``req/`` is refused and removed, never run; a request of root's runs."""
    env = {**os.environ, "DRLAB_RUN_DIR": str(tmp_path / "run")}
    d = tmp_path / "run" / "vm"
    for sub in ("req", "run", "out"):
        (d / sub).mkdir(parents=True, mode=0o700)
    server = subprocess.Popen([sys.executable, "-m", "lab", "vm", "serve", str(d)], env=env,
                              cwd=REPO, stderr=subprocess.PIPE, text=True)
    try:
        wait_for(lambda: (d / "ready").exists(), 60, "the server to be ready")
        bad = []
        for n, how in enumerate(("link", "their-file")):
            rid = f"{time.time():.6f}-0000000{n}"
            req = {"id": rid, "argv": ["scenarios"], "cwd": "/", "env": {}}
            if how == "link":
                (theirs / "req.json").write_text(json.dumps(req))
                (d / "req" / f"{rid}.json").symlink_to(theirs / "req.json")
            else:
                (d / "req" / f"{rid}.json").write_text(json.dumps(req))
                os.chown(d / "req" / f"{rid}.json", _nobody_uid(), -1)
            bad.append(rid)
        from lab.machine import vm

        rc, out, _err = vm.result(d, vm.submit(d, ["scenarios"], cwd="/"), 120)
        assert rc == 0, out
        for rid in bad:
            assert not (d / "out" / f"{rid}.rc").exists(), f"request {rid} ran"
            assert not os.path.lexists(d / "run" / f"{rid}.json")
            assert not os.path.lexists(d / "req" / f"{rid}.json")
    finally:
        (d / "stop").touch()
        _out, err = server.communicate(timeout=30)
    assert err.count("drlab vm serve: refused ") == 2, err
