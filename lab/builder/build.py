"""Model -> kernel: namespaces, bridges, veths, addresses, routes, sysctls.

One named namespace per host (``drl-<lab>-<host>``) and one per L2 segment
(``drl-<lab>-sw-<segment>``) holding a bridge ``br0``. Each host interface is
a veth created from the segment's namespace with its peer placed directly in
the host's namespace, so nothing ever appears in the root namespace. All of it
is done over netlink (pyroute2): no ``ip`` process per step.
"""

from __future__ import annotations

import atexit
import contextlib
import ctypes
import fcntl
import os
import secrets
import signal
import socket
import struct
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from pyroute2 import IPRoute

from lab.builder import addresses, links, netns, ownership, sysctl
from lab.errors import LabError, UsageError
from lab.model import Topology, VirtualService, topology_from_dict, topology_to_dict

SCOPES = {"global": 0, "link": 253, "host": 254}
IFF_NOARP = 0x80

#: Labs alive in this process, torn down at exit if a caller forgot or was interrupted.
_LIVE: dict[str, Lab] = {}
_LIVE_LOCK = threading.Lock()


def host_ns_name(lab: str, host: str) -> str:
    return f"drl-{lab}-{host}"


def segment_ns_name(lab: str, segment: str) -> str:
    return f"drl-{lab}-sw-{segment}"


def port_name(host: str, ifname: str, index: int) -> str:
    """The bridge-side name of a host interface's veth (at most 15 characters)."""
    name = f"{host}-{ifname}"
    return name if len(name) <= 15 else f"p{index}-{host}"[:15]


SIOCETHTOOL = 0x8946
ETHTOOL_STXCSUM = 0x17
ETHTOOL_SGSO = 0x24


def disable_offloads(sock: socket.socket, ifname: str) -> None:
    """Turn off TX checksum offload (and with it TSO) and GSO on ``ifname``.

    ``sock`` is any socket in the interface's namespace. Without this, frames
    captured on a veth carry unfinished checksums and GSO super-frames.
    """
    for cmd in (ETHTOOL_STXCSUM, ETHTOOL_SGSO):
        value = ctypes.create_string_buffer(struct.pack("II", cmd, 0))
        ifreq = struct.pack("16sP", ifname.encode(), ctypes.addressof(value)).ljust(40, b"\0")
        fcntl.ioctl(sock.fileno(), SIOCETHTOOL, ifreq)


def mac_for(host_index: int, if_index: int) -> str:
    """Deterministic, locally administered MACs: 02:d1:00:00:<host>:<if> (1-based)."""
    return f"02:d1:00:00:{host_index + 1:02x}:{if_index + 1:02x}"


