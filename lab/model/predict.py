"""Predict a real server's ARP and DR behaviour from the kernel's rules (pure).

The rules (net/ipv4/arp.c, devinet.c; see shared kernel-dr-facts.md):

* ARP arriving on or leaving by ``eth0`` consults ``eth0`` and ``all``, never
  ``lo``; the kernel uses max(all, eth0) for arp_ignore and arp_announce.
* arp_ignore (replies): 0 any local address; 1 only addresses on the
  receiving interface; 2 as 1 and the sender in a subnet of that interface;
  3 anything but scope-host addresses, even one on the receiving interface
  (measured); 8 never, not even for the RIP.
* arp_announce (sender IP of requests): 0 the packet's source (the VIP for a
  DR reply); 1 keep it only if an address of the outgoing interface has a
  prefix covering both the target and the source, else as 2; 2 the primary
  address covering the target (the RIP).
* A VIP on ``lo`` with a prefix wider than /32 makes the whole prefix local:
  when that swallows the LAN the server can no longer reach clients.
* arp_ignore=8 hides the RIP too: the director cannot resolve the real server.
* A request "tell VIP" overwrites the target's neighbour entry for the VIP:
  the client (or its router) is poisoned.

:func:`predict` is checked case by case against measurements in namespaces
(tests/integration/test_arp_matrix.py), on the host kernel and in the VM.
"""

from __future__ import annotations

import itertools
import re
from dataclasses import asdict, dataclass, replace
from typing import Literal

from lab.model.defaults import VIP, default_dr
from lab.model.topology import Address, Host, Topology

Place = Literal["lo32", "lo-wide", "lan", "absent"]
KnobOn = Literal["all", "lan", "lo"]
Scope = Literal["global", "host"]
PLACES: tuple[Place, ...] = ("lo32", "lo-wide", "lan", "absent")
KNOBS_ON: tuple[KnobOn, ...] = ("all", "lan", "lo")
SCOPES: tuple[Scope, ...] = ("global", "host")


@dataclass(frozen=True)
class RsConfig:
    """One real server's ARP-relevant configuration."""

    arp_ignore: int = 1
    arp_announce: int = 2
    #: Where both knobs are written (the other places keep 0).
    knob_on: KnobOn = "all"
    vip_place: Place = "lo32"
    scope: Scope = "global"
    #: VIP inside the LAN prefix (192.0.2.100) or outside it (203.0.113.100).
    vip_in_lan: bool = True
    rp_filter: int = 0
    #: Further sysctls on the real server, written after the ones above (``drlab
    #: matrix --sysctl``): not part of the label, so a baseline diff pairs cells.
    extra: tuple[tuple[str, str], ...] = ()

    def label(self) -> str:
        return (f"ign{self.arp_ignore}-ann{self.arp_announce}-on-{self.knob_on}-"
                f"{self.vip_place}-{self.scope}-{'in' if self.vip_in_lan else 'out'}-"
                f"rp{self.rp_filter}")


@dataclass(frozen=True)
class Prediction:
    #: Does the real server answer who-has VIP (asked from the LAN)?
    answers_arp: bool
    #: Sender IP of its ARP requests when it replies from the VIP: "vip", "rip",
    #: or None when it sends no reply (and so no request).
    announce_sender: Literal["vip", "rip"] | None
    #: Does DR traffic sent to it by the director get answered, from the VIP?
    dr_works: bool
    #: Does it move the client's (or router's) neighbour entry for the VIP to itself?
    poisons: bool


#: The real-server sysctls ``--sysctl`` may add to a matrix: the prediction knows them.
EXTRA_KEYS = re.compile(r"net\.ipv4\.conf\.(all|eth0|lo)\.(arp_ignore|arp_announce|rp_filter)")


def rs_sysctls(cfg: RsConfig) -> dict[str, str]:
    """The real server's sysctls for ``cfg``: both knobs where ``knob_on`` says (0
    elsewhere), rp_filter on all and eth0, then ``cfg.extra``."""
    knobs = {}
    for knob, value in (("arp_ignore", cfg.arp_ignore), ("arp_announce", cfg.arp_announce)):
        for dev in ("all", "eth0", "lo"):
            place = {"all": "all", "eth0": "lan", "lo": "lo"}[dev]
            knobs[f"net.ipv4.conf.{dev}.{knob}"] = str(value if place == cfg.knob_on else 0)
    knobs["net.ipv4.conf.all.rp_filter"] = str(cfg.rp_filter)
    knobs["net.ipv4.conf.eth0.rp_filter"] = str(cfg.rp_filter)
    knobs.update(dict(cfg.extra))
    return knobs


