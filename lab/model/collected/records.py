"""The collected records: what a collected host's files said, parsed and checked, in
the collected cluster's own terms (a ``bond`` link, an ``-m`` real server, an sctp
service). The importer (:mod:`lab.model.collected.importer`) turns them into the
model's :class:`~lab.model.Topology`; nothing here is the lab's."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from lab.model.keepalived import KaConfig
from lab.model.topology import Address

IP = ipaddress.IPv4Address | ipaddress.IPv6Address
IPIface = ipaddress.IPv4Interface | ipaddress.IPv6Interface
IPNet = ipaddress.IPv4Network | ipaddress.IPv6Network
Scope = Literal["global", "host", "link"]


@dataclass
class CollectedAddress:
    """An address as collected (``ip -j addr``): with its prefix and scope."""

    ip: IPIface
    scope: Scope = "global"

    @property
    def addr(self) -> IP:
        return self.ip.ip

    def address(self) -> Address:
        """The model's address for it."""
        return Address(str(self.ip), self.scope)


@dataclass
class CollectedLink:
    """An interface as collected (``ip -j addr`` with ``ip -j -d link``)."""

    name: str
    kind: str = ""          # linkinfo.info_kind ("" for a physical or unknown one)
    noarp: bool = False
    mtu: int | None = None
    addrs: list[CollectedAddress] = field(default_factory=list)


@dataclass(frozen=True)
class CollectedRoute:
    """A route as collected (``ip -j route``): the fields the import reads."""

    dst: str | None = None
    gateway: str | None = None
    dev: str | None = None
    protocol: str | None = None
    type: str | None = None
    table: str | None = None
    #: A multipath route (the twin has none).
    nexthops: bool = False


@dataclass
class CollectedReal:
    """A real server of a collected IPVS service."""

    ip: IP
    port: int
    fwd: str                # "g" (DR), "m" (NAT), "i" (tunnel)
    weight: int
    where: str


@dataclass
class CollectedService:
    """One IPVS virtual service, from ipvsadm-save or a keepalived virtual_server."""

    protocol: str           # tcp, udp (or sctp: not supported)
    vip: IP | None
    port: int
    fwmark: int | None
    family: int
    scheduler: str
    where: str
    persistence: int | None = None
    netmask: str | None = None
    extras: list[str] = field(default_factory=list)   # options the lab does not reproduce
    reals: list[CollectedReal] = field(default_factory=list)

    @property
    def key(self) -> tuple[str, str | int | None, int]:
        if self.fwmark is not None:
            return ("fwmark", self.fwmark, self.family)
        return (self.protocol, str(self.vip), self.port)

    @property
    def shown(self) -> str:
        if self.fwmark is not None:
            return f"fwmark {self.fwmark}" + (f" ({self.vip})" if self.vip else "")
        vip = f"[{self.vip}]" if self.family == 6 else str(self.vip)
        return f"{vip}:{self.port}/{self.protocol}"

    def table(self) -> tuple[object, ...]:
        return (self.scheduler, self.persistence, self.netmask, tuple(self.extras),
                tuple(sorted((str(r.ip), r.port, r.fwd, r.weight) for r in self.reals)))


@dataclass
class CollectedListener:
    """A listening socket as collected (``ss -Hltnu``)."""

    protocol: str
    addr: IP | None         # None: a wildcard (0.0.0.0, ::, *)
    family: int | None      # of the wildcard; None for *
    port: int


@dataclass
class CollectedHost:
    """One collected host, parsed."""

    path: Path
    name: str
    links: list[CollectedLink]
    routes: list[tuple[str, CollectedRoute]] = field(default_factory=list)  # (file, route)
    sysctls: dict[str, str] = field(default_factory=dict)
    ipvs: list[CollectedService] | None = None
    keepalived: KaConfig | None = None
    listen: list[CollectedListener] | None = None
    kernel: str = ""
    skipped: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)

    def addresses(self) -> set[IP]:
        return {a.addr for ln in self.links for a in ln.addrs}
