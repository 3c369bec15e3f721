"""The parsers of a collected host's files (``scripts/collect`` writes them): text in,
:mod:`collected records <lab.model.collected.records>` out, every field checked for its
type and for characters that would make a line of their own. Errors name the file and
line, on one line."""

from __future__ import annotations

import ipaddress
import json
import re
from collections import deque
from collections.abc import Iterator
from typing import Any

from lab.errors import TopologyError
from lab.model.collected.records import (
    IP,
    CollectedAddress,
    CollectedLink,
    CollectedListener,
    CollectedReal,
    CollectedRoute,
    CollectedService,
    Scope,
)
from lab.model.files import shown
from lab.model.topology import SCHEDULERS, ip_address, ip_interface

#: A JSON object as ``ip -j`` prints it: the input, before any field is checked.
JsonObject = dict[str, Any]


def bad(where: str, msg: str) -> TopologyError:
    return TopologyError(shown(f"{where}: {msg}"))


def clip(v: Any, n: int = 60) -> str:
    """``v`` for a message: its repr, at most ``n`` characters."""
    r = repr(v)
    return r if len(r) <= n else r[:n - 3] + "..."


#: A word as the tools print it: printable ASCII, no space.
_WORD = re.compile(r"[!-~]{1,64}")
#: An interface name: what the kernel allows that a tool prints (IFNAMSIZ - 1 bytes).
IFNAME = re.compile(r"[!-~]{1,15}")
#: A collected host's name (its hostname, or its directory's name).
HOSTNAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,252}")
#: A number as the tools print it (ASCII digits: ``int`` also takes ``١٢``).
_NUMBER = re.compile(r"[0-9]{1,10}")


def _string(v: Any, where: str, what: str, pattern: re.Pattern[str] = _WORD) -> str:
    if not isinstance(v, str):
        raise bad(where, f"{what}: expected a string, got {type(v).__name__} {clip(v)}")
    if not pattern.fullmatch(v):
        raise bad(where, f"{what} {clip(v)}: not a name (printable ASCII without spaces, at "
                          f"most {pattern.pattern.rpartition(',')[2].rstrip('}')} characters)")
    return v


def _opt(e: JsonObject, key: str, where: str,
         pattern: re.Pattern[str] = _WORD) -> str | None:
    v = e.get(key)
    return None if v is None else _string(v, where, key, pattern)


def _strings(e: JsonObject, key: str, where: str) -> list[str]:
    v = e.get(key)
    if v is None:
        return []
    if not isinstance(v, list) or not all(isinstance(x, str) for x in v):
        raise bad(where, f"{key}: expected a list of strings, got {clip(v)}")
    return v


def _int(e: JsonObject, key: str, where: str, top: int) -> int | None:
    v = e.get(key)
    if v is None:
        return None
    if not isinstance(v, int) or isinstance(v, bool) or not 0 <= v <= top:
        raise bad(where, f"{key}: expected an integer from 0 to {top}, got {clip(v)}")
    return v


def _number(word: str, where: str, what: str, top: int = 2**32 - 1) -> int:
    if not _NUMBER.fullmatch(word) or int(word) > top:
        raise bad(where, f"{what} {clip(word)}: expected a number from 0 to {top}")
    return int(word)


def parse_json(text: str, where: str) -> list[JsonObject]:
    """A list of JSON objects (what ``ip -j`` prints)."""
    try:
        data = json.loads(text)
    except json.JSONDecodeError as e:
        raise bad(f"{where}:{e.lineno}", f"not valid JSON: {e.msg}") from None
    except RecursionError:
        raise bad(where, "not valid JSON: nested too deep") from None
    except ValueError as e:     # a number of more than 4300 digits
        raise bad(where, f"not valid JSON: {str(e).split(';')[0]}") from None
    if not isinstance(data, list):
        raise bad(f"{where}:1", "expected a JSON list (the output of ip -j)")
    for n, entry in enumerate(data):
        if not isinstance(entry, dict):
            raise bad(where, f"entry {n}: expected a JSON object, got {type(entry).__name__}")
    return data


def _scope(v: Any) -> Scope:
    return "host" if v == "host" else "link" if v == "link" else "global"


