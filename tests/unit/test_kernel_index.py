"""The kernel index: Debian Packages stanzas -> builds (both layouts), version order,
builds by name. Fixtures are small hand-written Packages snippets."""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from lab.errors import UsageError
from lab.sweep.kernels import (
    Layout,
    builds_in,
    compare_versions,
    deb_files,
    find_build,
    parse_packages,
    sort_builds,
    split_layout,
)

OLD = """\
Package: linux-image-6.1.0-9-amd64
Source: linux-signed-amd64 (6.1.99+1)
Version: 6.1.99-1
Depends: kmod, linux-base (>= 4.3~), initramfs-tools (>= 0.120+deb8u2) | linux-initramfs-tool
Description: Linux 6.1 for 64-bit PCs (signed)
 The Linux kernel 6.1 and modules for use on PCs with AMD64, Intel 64 or
 VIA Nano processors.
Size: 1000
Filename: pool/updates/main/l/linux-signed-amd64/linux-image-6.1.0-9-amd64_6.1.99-1_amd64.deb

Package: linux-image-6.12-amd64
Version: 6.12.99-1~deb12u1
Depends: linux-image-6.12.99+deb12-amd64 (= 6.12.99-1~deb12u1)
Size: 10

Package: linux-image-6.1.0-9-amd64-dbg
Version: 6.1.99-1
Size: 5

Package: hello
Version: 1.0
"""

NEW = """\
Package: linux-image-7.9.1+deb13-amd64
Version: 7.9.1-1~bpo13+1
Depends: dracut | initramfs-tools (>= 0.120+deb8u2) | linux-initramfs-tool, linux-base-7.9.1+deb13-amd64 (= 7.9.1-1~bpo13+1), linux-binary-7.9.1+deb13-amd64 (= 7.9.1-1~bpo13+1), linux-modules-7.9.1+deb13-amd64 (= 7.9.1-1~bpo13+1)
Size: 3

Package: linux-binary-7.9.1+deb13-amd64
Version: 7.9.1-1~bpo13+1
Size: 20

Package: linux-modules-7.9.1+deb13-amd64
Version: 7.9.1-1~bpo13+1
Size: 200
Filename: pool/main/l/linux/linux-modules-7.9.1+deb13-amd64_7.9.1-1~bpo13+1_amd64.deb

Package: linux-base-7.9.1+deb13-amd64
Version: 7.9.1-1~bpo13+1
Size: 2

Package: linux-image-7.8.2+deb13-rt-amd64
Version: 7.8.2-1~bpo13+1
Depends: linux-binary-7.8.2+deb13-rt-amd64 (= 7.8.2-1~bpo13+1), linux-modules-7.8.2+deb13-rt-amd64 (= 7.8.2-1~bpo13+1)
Size: 3

Package: linux-binary-7.8.2+deb13-rt-amd64
Version: 7.8.2-1~bpo13+1
Size: 20
"""  # noqa: E501


def test_old_layout_build_and_meta_and_dbg_skipped():
    builds = builds_in("bookworm", parse_packages(OLD))
    assert [(b.release, b.flavour, b.version, b.size, b.layout) for b in builds] == [
        ("6.1.0-9-amd64", "amd64", "6.1.99-1", 1000, Layout.IMAGE)]
    assert builds[0].fetchable
    # the image itself holds the modules
    assert builds[0].modules_file.endswith("/linux-image-6.1.0-9-amd64_6.1.99-1_amd64.deb")


def test_split_layout_sums_sizes_and_a_missing_modules_package_is_unavailable():
    builds = {b.release: b for b in builds_in("trixie-backports", parse_packages(NEW))}
    ok, gone = builds["7.9.1+deb13-amd64"], builds["7.8.2+deb13-rt-amd64"]
    assert ok.layout is Layout.SPLIT and ok.size == 225 and ok.fetchable
    assert ok.modules_file.endswith("/linux-modules-7.9.1+deb13-amd64_7.9.1-1~bpo13+1_amd64.deb")
    assert gone.modules_file == ""  # nothing to read its file list from
    assert gone.flavour == "rt-amd64" and not gone.fetchable
    assert gone.unavailable is not None and "linux-modules-7.8.2+deb13-rt-amd64" in gone.unavailable


def test_split_layout_reads_depends():
    assert split_layout("linux-image-7.9.1+deb13-amd64",
                        parse_packages(NEW)["linux-image-7.9.1+deb13-amd64=7.9.1-1~bpo13+1"]
                        ["Depends"]) == ["linux-binary-7.9.1+deb13-amd64",
                                         "linux-modules-7.9.1+deb13-amd64",
                                         "linux-base-7.9.1+deb13-amd64"]
    assert split_layout("linux-image-6.1.0-9-amd64", "kmod, linux-base (>= 4.3~)") == []


PAIRS = [("6.1.99-1", "6.12.9-1"), ("6.12.9-1~deb12u1", "6.12.9-1"), ("7.0.1-1~bpo13+1", "7.0.1-1"),
         ("6.12.9-1", "6.12.9-2"), ("1:1.0", "2.0"), ("6.12.90-2", "6.12.94-1"),
         ("1.0a", "1.0"), ("1.0~rc1", "1.0"), ("6.1.192-2", "6.1.192-3")]


