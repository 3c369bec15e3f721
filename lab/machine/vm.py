"""A VM that stays up: labs that outlive a command on a host without IPVS.

``drlab vm start`` boots a Debian kernel with IPVS (``scripts/vm-run``) whose one
command is a server (:func:`serve`): a warm interpreter, every module of the lab
imported once. ``scripts/drlab up|status|check|...`` then hands each command to
it (:func:`run_remote`) instead of booting a VM of its own, so the lab one
command builds is there for the next, and no command pays a boot or a 20 s
interpreter start.

The host and the guest share one directory, :data:`VM_DIR` (``/run/drlab/vm``,
beside the labs' records; the guest mounts it read-write over 9p). It is root's
own: made with mode 0700 and checked by lstat (owner uid 0, not a link; its parent
too), so nobody else can put a command in it; a link or someone's directory in its
way is refused in one line. A command is a JSON file in ``req/``; the server claims it,
forks a child that runs it with stdout and stderr in ``out/<id>.out|.err`` (the
host streams them as they grow), stdin from ``out/<id>.in`` when the command
reads it (``drlab shell``), and writes ``out/<id>.rc`` when it ends. When the
host's side is a terminal the command runs on a pty in the VM instead (output
in ``.out``, a new window size in ``out/<id>.winsz``); a file
``out/<id>.cancel`` interrupts it (Ctrl-C on the host). ``stop`` ends the server
and with it the VM. The server started by ``vm start`` watches the guest's kernel
log (``--kmsg /dev/kmsg``, :mod:`lab.machine.dmesg`): a warning is reported with the
next command that ends (``out/<id>.kwarn``; exit 124 if it succeeded) and kept in
``kernel-warnings`` for ``vm status``.

Ownership, as for labs (:mod:`lab.builder.ownership`): ``/run/drlab/vm.json`` is
written before anything starts and names the process that boots the VM (pid and
start time: a recycled pid, or a host rebooted since, is not mistaken for it).
That process leads a session of its own, and ``scripts/vm-run`` starts virtme-ng
(and so qemu) in another, which it records in its directory; ``stop`` and ``drlab
cleanup`` end the processes of those sessions and their descendants (root's only,
none older than the record's process), qemu included, and nothing else, however
its command line reads. A record whose VM is gone is never reported as a running
VM.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import platform
import pty
import re
import runpy
import select
import shutil
import signal
import stat
import struct
import subprocess
import sys
import termios
import threading
import time
import traceback
import tty as tty_
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, BinaryIO

from lab.builder.ownership import RUN_DIR, alive, proc_start_time
from lab.errors import LabError, PreflightError, UsageError
from lab.machine import dmesg, preflight
from lab.util import (
    Timeout,
    check_dir,
    open_new,
    private_dir,
    scaled,
    wait_for,
    write_atomic,
)

REPO = Path(__file__).resolve().parents[2]
VM_DIR = RUN_DIR / "vm"
RECORD = RUN_DIR / "vm.json"
#: How long ``vm start`` waits (seconds, scaled by DRLAB_TIMEOUT_SCALE) as long as the
#: boot makes progress (its console grows; the server, once it runs, notes each module
#: it imports in ``progress``): at most this long without a sign of progress before
#: the server runs (vm-run's KVM probe, the kernel, init, the interpreter's start),
BOOT_STALL = 180.0
#: at most this long between two of the server's notes,
WARM_STALL = 120.0
#: and at most this long in all, progress or not.
START_BOUND = 900.0
#: Where the console of a VM that failed to start is kept (the VM's directory goes).
KEPT_CONSOLE = RUN_DIR / "vm-console.log"
POLL = 0.02


@dataclass
class VmRecord:
    pid: int
    start_time: int | None
    kernel: str
    memory: str
    accel: str
    started: float
    dir: str = str(VM_DIR)
    #: The host's boot (a record from before a reboot names no running VM).
    boot_id: str | None = None

    def alive(self) -> bool:
        return (self.start_time is not None and proc_start_time(self.pid) == self.start_time
                and self.boot_id in (None, boot_id()))


def boot_id() -> str | None:
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        return None


def record() -> VmRecord | None:
    try:
        return VmRecord(**json.loads(_read(RECORD)))
    except (OSError, ValueError, TypeError):
        return None


def _write_record(r: VmRecord) -> None:
    private_dir(RUN_DIR, 0o755)
    write_atomic(RECORD, json.dumps(asdict(r)))


def _read(path: Path) -> str:
    """``path``'s text, never through a link (O_NOFOLLOW: ELOOP if it is one)."""
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    with os.fdopen(fd, "rb") as f:
        return f.read().decode(errors="replace")


