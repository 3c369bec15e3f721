"""Every parser of files handed in, on crafted and on generated input: a result, or the
project's bad-input error (one line: the CLI prints it and exits 2), never another
exception; nothing of the input makes a line of its own in the output; files are read
as regular files only, never through a link (#23 items 4 and 6). No root."""

from __future__ import annotations

import json
import os
import re
import shlex
import signal
import subprocess
import sys
import tomllib
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lab.errors import TopologyError
from lab.model import default_dr, load_topology, topology_from_dict, topology_to_dict
from lab.model.collected import (
    import_cluster,
    parse_ipvsadm,
    parse_json,
    parse_keyvalues,
    parse_links,
    parse_listen,
    parse_routes,
    parse_sysctls,
)
from lab.model.files import MAX_BYTES, read_text, shown
from lab.model.keepalived import parse as parse_keepalived
from lab.model.keepalived import tokenize
from lab.model.writer import dump, to_toml

REPO = Path(__file__).resolve().parents[2]
VIP = "192.0.2.100"
BAD_CHARS = ["\n", "\r", "\x00", "\x1b", "\x85", "\u2028", "\u202e", "\udcff"]

# -- a small collected cluster: one director (IPVS, keepalived), two real servers ------


def _iface(name: str, cidrs: list[str], **more: object) -> dict:
    info = [{"family": "inet", "local": c.split("/")[0], "prefixlen": int(c.split("/")[1]),
             "scope": "host" if name == "lo" else "global"} for c in cidrs]
    return {"ifname": name, "flags": ["UP", "LOWER_UP"], "mtu": 1500,
            "link_type": "loopback" if name == "lo" else "ether", "addr_info": info} | more


KEEPALIVED = f"""global_defs {{
    router_id lvs
}}
vrrp_instance VI_1 {{
    state MASTER
    interface eth0
    virtual_router_id 51
    priority 150
    virtual_ipaddress {{
        {VIP}/32 dev eth0
    }}
}}
virtual_server {VIP} 80 {{
    lb_algo rr
    lb_kind DR
    protocol TCP
    real_server 192.0.2.101 80 {{
        weight 1
    }}
    real_server 192.0.2.102 80 {{
        weight 2
    }}
}}
"""


def host_files(name: str) -> dict[str, str]:
    """The files scripts/collect writes for ``name`` (lvs, web1 or web2)."""
    if name == "lvs":
        ifaces = [_iface("lo", ["127.0.0.1/8"]), _iface("eth0", ["192.0.2.2/24"])]
    else:
        n = int(name[-1])
        ifaces = [_iface("lo", ["127.0.0.1/8", f"{VIP}/32"]),
                  _iface("eth0", [f"192.0.2.{100 + n}/24"])]
    files = {
        "ip-addr.json": json.dumps(ifaces),
        "ip-link.json": json.dumps([{"ifname": i["ifname"], "flags": i["flags"],
                                     "linkinfo": {"info_kind": "veth"}}
                                    for i in ifaces if i["ifname"] != "lo"]),
        "ip-route.json": json.dumps([
            {"dst": "default", "gateway": "192.0.2.1", "dev": "eth0", "flags": []},
            {"dst": "192.0.2.0/24", "dev": "eth0", "protocol": "kernel", "scope": "link",
             "table": "main"}]),
        "sysctl.txt": "net.ipv4.conf.all.arp_ignore = 1\nnet.ipv4.conf.all.arp_announce = 2\n"
                      "net.ipv4.ip_forward = 0\n",
        "collect.txt": f"hostname = {name}\ndate = 2024-05-01T10:00:00Z\n",
        "uname.txt": "6.1.0-18-amd64\n",
        "skipped.txt": "keepalived.conf: not found\n",
    }
    if name == "lvs":
        files["ipvsadm-save.txt"] = (f"-A -t {VIP}:80 -s rr\n"
                                     f"-a -t {VIP}:80 -r 192.0.2.101:80 -g -w 1\n"
                                     f"-a -t {VIP}:80 -r 192.0.2.102:80 -g -w 2\n")
        files["keepalived.conf"] = KEEPALIVED
    else:
        files["listen.txt"] = "tcp LISTEN 0 511 0.0.0.0:80 0.0.0.0:*\n"
    return files


