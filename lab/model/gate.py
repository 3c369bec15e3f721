"""What ``drlab gate`` is handed: the files an operator deploys, and where.

A change is a list of ``HOST=FILE`` pairs (``--apply``) or a manifest
(``drlab-gate.toml``) mapping globs of hosts to files. ``HOST`` is a role (``rs``,
``director`` ...), a host's name (lab or collected) or a glob over the names. A file
is recognised by its content (:func:`recognise`):

* a sysctl.d file, read the way ``sysctl --system`` reads it (:func:`parse_sysctl_d`);
* a keepalived.conf (for a director): its scripts are removed unless allowed;
* ``ipvsadm-save -n`` rules (for a director without keepalived).

Everything here is pure: reading goes through :mod:`lab.model.files` (regular files,
never through a link), every refusal is one :class:`UsageError` or
:class:`TopologyError` line (exit 2).
"""

from __future__ import annotations

import copy
import fnmatch
import os
import re
import tomllib
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path

from lab.errors import LabError, TopologyError, UsageError
from lab.model.collected import parse_ipvsadm
from lab.model.collected.parse import key_value_lines
from lab.model.files import open_dir, read_text, shown
from lab.model.keepalived import parse as parse_keepalived
from lab.model.keepalived import strip_scripts
from lab.model.topology import RealServer, Topology, VirtualService, check_sysctl

#: Role names a ``HOST`` may be (as ``drlab validate --host``).
ROLES = {"rs": "realserver", "realserver": "realserver", "director": "director",
         "client": "client", "router": "router", "all": "all"}


class FileKind(Enum):
    SYSCTL = "sysctl.d"
    KEEPALIVED = "keepalived.conf"
    IPVSADM = "ipvsadm-save"


_KEY = re.compile(r"[A-Za-z0-9_.*/:-]+")
_KA_WORDS = re.compile(r"^\s*(global_defs|vrrp_instance|virtual_server|vrrp_sync_group|"
                       r"vrrp_script|virtual_server_group|static_ipaddress|include)\b", re.M)
_IPVSADM = re.compile(r"-A|-a|--add-service|--add-server")


def _lines(text: str) -> list[str]:
    return [s for raw in text.splitlines() if (s := raw.strip()) and s[0] not in "#;"]


def recognise(text: str, source: str) -> FileKind:
    """Which kind of file ``text`` is, by its content; a :class:`UsageError` naming
    ``source`` when it is none of them."""
    lines = _lines(text)
    if lines and all(_IPVSADM.fullmatch(ln.split()[0]) for ln in lines):
        return FileKind.IPVSADM
    if _KA_WORDS.search(text) and "{" in text:
        return FileKind.KEEPALIVED
    if all("=" in ln and _KEY.fullmatch(ln.partition("=")[0].strip().lstrip("-")) for ln in lines):
        return FileKind.SYSCTL
    raise UsageError(shown(f"{source}: neither a sysctl.d file (key = value), a "
                           "keepalived.conf nor ipvsadm-save rules"))


@dataclass(frozen=True)
class SysctlLine:
    key: str
    value: str
    #: ``-key = value``: a failure to set it is ignored (sysctl.d(5)).
    optional: bool
    line: int


def parse_sysctl_d(text: str, source: str) -> list[SysctlLine]:
    """``key = value`` lines as ``sysctl --system`` reads them: blank lines and lines
    starting with ``#`` or ``;`` are skipped, a leading ``-`` marks a key whose failure
    is ignored, a key whose first separator is ``/`` has ``/`` and ``.`` swapped, the
    value is trimmed and its inner whitespace kept as single spaces. Later lines win
    when applied."""
    out = []
    for n, line, key, value, eq in key_value_lines(text):
        optional = key.startswith("-")
        key = key[1:].strip() if optional else key
        if not eq or not key or not _KEY.fullmatch(key):
            raise UsageError(shown(f"{source}:{n}: expected `key = value`, got "
                                   f"{line[:60]!r}"))
        if "/" in key and ("." not in key or key.index("/") < key.index(".")):
            key = key.translate(str.maketrans("/.", "./"))
        out.append(SysctlLine(key, value, optional, n))
    return out


@dataclass(frozen=True)
class GateFile:
    """A file handed to the gate, read and recognised."""

    path: str
    kind: FileKind
    text: str
    sysctls: tuple[SysctlLine, ...] = ()


