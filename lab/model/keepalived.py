"""keepalived.conf as data: read an operator's files, write the lab's own pair.

:func:`parse` reads the parts of keepalived's configuration a DR lab needs
(``global_defs``, ``vrrp_instance``, ``virtual_server`` with its
``real_server`` entries) with line numbers, keeping the text itself: a lab
runs the operator's file as it is. :func:`topology_from_files` turns one file
per director into a lab around them; :func:`keepalived_dr` is the lab's own
MASTER/BACKUP pair. :func:`strip_scripts` takes out of a config someone handed in
whatever would run a program or touch the lab's machine. Pure: nothing here runs
keepalived (``keepalived -t`` is :func:`lab.roles.keepalived.config_test`).
"""

from __future__ import annotations

import ipaddress
import re
import shlex
from collections import deque
from dataclasses import dataclass, field

from lab.errors import TopologyError
from lab.model.defaults import LAN, RS_ARP_SYSCTLS, default_dr
from lab.model.topology import (
    ANY_ADDRESS,
    SCHEDULERS,
    Address,
    Host,
    Interface,
    RealServer,
    Route,
    Segment,
    Topology,
    VirtualService,
    in_doc_range,
    ip_address,
)


@dataclass
class Node:
    """One statement: its words, its line, and its block (None when it has none)."""

    words: list[str]
    line: int
    block: list[Node] | None = None

    @property
    def key(self) -> str:
        return self.words[0] if self.words else ""

    def first(self, key: str) -> Node | None:
        return next((n for n in self.block or [] if n.key == key), None)

    def all(self, key: str) -> list[Node]:
        return [n for n in self.block or [] if n.key == key]

    def value(self, key: str, default: str | None = None) -> str | None:
        n = self.first(key)
        return n.words[1] if n is not None and len(n.words) > 1 else default


def _bad(source: str, line: int, msg: str) -> TopologyError:
    return TopologyError(f"{source}:{line}: {msg}")


_COMMENT = re.compile(r"[#!]")
_BLANKS = re.compile(r"[ \t\r\n]+")
_ODD_BLANKS = re.compile(r"[\v\f\x1c-\x1f]")
_NUMBER = re.compile(r"-?[0-9]{1,10}")
_KEYWORD_END = re.compile(r'[ \t\f\n\r\v"]')


def tokenize(text: str, source: str) -> list[tuple[int, list[str]]]:
    """Lines of words: comments (``#``, ``!``) dropped, quotes kept together, braces
    as words of their own."""
    out = []
    # str.split() cuts at these four blanks and more (\v, \f, \x1c-\x1f, non-ASCII
    # spaces): a text without those others is cut the same, faster
    plain = text.isascii() and not _ODD_BLANKS.search(text)
    for n, raw in enumerate(text.splitlines(), 1):
        if "'" not in raw and '"' not in raw and "\\" not in raw:  # shlex's work, 20x faster
            line = _COMMENT.split(raw, maxsplit=1)[0] if "#" in raw or "!" in raw else raw
            line = line.replace("{", " { ").replace("}", " } ")
            words = line.split() if plain else [w for w in _BLANKS.split(line) if w]
            if words:
                out.append((n, words))
            continue
        lex = shlex.shlex(raw.replace("{", " { ").replace("}", " } "), posix=True)
        lex.whitespace_split = True
        lex.commenters = "#!"
        try:
            words = list(lex)
        except ValueError as e:
            raise _bad(source, n, f"{e}") from None
        if words:
            out.append((n, words))
    return out


def parse_tree(text: str, source: str = "keepalived.conf") -> list[Node]:
    """keepalived's statements as a tree; braces checked, ``include`` refused."""
    root: list[Node] = []
    stack: list[list[Node]] = [root]
    opened: list[int] = []
    last: Node | None = None
    for line, tokens in tokenize(text, source):
        if "{" not in tokens and "}" not in tokens and tokens[0] not in ("include",
                                                                          "@include"):
            last = Node(tokens, line)   # the common line: one statement, no block
            stack[-1].append(last)
            continue
        words = deque(tokens)   # popped from the left: linear in a long line
        while words:
            w = words.popleft()
            if w == "{":
                if last is None or last.block is not None:
                    raise _bad(source, line, "'{' without a statement before it")
                last.block = []
                stack.append(last.block)
                opened.append(line)
                last = None
            elif w == "}":
                if len(stack) == 1:
                    raise _bad(source, line, "unbalanced '}'")
                stack.pop()
                opened.pop()
                last = None
            else:
                rest = [w]
                while words and words[0] not in ("{", "}"):
                    rest.append(words.popleft())
                if rest[0] in ("include", "@include"):
                    raise _bad(source, line, "include is not supported: give the lab one "
                                             "file per director with everything in it")
                last = Node(rest, line)
                stack[-1].append(last)
    if len(stack) > 1:
        raise _bad(source, opened[-1], "'{' opened here is never closed")
    return root


