"""Run ``drlab ARGS`` (or ``python -m MODULE ARGS``) as a command, for the tests.

On a machine with a fast interpreter start this is ``python -m lab ARGS``: a new
interpreter, as a user types it. In the VM part of the suite (``DRLAB_IN_VM=1``,
set by scripts/vm-run), where an interpreter start costs ~10 s, the command goes
where ``scripts/drlab`` sends it on a host without IPVS while ``drlab vm`` runs: to
the VM's command server (``drlab vm serve``, :mod:`lab.machine.vm`), a warm
interpreter that runs each command in a forked child with its own stdout, stderr,
environment, working directory and exit code. One server per run, shared by the
workers (pytest-xdist's or ``--drlab-forks``'), started on first use, stopped when
the last worker exits.
"""

from __future__ import annotations

import atexit
import contextlib
import fcntl
import os
import shutil
import signal
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

from lab.machine import vm
from lab.util import wait_for

REPO = Path(__file__).resolve().parents[2]
WARM = os.environ.get("DRLAB_IN_VM") == "1"
_dir: Path | None = None
_users: int | None = None  # this process's shared hold on the server (fd)


def _warm_server() -> Path:
    """The server's directory: one server for the whole run, shared by pytest-xdist's
    workers (each holds the ``.users`` lock shared while it may send commands; the
    last one out stops it); started by whichever needs it first."""
    global _dir, _users
    if _dir is not None and (_dir / "ready").exists() and _alive(_dir):
        return _dir
    run_id = (os.environ.get("PYTEST_XDIST_TESTRUNUID") or os.environ.get("DRLAB_TESTRUN")
              or f"pid{os.getpid()}")
    d = Path(tempfile.gettempdir(), f"drlab-commands-{run_id}")
    with _locked(Path(f"{d}.lock"), fcntl.LOCK_EX):
        if not ((d / "ready").exists() and _alive(d)):
            _start(d)
        if _users is None:
            _users = os.open(f"{d}.users", os.O_RDWR | os.O_CREAT, 0o600)
            fcntl.flock(_users, fcntl.LOCK_SH)
            atexit.register(_leave, d)
    _dir = d
    return d


@contextlib.contextmanager
def _locked(path: Path, how: int) -> Iterator[None]:
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, how)
        yield
    finally:
        os.close(fd)


def _alive(d: Path) -> bool:
    """The server runs (a zombie, which its starter has not reaped yet, does not)."""
    try:
        pid = int((d / "pid").read_text())
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (OSError, ValueError):
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def _start(d: Path) -> None:
    shutil.rmtree(d, ignore_errors=True)
    for sub in ("req", "run", "out"):
        (d / sub).mkdir(parents=True)
    log = open(d / "server.log", "wb")  # noqa: SIM115 (the server's, for its life)
    env = {k: v for k, v in os.environ.items()  # its commands are not a pytest worker
           if not k.startswith(("PYTEST_XDIST_", "PYTEST_CURRENT_TEST", "DRLAB_WORKER",
                                  "DRLAB_TESTRUN"))}
    p = subprocess.Popen([sys.executable, "-m", "lab", "vm", "serve", str(d)], cwd=REPO,
                         env=dict(env, PYTHONPATH=str(REPO)), stdout=log, stderr=log,
                         stdin=subprocess.DEVNULL, start_new_session=True)
    (d / "pid").write_text(str(p.pid))
    wait_for(lambda: (d / "ready").exists() or p.poll() is not None, 120,
             "the tests' command server to be ready")
    if p.poll() is not None:
        raise RuntimeError(f"the command server exited: {(d / 'server.log').read_text()}")


def leave() -> None:
    """This test process sends no more commands: drop its hold on the server; the last
    one out stops it (tests/integration/conftest.py calls it at the session's end;
    at exit, it runs anyway)."""
    if _dir is not None:
        _leave(_dir)


def _leave(d: Path) -> None:
    global _users
    if _users is None:
        return
    with _locked(Path(f"{d}.lock"), fcntl.LOCK_EX):
        os.close(_users)
        _users = None
        fd = os.open(f"{d}.users", os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return  # another worker still sends commands
        try:
            (d / "stop").touch()
            try:
                wait_for(lambda: not _alive(d), 60, "the tests' command server to stop")
            except Exception:
                with contextlib.suppress(OSError, ValueError):
                    os.kill(int((d / "pid").read_text()), signal.SIGKILL)
            shutil.rmtree(d, ignore_errors=True)
            for f in (f"{d}.users", f"{d}.lock"):
                with contextlib.suppress(OSError):
                    os.unlink(f)
        finally:
            os.close(fd)


def run(*args: str, module: str | None = None, env: dict[str, str] | None = None,
        cwd: Path | str = REPO, timeout: float = 600) -> subprocess.CompletedProcess:
    """``drlab ARGS`` (``python -m MODULE ARGS`` with ``module``), with ``env`` added to
    this environment, in ``cwd``: its exit code, stdout and stderr (text)."""
    cmd = [sys.executable, "-m", module or "lab", *args]
    if not WARM:
        return subprocess.run(cmd, capture_output=True, text=True, cwd=cwd, timeout=timeout,
                              env=dict(os.environ, PYTHONPATH=str(REPO), **(env or {})))
    d = _warm_server()
    rid = vm.submit(d, list(args), env=env, cwd=str(cwd), module=module)
    try:
        rc, out, err = vm.result(d, rid, timeout)
    except TimeoutError:
        raise subprocess.TimeoutExpired(cmd, timeout) from None
    return subprocess.CompletedProcess(cmd, rc, out.decode(errors="replace"),
                                       err.decode(errors="replace"))