def write_cluster(root: Path, changes: dict[tuple[str, str], str | bytes | None] | None = None
                  ) -> Path:
    """The cluster in ``root``, with ``changes``: (host, file) -> new content (None:
    no such file)."""
    changes = changes or {}
    for host in ("lvs", "web1", "web2"):
        (root / host).mkdir(parents=True)
        files: dict[str, str | bytes | None] = dict(host_files(host))
        files |= {f: v for (h, f), v in changes.items() if h == host}
        for f, v in files.items():
            if isinstance(v, bytes):
                (root / host / f).write_bytes(v)
            elif v is not None:
                (root / host / f).write_text(v, errors="surrogateescape")
    return root


def cli_import(d: Path) -> str:
    """What ``drlab import DIR -o -`` does (lab.cli.cluster.cmd_import), in this
    process: the text written, or TopologyError."""
    imp = import_cluster([d])
    data = topology_to_dict(imp.topology, full=True)   # (the twin as its file holds it)
    topology_from_dict(data)
    text = "".join(f"# {n}\n" for n in imp.notes) + dump(imp.topology)
    for n in imp.notes:
        assert n.isprintable(), n
    # nothing of the input made a line of its own: the TOML reads back as the data
    assert all(c.isprintable() or c == "\n" for c in text), repr(text)
    assert tomllib.loads(text) == data
    assert all(re.fullmatch(r"[a-z][a-z0-9]{0,9}", h) for h in data["hosts"])
    return text


def outcome(d: Path) -> str:
    """"ok" or the one-line error; any other exception fails the test."""
    try:
        cli_import(d)
    except TopologyError as e:
        msg = str(e)
        assert msg.isprintable(), repr(msg)   # one line, no control character
        assert len(msg) < 1000
        return msg
    return "ok"


def test_the_base_cluster_imports(tmp_path):
    assert outcome(write_cluster(tmp_path / "c")) == "ok"


# -- the crafted corpus -------------------------------------------------------------------

def _addr(**entry: object) -> str:
    return json.dumps([_iface("lo", ["127.0.0.1/8", f"{VIP}/32"]),
                       _iface("eth0", ["192.0.2.101/24"]) | entry])


def _addr_info(**a: object) -> str:
    return json.dumps([_iface("eth0", ["192.0.2.101/24"]) | {
        "addr_info": [{"family": "inet", "local": "192.0.2.101", "prefixlen": 24} | a]}])


def _route(**r: object) -> str:
    return json.dumps([{"dst": "default", "gateway": "192.0.2.1", "dev": "eth0"} | r])


def _ipvs(line: str) -> str:
    return f"-A -t {VIP}:80 -s rr\n" + line + "\n"


DEEP_JSON = "[" * 100_000 + "]" * 100_000
HUGE = "9" * 5000
SECRET = "s3cr3t-0f-r00t"

