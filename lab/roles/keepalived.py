"""keepalived, run as itself: one foreground daemon per director, in its namespace.

Each director of a topology with ``keepalived`` configs gets its config written
into the lab's own directory (``/run/drlab/labs/<lab>.d``), with its own pid
files and log, and runs Debian's ``keepalived -n`` (no fork) as a session
leader inside the director's namespace: VRRP for the VIP, the
``virtual_server`` loaded into that namespace's IPVS table, health checks and
the connection-sync daemon are keepalived's own. The lab owns the processes
like any other (``Lab.add_pid``): teardown, ``drlab down``, a failed build and
``drlab cleanup`` after a killed run take the whole process group. The host's
keepalived, its ``/etc/keepalived`` and its pid files are never touched.

What keepalived *says* (its VRRP state) comes from a ``notify`` script the lab
adds to every ``vrrp_instance``: it appends ``<time> INSTANCE <name> <STATE>
<priority>`` to ``<host>.vrrp`` in the lab directory. What the lab *observes*
(who holds the VIP, who answers ARP for it, what IPVS does) comes from the
kernel, through the probes.

Scripts: a config always runs with ``enable_script_security`` and a ``script_user``
without privileges (``nobody``, or the file's own non-root one); only the lab's
reporter, written by root into the root-only lab directory, names ``root`` as its
user. A config that came with a topology or a collected directory runs no
program at all unless the topology was loaded with ``allow_scripts`` (the
``--allow-scripts`` opt-in; a file named with ``--keepalived FILE`` is the user's
own): :func:`start` refuses one that still carries a script
(:func:`lab.model.keepalived.strip_scripts` says which).
"""

from __future__ import annotations

import os
import pwd
import re
import shlex
import shutil
import signal
import subprocess
from dataclasses import dataclass
from pathlib import Path

from lab.builder import Lab, netns, ownership
from lab.errors import LabError, PreflightError, TopologyError
from lab.model import Topology
from lab.model.keepalived import (
    Node,
    parse_tree,
    script_user,
    secure_global_defs,
    strip_scripts,
)
from lab.util import Timeout, scaled, wait_for

_INSTANCE = re.compile(r"^(\s*vrrp_instance\s+\S+\s*\{)", re.M)


def binary() -> str:
    path = shutil.which("keepalived")
    if path is None:
        raise PreflightError("keepalived not found on PATH: install it (apt-get install "
                             "keepalived, or scripts/bootstrap)")
    return path


def _interfaces(text: str) -> set[str]:
    """The interface names a config uses: ``interface``, ``lvs_sync_daemon``, ``dev X``
    and the entries of ``track_interface`` blocks."""
    out: set[str] = set()

    def walk(nodes: list[Node], parent: str) -> None:
        for n in nodes:
            w = n.words
            if parent == "track_interface" and w:
                out.add(w[0])
            elif n.key in ("interface", "lvs_sync_daemon") and len(w) > 1:
                out.add(w[1])
            out.update(w[k + 1] for k, x in enumerate(w[:-1]) if x == "dev")
            walk(n.block or [], n.key)

    walk(parse_tree(text), "")
    return {x for x in out if re.fullmatch(r"[A-Za-z0-9_.-]{1,15}", x)}


def config_test(path: str | Path, source: str | None = None) -> None:
    """``keepalived -t -f PATH``; a bad file is one TopologyError line quoting keepalived.

    keepalived fails a config whose interfaces do not exist, and the operator's
    (``ens192``) do not exist here: the check runs in a throwaway network
    namespace (``unshare --net``) holding a veth of each name the file uses, so the
    host's interfaces are neither needed nor touched."""
    text = Path(path).read_text(errors="replace")
    names = sorted(_interfaces(text) - {"lo"})
    script = ('ip link set lo up; n=0; for i in "$@"; do n=$((n+1)); '
              'ip link add "$i" type veth peer name "drlabchk$n" || exit 99; done; '
              f'exec {shlex.quote(binary())} -t -f {shlex.quote(str(path))}')
    p = subprocess.run(["unshare", "--net", "--", "sh", "-c", script, "sh", *names],
                       capture_output=True, text=True, timeout=60)
    if p.returncode != 0:
        lines = [x.strip() for x in (p.stderr + p.stdout).splitlines() if x.strip()]
        bad = [x for x in lines if re.search(r"(?i)error|unknown|invalid|missing|not ", x)]
        msg = (bad or lines or [f"exit {p.returncode}"])[0]
        raise TopologyError(f"{source or path}: keepalived -t: {msg}")