def _touch(path: Path) -> None:
    """Create ``path`` (a flag file) if missing, never through a link."""
    os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600))


@dataclass
class Status:
    running: bool
    ready: bool
    record: VmRecord | None
    release: str | None = None
    #: Why there is no running VM although a record or processes were found.
    stale: str | None = None
    #: The kernel's warnings since the VM booted (its server's log of them), if any.
    kernel_warnings: str | None = None

    def text(self) -> str:
        r = self.record
        if not self.running or r is None:
            return "no VM is running" + (f" ({self.stale})" if self.stale else "")
        up = time.time() - r.started
        return (f"VM running: kernel {self.release or r.kernel} ({r.accel}), "
                f"{r.memory} of memory, up {up:.0f} s, "
                + ("ready" if self.ready else "still starting")
                + f"; shared directory {r.dir}; booted by pid {r.pid}"
                + (f"\nthe kernel warned since boot ({r.dir}/kernel-warnings):\n"
                   + self.kernel_warnings.rstrip() if self.kernel_warnings else ""))


def status() -> Status:
    r = record()
    if r is None:
        return Status(False, False, None)
    if not r.alive():
        return Status(False, False, r, stale=f"the VM booted by pid {r.pid} is gone")
    try:
        release: str | None = _read(VM_DIR / "ready").strip()
    except OSError:
        release = None
    try:
        warned: str | None = _read(VM_DIR / "kernel-warnings")
    except OSError:
        warned = None
    return Status(True, release is not None, r, release, kernel_warnings=warned)


def running() -> bool:
    s = status()
    return s.running and s.ready


# -- lifecycle --------------------------------------------------------------------


def start(kernel: str | None = None, memory: str = "2G", accel: str = "auto",
          progress: Callable[[str], None] = lambda _m: None) -> Status:
    """Boot the VM with the server in it and wait until it is warm."""
    preflight.require_root()
    s = status()
    if s.running:
        raise UsageError(f"a VM is already running ({s.text()}); `drlab vm stop` first")
    private_dir(RUN_DIR, 0o755)  # checked (root's own, not a link) before anything in it
    _remove(s.record)  # what a VM that is gone left behind (refused if it is not root's)
    if kernel is not None and not Path(kernel).is_file():
        raise UsageError(f"--kernel {kernel}: no such file")
    vm_run = REPO / "scripts" / "vm-run"
    if not vm_run.exists():
        raise UsageError(f"{vm_run} not found: run drlab vm from the repository")
    # the record first: whoever finds it before the VM runs sees this process
    me = os.getpid()
    rec = VmRecord(me, proc_start_time(me), kernel or "newest /boot/vmlinuz-* with IPVS",
                   memory, accel, time.time(), boot_id=boot_id())
    _write_record(rec)
    booted = False
    try:
        private_dir(VM_DIR)  # _remove left none: a new one, 0700
        for sub in ("req", "run", "out"):
            (VM_DIR / sub).mkdir(mode=0o700)
        console = open_new(VM_DIR / "console.log")
        env = {**os.environ, "DRLAB_TIMEOUT_SCALE": os.environ.get("DRLAB_TIMEOUT_SCALE", "10")}
        cmd = [str(vm_run), "--force-vm", "--memory", memory, "--accel", accel,
               "--share", str(VM_DIR), *(["--kernel", kernel] if kernel else []), "--",
               sys.executable, "-m", "lab", "vm", "serve", "--kmsg", "/dev/kmsg",
               str(VM_DIR)]
        p = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=console,
                             stderr=subprocess.STDOUT, cwd=REPO, env=env,
                             start_new_session=True)
        os.close(console)
        booted = True
        rec.pid, rec.start_time = p.pid, proc_start_time(p.pid)
        _write_record(rec)
        progress(f"vm: booting (pid {p.pid}; console in {VM_DIR / 'console.log'}) ...")

        _wait_ready(p)
        m = _accel_line(VM_DIR / "console.log")
        if m:
            rec.accel = m
            _write_record(rec)
    except BaseException:
        if booted:  # what it said, for after its directory is gone
            with contextlib.suppress(OSError):
                write_atomic(KEPT_CONSOLE, _read(VM_DIR / "console.log"))
        stop(quiet=True)
        raise
    with contextlib.suppress(FileNotFoundError):
        KEPT_CONSOLE.unlink()  # a failed start's, older
    return status()


def _size(path: Path) -> int:
    try:
        return os.lstat(path).st_size
    except OSError:
        return -1


