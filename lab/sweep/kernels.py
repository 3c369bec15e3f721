"""Kernels to run the lab on: the host's, Debian's (fetched and unpacked), a user's.

A kernel is named on the command line as

* ``host``: the running kernel, no VM (the ARP-only parts where it lacks IPVS);
* a Debian suite (``bookworm``, ``trixie``, ``sid``, ``bookworm-backports``...):
  the suite's ``linux-image-amd64`` is resolved with a private apt state (signed
  by ``/usr/share/keyrings/debian-archive-keyring.gpg``, nothing of the host's
  apt touched), its package downloaded and unpacked with ``dpkg-deb -x`` into the
  cache; no userland of that suite is installed;
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

import os
import platform
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from lab.errors import LabError, UsageError
from lab.util import private_dir

KEYRING = "/usr/share/keyrings/debian-archive-keyring.gpg"
MIRROR = os.environ.get("DRLAB_DEBIAN_MIRROR", "http://deb.debian.org/debian")
#: root's cache of unpacked kernels
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

    @property
    def is_host(self) -> bool:
        return self.image is None


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


def _unpacked(suite_dir: Path) -> list[Path]:
    """Complete unpacked kernels of a suite, newest first (by package version dir)."""
    if not suite_dir.is_dir():
        return []
    done = [d for d in suite_dir.iterdir() if (d / ".complete").exists()]
    return sorted(done, key=lambda d: d.stat().st_mtime, reverse=True)


def _kernel(name: str, root: Path) -> Kernel:
    """The kernel unpacked under ``root`` (``root/boot/vmlinuz-<release>``)."""
    images = sorted((root / "boot").glob("vmlinuz-*"))
    if not images:
        raise LabError(f"{root}: no boot/vmlinuz-* in the unpacked package")
    return Kernel(name, images[-1], images[-1].name.removeprefix("vmlinuz-"))


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
    (state / "sources.list").write_text(f"deb [signed-by={KEYRING}] {MIRROR} {suite} main\n")
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
        return _kernel(suite, cached[0] / "root")
    target = base / f"{pkg}_{ver.group(1)}"
    if not (target / ".complete").exists():
        _say(f"kernel {suite}: fetching {pkg} {ver.group(1)} into {target}")
        _rmtree(target)
        target.mkdir(parents=True)
        try:
            _unpack(opts, pkg, target)
        except BaseException:
            _rmtree(target)
            raise
        (target / ".complete").write_text(f"{pkg} {ver.group(1)}\n")
    return _kernel(suite, target / "root")


def _unpack(opts: list[str], pkg: str, target: Path) -> None:
    root = target / "root"
    _run(["apt-get", *opts, "download", pkg], f"apt-get download {pkg}", cwd=target)
    debs = list(target.glob("*.deb"))
    if len(debs) != 1:
        raise LabError(f"apt-get download {pkg}: expected one .deb in {target}")
    _run(["dpkg-deb", "-x", str(debs[0]), str(root)], f"dpkg-deb -x {debs[0].name}")
    debs[0].unlink()
    # merged-/usr packages put modules in usr/lib/modules; virtme-ng looks in
    # <root>/lib/modules next to <root>/boot
    if not (root / "lib").exists() and (root / "usr" / "lib" / "modules").is_dir():
        (root / "lib").symlink_to("usr/lib")
    k = _kernel(pkg, root)
    if not list((root / "lib" / "modules" / str(k.release)).rglob("ip_vs.ko*")):
        raise LabError(f"{pkg}: no ip_vs module in the package")


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
        return Kernel(label, k.image, k.release)
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
    return fetch_debian(name, refresh)


def cached() -> list[tuple[str, Path]]:
    """(suite, unpacked dir) of every kernel in the cache."""
    base = cache_dir()
    if not base.is_dir():
        return []
    return [(s.name, d) for s in sorted(base.iterdir()) if s.is_dir() for d in _unpacked(s)]