def effective_knobs(cfg: RsConfig) -> tuple[int, int]:
    """(arp_ignore, arp_announce) as the kernel applies them on eth0: the max of
    conf/all and conf/eth0 (conf/lo never matters for ARP on eth0)."""
    k = rs_sysctls(cfg)

    def eff(knob: str) -> int:
        return max(int(k[f"net.ipv4.conf.all.{knob}"]), int(k[f"net.ipv4.conf.eth0.{knob}"]))

    return eff("arp_ignore"), eff("arp_announce")


def predict(cfg: RsConfig) -> Prediction:
    ignore, announce = effective_knobs(cfg)
    has_vip = cfg.vip_place != "absent"
    # a VIP/24 on lo inside the LAN prefix makes the LAN local: no way out
    lan_swallowed = cfg.vip_place == "lo-wide" and cfg.vip_in_lan

    if not has_vip or ignore == 8:
        answers = False
    elif ignore == 3:  # anything but scope host, wherever it lives [measured]
        answers = cfg.scope != "host"
    elif cfg.vip_place == "lan":
        answers = True  # on the receiving interface: 1 and 2 answer
    else:  # on lo: 0 answers for any local address, 1 and 2 only for eth0's
        answers = ignore == 0

    # the director must resolve the RIP (arp_ignore 8 hides it) and the server
    # must accept the VIP and be able to reach the client
    dr_works = has_vip and ignore != 8 and not lan_swallowed
    sender: Literal["vip", "rip"] | None
    if not dr_works:
        sender = None
    elif announce == 0:
        sender = "vip"
    elif announce == 1:
        sender = "vip" if cfg.vip_in_lan else "rip"
    else:
        sender = "rip"
    return Prediction(answers, sender, dr_works, sender == "vip")


def matrix() -> list[RsConfig]:
    """The cases measured against the prediction: every arp_ignore x arp_announce
    x knob placement with the usual VIP layout, then every VIP layout (placement,
    scope, inside/outside the LAN prefix) with the usual and the naive knobs,
    then rp_filter 0/1/2."""
    base = RsConfig()
    cases = [replace(base, arp_ignore=i, arp_announce=a, knob_on=k)
             for i, a, k in itertools.product((0, 1, 2, 3, 8), (0, 1, 2), KNOBS_ON)]
    for place, scope, inside, (i, a) in itertools.product(
            PLACES, SCOPES, (True, False),
            ((1, 2), (0, 0), (3, 1))):
        c = replace(base, vip_place=place, scope=scope, vip_in_lan=inside, arp_ignore=i,
                    arp_announce=a)
        if c not in cases:
            cases.append(c)
    cases += [replace(base, rp_filter=rp) for rp in (1, 2)]
    return cases


#: The director's IPVS knobs the matrix sweeps (net.ipv4.vs.<name>) and their values.
VS_KNOBS: dict[str, tuple[int, ...]] = {
    "conn_reuse_mode": (0, 1, 2, 3), "conntrack": (0, 1), "expire_nodest_conn": (0, 1),
    "expire_quiescent_template": (0, 1), "sloppy_tcp": (0, 1), "schedule_icmp": (0, 1)}
#: What each observed IPVS behaviour depends on.
VS_BEHAVIOURS: dict[str, tuple[str, ...]] = {
    "midstream_scheduled": ("sloppy_tcp",),
    "icmp_scheduled": ("schedule_icmp",),
    "nodest_expires": ("expire_nodest_conn",),
    "quiescent_sticks": ("expire_quiescent_template",),
    "reuse_delay": ("conn_reuse_mode", "conntrack"),
}


@dataclass(frozen=True)
class VsConfig:
    """The director's net.ipv4.vs.* knobs (kernel defaults)."""

    conn_reuse_mode: int = 1
    conntrack: int = 0
    expire_nodest_conn: int = 0
    expire_quiescent_template: int = 0
    sloppy_tcp: int = 0
    schedule_icmp: int = 0

    def label(self) -> str:
        return (f"reuse{self.conn_reuse_mode}-ct{self.conntrack}-nodest"
                f"{self.expire_nodest_conn}-eqt{self.expire_quiescent_template}-sloppy"
                f"{self.sloppy_tcp}-icmp{self.schedule_icmp}")


