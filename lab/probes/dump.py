"""A state dump of a lab: everything needed to understand a failure after the fact."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar, TypeVarTuple

from lab.builder import Lab, netns
from lab.builder import sysctl as sc
from lab.errors import LabError
from lab.model.ranges import summary
from lab.model.scale import SAMPLE_ABOVE
from lab.probes import state
from lab.probes.capture import captures_of
from lab.probes.path import last_proof
from lab.probes.recorder import recording_of
from lab.roles import director

T = TypeVar("T")
Ts = TypeVarTuple("Ts")

KNOBS = ("arp_ignore", "arp_announce", "rp_filter", "arp_filter", "forwarding",
         "accept_local")


def _safe(fn: Callable[[*Ts], T], *a: *Ts) -> T | str:
    try:
        return fn(*a)
    except Exception as e:  # a dump must never hide the original failure
        return f"(unavailable: {e})"


def effective_sysctls(lab: Lab, host: str) -> dict[str, dict[str, str]]:
    """Per interface: all/dev/effective value of each DR-relevant knob."""
    h = lab.topology.host(host)
    devs = ["lo", *(i.name for i in h.interfaces)]
    keys = [f"net.ipv4.conf.{d}.{k}" for d in ["all", *devs] for k in KNOBS]
    values = sc.read(lab.ns(host), keys)
    out: dict[str, dict[str, str]] = {}
    for d in devs:
        out[d] = {}
        for k in KNOBS:
            a, v = values[f"net.ipv4.conf.all.{k}"], values[f"net.ipv4.conf.{d}.{k}"]
            eff = sc.effective(values, d, k)
            out[d][k] = f"{eff} (all={a} {d}={v})"
    return out


def status(lab: Lab) -> dict[str, Any]:
    """``drlab status --json``: per host its interfaces, routes, neighbours and
    effective sysctls; the director's IPVS table (or why there is none)."""

    data: dict[str, Any] = {"lab": lab.id, "topology": lab.topology.name, "hosts": {}}
    for h in lab.topology.hosts:
        data["hosts"][h.name] = {
            "role": h.role, "netns": lab.ns(h.name),
            "interfaces": [dataclasses.asdict(i) for i in state.interfaces(lab, h.name)],
            "routes": state.routes(lab, h.name),
            "neighbours": state.neighbours(lab, h.name),
            "sysctls": effective_sysctls(lab, h.name),
        }
    if lab.topology.service is not None:
        try:
            data["ipvs"] = [dataclasses.asdict(s) for s in director.read_services(lab)]
        except LabError as e:
            data["ipvs"] = str(e)
    if lab.topology.keepalived:
        # lazy: loaded only when status() runs (+5 modules, ~8 ms)
        from lab.probes import vrrp

        hold = vrrp.holding(lab)
        data["vrrp"] = {"holders": hold.holders, "arp_answerers": hold.arp_answerers,
                        "ipvs": hold.ipvs, "keepalived_says": hold.keepalived}
    return data


def address_summary(cidrs: list[str], most: int = 8) -> str:
    """An interface's addresses: all of them, or, past ``most``, their ranges per
    prefix length (a scale lab's dummy holds 1,000 VIPs)."""
    if len(cidrs) <= most:
        return " ".join(cidrs)
    by_plen: dict[str, list[str]] = {}
    for c in cidrs:
        ip, _, plen = c.partition("/")
        by_plen.setdefault(plen, []).append(ip)
    return "; ".join(f"/{plen}: {summary(ips)}" for plen, ips in by_plen.items())


