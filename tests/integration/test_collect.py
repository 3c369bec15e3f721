"""scripts/collect, run for real inside lab namespaces: what it writes, what it
skips, and that it changes nothing."""

from __future__ import annotations

import io
import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
import time

import pytest

from lab.builder import sysctl as sc
from lab.model import Address, Interface, default_dr
from lab.probes.snapshot import COLLECT, collect
from lab.roles import realserver

# The collector is a shell script that only reads: it needs namespaces, not IPVS.
# It runs on the host part (subprocess keeps it out of the VM part, where the
# round trip in test_scenarios.py runs it against IPVS labs).
pytestmark = [pytest.mark.netns, pytest.mark.subprocess]

ALLOWED = re.compile(r"^net\.ipv4\.conf\.|^net\.ipv4\.vs\.|^net\.ipv4\.ip_forward |"
                     r"^net\.ipv6\.conf\.")


def topology():
    t = default_dr(rs=2)
    rs2 = t.host("rs2")
    rs2.lo = []
    rs2.dummies = [Interface("dummy0", "", [Address("192.0.2.100/32")], kind="dummy")]
    return t.validate()


def run_in(lab, host, *args, env=None):
    return subprocess.run(["ip", "netns", "exec", lab.ns(host), *args], capture_output=True,
                          text=True, timeout=120, env=env)


def test_collect_writes_every_file_and_changes_nothing(lab_factory, tmp_path):
    lab = lab_factory(topology(), roles=False)
    realserver.start_service(lab, "rs1", port=80, bind="192.0.2.101")
    keys = [f"net.ipv4.conf.{d}.{k}" for d in ("all", "lo", "eth0")
            for k in ("arp_ignore", "arp_announce", "rp_filter")]
    before = sc.read(lab.ns("rs1"), keys)
    [rs1, rs2] = collect(lab, tmp_path, ["rs1", "rs2"])
    assert sc.read(lab.ns("rs1"), keys) == before

    addrs = json.loads((rs1 / "ip-addr.json").read_text())
    assert {(a["ifname"], i["local"], i["prefixlen"]) for a in addrs for i in a["addr_info"]
            if i["family"] == "inet"} >= {("eth0", "192.0.2.101", 24), ("lo", "192.0.2.100", 32)}
    links = json.loads((rs2 / "ip-link.json").read_text())
    dummy = next(x for x in links if x["ifname"] == "dummy0")
    assert "NOARP" in dummy["flags"]
    assert json.loads((rs1 / "ip-route.json").read_text())
    lines = (rs1 / "sysctl.txt").read_text().splitlines()
    assert lines and all(ALLOWED.match(x) for x in lines), [x for x in lines
                                                            if not ALLOWED.match(x)][:3]
    assert "net.ipv4.conf.all.arp_ignore = 1" in lines
    assert "net.ipv4.conf.eth0.arp_announce = 2" in lines
    assert re.search(r"^tcp\s+LISTEN.*192\.0\.2\.101:80\s", (rs1 / "listen.txt").read_text(),
                     re.M)
    assert (rs1 / "uname.txt").read_text().strip() == os.uname().release
    assert "hostname = rs1" in (rs1 / "collect.txt").read_text()
    assert not (rs1 / "ipvsadm-save.txt").exists()  # no IPVS table on a real server
    skipped = (rs1 / "skipped.txt").read_text()
    assert "ipvsadm-save.txt" in skipped and "keepalived.conf: -k none" in skipped
    assert oct((rs1 / "ip-addr.json").stat().st_mode & 0o777) == "0o600"
    assert not list(tmp_path.glob(".*"))  # no temporary directory left


def test_collect_without_ss_or_sysctl_says_what_it_skipped(lab_factory, tmp_path):
    lab = lab_factory(default_dr(rs=1), roles=False)
    tools = tmp_path / "bin"
    tools.mkdir()
    for t in ("sh", "ip", "uname", "hostname", "date", "cat", "mkdir", "mv", "rm", "grep",
              "tr", "head", "sed", "cp", "mktemp", "ls", "id", "readlink"):
        os.symlink(shutil.which(t), tools / t)
    p = run_in(lab, "rs1", "sh", str(COLLECT), "-n", "rs1", str(tmp_path / "out"),
               env={"PATH": str(tools)})
    assert p.returncode == 0, p.stderr
    out = tmp_path / "out" / "rs1"
    skipped = (out / "skipped.txt").read_text()
    assert "listen.txt: ss not found" in skipped
    assert "sysctl not found, read /proc/sys" in skipped
    assert "skipped listen.txt: ss not found" in p.stderr
    assert "net.ipv4.conf.all.arp_ignore = 1" in (out / "sysctl.txt").read_text()
    assert not (out / "listen.txt").exists()