@dataclass
class KaRealServer:
    ip: str
    port: int
    weight: int
    line: int
    check: str | None = None


@dataclass
class KaVirtualServer:
    vip: str | None
    port: int
    fwmark: int | None
    protocol: str
    scheduler: str | None
    lb_kind: str | None
    persistence: int | None
    real_servers: list[KaRealServer]
    line: int
    #: persistence_granularity as written (None when the block has none)
    granularity: str | None = None


@dataclass
class KaVrrpInstance:
    name: str
    state: str | None
    interface: str | None
    vrid: int | None
    priority: int | None
    vips: list[str]
    unicast_src: str | None
    nopreempt: bool
    line: int


@dataclass
class KaConfig:
    source: str
    text: str
    router_id: str | None = None
    vrrp_strict: bool = False
    sync_interface: str | None = None
    instances: list[KaVrrpInstance] = field(default_factory=list)
    virtual_servers: list[KaVirtualServer] = field(default_factory=list)


def _int(n: Node, i: int, source: str, what: str) -> int:
    # ASCII digits only: int() also takes "١٢", "1_0" and " 7"
    if i >= len(n.words) or not _NUMBER.fullmatch(n.words[i]):
        raise _bad(source, n.line, f"{what}: expected a number")
    return int(n.words[i])


def _addr(word: str, source: str, line: int) -> str:
    try:
        return str(ip_address(word))
    except ValueError:
        raise _bad(source, line, f"{word!r} is not an IP address") from None


def parse(text: str, source: str = "keepalived.conf") -> KaConfig:
    """The parts of a keepalived.conf a DR lab needs; errors name ``source:line``."""
    cfg = KaConfig(source, text)
    for n in parse_tree(text, source):
        if n.key == "global_defs":
            cfg.router_id = n.value("router_id")
            cfg.vrrp_strict = n.first("vrrp_strict") is not None
            sync = n.first("lvs_sync_daemon")
            if sync is not None and len(sync.words) > 1:
                cfg.sync_interface = sync.words[1]
        elif n.key == "vrrp_instance":
            if len(n.words) < 2:
                raise _bad(source, n.line, "vrrp_instance needs a name")
            vips = []
            for v in (n.first("virtual_ipaddress") or Node([], n.line)).block or []:
                ip = v.words[0].split("/")[0]
                vips.append(_addr(ip, source, v.line))
            vrid = n.first("virtual_router_id")
            prio = n.first("priority")
            src = n.value("unicast_src_ip")
            cfg.instances.append(KaVrrpInstance(
                n.words[1], n.value("state"), n.value("interface"),
                _int(vrid, 1, source, "virtual_router_id") if vrid else None,
                _int(prio, 1, source, "priority") if prio else None, vips,
                _addr(src, source, n.line) if src else None,
                n.first("nopreempt") is not None, n.line))
        elif n.key == "virtual_server":
            cfg.virtual_servers.append(_virtual_server(n, source))
    return cfg


def _virtual_server(n: Node, source: str) -> KaVirtualServer:
    w = n.words[1:]
    if len(w) == 2 and w[0] == "fwmark":
        vip, port, fwmark = None, 0, _int(n, 2, source, "fwmark")
    elif len(w) == 2:
        vip, port, fwmark = _addr(w[0], source, n.line), _int(n, 2, source, "port"), None
    else:
        raise _bad(source, n.line, "virtual_server: expected `VIP PORT` or `fwmark N` "
                                   "(groups are not supported)")
    persist = n.first("persistence_timeout")
    rss = []
    for r in n.all("real_server"):
        if len(r.words) != 3:
            raise _bad(source, r.line, "real_server: expected `IP PORT`")
        weight = r.first("weight")
        check = next((c.key for c in r.block or [] if c.key.endswith("_CHECK")
                      or c.key in ("HTTP_GET", "SSL_GET")), None)
        rss.append(KaRealServer(_addr(r.words[1], source, r.line),
                                _int(r, 2, source, "real_server port"),
                                _int(weight, 1, source, "weight") if weight else 1,
                                r.line, check))
    proto = (n.value("protocol") or "TCP").lower()
    return KaVirtualServer(vip, port, fwmark, proto, n.value("lb_algo") or n.value("lvs_sched"),
                           n.value("lb_kind") or n.value("lvs_method"),
                           _int(persist, 1, source, "persistence_timeout") if persist else None,
                           rss, n.line, n.value("persistence_granularity"))