def _wait_ready(p: subprocess.Popen[bytes]) -> None:
    """Wait until the server says it is ready, as long as the boot makes progress
    (:data:`BOOT_STALL`, :data:`WARM_STALL`, :data:`START_BOUND`); else
    :class:`PreflightError` with the console's last lines (kept in
    :data:`KEPT_CONSOLE`)."""
    console, notes = VM_DIR / "console.log", VM_DIR / "progress"
    t0 = time.monotonic()
    since, shown = t0, (-1, -1)  # when it last made progress, and what it had shown then

    def up() -> bool:
        nonlocal since, shown
        if p.poll() is not None:
            raise PreflightError(f"the VM ended before it was ready (exit {p.returncode}): "
                                 f"{_tail(console)} (its console is kept in {KEPT_CONSOLE})")
        if (VM_DIR / "ready").exists():
            return True
        now, seen = time.monotonic(), (_size(console), _size(notes))
        if seen != shown:
            since, shown = now, seen
        stall = scaled(WARM_STALL if seen[1] > 0 else BOOT_STALL)
        if now - since > stall:
            where = (f"the server's last note: {_tail(notes, 1)}" if seen[1] > 0
                     else "its server never started")
            raise PreflightError(
                f"the VM made no progress for {stall:.0f} s ({where}; up {now - t0:.0f} s): "
                f"{_tail(console)} (its console is kept in {KEPT_CONSOLE})")
        return False
    try:
        wait_for(up, START_BOUND, "the VM's server to be ready", interval=0.05,
                 max_interval=0.2)
    except Timeout as e:
        raise PreflightError(f"{e}, though it made progress: {_tail(console)} "
                             f"(its console is kept in {KEPT_CONSOLE})") from None


def note(d: Path, what: str) -> None:
    """The server's progress while it starts (the host waits as long as it grows)."""
    with contextlib.suppress(OSError), os.fdopen(open_new(d / "progress", append=True),
                                                 "a") as f:
        f.write(what + "\n")


def _accel_line(console: Path) -> str | None:
    """What vm-run chose (KVM or software emulation), from its console."""
    with contextlib.suppress(OSError):
        for line in _read(console).splitlines():
            if "booting" in line and " with " in line:
                return line.split(" with ", 1)[1]
    return None


def _tail(path: Path, n: int = 3) -> str:
    with contextlib.suppress(OSError):
        lines = [x for x in _read(path).splitlines() if x.strip()]
        return " | ".join(lines[-n:]) or "no output"
    return "no output"


@dataclass(frozen=True)
class _Proc:
    ppid: int
    sid: int
    start: int
    uids: tuple[int, ...]


def _procs() -> dict[int, _Proc]:
    """Every live process: its parent, session, start time and (real, effective) uids."""
    out = {}
    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        try:
            st = (d / "stat").read_text().rsplit(")", 1)[1].split()
            uid = next(x for x in (d / "status").read_text().splitlines()
                       if x.startswith("Uid:")).split()[1:3]
        except (OSError, IndexError, StopIteration):
            continue  # gone meanwhile
        if st[0] in ("Z", "X"):
            continue
        out[int(d.name)] = _Proc(int(st[1]), int(st[3]), int(st[19]), tuple(map(int, uid)))
    return out


#: A process that owns processes: (pid, start time). It, the members of the session
#: it leads and the descendants of both are its processes.
Owner = tuple[int, int | None]


def _owned(owners: list[Owner]) -> dict[int, int]:
    """The processes (pid -> start time) of ``owners``: each owner that is alive (by pid
    and start time), the members of the session it leads (while any of them lives its
    pid is not reused) and the descendants of all these; only this user's (root's)
    processes and none that started before its owner. Never this process."""
    procs = _procs()
    me = os.geteuid()
    found: dict[int, int] = {}
    for pid, start in owners:
        if start is None or (pid in procs and procs[pid].start != start):
            continue  # unknown, or the pid is another process's now
        mine = {p for p, x in procs.items()
                if (p == pid or x.sid == pid) and x.start >= start}
        while True:  # and their descendants
            more = {p for p, x in procs.items() if x.ppid in mine and p not in mine
                    and x.start >= start}
            if not more:
                break
            mine |= more
        found.update({p: procs[p].start for p in mine
                      if procs[p].uids == (me, me) and p != os.getpid()})
    return found


def _vm_owners(r: VmRecord) -> list[Owner]:
    """The process that booted the VM (``scripts/vm-run``, leading a session of its own)
    and the session vm-run recorded for virtme-ng and qemu in its directory."""
    owners: list[Owner] = [(r.pid, r.start_time)]
    for d in _run_dirs():
        owner = _owner_of(d, "owner")
        if owner is not None and owner == (r.pid, r.start_time):
            vm = _owner_of(d, "vm")
            if vm is not None:
                owners.append(vm)
    return owners


