"""Small helpers shared by every layer: polling with a deadline, text tables, the
directories root writes into (checked: root's own, nobody else's)."""

from __future__ import annotations

import contextlib
import os
import socket
import stat
import sys
import threading
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TextIO, TypeVar

from lab.errors import UnsafePathError, UsageError

T = TypeVar("T")



def parse_scale(text: str | None) -> tuple[float, str | None]:
    """``DRLAB_TIMEOUT_SCALE``'s value: (scale, None), or (1, why) when it is not a
    positive finite number (unset or empty is 1). The CLI and the pytest plugin turn
    ``why`` into their usage error, so that importing the lab never fails on it."""
    if text is None or not text.strip():
        return 1.0, None
    try:
        v = float(text)
    except ValueError:
        v = -1.0
    if not (0 < v < float("inf")):
        return 1.0, f"DRLAB_TIMEOUT_SCALE={text!r}: give a positive number (1: no scaling)"
    return v, None


#: Multiplies every deadline; set DRLAB_TIMEOUT_SCALE for slow machines
#: (the VM runner sets it, since Python there runs about 10x slower).
TIMEOUT_SCALE, SCALE_ERROR = parse_scale(os.environ.get("DRLAB_TIMEOUT_SCALE"))


class Timeout(AssertionError):
    """A polled condition did not become true before its deadline."""


def wait_for(cond: Callable[[], T | None], timeout: float = 5.0, what: str = "condition",
             interval: float = 0.002, max_interval: float = 0.05) -> T:
    """Poll ``cond`` until it returns a truthy value and return that value.

    Starts polling fast and backs off to ``max_interval``; raises
    :class:`Timeout` naming ``what`` after ``timeout`` seconds (scaled by
    ``DRLAB_TIMEOUT_SCALE``). Never a fixed sleep: returns as soon as the
    condition holds.
    """
    deadline = time.monotonic() + timeout * TIMEOUT_SCALE
    while True:
        value = cond()
        if value:
            return value
        now = time.monotonic()
        if now >= deadline:
            raise Timeout(f"timed out after {timeout * TIMEOUT_SCALE:.1f}s waiting for {what}")
        time.sleep(min(interval, deadline - now))
        interval = min(interval * 2, max_interval)


def scaled(seconds: float) -> float:
    return seconds * TIMEOUT_SCALE


_closer: ThreadPoolExecutor | None = None


def close_soon(sock: socket.socket) -> None:
    """Close ``sock`` in the background.

    Closing an AF_PACKET socket waits for an RCU grace period (~10 ms, much
    more in the VM); nothing needs to wait for that, so a few background
    threads do it while the caller goes on (their waits overlap).
    """
    global _closer
    if _closer is None:
        _closer = ThreadPoolExecutor(max_workers=4, thread_name_prefix="drlab-close")
    _closer.submit(sock.close)


def table(rows: list[list[str]], header: list[str]) -> str:
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    fmt = "  ".join(f"{{:<{w}}}" for w in widths)
    lines = [fmt.format(*header), fmt.format(*("-" * w for w in widths))]
    lines += [fmt.format(*map(str, r)).rstrip() for r in rows]
    return "\n".join("  " + x for x in lines)


class Progress:
    """How far long work is: ``done/total``, elapsed time and an estimate of what is left.

    ``start(what, total)``, then ``step()`` per item, then ``finish()``. A
    Progress is also the message callback the long commands take
    (``progress("building ...")``). Silent unless ``enabled``; then it writes to
    stderr (stdout carries results): on a terminal one live line, redrawn every
    second; otherwise (logs, CI, a pipe) a line when an item is done, at most
    every ``interval`` seconds (``DRLAB_PROGRESS_EVERY``, default 5), and one
    while an item runs long, so no long run is silent.
    """

    def __init__(self, enabled: bool = False, interval: float | None = None,
                 prefix: str = "drlab: ", tty: bool | None = None,
                 stream: TextIO | None = None) -> None:
        self.enabled = enabled
        self._stream = stream
        self.prefix = prefix
        self.interval = interval if interval is not None else float(
            os.environ.get("DRLAB_PROGRESS_EVERY", "5"))
        self._tty = tty if tty is not None else (
            enabled and (stream or sys.stderr).isatty()
            and os.environ.get("DRLAB_PROGRESS_LIVE") != "0")
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.what, self.total, self.done = "", 0, 0
        self._t0 = self._last = 0.0
        self._live = False  # a live line is on the terminal

    # -- messages -----------------------------------------------------------------
    def __call__(self, msg: str) -> None:
        self._write(f"{self.prefix}{msg}")

    def _write(self, line: str, live: bool = False) -> None:
        if not self.enabled:
            return
        with self._lock:
            err = self._stream or sys.stderr
            if self._tty:
                err.write("\r\x1b[K" if self._live else "")
                err.write(line if live else line + "\n")
                self._live = live
            elif not live or time.monotonic() - self._last >= self.interval:
                err.write(line + "\n")
                self._last = time.monotonic()
            err.flush()

    def echo(self, text: str) -> None:
        """Print ``text`` on stdout, first taking the live line off the terminal."""
        with self._lock:
            if self._live:
                err = self._stream or sys.stderr
                err.write("\r\x1b[K")
                err.flush()
                self._live = False
            print(text, flush=True)

    # -- counting -----------------------------------------------------------------
    def start(self, what: str, total: int) -> None:
        self.finish()
        self.what, self.total, self.done = what, total, 0
        self._t0 = self._last = time.monotonic()
        if self.enabled and total > 0:
            self._stop.clear()
            self._thread = threading.Thread(target=self._tick, daemon=True,
                                            name="drlab-progress")
            self._thread.start()

    def step(self, label: str = "") -> None:
        with self._lock:
            self.done += 1
        self._write(self.status(label), live=True)

    def finish(self) -> None:
        """Stop counting; the last status as a line of its own."""
        if self._thread is None:
            return
        self._stop.set()
        self._thread.join()
        self._thread = None
        self._write(self.status())

    def status(self, label: str = "") -> str:
        elapsed = time.monotonic() - self._t0
        left = ""
        if 0 < self.done < self.total:
            left = f", about {_duration(elapsed / self.done * (self.total - self.done))} left"
        return (f"{self.prefix}{self.what}: {self.done}/{self.total} done, "
                f"{_duration(elapsed)} elapsed{left}" + (f" ({label})" if label else ""))

    def _tick(self) -> None:
        every = 1.0 if self._tty else max(self.interval, 0.05)
        while not self._stop.wait(every):
            self._write(self.status(), live=True)

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *exc: object) -> None:
        self.finish()