#: (file of web1, its content): the shapes of #23 and more
CORPUS: list[tuple[str, str | bytes]] = [
    # JSON of the wrong type at each level
    ("ip-addr.json", "{}"), ("ip-addr.json", "[5]"), ("ip-addr.json", '"x"'),
    ("ip-addr.json", _addr(ifname=5)), ("ip-addr.json", _addr(ifname=["eth0"])),
    ("ip-addr.json", _addr(ifname="")), ("ip-addr.json", _addr(ifname=None)),
    ("ip-addr.json", _addr(flags=5)), ("ip-addr.json", _addr(flags="NOARP")),
    ("ip-addr.json", _addr(flags=[1, 2])), ("ip-addr.json", _addr(flags={"NOARP": 1})),
    ("ip-addr.json", _addr(mtu="1500")), ("ip-addr.json", _addr(mtu=10**30)),
    ("ip-addr.json", _addr(mtu=True)), ("ip-addr.json", _addr(mtu=1.5)),
    ("ip-addr.json", _addr(addr_info=5)), ("ip-addr.json", _addr(addr_info={"local": VIP})),
    ("ip-addr.json", _addr(addr_info=[5, None, []])), ("ip-addr.json", _addr(link_type=[1])),
    ("ip-addr.json", _addr_info(local=5)), ("ip-addr.json", _addr_info(local=["192.0.2.1"])),
    ("ip-addr.json", _addr_info(local=None)), ("ip-addr.json", _addr_info(prefixlen="24x")),
    ("ip-addr.json", _addr_info(prefixlen=999)), ("ip-addr.json", _addr_info(prefixlen=True)),
    ("ip-addr.json", _addr_info(prefixlen=[24])), ("ip-addr.json", _addr_info(scope=["x"])),
    ("ip-addr.json", _addr_info(scope={"a": 1})),
    ("ip-link.json", "[5]"), ("ip-link.json", '[{"ifname": "eth0", "linkinfo": "bond"}]'),
    ("ip-link.json", '[{"ifname": "eth0", "linkinfo": {"info_kind": 5}}]'),
    ("ip-link.json", '[{"ifname": "eth0", "flags": 5}]'),
    ("ip-link.json", '[{"ifname": ["eth0"]}]'),
    ("ip-route.json", _route(dev=["eth0"])), ("ip-route.json", _route(dev=5)),
    ("ip-route.json", _route(dev="eth0\n[hosts.injected]\nrole = \"client\"")),
    ("ip-route.json", _route(dev="eth9\n[hosts.injected]\nrole = \"client\"")),
    ("ip-route.json", _route(dst=5)), ("ip-route.json", _route(dst=["default"])),
    ("ip-route.json", _route(gateway=5)), ("ip-route.json", _route(gateway=True)),
    ("ip-route.json", _route(gateway=["192.0.2.1"])), ("ip-route.json", _route(table=[1])),
    ("ip-route.json", _route(table=254)), ("ip-route.json", _route(nexthops="x")),
    ("ip-route.json", _route(type={})), ("ip-route.json", _route(protocol=5)),
    ("ip-route.json", "[1]"), ("ip6-route.json", '[{"dst": {}}]'),
    # deep nesting, huge numbers, NUL bytes, non-UTF-8
    ("ip-addr.json", DEEP_JSON), ("ip-route.json", DEEP_JSON), ("ip-link.json", DEEP_JSON),
    ("ip-addr.json", f"[{HUGE}]"), ("ip-addr.json", _addr(mtu=int("9" * 400))),
    ("ip-addr.json", "[1e999999]"), ("ip-addr.json", "\x00"),
    ("ip-addr.json", _addr(ifname="eth\x000")), ("ip-addr.json", b"\xff\xfe[]"),
    ("ip-addr.json", _addr().encode() + b"\xff"),
    # unicode digits, where isdigit() says yes and int() says no (or yes, wrongly)
    ("ipvsadm-save.txt", _ipvs(f"-a -t {VIP}:80 -r 192.0.2.101:80 -g -w \u00b2")),
    ("ipvsadm-save.txt", _ipvs(f"-a -t {VIP}:80 -r 192.0.2.101:80 -g -w \u0661\u0662")),
    ("ipvsadm-save.txt", "-A -t 192.0.2.100:8\u00b2 -s rr\n"),
    ("ipvsadm-save.txt", "-A -f \u00b2 -s rr\n"), ("ipvsadm-save.txt", "-A -f \u0661 -s rr\n"),
    ("ipvsadm-save.txt", f"-A -t {VIP}:80 -s rr -p \u00b2\n"),
    ("ipvsadm-save.txt", f"-A -t {VIP}:{HUGE} -s rr\n"),
    ("ipvsadm-save.txt", _ipvs(f"-a -t {VIP}:80 -r 192.0.2.101:80 -g -w {HUGE}")),
    ("ipvsadm-save.txt", f"-A -f {HUGE} -s rr\n"),
    ("ipvsadm-save.txt", f"-A -t {VIP}:80 -s rr -M 255.255.255.0\x01\n"),
    ("ipvsadm-save.txt", f"-A -t {VIP}:80 -s rr --foo\x1b[31m\n"),
    ("ipvsadm-save.txt", f"-A -t {VIP}:80 -s rr -b sh-port\x07\n"),
    ("ipvsadm-save.txt", "\x00\n"), ("ipvsadm-save.txt", b"-A -t \xff:80\n"),
    ("listen.txt", "tcp LISTEN 0 511 0.0.0.0:\u00b2 0.0.0.0:*\n"),
    ("listen.txt", "tcp LISTEN 0 511 0.0.0.0:\u0668\u0660 0.0.0.0:*\n"),
    ("listen.txt", f"tcp LISTEN 0 511 0.0.0.0:{HUGE} 0.0.0.0:*\n"),
    ("listen.txt", "tcp LISTEN 0 511 \x00:80 *\n"), ("listen.txt", b"\xff\xfe\x00"),
    ("sysctl.txt", "net.ipv4.conf.all.arp_ignore = 1\x1b[2J\n"),
    ("sysctl.txt", "net.ipv4.conf.all.arp_ignore = \u0661\n"),
    ("sysctl.txt", "net.ipv4.conf.all.arp_ignore\x01 = 1\n"),
    ("sysctl.txt", f"net.ipv4.conf.all.arp_ignore = {HUGE}\n"),
    ("collect.txt", "hostname = web\x01\n"), ("collect.txt", "hostname = web 1\n"),
    ("collect.txt", "hostname = w\u00e9b\n"), ("collect.txt", "hostname = web\u2028[x]\n"),
    ("uname.txt", "6.1\n[hosts.injected]\n\x00\x1b]0;x\x07"), ("uname.txt", "\u2028" * 10),
    ("uname.txt", "x" * 100_000),
    ("skipped.txt", "listen.txt: \x1b[2J\x1b[H cleared\n[hosts.injected]\n"),
    ("skipped.txt", b"\xff\xfe paths\n"),
]
LVS_CORPUS: list[tuple[str, str | bytes]] = [
    ("keepalived.conf", "a {\n" * 20_000), ("keepalived.conf", "{" * 100_000),
    ("keepalived.conf", KEEPALIVED + "a {\n" * 20_000 + "}\n" * 20_000),
    ("keepalived.conf", KEEPALIVED.replace("weight 2", "weight 2\n" + "x {" * 20_000
                                           + "}" * 20_000)),
    ("keepalived.conf", KEEPALIVED.replace("priority 150", "priority \u00b2")),
    ("keepalived.conf", KEEPALIVED.replace("priority 150", "priority \u0661\u0665\u0660")),
    ("keepalived.conf", KEEPALIVED.replace("priority 150", f"priority {HUGE}")),
    ("keepalived.conf", KEEPALIVED.replace(f"{VIP} 80", f"{VIP} {HUGE}")),
    ("keepalived.conf", KEEPALIVED.replace("VI_1", "VI\x00\x1b_1")),
    ("keepalived.conf", KEEPALIVED.replace("VI_1", '"VI 1\n')),
    ("keepalived.conf", KEEPALIVED.replace("lb_algo rr", "lb_algo \u202err")),
    ("keepalived.conf", KEEPALIVED.replace("TCP", "T\x01CP")),
    ("keepalived.conf", KEEPALIVED.encode() + b"\n# \xff\xfe latin-1 comment\n"),
    ("keepalived.conf", KEEPALIVED.replace("eth0", "'''\n[hosts.injected]")),
    ("ipvsadm-save.txt", f"-A -t {VIP}:80 -s rr --pe sip\x1b[2J\n"),
]


