"""Small helpers shared by every layer: polling with a deadline, text tables."""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TextIO, TypeVar

T = TypeVar("T")

#: Multiplies every deadline; set DRLAB_TIMEOUT_SCALE for slow machines
#: (the VM runner sets it, since Python there runs about 10x slower).
TIMEOUT_SCALE = float(os.environ.get("DRLAB_TIMEOUT_SCALE", "1"))


class Timeout(AssertionError):
    """A polled condition did not become true before its deadline."""


def wait_for(cond: Callable[[], T], timeout: float = 5.0, what: str = "condition",
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
        import sys
        import threading

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
        import sys

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
        import sys

        with self._lock:
            if self._live:
                err = self._stream or sys.stderr
                err.write("\r\x1b[K")
                err.flush()
                self._live = False
            print(text, flush=True)

    # -- counting -----------------------------------------------------------------
    def start(self, what: str, total: int) -> None:
        import threading

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


def sharded(items: list[T], shard: tuple[int, int] | None) -> list[tuple[int, T]]:
    """``(index, item)`` of every Nth item from the Ith (all of them without a shard)."""
    if shard is None:
        return list(enumerate(items))
    i, n = shard
    return [(j, x) for j, x in enumerate(items) if j % n == i - 1]