def parse_links(addrs: list[JsonObject], links: list[JsonObject] | None,
                where: str = "ip-addr.json", lwhere: str = "ip-link.json") -> list[CollectedLink]:
    """The interfaces of ``ip -j addr show`` (``addrs``) with their kinds and flags from
    ``ip -j -d link show`` (``links``, when collected)."""
    kinds: dict[str, JsonObject] = {}
    for n, e in enumerate(links or []):
        name = _opt(e, "ifname", f"{lwhere}: entry {n}", IFNAME)
        if name is not None:
            kinds[name] = e
    out = []
    for n, e in enumerate(addrs):
        w = f"{where}: entry {n}"
        name = e.get("ifname")
        if name is None or name == "":
            raise bad(where, f"entry {n}: no ifname")
        name = _string(name, w, "ifname", IFNAME)
        info = kinds.get(name, e)
        iw = w if info is e else f"{lwhere}: {name}"
        linkinfo = info.get("linkinfo")
        if linkinfo is not None and not isinstance(linkinfo, dict):
            raise bad(iw, f"linkinfo: expected a JSON object, got {clip(linkinfo)}")
        flags = _strings(e, "flags", w) + (_strings(info, "flags", iw) if info is not e else [])
        kind = _opt(linkinfo or {}, "info_kind", f"{iw}: linkinfo") or ""
        if name == "lo" or e.get("link_type") == "loopback":
            kind = "loopback"
        link = CollectedLink(name, kind, "NOARP" in flags, _int(e, "mtu", w, 2**31 - 1))
        ainfo = e.get("addr_info")
        if ainfo is not None and not isinstance(ainfo, list):
            raise bad(w, f"addr_info: expected a JSON list, got {clip(ainfo)}")
        for k, a in enumerate(ainfo or []):
            if not isinstance(a, dict) or "local" not in a:
                continue
            local, plen = a.get("local"), a.get("prefixlen", "")
            try:
                if not isinstance(local, str) or not isinstance(plen, int | str) \
                        or isinstance(plen, bool):
                    raise ValueError
                ip = ip_interface(f"{local}/{plen}")
            except ValueError:
                raise bad(where, f"entry {n} ({name}): addr_info[{k}]: bad address "
                                  f"{clip(local)}/{clip(plen)}") from None
            link.addrs.append(CollectedAddress(ip, _scope(a.get("scope"))))
        # the kernel lists an interface's IPv6 addresses newest first (IPv4 in the
        # order added, the primary first): back to the order they were configured in,
        # so that the twin adds them in that order and lists them as collected
        link.addrs = ([a for a in link.addrs if a.addr.version == 4]
                      + [a for a in link.addrs if a.addr.version == 6][::-1])
        out.append(link)
    return out


def parse_routes(entries: list[JsonObject], where: str) -> list[CollectedRoute]:
    """``ip -j route show`` entries, the fields the import reads checked for their
    types and for control characters (``dev`` is an interface name)."""
    out = []
    for n, e in enumerate(entries):
        w = f"{where}: entry {n}"
        dst, gateway = _opt(e, "dst", w), _opt(e, "gateway", w)
        dev, protocol, kind = _opt(e, "dev", w, IFNAME), _opt(e, "protocol", w), _opt(e, "type", w)
        table = e.get("table")
        if table is not None:
            table = (str(table) if isinstance(table, int) and not isinstance(table, bool)
                     else _string(table, w, "table"))
        out.append(CollectedRoute(dst, gateway, dev, protocol, kind, table,
                                  nexthops=bool(e.get("nexthops"))))
    return out


def key_value_lines(text: str) -> Iterator[tuple[int, str, str, str, bool]]:
    """The ``key = value`` lines of a sysctl listing or sysctl.d file, as sysctl reads
    them: ``(number, line, key, value, has_eq)``, blank lines and lines starting with
    ``#`` or ``;`` skipped, key and value trimmed, the value's inner whitespace single
    spaces. The caller checks the key (``has_eq`` False: no ``=`` on the line)."""
    for n, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line[0] in "#;":
            continue
        key, eq, value = line.partition("=")
        yield n, line, key.strip(), " ".join(value.split()), bool(eq)


def parse_sysctls(text: str, where: str = "sysctl.txt") -> dict[str, str]:
    """``key = value`` lines (``sysctl -a``)."""
    out = {}
    for n, line, key, value, eq in key_value_lines(text):
        if not eq or not key or not re.fullmatch(r"[A-Za-z0-9_./-]+", key):
            raise bad(f"{where}:{n}", f"expected `key = value`, got {clip(line)}")
        out[key] = value
    return out


_SVC_OPTS = {"-t": "tcp", "--tcp-service": "tcp", "-u": "udp", "--udp-service": "udp",
             "--sctp-service": "sctp", "-f": "fwmark", "--fwmark-service": "fwmark"}
_FWD = {"-g": "g", "--gatewaying": "g", "-m": "m", "--masquerading": "m", "-i": "i",
        "--ipip": "i"}


_ADDRPORT = re.compile(r"\[([0-9A-Fa-f:.]+)\](?::([0-9]+))?|([0-9.]+)(?::([0-9]+))?"
                       r"|([0-9A-Fa-f:]+)")


def _addrport(word: str, where: str, need_port: bool = True) -> tuple[IP, int]:
    m = _ADDRPORT.fullmatch(word)
    if not m:
        raise bad(where, f"{clip(word)} is not ADDRESS:PORT")
    host = m.group(1) or m.group(3) or m.group(5)
    port = m.group(2) or m.group(4)
    try:
        ip = ip_address(host)
    except ValueError:
        raise bad(where, f"{clip(host)} is not an IP address") from None
    if port is None and need_port:
        raise bad(where, f"{clip(word)}: no port")
    return ip, _number(port or "0", where, "port", 65535)