# -- the lab's own pair ------------------------------------------------------------

VRID = 51
INSTANCE = "VI_1"


def render_pair(t: Topology, masters: tuple[str, str], *, sync: bool = True,
                preempt: bool = True, strict: bool = False, accept: bool = True,
                check: str | None = "TCP_CHECK", check_port: int | None = None,
                delay_loop: int = 1, advert_int: int = 1) -> dict[str, str]:
    """keepalived.conf for each of two directors (the first is MASTER) serving
    ``t``'s service in DR mode."""
    svc = t.service
    assert svc is not None
    out = {}
    for n, host in enumerate(masters):
        iface = t.lan_iface(host)
        # nopreempt is honoured only from state BACKUP, and vrrp_strict allows MASTER
        # only to the address owner (priority 255): both start BACKUP then, the
        # priority still elects the first
        state = "MASTER" if n == 0 and preempt and not strict else "BACKUP"
        g = [f"    router_id {host}"]
        if strict:
            g.append("    vrrp_strict")
            if accept:  # VRRPv2 (RFC 3768) forbids accept mode: keepalived resets it
                g.append("    vrrp_version 3")
        if sync:
            g.append(f"    lvs_sync_daemon {iface} {INSTANCE} id {VRID}")
        v = [f"    state {state}", f"    interface {iface}",
             f"    virtual_router_id {VRID}", f"    priority {150 if n == 0 else 100}",
             f"    advert_int {advert_int}"]
        if not preempt:
            v.append("    nopreempt")
        if strict:
            v.append("    accept" if accept else "    no_accept")
        plen = 32 if svc.family == 4 else 128
        v += ["    virtual_ipaddress {", f"        {svc.vip}/{plen} dev {iface}", "    }"]
        head = (f"virtual_server fwmark {svc.fwmark}" if svc.fwmark is not None
                else f"virtual_server {svc.vip} {svc.port}")
        vs = [f"    delay_loop {delay_loop}", f"    lb_algo {svc.scheduler}",
              "    lb_kind DR", f"    protocol {svc.protocol.upper()}"]
        if svc.persistence:
            vs.append(f"    persistence_timeout {svc.persistence}")
        for rs in svc.real_servers:
            vs.append(f"    real_server {t.primary_ip(rs.host)} {svc.port} {{")
            vs.append(f"        weight {rs.weight}")
            if check == "TCP_CHECK":
                vs += ["        TCP_CHECK {", "            connect_timeout 1"]
                if check_port:
                    vs.append(f"            connect_port {check_port}")
                vs += ["        }"]
            vs.append("    }")
        out[host] = "\n".join(["# written by drlab for " + host, "global_defs {", *g, "}",
                               f"vrrp_instance {INSTANCE} {{", *v, "}",
                               head + " {", *vs, "}", ""])
    return out


def keepalived_dr(rs: int = 2, *, scheduler: str = "rr", weights: dict[str, int] | None = None,
                  persistence: int | None = None, sync: bool = True, preempt: bool = True,
                  strict: bool = False, accept: bool = True, check: str | None = "TCP_CHECK",
                  check_port: int | None = None, delay_loop: int = 1, advert_int: int = 1,
                  name: str | None = None) -> Topology:
    """The default DR lab with two directors under keepalived: ``director`` (MASTER,
    priority 150) and ``director2`` (BACKUP, 100, at 192.0.2.3) run VRRP for the VIP,
    the same ``virtual_server`` (DR, a health check per real server) and, with
    ``sync``, lvs_sync_daemon."""
    t = default_dr(rs=rs, scheduler=scheduler, weights=weights, persistence=persistence,
                   name=name or "keepalived")
    assert t.service is not None
    d = t.host("director")
    d.interfaces[0].addresses = [a for a in d.interfaces[0].addresses if a.ip != t.service.vip]
    t.hosts.insert(t.hosts.index(d) + 1, Host(
        "director2", "director", [Interface("eth0", "lan", [Address(f"{LAN}.3/24")])]))
    t.keepalived = render_pair(t, ("director", "director2"), sync=sync, preempt=preempt,
                               strict=strict, accept=accept, check=check,
                               check_port=check_port, delay_loop=delay_loop,
                               advert_int=advert_int)
    return t.validate()


