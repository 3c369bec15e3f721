"""scripts/collect, run for real inside lab namespaces: what it writes, what it
skips, and that it changes nothing."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import tarfile
from pathlib import Path

import pytest

from lab.builder import sysctl as sc
from lab.model import Address, Interface, default_dr
from lab.probes.snapshot import COLLECT, collect
from lab.roles import realserver

pytestmark = pytest.mark.netns

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
              "tr", "head", "sed", "cp", "mktemp"):
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
    assert {"web-01.example/ip-addr.json", "web-01.example/sysctl.txt",
            "web-01.example/listen.txt"} <= set(names)


@pytest.mark.parametrize("args, needle", [
    (["-q"], "unknown option -q"),
    (["-n"], "-n needs a value"),
    (["-n", "a/b"], "cannot be empty, contain /"),
    (["a", "b"], "one OUTDIR at most"),
    (["/dev/null/x"], "cannot create /dev/null/x"),
])
def test_collect_bad_input_is_one_line_exit_2(args, needle):
    p = subprocess.run(["sh", str(COLLECT), *args], capture_output=True, text=True,
                       timeout=60)
    assert p.returncode == 2 and len(p.stderr.splitlines()) == 1 and needle in p.stderr, \
        p.stderr
    assert not Path("drlab-collect").exists()


def test_collect_is_posix_sh():
    for shell in ("sh", "dash"):
        if shutil.which(shell):
            assert subprocess.run([shell, "-n", str(COLLECT)]).returncode == 0