def _duration(seconds: float) -> str:
    s = int(seconds + 0.5)
    return f"{s // 60}m{s % 60:02d}s" if s >= 60 else f"{s}s"


def parse_shard(text: str, option: str = "--shard") -> tuple[int, int]:
    """``--shard I/N`` (which part of a run a machine takes, see :func:`sharded`):
    ``"I/N"`` (1 <= I <= N) as ``(I, N)``; a usage error otherwise."""
    i, sep, n = text.partition("/")
    if sep and i.isdigit() and n.isdigit() and 1 <= int(i) <= int(n):
        return int(i), int(n)
    raise UsageError(f"{option} {text}: give I/N with 1 <= I <= N (e.g. 2/4)")


def sharded(items: list[T], shard: tuple[int, int] | None) -> list[tuple[int, T]]:
    """``(index, item)`` of every Nth item from the Ith (all of them without a shard)."""
    if shard is None:
        return list(enumerate(items))
    i, n = shard
    return [(j, x) for j, x in enumerate(items) if j % n == i - 1]


def check_dir(path: Path | str, mode: int = 0o700, parent: bool = False) -> None:
    """Raise :class:`UnsafePathError` unless ``path`` (by lstat: a link is not followed)
    is a directory owned by this user (root: uid 0) with no permission bits beyond
    ``mode``; a ``parent`` may instead be root's sticky directory (``/tmp``), where
    nobody can remove or rename what root made in it."""
    try:
        st = os.lstat(path)
    except OSError as e:
        raise UnsafePathError(f"{path}: {e.strerror}") from None
    if stat.S_ISLNK(st.st_mode):
        raise UnsafePathError(f"{path} is a symbolic link, not a directory of its own: "
                              "remove it (root does not write through links)")
    if not stat.S_ISDIR(st.st_mode):
        raise UnsafePathError(f"{path} is in the way: it is not a directory; remove it")
    me = os.geteuid()
    if st.st_uid != me:
        raise UnsafePathError(f"{path} is owned by uid {st.st_uid}, not {me}: someone else "
                              "made it; remove it (root writes only into its own directories)")
    extra = stat.S_IMODE(st.st_mode) & 0o777 & ~mode
    if parent and st.st_mode & stat.S_ISVTX and st.st_uid == 0:
        extra = 0
    if extra:
        raise UnsafePathError(f"{path} has mode {stat.S_IMODE(st.st_mode):04o}: others may "
                              f"{'write into' if extra & 0o022 else 'read'} it "
                              f"(wanted {mode:04o} or stricter)")


def private_dir(path: Path | str, mode: int = 0o700) -> Path:
    """``path``, a directory only this user (root) may use: made with ``mode`` if missing
    (and its parent with 0755, if that is missing), else checked. Either way the parent
    and the directory are checked by lstat (owner, mode, not a link):
    :class:`UnsafePathError` (one line naming the path and what is wrong) if either is
    not root's own, so that root never writes into a directory someone else controls."""
    path = Path(path)
    parent = path.parent
    for d, m in ((parent, 0o755), (path, mode)):
        try:
            os.mkdir(d, m)
        except FileExistsError:
            pass
        except OSError as e:
            raise UnsafePathError(f"cannot make {d}: {e.strerror}") from None
        check_dir(d, 0o755 if d is parent else m, parent=d is parent)
    return path


def open_new(path: Path | str, mode: int = 0o600, *, append: bool = False) -> int:
    """A file descriptor for writing ``path``, a file that must not exist yet (never a
    link followed, never someone's file truncated): O_CREAT|O_EXCL|O_NOFOLLOW; with
    ``append``, an existing regular file is appended to instead (still no link)."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC
    flags |= os.O_APPEND if append else os.O_EXCL
    return os.open(path, flags, mode)


def write_atomic(path: Path | str, text: str, mode: int = 0o600) -> None:
    """Replace ``path`` with a file holding ``text``: written to a new temporary file
    beside it (O_EXCL|O_NOFOLLOW, a random name), then renamed over it."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:12]}.tmp")
    fd = open_new(tmp, mode)
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
        os.rename(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