# -- an operator's files -----------------------------------------------------------

def _ifname_ok(name: str) -> bool:
    return bool(re.fullmatch(r"[A-Za-z0-9_.-]{1,15}", name)) and name not in ("lo", "all",
                                                                            "default")


def topology_from_files(texts: list[tuple[str, str]]) -> tuple[Topology, list[str]]:
    """A lab around an operator's keepalived.conf files (one per director, 1 or 2):
    the service, real servers and VRRP interface from the files, at their addresses;
    the LAN, directors' own addresses (unless ``unicast_src_ip`` names them) and a
    client added. Returns the topology and what the lab derived, in words."""
    if not 1 <= len(texts) <= 2:
        raise TopologyError("--keepalived FILE: one file per director, one or two")
    cfgs = [parse(text, src) for src, text in texts]
    derived: list[str] = []
    first: KaVirtualServer | None = None
    for c in cfgs:
        if not c.virtual_servers:
            raise TopologyError(f"{c.source}: no virtual_server: nothing for IPVS to balance")
        for vs in c.virtual_servers:
            kind = (vs.lb_kind or "").upper()
            if kind != "DR":
                raise _bad(c.source, vs.line, f"lb_kind {vs.lb_kind or 'unset (NAT)'}: only "
                                              "DR is supported")
        if not c.instances:
            raise TopologyError(f"{c.source}: no vrrp_instance: the lab needs VRRP to place "
                                "the VIP")
        vs = c.virtual_servers[0]
        if len(c.virtual_servers) > 1:
            extra = c.virtual_servers[1]
            raise _bad(c.source, extra.line, "a second virtual_server: this version builds "
                                             "one service per lab (several come with cluster "
                                             "import)")
        if first is None:
            first = vs
        elif ([(r.ip, r.port, r.weight) for r in vs.real_servers]
              != [(r.ip, r.port, r.weight) for r in first.real_servers]
              or (vs.vip, vs.port, vs.fwmark) != (first.vip, first.port, first.fwmark)):
            raise _bad(c.source, vs.line, f"this virtual_server differs from the one in "
                                          f"{cfgs[0].source}: both directors must serve the "
                                          "same table")
    assert first is not None
    inst = cfgs[0].instances[0]
    vip = first.vip or (inst.vips[0] if inst.vips else None)
    if vip is None:
        raise _bad(cfgs[0].source, inst.line, "no VIP: virtual_ipaddress is empty")
    if first.vip and first.vip not in {v for c in cfgs for i in c.instances for v in i.vips}:
        raise _bad(cfgs[0].source, first.line, f"the VIP {first.vip} is in no "
                                               "virtual_ipaddress: VRRP would never place it")
    if not first.real_servers:
        raise _bad(cfgs[0].source, first.line, "virtual_server has no real_server")
    for r in first.real_servers:
        if first.fwmark is None and r.port != first.port:
            raise _bad(cfgs[0].source, r.line, f"real_server port {r.port} differs from the "
                                               f"service's {first.port}: DR cannot map ports")
    scheduler = (first.scheduler or "wlc").lower()
    if scheduler not in SCHEDULERS:
        raise _bad(cfgs[0].source, first.line, f"lb_algo {scheduler!r}: not an IPVS scheduler")
    if first.protocol not in ("tcp", "udp"):
        raise _bad(cfgs[0].source, first.line, f"protocol {first.protocol}: tcp or udp")
    ifaces = {c.instances[0].interface for c in cfgs}
    if len(ifaces) > 1:
        derived.append(f"the files name VRRP interfaces {sorted(map(str, ifaces))}; each "
                       "director gets its own")
    rips = [ipaddress.ip_address(r.ip) for r in first.real_servers]
    if len({ip.version for ip in rips} | {ipaddress.ip_address(vip).version}) != 1:
        raise _bad(cfgs[0].source, first.line, "IPv4 and IPv6 mixed in one service")
    v4 = rips[0].version == 4
    plen = 24 if v4 else 64
    net = ipaddress.ip_network(f"{rips[0]}/{plen}", strict=False)
    while not all(ip in net for ip in rips):
        plen -= 1
        net = ipaddress.ip_network(f"{rips[0]}/{plen}", strict=False)
    derived.append(f"LAN {net} around the real servers {', '.join(map(str, rips))}")
    taken = {*rips, ipaddress.ip_address(vip)}
    own = [c.instances[0].unicast_src for c in cfgs]
    for src in own:
        if src:
            taken.add(ipaddress.ip_address(src))

    def free() -> ipaddress.IPv4Address | ipaddress.IPv6Address:
        for cand in (net.network_address + k for k in range(2, min(net.num_addresses - 1,
                                                                    4096))):
            if cand not in taken:
                taken.add(cand)
                return cand
        raise TopologyError(f"LAN {net}: no free address for the lab's own hosts")

    hosts: list[Host] = []
    client_ip = free()
    client = Host("client", "client",
                  [Interface("eth0", "lan", [Address(f"{client_ip}/{plen}")])])
    if ipaddress.ip_address(vip) not in net:  # reach the VIP on the LAN, as a router would
        client.routes.append(Route(f"{vip}/{32 if v4 else 128}", dev="eth0"))
    hosts.append(client)
    derived.append(f"client at {client_ip}"
                   + ("" if not client.routes else f", with the VIP {vip} routed on the LAN"))
    names = ["director", "director2"][:len(cfgs)]
    keepalived: dict[str, str] = {}
    for name, c, src in zip(names, cfgs, own, strict=True):
        ci = c.instances[0].interface or "eth0"
        if not _ifname_ok(ci):
            raise _bad(c.source, c.instances[0].line, f"interface {ci!r} cannot name a "
                                                      "Linux interface")
        ip = ipaddress.ip_address(src) if src else free()
        if ip not in net:
            raise _bad(c.source, c.instances[0].line, f"unicast_src_ip {ip} is outside the "
                                                      f"LAN {net} of the real servers")
        hosts.append(Host(name, "director", [Interface(ci, "lan", [Address(f"{ip}/{plen}")])]))
        keepalived[name] = c.text
        state = c.instances[0].state or "?"
        derived.append(f"{name} ({c.source}, VRRP {state} on {ci}) at {ip}"
                       + ("" if src else " (chosen by the lab: the file names none)"))

    rss = []
    for n, r in enumerate(first.real_servers, 1):
        rs_name = f"rs{n}"
        hosts.append(Host(rs_name, "realserver",
                          [Interface("eth0", "lan", [Address(f"{r.ip}/{plen}")])],
                          lo=[Address(f"{vip}/{32 if v4 else 128}")],
                          sysctls=dict(RS_ARP_SYSCTLS)))
        rss.append(RealServer(rs_name, r.weight))
        derived.append(f"{rs_name} at {r.ip} (weight {r.weight}"
                       + (f", {r.check}" if r.check else ", no health check") + ")")
    svc = VirtualService(vip, first.port or 80, "director", rss,
                         protocol=first.protocol,  # type: ignore[arg-type]  # tcp/udp: checked above
                         scheduler=scheduler, persistence=first.persistence,
                         fwmark=first.fwmark)
    derived.append(f"service {vip}:{svc.port}/{svc.protocol} {scheduler}"
                   + (f", persistence {svc.persistence}s" if svc.persistence else ""))
    addrs = [ipaddress.ip_address(vip), *rips]
    waive = frozenset({ANY_ADDRESS}) if not all(in_doc_range(a) for a in addrs) \
        or not in_doc_range(client_ip) else frozenset()
    # the user's own files, named on the command line: their scripts run as keepalived
    # would run them (as a script_user without privileges: lab.roles.keepalived)
    t = Topology("keepalived-files", hosts, [Segment("lan")], [svc], waive, keepalived,
                 allow_scripts=True)
    return t.validate(), derived