@contextmanager
def _deadline(seconds: int) -> Iterator[None]:
    """A read that hangs (a FIFO) fails the test instead of hanging the suite."""
    def boom(*_: object) -> None:
        raise AssertionError(f"still reading after {seconds} s")

    old = signal.signal(signal.SIGALRM, boom)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)


@pytest.mark.parametrize("host,fname,content", [("web1", f, c) for f, c in CORPUS]
                         + [("lvs", f, c) for f, c in LVS_CORPUS],
                         ids=lambda v: v if isinstance(v, str) and len(v) < 20 else "")
def test_corpus_gives_a_result_or_one_line(tmp_path, host, fname, content):
    d = write_cluster(tmp_path / "c", {(host, fname): content})
    msg = outcome(d)
    if msg != "ok":
        assert msg.startswith("invalid topology: "), msg


@pytest.mark.parametrize("field", ["ifname", "link_type", "local", "info_kind", "dst",
                                   "gateway", "dev", "protocol", "type", "table", "scope",
                                   "hostname", "uname", "skipped", "sysctl", "ipvs-pe",
                                   "listen", "ka-name", "ka-iface", "dirname"])
def test_control_characters_in_every_string_field(tmp_path, field):
    """Each character that could start a line of its own or hide text, in each field
    the import reads: never a line of its own in what is written (or printed)."""
    for k, ch in enumerate(BAD_CHARS):
        if field == "dirname" and ch == "\x00":
            continue    # no file name holds one
        changes: dict[tuple[str, str], str | bytes | None] = {}
        if field in ("ifname", "link_type"):
            changes[("web1", "ip-addr.json")] = _addr(**{field: f"eth{ch}0"})
        elif field in ("local", "scope"):
            changes[("web1", "ip-addr.json")] = _addr_info(**{field: f"192.0.2.101{ch}"})
        elif field == "info_kind":
            changes[("web1", "ip-link.json")] = json.dumps(
                [{"ifname": "eth0", "linkinfo": {"info_kind": f"bond{ch}x"}}])
        elif field in ("dst", "gateway", "dev", "protocol", "type", "table"):
            changes[("web1", "ip-route.json")] = _route(**{field: f"eth0{ch}[hosts.x]"})
        elif field == "hostname":
            changes[("web1", "collect.txt")] = f"hostname = web{ch}1\n"
        elif field == "uname":
            changes[("web1", "uname.txt")] = f"6.1{ch}[hosts.x]\n"
        elif field == "skipped":
            changes[("web1", "skipped.txt")] = f"listen.txt: {ch}[hosts.x]\n"
        elif field == "sysctl":
            changes[("web1", "sysctl.txt")] = f"net.ipv4.conf.all.arp_ignore = 1{ch}2\n"
        elif field == "ipvs-pe":
            changes[("lvs", "ipvsadm-save.txt")] = f"-A -t {VIP}:80 -s rr --pe s{ch}ip\n"
        elif field == "listen":
            changes[("web1", "listen.txt")] = f"tcp LISTEN 0 5 0.0.0.0:80{ch} *\n"
        elif field == "ka-name":
            changes[("lvs", "keepalived.conf")] = KEEPALIVED.replace("VI_1", f"VI{ch}1")
        elif field == "ka-iface":
            changes[("lvs", "keepalived.conf")] = KEEPALIVED.replace("eth0", f"eth0{ch}")
        elif field == "dirname":
            changes[("web1", "collect.txt")] = None
        root = tmp_path / str(k)
        d = write_cluster(root / "c", changes)
        if field == "dirname":
            os.rename(d / "web1", os.fsencode(d) + os.fsencode("/web" + ch + "1"))
        outcome(d)


