"""Kernels to run the lab on: the host's, Debian's (fetched and unpacked), a user's.

A kernel is named on the command line as

* ``host``: the running kernel, no VM (the ARP-only parts where it lacks IPVS);
* a Debian suite (``bookworm``, ``trixie``, ``sid``, ``bookworm-backports``...):
  the suite's ``linux-image-amd64`` is resolved with a private apt state (signed
  by ``/usr/share/keyrings/debian-archive-keyring.gpg``, nothing of the host's
  apt touched), its package downloaded and unpacked with ``dpkg-deb -x`` into the
  cache; no userland of that suite is installed;
* a build by its ``uname -r`` (``6.12.96+deb13-amd64``; ``6.12.96+deb13`` is
  the amd64 flavour's), found in whichever of :data:`SUITES` lists it, or
  ``newest`` / ``newest-7`` (the newest fetchable amd64 build, of a series);
  both package layouts are handled (the old ``linux-image-X`` with the image and
  modules; the new meta ``linux-image-X`` with ``linux-binary-X`` and
  ``linux-modules-X``);
* a path (or ``LABEL=PATH``, LABEL naming its column): a
  ``<root>/boot/vmlinuz-<version>`` whose modules live in
  ``<root>/lib/modules/<version>`` (as an unpacked package or ``make
  INSTALL_PATH=<root>/boot INSTALL_MOD_PATH=<root> install modules_install``
  leaves them), or a kernel build tree (virtme-ng finds its modules).

The cache is, as root, ``/var/cache/drlab/kernels`` (or ``$DRLAB_KERNEL_CACHE``):
made 0700 and checked by lstat, as is its parent (root's own, not a link, nobody
else may write into them; :func:`lab.util.private_dir`), so that no other user can
put a kernel or a link in it. For another user it is ``$DRLAB_KERNEL_CACHE`` or
``~/.cache/drlab/kernels``. One directory per suite and package version; a fetch
that finds the candidate version unpacked already downloads only the package
index, and with no network the newest unpacked version is used.
"""

from __future__ import annotations

import io
import lzma
import os
import platform
import re
import shutil
import subprocess
import sys
import zlib
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from enum import Enum
from functools import cmp_to_key
from pathlib import Path

from lab.errors import LabError, UsageError
from lab.util import private_dir

KEYRING = "/usr/share/keyrings/debian-archive-keyring.gpg"
MIRROR = os.environ.get("DRLAB_DEBIAN_MIRROR", "http://deb.debian.org/debian")
#: root's cache of unpacked kernels
SECURITY_MIRROR = os.environ.get("DRLAB_DEBIAN_SECURITY_MIRROR",
                                 "http://security.debian.org/debian-security")
ROOT_CACHE = Path("/var/cache/drlab/kernels")
_SUITE = re.compile(r"[a-z]+(-[a-z]+)?")


@dataclass(frozen=True)
class Kernel:
    #: The name it was asked for by (``host``, ``trixie``, a path).
    name: str
    #: The image to boot; None for the host kernel.
    image: Path | None
    #: ``uname -r`` of that kernel, when known before booting it.
    release: str | None
    #: The Debian suite that served it (``trixie-backports``); None for the host,
    #: a path or a build tree.
    suite: str | None = None

    @property
    def is_host(self) -> bool:
        return self.image is None


def mirror(suite: str) -> str:
    """The archive serving ``suite`` (the security suites have their own)."""
    return SECURITY_MIRROR if suite.endswith("-security") else MIRROR


def cache_dir() -> Path:
    """Where unpacked kernels are kept: as root a directory of root's own, checked
    (:class:`lab.errors.UnsafePathError` if it is not), else the user's cache."""
    env = os.environ.get("DRLAB_KERNEL_CACHE")
    if os.geteuid() == 0:
        return private_dir(Path(env) if env else ROOT_CACHE)
    if env:
        return Path(env)
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "drlab" / "kernels"


def _rmtree(path: Path) -> None:
    """Remove ``path`` (in the cache) if it is there; a removal that fails says so."""
    try:
        shutil.rmtree(path)
    except FileNotFoundError:
        pass
    except OSError as e:
        raise LabError(f"cannot remove {path}: {e.strerror or e}") from None


def _say(msg: str) -> None:
    print(f"drlab: {msg}", file=sys.stderr, flush=True)


