"""keepalived.conf as data: parsing with file:line errors, the lab's own pair, a lab
built around an operator's files (pure; `keepalived -t` where it is installed)."""

import os
import shutil
import subprocess
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lab.errors import TopologyError
from lab.model import topology_from_dict, topology_to_dict
from lab.model.keepalived import (
    keepalived_dr,
    parse,
    parse_tree,
    script_user,
    secure_global_defs,
    strip_scripts,
    topology_from_files,
)

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


# -- scripts: a config someone handed in runs no one's commands ------------------------

HOSTILE = """global_defs {
    router_id lb1
    startup_script /usr/local/sbin/marks up
    @lb1 script_user root
    notify_fifo /etc/motd
    vrrp_notify_fifo_script "/bin/sh -c id"
    net_namespace other
}
$CMD=notify_master
$LONG=a \\
   b
~SEQ(i, 1, 3)
include /etc/keepalived/conf.d/*.conf
vrrp_script chk_haproxy {
    script "/usr/bin/killall -0 haproxy"
    interval 2 { nested }
    weight -20
}
vrrp_track_file tf { file /etc/passwd
    init_file 0 overwrite }
vrrp_instance VI_1 { NOTIFY_MASTER /x ; priority 100 }
vrrp_instance VI_2 {
    state MASTER   # notify_master "/in/a/comment"
    track_script
    {
        chk_haproxy weight -20
    }
    notify "/usr/local/bin/vrrp-notify.sh" root
    notify_deleted
    notify_backup"/glued/to/its/keyword"
    "notify_fault" /quoted/keyword
    auth_pass "a#b"
    virtual_ipaddress {
        192.0.2.100/32 dev eth0
    }
}
virtual_server 192.0.2.100 80 {
    lb_kind DR
    quorum_down "/bin/page-oncall"
    real_server 192.0.2.101 80 {
        MISC_CHECK { misc_path "/usr/bin/curl -f http://x/" }
        notify_up /usr/local/bin/rs-up
        notify_down /usr/local/bin/rs-down
    }
}
SSL {
    key /etc/ssl/private/host.key
}
"""


def test_strip_scripts_removes_whatever_would_run_a_program_or_touch_the_host():
    text, found = strip_scripts(HOSTILE, "lb1/keepalived.conf")
    by_line = {(f.line, f.keyword) for f in found}
    assert by_line == {
        (3, "startup_script"), (5, "notify_fifo"), (6, "vrrp_notify_fifo_script"),
        (7, "net_namespace"), (9, "parameter definition"), (10, "parameter definition"),
        (12, "~SEQ"), (13, "include"), (14, "vrrp_script"), (19, "vrrp_track_file"),
        (21, "notify_master"), (24, "track_script"), (28, "notify"), (30, "notify_backup"),
        (31, "notify_fault"), (39, "quorum_down"), (41, "MISC_CHECK"), (42, "notify_up"),
        (43, "notify_down"), (46, "SSL")}
    for word in ("startup_script", "notify_up", "misc_path", "killall", "curl", "/etc/passwd",
                 "include", "notify_master /x", "vrrp-notify", "page-oncall", "host.key",
                 "net_namespace", "$cmd", "~seq", "fifo", "init_file", "   b", "/x", "/glued",
                 "/quoted"):
        assert word not in text.lower(), word
    # what is left still parses, keeps its other statements and its braces
    tree = parse_tree(text)
    [vi2] = [n for n in tree if n.words == ["vrrp_instance", "VI_2"]]
    assert [n.key for n in vi2.block] == ["state", "notify_deleted", "auth_pass",
                                          "virtual_ipaddress"]
    assert "state MASTER   # notify_master" in text  # an untouched line keeps its text
    [vs] = [n for n in tree if n.key == "virtual_server"]
    assert [n.key for n in vs.first("real_server").block or []] == []
    notes = [f.note() for f in found]
    assert ("lb1/keepalived.conf:24: track_script (chk_haproxy weight -20) removed: the twin "
            "tracks no script: it will not lower this priority (or go FAULT) when a script "
            "fails (--allow-scripts keeps it)") in notes
    assert all("--allow-scripts keeps it" in n and "\n" not in n for n in notes)
    assert strip_scripts(text)[1] == []  # nothing left to find
    clean = FILES[0][1]
    assert strip_scripts(clean) == (clean, [])  # a config without them is untouched