# -- the CLI: one line on stderr, exit 2, no traceback --------------------------------

@pytest.mark.parametrize("fname,content", [
    ("ip-route.json", _route(dev="eth9\n[hosts.injected]\nrole = \"client\"")),
    ("ip-addr.json", DEEP_JSON),
])
def test_drlab_import_says_one_line_and_exits_2(tmp_path, fname, content):
    d = write_cluster(tmp_path / "c", {("web1", fname): content})
    out = tmp_path / "out.toml"
    p = subprocess.run([sys.executable, "-m", "lab", "import", str(d), "-o", str(out)],
                       capture_output=True, text=True, cwd=REPO, timeout=120,
                       env=dict(os.environ, PYTHONPATH=str(REPO)))
    assert "Traceback" not in p.stderr
    assert p.returncode == 2, p.stderr
    assert p.stderr.count("\n") == 1 and p.stderr.startswith("drlab: error: "), p.stderr
    assert not out.exists()


@pytest.mark.parametrize("kind", ["non-utf-8", "fifo"])
def test_drlab_up_keepalived_file_says_one_line_and_exits_2(tmp_path, kind):
    """The file is read before anything needs root or IPVS."""
    f = tmp_path / "keepalived.conf"
    if kind == "fifo":
        os.mkfifo(f)
    else:
        # (no virtual_server either: refused before anything is built, IPVS or not)
        f.write_bytes(b"global_defs {\n    router_id \xff\xfe\n}\n")
    p = subprocess.run([sys.executable, "-m", "lab", "up", "--keepalived", str(f)],
                       capture_output=True, text=True, cwd=REPO, timeout=120,
                       env=dict(os.environ, PYTHONPATH=str(REPO)))
    assert "Traceback" not in p.stderr
    assert p.returncode == 2, p.stderr
    assert p.stderr.count("\n") == 1 and p.stderr.startswith("drlab: error: "), p.stderr


