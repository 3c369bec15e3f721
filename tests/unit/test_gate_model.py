"""drlab gate's input (lab.model.gate): sysctl.d as `sysctl --system` reads it, files
recognised by content, HOST patterns, the manifest (links not followed), and the twin
after the change. Pure: no root."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lab.errors import LabError, UsageError
from lab.model import default_dr
from lab.model.gate import (
    FileKind,
    GateFile,
    apply_changes,
    match_hosts,
    parse_apply,
    parse_manifest,
    parse_sysctl_d,
    read_gate_file,
    read_manifest,
    recognise,
)
from lab.model.keepalived import keepalived_dr

SYSCTL = """\
# DR real servers
; old-style comment
net.ipv4.conf.all.arp_ignore = 1
net/ipv4/conf/eth0/arp_announce=2
-net.ipv4.conf.bond0.arp_ignore = 1
net.ipv4.ip_local_port_range =  1024    65000
"""


def test_sysctl_d_as_sysctl_system_reads_it():
    got = [(s.key, s.value, s.optional, s.line) for s in parse_sysctl_d(SYSCTL, "f")]
    assert got == [("net.ipv4.conf.all.arp_ignore", "1", False, 3),
                   ("net.ipv4.conf.eth0.arp_announce", "2", False, 4),
                   ("net.ipv4.conf.bond0.arp_ignore", "1", True, 5),
                   ("net.ipv4.ip_local_port_range", "1024 65000", False, 6)]


@pytest.mark.parametrize("bad", ["arp_ignore 1", "= 1", "net.ipv4.x$y = 1", "-  = 2"])
def test_bad_sysctl_line_is_one_usage_line_naming_it(bad):
    with pytest.raises(UsageError) as e:
        parse_sysctl_d(f"# x\n{bad}\n", "90-dr.conf")
    assert "90-dr.conf:2" in str(e.value) and "\n" not in str(e.value)


def test_files_recognised_by_content():
    assert recognise(SYSCTL, "f") is FileKind.SYSCTL
    assert recognise("# nothing set\n", "f") is FileKind.SYSCTL
    assert recognise(keepalived_dr().keepalived["director"], "f") is FileKind.KEEPALIVED
    assert recognise("# ipvsadm-save -n\n-A -t 192.0.2.100:80 -s rr\n"
                     "-a -t 192.0.2.100:80 -r 192.0.2.11:80 -g -w 1\n", "f") is FileKind.IPVSADM
    with pytest.raises(UsageError, match="neither a sysctl.d"):
        recognise("hello world\n", "notes.txt")


def test_host_patterns_role_name_glob():
    t = default_dr()
    assert match_hosts(t, "rs") == ["rs1", "rs2"]
    assert match_hosts(t, "director") == ["director"]
    assert match_hosts(t, "rs2") == ["rs2"]
    assert match_hosts(t, "r?1") == ["rs1"]
    with pytest.raises(UsageError, match="no role"):
        match_hosts(t, "web*")
    assert parse_apply("rs=a/b.conf") == ("rs", Path("a/b.conf"))
    for bad in ("rs", "=x", "rs="):
        with pytest.raises(UsageError):
            parse_apply(bad)


def _file(tmp_path: Path, name: str, text: str):
    p = tmp_path / name
    p.write_text(text)
    return read_gate_file(p)


def test_sysctl_change_applied_to_a_copy(tmp_path):
    t = default_dr()
    gf = _file(tmp_path, "90.conf", "net.ipv4.conf.all.arp_ignore = 0\n"
               "vm.swappiness = 10\n-net.ipv4.conf.bond0.arp_ignore = 1\n"
               "net.ipv4.conf.*.rp_filter = 2\n")
    a = apply_changes(t, [("rs1", gf)])
    rs1 = a.topology.host("rs1")
    assert rs1.sysctls["net.ipv4.conf.all.arp_ignore"] == "0"
    assert rs1.sysctls["net.ipv4.conf.eth0.rp_filter"] == "2"
    assert "net.ipv4.conf.all.arp_ignore" not in t.host("rs1").sysctls or \
        t.host("rs1").sysctls["net.ipv4.conf.all.arp_ignore"] != "0"
    assert a.hosts == ["rs1"]
    # vm.* is not per namespace: said, not silently dropped; the '-' line is quiet
    assert len(a.notes) == 1 and "vm.swappiness" in a.notes[0] and ":2" in a.notes[0]


def test_keepalived_for_directors_only_and_scripts_stripped(tmp_path):
    t = keepalived_dr()
    conf = t.keepalived["director"].replace(
        "vrrp_instance", "vrrp_script chk {\n script \"/bin/touch /tmp/pwned\"\n}\n"
        "vrrp_instance", 1)
    gf = _file(tmp_path, "keepalived.conf", conf)
    assert gf.kind is FileKind.KEEPALIVED
    a = apply_changes(t, [("director", gf)])
    assert "/tmp/pwned" not in a.topology.keepalived["director"]
    assert any("keepalived.conf" in n for n in a.notes)
    assert "/tmp/pwned" in apply_changes(t, [("director", gf)], allow_scripts=True
                                         ).topology.keepalived["director"]
    with pytest.raises(UsageError, match="for directors"):
        apply_changes(t, [("rs", gf)])


def test_ipvsadm_rules_replace_the_directors_services(tmp_path):
    t = default_dr()
    rs1 = t.host("rs1").interfaces[0].addresses[0].ip
    gf = _file(tmp_path, "rules", f"-A -t 192.0.2.100:80 -s wrr\n"
               f"-a -t 192.0.2.100:80 -r {rs1}:80 -g -w 3\n")
    a = apply_changes(t, [("director", gf)])
    [s] = a.topology.services
    assert (s.scheduler, [(r.host, r.weight) for r in s.real_servers]) == ("wrr", [("rs1", 3)])
    gf = _file(tmp_path, "rules2", "-A -t 192.0.2.100:80 -s rr\n"
               "-a -t 192.0.2.100:80 -r 203.0.113.9:80 -g -w 1\n")
    with pytest.raises(UsageError, match="no address of a host"):
        apply_changes(t, [("director", gf)])


def test_manifest_relative_paths_and_links_not_followed(tmp_path):
    (tmp_path / "sysctl.d").mkdir()
    (tmp_path / "sysctl.d" / "90.conf").write_text("net.ipv4.conf.all.arp_ignore = 1\n")
    (tmp_path / "drlab-gate.toml").write_text(
        'topology = "cluster.toml"\n[apply]\n"rs*" = "sysctl.d/90.conf"\n')
    m = read_manifest(tmp_path / "drlab-gate.toml")
    assert m.topology == str(tmp_path / "cluster.toml")
    [(host, gf)] = m.applies
    assert host == "rs*" and gf.kind is FileKind.SYSCTL
    # a link, at the end or on the way, is refused; so is a way out of the directory
    secret = tmp_path / "secret"
    secret.write_text("net.ipv4.conf.all.arp_ignore = 0\n")
    os.symlink(secret, tmp_path / "sysctl.d" / "link.conf")
    (tmp_path / "real").mkdir()
    os.symlink(tmp_path / "real", tmp_path / "via")
    (tmp_path / "real" / "x.conf").write_text("a = 1\n")
    for rel in ("sysctl.d/link.conf", "via/x.conf", "../secret", "/etc/passwd"):
        (tmp_path / "m.toml").write_text(f'[apply]\nrs = "{rel}"\n')
        with pytest.raises(LabError) as e:
            read_manifest(tmp_path / "m.toml")
        assert "\n" not in str(e.value) and e.value.exit_code == 2, rel


@pytest.mark.parametrize("text", ["[apply", "[apply]\n", "x = 1\n[apply]\nrs = 'a'\n",
                                  "[apply]\nrs = 3\n", "topology = 3\n[apply]\nrs='a'\n"])
def test_bad_manifest_is_one_line(tmp_path, text):
    (tmp_path / "a").write_text("a.b = 1\n")
    (tmp_path / "m.toml").write_text(text)
    with pytest.raises(UsageError) as e:
        read_manifest(tmp_path / "m.toml")
    assert "\n" not in str(e.value)


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet=st.characters(codec="utf-8"), max_size=300))
def test_fuzz_sysctl_d_and_recognise(text):
    """Any text: a result or one bad-input line, never another exception."""
    for f in (lambda: parse_sysctl_d(text, "f"), lambda: recognise(text, "f")):
        try:
            f()
        except UsageError as e:
            assert e.exit_code == 2 and "\n" not in str(e)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(["", "-", " -"]),
                          st.from_regex(r"[a-z0-9_.*/]{1,30}", fullmatch=True),
                          st.text(alphabet="0123456789 -xy", max_size=8)), max_size=8))
def test_fuzz_sysctl_files_apply_or_refuse(lines):
    text = "".join(f"{p}{k} = {v}\n" for p, k, v in lines)
    try:
        parsed = parse_sysctl_d(text, "f")
    except UsageError:
        return

    try:
        apply_changes(default_dr(), [("rs", GateFile("f", FileKind.SYSCTL, text,
                                                      tuple(parsed)))])
    except UsageError as e:
        assert "\n" not in str(e)


@settings(max_examples=200, deadline=None)
@given(st.text(alphabet=st.characters(codec="utf-8"), max_size=200))
def test_fuzz_manifest(text):
    """Any manifest text: a manifest or one bad-input line (its files are looked up
    under a directory that has none)."""
    try:
        parse_manifest(text, Path("/nonexistent-drlab-dir/drlab-gate.toml"))
    except LabError as e:
        assert e.exit_code == 2 and "\n" not in str(e)


def test_what_is_already_so_is_no_change(tmp_path):
    t = default_dr()
    same = "".join(f"{k} = {v}\n" for k, v in t.host("rs1").sysctls.items())
    a = apply_changes(t, [("rs", _file(tmp_path, "same.conf", same or "# none\n"))])
    assert a.hosts == [] and a.sysctls == {}
    k = keepalived_dr()
    # "director" is the role (both directors); a glob names the one
    a = apply_changes(k, [("directo[r]", _file(tmp_path, "k.conf", k.keepalived["director"]))])
    assert a.keepalived == []
