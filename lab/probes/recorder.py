"""A flight recorder: every interface of a lab, for as long as it is up, in a bounded ring.

A test that fails in CI cannot be rerun to capture it, so the pytest plugin
records every lab it builds from the moment the lab is built until the test
ends, and writes the frames as pcaps only if the test failed
(``--drlab-capture``)::

    rec = Recorder()
    rec.add(lab)                 # one AF_PACKET socket per host interface (not lo)
    ...                          # the test
    rec.stop()                   # drain what the kernel still queues, close the sockets
    recording_of(lab).write(directory)   # <lab>-<host>-<iface>.pcap, one per interface

The sockets are the same as :class:`~lab.probes.capture.Capture`'s and just
as passive: no promiscuous mode, nothing sent, no effect on other sockets or
captures on the same interface. One background thread per :class:`Recorder`
waits on all of its sockets with epoll and, :data:`BATCH` after a frame
arrives, moves everything queued into its lab's ring, so the kernel's socket
buffer (which, when full, drops the *newest* frames) never fills up with
frames the ring should hold. Batching hands the GIL over once per batch, not
once per frame: recording costs the test's thread about 5 µs per frame on
a 2-CPU host, and nothing when the lab is quiet.

The ring is bounded per lab (:data:`RING_BYTES`, frame bytes plus a fixed
per-frame overhead, over all its interfaces): when full, the lab's oldest
frames are dropped, so a failure keeps the traffic that led up to it. What
the ring dropped, and anything the kernel dropped
(``PACKET_STATISTICS``), is counted per interface and reported.

The thread never raises into a test: an error on one socket stops that
interface's recording and is reported with it; any other error stops the
recorder and is reported by :meth:`Recording.summary`.
"""

from __future__ import annotations

import contextlib
import errno
import os
import select
import socket
import struct
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from weakref import WeakKeyDictionary

from lab.builder import Lab
from lab.probes.capture import write_pcap
from lab.util import close_soon, scaled
from lab.wire.packet import PACKET_OUTGOING, SO_TIMESTAMPNS, SOL_PACKET, Frame, packet_socket

#: Bound of one lab's ring: captured bytes plus :data:`FRAME_OVERHEAD` per frame.
RING_BYTES = 8 << 20
#: What one kept frame costs in memory besides its bytes (tuple, float, bytes header, slot).
FRAME_OVERHEAD = 144  # measured with tracemalloc: ~137 bytes on CPython 3.11
#: How long the thread lets frames gather after a wake-up; the kernel queues
#: them meanwhile, in a socket buffer of :data:`RCVBUF` bytes per interface.
BATCH = 0.002
RCVBUF = 4 << 20
SO_RCVBUFFORCE = 33
PACKET_STATISTICS = 6
_CMSG_SPACE = socket.CMSG_SPACE(16)
_TIMESPEC = struct.Struct("qq")

#: The recording of each lab (at most one: a lab is recorded by one recorder).
_RECORDINGS: WeakKeyDictionary[Lab, Recording] = WeakKeyDictionary()


def recording_of(lab: Lab) -> Recording | None:
    """The flight recording of ``lab``, if a :class:`Recorder` recorded it."""
    return _RECORDINGS.get(lab)


@dataclass(eq=False)
class Tap:
    """One interface of one host: its socket and what it saw."""

    host: str
    iface: str
    sock: socket.socket | None
    seen: int = 0            # frames read from the kernel
    evicted: int = 0         # of those, dropped from the ring (oldest first)
    kernel_drops: int = 0    # frames the kernel could not queue (socket buffer full)
    downs: int = 0           # times the interface went down (or away) while recorded
    error: str | None = None

    @property
    def name(self) -> str:
        return f"{self.host}-{self.iface}"