def _end(owners: list[Owner]) -> list[int]:
    """End (TERM, then KILL) the processes of ``owners`` (:func:`_owned`); return their
    pids. A process is signalled only while its pid still has the start time found."""
    procs = first = _owned(owners)
    for sig in (signal.SIGTERM, signal.SIGKILL):
        for pid, start in procs.items():
            if proc_start_time(pid) == start:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, sig)
        def ended(left: dict[int, int] = procs) -> bool:
            return not any(alive(p, t) for p, t in left.items())

        with contextlib.suppress(Timeout):
            wait_for(ended, 3, "the VM's processes to end")
        procs = {p: t for p, t in procs.items() if alive(p, t)}
        if not procs:
            break
    if procs:
        raise LabError(f"VM processes {sorted(procs)} do not end")
    return sorted(first)


def _rmtree(d: Path) -> None:
    """Remove root's directory ``d`` (links in it are removed, never followed); a
    removal that fails says so."""
    try:
        shutil.rmtree(d)
    except OSError as e:
        raise LabError(f"cannot remove {d}: {e.strerror or e}") from None


def _remove(r: VmRecord | None) -> list[str]:
    """End every process of the VM and remove its directory and record. A directory in
    :data:`VM_DIR`'s place that is not root's own (a link, someone's directory) is
    refused (:class:`UnsafePathError`), never removed nor written into."""
    done = []
    if os.path.lexists(VM_DIR):
        check_dir(VM_DIR, 0o755)  # root's own, not a link, nobody else may write in it
    pids = _end(_vm_owners(r)) if r is not None else []
    if pids:
        done.append(f"ended the VM's processes {pids}")
    if os.path.lexists(VM_DIR):
        _rmtree(VM_DIR)
        done.append(f"removed {VM_DIR}")
    with contextlib.suppress(FileNotFoundError):
        RECORD.unlink()
        done.append(f"removed {RECORD}")
    return done


def stop(quiet: bool = False) -> str:
    """Ask the server to end (the VM powers off), then end whatever is left."""
    s = status()
    if s.running and s.ready:
        _touch(VM_DIR / "stop")
        with contextlib.suppress(Exception):
            wait_for(lambda: not s.record or not s.record.alive(), 20,
                     "the VM to power off", interval=0.05, max_interval=0.2)
    left = _remove(s.record)
    if not s.running and not left and not quiet:
        return "no VM is running"
    return "VM stopped" if s.running else "no VM was running; " + "; ".join(left or ["-"])


def reap() -> list[str]:
    """``drlab cleanup``: a VM whose booting process is gone leaves nothing behind
    (a running VM is left alone: `drlab vm stop` ends it), nor does a killed
    ``scripts/vm-run`` (its directory, :func:`reap_runs`). In a VM there is nothing
    of this to reap (what it sees there is the directory of the VM it runs in)."""
    if preflight.in_vm():
        return []
    r = record()
    done: list[str] = []
    if (r is None or not r.alive()) and (r is not None or os.path.lexists(VM_DIR)):
        done = _remove(r)
    return done + reap_runs()


#: Where ``scripts/vm-run`` makes its directory (``vm-run.XXXXXX``, with ``owner``:
#: its pid and start time, and ``vm``: the session of its virtme-ng and qemu).
RUNS_DIR = Path("/tmp")


def _run_dirs() -> list[Path]:
    """``scripts/vm-run``'s directories: root's own (by lstat), none else."""
    out = []
    for d in sorted(RUNS_DIR.glob("vm-run.*")):
        with contextlib.suppress(OSError):
            st = d.lstat()
            if stat.S_ISDIR(st.st_mode) and st.st_uid == os.geteuid():
                out.append(d)
    return out


def _owner_of(d: Path, name: str) -> Owner | None:
    """The (pid, start time) vm-run wrote in ``d/name``; None if there is none."""
    try:
        pid, start = (int(x) for x in _read(d / name).split())
    except (OSError, ValueError):
        return None
    return pid, start