_REAL_SERVER = re.compile(r"^[ \t]*real_server[ \t]+(\S+)[ \t]+\S+", re.M)


def strip_real_servers(text: str, keep: set[str]) -> tuple[str, list[str]]:
    """``text`` without the ``real_server`` blocks whose address is not in ``keep``
    (real servers a twin does not have: folded or never collected); returns the new
    text and the addresses removed. Comments (``#``, ``!``) are skipped when
    matching braces."""
    out, removed, pos = [], [], 0
    for m in _REAL_SERVER.finditer(text):
        if m.start() < pos:
            continue  # inside a block already removed
        try:
            ip = str(ip_address(m.group(1)))
        except ValueError:
            continue
        if ip in keep:
            continue
        depth, i, opened = 0, m.end(), False
        while i < len(text):
            ch = text[i]
            if ch in "#!":
                nl = text.find("\n", i)
                i = len(text) if nl < 0 else nl
                continue
            if ch == "{":
                depth, opened = depth + 1, True
            elif ch == "}":
                depth -= 1
                if opened and depth == 0:
                    i += 1
                    break
            elif ch == "\n" and not opened and text[m.end():i].strip():
                break  # a real_server line without a block
            i += 1
        nl = text.find("\n", i)
        end = len(text) if nl < 0 else nl + 1
        out.append(text[pos:m.start()])
        pos = end
        removed.append(ip)
    out.append(text[pos:])
    return "".join(out), removed