# -- files: regular ones only, never through a link, at most 16 MiB -------------------

@pytest.mark.parametrize("fname", ["uname.txt", "skipped.txt", "ip-addr.json", "sysctl.txt",
                                   "keepalived.conf"])
def test_a_link_in_a_collected_directory_is_refused(tmp_path, fname):
    secret = tmp_path / "secret"
    secret.write_text(f"{SECRET}\n")
    d = write_cluster(tmp_path / "c")
    (d / "web1" / fname).unlink(missing_ok=True)
    (d / "web1" / fname).symlink_to(secret)
    with pytest.raises(TopologyError, match=rf"web1/{fname}: a symbolic link: refused") as e:
        cli_import(d)
    assert SECRET not in str(e.value)


def test_a_host_directory_that_is_a_link_is_refused(tmp_path):
    d = write_cluster(tmp_path / "c")
    os.rename(d / "web2", tmp_path / "elsewhere")
    (d / "web2").symlink_to(tmp_path / "elsewhere")
    with pytest.raises(TopologyError, match=r"web2: a symbolic link to a directory: refused"):
        cli_import(d)
    with pytest.raises(TopologyError, match=r"web2: a symbolic link, not a directory"):
        import_cluster([d / "web2"])


def test_a_fifo_or_a_directory_does_not_hang_the_import(tmp_path):
    d = write_cluster(tmp_path / "c")
    (d / "web1" / "uname.txt").unlink()
    os.mkfifo(d / "web1" / "uname.txt")      # a writer never comes
    (d / "web1" / "skipped.txt").unlink()
    (d / "web1" / "skipped.txt").mkdir()
    with _deadline(20), pytest.raises(TopologyError, match=r"web1/uname.txt: a FIFO: refused"):
        cli_import(d)
    (d / "web1" / "uname.txt").unlink()
    with pytest.raises(TopologyError, match=r"web1/skipped.txt: a directory: refused"):
        cli_import(d)


def test_a_file_over_16_mib_is_refused(tmp_path):
    d = write_cluster(tmp_path / "c")
    with open(d / "web1" / "skipped.txt", "ab") as f:
        f.truncate(MAX_BYTES + 1)            # sparse: no 16 MiB written
    with pytest.raises(TopologyError, match=r"web1/skipped.txt: 16777217 bytes: larger "
                                            r"than the 16 MiB a file handed in may have"):
        cli_import(d)
    with open(d / "web1" / "skipped.txt", "r+b") as f:
        f.truncate(MAX_BYTES)
    assert len(read_text(d / "web1" / "skipped.txt")) == MAX_BYTES


def test_the_topology_file_named_may_be_a_link_but_not_a_fifo(tmp_path):
    (tmp_path / "real.toml").write_text(to_toml(topology_to_dict(default_dr())))
    (tmp_path / "t.toml").symlink_to(tmp_path / "real.toml")
    assert load_topology(tmp_path / "t.toml").service is not None
    os.mkfifo(tmp_path / "f.toml")
    with _deadline(20), pytest.raises(TopologyError, match=r"f.toml: a FIFO: refused"):
        load_topology(tmp_path / "f.toml")