def with_notify(conf: str, script: Path) -> str:
    """``conf`` with a ``notify`` line (the lab's state reporter, run as root: it is
    root's own file in a root-only directory) in every vrrp_instance."""
    return _INSTANCE.sub(lambda m: f'{m.group(1)}\n    notify "{script}" root', conf)


#: The user scripts run as when a config names none (or names root).
SCRIPT_USER = "nobody"


def run_as(conf: str) -> str:
    """The ``script_user`` for ``conf``: its own when that is not root (uid 0), else
    :data:`SCRIPT_USER`."""
    user = script_user(conf)
    if user is not None:
        uid: int | None
        try:
            uid = pwd.getpwnam(user).pw_uid
        except KeyError:
            uid = int(user) if user.isdecimal() else None
        if uid not in (None, 0):
            return user
    return SCRIPT_USER


def refuse_scripts(t: Topology) -> None:
    """TopologyError when a keepalived config of ``t`` would run a program (or touch
    the lab's machine) and ``t`` was not loaded with ``allow_scripts``: configs that
    came with a topology file or a collected directory run no one's commands as root
    unless the user opted in."""
    if t.allow_scripts:
        return
    for host, conf in t.keepalived.items():
        _, found = strip_scripts(conf, f"keepalived.{host}")
        if found:
            f = found[0]
            raise TopologyError(f"keepalived.{host}:{f.line}: {f.keyword} would run on the "
                                "lab's machine as root and came with the topology: refused "
                                "(drlab strips such lines when it loads a topology; "
                                "--allow-scripts runs them)")


@dataclass(frozen=True)
class Paths:
    conf: Path
    pid: Path
    vrrp_pid: Path
    checkers_pid: Path
    log: Path
    state: Path


def paths(lab: Lab, host: str) -> Paths:
    d = lab.workdir()
    return Paths(d / f"keepalived-{host}.conf", d / f"keepalived-{host}.pid",
                 d / f"keepalived-{host}-vrrp.pid", d / f"keepalived-{host}-checkers.pid",
                 d / f"keepalived-{host}.log", d / f"{host}.vrrp")


def _notify_script(lab: Lab) -> Path:
    d = lab.workdir()
    script = d / "notify"
    if not script.exists():
        # the config says `notify "SCRIPT HOST"`; keepalived appends TYPE NAME STATE
        # PRIORITY, so the script gets HOST INSTANCE NAME STATE PRIORITY
        script.write_text("#!/bin/sh\n# drlab: record keepalived's word on VRRP state\n"
                          f'echo "$(date +%s.%N) $3 $4 $5" >> "{d}/$1.vrrp"\n')
        script.chmod(0o755)
    return script


def start(lab: Lab, host: str, timeout: float = 10.0) -> int:
    """Start keepalived on director ``host`` with its config from the topology; return
    the daemon's pid once its VRRP (and checker) children run."""
    conf = lab.topology.keepalived.get(host)
    if conf is None:
        raise LabError(f"lab {lab.id}: no keepalived config for {host!r}")
    refuse_scripts(lab.topology)
    p = paths(lab, host)
    script = _notify_script(lab)
    p.conf.write_text(with_notify(secure_global_defs(conf, run_as(conf)),
                                  Path(f"{script} {host}")))
    for f in (p.pid, p.vrrp_pid, p.checkers_pid):
        f.unlink(missing_ok=True)
    log = open(p.log, "ab")
    ns = lab.ns(host)
    try:
        proc = subprocess.Popen(
            [binary(), "-n", "-l", "-D", "-G", "-f", str(p.conf), "-p", str(p.pid),
             "-r", str(p.vrrp_pid), "-c", str(p.checkers_pid)],
            stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
            start_new_session=True, preexec_fn=lambda: netns.enter_in_child(ns))
    finally:
        log.close()
    lab.add_pid(proc.pid)

    def children() -> bool:
        if proc.poll() is not None:
            raise LabError(f"keepalived on {host} exited {proc.returncode}: "
                           + tail(lab, host, 3).replace("\n", " | "))
        return p.vrrp_pid.exists() or p.checkers_pid.exists()

    try:
        wait_for(children, timeout, f"keepalived on {host} to start its children")
    except Timeout:
        raise LabError(f"keepalived on {host} started no VRRP or checker process in "
                       f"{scaled(timeout):.0f}s: " + tail(lab, host, 3).replace("\n", " | ")
                       ) from None
    for f in (p.vrrp_pid, p.checkers_pid):
        child = _read_pid(f)
        if child:
            lab.add_pid(child)
    return proc.pid


