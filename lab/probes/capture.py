"""Packet captures on any lab host and interface, written as pcap files.

A capture is an AF_PACKET socket opened inside the host's namespace and bound
to the interface: the kernel queues every frame (in and out) with its
timestamp while the test's code runs; :meth:`Capture.stop` drains the queue.
No thread and no tcpdump process; frames are raw bytes, decoded with scapy
on demand and written as captured (:func:`write_pcap`), so the files open in
Wireshark and in ``scapy.utils.rdpcap``.

    with Capture(lab, "rs1") as cap:          # or capture(lab, "rs1", "director")
        client.connect(lab)
    cap.frames          # [Frame(ts, data, outgoing), ...]
    cap.write("rs1.pcap")

The builder turns TX checksum offload and GSO off on every host interface,
so captured frames carry real checksums and wire-sized segments.
"""

from __future__ import annotations

import socket
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING
from weakref import WeakKeyDictionary

from lab.builder import Lab
from lab.util import close_soon
from lab.wire.packet import Frame, packet_socket, recv_frame

if TYPE_CHECKING:
    from scapy.packet import Packet

#: Captures started on each lab (saved as pcaps when a test fails).
_STARTED: WeakKeyDictionary[Lab, list[Capture]] = WeakKeyDictionary()


def captures_of(lab: Lab) -> list[Capture]:
    """Every capture started on ``lab`` so far (stopped ones included)."""
    return list(_STARTED.get(lab, ()))


class Capture:
    """Frames seen on ``host``/``iface`` between :meth:`start` and :meth:`stop`."""

    def __init__(self, lab: Lab, host: str, iface: str = "eth0"):
        self.lab, self.host, self.iface = lab, host, iface
        self.frames: list[Frame] = []
        self._sock: socket.socket | None = None

    @property
    def name(self) -> str:
        return f"{self.host}-{self.iface}"

    def start(self) -> Capture:
        self._sock = packet_socket(self.lab, self.host, self.iface)
        self._sock.setblocking(False)
        _STARTED.setdefault(self.lab, []).append(self)
        return self

    def poll(self) -> list[Frame]:
        """Move queued frames into :attr:`frames`; return the new ones."""
        new: list[Frame] = []
        if self._sock is None:
            return new
        while (f := recv_frame(self._sock)) is not None:
            new.append(f)
        self.frames += new
        return new

    def stop(self) -> Capture:
        self.poll()
        if self._sock is not None:
            close_soon(self._sock)
            self._sock = None
        return self

    def packets(self) -> list[Packet]:
        return [f.packet() for f in self.frames]

    def write(self, path: str | Path) -> Path:
        """Write the frames as a pcap file (Ethernet link type)."""
        return write_pcap(self.frames, path)

    def __enter__(self) -> Capture:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def write_pcap(frames: Iterable[Frame], path: str | Path) -> Path:
    """Write ``frames`` as a pcap file (Ethernet link type, microsecond kernel
    timestamps), byte for byte as captured: no decoding, so writing is fast.

    The file always has a header, so an empty capture is a valid, empty pcap.
    """
    # lazy: scapy takes ~1 s to import (~10 s in the VM)
    from scapy.utils import RawPcapWriter

    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    w = RawPcapWriter(str(p), linktype=1)
    try:
        w.write_header(None)
        for f in frames:
            sec, usec = divmod(round(f.ts * 1_000_000), 1_000_000)
            w.write_packet(f.data, sec=sec, usec=usec)
    finally:
        w.close()
    return p


@contextmanager
def capture(lab: Lab, *where: str | tuple[str, str]) -> Iterator[dict[str, Capture]]:
    """Capture on several hosts at once: ``capture(lab, "rs1", ("router", "eth1"))``.

    Yields ``{"rs1-eth0": Capture, ...}``; every capture is stopped (drained)
    when the block ends, even on error.
    """
    caps: dict[str, Capture] = {}
    try:
        for w in where:
            host, iface = (w, "eth0") if isinstance(w, str) else w
            c = Capture(lab, host, iface).start()
            caps[c.name] = c
        yield caps
    finally:
        for c in caps.values():
            c.stop()