def _apt_opts(state: Path) -> list[str]:
    return ["-o", f"Dir::Etc::SourceList={state}/sources.list",
            "-o", "Dir::Etc::SourceParts=/dev/null",
            "-o", "Dir::Etc::PreferencesParts=/dev/null",
            "-o", f"Dir::State::Lists={state}/lists",
            "-o", f"Dir::Cache={state}/cache",
            "-o", "Dir::State::status=/dev/null",
            "-o", "APT::Architecture=amd64", "-o", "APT::Architectures=amd64",
            "-o", "Acquire::Languages=none", "-o", "Debug::NoLocking=1",
            "-o", "APT::Sandbox::User=root", "-q"]


def _run(cmd: list[str], what: str, cwd: Path | None = None) -> str:
    try:
        p = subprocess.run(cmd, capture_output=True, text=True, cwd=cwd, timeout=900)
    except FileNotFoundError:
        raise LabError(f"{what}: {cmd[0]} not found (Debian's apt and dpkg are needed)") from None
    if p.returncode != 0:
        last = (p.stderr.strip().splitlines() or ["no output"])[-1]
        raise LabError(f"{what} failed: {last}")
    return p.stdout


def unpacked_name(pkg: str, version: str) -> str:
    """The cache directory of a package version: ``~`` (backports' and security
    updates' versions) becomes ``_``, since virtme-ng refuses it in a path it
    shares with the guest."""
    return f"{pkg}_{version}".replace("~", "_")


def _unpacked(suite_dir: Path) -> list[Path]:
    """Complete unpacked kernels of a suite, newest first (by package version dir)."""
    if not suite_dir.is_dir():
        return []
    done = [d for d in suite_dir.iterdir() if (d / ".complete").exists()]
    return sorted(done, key=lambda d: d.stat().st_mtime, reverse=True)


def _kernel(name: str, root: Path, suite: str | None = None) -> Kernel:
    """The kernel unpacked under ``root`` (``root/boot/vmlinuz-<release>``), from
    ``suite``."""
    images = sorted((root / "boot").glob("vmlinuz-*"))
    if not images:
        raise LabError(f"{root}: no boot/vmlinuz-* in the unpacked package")
    return Kernel(name, images[-1], images[-1].name.removeprefix("vmlinuz-"), suite)


def fetch_debian(suite: str, refresh: bool = True) -> Kernel:
    """Resolve, download and unpack ``suite``'s linux-image-amd64 (cached)."""
    if not _SUITE.fullmatch(suite):
        raise UsageError(f"kernel {suite!r}: not a Debian suite name, 'host' or a path")
    if not Path(KEYRING).exists():
        raise LabError(f"{KEYRING} missing: install Debian's debian-archive-keyring")
    base = cache_dir() / suite
    state = base / "apt"
    (state / "lists" / "partial").mkdir(parents=True, exist_ok=True)
    (state / "cache" / "archives" / "partial").mkdir(parents=True, exist_ok=True)
    (state / "sources.list").write_text(f"deb [signed-by={KEYRING}] {mirror(suite)} {suite} main\n")
    opts = _apt_opts(state)
    try:
        if refresh:
            _run(["apt-get", *opts, "update"], f"apt-get update for {suite}")
        pkg = _meta_target(opts, suite)
        version = _run(["apt-cache", *opts, "show", "--no-all-versions", pkg],
                       f"apt-cache show {pkg}")
        ver = re.search(r"^Version: (\S+)", version, re.M)
        if not ver:
            raise LabError(f"{suite}: no version for {pkg}")
    except LabError as e:
        cached = _unpacked(base)
        if not cached:
            _rmtree(base)  # a bad suite name leaves nothing
            raise LabError(f"kernel {suite}: {e}; and nothing cached in {base}") from None
        _say(f"kernel {suite}: {e}; using the cached {cached[0].name}")
        return _kernel(suite, cached[0] / "root", suite)
    target = base / unpacked_name(pkg, ver.group(1))
    if not (target / ".complete").exists():
        _say(f"kernel {suite}: fetching {pkg} {ver.group(1)} into {target}")
        _rmtree(target)
        target.mkdir(parents=True)
        try:
            _unpack(opts, pkg, target, ver.group(1))
        except BaseException:
            _rmtree(target)
            raise
        (target / ".complete").write_text(f"{pkg} {ver.group(1)}\n")
    return _kernel(suite, target / "root", suite)


