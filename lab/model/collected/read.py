"""Reading collected hosts' directories: each file through :mod:`lab.model.files` (no
link followed, regular files only, of a bounded size), parsed by
:mod:`lab.model.collected.parse` into a :class:`CollectedHost`."""

from __future__ import annotations

import os
import re
from pathlib import Path

from lab.errors import TopologyError
from lab.model import files
from lab.model.collected import parse
from lab.model.collected.parse import HOSTNAME, JsonObject, bad, clip
from lab.model.collected.records import CollectedHost
from lab.model.files import shown
from lab.model.keepalived import parse as parse_keepalived

#: The files a host directory may hold (one of them marks a directory as a host's).
HOST_FILES = ("ip-addr.json", "ip-link.json", "ip-route.json", "ip6-route.json", "sysctl.txt",
              "ipvsadm-save.txt", "listen.txt", "keepalived.conf", "uname.txt", "collect.txt",
              "skipped.txt")


class _HostDir:
    """A collected host's directory, open (no link followed): its files are read
    relative to it, as regular files only (see :mod:`lab.model.files`)."""

    def __init__(self, path: Path, dir_fd: int | None = None):
        self.path = path
        self.fd = files.open_dir(path, dir_fd=dir_fd)

    def __enter__(self) -> _HostDir:
        return self

    def __exit__(self, *_: object) -> None:
        os.close(self.fd)

    def has(self, name: str) -> bool:
        return files.exists(name, self.fd)

    def read(self, name: str) -> str:
        return files.read_text(self.path / name, dir_fd=self.fd)

    def where(self, name: str) -> str:
        return str(self.path / name)

    def json(self, name: str) -> list[JsonObject]:
        return parse.parse_json(self.read(name), self.where(name))


def read_host(hdir: Path, dir_fd: int | None = None) -> CollectedHost:
    """One host's directory, parsed (errors name the file and line). ``dir_fd``: the
    directory ``hdir`` is in, open."""
    with _HostDir(hdir, dir_fd) as d:
        return _read_host(d)


def _read_host(d: _HostDir) -> CollectedHost:
    missing = []
    if not d.has("ip-addr.json"):
        raise bad(d.where("ip-addr.json"), "missing (every collected host has one: "
                                            "ip -j addr show)")
    kinds = None
    if d.has("ip-link.json"):
        kinds = d.json("ip-link.json")
    else:
        missing.append("ip-link.json")
    links = parse.parse_links(d.json("ip-addr.json"), kinds, d.where("ip-addr.json"),
                        d.where("ip-link.json"))
    meta = parse.parse_keyvalues(d.read("collect.txt")) if d.has("collect.txt") else {}
    name = meta.get("hostname") or d.path.name
    if not HOSTNAME.fullmatch(name):
        raise bad(d.where("collect.txt") if meta.get("hostname") else str(d.path),
                   f"host name {clip(name)}: not a host name (ASCII letters, digits, "
                   "'.', '_', '-')")
    h = CollectedHost(d.path, name, links, missing=missing)
    for fname in ("ip-route.json", "ip6-route.json"):
        if d.has(fname):
            h.routes += [(d.where(fname), r)
                         for r in parse.parse_routes(d.json(fname), d.where(fname))]
        elif fname == "ip-route.json":
            h.missing.append(fname)
    if d.has("sysctl.txt"):
        h.sysctls = parse.parse_sysctls(d.read("sysctl.txt"), d.where("sysctl.txt"))
    else:
        h.missing.append("sysctl.txt")
    if d.has("ipvsadm-save.txt"):
        h.ipvs = parse.parse_ipvsadm(d.read("ipvsadm-save.txt"), d.where("ipvsadm-save.txt"))
    if d.has("keepalived.conf"):
        h.keepalived = parse_keepalived(d.read("keepalived.conf"),
                                        shown(d.where("keepalived.conf")))
    if d.has("listen.txt"):
        h.listen, unread = parse.parse_listen(d.read("listen.txt"))
        if unread:
            h.skipped.append(f"{unread} line(s) of listen.txt not understood")
    else:
        h.missing.append("listen.txt")
    if d.has("uname.txt"):
        h.kernel = _clip_text(d.read("uname.txt").strip().split("\n", 1)[0])
    if d.has("skipped.txt"):
        h.skipped += [_clip_text(s.strip()) for s in d.read("skipped.txt").splitlines()
                      if s.strip()]
    return h


def _clip_text(s: str, n: int = 300) -> str:
    return s if len(s) <= n else s[:n - 3] + "..."


def read_hosts(dirs: list[str | Path]) -> list[CollectedHost]:
    """The collected hosts in ``dirs``: each DIR is one host's or holds hosts'
    directories. No link is followed, DIR's own name included."""
    out: list[CollectedHost] = []
    if not dirs:
        raise TopologyError("no directory given: import DIR... (from scripts/collect)")
    for d in map(Path, dirs):
        with _HostDir(d) as top:
            if top.has("ip-addr.json"):
                out.append(_read_host(top))
                continue
            subs = []
            try:
                with os.scandir(top.fd) as it:
                    for entry in it:
                        if entry.is_dir(follow_symlinks=False):
                            subs.append(entry.name)
                        elif entry.is_symlink() and entry.is_dir():  # (stat follows)
                            raise bad(str(d / entry.name), "a symbolic link to a directory: "
                                       "refused (collected directories are read without "
                                       "following links)")
            except OSError as e:
                raise bad(str(d), f"cannot list: {e.strerror or e}") from None
            found = 0
            for name in sorted(subs, key=natural):
                with _HostDir(d / name, top.fd) as sub:
                    if sub.has("ip-addr.json"):
                        out.append(_read_host(sub))
                        found += 1
                    elif any(sub.has(f) for f in HOST_FILES):
                        raise bad(sub.where("ip-addr.json"), "missing (every collected "
                                   "host has one: ip -j addr show)")
            if not found:
                if any(top.has(f) for f in HOST_FILES):
                    raise bad(top.where("ip-addr.json"), "missing (every collected host "
                                                          "has one: ip -j addr show)")
                raise bad(str(d), "no collected hosts here (no ip-addr.json in it or in "
                                   "its subdirectories)")
    return out


def find_hosts(dirs: list[str | Path]) -> list[Path]:
    """Host directories: each DIR is one host's or holds hosts' directories (see
    :func:`read_hosts`, which reads them)."""
    return [c.path for c in read_hosts(dirs)]


def natural(name: str) -> tuple[str | int, ...]:
    """Sort key: web2 before web10."""
    return tuple(int(x) if n % 2 else x for n, x in enumerate(re.split(r"([0-9]+)", name)))