# -- what runs a program or touches the host: untrusted text ------------------------

#: Statements that run a program (keepalived.conf(5), 2.2.7), and what the twin loses
#: without them.
SCRIPT_LINES: dict[str, str] = {
    **{k: "no action when the VRRP instance or group changes state" for k in (
        "notify", "notify_master", "notify_backup", "notify_fault", "notify_stop",
        "notify_deleted", "notify_master_rx_lower_pri")},
    "notify_up": "no action when the health check finds the real server up",
    "notify_down": "no action when the health check finds the real server down",
    "quorum_up": "no action when the virtual server gains its quorum",
    "quorum_down": "no action when the virtual server loses its quorum",
    "script": "the check script does not run",
    "misc_path": "the MISC_CHECK program does not run",
    "startup_script": "nothing runs when keepalived starts (rules or marks it would set)",
    "shutdown_script": "nothing runs when keepalived stops",
    "notify_fifo_script": "no reader of the notify FIFO runs",
    "vrrp_notify_fifo_script": "no reader of the VRRP notify FIFO runs",
    "lvs_notify_fifo_script": "no reader of the health-check notify FIFO runs",
}
#: Statements that read or write files, or reach outside the director's namespace, on
#: the lab's machine, and what the twin loses without them.
HOST_LINES: dict[str, str] = {
    **{k: "the twin reads no other file: what the included file holds is missing"
       for k in ("include", "includer", "includem", "includew", "includeb", "includea",
                 "include_check")},
    **{k: "no notify FIFO (it would be created on the lab's machine)"
       for k in ("notify_fifo", "vrrp_notify_fifo", "lvs_notify_fifo")},
    **{k: "nothing is written outside the lab's own directory"
       for k in ("tmp_config_directory", "config_save_dir", "reload_file", "reload_time_file",
                 "reload_check_config", "use_pid_dir", "instance", "file", "init_file")},
    **{k: "keepalived runs in the twin director's own namespace"
       for k in ("net_namespace", "net_namespace_ipvs", "namespace_with_ipsets")},
    **{k: "the twin reads no key or certificate file (SSL_GET uses a generated context)"
       for k in ("ca", "certificate", "key")},
    "snmp_socket": "no SNMP agent connection", "enable_dbus": "no D-Bus service",
    "dbus_service_name": "no D-Bus service",
}
#: Blocks dropped whole, and what the twin loses without them.
BLOCKS: dict[str, str] = {
    "vrrp_script": "the check script does not run, so it never changes a priority or "
                   "puts an instance in FAULT",
    "track_script": "the twin tracks no script: it will not lower this priority (or go "
                    "FAULT) when a script fails",
    "MISC_CHECK": "no MISC_CHECK: the twin keeps the real server in the table whatever "
                  "the program would say",
    "track_file": "the twin tracks no file: it will not change this priority by a file's "
                  "value",
    "vrrp_track_file": "the twin tracks no file: it will not change a priority by a file's "
                       "value",
    "FILE_CHECK": "no FILE_CHECK: the real server's weight does not follow a file",
    "SSL": "the twin reads no key or certificate file (SSL_GET uses a generated context)",
}
_ALLOW = "--allow-scripts keeps it"
#: keepalived's read buffer (lib/parser.h MAXBUF): fgets() cuts longer lines.
_MAXBUF = 1024
#: SCRIPT_LINES and HOST_LINES by lowercase keyword -> (keyword, what the twin loses)
_DANGER = {k.lower(): (k, v) for d in (SCRIPT_LINES, HOST_LINES) for k, v in d.items()}


#: The keywords :func:`strip_scripts` acts on, lowercased. Each is a word of its own
#: where it counts (a statement's first, after white space, a brace or a quote), so
#: a text none of whose words is one (nor ``$``, ``~`` or a long line) is returned as it
#: is, read once rather than a statement at a time (5,000 virtual_servers are 130,000
#: lines).
_KEYWORDS = frozenset(k.lower() for k in (*BLOCKS, *_DANGER))
_WORDS = re.compile(r"\w+")