def start_all(lab: Lab) -> dict[str, int]:
    """Start keepalived on every director that has a config."""
    return {h: start(lab, h) for h in lab.topology.keepalived}


def _read_pid(f: Path) -> int | None:
    try:
        return int(f.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None


def pid(lab: Lab, host: str) -> int | None:
    """The running keepalived daemon's pid on ``host`` (None if it is not running)."""
    p = _read_pid(paths(lab, host).pid)
    if p is None:
        return None
    return p if ownership.proc_start_time(p) is not None else None


def stop(lab: Lab, host: str, crash: bool = False, timeout: float = 10.0) -> None:
    """Stop keepalived on ``host``: SIGTERM (it releases the VIP and its IPVS table, as
    ``systemctl stop`` does), or with ``crash`` SIGKILL to the whole process group at
    once, so nothing is cleaned up (the VIP stays on the interface)."""
    leader = pid(lab, host)
    if leader is None:
        return
    if crash:
        os.killpg(leader, signal.SIGKILL)
    else:
        os.kill(leader, signal.SIGTERM)

    def gone() -> bool:
        try:
            os.waitpid(leader, os.WNOHANG)
        except ChildProcessError:
            pass
        return ownership.proc_start_time(leader) is None

    wait_for(gone, timeout, f"keepalived on {host} to exit")


def states(lab: Lab, host: str) -> list[tuple[float, str, str, int]]:
    """Every VRRP state keepalived reported on ``host``: (time, instance, state, priority)."""
    try:
        text = paths(lab, host).state.read_text()
    except OSError:
        return []
    out = []
    for line in text.splitlines():
        f = line.split()
        if len(f) >= 4:
            try:
                out.append((float(f[0]), f[1].strip('"'), f[2], int(f[3])))
            except ValueError:
                continue
    return out


def state(lab: Lab, host: str) -> dict[str, str]:
    """keepalived's last word per VRRP instance on ``host`` ({"VI_1": "MASTER"})."""
    last: dict[str, str] = {}
    for _t, inst, st, _prio in states(lab, host):
        last[inst] = st
    if pid(lab, host) is None:
        return {inst: "STOPPED" for inst in last} or {"-": "STOPPED"}
    return last


def wait_state(lab: Lab, host: str, want: str, timeout: float = 15.0) -> float:
    """Wait until keepalived on ``host`` reports ``want`` for every instance; return the
    time (``time.time()``) of that report."""
    def reached() -> float | None:
        st = states(lab, host)
        last: dict[str, tuple[float, str]] = {}
        for t, inst, s, _p in st:
            last[inst] = (t, s)
        if last and all(s == want for _t, s in last.values()):
            return max(t for t, _s in last.values())
        return None

    return wait_for(reached, timeout, f"keepalived on {host} to report {want}")


def tail(lab: Lab, host: str, lines: int = 20) -> str:
    """The last lines of keepalived's log on ``host``."""
    try:
        text = paths(lab, host).log.read_text(errors="replace")
    except OSError:
        return "(no log)"
    return "\n".join(text.splitlines()[-lines:])


def reload_lines(lab: Lab, host: str) -> list[str]:
    """The lines of keepalived's log on ``host`` that speak of a reload (its children
    log ``Reloading`` and ``Reload finished in N usec`` on SIGHUP)."""
    try:
        text = paths(lab, host).log.read_text(errors="replace")
    except OSError:
        return []
    return [ln for ln in text.splitlines() if "reload" in ln.lower()]


def reload(lab: Lab, host: str, conf: str) -> None:
    """Swap ``host``'s keepalived.conf for ``conf`` and send SIGHUP to its daemon, as
    ``systemctl reload keepalived`` does. The topology's copy follows. Scripts of
    ``conf`` are refused as at :func:`start` unless the topology allows them."""
    leader = pid(lab, host)
    if leader is None:
        raise LabError(f"lab {lab.id}: keepalived is not running on {host}")
    lab.topology.keepalived[host] = conf
    refuse_scripts(lab.topology)
    p = paths(lab, host)
    p.conf.write_text(with_notify(secure_global_defs(conf, run_as(conf)),
                                  Path(f"{_notify_script(lab)} {host}")))
    os.kill(leader, signal.SIGHUP)