def reap_runs(grace: float = 60.0) -> list[str]:
    """Clean up after ``scripts/vm-run`` runs that were killed (SIGKILL runs no trap):
    where the owner named in ``owner`` is gone, end the VM it left (the session it
    recorded in ``vm``: virtme-ng, qemu) and remove the directory. A directory
    without an owner (a vm-run from before it wrote one) is removed only when it is
    ``grace`` seconds old; no process is ended for it."""
    removed = []
    for d in _run_dirs():
        try:
            owner = _owner_of(d, "owner")
            if owner is not None and alive(*owner):
                continue
            if owner is None and time.time() - d.lstat().st_mtime < grace:
                continue  # no owner to ask (an older vm-run, or one just starting)
            vm = _owner_of(d, "vm")
            pids = _end([vm]) if vm is not None else []
            _rmtree(d)
            removed.append(f"removed {d} (its scripts/vm-run was killed)"
                           + (f" and ended its VM's processes {pids}" if pids else ""))
        except FileNotFoundError:
            continue  # its vm-run removed it meanwhile
    return removed


# -- the host side of a command ---------------------------------------------------


def check_written(paths: list[tuple[str, str]], cwd: Path | None = None,
                  shared: tuple[Path, ...] = (REPO,)) -> None:
    """Refuse a command run in a VM (this one, or scripts/vm-run's one-shot) before it
    runs, naming the option and path, if a file it would write (``paths``: (option,
    path), relative ones from ``cwd``) is not under a directory the VM shares
    read-write with the host (``shared``: the repository): the guest sees the rest of
    the host's filesystem read-only with throw-away overlays, so the file would be
    written into the VM and lost. Links are resolved as the guest would resolve them."""
    roots = [Path(os.path.realpath(s)) for s in shared]
    for flag, path in paths:
        where = Path(os.path.realpath((cwd or Path.cwd()) / path))
        if not any(where == r or r in where.parents for r in roots):
            raise UsageError(
                f"{flag} {path}: this command runs in a VM, which writes files through to "
                f"this host only under {', '.join(map(str, roots))}; elsewhere ({where}) it "
                "would be lost in the VM's throw-away overlay: give a path under "
                + ("it" if len(roots) == 1 else "one of them"))


def run_remote(argv: list[str], stdin: bool = False, module: str | None = None) -> int:
    """Run ``drlab ARGV`` (or ``python -m MODULE ARGV``) in the VM's warm interpreter;
    stream its output; return its exit code.

    With ``stdin`` the host's input is forwarded. When the host's input and output
    are both a terminal, the command gets a terminal of its own in the VM (a pty of
    this terminal's size, resized with it): ``drlab shell`` is then an interactive
    shell with its prompt, line editing, job control and Ctrl-C, while this terminal
    is in raw mode (restored however the command ends)."""
    s = status()
    if not s.running:
        raise PreflightError("no VM is running: start one with `scripts/drlab vm start`")
    if not s.ready:  # still starting (another shell ran vm start): wait for it
        wait_for(running, START_BOUND, "the VM's server to be ready", interval=0.05,
                 max_interval=0.2)
    out = VM_DIR / "out"
    tty = stdin and os.isatty(0) and os.isatty(1)
    rid = submit(VM_DIR, argv, stdin=stdin, module=module,
                 env={k: v for k, v in os.environ.items()
                      if k.startswith(("DRLAB_", "PYTEST_"))
                      and k not in ("DRLAB_VM_DIR", "DRLAB_RUN_DIR")},
                 tty=({"size": list(_winsize(1)), "term": os.environ.get("TERM", "vt100")}
                      if tty else None))
    if not tty:
        return _stream(rid, stdin, s.record)
    saved = termios.tcgetattr(0)
    old = signal.signal(signal.SIGWINCH, lambda *_: write_atomic(
        out / f"{rid}.winsz", " ".join(map(str, _winsize(1)))))
    try:
        tty_.setraw(0)
        return _stream(rid, stdin, s.record)
    finally:
        termios.tcsetattr(0, termios.TCSAFLUSH, saved)
        signal.signal(signal.SIGWINCH, old)


def submit(d: Path, argv: list[str], *, env: dict[str, str] | None = None,
           cwd: str | None = None, module: str | None = None, stdin: bool = False,
           tty: dict[str, Any] | None = None) -> str:
    """Hand the server serving ``d`` one command (``drlab ARGV``, or ``python -m MODULE
    ARGV``) with ``env`` added to its environment; return the command's id."""
    rid = f"{time.time():.6f}-{uuid.uuid4().hex[:8]}"
    req = {"id": rid, "argv": argv, "cwd": cwd or os.getcwd(), "stdin": stdin,
           "module": module, "env": env or {}}
    if tty:
        req["tty"] = tty
    write_atomic(d / "req" / f"{rid}.json", json.dumps(req))
    return rid