@dataclass(frozen=True)
class Stripped:
    """A statement of an untrusted keepalived.conf that the twin does not run."""

    source: str
    line: int
    keyword: str
    loses: str
    #: What a removed block named (a track_script's scripts and weights).
    names: tuple[str, ...] = ()

    def note(self) -> str:
        what = self.keyword + (f" ({', '.join(self.names)})" if self.names else "")
        return f"{self.source}:{self.line}: {what} removed: {self.loses} ({_ALLOW})"


_SPECIAL = re.compile(r'["\\#!]')
_BRACES = re.compile(r"([{}])")


def _decomment(raw: str) -> str:
    """A line as keepalived's parser reads it (lib/parser.c decomment()): ``!`` and ``#``
    outside double quotes start a comment, a backslash escapes them."""
    if not _SPECIAL.search(raw):   # the common line: nothing to read a character at a time
        return raw.strip()
    out, quote, i = [], False, 0
    while i < len(raw):
        ch = raw[i]
        if ch == '"':
            quote = not quote
        elif ch == "\\" and i + 1 < len(raw):
            if not quote and raw[i + 1] in "#!":
                out.append(raw[i + 1])
                i += 2
                continue
            out.append(raw[i:i + 2])
            i += 2
            continue
        elif not quote and ch in "#!":
            break
        out.append(ch)
        i += 1
    return "".join(out).strip()


def _recomment(piece: str) -> str:
    """``piece`` (decommented) written back so that keepalived reads it the same:
    ``#`` and ``!`` outside double quotes escaped again, as :func:`_decomment` found
    them (unescaped, they would start a comment and cut the statement short)."""
    out, quote = [], False
    for ch in piece:
        if ch == '"':
            quote = not quote
        out.append("\\" + ch if not quote and ch in "#!" else ch)
    return "".join(out)


def _pieces(line: str) -> list[str]:
    """A decommented line cut at braces outside quotes: statements and ``{``/``}``, as
    keepalived reads them (each piece between braces is a statement of its own)."""
    if '"' not in line:   # no quotes: every brace cuts (what the loop below does)
        return [p.strip() for p in _BRACES.split(line) if p.strip()]
    out: list[str] = []
    cur: list[str] = []
    quote = False
    for ch in line:
        if ch == '"':
            quote = not quote
        if not quote and ch in "{}":
            out += ["".join(cur), ch]
            cur = []
        else:
            cur.append(ch)
    out.append("".join(cur))
    return [p.strip() for p in out if p.strip()]


def _keyword(piece: str) -> str:
    """A statement's first word as keepalived's alloc_strvec_r() cuts it: a quoted
    string without its quotes, else up to white space or a quote
    (``notify_master"/x"`` is ``notify_master``)."""
    rest = piece.lstrip(" \t\f\n\r\v")
    if rest.startswith('"'):
        return rest[1:].split('"', 1)[0]
    return _KEYWORD_END.split(rest, maxsplit=1)[0]


def _danger(key: str, piece: str) -> tuple[str, str] | None:
    """(keyword, what the twin loses) when ``piece`` runs a program or touches the host."""
    k = key.lower()
    if k == "notify_deleted" and len(piece.split()) < 2:
        return None  # without a script it only changes what other notifies are told
    return _DANGER.get(k)