def _unpack(opts: list[str], pkg: str, target: Path, version: str | None = None) -> None:
    """Download ``pkg`` (``=version`` if given) and unpack it into ``target/root``.

    Both of Debian's layouts: the old ``linux-image-X`` holds ``boot/vmlinuz-X`` and
    the modules; the new one is a meta package depending on ``linux-binary-X`` (the
    image) and ``linux-modules-X``, which are fetched and unpacked with it."""
    root = target / "root"
    spec = f"{pkg}={version}" if version else pkg
    _run(["apt-get", *opts, "download", spec], f"apt-get download {spec}", cwd=target)
    debs = list(target.glob("*.deb"))
    if len(debs) != 1:
        raise LabError(f"apt-get download {pkg}: expected one .deb in {target}")
    fields = _run(["dpkg-deb", "-f", str(debs[0]), "Version", "Depends"],
                  f"dpkg-deb -f {debs[0].name}")
    parts = split_layout(pkg, _field(fields, "Depends"))
    if parts:
        ver = _field(fields, "Version")
        for dep in parts:
            _run(["apt-get", *opts, "download", f"{dep}={ver}"],
                 f"apt-get download {dep}={ver}", cwd=target)
    for deb in sorted(target.glob("*.deb")):
        _run(["dpkg-deb", "-x", str(deb), str(root)], f"dpkg-deb -x {deb.name}")
        deb.unlink()
    # merged-/usr packages put modules in usr/lib/modules; virtme-ng looks in
    # <root>/lib/modules next to <root>/boot
    if not (root / "lib").exists() and (root / "usr" / "lib" / "modules").is_dir():
        (root / "lib").symlink_to("usr/lib")
    # the new layout's linux-binary-X has the image as usr/lib/modules/X/vmlinuz:
    # linked (a hard link, not a symlink) where the old layout has it
    for image in sorted((root / "usr" / "lib" / "modules").glob("*/vmlinuz")):
        (root / "boot").mkdir(exist_ok=True)
        dest = root / "boot" / f"vmlinuz-{image.parent.name}"
        if not dest.exists():
            os.link(image, dest)
    k = _kernel(pkg, root)
    if not list((root / "lib" / "modules" / str(k.release)).rglob("ip_vs.ko*")):
        raise LabError(f"{pkg}: no ip_vs module in the package")


def _field(control: str, name: str) -> str:
    m = re.search(rf"^{name}: (.*)$", control, re.M)
    return m.group(1).strip() if m else ""


def split_layout(pkg: str, depends: str) -> list[str]:
    """The packages the new layout splits image package ``pkg`` into (its
    ``linux-binary-X``, ``linux-modules-X`` and ``linux-base-X`` (System.map,
    config, modules.builtin, changelog.Debian) dependencies, from its Depends), or
    [] for the old layout, whose ``linux-image-X`` holds the kernel itself."""
    release = pkg.removeprefix("linux-image-")
    names = {re.split(r"[\s(]", d.strip(), maxsplit=1)[0]
             for alt in depends.split(",") for d in alt.split("|")}
    if f"linux-binary-{release}" not in names:
        # the image holds the kernel and its modules (6.18's also depends on a
        # linux-base-X, which the image does not need to boot)
        return []
    return [p for p in (f"linux-binary-{release}", f"linux-modules-{release}",
                         f"linux-base-{release}") if p in names]


def _meta_target(opts: list[str], suite: str) -> str:
    """The versioned image package linux-image-amd64 depends on in ``suite``."""
    out = _run(["apt-cache", *opts, "depends", "linux-image-amd64"],
               f"apt-cache depends linux-image-amd64 ({suite})")
    m = re.search(r"Depends: (linux-image-\S+)", out)
    if not m:
        raise LabError(f"{suite}: linux-image-amd64 depends on no linux-image-* package")
    return m.group(1)