class Lab:
    """A built topology. Use as a context manager, or call :meth:`teardown`.

    ``lab.ns(host)`` is the namespace name (for ``ip netns exec``);
    ``lab.ipr(host)`` an IPRoute socket inside it; ``lab.topology`` the model.
    """

    def __init__(self, topology: Topology, *, name: str | None = None,
                 persistent: bool = False, pin_sysctls: bool = True):
        self.topology = topology.validate()
        self.id = ownership.check_name(secrets.token_hex(3) if name is None else name)
        self.persistent = persistent
        #: False builds a naive lab that writes only the topology's own sysctls
        #: (what hand-written labs do; the sysctl-inheritance scenario needs it).
        self.pin_sysctls = pin_sysctls
        self.namespaces: dict[str, str] = {h.name: host_ns_name(self.id, h.name)
                                           for h in topology.hosts}
        self.segment_namespaces = {s.name: segment_ns_name(self.id, s.name)
                                   for s in topology.segments}
        self.macs: dict[tuple[str, str], str] = {}
        self._ipr: dict[str, IPRoute] = {}
        self.record: ownership.Record | None = None
        self.built = False

    # -- lookups ----------------------------------------------------------
    def ns(self, host: str) -> str:
        try:
            return self.namespaces[host]
        except KeyError:
            raise KeyError(f"lab {self.id} has no host {host!r}") from None

    def ipr(self, host_or_ns: str) -> IPRoute:
        """A cached IPRoute socket inside the host's (or a segment's) namespace."""
        ns = self.namespaces.get(host_or_ns, host_or_ns)
        if ns not in self._ipr:
            nl = netns.socket_in(ns, socket.AF_NETLINK, socket.SOCK_DGRAM, 0)
            self._ipr[ns] = IPRoute(fileno=nl.detach())
        return self._ipr[ns]

    def mac(self, host: str, ifname: str = "eth0") -> str:
        return self.macs[(host, ifname)]

    def host_of_mac(self, mac: str) -> str | None:
        for (h, _i), m in self.macs.items():
            if m == mac.lower():
                return h
        return None

    @contextlib.contextmanager
    def inside(self, host: str) -> Iterator[None]:
        """Run the body with this thread inside the host's namespace."""
        with netns.entered(self.ns(host)):
            yield

    @contextlib.contextmanager
    def focus(self, svc: VirtualService) -> Iterator[Lab]:
        """Look at service ``svc`` as the lab's main one (probes read
        ``lab.topology.service``) until the block ends; the hosts are the same."""
        saved = self.topology
        self.topology = saved.focused(svc)
        try:
            yield self
        finally:
            self.topology = saved

    def workdir(self) -> Path:
        """The lab's own directory (``/run/drlab/labs/<lab>.d``) for configs, logs and
        pid files; recorded before it is made, removed with the lab."""
        assert self.record is not None
        d = ownership.lab_dir(self.id)
        if str(d) not in self.record.files:
            self.record.files.append(str(d))
            self.record.save()
        d.mkdir(mode=0o755, parents=True, exist_ok=True)
        return d

    def add_pid(self, pid: int) -> None:
        """Record a process the lab started, so teardown and reaping kill it."""
        assert self.record is not None
        self.record.pids.append([pid, ownership.proc_start_time(pid) or 0])
        self.record.save()

    @classmethod
    def attach(cls, name: str) -> Lab:
        """The running lab ``name`` (made by ``drlab up`` or another process)."""
        rec = ownership.find(name)
        if rec is None or rec.topology_data is None:
            running = ", ".join(r.lab for r in ownership.records()) or "none"
            raise UsageError(f"no running lab {name!r} (running: {running})")
        lab = cls(topology_from_dict(rec.topology_data), name=rec.lab,
                  persistent=rec.persistent)
        lab.record = rec
        lab.built = True
        for hi, h in enumerate(lab.topology.hosts):
            for ii, iface in enumerate(h.interfaces):
                lab.macs[(h.name, iface.name)] = mac_for(hi, ii)
        return lab

    # -- build ------------------------------------------------------------
    def build(self) -> Lab:
        if self.built:
            return self
        all_ns = [*self.segment_namespaces.values(), *self.namespaces.values()]
        for ns in all_ns:
            if netns.exists(ns):
                raise LabError(f"namespace {ns} already exists: is lab {self.id} up already?")

        self.record = ownership.new_record(self.id, all_ns, self.topology.name, self.persistent,
                                           topology_to_dict(self.topology))
        with _LIVE_LOCK:
            _LIVE[self.id] = self
        try:
            self._build()
        except BaseException:
            self.teardown()
            raise
        self.built = True
        return self

    def _build(self) -> None:
        t = self.topology
        ipv6 = any(a.family == 6 for h in t.hosts for a in h.addresses())
        # (every netlink request counts in a slow VM: links are made with their
        # master, flags and state in the one request, and looked up by name once)
        bridge: dict[str, int] = {}
        for seg, ns in self.segment_namespaces.items():
            netns.create(ns)
            sysctl.write(ns, [("net.ipv6.conf.all.disable_ipv6", "1"),
                              ("net.ipv6.conf.default.disable_ipv6", "1")])
            ipr = self.ipr(ns)
            # no multicast snooping: NDP's solicited-node multicast is flooded
            ipr.link("add", ifname="br0", kind="bridge", br_mcast_snooping=0, state="up")
            bridge[seg] = ipr.link_lookup(ifname="br0")[0]
        for hi, h in enumerate(t.hosts):
            ns = self.ns(h.name)
            netns.create(ns)
            v6 = "0" if ipv6 else "1"
            pre = [("net.ipv6.conf.all.disable_ipv6", v6),
                   ("net.ipv6.conf.default.disable_ipv6", v6)]
            if ipv6:  # no DAD: addresses usable at once, no "tentative" waits
                pre += [("net.ipv6.conf.all.accept_dad", "0"),
                        ("net.ipv6.conf.default.accept_dad", "0")]
            sysctl.write(ns, pre)
            fd = os.open(netns.path(ns), os.O_RDONLY)
            try:
                for ii, iface in enumerate(h.interfaces):
                    seg_ipr = self.ipr(self.segment_namespaces[iface.segment])
                    port = port_name(h.name, iface.name, ii)
                    mac = mac_for(hi, ii)
                    self.macs[(h.name, iface.name)] = mac  # (attach() derives them the same way)
                    seg_ipr.link("add", ifname=port, kind="veth", master=bridge[iface.segment],
                                 state="up",
                                 peer={"ifname": iface.name, "net_ns_fd": fd, "address": mac})
            finally:
                os.close(fd)
            self._add_dummies(h.name)
            self._configure_host(h.name)
        self._wait_links_up()

    def _add_dummies(self, host: str) -> None:
        """A host's dummy interfaces: NOARP links on no segment. Where the kernel has
        no dummy driver, a veth whose peer stays down in the same namespace, NOARP too,
        does the same for ARP and routing (a local address on a NOARP link)."""
        ipr = self.ipr(host)
        for n, iface in enumerate(self.topology.host(host).dummies):
            try:
                ipr.link("add", ifname=iface.name, kind="dummy", flags=IFF_NOARP,
                         change=IFF_NOARP)
            except Exception:  # noqa: BLE001 - no dummy module: the veth stand-in
                ipr.link("add", ifname=iface.name, kind="veth", flags=IFF_NOARP,
                         change=IFF_NOARP, peer={"ifname": f"drlabdummy{n}"})

    def _wait_links_up(self, timeout: float = 5.0) -> None:
        """Wait until every veth end reports operstate UP.

        The kernel finishes bringing a link up asynchronously (linkwatch: the
        qdisc is attached and the bridge port starts forwarding only then,
        sometimes up to a second later under load); frames sent before are
        dropped. A lab is ready only when every end is UP. (The kernel's link
        events say when: :func:`lab.builder.links.wait_up`.)
        """
        expect = {ns: {port_name(h.name, i.name, ii)
                       for h in self.topology.hosts
                       for ii, i in enumerate(h.interfaces) if i.segment == seg}
                  for seg, ns in self.segment_namespaces.items()}
        expect.update({self.ns(h.name): {i.name for i in h.interfaces}
                       for h in self.topology.hosts})
        links.wait_up(expect, timeout, "every lab interface to come up")

    def _configure_host(self, host: str) -> None:
        h = self.topology.host(host)
        ns = self.ns(host)
        ipr = self.ipr(host)
        if self.pin_sysctls:
            sysctl.write(ns, sysctl.plan([i.name for i in h.interfaces], h.sysctls))
        else:
            sysctl.write(ns, sorted(h.sysctls.items(), key=lambda kv: ".all." not in kv[0]))
        # (indexes, MTUs and "up" by ioctl: a netlink request each costs far more)
        ioctl_sock = netns.socket_in(ns, socket.AF_INET, socket.SOCK_DGRAM)
        with ioctl_sock:
            links.set_up(ioctl_sock, "lo")
            for iface in h.interfaces:
                disable_offloads(ioctl_sock, iface.name)
            index = {i.name: links.index(ioctl_sock, i.name) for i in [*h.interfaces, *h.dummies]}
            # the VIP holders (lo, dummies) in batched requests: a scale lab's real
            # server holds 50,000 addresses (lab.builder.addresses)
            addresses.add(ns, [(1, a) for a in h.lo]
                          + [(index[i.name], a) for i in h.dummies for a in i.addresses])
            for iface in h.interfaces:
                idx = index[iface.name]
                for a in iface.addresses:
                    ipr.addr("add", index=idx, address=a.ip, prefixlen=a.prefixlen,
                             scope=SCOPES[a.scope])
                links.set_up(ioctl_sock, iface.name, iface.mtu)
            for iface in h.dummies:
                links.set_up(ioctl_sock, iface.name, iface.mtu)
        for r in h.routes:
            kw: dict[str, Any] = {}
            if r.via:
                kw["gateway"] = r.via
            else:
                kw["oif"] = index[r.dev] if r.dev in index else ipr.link_lookup(ifname=r.dev)[0]
                kw["scope"] = SCOPES["link"]
            v6 = ":" in (r.via or r.dst)
            kw["dst"] = ("::/0" if v6 else "0.0.0.0/0") if r.dst == "default" else r.dst
            ipr.route("add", **kw)

    # -- teardown -----------------------------------------------------------
    def close(self) -> None:
        """Close this process's netlink sockets into the lab (and their event loops);
        the lab itself stays up. Teardown calls it; so must a command that only
        attached to a running lab, or pyroute2's loops are finalized at exit."""
        for ipr in self._ipr.values():
            with contextlib.suppress(Exception):
                ipr.close()
        self._ipr.clear()

    def teardown(self) -> list[str]:
        """Remove everything this lab made. Idempotent; never raises for leftovers."""
        self.close()
        removed: list[str] = []
        if self.record is not None:
            removed = ownership.destroy(self.record)
            self.record = None
        with _LIVE_LOCK:
            _LIVE.pop(self.id, None)
        self.built = False
        return removed

    def __enter__(self) -> Lab:
        return self.build()

    def __exit__(self, *exc: object) -> None:
        self.teardown()

    def __repr__(self) -> str:
        return f"<Lab {self.id} {self.topology.name} hosts={list(self.namespaces)}>"


def _teardown_live() -> None:
    pid = os.getpid()
    for lab in list(_LIVE.values()):
        if lab.record is not None and lab.record.owner_pid == pid and not lab.persistent:
            lab.teardown()


_HANDLER_PID = os.getpid()


def _on_sigterm(signum: int, frame: object) -> None:
    # Treat SIGTERM like Ctrl-C: pytest and the CLI stop and tear down on
    # KeyboardInterrupt, and atexit covers anything left. A forked child
    # (pyroute2's helpers, say) inherits this handler: it dies as by default.
    if os.getpid() != _HANDLER_PID:
        signal.signal(signum, signal.SIG_DFL)
        os.kill(os.getpid(), signum)
        return
    raise KeyboardInterrupt(f"signal {signum}")


atexit.register(_teardown_live)
if threading.current_thread() is threading.main_thread() and \
        signal.getsignal(signal.SIGTERM) is signal.SIG_DFL:
    signal.signal(signal.SIGTERM, _on_sigterm)