def result(d: Path, rid: str, timeout: float) -> tuple[int, bytes, bytes]:
    """Wait up to ``timeout`` seconds (not scaled) for command ``rid`` of the server
    serving ``d`` to end: (exit code, stdout, stderr); its files are removed. On
    timeout the command is interrupted and :class:`TimeoutError` raised."""
    out = d / "out"
    deadline = time.monotonic() + timeout
    while not (out / f"{rid}.rc").exists():
        if time.monotonic() > deadline:
            _touch(out / f"{rid}.cancel")
            raise TimeoutError(f"command {rid} took over {timeout:.0f}s")
        time.sleep(POLL)
    got = [_read_bytes(out / f"{rid}.{x}") for x in ("rc", "out", "err", "kwarn")]
    for p in out.glob(f"{rid}.*"):
        p.unlink(missing_ok=True)
    return int(got[0].strip() or 1), got[1], got[2] + got[3]


def _winsize(fd: int) -> tuple[int, int]:
    """(rows, columns) of the terminal on ``fd``."""
    size = os.get_terminal_size(fd)
    return size.lines, size.columns


def _read_bytes(path: Path) -> bytes:
    """``path``'s bytes (b"" if it is missing), never through a link."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except FileNotFoundError:
        return b""
    with os.fdopen(fd, "rb") as f:
        return f.read()


def _stream(rid: str, stdin: bool, vm: VmRecord | None) -> int:
    """Forward stdin (if asked), stream the command's output; its exit code."""
    out = VM_DIR / "out"
    if stdin:
        feeder = threading.Thread(target=_feed_stdin, args=(out / f"{rid}.in",), daemon=True)
        feeder.start()
    streams = [(out / f"{rid}.out", sys.stdout.buffer), (out / f"{rid}.err", sys.stderr.buffer)]
    offsets = [0, 0]
    rc_file = out / f"{rid}.rc"
    cancelled = False
    assert vm is not None
    while True:
        try:
            done = rc_file.exists()
            for n, (path, sink) in enumerate(streams):
                with contextlib.suppress(FileNotFoundError), _open_read(path) as f:
                    f.seek(offsets[n])
                    data = f.read()
                    if data:
                        offsets[n] += len(data)
                        sink.write(data)
                        sink.flush()
            if done:
                warned = _read_bytes(out / f"{rid}.kwarn")
                if warned:
                    sys.stderr.buffer.write(b"".join(b"drlab: vm: " + x + b"\n"
                                                     for x in warned.splitlines()))
                    sys.stderr.flush()
                rc = int(_read(rc_file).strip() or 1)
                for p in out.glob(f"{rid}.*"):
                    p.unlink(missing_ok=True)
                return rc
            if not vm.alive():  # its /proc entry only: the record was read once
                raise PreflightError("the VM went away while the command ran")
            time.sleep(POLL)
        except KeyboardInterrupt:
            if cancelled:
                return 130
            cancelled = True
            _touch(out / f"{rid}.cancel")


def _open_read(path: Path) -> BinaryIO:
    """``path`` open for reading (binary), never through a link."""
    return os.fdopen(os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC), "rb")


def _feed_stdin(path: Path) -> None:
    """Append what the host's stdin gives to the command's input file; EOF is a file."""
    with os.fdopen(open_new(path, append=True), "ab", buffering=0) as f:
        while True:
            try:
                data = os.read(0, 4096)
            except OSError:
                data = b""
            if not data:
                break
            f.write(data)
    _touch(path.with_suffix(".eof"))


# -- the guest side: the server ---------------------------------------------------


class _KernelLog:
    """The guest's kernel log as the server watches it (``kmsg``: /dev/kmsg): warnings
    (:mod:`lab.machine.dmesg`) that appear are added to ``d/kernel-warnings`` (all since
    boot, for ``vm status``) and held until the next command ends, whose result
    reports them (``out/<id>.kwarn``)."""

    def __init__(self, d: Path, kmsg: str | None) -> None:
        self.d, self.kmsg, self.seq, self.pending = d, kmsg, -1, ""

    def check(self) -> None:
        if self.kmsg is None:
            return
        try:
            msgs, self.seq = dmesg.kmsg_records(self.seq, self.kmsg)
        except OSError as e:  # said on the VM's console, and not tried again
            print(f"drlab vm serve: cannot read {self.kmsg}: {e.strerror}; its warnings "
                  "are not watched", file=sys.stderr, flush=True)
            self.kmsg = None
            return
        text = dmesg.report(dmesg.scan(msgs))
        if text:
            self.pending += text + "\n"
            with contextlib.suppress(OSError), os.fdopen(
                    open_new(self.d / "kernel-warnings", append=True), "a") as f:
                f.write(f"{time.strftime('%H:%M:%S')} {text}\n")

    def take(self) -> str:
        self.check()
        text, self.pending = self.pending, ""
        return text