def resolve(name: str, refresh: bool = True) -> Kernel:
    """``host``, a Debian suite, or a path to a kernel image or build tree;
    ``LABEL=PATH`` names a path's column in reports."""
    label, sep, target = name.partition("=")
    if sep and label and target:
        k = resolve(target, refresh)
        return Kernel(label, k.image, k.release, k.suite)
    if name == "host":
        return Kernel("host", None, platform.release())
    if "/" in name or name.startswith("."):
        p = Path(name)
        if not p.exists():
            raise UsageError(f"kernel {name}: no such file or directory")
        release = None
        if p.is_file() and p.name.startswith("vmlinuz-"):
            release = p.name.removeprefix("vmlinuz-")
            mods = p.parent.parent / "lib" / "modules" / release
            if not mods.is_dir():
                raise UsageError(f"kernel {name}: its modules are not in {mods} "
                                 "(install them there: make INSTALL_MOD_PATH=<root> "
                                 "modules_install)")
        return Kernel(name, p.resolve(), release)
    if RELEASE_NAME.match(name) or name.startswith("newest"):
        return fetch_build(by_name(name, available(refresh)), name)
    return fetch_debian(name, refresh)


def by_name(name: str, builds: list[Build], flavour: str = "amd64") -> Build:
    """A build by ``uname -r`` (flavour optional), or ``newest`` / ``newest-SERIES``
    (``newest-7``, ``newest-6.12``): the newest fetchable build of ``flavour``."""
    if name == "newest" or name.startswith("newest-"):
        series = name.removeprefix("newest").removeprefix("-")
        return newest(builds, flavour, f"{series}." if series else "")
    return find_build(name, builds, flavour)


def cached() -> list[tuple[str, Path]]:
    """(suite, unpacked dir) of every kernel in the cache."""
    base = cache_dir()
    if not base.is_dir():
        return []
    return [(s.name, d) for s in sorted(base.iterdir()) if s.is_dir() for d in _unpacked(s)]


# -- every build in the reachable suites -------------------------------------------

#: The suites whose builds ``kernels list --available`` and ``--kernel RELEASE`` see.
SUITES = ("bookworm", "bookworm-security", "trixie", "trixie-security",
          "trixie-backports", "sid")
FLAVOURS = ("amd64", "cloud-amd64", "rt-amd64")
_IMAGE = re.compile(r"^linux-image-(\d+\.\d+\.\d+\S*?-(cloud-amd64|rt-amd64|amd64))$")
#: A build named by its ``uname -r`` (``6.12.96+deb13-amd64``), flavour optional.
RELEASE_NAME = re.compile(r"^\d+\.\d+[0-9A-Za-z.+~-]*$")
ALL_AVAILABLE = "all-available"


class Layout(Enum):
    #: linux-image-X holds boot/vmlinuz-X and the modules
    IMAGE = "image"
    #: linux-image-X is a meta package: linux-binary-X (the image) + linux-modules-X
    SPLIT = "image+binary+modules"


@dataclass(frozen=True)
class Build:
    """One Debian kernel build as the archive lists it."""

    release: str  # uname -r
    flavour: str
    suite: str
    package: str  # linux-image-<release>
    version: str  # the package's version
    #: bytes to download (image, or image + binary + modules)
    size: int
    layout: Layout
    #: why it cannot be fetched; None: it can
    unavailable: str | None = None
    #: the pool path (``Filename``) of the package holding its modules: the image
    #: (old layout) or linux-modules-X; "" when not in the archive
    modules_file: str = ""

    @property
    def fetchable(self) -> bool:
        return self.unavailable is None

    @property
    def dir_name(self) -> str:
        return unpacked_name(self.package, self.version)


def parse_packages(text: str) -> dict[str, dict[str, str]]:
    """The kernel stanzas of a ``Packages`` index: ``{"name=version": fields}`` of
    every linux-image/binary/modules-<digit>... package (other stanzas skipped)."""
    out: dict[str, dict[str, str]] = {}
    for block in text.split("\n\n"):
        if not re.match(r"Package: linux-(image|binary|modules|base)-\d", block):
            continue
        fields: dict[str, str] = {}
        key = ""
        for line in block.splitlines():
            if line[:1] in (" ", "\t"):
                continue  # continuation lines (descriptions): not needed
            key, _, value = line.partition(":")
            fields[key] = value.strip()
        if "Version" in fields:
            out[f"{fields['Package']}={fields['Version']}"] = fields
    return out