def test_collect_as_a_tar_under_dash(lab_factory, tmp_path):
    if shutil.which("dash") is None:
        pytest.skip("no dash")
    lab = lab_factory(default_dr(rs=1), roles=False)
    p = subprocess.run(["ip", "netns", "exec", lab.ns("rs1"), "dash", str(COLLECT), "-t",
                        "-n", "web-01.example"], capture_output=True, timeout=120)
    assert p.returncode == 0, p.stderr
    (tmp_path / "c.tar").write_bytes(p.stdout)
    with tarfile.open(tmp_path / "c.tar") as tar:
        names = tar.getnames()
    # ./NAME: tar is given a path, never something that could read as an option
    assert {"./web-01.example/ip-addr.json", "./web-01.example/sysctl.txt",
            "./web-01.example/listen.txt"} <= set(names)


@pytest.mark.parametrize("args, needle", [
    (["-q"], "unknown option -q"),
    (["-n"], "-n needs a value"),
    (["-n", "a/b"], "cannot be empty, contain /"),
    (["a", "b"], "one OUTDIR at most"),
    (["-n", "a\nb"], "cannot contain a control character"),
    (["/dev/null/x"], "refusing OUTDIR /dev/null/x: /dev/null is not a directory"),
    (["/dev/null"], "refusing OUTDIR /dev/null: /dev/null is not a directory"),
])
def test_collect_bad_input_is_one_line_exit_2(args, needle, tmp_path):
    tmp_path.chmod(0o700)
    p = subprocess.run(["sh", str(COLLECT), *args], capture_output=True, text=True,
                       timeout=60, cwd=tmp_path)
    assert p.returncode == 2 and len(p.stderr.splitlines()) == 1 and needle in p.stderr, \
        p.stderr
    assert not list(tmp_path.iterdir())


def test_collect_is_posix_sh():
    for shell in ("sh", "dash"):
        if shutil.which(shell):
            assert subprocess.run([shell, "-n", str(COLLECT)]).returncode == 0


# --- a bare namespace built here: veths, v4 and v6, a VIP on lo, a dotted device
# name, a sysctl, and listeners of every shape ss prints

LISTENER = r"""
import socket, sys, time
socks = []
def listen(fam, typ, addr, dev=None, v6only=None):
    s = socket.socket(fam, typ)
    if dev:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_BINDTODEVICE, dev.encode())
    if v6only is not None:
        s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, v6only)
    s.bind(addr)
    if typ == socket.SOCK_STREAM:
        s.listen()
    socks.append(s)
T, U, A4, A6 = socket.SOCK_STREAM, socket.SOCK_DGRAM, socket.AF_INET, socket.AF_INET6
listen(A4, T, ("203.0.113.1", 80))          # the VIP on lo
listen(A4, T, ("0.0.0.0", 8080))            # every v4 address
listen(A4, T, ("0.0.0.0", 9000), dev="veth0")
listen(A6, T, ("::", 8443), v6only=0)       # every address, v4 and v6
listen(A6, T, ("::", 8444), v6only=1)       # every v6 address only
listen(A6, T, ("2001:db8::10", 443))
listen(A4, U, ("192.0.2.10", 53))
print("ready", flush=True)
time.sleep(600)
"""


def in_ns(ns, *args, **kw):
    return subprocess.run(["ip", "netns", "exec", ns, *args], capture_output=True, text=True,
                          timeout=120, **kw)


def sh(ns, script):
    p = in_ns(ns, "sh", "-ec", script)
    assert p.returncode == 0, p.stderr


@pytest.fixture
def bare(drlab_netns):
    """The namespace, built, with its listener running; killed afterwards."""
    ns = drlab_netns
    sh(ns, """
        sysctl -qw net.ipv6.conf.all.disable_ipv6=0 net.ipv6.conf.default.disable_ipv6=0
        ip link add veth0 type veth peer name v.1
        ip addr add 192.0.2.10/24 dev veth0
        ip addr add 2001:db8::10/64 dev veth0 nodad
        ip link set veth0 up; ip link set v.1 up
        ip addr add 203.0.113.1/32 dev lo
        ip route add default via 192.0.2.1
        ip -6 route add default via 2001:db8::1
        sysctl -qw net.ipv4.conf.all.arp_ignore=1
        echo 2 >/proc/sys/net/ipv4/conf/v.1/arp_announce
    """)
    listener = subprocess.Popen(["ip", "netns", "exec", ns, sys.executable, "-c", LISTENER],
                                stdout=subprocess.PIPE, text=True)
    try:
        assert listener.stdout.readline().strip() == "ready"
        yield ns
    finally:
        listener.kill()
        listener.wait(timeout=10)


