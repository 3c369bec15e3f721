"""Run ``drlab ARGS`` (or ``python -m MODULE ARGS``) as a command, for the tests.

On a machine with a fast interpreter start this is ``python -m lab ARGS``: a new
interpreter, as a user types it. In the VM part of the suite (``DRLAB_IN_VM=1``,
set by scripts/vm-run), where an interpreter start costs ~10 s, the command goes
where ``scripts/drlab`` sends it on a host without IPVS while ``drlab vm`` runs: to
the VM's command server (``drlab vm serve``, :mod:`lab.host.vm`), a warm
interpreter that runs each command in a forked child with its own stdout, stderr,
environment, working directory and exit code. One server per test process,
started on first use, stopped at exit.
"""

from __future__ import annotations

import atexit
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from lab.host import vm
from lab.util import wait_for

REPO = Path(__file__).resolve().parents[2]
WARM = os.environ.get("DRLAB_IN_VM") == "1"
_server: tuple[subprocess.Popen, Path] | None = None


def _warm_server() -> Path:
    global _server
    if _server is not None and _server[0].poll() is None:
        return _server[1]
    d = Path(tempfile.mkdtemp(prefix="drlab-commands-"))
    for sub in ("req", "run", "out"):
        (d / sub).mkdir()
    log = open(d / "server.log", "wb")  # noqa: SIM115 (the server's, for its life)
    env = {k: v for k, v in os.environ.items()  # its commands are not this pytest worker
           if not k.startswith(("PYTEST_XDIST_", "PYTEST_CURRENT_TEST"))}
    p = subprocess.Popen([sys.executable, "-m", "lab", "vm", "serve", str(d)], cwd=REPO,
                         env=dict(env, PYTHONPATH=str(REPO)), stdout=log, stderr=log,
                         stdin=subprocess.DEVNULL)
    _server = (p, d)
    atexit.register(_stop, p, d)
    wait_for(lambda: (d / "ready").exists() or p.poll() is not None, 120,
             "the tests' command server to be ready")
    if p.poll() is not None:
        raise RuntimeError(f"the command server exited: {(d / 'server.log').read_text()}")
    return d


def _stop(p: subprocess.Popen, d: Path) -> None:
    (d / "stop").touch()
    try:
        p.wait(timeout=60)
    except subprocess.TimeoutExpired:
        p.kill()
        p.wait()
    shutil.rmtree(d, ignore_errors=True)


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