def read_gate_file(path: Path, *, dir_fd: int | None = None, follow: bool = True,
                   shown_as: str | None = None) -> GateFile:
    """Read and recognise one file (its syntax checked: bad input is one line)."""
    name = shown_as or str(path)
    text = read_text(path, dir_fd=dir_fd, follow=follow)
    kind = recognise(text, name)
    if kind is FileKind.SYSCTL:
        return GateFile(name, kind, text, tuple(parse_sysctl_d(text, name)))
    try:
        if kind is FileKind.KEEPALIVED:
            parse_keepalived(text, name)
        else:
            parse_ipvsadm(text, name)
    except LabError as e:
        raise UsageError(str(e)) from None
    return GateFile(name, kind, text)


def parse_apply(item: str) -> tuple[str, Path]:
    """``HOST=FILE`` (``--apply``)."""
    host, sep, path = item.partition("=")
    if not sep or not host.strip() or not path:
        raise UsageError(shown(f"--apply {item!r}: expected HOST=FILE"))
    return host.strip(), Path(path)


@dataclass
class Manifest:
    """``drlab-gate.toml``: the cluster, and globs of hosts -> files."""

    path: str
    topology: str | None
    applies: list[tuple[str, GateFile]] = field(default_factory=list)


def _read_under(base: Path, rel: str, where: str) -> GateFile:
    """``rel`` under the manifest's directory ``base``, walked one component at a time
    without following a link (O_NOFOLLOW on each)."""
    parts = Path(rel).parts
    if not rel or Path(rel).is_absolute() or ".." in parts:
        raise UsageError(shown(f"{where}: {rel!r}: a path inside the manifest's directory "
                               "(relative, without ..)"))
    fd = open_dir(base, follow=True)
    try:
        for p in parts[:-1]:
            nxt = open_dir(Path(p), dir_fd=fd)
            os.close(fd)
            fd = nxt
        return read_gate_file(Path(parts[-1]), dir_fd=fd, follow=False,
                              shown_as=str(base / rel))
    except TopologyError as e:
        raise UsageError(f"{where}: {e}") from None
    finally:
        os.close(fd)


def parse_manifest(text: str, path: Path) -> Manifest:
    """A manifest's TOML::

        topology = "cluster.toml"         # optional: or --topology
        [apply]
        "rs" = "sysctl.d/90-dr.conf"
        "lvs*" = ["keepalived/keepalived.conf"]
    """
    where = shown(str(path))
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise UsageError(f"{where}: {e}") from None
    unknown = set(data) - {"topology", "apply"}
    if unknown:
        raise UsageError(shown(f"{where}: unknown key(s) {', '.join(sorted(unknown))} "
                               "(topology, [apply])"))
    topo = data.get("topology")
    if topo is not None and not isinstance(topo, str):
        raise UsageError(f"{where}: topology must be a path (a string)")
    apply = data.get("apply", {})
    if not isinstance(apply, dict) or not apply:
        raise UsageError(f"{where}: an [apply] table of host globs -> files is needed")
    base = path.parent
    m = Manifest(where, str(base / topo) if topo and not Path(topo).is_absolute() else topo)
    for host, files in apply.items():
        names = [files] if isinstance(files, str) else files
        if not isinstance(names, list) or not names or not all(isinstance(f, str)
                                                               for f in names):
            raise UsageError(shown(f"{where}: apply.{host}: a file or a list of files"))
        for f in names:
            m.applies.append((host, _read_under(base, f, f"{where}: apply.{host}")))
    return m


def read_manifest(path: Path) -> Manifest:
    try:
        text = read_text(path, follow=True)
    except TopologyError as e:
        raise UsageError(str(e)) from None
    return parse_manifest(text, path)


# -- where the files go, and the twin after the change --------------------------------


def match_hosts(t: Topology, pattern: str) -> list[str]:
    """The hosts (lab names) ``pattern`` names: a role, a name or label, or a glob."""
    role = ROLES.get(pattern)
    if role is not None:
        return [h.name for h in t.hosts if role == "all" or h.role == role]
    hit = [h.name for h in t.hosts
           if pattern in (h.name, h.label) or fnmatch.fnmatchcase(h.name, pattern)
           or (h.label and fnmatch.fnmatchcase(h.label, pattern))]
    if not hit:
        raise UsageError(shown(f"{pattern!r}: no role ({', '.join(ROLES)}), host or glob of "
                               f"{t.name} ({', '.join(h.shown for h in t.hosts)})"))
    return hit