def conf_all(ns):
    return in_ns(ns, "grep", "-r", ".", "/proc/sys/net/ipv4/conf/all").stdout


def listening(text):
    """(netid, local address:port) of each listen.txt line (split on blanks)."""
    return {tuple(line.split()[i] for i in (0, 4)) for line in text.splitlines()}


def tools_without(tmp_path, *missing):
    """A directory of symlinks to every tool collect uses, but ``missing``."""
    d = tmp_path / ("bin-" + "-".join(missing))
    d.mkdir()
    for t in ("sh", "ip", "uname", "hostname", "date", "cat", "mkdir", "mv", "rm", "sed",
              "grep", "tr", "head", "tar", "mktemp", "ls", "id", "readlink", "ss", "sysctl",
              "ipvsadm-save"):
        if t not in missing and shutil.which(t):
            os.symlink(shutil.which(t), d / t)
    return d


def test_collect_in_a_bare_namespace(bare, tmp_path):
    before = conf_all(bare)
    p = in_ns(bare, "sh", str(COLLECT), "-n", "rs1", "-k", "none", str(tmp_path))
    assert p.returncode == 0, p.stderr
    assert conf_all(bare) == before  # read-only
    out = tmp_path / "rs1"
    assert sorted(x.name for x in out.iterdir()) == [
        "collect.txt", "ip-addr.json", "ip-link.json", "ip-route.json", "ip6-route.json",
        "listen.txt", "skipped.txt", "sysctl.txt", "uname.txt"]

    addrs = {(a["ifname"], i["local"], i["prefixlen"])
             for a in json.loads((out / "ip-addr.json").read_text()) for i in a["addr_info"]}
    assert addrs >= {("veth0", "192.0.2.10", 24), ("veth0", "2001:db8::10", 64),
                     ("lo", "203.0.113.1", 32)}
    kinds = {x["ifname"]: x.get("linkinfo", {}).get("info_kind")
             for x in json.loads((out / "ip-link.json").read_text())}
    assert kinds == {"lo": None, "veth0": "veth", "v.1": "veth"}
    route = json.loads((out / "ip-route.json").read_text())
    assert {"dst": "default", "gateway": "192.0.2.1", "dev": "veth0"}.items() <= route[0].items()
    route6 = json.loads((out / "ip6-route.json").read_text())
    assert any(r["dst"] == "default" and r["gateway"] == "2001:db8::1" for r in route6)

    lines = (out / "sysctl.txt").read_text().splitlines()
    assert all(ALLOWED.match(x) for x in lines), [x for x in lines if not ALLOWED.match(x)][:3]
    assert "net.ipv4.conf.all.arp_ignore = 1" in lines
    assert "net.ipv4.conf.v/1.arp_announce = 2" in lines  # sysctl's spelling of v.1
    assert [x for x in lines if x.startswith("net.ipv4.ip_forward")] == ["net.ipv4.ip_forward = 0"]
    assert any(x.startswith("net.ipv6.conf.veth0.") for x in lines)

    assert listening((out / "listen.txt").read_text()) == {
        ("tcp", "203.0.113.1:80"), ("tcp", "0.0.0.0:8080"), ("tcp", "0.0.0.0%veth0:9000"),
        ("tcp", "*:8443"), ("tcp", "[::]:8444"), ("tcp", "[2001:db8::10]:443"),
        ("udp", "192.0.2.10:53")}
    assert (out / "uname.txt").read_text() == os.uname().release + "\n"
    meta = (out / "collect.txt").read_text().splitlines()
    assert re.fullmatch(r"collected_at = \d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", meta[0]), meta
    assert meta[1:] == ["hostname = rs1", "collect_version = 1"]
    skipped = (out / "skipped.txt").read_text()
    # where ip_vs is loaded (the VM), every namespace has /proc/net/ip_vs: an empty table
    if in_ns(bare, "test", "-e", "/proc/net/ip_vs").returncode == 0:
        why = "ipvsadm-save.txt: the IPVS table is empty"
    else:
        why = "ipvsadm-save.txt: no IPVS here (/proc/net/ip_vs absent; not loading it)"
    assert why in skipped.splitlines()
    assert f"collect: skipped {why}\n" in p.stderr

    # again, over the first: the host's directory is replaced, nothing stale stays
    (out / "stale").write_text("")
    assert in_ns(bare, "sh", str(COLLECT), "-n", "rs1", "-k", "none",
                 str(tmp_path)).returncode == 0
    assert not (out / "stale").exists() and not list(tmp_path.glob(".*"))


