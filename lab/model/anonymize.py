"""Map a collected cluster's addresses into the documentation ranges, keeping what the
kernel's rules depend on.

Every subnet of an interface (a *zone*) gets a block of its own in 192.0.2.0/24,
198.51.100.0/24, 203.0.113.0/24 (split into /25, /26, ... when there are more
zones than /24s) or 2001:db8:N::/48: addresses in one subnet stay in one subnet,
addresses in different subnets stay apart, a VIP inside a LAN stays inside it
and a VIP outside every LAN stays outside (addresses in no subnet share a block
of their own). Prefix lengths and host numbers are kept where they fit (a /24
keeps its host numbers, a /64 its short interface ids such as ``::10``); a
wider subnet shrinks to its block, with its host numbers renumbered in order if
they do not fit. IPv6 interface ids of 33 bits or more (EUI-64 ones carry the
interface's MAC, random ones name the host) are renumbered in order.
:func:`anonymize_topology` applies this to TOML-shaped topology data, including
the keepalived.conf texts in it, and renames interfaces (``bond0.3107`` ->
``eth0``), keepalived's instance and group names, its secrets and check URLs.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Sequence
from typing import Any

from lab.errors import TopologyError
from lab.model.topology import subnet_of

IP = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNet = ipaddress.IPv4Network | ipaddress.IPv6Network

V4_DOCS = tuple(ipaddress.IPv4Network(n)
                for n in ("192.0.2.0/24", "198.51.100.0/24", "203.0.113.0/24"))
V6_DOC = ipaddress.IPv6Network("2001:db8::/32")

#: An IPv6 or IPv4 literal with an optional /prefix, not part of a longer word.
LITERAL = re.compile(
    r"(?<![\w:.])(?:"
    r"(?P<v6>(?:[0-9A-Fa-f]{0,4}:){2,7}(?:\d{1,3}(?:\.\d{1,3}){3}|[0-9A-Fa-f]{1,4})?)"
    r"(?:/(?P<plen6>\d{1,3}))?(?![\w:]|\.\d)"
    r"|(?P<v4>\d{1,3}(?:\.\d{1,3}){3})(?:/(?P<plen4>\d{1,2}))?(?!\w|\.\d))")


def _full(ip: IP) -> int:
    return 32 if ip.version == 4 else 128


def is_special(ip: IP) -> bool:
    """Addresses that identify nothing and keep their meaning: loopback, unspecified,
    multicast, and IPv4 netmasks (255.255.255.0 in a persistence_granularity)."""
    if ip.is_loopback or ip.is_unspecified or ip.is_multicast:
        return True
    if ip.version == 4:
        n = int(ip)
        inv = (~n) & 0xFFFFFFFF
        return n >> 24 == 255 and (inv & (inv + 1)) == 0
    return False


def literals(text: str) -> list[tuple[IP, int | None]]:
    """The IP literals in ``text`` (with their prefix length, if written)."""
    out = []
    for m in LITERAL.finditer(text):
        ip = _literal_ip(m)
        if ip is not None:
            plen = m.group("plen6") or m.group("plen4")
            out.append((ip, int(plen) if plen else None))
    return out


def _literal_ip(m: re.Match[str]) -> IP | None:
    try:
        return ipaddress.ip_address(m.group("v6") or m.group("v4"))
    except ValueError:
        return None


class AddressMap:
    """A consistent, injective map of addresses into the documentation ranges."""

    def __init__(self) -> None:
        self.nets: list[IPNet] = []
        self.route_nets: list[IPNet] = []
        self.addrs: dict[IP, None] = {}
        self.map: dict[IP, IP] = {}
        self.block_prefix: dict[IP, int] = {}   # address -> its block's prefix length
        self.notes: list[str] = []

    # -- gathering -----------------------------------------------------------------
    def add_interface(self, cidr: str) -> None:
        iface = ipaddress.ip_interface(cidr)
        if iface.network.prefixlen < _full(iface.ip) and iface.network not in self.nets:
            self.nets.append(iface.network)
        self.add(iface.ip)

    def add_route(self, dst: str) -> None:
        net = ipaddress.ip_network(dst)
        if net.prefixlen < _full(net.network_address) and net not in self.route_nets:
            self.route_nets.append(net)
        self.add(net.network_address)

    def add(self, ip: IP) -> None:
        if not is_special(ip):
            self.addrs.setdefault(ip)

    def add_text(self, text: str) -> None:
        for ip, plen in literals(text):
            if plen is not None and plen < _full(ip) and not is_special(ip):
                self.add_interface(f"{ip}/{plen}")
            else:
                self.add(ip)

    # -- building ------------------------------------------------------------------
    def build(self) -> None:
        for version in (4, 6):
            self._build(version)

    @staticmethod
    def _maximal(nets: list[IPNet], within: Sequence[IPNet] = ()) -> list[IPNet]:
        out: list[IPNet] = []
        for n in nets:
            if any(subnet_of(n, w) for w in [*within, *out]):
                continue
            wider = [m for m in nets if m != n and subnet_of(n, m)]
            top = max(wider, key=lambda m: m.num_addresses) if wider else n
            if top not in out:
                out.append(top)
        return out

    def _build(self, version: int) -> None:
        zones = self._maximal([n for n in self.nets if n.version == version])
        rzones = self._maximal([n for n in self.route_nets if n.version == version], zones)
        allz: list[IPNet | None] = [*zones, *rzones]
        members: dict[IPNet | None, list[IP]] = {}
        for ip in self.addrs:
            if ip.version != version:
                continue
            z = next((z for z in allz if z is not None and ip in z), None)
            members.setdefault(z, []).append(ip)
        if None in members:
            allz.append(None)
        allz = [z for z in allz if z in members]
        if not allz:
            return
        blocks = (self._v4_blocks(allz, members, set(zones)) if version == 4 else
                  self._v6_blocks(allz))
        for z, block in zip(allz, blocks, strict=True):
            self._place(z, block, sorted(members[z]), z in zones)

    def _v6_blocks(self, allz: list[IPNet | None]) -> list[IPNet]:
        if len(allz) > 0xFFFF:
            raise TopologyError("--anonymize: too many IPv6 subnets")
        return [ipaddress.IPv6Network(f"2001:db8:{n:x}::/48") for n in range(1, len(allz) + 1)]

    def _v4_blocks(self, allz: list[IPNet | None], members: dict[IPNet | None, list[IP]],
                   iface_zones: set[IPNet]) -> list[IPNet]:
        """A block per zone from the three documentation /24s: an interface's subnet
        gets its own size up to a /24, a route's or the pool of addresses in no subnet
        the least that holds them; when they do not fit, the widest shrink."""
        def least(n: int) -> int:      # the longest prefix holding n addresses
            return 32 - max(2, (n + 1).bit_length())

        want: dict[int, int] = {}
        for k, z in enumerate(allz):
            n = len(members[z])
            if z is None:
                want[k] = least(n)
            elif z in iface_zones:
                want[k] = max(z.prefixlen, 24)
            else:
                want[k] = max(z.prefixlen, least(n))
        shrunk_to = None
        while True:
            got = self._allocate(want)
            if got is not None:
                break
            widest = min(want.values())
            if widest >= 30:
                raise TopologyError(f"--anonymize: {len(allz)} IPv4 subnets do not fit the "
                                    "documentation ranges (three /24s)")
            for k in want:
                if want[k] == widest:
                    want[k] = widest + 1
            shrunk_to = widest + 1
        if shrunk_to is not None:
            self.notes.append(f"--anonymize: {len(allz)} IPv4 subnets do not fit the three "
                              f"documentation /24s as they are: the widest get a /{shrunk_to}")
        return [got[k] for k in range(len(allz))]

    @staticmethod
    def _allocate(want: dict[int, int]) -> dict[int, IPNet] | None:
        """Buddy allocation, largest first (it packs power-of-two blocks perfectly)."""
        free: list[ipaddress.IPv4Network] = list(V4_DOCS)
        out: dict[int, IPNet] = {}
        for k in sorted(want, key=lambda k: (want[k], k)):
            cand = [b for b in free if b.prefixlen <= want[k]]
            if not cand:
                return None
            b = cand[0]
            free.remove(b)
            subs = list(b.subnets(new_prefix=want[k]))
            out[k] = subs[0]
            free[0:0] = subs[1:]
            free.sort(key=lambda n: (-n.prefixlen, int(n.network_address)))
        return out

    def _place(self, z: IPNet | None, block: IPNet, ips: list[IP], subnet: bool) -> None:
        size, bp = block.num_addresses, block.prefixlen
        if z is None:
            if len(ips) > size - 2:
                raise TopologyError(f"--anonymize: {len(ips)} addresses outside every "
                                    f"subnet do not fit a /{bp}")
            offs = {ip: n for n, ip in enumerate(ips, 1)}
        else:
            offs = {ip: int(ip) - int(z.network_address) for ip in ips}
            if z.prefixlen < bp:
                how = ""
                if any(o >= size for o in offs.values()):
                    low = {ip: o % size for ip, o in offs.items()}
                    if len(set(low.values())) == len(low) and all(
                            0 < v < size - 1 or v == offs[ip] for ip, v in low.items()):
                        offs, how = low, "; host numbers kept modulo its size"
                    elif len(ips) > size - 2:
                        raise TopologyError(f"--anonymize: a /{z.prefixlen} subnet with "
                                            f"{len(ips)} addresses does not fit a /{bp}")
                    else:
                        offs = {ip: (0 if offs[ip] == 0 else n) for n, ip in enumerate(ips, 1)}
                        how = "; host numbers renumbered in order"
                what = "subnet" if subnet else "route destination"
                self.notes.append(f"--anonymize: a /{z.prefixlen} {what} becomes {block} "
                                  f"(the prefix shrank to /{bp}{how})")
        if block.version == 6:  # an interface id that names its host or its MAC
            long = [ip for ip in ips if offs[ip] % (1 << 64) >= 1 << 32]
            short = {o for ip, o in offs.items() if ip not in long}
            k = 0xA00
            for ip in long:
                while k in short:
                    k += 1
                offs[ip] = offs[ip] - offs[ip] % (1 << 64) + k
                k += 1
        for ip, off in offs.items():
            self.map[ip] = block.network_address + off
            self.block_prefix[ip] = bp

    # -- applying ------------------------------------------------------------------
    def ip(self, ip: IP) -> IP:
        if is_special(ip):
            return ip
        try:
            return self.map[ip]
        except KeyError:
            raise TopologyError(f"--anonymize: {ip} was not gathered") from None

    def _plen(self, ip: IP, plen: int) -> int:
        return max(plen, self.block_prefix.get(ip, 0))

    def cidr(self, cidr: str) -> str:
        i = ipaddress.ip_interface(cidr)
        return f"{self.ip(i.ip)}/{self._plen(i.ip, i.network.prefixlen)}"

    def network(self, dst: str) -> str:
        if dst == "default":
            return dst
        n = ipaddress.ip_network(dst)
        ip = self.ip(n.network_address)
        return str(ipaddress.ip_network(f"{ip}/{self._plen(n.network_address, n.prefixlen)}",
                                        strict=False))

    def text(self, text: str) -> str:
        def sub(m: re.Match[str]) -> str:
            ip = _literal_ip(m)
            if ip is None or is_special(ip):
                return m.group(0)
            new = str(self.ip(ip))
            plen = m.group("plen6") or m.group("plen4")
            if plen:
                new += f"/{self._plen(ip, int(plen))}"
            return new

        return LITERAL.sub(sub, text)


#: keepalived statements whose next word names a thing of the cluster's own: the new
#: name's prefix (a number is added).
_NAMED = {"vrrp_instance": "VI_", "vrrp_sync_group": "VG_", "virtual_server_group": "VSG_",
          "track_process": "TP_", "vrrp_track_process": "TP_", "bfd_instance": "BFD_",
          "vrrp_script": "CHK_", "track_file": "TF_", "vrrp_track_file": "TF_"}
#: keepalived statements whose next word is a value of the cluster's own: the new
#: value's pattern (``{}`` takes a number).
_VALUES = {"auth_pass": "pass{}", "path": "/check{}", "virtualhost": "host{}.example.org",
           "helo_name": "host{}.example.org", "smtp_helo_name": "host{}.example.org",
           "digest": "{:032x}", "password": "secret{}", "virtual_router_id": "{}",
           "id": "{}",  # lvs_sync_daemon's sync id
           "process_name": "keepalived", "vrrp_process_name": "keepalived_vrrp",
           "checker_process_name": "keepalived_ipvs", "bfd_process_name": "keepalived_bfd",
           "process": "process{}"}
_IFACE_AFTER = ("interface", "dev", "lvs_sync_daemon", "use_vmac", "label", "garp_interface")
_TOKEN = re.compile(r'"[^"]*"|[{}]|[^\s{}"]+')
_MAC = re.compile(r"(?<![\w:])(?:[0-9A-Fa-f]{2}[:-]){5}[0-9A-Fa-f]{2}(?![\w:])")


class Renames:
    """Consistent new names for what a keepalived.conf pair (and the notes) names:
    interfaces (given), instances, groups, secrets, check URLs."""

    def __init__(self, ifnames: dict[str, str]) -> None:
        self.ifnames = dict(ifnames)
        self.values: dict[tuple[str, str], str] = {}
        self.counts: dict[str, int] = {}

    def value(self, kind: str, old: str, pattern: str) -> str:
        key = (kind, old)
        if key not in self.values:
            n = self.counts[kind + pattern] = self.counts.get(kind + pattern, 0) + 1
            if kind in ("virtual_router_id", "id"):
                n += 50   # VRIDs and sync ids 51, 52, ... (as the lab's own pair)
            self.values[key] = pattern.format(n)
        return self.values[key]

    def interface(self, word: str) -> str:
        """An interface name, or a ``NAME:label`` (the label part renumbered)."""
        name, colon, label = word.partition(":")
        if name in self.ifnames:
            return self.ifnames[name] + (colon + self.value("label", label, "{}")
                                         if colon else "")
        return word

    def names_in(self, text: str) -> str:
        """``text`` with every interface and keepalived name replaced, in one pass."""
        table = {k: v for (kind, k), v in self.values.items() if kind == "name"}
        table |= self.ifnames
        table |= {k.replace(".", "/"): v for k, v in self.ifnames.items() if "." in k}
        if not table:
            return text
        pat = re.compile(r"(?<![\w-])(" + "|".join(
            re.escape(k) for k in sorted(table, key=len, reverse=True)) + r")(?![\w-])")
        return pat.sub(lambda m: table[m.group(1)], text)


def scrub_keepalived(text: str, director: str, hostnames: dict[str, str],
                     renames: Renames | None = None) -> str:
    """A keepalived.conf without what names its cluster: comments dropped, router_id
    set to the director's lab name, collected host names replaced, e-mail addresses
    made generic, an SMTP server name loopback, MACs zeroed, and with ``renames``: the
    interfaces, instance/group/script names, ``auth_pass``, check URLs, virtual hosts,
    digests and VRIDs mapped consistently (addresses are :class:`AddressMap`'s job)."""
    r = renames or Renames({})
    lines = []
    for raw in text.splitlines():
        line = re.sub(r"(^|\s)[#!].*$", "", raw).rstrip()
        if raw.strip() and not line:
            continue
        line = re.sub(r"^(\s*router_id\s+)\S+", rf"\g<1>{director}", line)
        line = re.sub(r"[\w.+-]+@[\w-]+(?:\.[\w-]+)+", "root@example.org", line)
        line = _MAC.sub("02:00:00:00:00:00", line)
        m = re.match(r"^(\s*smtp_server\s+)(\S+)(.*)$", line)
        if m and not literals(m.group(2)):  # a name keepalived -t resolves: an address
            line = f"{m.group(1)}127.0.0.1{m.group(3)}"
        lines.append(_scrub_words(line, r))
    out = "\n".join(lines) + ("\n" if text.endswith("\n") else "")
    return r.names_in(rename_hosts(out, hostnames))


def _scrub_words(line: str, r: Renames) -> str:
    """One line with the words after :data:`_NAMED`, :data:`_VALUES` and interface
    keywords replaced (its spacing inside the line made single)."""
    words = _TOKEN.findall(line)
    if not words:
        return line
    out = []
    prev = ""
    for n, w in enumerate(words):
        bare = w.strip('"')
        if w in "{}":
            pass
        elif prev in _NAMED:
            w = r.value("name", bare, _NAMED[prev] + "{}")
        elif prev == "group" and n >= 2 and words[n - 2] == "virtual_server":
            w = r.value("name", bare, "VSG_{}")
        elif prev in _VALUES:
            w = r.value(prev, bare, _VALUES[prev])
        elif prev in _IFACE_AFTER or w.partition(":")[0] in r.ifnames:
            w = r.interface(bare)
        out.append(w)
        prev = bare
    return line[:len(line) - len(line.lstrip())] + " ".join(out)


def rename_hosts(text: str, hostnames: dict[str, str]) -> str:
    """``text`` with each collected host name (and its first DNS label, when it has
    three characters or more) replaced by its new name."""
    out = text
    variants: dict[str, str] = {}
    for old, new in hostnames.items():
        variants[old] = new
        first = old.split(".")[0]
        if len(first) >= 3:
            variants.setdefault(first, new)
    for old in sorted(variants, key=len, reverse=True):
        out = re.sub(rf"(?<![\w.-]){re.escape(old)}(?![\w-])", variants[old], out,
                     flags=re.IGNORECASE)
    return out


def interface_names(names: list[str], dummies: set[str] | None = None) -> dict[str, str]:
    """New names for collected interface names, in order: ``eth0, eth1 ...`` (and
    ``dummy0 ...`` for those in ``dummies``); ``lo`` stays."""
    out: dict[str, str] = {}
    for name in names:
        if name != "lo" and name not in out:
            prefix = "dummy" if name in (dummies or set()) else "eth"
            out[name] = f"{prefix}{sum(v.startswith(prefix) for v in out.values())}"
    return out


def kernel_version(release: str) -> str:
    """The version of a kernel release (``6.1.0-57-amd64`` -> ``6.1.0``): its series
    survives ``--anonymize``, its build string (which names its maker) does not."""
    m = re.search(r"\d+\.\d+(?:\.\d+)?", release)
    return m.group(0) if m else ""


def anonymize_topology(data: dict[str, Any], hostnames: dict[str, str],
                       notes: list[str] | tuple[str, ...] = (),
                       ifnames: dict[str, str] | None = None
                       ) -> tuple[dict[str, Any], list[str]]:
    """``data`` (TOML-shaped) with every address mapped into the documentation ranges,
    interfaces renamed by ``ifnames`` (collected name -> new, every host's) and the
    keepalived.conf texts scrubbed; ``hostnames`` maps each collected host name to its
    new one (host names and labels in ``data`` are the caller's job). Returns the new
    data and ``notes`` rewritten the same way, followed by its own."""
    ren = Renames(ifnames or {})
    texts = {k: scrub_keepalived(v, k, hostnames, ren)
             for k, v in data.get("keepalived", {}).items()}
    texts = {k: ren.names_in(v) for k, v in texts.items()}  # names defined in the other file
    renamed = [ren.names_in(_MAC.sub("02:00:00:00:00:00", rename_hosts(n, hostnames)))
               for n in notes]
    m = AddressMap()
    hosts: dict[str, Any] = data["hosts"]

    def cidr(a: Any) -> str:
        return a if isinstance(a, str) else a["cidr"]

    for h in hosts.values():
        for i in h.get("interfaces", []):
            for a in i["addresses"]:
                m.add_interface(cidr(a))
    for h in hosts.values():
        for a in h.get("lo", []):
            m.add(ipaddress.ip_interface(cidr(a)).ip)
        for r in h.get("routes", []):
            if r["dst"] != "default":
                m.add_route(r["dst"])
            if "via" in r:
                m.add(ipaddress.ip_address(r["via"]))
    for s in data.get("services", []):
        m.add(ipaddress.ip_address(s["vip"]))
    for t in [*texts.values(), *renamed]:
        m.add_text(t)
    m.build()

    def addr(a: Any) -> Any:
        return m.cidr(a) if isinstance(a, str) else dict(a, cidr=m.cidr(a["cidr"]))

    def sysctl(key: str) -> str:
        parts = key.split(".")
        if len(parts) > 4 and parts[2] == "conf":
            parts[3] = ren.ifnames.get(parts[3].replace("/", "."), parts[3])
        return ".".join(parts)

    new_hosts = {}
    for name, h in hosts.items():
        h = dict(h)
        own = h.get("role") != "client"   # the lab's client has the lab's names
        if "interfaces" in h:
            h["interfaces"] = [dict(i, addresses=[addr(a) for a in i["addresses"]],
                                    name=ren.ifnames.get(i["name"], i["name"]) if own
                                    else i["name"]) for i in h["interfaces"]]
        if "sysctls" in h and own:
            h["sysctls"] = {sysctl(k): v for k, v in h["sysctls"].items()}
        if "kernel" in h:
            h["kernel"] = kernel_version(h["kernel"])
            if not h["kernel"]:
                del h["kernel"]
        if "lo" in h:
            h["lo"] = [addr(a) for a in h["lo"]]
        if "routes" in h:
            h["routes"] = [{k: (m.network(v) if k == "dst" else
                                str(m.ip(ipaddress.ip_address(v))) if k == "via" else
                                ren.ifnames.get(v, v) if k == "dev" and own else v)
                            for k, v in route.items()} for route in h["routes"]]
        new_hosts[name] = h
    out = dict(data, hosts=new_hosts)
    if "services" in data:
        out["services"] = [dict(s, vip=str(m.ip(ipaddress.ip_address(s["vip"]))))
                           for s in data["services"]]
    if texts:
        out["keepalived"] = {k: m.text(t) for k, t in texts.items()}
    out_notes = [m.text(n) for n in renamed] + [
        *m.notes, f"--anonymize: {len(m.map)} addresses mapped into the documentation "
             "ranges (subnets kept apart, host numbers kept where they fit); hosts named by "
             "role, interfaces by order" + (
                 "; keepalived.conf comments, e-mail addresses, secrets and check URLs "
                 "replaced, its instances and groups renamed" if texts else "")]
    return out, out_notes