@dataclass(eq=False)
class Recording:
    """Every frame of one lab's interfaces, oldest first, within ``budget`` bytes."""

    lab_id: str
    budget: int
    taps: list[Tap] = field(default_factory=list)
    #: (tap, kernel timestamp, frame bytes, outgoing), oldest first: Frames are
    #: made only when written, which halves the recorder's work per frame
    ring: deque[tuple[Tap, float, bytes, bool]] = field(default_factory=deque, repr=False)
    size: int = 0
    started: float = field(default_factory=time.time)
    stopped: float | None = None
    error: str | None = None  # the recorder's own failure, if any

    def keep(self, tap: Tap, frame: Frame) -> None:
        """Add one frame (the recorder's thread does the same, inline)."""
        tap.seen += 1
        self.ring.append((tap, frame.ts, frame.data, frame.outgoing))
        self.size += len(frame.data) + FRAME_OVERHEAD
        if self.size > self.budget:
            self.evict()

    def evict(self) -> None:
        """Drop the oldest frames until the ring is within its budget."""
        ring = self.ring
        while self.size > self.budget and ring:
            old_tap, _ts, data, _out = ring.popleft()
            old_tap.evicted += 1
            self.size -= len(data) + FRAME_OVERHEAD

    def frames(self, tap: Tap) -> list[Frame]:
        # list() copies the ring in one step, safe even while the recorder appends
        return [Frame(ts, data, out) for t, ts, data, out in list(self.ring) if t is tap]

    @property
    def dropped(self) -> int:
        return sum(t.evicted + t.kernel_drops for t in self.taps)

    def files(self, directory: Path) -> list[Path]:
        return [directory / f"{self.lab_id}-{t.name}.pcap" for t in self.taps]

    def write(self, directory: Path) -> list[Path]:
        """One pcap per interface, empty ones included (nothing seen is evidence too)."""
        return [write_pcap(self.frames(t), p) for t, p in zip(self.taps, self.files(directory),
                                                             strict=True)]

    def summary(self) -> list[str]:
        """What was recorded: one line per interface (its pcap, frames kept, any loss)."""
        end = self.stopped or time.time()
        ring = f"ring {self.budget / (1 << 20):g} MiB per lab, {self.size / 1024:.0f} KiB used"
        lines = [f"every interface recorded for {end - self.started:.2f}s, one pcap each "
                 f"({ring}):"]
        if self.error:
            lines.append(f"  recorder failed, recording incomplete: {self.error}")
        width = max((len(t.name) for t in self.taps), default=0) + len(self.lab_id) + 6
        for t in self.taps:
            kept = t.seen - t.evicted
            note = [f"{kept} frame{'' if kept == 1 else 's'}"]
            if t.evicted:
                note.append(f"{t.evicted} oldest dropped by the ring")
            if t.kernel_drops:
                note.append(f"{t.kernel_drops} dropped by the kernel (socket buffer full)")
            if t.downs:
                note.append(f"interface went down (or away) {t.downs}x")
            if t.error:
                note.append(f"recording stopped: {t.error}")
            lines.append(f"  {f'{self.lab_id}-{t.name}.pcap':<{width}}  " + ", ".join(note))
        return lines