def test_collect_without_sysctl_ss_or_ipvsadm_reads_proc_sys_the_same(bare, tmp_path):
    assert in_ns(bare, "sh", str(COLLECT), "-n", "full", "-k", "none",
                 str(tmp_path)).returncode == 0
    path = tools_without(tmp_path, "sysctl", "ss", "ipvsadm-save")
    p = in_ns(bare, "sh", str(COLLECT), "-n", "bare", "-k", "none", str(tmp_path),
              env={"PATH": str(path)})
    assert p.returncode == 0, p.stderr
    assert "skipped listen.txt: ss not found" in p.stderr
    assert "skipped sysctl.txt: sysctl not found, read /proc/sys" in p.stderr
    full, bare_ = tmp_path / "full", tmp_path / "bare"
    # /proc/sys read directly gives what sysctl -a gives, dotted names included
    assert (sorted((bare_ / "sysctl.txt").read_text().splitlines())
            == sorted((full / "sysctl.txt").read_text().splitlines()))
    assert not (bare_ / "listen.txt").exists()
    assert "listen.txt: ss not found" in (bare_ / "skipped.txt").read_text()


@pytest.mark.parametrize("proc", ["an empty /proc/sys/net/ipv4", "no /proc/sys/net/ipv4"])
def test_collect_says_why_there_is_no_sysctl_txt(drlab_netns, tmp_path, proc):
    """Nothing readable from sysctl nor /proc/sys (a tmpfs over /proc/sys/net, in a
    mount namespace of its own): the skip line says so, with sysctl's own error,
    instead of claiming /proc/sys was read; no empty sysctl.txt."""
    mk = "mkdir /proc/sys/net/ipv4 && " if proc.startswith("an empty") else ""
    p = in_ns(drlab_netns, "unshare", "-m", "sh", "-c",
              f'mount -t tmpfs none /proc/sys/net && {mk}exec sh "$0" -n x -k none "$1"',
              str(COLLECT), str(tmp_path))
    assert p.returncode == 0, p.stderr
    out = tmp_path / "x"
    [line] = [x for x in (out / "skipped.txt").read_text().splitlines() if "sysctl" in x]
    assert line.startswith("sysctl.txt: no key readable: '"), line
    assert "printed no key (sysctl: cannot stat /proc/sys/net/ipv4/conf" in line, line
    assert line.endswith("no file under /proc/sys/net could be read" if mk
                         else "there is no /proc/sys/net/ipv4"), line
    assert "read /proc/sys" not in line and not (out / "sysctl.txt").exists()


def test_collect_gives_sysctl_s_error_when_it_reads_proc_sys_instead(drlab_netns, tmp_path):
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "sysctl").write_text('#!/bin/sh\necho "sysctl: permission denied on key" >&2\n'
                                'exit 255\n')
    (bad / "sysctl").chmod(0o755)
    p = in_ns(drlab_netns, "sh", str(COLLECT), "-n", "x", "-k", "none", str(tmp_path),
              env={"PATH": f"{bad}:{os.environ['PATH']}"})
    assert p.returncode == 0, p.stderr
    assert (f"skipped sysctl.txt: '{bad}/sysctl' printed no key (sysctl: permission denied on "
            "key), read /proc/sys\n") in p.stderr, p.stderr
    assert "net.ipv4.conf.all.arp_ignore = 0" in (tmp_path / "x" / "sysctl.txt").read_text()


def test_collect_with_an_ss_without_H_drops_the_header(bare, tmp_path):
    old = tmp_path / "old-ss"
    old.mkdir()
    (old / "ss").write_text('#!/bin/sh\ncase $1 in -H*) echo "ss: invalid option" >&2; exit 255;;'
                            f' esac\nexec {shutil.which("ss")} "$@"\n')
    (old / "ss").chmod(0o755)
    p = in_ns(bare, "sh", str(COLLECT), "-n", "old", "-k", "none", str(tmp_path),
              env={"PATH": f"{old}:{os.environ['PATH']}"})
    assert p.returncode == 0 and "listen.txt" not in p.stderr, p.stderr
    text = (tmp_path / "old" / "listen.txt").read_text()
    assert "Netid" not in text and ("tcp", "203.0.113.1:80") in listening(text)