def builds_in(suite: str, stanzas: dict[str, dict[str, str]],
              everywhere: dict[str, dict[str, str]] | None = None) -> list[Build]:
    """The builds ``suite``'s stanzas list; a split build whose binary or modules
    package is in no index (``everywhere``: all suites' stanzas) is unavailable."""
    everywhere = stanzas if everywhere is None else everywhere
    out = []
    for f in stanzas.values():
        m = _IMAGE.match(f["Package"])
        if not m:
            continue
        pkg, ver = f["Package"], f["Version"]
        size = int(f.get("Size") or 0)
        parts = split_layout(pkg, f.get("Depends", ""))
        missing = []
        modules_file = "" if parts else f.get("Filename", "")
        for part in parts:
            other = everywhere.get(f"{part}={ver}")
            if other is None:
                missing.append(part)
            else:
                size += int(other.get("Size") or 0)
                if part.startswith("linux-modules-"):
                    modules_file = other.get("Filename", "")
        why = (f"{' and '.join(missing)} {ver} not in the archive (only the meta package "
               "is listed)") if missing else None
        out.append(Build(m.group(1), m.group(2), suite, pkg, ver, size,
                         Layout.SPLIT if parts else Layout.IMAGE, why, modules_file))
    return out


def _order(c: str) -> int:
    if c == "~":
        return -1
    if c.isalpha():
        return ord(c)
    return ord(c) + 256


_NON_DIGITS = re.compile(r"\D*")
_DIGITS = re.compile(r"\d*")


def _lead(pattern: re.Pattern[str], s: str) -> str:
    """What ``pattern`` (which matches the empty string too) takes from ``s``'s start."""
    m = pattern.match(s)
    return m.group() if m else ""


def _cmp_part(a: str, b: str) -> int:
    while a or b:
        na, nb = _lead(_NON_DIGITS, a), _lead(_NON_DIGITS, b)
        for i in range(max(len(na), len(nb))):
            ca = _order(na[i]) if i < len(na) else 0
            cb = _order(nb[i]) if i < len(nb) else 0
            if ca != cb:
                return -1 if ca < cb else 1
        a, b = a[len(na):], b[len(nb):]
        da, db = _lead(_DIGITS, a), _lead(_DIGITS, b)
        if int(da or 0) != int(db or 0):
            return -1 if int(da or 0) < int(db or 0) else 1
        a, b = a[len(da):], b[len(db):]
    return 0


def compare_versions(a: str, b: str) -> int:
    """Debian's version order (``dpkg --compare-versions``): -1, 0 or 1."""
    def split(v: str) -> tuple[int, str, str]:
        epoch, _, rest = v.rpartition(":") if ":" in v else ("0", "", v)
        up, _, rev = rest.rpartition("-") if "-" in rest else (rest, "", "")
        return int(epoch or 0), up, rev
    ea, ua, ra = split(a)
    eb, ub, rb = split(b)
    if ea != eb:
        return -1 if ea < eb else 1
    return _cmp_part(ua, ub) or _cmp_part(ra, rb)


def sort_builds(builds: list[Build]) -> list[Build]:
    """In version order (the package version, then the flavour), each
    (package, version) once: the first suite in :data:`SUITES` order that lists it."""
    seen: dict[tuple[str, str], Build] = {}
    for b in sorted(builds, key=lambda b: SUITES.index(b.suite) if b.suite in SUITES else 99):
        seen.setdefault((b.package, b.version), b)
    def order(x: Build, y: Build) -> int:
        return (compare_versions(x.version, y.version)
                or (x.flavour > y.flavour) - (x.flavour < y.flavour))

    return sorted(seen.values(), key=cmp_to_key(order))


def _index_state() -> tuple[Path, list[str]]:
    if not Path(KEYRING).exists():
        raise LabError(f"{KEYRING} missing: install Debian's debian-archive-keyring")
    state = cache_dir() / "_index" / "apt"
    (state / "lists" / "partial").mkdir(parents=True, exist_ok=True)
    (state / "cache" / "archives" / "partial").mkdir(parents=True, exist_ok=True)
    (state / "sources.list").write_text("".join(
        f"deb [signed-by={KEYRING}] {mirror(s)} {s} main\n" for s in SUITES))
    return state, _apt_opts(state)