@pytest.mark.parametrize("a, b", PAIRS)
def test_compare_versions_agrees_with_dpkg(a, b):
    mine = compare_versions(a, b)
    assert compare_versions(b, a) == -mine and compare_versions(a, a) == 0
    if shutil.which("dpkg"):
        lt = subprocess.run(["dpkg", "--compare-versions", a, "lt", b]).returncode == 0
        assert (mine < 0) == lt


def test_sorted_across_suites_once_each():
    a = builds_in("bookworm", parse_packages(OLD))
    b = builds_in("bookworm-security", parse_packages(OLD))
    c = builds_in("trixie-backports", parse_packages(NEW))
    out = sort_builds(c + b + a)
    assert [x.release for x in out] == ["6.1.0-9-amd64", "7.8.2+deb13-rt-amd64",
                                        "7.9.1+deb13-amd64"]
    assert out[0].suite == "bookworm"  # the first suite listing it


def test_find_build_by_release_with_or_without_flavour():
    builds = sort_builds(builds_in("trixie-backports", parse_packages(NEW)))
    assert find_build("7.9.1+deb13-amd64", builds).version == "7.9.1-1~bpo13+1"
    assert find_build("7.9.1+deb13", builds).release == "7.9.1+deb13-amd64"
    assert find_build("7.8.2+deb13", builds, "rt-amd64").flavour == "rt-amd64"
    with pytest.raises(UsageError, match="no such build"):
        find_build("7.9.2+deb13-amd64", builds)


def test_cache_dir_names_have_no_tilde():
    """virtme-ng refuses a shared path with '~' (backports' and security versions)."""
    from lab.sweep.kernels import unpacked_name

    b = builds_in("trixie-backports", parse_packages(NEW))[0]
    assert "~" not in b.dir_name and b.dir_name.startswith(b.package + "_")
    assert unpacked_name("linux-image-6.12.9+deb12-amd64", "6.12.9-1~deb12u1") == \
        "linux-image-6.12.9+deb12-amd64_6.12.9-1_deb12u1"


def test_an_image_depending_on_a_missing_linux_base_is_still_fetchable():
    """6.18's image holds the kernel and modules but depends on linux-base-X, which
    the index no longer lists: it is the image layout, fetchable."""
    text = ("Package: linux-image-6.18.5+deb13-amd64\nVersion: 6.18.5-1~bpo13+1\n"
            "Depends: kmod, linux-base-6.18.5+deb13-amd64 (= 6.18.5-1~bpo13+1)\nSize: 9\n")
    (b,) = builds_in("trixie-backports", parse_packages(text))
    assert b.layout is Layout.IMAGE and b.fetchable and b.size == 9


def _deb(tmp_path: Path, files: dict[str, bytes], compress: str = "xz") -> bytes:
    """A .deb built by dpkg-deb, with the md5sums Debian's tooling (dh_md5sums) adds."""
    root = tmp_path / "pkg"
    (root / "DEBIAN").mkdir(parents=True)
    (root / "DEBIAN" / "control").write_text(
        "Package: linux-modules-7.9.1+deb13-amd64\nVersion: 7.9.1-1\nArchitecture: amd64\n"
        "Maintainer: Lab <lab@example.org>\nDescription: test\n")
    sums = []
    for path, data in files.items():
        (root / path).parent.mkdir(parents=True, exist_ok=True)
        (root / path).write_bytes(data)
        sums.append(f"{hashlib.md5(data).hexdigest()}  {path}\n")
    (root / "DEBIAN" / "md5sums").write_text("".join(sums))
    out = tmp_path / "p.deb"
    subprocess.run(["dpkg-deb", f"-Z{compress}", "--root-owner-group", "--build", str(root),
                    str(out)], check=True, capture_output=True)
    return out.read_bytes()


@pytest.mark.skipif(not shutil.which("dpkg-deb"), reason="needs dpkg-deb")
@pytest.mark.parametrize("compress", ["xz", "gzip"])
def test_a_packages_file_list_comes_from_its_head_alone(tmp_path, compress):
    mods = "usr/lib/modules/7.9.1+deb13-amd64/kernel/net"
    big = os.urandom(1 << 20)  # the data.tar, which is not read
    deb = _deb(tmp_path, {f"{mods}/netfilter/ipvs/ip_vs.ko.xz": b"m", f"{mods}/blob": big},
               compress)
    asked = []

    def read(start: int, end: int) -> bytes:
        asked.append((start, end))
        return deb[start:end + 1]

    files = deb_files(read)
    assert files is not None and f"{mods}/netfilter/ipvs/ip_vs.ko.xz" in files
    assert sum(min(e, len(deb) - 1) - s + 1 for s, e in asked) < 200_000 < len(deb)
    without = _deb(tmp_path / "2", {f"{mods}/bridge/bridge.ko.xz": b"b"}, compress)
    assert "ip_vs" not in (deb_files(lambda s, e: without[s:e + 1]) or "ip_vs")
    assert deb_files(lambda s, e: b"<html>not a deb</html>"[s:e + 1]) is None