def serve(d: Path, run: Callable[[list[str]], int],
          warm: Callable[[Callable[[str], None]], None], kmsg: str | None = None) -> int:
    """The VM's one command: import everything (``warm``, which notes its progress
    with the function it is given), say ready, then run each request in a forked
    child (``run(argv)``) until ``d/stop`` appears. With ``kmsg`` (the guest's
    /dev/kmsg) the kernel's log is watched: a command that succeeded while the kernel
    warned ends with 124 and the excerpt (:class:`_KernelLog`), unless its
    environment has DRLAB_ALLOW_KERNEL_WARNINGS=1."""
    warm(lambda what: note(d, what))

    klog = _KernelLog(d, kmsg)
    klog.check()  # the boot's: for vm status
    klog.pending = ""
    write_atomic(d / "ready", platform.release())
    children: dict[int, tuple[str, int | None, bool]] = {}  # pid -> (id, feeder, allowed)
    ticks = 0
    while not (d / "stop").exists():
        ticks += 1
        if ticks % 50 == 0:
            klog.check()
        for name in sorted(os.listdir(d / "req")):
            if not name.endswith(".json"):
                continue
            try:
                os.rename(d / "req" / name, d / "run" / name)
            except FileNotFoundError:
                continue
            req = _request(d / "run" / name)
            if req is None:
                continue
            pid, feeder = _spawn(d, req, run)
            children[pid] = (req["id"], feeder, dmesg.allowed(req.get("env") or {}))
        for pid, (rid, feeder, allow) in list(children.items()):
            cancel = d / "out" / f"{rid}.cancel"
            if cancel.exists():
                cancel.unlink(missing_ok=True)
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(pid, signal.SIGINT)
            wpid, st = os.waitpid(pid, os.WNOHANG)
            if wpid == 0:
                continue
            rc = os.waitstatus_to_exitcode(st)
            rc = 128 - rc if rc < 0 else rc
            if feeder is not None:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(feeder, signal.SIGKILL)
                os.waitpid(feeder, 0)
            warned = klog.take()
            if warned:
                write_atomic(d / "out" / f"{rid}.kwarn", warned
                             + ("kernel warnings allowed (DRLAB_ALLOW_KERNEL_WARNINGS)\n"
                                if allow else
                                "the command succeeded, but the kernel warned: exit 124\n"
                                if rc == 0 else ""))
                if rc == 0 and not allow:
                    rc = 124
            write_atomic(d / "out" / f"{rid}.rc", str(rc))
            (d / "run" / f"{rid}.json").unlink(missing_ok=True)
            del children[pid]
        time.sleep(POLL)
    for pid in children:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pid, signal.SIGTERM)
    return 0


_RID = re.compile(r"[0-9]+\.[0-9]+-[0-9a-f]{8}")


def _request(path: Path) -> dict[str, Any] | None:
    """The request in ``path`` if it can be trusted: a regular file (not a link, opened
    without following one) of this user (root) with one link, holding a JSON object
    whose id is the file's name and whose argv is a list of strings. Anything else is
    removed and said on the console; None."""
    why = None
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError as e:
        why = f"cannot open it without following a link: {e.strerror}"
    else:
        with os.fdopen(fd, "rb") as f:
            st = os.fstat(f.fileno())
            if not stat.S_ISREG(st.st_mode) or st.st_uid != os.geteuid() or st.st_nlink != 1:
                why = "not a regular file of root's own"
            else:
                try:
                    req = json.loads(f.read(1 << 20))
                except ValueError:
                    req = None
                if (not isinstance(req, dict) or req.get("id") != path.stem
                        or not _RID.fullmatch(path.stem)
                        or not isinstance(req.get("argv"), list)
                        or not all(isinstance(a, str) for a in req["argv"])):
                    why = "not a request"
                else:
                    return req
    print(f"drlab vm serve: refused {path.name}: {why}", file=sys.stderr, flush=True)
    with contextlib.suppress(OSError):
        path.unlink()
    return None


