"""Small helpers shared by every layer: polling with a deadline, text tables."""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

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
