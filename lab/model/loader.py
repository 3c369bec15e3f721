"""Topology files (TOML) and plain dicts -> :class:`Topology`, with clear errors.

Format (every key is checked; unknown keys are errors)::

    name = "my-lab"
    segments = ["lan"]

    [hosts.client]
    role = "client"
    interfaces = [{ name = "eth0", segment = "lan", addresses = ["192.0.2.10/24"] }]

    [hosts.director]
    role = "director"
    interfaces = [{ name = "eth0", segment = "lan",
                    addresses = ["192.0.2.2/24", "192.0.2.100/32"] }]

    [hosts.rs1]
    role = "realserver"
    interfaces = [{ name = "eth0", segment = "lan", addresses = ["192.0.2.101/24"] }]
    lo = ["192.0.2.100/32"]            # or [{ cidr = "...", scope = "host" }]
    routes = [{ dst = "default", via = "192.0.2.1" }]   # or { dst = "...", dev = "eth0" }
    sysctls = { "net.ipv4.conf.all.arp_ignore" = 1, "net.ipv4.conf.all.arp_announce" = 2 }

    [service]
    vip = "192.0.2.100"
    port = 80
    protocol = "tcp"        # or "udp"
    scheduler = "rr"
    director = "director"
    real_servers = ["rs1", { host = "rs2", weight = 3 }]
"""

from __future__ import annotations

import tomllib
from collections.abc import Set
from pathlib import Path
from typing import Any

from lab.errors import TopologyError
from lab.model import files
from lab.model.files import shown
from lab.model.topology import (
    Address,
    Host,
    Interface,
    RealServer,
    Route,
    Segment,
    Topology,
    VirtualService,
)


def load_topology(path: str | Path, *, allow_scripts: bool = False,
                  notes: list[str] | None = None) -> Topology:
    """Read and validate a TOML topology file. Its keepalived configs were handed in:
    what in them would run a program or touch the lab's machine is removed (each
    removal appended to ``notes``, naming ``FILE [keepalived.HOST]:LINE``) unless
    ``allow_scripts`` (the user's opt-in, ``--allow-scripts``)."""
    p = Path(path)
    # the file the user names (a link to it is followed), but a regular file of at
    # most 16 MiB: a FIFO does not hang the read
    raw = files.read_bytes(p, follow=True)
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise TopologyError(shown(f"{p}: not UTF-8 (byte {e.start})")) from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise TopologyError(shown(f"{p}: not valid TOML: {e}")) from None
    except RecursionError:
        raise TopologyError(shown(f"{p}: not valid TOML: nested too deep")) from None
    except ValueError as e:    # an integer of more than 4300 digits
        raise TopologyError(shown(f"{p}: not valid TOML: {str(e).split(':')[0]}")) from None
    data.setdefault("name", p.stem)
    return _untrusted(topology_from_dict(data), str(p), allow_scripts, notes)


def _untrusted(t: Topology, source: str, allow_scripts: bool,
               notes: list[str] | None) -> Topology:
    # lazy: loaded only when _untrusted() runs (+2 modules, ~3 ms)
    from lab.model.keepalived import strip_scripts

    t.allow_scripts = allow_scripts
    if not allow_scripts:
        for host, conf in t.keepalived.items():
            t.keepalived[host], found = strip_scripts(conf, f"{source} [keepalived.{host}]")
            if notes is not None:
                notes += [f.note() for f in found]
    return t


def topology_from_dict(data: Any, *, validate: bool = True) -> Topology:
    """Build and validate a topology from plain data (as parsed from TOML); without
    ``validate``, only its types and texts are checked (the caller validates it later)."""
    t = _parse(data)
    return validated(t) if validate else t


def validated(t: Topology) -> Topology:
    """``t``, validated, its problems said as a file's are (names from the files, each
    on one line)."""
    try:
        return t.validate()
    except TopologyError as e:
        raise TopologyError([shown(p) for p in e.problems]) from None


def check_text(value: str, what: str, *, lines: bool = False) -> str:
    """``value`` if a topology file could hold it: no character that is not printable
    (``lines``: but newlines and tabs, as a config file's text has), as the loader
    checks every string of a file; else :class:`TopologyError` naming ``what``."""
    try:
        _need(value, what, str, lines=lines)
    except _Bad as e:
        raise TopologyError(shown(str(e))) from None
    return value


class _Bad(Exception):
    pass


def _need(d: Any, what: str, typ: type | tuple[type, ...], *, lines: bool = False) -> Any:
    """``d`` if it is a ``typ``; a string has no control character (none that starts a
    line of its own, hides text or rings a bell when printed), unless ``lines``: a
    config file's text, which has newlines and tabs."""
    if not isinstance(d, typ) or isinstance(d, bool) and typ is not bool:
        names = typ.__name__ if isinstance(typ, type) else " or ".join(t.__name__ for t in typ)
        raise _Bad(f"{what}: expected {_article(names)}, got {type(d).__name__} {_clip(d)}")
    if isinstance(d, str) and not d.isprintable() and not (
            lines and d.replace("\n", "").replace("\t", "").isprintable()):
        raise _Bad(f"{what}: {_clip(d)} holds a character that is not printable")
    return d