def available(refresh: bool = True) -> list[Build]:
    """Every kernel build of the reachable suites (:data:`SUITES`), in version order,
    read from their ``Packages`` indexes with a private apt state (``refresh``: ask
    the mirrors first; else the indexes of the last refresh)."""
    _state, opts = _index_state()
    if refresh:
        _run(["apt-get", *opts, "update"], "apt-get update (the kernel index)")
    targets = _run(["apt-get", *opts, "indextargets", "--format", "$(CODENAME) $(FILENAME)",
                    "Created-By: Packages"], "apt-get indextargets")
    per: dict[str, dict[str, dict[str, str]]] = {}
    for line in targets.splitlines():
        suite, _, fname = line.partition(" ")
        if suite in SUITES and Path(fname).exists():
            text = _run(["/usr/lib/apt/apt-helper", "cat-file", fname], f"reading {fname}")
            per.setdefault(suite, {}).update(parse_packages(text))
    if not per:
        raise LabError("no kernel index: run without --offline once (apt-get update of "
                       + ", ".join(SUITES) + ")")
    everywhere = {k: v for stanzas in per.values() for k, v in stanzas.items()}
    return sort_builds([b for s, st in per.items() for b in builds_in(s, st, everywhere)])


def build_dir(b: Build) -> Path:
    return cache_dir() / b.suite / b.dir_name


def is_cached(b: Build) -> bool:
    return (build_dir(b) / ".complete").exists()


def has_ipvs(b: Build) -> bool | None:
    """Whether the build's modules include ip_vs: read from its unpacked package, else
    from its package's file list as :func:`probe_ipvs` read it (None: neither yet)."""
    if is_cached(b):
        mods = build_dir(b) / "root" / "lib" / "modules" / b.release
        return bool(list(mods.rglob("ip_vs.ko*")))
    try:
        said = _ipvs_verdict(b).read_text().strip()
    except OSError:
        return None
    return {"yes": True, "no": False}.get(said)


def _ipvs_verdict(b: Build) -> Path:
    return cache_dir() / "_index" / "ipvs" / b.dir_name


#: A module file of ip_vs in a package's file list (``md5sums``).
_IP_VS = re.compile(r"/ip_vs\.ko(\.(xz|zst|gz))?$", re.M)
#: How much of a .deb one request reads: its ar header, debian-binary and, mostly,
#: all of control.tar (~100 KB for a kernel's modules package; a second request
#: reads what is left of a larger one).
_HEAD = 1 << 17
#: At most this much control.tar, compressed or not: a kernel's is ~0.1 MB / ~0.5 MB.
_CONTROL_MAX = 8 << 20


def deb_files(read: Callable[[int, int], bytes]) -> str | None:
    """The file list (``md5sums``, one ``HASH  PATH`` a line) of a .deb, from its
    control.tar alone. ``read(start, end)`` gives the .deb's bytes start..end
    (inclusive, fewer at its end). None: not a .deb this understands (an
    unexpected member order, a control.tar that is not xz or gzip, no md5sums)."""
    head = read(0, _HEAD - 1)
    if head[:8] != b"!<arch>\n":
        return None
    off = 8
    while off + 60 <= len(head):
        name, size = head[off:off + 16].decode("ascii", "replace").strip(), head[off + 48:off + 58]
        try:
            n = int(size)
        except ValueError:
            return None
        start = off + 60
        if name.startswith("control.tar"):
            break
        if name != "debian-binary":
            return None
        off = start + n + (n & 1)
    else:
        return None
    if n > _CONTROL_MAX:
        return None
    # lazy: only `kernels list --available` reads a package's file list (+5 modules)
    import tarfile

    data = head[start:start + n]
    if len(data) < n:
        data += read(start + len(data), start + n - 1)
    try:
        if name == "control.tar.xz":
            raw = lzma.LZMADecompressor().decompress(data, _CONTROL_MAX)
        elif name == "control.tar.gz":
            raw = zlib.decompressobj(47).decompress(data, _CONTROL_MAX)
        else:
            return None
        with tarfile.open(fileobj=io.BytesIO(raw)) as tf:
            member = next((m for m in tf.getmembers()
                           if m.isfile() and m.name.lstrip("./") == "md5sums"), None)
            f = tf.extractfile(member) if member else None
            return f.read().decode("utf-8", "replace") if f else None
    except (lzma.LZMAError, zlib.error, tarfile.TarError, EOFError, OSError):
        return None


def _ranged(url: str) -> Callable[[int, int], bytes]:
    # lazy: only `kernels list --available` asks a mirror itself (+29 modules: http, ssl)
    import urllib.request

    def read(start: int, end: int) -> bytes:
        req = urllib.request.Request(url, headers={"Range": f"bytes={start}-{end}"})
        with urllib.request.urlopen(req, timeout=60) as r:
            if r.status != 206:  # the whole file: no range support
                raise OSError(f"{url}: HTTP {r.status} to a range request")
            return bytes(r.read(end - start + 1))
    return read