@dataclass
class Applied:
    """The twin after the change, and what could not be reproduced in it."""

    topology: Topology
    #: host (shown) -> the sysctls the change sets there to a new value
    sysctls: dict[str, dict[str, str]] = field(default_factory=dict)
    #: directors whose keepalived.conf changed (the text differs)
    keepalived: list[str] = field(default_factory=list)
    #: directors whose IPVS rules changed
    ipvsadm: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def hosts(self) -> list[str]:
        return sorted({*self.sysctls, *self.keepalived, *self.ipvsadm})


def _sysctl_keys(key: str, ifnames: list[str]) -> list[str]:
    if "*" not in key:
        return [key]
    names = [f"net.ipv{v}.conf.{d}.{k}" for v in (4, 6) for d in ("all", "default", "lo",
                                                                   *ifnames)
             for k in (key.rsplit(".", 1)[-1],)]
    return [n for n in names if fnmatch.fnmatchcase(n, key)]


def _services_from_rules(t: Topology, director: str, gf: GateFile) -> list[VirtualService]:
    by_ip = {a.ip: h.name for h in t.hosts for i in h.interfaces for a in i.addresses}
    old = {(s.vip, s.port, s.protocol): s for s in t.services if s.director == director}
    out = []
    for cs in parse_ipvsadm(gf.text, gf.path):
        if cs.fwmark is not None or cs.vip is None or cs.protocol not in ("tcp", "udp"):
            raise UsageError(shown(f"{cs.where}: {cs.shown}: only TCP and UDP services by "
                                   "VIP:PORT can be gated"))
        reals = []
        for r in cs.reals:
            host = by_ip.get(str(r.ip))
            if host is None:
                raise UsageError(shown(f"{cs.where}: real server {r.ip} is no address of a "
                                       f"host of {t.name}"))
            prev = next((x for s in old.values() for x in s.real_servers if x.host == host),
                        None)
            reals.append(RealServer(host, r.weight, prev.listen if prev else "any"))
        out.append(VirtualService(str(cs.vip), cs.port, director, reals,
                                  cs.protocol,  # type: ignore[arg-type]  # tcp/udp: checked above
                                  cs.scheduler, cs.persistence, cs.netmask))
    return out


def apply_changes(t: Topology, applies: list[tuple[str, GateFile]], *,
                  allow_scripts: bool = False) -> Applied:
    """``t`` with every file applied to the hosts its pattern names (a copy)."""
    changed = copy.deepcopy(t)
    out = Applied(changed)
    for pattern, gf in applies:
        names = match_hosts(changed, pattern)
        if gf.kind is not FileKind.SYSCTL:
            wrong = [changed.host(n).shown for n in names if changed.host(n).role != "director"]
            if wrong:
                raise UsageError(shown(f"{gf.path} is a {gf.kind.value} file: for directors, "
                                       f"not {', '.join(wrong)} ({pattern})"))
        for name in names:
            h = changed.host(name)
            if gf.kind is FileKind.SYSCTL:
                ifnames = [i.name for i in h.interfaces] + [i.name for i in h.dummies]
                for s in gf.sysctls:
                    for key in _sysctl_keys(s.key, ifnames):
                        err = check_sysctl(key, s.value, ifnames)
                        if err:
                            if not s.optional:
                                out.notes.append(f"{gf.path}:{s.line} on {h.shown}: not "
                                                 f"reproduced in the twin: {err}")
                            continue
                        if h.sysctls.get(key) != s.value:
                            out.sysctls.setdefault(h.shown, {})[key] = s.value
                        h.sysctls[key] = s.value
            elif gf.kind is FileKind.KEEPALIVED:
                text = gf.text
                if not allow_scripts:
                    text, found = strip_scripts(text, gf.path)
                    out.notes += [x.note() for x in found]
                if changed.keepalived.get(name) != text:
                    out.keepalived.append(h.shown)
                changed.keepalived[name] = text
            else:
                if name in changed.keepalived:
                    raise UsageError(shown(f"{gf.path}: {h.shown} runs keepalived, which "
                                           "owns its IPVS table: hand in its keepalived.conf"))
                new = _services_from_rules(changed, name, gf)
                changed.services = [s for s in changed.services if s.director != name] + new
                out.ipvsadm.append(h.shown)
    try:
        changed.validate()
    except LabError as e:
        raise UsageError(shown(f"the change does not fit {t.name}: {e}")) from None
    return out
