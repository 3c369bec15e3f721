"""A running lab, collected as an operator collects a cluster: ``scripts/collect``
run inside each host's namespace.

What comes out is exactly what ``scripts/collect`` writes on a production
machine (``OUTDIR/<host>/ip-addr.json``, ``sysctl.txt``, ``ipvsadm-save.txt``,
``listen.txt``, ``keepalived.conf`` ...), so ``drlab import`` can turn it into a
twin and the round trip (lab -> collect -> import -> twin) can be checked.
"""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

from lab.builder import Lab, netns
from lab.errors import LabError

#: The collector, as operators run it (a POSIX shell script, no Python).
COLLECT = Path(__file__).resolve().parents[2] / "scripts" / "collect"


def collect(lab: Lab, outdir: Path, hosts: list[str] | None = None,
            timeout: float = 300.0) -> list[Path]:
    """Run ``scripts/collect -n NAME OUTDIR`` in each host's namespace (default:
    every host, the lab's client and routers included), all hosts at once; return
    the host directories. A director under keepalived gets its configuration as the
    operator wrote it (the topology's text, without the lab's notify hook); no
    host ever sees the machine's own ``/etc/keepalived``."""
    if not COLLECT.exists():
        raise LabError(f"{COLLECT} not found: collect runs from the repository")
    outdir.mkdir(parents=True, exist_ok=True)
    procs: list[tuple[str, Path, subprocess.Popen[str]]] = []
    try:
        for name in hosts or [h.name for h in lab.topology.hosts]:
            h = lab.topology.host(name)
            shown = h.label or h.name
            ka = "none"
            if name in lab.topology.keepalived:
                path = lab.workdir() / f"collect-{name}.keepalived.conf"
                path.write_text(lab.topology.keepalived[name])
                ka = str(path)
            # started from this thread while it is in the host's namespace (the child
            # inherits it): what `ip netns exec` does, without its fork and exec
            with netns.entered(lab.ns(name)):
                procs.append((name, outdir / shown, subprocess.Popen(
                    ["sh", str(COLLECT), "-n", shown, "-k", ka, str(outdir)],
                    stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)))
        deadline = time.monotonic() + timeout
        for name, _, p in procs:
            try:
                _, err = p.communicate(timeout=max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                raise LabError(f"scripts/collect on {name} took over {timeout:.0f}s") from None
            if p.returncode != 0:
                raise LabError(f"scripts/collect on {name} failed (exit {p.returncode}): "
                               + (err.strip().splitlines() or ["no message"])[-1])
    finally:
        for _, _, p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
    return [d for _, d, _ in procs]