def probe_ipvs(b: Build) -> bool | None:
    """Whether ``b``'s modules include ip_vs, read without fetching it: the file list
    (``md5sums``) in the control.tar of the package holding its modules, the first
    ~100 KB of that .deb, read with HTTP range requests (a fetch downloads 60-130
    MB). Kept in the cache (:func:`has_ipvs` reads it). The bytes read are not
    checked against the index's hash (that covers the whole .deb); the fetch is.
    None: not known (no modules package in the archive, no network, an answer this
    does not understand)."""
    known = has_ipvs(b)
    if known is not None or not b.modules_file:
        return known
    base = SECURITY_MIRROR if b.modules_file.startswith("pool/updates/") else MIRROR
    try:
        files = deb_files(_ranged(f"{base}/{b.modules_file}"))
    except (OSError, ValueError):
        return None
    if files is None:
        return None
    found = bool(_IP_VS.search(files))
    out = _ipvs_verdict(b)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.{os.getpid()}")
    tmp.write_text("yes\n" if found else "no\n")
    tmp.replace(out)
    return found


def probe_all(builds: list[Build], jobs: int = 8) -> None:
    """:func:`probe_ipvs` for every build not known yet, ``jobs`` at once."""
    todo = [b for b in builds if b.modules_file and has_ipvs(b) is None]
    with ThreadPoolExecutor(max_workers=jobs) as pool:
        list(pool.map(probe_ipvs, todo))


def find_build(name: str, builds: list[Build], flavour: str = "amd64") -> Build:
    """The build ``name`` names: its ``uname -r`` (``6.12.96+deb13-amd64``), or
    without the flavour (``6.12.96+deb13``: ``flavour``'s)."""
    full = name if name.endswith(tuple(f"-{f}" for f in FLAVOURS)) else f"{name}-{flavour}"
    hits = [b for b in builds if b.release == full]
    if not hits:
        near = [b.release for b in builds if b.release.startswith(name.split("+")[0]
                                                                   .rsplit(".", 1)[0])]
        raise UsageError(f"kernel {name}: no such build in {', '.join(SUITES)}"
                         + (f" (near: {', '.join(near[:6])})" if near else "")
                         + "; see drlab kernels list --available")
    return hits[-1]


def fetch_build(b: Build, name: str | None = None) -> Kernel:
    """Download and unpack build ``b`` into the cache (once); its Kernel, named
    ``name`` (default: its release)."""
    target = build_dir(b)
    if not (target / ".complete").exists():
        if b.unavailable:
            raise LabError(f"kernel {b.release}: cannot be fetched: {b.unavailable}")
        _state, opts = _index_state()
        _say(f"kernel {b.release}: fetching {b.package} {b.version} ({b.suite}, "
             f"{b.size / 1e6:.0f} MB) into {target}")
        _rmtree(target)
        target.mkdir(parents=True)
        try:
            _unpack(opts, b.package, target, b.version)
        except BaseException:
            _rmtree(target)
            raise
        (target / ".complete").write_text(f"{b.package} {b.version}\n")
    return _kernel(name or b.release, target / "root", b.suite)


def newest(builds: list[Build], flavour: str = "amd64", series: str = "") -> Build:
    """The newest fetchable build of ``flavour`` (whose release starts with
    ``series``, e.g. ``7.``)."""
    ok = [b for b in builds if b.fetchable and b.flavour == flavour
          and b.release.startswith(series)]
    if not ok:
        raise LabError(f"no fetchable {flavour} build" + (f" of {series}*" if series else ""))
    return ok[-1]


#: A series -> the Debian kernel line that ships it (what ``--kernel`` takes).
DEBIAN_LINES = (("6.1.", "bookworm"), ("6.12.", "trixie"), ("7.", "newest-7"))


def debian_line(release: str, builds: Sequence[Build] = ()) -> str | None:
    """The kernel to run for a host that ran ``release`` (``uname -r``): the exact build
    when ``builds`` (:func:`available`) has it fetchable, else the Debian line of its
    series (``6.1.0-57-amd64`` -> ``bookworm``, ``6.12.*`` -> ``trixie``, ``7.*`` ->
    ``newest-7``); None when no Debian line ships that series."""
    if any(b.release == release and b.fetchable for b in builds):
        return release
    for series, line in DEBIAN_LINES:
        if f"{release}.".startswith(series):
            return line
    return None
