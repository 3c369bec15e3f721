"""Who owns what: one record per lab, so cleanup is targeted, never a pattern sweep.

Before a lab creates anything it writes ``/run/drlab/labs/<lab>.json`` naming
its owner (pid + the process start time, so a recycled pid is not mistaken for
the owner), the namespaces it will create and, as they start, the processes it
runs. ``reap()`` removes exactly what records of dead owners list, and nothing
else: a namespace is deleted only if a record of this lab names it.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shutil
import signal
import time
from collections.abc import Iterator
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from lab.builder import netns

RUN_DIR = Path(os.environ.get("DRLAB_RUN_DIR", "/run/drlab"))
LABS_DIR = RUN_DIR / "labs"


def proc_start_time(pid: int) -> int | None:
    """The start time (clock ticks since boot) of ``pid``; None if it does not exist
    or is a zombie (dead, waiting to be reaped by a parent that may never do it)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            stat = f.read()
    except (FileNotFoundError, ProcessLookupError):
        return None
    # The command name may contain spaces and parentheses: split after the last ')'.
    fields = stat.rsplit(")", 1)[1].split()
    if fields[0] in ("Z", "X"):
        return None
    return int(fields[19])


def alive(pid: int, start_time: int | None) -> bool:
    return start_time is not None and proc_start_time(pid) == start_time


@dataclass
class Record:
    lab: str
    owner_pid: int
    owner_start: int | None
    namespaces: list[str] = field(default_factory=list)
    #: [pid, start_time] of every process the lab started.
    pids: list[list[int]] = field(default_factory=list)
    #: A persistent lab (``drlab up``) outlives its creator; only ``down`` removes it.
    persistent: bool = False
    topology: str = ""
    created: float = field(default_factory=time.time)
    #: The topology as plain data, so ``drlab status/check/down`` can attach later.
    topology_data: dict[str, Any] | None = None
    #: Files and directories the lab made (configs, logs, pid files), removed with it.
    files: list[str] = field(default_factory=list)

    @property
    def path(self) -> Path:
        return LABS_DIR / f"{self.lab}.json"

    def owner_alive(self) -> bool:
        return self.persistent or alive(self.owner_pid, self.owner_start)

    def save(self) -> None:
        LABS_DIR.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(".tmp")
        # (shallow and compact: a lab saves its record for each process it starts, and
        # asdict() deep-copies the whole topology each time)
        tmp.write_text(json.dumps({f.name: getattr(self, f.name) for f in fields(self)},
                                  separators=(",", ":")))
        os.replace(tmp, self.path)

    def delete(self) -> None:
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()

    @classmethod
    def load(cls, p: Path) -> Record:
        return cls(**json.loads(p.read_text()))


def new_record(lab: str, namespaces: list[str], topology: str = "",
               persistent: bool = False, topology_data: dict[str, Any] | None = None) -> Record:
    pid = os.getpid()
    rec = Record(lab, pid, proc_start_time(pid), list(namespaces), [], persistent, topology,
                 topology_data=topology_data)
    rec.save()
    return rec


def find(lab: str) -> Record | None:
    p = LABS_DIR / f"{lab}.json"
    try:
        return Record.load(p)
    except (FileNotFoundError, ValueError, TypeError):
        return None


def records() -> list[Record]:
    out = []
    for p in sorted(LABS_DIR.glob("*.json")) if LABS_DIR.exists() else []:
        try:
            out.append(Record.load(p))
        except (ValueError, TypeError, OSError):
            continue  # a half-written record: its .tmp never replaced it
    return out


@contextlib.contextmanager
def _lock() -> Iterator[None]:
    LABS_DIR.mkdir(parents=True, exist_ok=True)
    with open(RUN_DIR / "lock", "w") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        yield


def destroy(rec: Record) -> list[str]:
    """Kill the record's processes, remove its namespaces and the record.

    Returns what was removed (for reports). Safe to call twice.
    """
    removed: list[str] = []
    for pid, start in rec.pids:
        if alive(pid, start):
            with contextlib.suppress(ProcessLookupError):
                # a process the lab started as a session leader (keepalived) takes
                # its children (VRRP, checkers) with it: kill the whole group
                if os.getpgid(pid) == pid:
                    os.killpg(pid, signal.SIGKILL)
                else:
                    os.kill(pid, signal.SIGKILL)
                removed.append(f"process {pid}")
    # SIGKILL is asynchronous: poll until every process is gone, reaping our own
    # children (never a blocking wait), so "nothing left" holds on return
    from lab.util import Timeout, wait_for

    def gone() -> bool:
        for pid, _start in rec.pids:
            with contextlib.suppress(ChildProcessError, OSError):
                os.waitpid(pid, os.WNOHANG)
        return not any(alive(p, s) for p, s in rec.pids)

    with contextlib.suppress(Timeout):
        wait_for(gone, 5, "killed lab processes to exit")
    for ns in rec.namespaces:
        if netns.remove(ns):
            removed.append(f"netns {ns}")
    for f in rec.files:
        p = Path(f)
        if p.is_dir():
            shutil.rmtree(p, ignore_errors=True)
            removed.append(f"files {p}")
        elif p.exists():
            p.unlink(missing_ok=True)
            removed.append(f"file {p}")
    rec.delete()
    return removed


def reap() -> list[str]:
    """Destroy every non-persistent lab whose owner is dead. Returns what was removed."""
    removed: list[str] = []
    with _lock():
        for rec in records():
            if not rec.owner_alive():
                removed += destroy(rec)
    return removed


def orphans() -> list[str]:
    """What a lab left behind: lab namespaces no live record owns, records of dead owners.

    Empty when everything made by the lab is accounted for, even while other
    runs (pytest-xdist workers, other users) have labs up.
    """
    # Namespaces first, then records: a lab writes its record before it makes a
    # namespace, so one being built now is owned by the time the records are read;
    # one torn down meanwhile (namespaces first, record last) is gone on the re-check.
    listed = [n for n in netns.listing() if n.startswith("drl-")]
    recs = records()
    owned = {ns for r in recs if r.owner_alive() for ns in r.namespaces}
    out = [f"netns {n}" for n in listed if n not in owned and netns.exists(n)]
    out += [f"record {r.lab} (owner {r.owner_pid} dead)" for r in recs if not r.owner_alive()]
    return out