def predict_vs(cfg: VsConfig) -> dict[str, bool]:
    """IPVS behaviours for ``cfg`` (net/netfilter/ipvs/ip_vs_core.c, kernels >= 5.9).

    * a bare ACK creates an entry only with sloppy_tcp (tcp_conn_schedule);
    * an ICMP error about a flow IPVS has no entry for is scheduled only with
      schedule_icmp (ip_vs_in_icmp);
    * a packet of a connection whose real server was deleted expires the entry
      and is handled anew (the director's stack resets it) only with
      expire_nodest_conn, else it is dropped;
    * a persistence template to a weight-0 server keeps its client unless
      expire_quiescent_template;
    * a reused client port finds the old DR entry in FIN_WAIT (the director never
      sees the server's FIN): conn_reuse_mode bit 2 makes it reusable; the new
      SYN is then dropped (one retransmission, ~1 s) when the old entry was
      tracked by conntrack (net.ipv4.vs.conntrack=1 and conntrack in use).
    """
    return {
        "midstream_scheduled": cfg.sloppy_tcp == 1,
        "icmp_scheduled": cfg.schedule_icmp == 1,
        "nodest_expires": cfg.expire_nodest_conn == 1,
        "quiescent_sticks": cfg.expire_quiescent_template == 0,
        "reuse_delay": bool(cfg.conn_reuse_mode & 2) and cfg.conntrack == 1,
    }


VIP_OUTSIDE_LAN = "203.0.113.100"


def topology_for(cfg: RsConfig) -> Topology:
    """A lab with one client, the director and one real server ``rs1`` set up as ``cfg``."""
    vip = VIP if cfg.vip_in_lan else VIP_OUTSIDE_LAN
    t = default_dr(rs=1, name=f"arp-{cfg.label()}")
    t.main_service.vip = vip
    t.host("director").interfaces[0].addresses[1] = Address(f"{vip}/32")
    rs = t.host("rs1")
    rs.sysctls = rs_sysctls(cfg)
    waive = set()
    if cfg.vip_place == "lo32":
        rs.lo = [Address(f"{vip}/32", cfg.scope)]
    elif cfg.vip_place == "lo-wide":
        rs.lo = [Address(f"{vip}/24", cfg.scope)]
        waive.add("vip-lo-prefix")
    elif cfg.vip_place == "lan":
        rs.lo = []
        rs.interfaces[0].addresses.append(Address(f"{vip}/32", cfg.scope))
        waive.add("vip-duplicate")
    else:
        rs.lo = []
    t.waive = frozenset(waive)
    return t.validate()


def topology_for_vs(cfg: VsConfig) -> Topology:
    """The default DR lab (client, director, rs1, rs2) with ``cfg``'s knobs on the director."""

    t = default_dr(rs=2, name=f"vs-{cfg.label()}")
    t.host("director").sysctls.update(
        {f"net.ipv4.vs.{k}": str(v) for k, v in asdict(cfg).items()})
    return t.validate()


#: Knobs the kernel reads as max(conf/all, conf/<dev>) (include/linux/inetdevice.h).
MAX_OF_ALL_AND_DEV = ("arp_ignore", "arp_announce", "rp_filter")


def masked_by_interface(change: dict[str, str], hosts: list[Host]) -> list[str]:
    """Changes on conf/all that the kernel ignores on ``hosts`` where an interface
    holds a larger value (it takes the max of the two)."""
    notes = []
    for key, value in change.items():
        parts = key.split(".")
        if len(parts) != 5 or parts[2:4] != ["conf", "all"] or parts[4] not in MAX_OF_ALL_AND_DEV:
            continue
        for h in hosts:
            for dev_key, dev_value in h.sysctls.items():
                p = dev_key.split(".")
                dev_value = change.get(dev_key, dev_value)
                if len(p) == 5 and p[4] == parts[4] and p[3] not in ("all", "default") \
                        and int(dev_value) > int(value):
                    notes.append(f"the kernel uses max(all, {p[3]}) for {parts[4]}: with "
                                 f"{dev_key}={dev_value} on {h.name}, {key}={value} changes "
                                 "nothing there")
    return notes