def _clip(v: Any, n: int = 60) -> str:
    r = repr(v)
    return r if len(r) <= n else r[:n - 3] + "..."


def _article(n: str) -> str:
    return {"str": "a string", "int": "an integer", "dict": "a table", "list": "a list"}.get(
        n, n)


def _keys(d: dict[str, Any], what: str, allowed: Set[str], required: Set[str] = frozenset()
          ) -> None:
    extra = sorted(set(d) - allowed)
    if extra:
        raise _Bad(f"{what}: unknown key{'s' if len(extra) > 1 else ''} {', '.join(extra)} "
                   f"(allowed: {', '.join(sorted(allowed))})")
    missing = sorted(required - set(d))
    if missing:
        raise _Bad(f"{what}: missing {', '.join(missing)}")


def _address(v: Any, what: str) -> Address:
    if isinstance(v, str):
        return Address(v)
    d = _need(v, what, dict)
    _keys(d, what, {"cidr", "scope"}, {"cidr"})
    return Address(_need(d["cidr"], f"{what}.cidr", str),
                   _need(d.get("scope", "global"), f"{what}.scope", str))


def _parse(data: Any) -> Topology:
    try:
        d = _need(data, "topology", dict)
        _keys(d, "topology", {"name", "segments", "hosts", "service", "services", "waive",
                              "keepalived"}, {"hosts"})
        if "service" in d and "services" in d:
            raise _Bad("topology: give [service] (one) or [[services]] (several), not both")
        name = _need(d.get("name", "custom"), "name", str)
        segs = [Segment(_need(s, f"segments[{n}]", str))
                for n, s in enumerate(_need(d.get("segments", ["lan"]), "segments", list))]
        hosts = [_host(hn, hv) for hn, hv in _need(d["hosts"], "hosts", dict).items()]
        svcs = [_service(d["service"], "service")] if "service" in d else [
            _service(v, f"services[{n}]")
            for n, v in enumerate(_need(d.get("services", []), "services", list))]
        waive = frozenset(_need(w, "waive[]", str) for w in _need(d.get("waive", []), "waive",
                                                                     list))
        ka = {_need(k, "keepalived key", str): _need(v, f"keepalived.{k}", str, lines=True)
              for k, v in _need(d.get("keepalived", {}), "keepalived", dict).items()}
    except _Bad as e:
        raise TopologyError(shown(str(e))) from None
    return Topology(name, hosts, segs, svcs, waive, ka)


def _host(name: str, v: Any) -> Host:
    w = f"hosts.{name}"
    d = _need(v, w, dict)
    _keys(d, w, {"role", "interfaces", "lo", "routes", "sysctls", "label", "represents",
                  "kernel"},
          {"role"})
    ifaces: list[Interface] = []
    dummies: list[Interface] = []
    for n, iv in enumerate(_need(d.get("interfaces", []), f"{w}.interfaces", list)):
        iw = f"{w}.interfaces[{n}]"
        idict = _need(iv, iw, dict)
        kind = _need(idict.get("kind", "veth"), f"{iw}.kind", str)
        if kind not in ("veth", "dummy"):
            raise _Bad(f"{iw}.kind: {kind!r} must be veth (on a segment) or dummy")
        if kind == "dummy":
            _keys(idict, iw, {"name", "kind", "addresses", "mtu"}, {"name"})
        else:
            _keys(idict, iw, {"name", "kind", "segment", "addresses", "mtu"},
                  {"name", "segment"})
        (dummies if kind == "dummy" else ifaces).append(Interface(
            _need(idict["name"], f"{iw}.name", str),
            _need(idict.get("segment", ""), f"{iw}.segment", str),
            [_address(a, f"{iw}.addresses[{k}]")
             for k, a in enumerate(_need(idict.get("addresses", []), f"{iw}.addresses", list))],
            _need(idict["mtu"], f"{iw}.mtu", int) if "mtu" in idict else None,
            kind,
        ))
    routes = []
    for n, rv in enumerate(_need(d.get("routes", []), f"{w}.routes", list)):
        rw = f"{w}.routes[{n}]"
        rd = _need(rv, rw, dict)
        _keys(rd, rw, {"dst", "via", "dev"}, {"dst"})
        routes.append(Route(_need(rd["dst"], f"{rw}.dst", str),
                            _need(rd["via"], f"{rw}.via", str) if "via" in rd else None,
                            _need(rd["dev"], f"{rw}.dev", str) if "dev" in rd else None))
    sysctls = {}
    for k, sv in _need(d.get("sysctls", {}), f"{w}.sysctls", dict).items():
        sysctls[k] = str(_need(sv, f"{w}.sysctls.{k}", (int, str)))
    return Host(
        name,
        _need(d["role"], f"{w}.role", str),
        ifaces,
        [_address(a, f"{w}.lo[{k}]") for k, a in enumerate(_need(d.get("lo", []), f"{w}.lo",
                                                                   list))],
        routes,
        sysctls,
        dummies,
        _need(d.get("label", ""), f"{w}.label", str),
        [_need(x, f"{w}.represents[{k}]", str)
         for k, x in enumerate(_need(d.get("represents", []), f"{w}.represents", list))],
        _need(d.get("kernel", ""), f"{w}.kernel", str),
    )