class Recorder:
    """Records labs (:meth:`add`) until :meth:`stop`; one thread, started with the first tap."""

    def __init__(self, budget: int = RING_BYTES):
        self.budget = budget
        self.recordings: list[Recording] = []
        self._taps: dict[int, tuple[Recording, Tap]] = {}  # fd -> ...
        self._epoll = select.epoll()
        self._wake = os.eventfd(0, os.EFD_NONBLOCK | os.EFD_CLOEXEC)
        self._epoll.register(self._wake, select.EPOLLIN)
        self._stopping = False
        self._thread: threading.Thread | None = None
        self._closed = False

    @property
    def running(self) -> bool:
        """Whether the recorder's thread is alive (it starts with the first socket)."""
        return self._thread is not None and self._thread.is_alive()

    def add(self, lab: Lab) -> Recording:
        """Start recording every interface of every host of ``lab`` (not ``lo``).

        An interface whose socket cannot be opened is reported in the
        recording, not raised: recording must never fail a test.
        """
        if self._closed:
            raise RuntimeError("recorder already stopped")
        rec = Recording(lab.id, self.budget)
        for h in lab.topology.hosts:
            for i in h.interfaces:
                tap = Tap(h.name, i.name, None)
                try:
                    tap.sock = packet_socket(lab, h.name, i.name)
                    tap.sock.setblocking(False)
                    with contextlib.suppress(OSError):  # past rmem_max (needs CAP_NET_ADMIN)
                        tap.sock.setsockopt(socket.SOL_SOCKET, SO_RCVBUFFORCE, RCVBUF)
                except OSError as e:
                    tap.error = f"cannot open a packet socket: {e}"
                rec.taps.append(tap)
        for tap in rec.taps:
            if tap.sock is not None:
                self._taps[tap.sock.fileno()] = (rec, tap)
                self._epoll.register(tap.sock.fileno(), select.EPOLLIN)
        self.recordings.append(rec)
        _RECORDINGS[lab] = rec
        if self._thread is None and self._taps:
            self._thread = threading.Thread(target=self._run, name="drlab-recorder",
                                            daemon=True)
            self._thread.start()
        return rec

    def _drain(self, rec: Recording, tap: Tap) -> None:
        """Move every frame the kernel queued for ``tap`` into the ring.

        What :func:`lab.wire.packet.recv_frame` does, inline: this loop is the
        recorder's whole cost per frame, paid while the test runs.
        """
        sock = tap.sock
        if sock is None or tap.error:
            return
        recvmsg, append, budget = sock.recvmsg, rec.ring.append, rec.budget
        while True:
            try:
                data, anc, _flags, addr = recvmsg(65535, _CMSG_SPACE)
            except BlockingIOError:
                return
            except OSError as e:
                if e.errno == errno.ENETDOWN:  # reported once per down; it records on when up
                    tap.downs += 1
                    continue
                if e.errno == errno.EAGAIN:
                    return
                tap.error = f"recv: {e}"
                try:
                    self._epoll.unregister(sock.fileno())
                except (OSError, ValueError):
                    pass
                return
            ts = 0.0
            for level, typ, cdata in anc:
                if level == socket.SOL_SOCKET and typ == SO_TIMESTAMPNS:
                    sec, nsec = _TIMESPEC.unpack_from(cdata)
                    ts = sec + nsec / 1e9
            append((tap, ts, data, addr[2] == PACKET_OUTGOING))
            tap.seen += 1
            rec.size += len(data) + FRAME_OVERHEAD
            if rec.size > budget:
                rec.evict()

    def _drain_all(self) -> None:
        for rec, tap in list(self._taps.values()):
            self._drain(rec, tap)

    def _run(self) -> None:
        try:
            while not self._stopping:
                events = self._epoll.poll()
                if not self._stopping:
                    # let frames gather: one wake-up (one GIL hand-over) per batch,
                    # not per frame, is what keeps the test's own thread fast
                    time.sleep(BATCH)
                for fd, _ev in events:
                    if fd == self._wake:
                        os.eventfd_read(self._wake)
                        continue
                    entry = self._taps.get(fd)
                    if entry is not None:
                        self._drain(*entry)
            self._drain_all()
        except BaseException as e:  # recorded, never raised into the test
            for rec in self.recordings:
                rec.error = rec.error or f"{type(e).__name__}: {e}"

    def stop(self) -> None:
        """Drain every socket, stop the thread, close the sockets. Idempotent."""
        if self._closed:
            return
        self._closed = True
        self._stopping = True
        os.eventfd_write(self._wake, 1)
        if self._thread is not None:
            self._thread.join(scaled(10))
            if self._thread.is_alive():
                for rec in self.recordings:
                    rec.error = rec.error or "the recorder thread did not stop"
                return  # it still uses the sockets: leave them to it (it is a daemon)
        else:
            self._drain_all()
        now = time.time()
        for rec in self.recordings:
            rec.stopped = now
            for tap in rec.taps:
                if tap.sock is None:
                    continue
                try:
                    _packets, drops = struct.unpack(
                        "II", tap.sock.getsockopt(SOL_PACKET, PACKET_STATISTICS, 8))
                    tap.kernel_drops += drops
                except OSError:
                    pass
                close_soon(tap.sock)
                tap.sock = None
        self._taps.clear()
        self._epoll.close()
        os.close(self._wake)