def parse_ipvsadm(text: str, where: str = "ipvsadm-save.txt") -> list[CollectedService]:
    """``ipvsadm-save -n``, line by line (see ipvsadm(8))."""
    services: dict[tuple[str, str | int | None, int], CollectedService] = {}
    for n, raw in enumerate(text.splitlines(), 1):
        words = deque(raw.split())     # popped from the left: linear in a long line
        if not words or words[0].startswith("#"):
            continue
        at = f"{where}:{n}"
        cmd = words.popleft()
        if cmd not in ("-A", "--add-service", "-a", "--add-server"):
            raise bad(at, f"expected -A or -a, got {clip(cmd)}")
        adding = cmd in ("-A", "--add-service")
        proto: str | None = None
        vip: IP | None = None
        port = 0
        fwmark: int | None = None
        v6 = False
        sched, persist, netmask, extras = "wlc", None, None, []
        real: tuple[IP, int] | None = None
        fwd, weight = "g", 1

        def value(opt: str, words: deque[str] = words, at: str = at) -> str:
            if not words:
                raise bad(at, f"{opt} needs a value")
            v = words.popleft()
            if not _WORD.fullmatch(v):
                raise bad(at, f"{opt} {clip(v)}: not printable ASCII")
            return v

        while words:
            opt = words.popleft()
            if opt in _SVC_OPTS:
                proto = _SVC_OPTS[opt]
                if proto == "fwmark":
                    fwmark = _number(value(opt), at, opt)
                else:
                    vip, port = _addrport(value(opt), at)
            elif opt in ("-6", "--ipv6"):
                v6 = True
            elif adding and opt in ("-s", "--scheduler"):
                sched = value(opt)
                if sched not in SCHEDULERS:
                    raise bad(at, f"unknown scheduler {clip(sched)}")
            elif adding and opt in ("-p", "--persistent"):
                persist = (_number(words.popleft(), at, opt, 2**31 - 1)
                           if words and not words[0].startswith("-") else 300)
            elif adding and opt in ("-M", "--netmask"):
                netmask = value(opt)
                if not re.fullmatch(r"[0-9A-Fa-f:.]{1,45}", netmask):
                    raise bad(at, f"{opt} {clip(netmask)}: not a netmask")
            elif adding and opt in ("-b", "--sched-flags"):
                extras.append(f"scheduler flags {value(opt)}")
            elif adding and opt == "--pe":
                extras.append(f"persistence engine {value(opt)}")
            elif adding and opt in ("-o", "--ops"):
                extras.append("one-packet scheduling (-o)")
            elif not adding and opt in ("-r", "--real-server"):
                real = _addrport(value(opt), at, need_port=False)
            elif not adding and opt in _FWD:
                fwd = _FWD[opt]
            elif not adding and opt in ("-w", "--weight"):
                weight = _number(value(opt), at, opt, 2**31 - 1)
            elif not adding and opt in ("-x", "--u-threshold", "-y", "--l-threshold",
                                        "--tun-type", "--tun-port"):
                value(opt)
            elif not adding and opt in ("--tun-nocsum", "--tun-csum", "--tun-remcsum"):
                pass
            else:
                raise bad(at, f"unknown option {opt[:60]}")
        if proto is None:
            raise bad(at, "no service (-t, -u or -f)")
        family = 6 if v6 or (vip is not None and vip.version == 6) or (
            fwmark is not None and real is not None and real[0].version == 6) else 4
        key = (("fwmark", fwmark, family) if fwmark is not None
               else (proto, str(vip), port))
        if adding:
            if key in services:
                raise bad(at, "service added twice")
            services[key] = CollectedService(proto if fwmark is None else "tcp", vip, port,
                                             fwmark, family, sched, at, persist, netmask,
                                             extras)
            continue
        if key not in services:
            raise bad(at, "real server of a service not added before (-A)")
        if real is None:
            raise bad(at, "-a without -r ADDRESS")
        services[key].reals.append(CollectedReal(real[0], real[1], fwd, weight, at))
    return list(services.values())


def parse_listen(text: str) -> tuple[list[CollectedListener], int]:
    """``ss -Hltnu``: the sockets that listen, and how many lines were not understood."""
    out, bad = [], 0
    for raw in text.splitlines():
        words = raw.split()
        if not words:
            continue
        if len(words) < 5 or words[0] not in ("tcp", "udp"):
            bad += 1
            continue
        local = words[4]
        host, _, port = local.rpartition(":")
        if port == "*":     # a peer's wildcard in the local column: not a listener
            continue
        if not _NUMBER.fullmatch(port) or int(port) > 65535:
            bad += 1
            continue
        host = host.split("%", 1)[0].strip("[]")
        if host == "*":
            out.append(CollectedListener(words[0], None, None, int(port)))
            continue
        try:
            ip = ipaddress.ip_address(host)
        except ValueError:
            bad += 1
            continue
        if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
            ip = ip.ipv4_mapped
        if ip.is_unspecified:
            out.append(CollectedListener(words[0], None, ip.version, int(port)))
        else:
            out.append(CollectedListener(words[0], ip, ip.version, int(port)))
    return out, bad


def parse_keyvalues(text: str) -> dict[str, str]:
    """``key = value`` lines (collect.txt)."""
    out = {}
    for line in text.splitlines():
        k, eq, v = line.partition("=")
        if eq:
            out[k.strip()] = v.strip()
    return out
