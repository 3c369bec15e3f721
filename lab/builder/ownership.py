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
import re
import shutil
import signal
import stat
import time
from collections.abc import Iterator
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from lab.builder import netns
from lab.errors import UsageError
from lab.util import Timeout, wait_for

RUN_DIR = Path(os.environ.get("DRLAB_RUN_DIR", "/run/drlab"))
LABS_DIR = RUN_DIR / "labs"

#: A lab's name (its namespaces are drl-NAME-HOST). Checked with fullmatch: a
#: pattern ending in ``$`` also accepts a trailing newline.
LAB_NAME_RE = re.compile(r"[a-z0-9][a-z0-9-]{0,15}")
LAB_NAME_RULE = "[a-z0-9][a-z0-9-]{0,15}"
#: What follows drl-LAB- in a lab's namespace: a host, or sw-SEGMENT (the model's
#: host and segment names, lab.model.topology).
_NS_TAIL_RE = re.compile(r"(sw-)?[a-z][a-z0-9]{0,9}")
#: A record is small (a topology as data); a bigger file is not one of ours.
MAX_RECORD_BYTES = 16 << 20


class RecordError(UsageError):
    """A record that is not a lab's own: it names what another lab (or no lab) owns."""


def check_name(lab: object) -> str:
    """``lab`` if it is a lab name, else UsageError (one line; the name shown escaped)."""
    if not isinstance(lab, str) or not LAB_NAME_RE.fullmatch(lab):
        shown = repr(lab[:40]) if isinstance(lab, str) else type(lab).__name__
        raise UsageError(f"lab name {shown} must match {LAB_NAME_RULE}")
    return lab


def lab_dir(lab: str) -> Path:
    """The lab's own directory for configs, logs and pid files."""
    return LABS_DIR / f"{check_name(lab)}.d"


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
        return LABS_DIR / f"{check_name(self.lab)}.json"

    def check(self) -> Record:
        """This record, if everything it names is the lab's own: RecordError otherwise.

        A record names namespaces and files to delete: only drl-LAB-HOST and
        drl-LAB-sw-SEGMENT namespaces and the lab's own directory qualify.
        """
        lab = check_name(self.lab)
        bad: list[str] = []
        prefix = f"drl-{lab}-"
        if not isinstance(self.namespaces, list) or not all(
                isinstance(ns, str) and ns.startswith(prefix)
                and _NS_TAIL_RE.fullmatch(ns[len(prefix):]) for ns in self.namespaces):
            bad.append(f"namespaces not named {prefix}HOST")
        own = str(lab_dir(lab))
        if not isinstance(self.files, list) or not all(
                isinstance(f, str) and f == own for f in self.files):
            bad.append(f"files other than {own}")
        if not isinstance(self.pids, list) or not all(
                isinstance(p, list) and len(p) == 2
                and all(isinstance(x, int) and not isinstance(x, bool) for x in p)
                for p in self.pids):
            bad.append("pids that are not [pid, start time] pairs")
        if not isinstance(self.owner_pid, int) or not (
                self.owner_start is None or isinstance(self.owner_start, int)):
            bad.append("an owner that is not a pid and start time")
        if bad:
            raise RecordError(f"refusing the record of lab {lab}: it names "
                              + ", ".join(bad))
        return self

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
        """The record at ``p`` (a lab's ``LABS_DIR/<lab>.json``), checked.

        Opened without following a link; a regular file of this user's only.
        RecordError when it is not a lab's own record; OSError, ValueError or
        TypeError when it cannot be read as one.
        """
        if p.parent != LABS_DIR or p.suffix != ".json":
            raise RecordError(f"refusing {p}: not a record in {LABS_DIR}")
        lab = check_name(p.stem)
        fd = os.open(p, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK)
        with os.fdopen(fd, "rb") as f:
            st = os.fstat(fd)
            if not stat.S_ISREG(st.st_mode) or st.st_uid != os.geteuid():
                raise RecordError(f"refusing {p}: not a regular file of uid {os.geteuid()}")
            data = json.loads(f.read(MAX_RECORD_BYTES + 1)[:MAX_RECORD_BYTES])
        if not isinstance(data, dict):
            raise TypeError(f"{p}: not a record")
        rec = cls(**data)
        if rec.lab != lab:
            raise RecordError(f"refusing {p}: it is the record of another lab")
        return rec.check()


def new_record(lab: str, namespaces: list[str], topology: str = "",
               persistent: bool = False, topology_data: dict[str, Any] | None = None) -> Record:
    pid = os.getpid()
    rec = Record(lab, pid, proc_start_time(pid), list(namespaces), [], persistent, topology,
                 topology_data=topology_data)
    rec.save()
    return rec


def find(lab: str) -> Record | None:
    """The record of lab ``lab``; None if there is none (or only a half-written one).

    UsageError if ``lab`` is not a lab name, RecordError if its record names what
    is not the lab's own: nothing is read or deleted for either.
    """
    p = LABS_DIR / f"{check_name(lab)}.json"
    try:
        return Record.load(p)
    except FileNotFoundError:
        return None
    except (ValueError, TypeError):
        return None  # not a record (a half-written one never replaces its .tmp)
    except OSError as e:  # (a link: O_NOFOLLOW)
        raise RecordError(f"refusing {p}: {e.strerror}") from None


def records() -> list[Record]:
    out = []
    for p in sorted(LABS_DIR.glob("*.json")) if LABS_DIR.exists() else []:
        try:
            out.append(Record.load(p))
        except (ValueError, TypeError, OSError, UsageError):
            continue  # not a lab's record (a name that is no lab's, a foreign file)
    return out


@contextlib.contextmanager
def _lock() -> Iterator[None]:
    LABS_DIR.mkdir(parents=True, exist_ok=True)
    with open(RUN_DIR / "lock", "w") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        yield


def destroy(rec: Record) -> list[str]:
    """Kill the record's processes, remove its namespaces and the record.

    Returns what was removed (for reports). Safe to call twice. RecordError, before
    anything is touched, if the record names what is not the lab's own.
    """
    rec.check()
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
        try:
            st = p.lstat()
        except FileNotFoundError:
            continue
        with contextlib.suppress(FileNotFoundError):
            if stat.S_ISDIR(st.st_mode):
                shutil.rmtree(p)
                removed.append(f"files {p}")
            else:  # (a link is removed, never followed)
                p.unlink()
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