def _service(v: Any, w: str) -> VirtualService:
    d = _need(v, w, dict)
    _keys(d, w, {"vip", "port", "protocol", "scheduler", "director", "real_servers",
                 "persistence", "persistence_netmask", "fwmark", "extra_ports"},
          {"vip", "port", "director", "real_servers"})
    rss = []
    for n, rv in enumerate(_need(d["real_servers"], f"{w}.real_servers", list)):
        rw = f"{w}.real_servers[{n}]"
        if isinstance(rv, str):
            rss.append(RealServer(rv))
            continue
        rd = _need(rv, rw, dict)
        _keys(rd, rw, {"host", "weight", "listen"}, {"host"})
        rss.append(RealServer(_need(rd["host"], f"{rw}.host", str),
                              _need(rd.get("weight", 1), f"{rw}.weight", int),
                              _need(rd.get("listen", "any"), f"{rw}.listen", str)))
    return VirtualService(
        vip=_need(d["vip"], f"{w}.vip", str),
        port=_need(d["port"], f"{w}.port", int),
        director=_need(d["director"], f"{w}.director", str),
        real_servers=rss,
        protocol=_need(d.get("protocol", "tcp"), f"{w}.protocol", str),
        scheduler=_need(d.get("scheduler", "rr"), f"{w}.scheduler", str),
        persistence=_need(d["persistence"], f"{w}.persistence", int)
        if "persistence" in d else None,
        persistence_netmask=_need(d["persistence_netmask"], f"{w}.persistence_netmask", str)
        if "persistence_netmask" in d else None,
        fwmark=_need(d["fwmark"], f"{w}.fwmark", int) if "fwmark" in d else None,
        extra_ports=[_need(x, f"{w}.extra_ports[{n}]", int)
                     for n, x in enumerate(_need(d.get("extra_ports", []), f"{w}.extra_ports",
                                                 list))],
    )


def topology_to_dict(t: Topology, *, full: bool = False) -> dict[str, Any]:
    """The inverse of :func:`topology_from_dict` (what a TOML file or a lab record holds).
    ``full``: the layout of a file people read and edit (:func:`lab.model.writer.dump`):
    ``waive`` first after the name, the services a list even when there is one, and
    every real server's ``listen`` said."""

    def addr(a: Address) -> Any:
        return a.cidr if a.scope == "global" else {"cidr": a.cidr, "scope": a.scope}

    def iface(i: Interface) -> dict[str, Any]:
        idict: dict[str, Any] = {"name": i.name}
        if i.kind == "dummy":
            idict["kind"] = "dummy"
        else:
            idict["segment"] = i.segment
        idict["addresses"] = [addr(a) for a in i.addresses]
        if i.mtu is not None:
            idict["mtu"] = i.mtu
        return idict

    def service(s: VirtualService) -> dict[str, Any]:
        out: dict[str, Any] = {
            "vip": s.vip, "port": s.port, "protocol": s.protocol, "scheduler": s.scheduler,
            "director": s.director,
            "real_servers": [{"host": r.host, "weight": r.weight}
                             | ({"listen": r.listen} if full or r.listen != "any" else {})
                             for r in s.real_servers]}
        for k in ("persistence", "persistence_netmask", "fwmark"):
            if getattr(s, k) is not None:
                out[k] = getattr(s, k)
        if s.extra_ports:
            out["extra_ports"] = list(s.extra_ports)
        return out

    hosts: dict[str, Any] = {}
    for h in t.hosts:
        d: dict[str, Any] = {"role": h.role}
        if h.label:
            d["label"] = h.label
        if h.represents:
            d["represents"] = list(h.represents)
        if h.kernel:
            d["kernel"] = h.kernel
        if h.interfaces or h.dummies:
            d["interfaces"] = [iface(i) for i in [*h.interfaces, *h.dummies]]
        if h.lo:
            d["lo"] = [addr(a) for a in h.lo]
        if h.routes:
            d["routes"] = [{k: v for k, v in (("dst", r.dst), ("via", r.via), ("dev", r.dev))
                            if v is not None} for r in h.routes]
        if h.sysctls:
            d["sysctls"] = dict(h.sysctls)
        hosts[h.name] = d
    out: dict[str, Any] = {"name": t.name}
    if t.waive and full:
        out["waive"] = sorted(t.waive)
    out |= {"segments": [s.name for s in t.segments], "hosts": hosts}
    if len(t.services) == 1 and not full:
        out["service"] = service(t.services[0])
    elif t.services:
        out["services"] = [service(s) for s in t.services]
    if t.waive and not full:
        out["waive"] = sorted(t.waive)
    if t.keepalived:
        out["keepalived"] = dict(t.keepalived)
    return out