def test_a_line_keepalived_would_cut_in_two_is_removed(tmp_path):
    # fgets() in keepalived's parser reads 1023 bytes: the rest is a statement of its own
    long = "    auth_pass " + "x" * (1023 - 14) + "notify_master /tmp/evil"
    text = f"vrrp_instance V {{\n{long}\n    priority 100\n}}\n"
    out, found = strip_scripts(text, "f.conf")
    assert [(f.line, f.keyword) for f in found] == [(2, "a line over 1022 bytes")]
    assert "evil" not in out and "priority 100" in out
    ok = "    auth_pass " + "x" * 900
    assert strip_scripts(ok)[1] == []


def test_a_users_file_runs_its_scripts_as_a_user_without_privileges(tmp_path):
    from lab.roles.keepalived import run_as, with_notify

    assert script_user(FILES[0][1]) == "root" and run_as(FILES[0][1]) == "nobody"
    assert run_as("global_defs {\n script_user daemon\n}\n") == "daemon"
    assert run_as("global_defs {\n script_user 0\n}\n") == "nobody"
    conf = with_notify(secure_global_defs(FILES[0][1], "nobody"), Path("/run/x/notify d"))
    tree = parse_tree(conf)
    g = [n for n in tree if n.key == "global_defs"]
    assert len(g) == 1 and [n.words for n in g[0].all("script_user")] == [["script_user",
                                                                             "nobody"]]
    assert g[0].first("enable_script_security") is not None
    # only the lab's own reporter runs as root
    [vi] = [n for n in tree if n.key == "vrrp_instance"]
    assert vi.first("notify").words == ["notify", "/run/x/notify d", "root"]
    p = keepalived_t(tmp_path, conf)
    assert p.returncode == 0, p.stderr
    # no global_defs at all: one is added; an @-conditional script_user root goes too
    bare = secure_global_defs("@lb1 script_user root\nvrrp_instance V {\n}\n", "nobody")
    assert bare.startswith("global_defs {") and "script_user root" not in bare


def test_the_labs_own_pair_runs_no_script_as_root():
    for conf in keepalived_dr().keepalived.values():
        assert "script_user root" not in conf and strip_scripts(conf)[1] == []


_WORDS = st.sampled_from(
    ["notify", "notify_master", "NOTIFY_UP", "script", "misc_path", "vrrp_script", "MISC_CHECK",
     "track_script", "include", "startup_script", "@lb1", "@^lb1", "$X=", "$X", "~SEQ(i,1,2)",
     "vrrp_instance", "VI_1", "priority", "100", "{", "}", '"', "#", "!", "\\", "\\#", " ",
     "\t", "\n", "/bin/x", "root", "track_file", "file", "SSL", "key", "net_namespace",
     "notify_fifo", "quorum_up", "real_server", "virtual_server", "global_defs", "a"])


@pytest.mark.parametrize("text", ["notify\\#{notify", "a\\!{ notify /x }", 'x "#"\\#{notify'])
def test_a_changed_line_keeps_its_escaped_comment_characters(text):
    """A statement kept from a changed line is written back with its escaped ``#``/``!``
    (found by the property test below: ``notify\\#{notify`` became ``notify# {``, which
    keepalived reads as ``notify``)."""
    out, found = strip_scripts(text, "f.conf")
    assert found and strip_scripts(out, "f.conf")[1] == []


@settings(max_examples=500, deadline=None)
@given(st.lists(_WORDS, max_size=40).map("".join) | st.text(max_size=200))
def test_nothing_dangerous_survives_stripping(text):
    """Whatever the text: no exception, and what is left holds nothing to strip (so
    keepalived would run nothing of it: the role's refusal uses the same reading)."""
    out, _found = strip_scripts(text, "f.conf")
    assert strip_scripts(out, "f.conf")[1] == []


@settings(max_examples=500, deadline=None)
@given(st.lists(_WORDS, max_size=40).map("".join) | st.text(max_size=200))
def test_a_text_read_at_once_reads_as_statement_by_statement(text):
    """strip_scripts returns a text without any of its keywords (no ``$``, ``~`` or
    long line) as it is, read at once (issue #27: 5,000 virtual_servers). A ``$`` line
    at the end makes it read the text a statement at a time: both readings agree."""
    out, found = strip_scripts(text, "f.conf")
    slow, slow_found = strip_scripts(text + "\n$X", "f.conf")
    assert slow_found[-1].keyword == "parameter definition"
    assert (out, found) == (slow, slow_found[:-1])