@pytest.mark.parametrize("content", [
    b"a = " + b"[" * 100_000, b"a = " + b"{x=" * 100_000, b"a = " + HUGE.encode(),
    b'name = "\xff"\n', b"\x00", b'[hosts."a\\nb"]\nrole = "client"\n',
    b'[hosts.c]\nrole = "client"\nlabel = "\\u2028\\u001b"\n',
    b'[hosts.c]\nrole = ["' + b"x" * 100_000 + b'"]\n',
])
def test_topology_file_corpus(tmp_path, content):
    p = tmp_path / "t.toml"
    p.write_bytes(content)
    with pytest.raises(TopologyError) as e:
        load_topology(p)
    assert str(e.value).isprintable() and len(str(e.value)) < 1000, str(e.value)


def test_to_toml_escapes_every_character_that_is_not_printable():
    data = {"name": "x", "hosts": {"a\nb": {"label": "".join(BAD_CHARS[:-1]) + "\U000e0001"}},
            "keepalived": {"d": "line\n\u2028[hosts.injected]\n"}}
    text = to_toml(data)
    assert all(c.isprintable() or c == "\n" for c in text)
    assert tomllib.loads(text) == data
    with pytest.raises(TopologyError, match="not Unicode text"):
        to_toml({"name": "\udcff"})
    assert shown("a\nb\x00\u202e\udcff") == "a\\nb\\x00\\u202e\\udcff"


# -- property tests: every parser, any input --------------------------------------------

def _never_crashes(f: Callable[[], object]) -> None:
    try:
        f()
    except TopologyError as e:
        assert str(e).isprintable(), repr(str(e))


json_values = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(), st.floats(),
              st.text(max_size=12), st.sampled_from(
                  ["eth0", "lo", "192.0.2.1", "192.0.2.0/24", "2001:db8::1", "default", "main",
                   "kernel", "unicast", "NOARP", "global", "host", "link", "loopback",
                   "dummy", "24", "eth0\n"])),
    lambda c: st.one_of(st.lists(c, max_size=4), st.dictionaries(st.sampled_from(
        ["ifname", "flags", "mtu", "link_type", "addr_info", "local", "prefixlen", "scope",
         "linkinfo", "info_kind", "dst", "gateway", "dev", "protocol", "type", "table",
         "nexthops"]), c, max_size=6)), max_leaves=20)
entries = st.lists(st.dictionaries(st.sampled_from(
    ["ifname", "flags", "mtu", "link_type", "addr_info", "linkinfo", "dst", "gateway", "dev",
     "protocol", "type", "table", "nexthops"]), json_values, max_size=6), max_size=4)


def _lines(words: list[str]) -> st.SearchStrategy[str]:
    word = st.one_of(st.sampled_from(words), st.text(max_size=6),
                     st.sampled_from(["\u00b2", "\u0661", "9" * 30, "\x00", "\n", "\u2028"]))
    return st.lists(st.lists(word, max_size=8).map(" ".join), max_size=8).map("\n".join)


@settings(max_examples=150, deadline=None)
@given(st.one_of(st.text(max_size=200), json_values.map(json.dumps)))
def test_parse_json_any_text(text):
    _never_crashes(lambda: parse_json(text, "ip-addr.json"))


@settings(max_examples=80, deadline=None)
@given(entries, st.one_of(st.none(), entries))
def test_parse_links_any_entries(addrs, links):
    _never_crashes(lambda: parse_links(addrs, links))


@settings(max_examples=80, deadline=None)
@given(entries)
def test_parse_routes_any_entries(routes):
    _never_crashes(lambda: parse_routes(routes, "ip-route.json"))


@settings(max_examples=150, deadline=None)
@given(_lines(["net.ipv4.conf.all.arp_ignore", "=", "1", "#", ";", "a.b/c", "- 1"]))
def test_parse_sysctls_any_text(text):
    _never_crashes(lambda: parse_sysctls(text))