def dump_state(lab: Lab) -> str:
    """Addresses, routes, neighbours, effective sysctls per host; the IPVS table; with
    keepalived, each director's VRRP state as keepalived reports it next to what the
    lab observed, and the tail of its log."""
    lines = [f"lab {lab.id} topology {lab.topology.name}"]
    if lab.topology.keepalived:
        # lazy: loaded only when dump_state() runs (+5 modules, ~7 ms)
        from lab.probes import vrrp
        from lab.roles import keepalived

        lines.append("\n== VRRP (observed: VIP on an interface, ARP census; keepalived's word)")
        hold = _safe(vrrp.holding, lab)
        lines += [f"  {x}" for x in hold.lines()] if not isinstance(hold, str) else [f"  {hold}"]
        for d in lab.topology.keepalived:
            lines.append(f"  -- keepalived log, {d} (last lines)")
            lines += [f"  {x}" for x in keepalived.tail(lab, d, 8).splitlines()]
    for h in lab.topology.hosts:
        lines.append(f"\n== {h.name} ({h.role}) netns {lab.ns(h.name)}")
        ifs = _safe(state.interfaces, lab, h.name)
        if isinstance(ifs, str):
            lines.append("  interfaces " + ifs)
        else:
            for i in ifs:
                lines.append(f"  {i.name:<6} {i.mac:<17} {i.state:<8} mtu {i.mtu} "
                             f"{address_summary(i.addresses)}")
        routes = _safe(state.routes, lab, h.name)
        lines.append("  routes: " + (routes if isinstance(routes, str) else "; ".join(routes)))
        neigh = _safe(state.neighbours, lab, h.name)
        if isinstance(neigh, str):
            lines.append("  neighbours " + neigh)
        else:
            lines.append("  neighbours: " + ("; ".join(
                f"{ip} -> {mac} ({lab.host_of_mac(mac) or '?'})" for ip, mac in neigh.items())
                or "(none)"))
        eff = _safe(effective_sysctls, lab, h.name)
        if isinstance(eff, str):
            lines.append("  sysctls " + eff)
        else:
            for dev, knobs in eff.items():
                lines.append(f"  sysctl {dev}: " + ", ".join(f"{k}={v}" for k, v in knobs.items()))
    if lab.topology.service is not None:
        lines.append("\n== IPVS (ipvsadm -Ln --stats, director)")
        table = str(_safe(director.ipvsadm, lab, "-Ln", "--stats")).rstrip().splitlines()
        n = len(lab.topology.services)
        if n > SAMPLE_ABOVE:  # a scale lab: its first services, then the rest summarised
            head = [x for k, x in enumerate(table) if k < 3 + 4 * 3]
            lines += [*head, f"  ... {n:,} services in all, on "
                      f"{summary([s.vip for s in lab.topology.services])}"]
        else:
            lines += table
        lines.append("\n== /proc/net/ip_vs_conn (director)")
        lines.append(str(_safe(netns.read_proc, lab.ns(lab.topology.director.name),
                               "net/ip_vs_conn")).rstrip())
    return "\n".join(lines) + "\n"


def save_artifacts(lab: Lab, directory: Path) -> list[Path]:
    """Write the state dump, the lab's flight recording (one pcap per interface,
    ``<lab>-<host>-<iface>.pcap``), every capture a test started
    (``<lab>-<host>-<iface>-capture<N>.pcap``) and the last ladder into ``directory``.

    Stop the lab's :class:`~lab.probes.recorder.Recorder` first, so that it has
    drained what the kernel still queued.
    """
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    recording = recording_of(lab)
    if recording is not None:
        written += recording.write(directory)
    p = directory / f"state-{lab.id}.txt"
    p.write_text(dump_state(lab))
    written.append(p)
    numbers: dict[str, int] = {}
    for cap in captures_of(lab):
        n = numbers[cap.name] = numbers.get(cap.name, 0) + 1
        if cap.frames:
            written.append(cap.write(directory / f"{lab.id}-{cap.name}-capture{n}.pcap"))
    proof = last_proof(lab)
    if proof is not None:
        p = directory / f"ladder-{lab.id}.txt"
        p.write_text(proof.ladder() + "\n")
        written.append(p)
    return written