def strip_scripts(text: str, source: str = "keepalived.conf") -> tuple[str, list[Stripped]]:
    """``text`` without what would run a program or touch the lab's machine as root
    (notify scripts, vrrp_script/track_script, MISC_CHECK, startup/shutdown scripts,
    FIFOs, include, files, other namespaces; see :data:`SCRIPT_LINES`, :data:`HOST_LINES`,
    :data:`BLOCKS`); returns the new text and what was removed, by line.

    Lines are read as keepalived reads them (comments, quotes, braces, ``@id``
    conditionals); parameter definitions (``$NAME=``) and ``~SEQ``/``~LST`` are removed
    too, since substitution could assemble any statement. Keywords match in any case.
    Untouched lines keep their text; a changed line keeps its other statements."""
    if "$" not in text and "~" not in text and _KEYWORDS.isdisjoint(
            _WORDS.findall(text.lower())) and max(map(len, text.split("\n"))) * 4 < _MAXBUF - 1:
        return text, []  # nothing below would change a line
    blocks = {k.lower(): (k, v) for k, v in BLOCKS.items()}
    out: list[str] = []
    found: list[Stripped] = []
    skip = 0                    # depth inside a removed block
    inside: list[str] = []      # the removed block's statements (track_script names them)
    pending: tuple[str, str] | None = None  # a removed block keyword awaiting its '{'
    in_def = False              # inside a multi-line $NAME= definition
    for n, raw in enumerate(text.split("\n"), 1):
        # (a character is at most 4 bytes: a short line needs no encoding to tell)
        if len(raw) * 4 >= _MAXBUF - 1 and len(raw.encode(errors="surrogateescape")) >= _MAXBUF - 1:
            # keepalived reads 1023 bytes at a time: the rest would be a line of its own
            found.append(Stripped(source, n, "a line over 1022 bytes", "keepalived would "
                                  "read it as several statements; the twin has none of it"))
            continue
        line = _decomment(raw)
        if in_def:
            in_def = line.endswith("\\")
            continue
        if line.startswith("@"):  # conditional: assume it applies
            parts = line.split(None, 1)
            line = parts[1] if len(parts) > 1 else ""
        if line.startswith("$") or line.startswith("~"):
            what = "parameter definition" if line.startswith("$") else line[:4]
            found.append(Stripped(source, n, what, "the twin does not expand parameters "
                                  "in a config it was handed"))
            in_def = line.startswith("$") and line.endswith("\\")
            continue
        kept: list[str] = []
        changed = False
        for piece in _pieces(line):
            if pending is not None and piece != "{":
                pending = None
            if skip:
                skip += {"{": 1, "}": -1}.get(piece, 0)
                changed = True
                if piece not in "{}":
                    inside.append(piece)
                elif skip == 0 and inside and found[-1].keyword == "track_script":
                    f = found[-1]
                    found[-1] = Stripped(f.source, f.line, f.keyword, f.loses, tuple(inside))
                continue
            if piece == "{" and pending is not None:
                skip, pending, changed, inside = 1, None, True, []
                continue
            if piece in "{}":
                kept.append(piece)
                continue
            key = _keyword(piece)
            if key.lower() in blocks:
                k, loses = blocks[key.lower()]
                found.append(Stripped(source, n, k, loses))
                pending, changed = (k, loses), True
                continue
            d = _danger(key, piece)
            if d is not None:
                found.append(Stripped(source, n, d[0], d[1]))
                changed = True
                continue
            kept.append(piece)
        if not changed:
            out.append(raw)
        elif kept:
            indent = raw[:len(raw) - len(raw.lstrip())]
            out.append(indent + " ".join(_recomment(p) for p in kept))
    return "\n".join(out), found


def script_user(text: str) -> str | None:
    """The user a config names in ``script_user`` (the last one), if any."""
    user = None
    for raw in text.split("\n"):
        line = _decomment(raw)
        if line.startswith("@"):
            parts = line.split(None, 1)
            line = parts[1] if len(parts) > 1 else ""
        for piece in _pieces(line):
            w = piece.replace('"', "").split()
            if len(w) >= 2 and w[0] == "script_user":
                user = w[1]
    return user


def secure_global_defs(text: str, user: str, group: str | None = None) -> str:
    """``text`` running its scripts as keepalived would with ``enable_script_security``
    and ``script_user USER``: every ``script_user`` and ``enable_script_security``
    statement of ``text`` is replaced by the lab's pair at the top of the first
    ``global_defs`` (a new block when there is none)."""
    lines = []
    for raw in text.split("\n"):
        line = _decomment(raw)
        if line.startswith("@"):
            parts = line.split(None, 1)
            line = parts[1] if len(parts) > 1 else ""
        pieces = _pieces(line)
        drop = [p for p in pieces if _keyword(p) in ("script_user", "enable_script_security")]
        if drop:
            kept = [p for p in pieces if p not in drop]
            indent = raw[:len(raw) - len(raw.lstrip())]
            if kept:
                lines.append(indent + " ".join(kept))
            continue
        lines.append(raw)
    ours = ["    # drlab: scripts run as a user without privileges, from root-only paths",
            "    enable_script_security", f"    script_user {user}" + (f" {group}" if group
                                                                       else "")]
    for k, raw in enumerate(lines):
        m = re.match(r"^\s*global_defs\s*\{(.*)$", raw)
        if m:
            rest = m.group(1).strip()
            head = ["global_defs {", *ours]
            return "\n".join([*lines[:k], *head, *(["    " + rest] if rest else []),
                              *lines[k + 1:]])
    return "\n".join(["global_defs {", *ours, "}", *lines])