@pytest.mark.parametrize("include", ["include /etc/keepalived/vs/*.conf",
                                     "  @lvs1 include lvs1.conf", None])
def test_collect_copies_keepalived_conf_and_says_it_did_not_follow_includes(
        drlab_netns, tmp_path, include):
    conf = tmp_path / "k.conf"
    text = "global_defs {\n  router_id lvs1\n}\n" + (include + "\n" if include else "")
    conf.write_text(text)
    p = in_ns(drlab_netns, "sh", str(COLLECT), "-n", "lvs1", "-k", str(conf),
              str(tmp_path / "out"))
    assert p.returncode == 0, p.stderr
    out = tmp_path / "out" / "lvs1"
    assert (out / "keepalived.conf").read_text() == text
    assert ("include files were not followed" in (out / "skipped.txt").read_text()) \
        == (include is not None)


def test_collect_over_ssh_style_stdin_tar_and_help(drlab_netns):
    """``ssh HOST 'sh -s -- -t' < scripts/collect``: the script is stdin, not a file."""
    with open(COLLECT, "rb") as script:
        p = subprocess.run(["ip", "netns", "exec", drlab_netns, "sh", "-s", "--", "-t", "-n",
                            "web1", "-k", "none"], stdin=script, capture_output=True,
                           timeout=120)
    assert p.returncode == 0, p.stderr
    with tarfile.open(fileobj=io.BytesIO(p.stdout)) as tar:
        names = {n.removeprefix("./") for n in tar.getnames()}
        meta = tar.extractfile("./web1/collect.txt").read().decode()
    assert {"web1", "web1/ip-addr.json", "web1/ip-link.json", "web1/ip-route.json",
            "web1/ip6-route.json", "web1/sysctl.txt", "web1/listen.txt", "web1/uname.txt",
            "web1/skipped.txt"} <= names
    assert "hostname = web1" in meta
    with open(COLLECT, "rb") as script:
        h = subprocess.run(["sh", "-s", "--", "-h"], stdin=script, capture_output=True,
                           text=True, timeout=60)
    assert h.returncode == 0 and h.stdout.startswith("usage: collect ") and "-t" in h.stdout


def test_collect_under_busybox_sh_uses_the_real_ip(drlab_netns, tmp_path):
    """busybox sh runs its own applets first; its ip knows no -j."""
    if shutil.which("busybox") is None or shutil.which("ip") is None:
        pytest.skip("no busybox")
    p = in_ns(drlab_netns, "busybox", "sh", str(COLLECT), "-n", "bb", "-k", "none",
              str(tmp_path))
    assert p.returncode == 0 and "ip-addr.json" not in p.stderr, p.stderr
    assert json.loads((tmp_path / "bb" / "ip-addr.json").read_text())[0]["ifname"] == "lo"


def test_collect_unwritable_outdir_is_one_line_exit_2(tmp_path):
    (tmp_path / "file").write_text("")
    p = subprocess.run(["sh", str(COLLECT), "-k", "none", str(tmp_path / "file" / "out")],
                       capture_output=True, text=True, timeout=60)
    assert p.returncode == 2 and p.stderr.count("\n") == 1, p.stderr
    assert p.stderr.startswith("collect: refusing OUTDIR ") \
        and "file is not a directory" in p.stderr


def test_collect_killed_leaves_no_temporary_files(tmp_path):
    slow = tmp_path / "slow"
    slow.mkdir()
    (slow / "ip").write_text(f'#!/bin/sh\nsleep 1\nexec {shutil.which("ip")} "$@"\n')
    (slow / "ip").chmod(0o755)
    tmpdir = tmp_path / "tmp"
    tmpdir.mkdir()
    env = {"PATH": f"{slow}:{os.environ['PATH']}", "TMPDIR": str(tmpdir)}
    p = subprocess.Popen(["sh", str(COLLECT), "-t", "-n", "x", "-k", "none"], env=env,
                         stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 30
    while not list(tmpdir.iterdir()) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert list(tmpdir.iterdir()), "collect made no temporary directory"
    p.terminate()
    assert p.wait(timeout=30) == 130
    assert not list(tmpdir.iterdir())
