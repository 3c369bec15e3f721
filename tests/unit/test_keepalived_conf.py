"""keepalived.conf as data: parsing with file:line errors, the lab's own pair, a lab
built around an operator's files (pure; `keepalived -t` where it is installed)."""

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from lab.errors import TopologyError
from lab.model import topology_from_dict, topology_to_dict
from lab.model.keepalived import keepalived_dr, parse, parse_tree, topology_from_files

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "keepalived"
FILES = [(str(EXAMPLES / n), (EXAMPLES / n).read_text()) for n in ("master.conf", "backup.conf")]


def keepalived_t(tmp_path, text):
    """``keepalived -t`` of ``text``, which names eth0: keepalived fails a file whose
    interfaces do not exist, and a machine may have no eth0 (a VM without a network,
    interfaces named ens3). As root the check runs in a namespace of its own that has
    one; otherwise here, where eth0 must exist."""
    if shutil.which("keepalived") is None:
        pytest.skip("keepalived is not installed (scripts/bootstrap installs it)")
    f = tmp_path / "k.conf"
    f.write_text(text)
    cmd = ["keepalived", "-t", "-f", str(f)]
    if os.geteuid() == 0:
        cmd = ["unshare", "--net", "--", "sh", "-c",
               'ip link add eth0 type veth peer name drlabchk0 && exec "$@"', "sh", *cmd]
    elif not os.path.exists("/sys/class/net/eth0"):
        pytest.skip("no eth0 here for keepalived -t (as root it gets a namespace with one)")
    return subprocess.run(cmd, capture_output=True, text=True, timeout=60)


def test_parse_the_example():
    c = parse(FILES[0][1], FILES[0][0])
    assert c.router_id == "lvs-a" and c.sync_interface == "eth0"
    [i] = c.instances
    assert (i.name, i.state, i.interface, i.vrid, i.priority, i.vips, i.unicast_src) == (
        "VI_1", "MASTER", "eth0", 51, 150, ["192.0.2.100"], "192.0.2.2")
    [vs] = c.virtual_servers
    assert (vs.vip, vs.port, vs.scheduler, vs.lb_kind, vs.protocol) == (
        "192.0.2.100", 80, "wrr", "DR", "tcp")
    assert [(r.ip, r.port, r.weight, r.check) for r in vs.real_servers] == [
        ("192.0.2.101", 80, 3, "TCP_CHECK"), ("192.0.2.102", 80, 1, "TCP_CHECK")]


def test_braces_on_their_own_lines_quotes_and_comments():
    tree = parse_tree('vrrp_instance A\n{\n  notify "/x y" # c\n  ! all comment\n}\n')
    assert tree[0].words == ["vrrp_instance", "A"] and tree[0].block[0].words == ["notify",
                                                                                   "/x y"]


@pytest.mark.parametrize("text,msg", [
    ("global_defs {\n", "f.conf:1: '{' opened here is never closed"),
    ("}\n", "f.conf:1: unbalanced '}'"),
    ("include /etc/x.conf\n", "f.conf:1: include is not supported"),
    ('notify "unterminated\n', "f.conf:1: No closing quotation"),
    ("virtual_server 192.0.2.100 80 {\n lb_kind NAT\n}\nvrrp_instance V {\n}\n",
     "f.conf:1: lb_kind NAT: only DR is supported"),
    ("virtual_server 192.0.2.100 80 {\n lb_kind DR\n real_server 192.0.2.101 8080 {\n }\n}\n"
     "vrrp_instance V {\n virtual_ipaddress {\n  192.0.2.100\n }\n}\n",
     "f.conf:3: real_server port 8080 differs"),
    ("virtual_server 192.0.2.100 80 {\n lb_kind DR\n}\n", "f.conf: no vrrp_instance"),
    ("virtual_server 10.0.0.x 80 {\n}\n", "f.conf:1: '10.0.0.x' is not an IP address"),
])
def test_bad_files_are_one_line_naming_file_and_line(text, msg):
    with pytest.raises(TopologyError) as e:
        topology_from_files([("f.conf", text)])
    assert msg in str(e.value) and "\n" not in str(e.value)


def test_example_files_make_exactly_their_service():
    t, derived = topology_from_files(FILES)
    svc = t.service
    assert (svc.vip, svc.port, svc.scheduler) == ("192.0.2.100", 80, "wrr")
    assert [(t.primary_ip(r.host), r.weight) for r in svc.real_servers] == [
        ("192.0.2.101", 3), ("192.0.2.102", 1)]
    assert [t.primary_ip(h) for h in ("director", "director2")] == ["192.0.2.2", "192.0.2.3"]
    assert set(t.keepalived) == {"director", "director2"}
    assert t.keepalived["director"] == FILES[0][1]  # run as the operator wrote it
    assert any("LAN 192.0.2.0/24" in d for d in derived)
    assert topology_from_dict(topology_to_dict(t)).keepalived == t.keepalived


def test_any_address_is_allowed_for_a_users_file_only():
    text = FILES[0][1].replace("192.0.2.", "10.20.30.")
    t, derived = topology_from_files([("mine.conf", text)])
    assert "any-address" in t.waive and t.primary_ip("rs1") == "10.20.30.101"
    t.waive = frozenset()
    with pytest.raises(TopologyError, match="outside the documentation ranges"):
        t.validate()


@pytest.mark.parametrize("kw", [{}, {"preempt": False}, {"strict": True, "accept": False},
                                {"strict": True, "accept": True},
                                {"sync": False, "check": None}, {"persistence": 60}])
def test_the_labs_own_pair_passes_keepalived_t(tmp_path, kw):
    t = keepalived_dr(**kw)
    assert set(t.keepalived) == {"director", "director2"}
    for conf in t.keepalived.values():
        p = keepalived_t(tmp_path, conf)
        assert p.returncode == 0, p.stderr
    states = [parse(c).instances[0].state for c in t.keepalived.values()]
    assert states == (["BACKUP", "BACKUP"] if kw.get("preempt") is False or kw.get("strict")
                      else ["MASTER", "BACKUP"])
    assert not any(a.ip == "192.0.2.100" for i in t.host("director").interfaces
                   for a in i.addresses)  # keepalived places the VIP


def test_example_files_pass_keepalived_t(tmp_path):
    for _src, text in FILES:
        p = keepalived_t(tmp_path, text)
        assert p.returncode == 0, p.stderr