def _spawn(d: Path, req: dict[str, Any], run: Callable[[list[str]], int]) -> tuple[int, int | None]:
    """Fork the request's child (and, for piped input, its feeder): (pid, feeder pid)."""
    rid = req["id"]
    if req.get("tty"):
        pid = os.fork()
        if pid == 0:
            try:
                os.setsid()
                _relay_tty(d, req, run)  # never returns
            finally:  # a forked child never returns into the server's loop
                os._exit(1)
        return pid, None
    rfd = wfd = -1
    feeder = None
    if req.get("stdin"):
        rfd, wfd = os.pipe()
        feeder = os.fork()
        if feeder == 0:  # tail the host's input file into the pipe
            os.close(rfd)
            _tail_into(d / "out" / f"{rid}.in", wfd)
            os._exit(0)
        os.close(wfd)
    pid = os.fork()
    if pid != 0:
        if rfd >= 0:
            os.close(rfd)
        return pid, feeder
    try:
        os.setsid()
        out = open_new(d / "out" / f"{rid}.out", append=True)
        err = open_new(d / "out" / f"{rid}.err", append=True)
        os.dup2(out, 1)
        os.dup2(err, 2)
        os.dup2(rfd if rfd >= 0 else os.open(os.devnull, os.O_RDONLY), 0)
        _run_request(req, run)
    finally:  # a forked child never returns into the server's loop
        os._exit(1)


def _run_request(req: dict[str, Any], run: Callable[[list[str]], int]) -> None:
    """In the forked child, with its stdio in place: run the command and exit with its
    code."""
    rc = 1
    try:
        with contextlib.suppress(OSError):
            os.chdir(req.get("cwd") or "/")
        os.environ.update(req.get("env") or {})
        signal.signal(signal.SIGINT, signal.default_int_handler)
        if req.get("module"):  # python -m MODULE ARGV, in the warm interpreter

            sys.argv = [req["module"], *req["argv"]]
            runpy.run_module(req["module"], run_name="__main__", alter_sys=True)
            rc = 0
        else:
            rc = int(run(list(req["argv"])) or 0)
    except SystemExit as e:
        rc = e.code if isinstance(e.code, int) else 1
    except BaseException:  # the CLI reports its own errors; this is a bug

        traceback.print_exc()
    finally:
        with contextlib.suppress(Exception):
            sys.stdout.flush()
            sys.stderr.flush()
        os._exit(rc)


def _set_winsize(fd: int, rows: int, cols: int) -> None:
    fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))


def _relay_tty(d: Path, req: dict[str, Any], run: Callable[[list[str]], int]) -> None:
    """The command on a pty of its own (``req["tty"]``): copy the pty's output to
    ``out/<id>.out``, the host's keys from ``out/<id>.in`` to the pty, a new window
    size from ``out/<id>.winsz`` to the pty (the foreground job gets SIGWINCH); exit
    with the command's code when it ends."""
    rid = req["id"]
    rows, cols = req["tty"]["size"]
    sys.stdout.flush()
    pid, master = pty.fork()
    if pid == 0:  # the command: a new session whose controlling terminal is the pty
        try:
            _set_winsize(0, rows, cols)
            os.environ["TERM"] = req["tty"].get("term") or "vt100"
            _run_request(req, run)
        finally:
            os._exit(1)
    # Ctrl-C arrives as a byte through the pty; a cancel (the host was signalled)
    # hangs the command up, as closing a terminal would
    signal.signal(signal.SIGINT, lambda *_: os.killpg(pid, signal.SIGHUP))
    out = open_new(d / "out" / f"{rid}.out", append=True)
    keys, winsz = d / "out" / f"{rid}.in", d / "out" / f"{rid}.winsz"
    pos, size = 0, f"{rows} {cols}"
    while True:
        try:
            ready, _, _ = select.select([master], [], [], POLL)
        except InterruptedError:
            continue
        if ready:
            try:
                data = os.read(master, 65536)
            except OSError:  # EIO: every holder of the pty's other end is gone
                data = b""
            if not data:
                break
            os.write(out, data)
        with contextlib.suppress(FileNotFoundError, ValueError):
            new = _read(winsz).strip()
            if new and new != size:
                size = new
                r, c = map(int, new.split())
                _set_winsize(master, r, c)
        with contextlib.suppress(FileNotFoundError), _open_read(keys) as f:
            f.seek(pos)
            data = f.read()
            if data:
                pos += len(data)
                os.write(master, data)
    _, st = os.waitpid(pid, 0)
    rc = os.waitstatus_to_exitcode(st)
    os._exit(128 - rc if rc < 0 else rc)


def _tail_into(path: Path, fd: int) -> None:
    pos = 0
    eof = path.with_suffix(".eof")
    while True:
        with contextlib.suppress(FileNotFoundError), _open_read(path) as f:
            f.seek(pos)
            data = f.read()
            if data:
                pos += len(data)
                try:
                    os.write(fd, data)
                except BrokenPipeError:
                    return
                continue
        if eof.exists():
            return
        time.sleep(POLL)