@settings(max_examples=200, deadline=None)
@given(_lines(["-A", "-a", "-t", "-u", "-f", "-s", "rr", "wlc", "-p", "-M", "-r", "-g", "-m",
               "-w", "-6", "-b", "--pe", "-o", "-x", "1", "80", "0", "4294967296",
               f"{VIP}:80", "192.0.2.101:80", "[2001:db8::1]:80", "2001:db8::1",
               "255.255.255.0", "--tun-csum"]))
def test_parse_ipvsadm_any_text(text):
    _never_crashes(lambda: parse_ipvsadm(text))


@settings(max_examples=150, deadline=None)
@given(_lines(["tcp", "udp", "LISTEN", "UNCONN", "0", "511", "0.0.0.0:80", "*:53", "[::]:80",
               "[::ffff:192.0.2.1]:80", "[fe80::1%eth0]:22", "127.0.0.1:*", "*:*", ":80"]))
def test_parse_listen_any_text(text):
    _never_crashes(lambda: parse_listen(text))


@settings(max_examples=100, deadline=None)
@given(st.text(max_size=200))
def test_parse_keyvalues_any_text(text):
    _never_crashes(lambda: parse_keyvalues(text))


@settings(max_examples=200, deadline=None)
@given(_lines(["{", "}", "vrrp_instance", "VI_1", "virtual_server", "real_server", "fwmark",
               "virtual_ipaddress", VIP, "192.0.2.101", "80", "priority", "weight",
               "virtual_router_id", "persistence_timeout", "lb_algo", "rr", "lb_kind", "DR",
               "global_defs", "lvs_sync_daemon", "unicast_src_ip", "'", '"', "#", "!",
               "include", "TCP_CHECK", "protocol", "UDP"]))
def test_parse_keepalived_any_text(text):
    _never_crashes(lambda: parse_keepalived(text, "keepalived.conf"))


@settings(max_examples=100, deadline=None)
@given(st.binary(max_size=300))
def test_load_topology_any_bytes(tmp_path_factory, raw):
    p = tmp_path_factory.mktemp("t") / "t.toml"
    p.write_bytes(raw)
    _never_crashes(lambda: load_topology(p))


FILES = sorted({f for h in ("lvs", "web1") for f in host_files(h)} | {"ip6-route.json"})


@settings(max_examples=60, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(st.data())
def test_import_end_to_end_any_files(tmp_path_factory, data):
    """A collected cluster with one to three files replaced by anything: a JSON value
    of any shape, any text, any bytes, or nothing."""
    changes: dict[tuple[str, str], str | bytes | None] = {}
    for _ in range(data.draw(st.integers(1, 3))):
        host = data.draw(st.sampled_from(["lvs", "web1", "web2"]))
        fname = data.draw(st.sampled_from(FILES))
        base = host_files(host).get(fname, "")
        changes[(host, fname)] = data.draw(st.one_of(
            json_values.map(json.dumps), entries.map(json.dumps), st.text(max_size=200),
            st.binary(max_size=100), st.none(),
            # the file as collected, one character changed or added
            st.tuples(st.integers(0, max(0, len(base) - 1)), st.characters()).map(
                lambda t, b=base: b[:t[0]] + t[1] + b[t[0] + 1:])))
    outcome(write_cluster(tmp_path_factory.mktemp("c"), changes))


def _shlex_words(text: str) -> list[tuple[int, list[str]]] | None:
    out = []
    for n, raw in enumerate(text.splitlines(), 1):
        lex = shlex.shlex(raw.replace("{", " { ").replace("}", " } "), posix=True)
        lex.whitespace_split = True
        lex.commenters = "#!"
        try:
            words = list(lex)
        except ValueError:
            return None
        if words:
            out.append((n, words))
    return out


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet=st.sampled_from(list("ab1{}#!'\"\\ \t\r\n\x00\x0b\x1c\x85\xa0\u2028")),
               max_size=40))
def test_keepalived_words_are_shlex_words(text):
    """tokenize's fast path (lines without quotes) splits as shlex does."""
    want = _shlex_words(text)
    if want is None:
        with pytest.raises(TopologyError):
            tokenize(text, "keepalived.conf")
    else:
        assert tokenize(text, "keepalived.conf") == want
