"""The drlab CLI as a user runs it: a subprocess, real kernel, real errors."""

import json
import os
import shutil
import stat
import subprocess
import sys
import tempfile
from contextlib import contextmanager
from pathlib import Path

import cli_runner
import pytest

from lab.builder import ownership
from lab.machine.preflight import ipvs_available

REPO = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.subprocess


def drlab(*args, env=None, user=None, python=sys.executable, root=REPO):
    """Run ``python -m lab ARGS`` with ``root`` (holding the lab package) as PYTHONPATH
    and working directory (in the VM part of the suite, this repository's commands go
    to a warm interpreter: tests/integration/cli_runner.py)."""
    if user is None and python == sys.executable and root == REPO:
        return cli_runner.run(*args, env=env)
    cmd = [python, "-m", "lab", *args]
    if user is not None:
        cmd = ["setpriv", f"--reuid={user}", f"--regid={user}", "--clear-groups", *cmd]
    e = dict(os.environ, PYTHONPATH=str(root))
    e.update(env or {})
    return subprocess.run(cmd, capture_output=True, text=True, env=e, cwd=root, timeout=600)


@contextmanager
def lab_copy_for_others():
    """A copy of the lab package (its .py files) that every user can read, removed after.

    The checkout may sit where other users cannot read it (a clone in root's 0700
    home, a mktemp -d directory): a test that runs as another user needs this."""
    root = Path(tempfile.mkdtemp(prefix="drlab-others-", dir="/tmp"))  # 0700
    try:
        root.chmod(0o755)
        for d in (root, *root.parents):
            assert d.stat().st_mode & stat.S_IXOTH, f"{d} is not traversable by other users"
        for src in sorted((REPO / "lab").rglob("*.py")):
            dst = root / src.relative_to(REPO)
            for d in reversed(dst.relative_to(root).parents[:-1]):  # lab, lab/builder, ...
                (root / d).mkdir(exist_ok=True)
                (root / d).chmod(0o755)
            shutil.copyfile(src, dst)
            dst.chmod(0o644)
        yield root
    finally:
        shutil.rmtree(root)


def leftovers():
    """Namespaces no live lab owns and records of dead owners (xdist-safe)."""
    return ownership.orphans()


def test_bad_topology_file_is_one_line_exit_2_and_leaves_nothing(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text((REPO / "examples/dr.toml").read_text().replace("192.0.2.101/24",
                                                                   "10.9.9.9/24"))
    p = drlab("demo", "--topology", str(bad))
    assert p.returncode == 2
    assert p.stderr.count("\n") == 1
    assert p.stderr.startswith("drlab: error: invalid topology: ")
    assert "10.9.9.9/24 is outside the documentation ranges" in p.stderr
    assert leftovers() == []


def test_not_root_is_one_line_exit_3():
    if os.geteuid() == 0:
        if not shutil.which("setpriv") or not os.access("/usr/bin/python3", os.X_OK):
            pytest.skip("needs setpriv and /usr/bin/python3 to drop root")
        with lab_copy_for_others() as root:
            p = drlab("demo", user=65534, python="/usr/bin/python3", root=root,
                      env={"PYTHONDONTWRITEBYTECODE": "1"})
    else:
        p = drlab("demo")
    assert p.returncode == 3, p.stderr
    assert p.stderr == ("drlab: error: must run as root (network namespaces and IPVS need "
                        "CAP_SYS_ADMIN and CAP_NET_ADMIN): try sudo\n")


@pytest.mark.netns
def test_no_ipvsadm_is_one_line_exit_3(tmp_path):
    p = drlab("demo", env={"PATH": str(tmp_path)})
    assert p.returncode == 3, p.stderr
    assert p.stderr.startswith("drlab: error: ipvsadm not found on PATH")
    assert p.stderr.count("\n") == 1
    assert leftovers() == []


@pytest.mark.netns
def test_no_ipvs_in_kernel_points_to_the_vm_runner():
    if ipvs_available():
        pytest.skip("this kernel has IPVS: the no-IPVS error cannot happen here")
    p = drlab("demo")
    assert p.returncode == 3, p.stderr
    assert "has no IPVS" in p.stderr and "scripts/vm-run" in p.stderr
    assert p.stderr.count("\n") == 1
    assert leftovers() == []


@pytest.mark.ipvs
def test_demo_reports_and_cleans_up(drlab_ipvs):
    p = drlab("demo", "--connections", "4")
    assert p.returncode == 0, p.stdout + p.stderr
    out = p.stdout
    for needle in ("Hosts", "IPVS table", "TCP  192.0.2.100:80 rr", "-> 192.0.2.101:80",
                   "Route", "answered by", "distribution: rs1 2, rs2 2",
                   "[ok] every reply came from the VIP", "[ok] IPVS OutPkts = 0",
                   "0 namespaces left"):
        assert needle in out, needle
    assert "FAIL" not in out
    assert leftovers() == []


@pytest.mark.ipvs
def test_demo_with_topology_file(drlab_ipvs):
    p = drlab("demo", "--topology", str(REPO / "examples/dr.toml"), "--connections", "2")
    assert p.returncode == 0, p.stdout + p.stderr
    assert "topology 'dr-file'" in p.stdout


def test_scenarios_lists_the_catalogue():
    from lab.scenarios import REGISTRY, observed

    p = drlab("scenarios")
    assert p.returncode == 0, p.stderr
    table = p.stdout.split("\n\n")[0]
    names = [line.split()[0] for line in table.splitlines()]
    assert names == list(REGISTRY)
    sees = {line.split()[0] for line in table.splitlines() if line.split()[2] == "check"}
    assert sees == {n for n, s in REGISTRY.items() if s.stimulus is None}
    listed = {s["name"]: s for s in json.loads(drlab("scenarios", "--json").stdout)}
    assert list(listed) == list(REGISTRY)
    assert listed["dr-mtu"]["drlab_check"].endswith("drlab scenario run dr-mtu")
    # every entry cites where it is from, with public addresses, and the kernels it
    # reproduced on (the record of the kernel matrix: lab/scenarios/observed.json)
    assert all(s["sources"] and s["links"] for s in listed.values())
    assert all(u.startswith("https://") for s in listed.values() for u in s["links"])
    assert "https://github.com/kubernetes/kubernetes/issues/93297" in \
        listed["conn-reuse-stall"]["links"]
    for s in listed.values():  # bookworm, trixie and a 7.x build
        assert observed.lines(s["observed"]) == set(observed.LINES), (s["name"], s["observed"])


def test_unknown_scenario_and_bad_usage_are_exit_2():
    p = drlab("scenario", "run", "no-such-thing")
    assert (p.returncode, p.stderr) == (2, "drlab: error: no scenario 'no-such-thing'; see "
                                           "`drlab scenarios`\n")
    p = drlab("up", "--scenario", "rs-answers-arp")
    assert p.returncode == 2 and "needs --broken or --fixed" in p.stderr


@pytest.mark.netns
def test_scenario_run_reproduces_an_arp_scenario(tmp_path):
    out = tmp_path / "v.json"
    p = drlab("scenario", "run", "arp-ignore-3-scope", "sysctls-on-lo-only", "--json", str(out))
    assert p.returncode == 0, p.stdout + p.stderr
    assert p.stdout.startswith("arp-ignore-3-scope: reproduced")
    assert "broken:  SYMPTOM" in p.stdout and "fixed:   healthy" in p.stdout
    import json

    data = json.loads(out.read_text())
    assert [s["name"] for s in data["scenarios"]] == ["arp-ignore-3-scope", "sysctls-on-lo-only"]
    assert all(s["reproduced"] and s["broken"]["symptom"] and not s["fixed"]["symptom"]
               and s["broken"]["evidence"] and s["trigger"] for s in data["scenarios"])
    from lab.report.html import kernels_html
    from lab.sweep import kmatrix
    from lab.sweep.kernels import Kernel

    report = kmatrix.merge("scenario", [], [kmatrix.KernelRun(
        Kernel("k", None, "1"), 0, 1.0, kmatrix.read_result("scenario", data))])
    assert [x.kernels["k"].status.value for x in report.rows] == ["ok", "ok"]
    page = kernels_html(report)
    assert "still answer ARP for the VIP" in page  # symptom under the name
    # each scenario row draws its broken and its fixed lab
    assert page.count('<details class="topology">') == 4
    assert page.count("<svg") == 4 and "192.0.2.100" in page


@pytest.mark.ipvs
def test_up_check_status_shell_down_a_broken_scenario_lab(drlab_ipvs):
    """`drlab up --scenario X --broken` is the whole DR lab of that variant: IPVS
    table and services, so `drlab check` runs and names the symptom (exit 1)."""
    name = f"t{os.getpid() % 100000}"
    p = drlab("up", "--name", name, "--scenario", "rs-answers-arp", "--broken")
    try:
        assert p.returncode == 0, p.stdout + p.stderr
        assert f"ip netns exec drl-{name}-rs1 bash" in p.stdout
        ck = drlab("check", name)
        assert ck.returncode == 1, ck.stdout + ck.stderr
        assert "FAILED: rs1 answers who-has 192.0.2.100" in ck.stdout.splitlines()
        assert ck.stderr == ""  # no traceback, no warning at exit
        st = drlab("status", name, "--json")
        assert st.returncode == 0, st.stderr
        data = json.loads(st.stdout)
        assert data["hosts"]["rs1"]["sysctls"]["eth0"]["arp_ignore"].startswith("0 ")
        assert data["hosts"]["director"]["interfaces"][1]["addresses"] == [
            "192.0.2.2/24", "192.0.2.100/32"]
        assert [d["forwarding"] for d in data["ipvs"][0]["dests"]] == ["dr", "dr"]
        sh = drlab("shell", name, "rs1", "ip", "-o", "addr", "show", "dev", "lo")
        assert sh.returncode == 0 and "192.0.2.100/32" in sh.stdout
    finally:
        down = drlab("down", name)
    assert down.returncode == 0, down.stderr
    assert leftovers() == []


@pytest.mark.ipvs
def test_up_check_down_default_lab(drlab_ipvs):
    name = f"c{os.getpid() % 100000}"
    p = drlab("up", "--name", name)
    try:
        assert p.returncode == 0, p.stdout + p.stderr
        ck = drlab("check", name, "--json")
        assert ck.returncode == 0, ck.stdout + ck.stderr
        import json

        data = json.loads(ck.stdout)
        assert data["ok"] and data["census"] == ["director"]
        assert data["distribution"] == {"rs1": 2, "rs2": 2}
    finally:
        assert drlab("down", name).returncode == 0


@pytest.mark.netns
def test_matrix_save_and_baseline(tmp_path):
    base = tmp_path / "base.json"
    args = ("matrix", "--arp-ignore", "0,1", "--arp-announce", "0,2", "--jobs", "2")
    p = drlab(*args, "--save", str(base), "--markdown", str(tmp_path / "m.md"))
    assert p.returncode == 0, p.stdout + p.stderr
    assert "4 cells in" in p.stdout and "4 as predicted, 0 mismatched" in p.stdout
    assert (tmp_path / "m.md").read_text().count("| `ign") == 4
    again = drlab(*args, "--baseline", str(base))
    assert again.returncode == 0 and "0 cells changed" in again.stdout
    # a different axis value is a different cell: the diff names it
    other = drlab("matrix", "--arp-ignore", "0", "--arp-announce", "0",
                  "--knob-on", "lo", "--baseline", str(base))
    assert other.returncode == 1 and "new cell" in other.stdout
    # the same cells with eth0's arp_ignore raised to 1: the kernel takes max(all, eth0),
    # so exactly the two arp_ignore=0 cells stop answering ARP (still as predicted)
    changed = drlab(*args, "--sysctl", "net.ipv4.conf.eth0.arp_ignore=1", "--baseline",
                    str(base))
    assert changed.returncode == 1, changed.stdout + changed.stderr
    assert "4 as predicted, 0 mismatched" in changed.stdout
    assert "2 cells changed" in changed.stdout
    diff_lines = [x.strip() for x in changed.stdout.splitlines() if ": answers_arp" in x]
    assert sorted(x.split(":")[0] for x in diff_lines) == [
        "ign0-ann0-on-all-lo32-global-in-rp0", "ign0-ann2-on-all-lo32-global-in-rp0"]
    assert all("answers_arp yes -> no" in x for x in diff_lines)
    bad = drlab(*args, "--sysctl", "net.ipv4.ip_forward=1")
    assert bad.returncode == 2 and "only net.ipv4.conf." in bad.stderr


@pytest.mark.netns
def test_validate_reports_what_a_change_breaks():
    p = drlab("validate", "--sysctl", "net.ipv4.conf.all.arp_ignore=0",
              "--sysctl", "net.ipv4.conf.eth0.arp_ignore=0", "--host", "rs",
              "--scenario", "rs-answers-arp", "--scenario", "vip-wide-prefix-on-lo")
    assert p.returncode == 1, p.stdout + p.stderr
    assert "breaks (1): rs-answers-arp" in p.stdout
    assert "unchanged (1): vip-wide-prefix-on-lo" in p.stdout
    # all=0 alone changes nothing where eth0 holds 1: the kernel takes the max
    q = drlab("validate", "--sysctl", "net.ipv4.conf.all.arp_ignore=0", "--host", "rs",
              "--scenario", "rs-answers-arp")
    assert q.returncode == 0 and "breaks (0)" in q.stdout and "max(all, eth0)" in q.stdout
    bad = drlab("validate", "--sysctl", "kernel.panic=1")
    assert bad.returncode == 2 and "only per-namespace" in bad.stderr


@pytest.mark.netns
def test_two_shards_merged_equal_the_unsharded_run(tmp_path):
    """`kernels run --shard 1/2` and `2/2` on two kernels (the host's, twice), merged
    by `kernels merge`, give the unsharded run's report: the same rows in the same
    order with the same verdicts; each shard ran half of the kernel-and-cell pairs."""
    import json

    kern = ["--kernel", "host", "--kernel", "again=host"]
    cells = ["matrix", "--arp-ignore", "0,1,2", "--arp-announce", "0,2", "--jobs", "3"]
    whole, shards = tmp_path / "whole.json", [tmp_path / f"s{i}.json" for i in (1, 2)]
    p = drlab("kernels", "run", "--jobs", "2", *kern, "--json", str(whole),
              "--logs", str(tmp_path / "logs"), *cells)
    assert p.returncode == 0, p.stdout + p.stderr
    for i, out in enumerate(shards, 1):
        p = drlab("kernels", "run", "--jobs", "2", "--shard", f"{i}/2", *kern,
                  "--json", str(out), "--logs", str(tmp_path / f"logs{i}"), *cells)
        assert p.returncode == 0, p.stdout + p.stderr
        ran = [r for r in json.loads(out.read_text())["rows"]
               for c in r["kernels"].values() if c]
        assert len(ran) == 6  # 6 cells x 2 kernels / 2 shards
    merged, page = tmp_path / "merged.json", tmp_path / "merged.html"
    p = drlab("kernels", "merge", *map(str, shards), "--json", str(merged), "--html", str(page))
    assert p.returncode == 0, p.stdout + p.stderr

    def view(f):
        r = json.loads(f.read_text())
        return [k["name"] for k in r["kernels"]], [
            (row["key"], {k: (c["status"], c["summary"]) for k, c in row["kernels"].items()},
             row["differs"], row["bad"]) for row in r["rows"]]
    assert view(merged) == view(whole)
    assert "Merged from 2 shard reports" in page.read_text()
    # a shard missing is flagged (exit 1); shards of another run are refused (exit 2)
    p = drlab("kernels", "merge", str(shards[0]))
    assert p.returncode == 1 and "MISSING: shard 2/2 (not given)" in p.stdout
    assert "MISSING: " in p.stdout.split("shard 2/2")[1]  # and the cells only it had
    p = drlab("kernels", "merge", str(shards[0]), str(whole))
    assert p.returncode == 2 and "another" in p.stderr and "Traceback" not in p.stderr


@pytest.mark.netns
def test_kernels_run_on_the_host_kernel_writes_one_report(tmp_path):
    import json

    out, page = tmp_path / "k.json", tmp_path / "k.html"
    # two runs at once (--jobs 2): the same kernel under a second name
    p = drlab("kernels", "run", "--jobs", "2", "--kernel", "host", "--kernel", "again=host",
              "--json", str(out), "--html", str(page), "--logs", str(tmp_path / "logs"),
              "matrix", "--arp-ignore", "0,1", "--jobs", "2")
    assert p.returncode == 0, p.stdout + p.stderr
    data = json.loads(out.read_text())
    assert [k["name"] for k in data["kernels"]] == ["host", "again"]  # as named
    assert [r["kernels"]["host"]["status"] for r in data["rows"]] == ["ok", "ok"]
    assert [r["kernels"]["again"]["status"] for r in data["rows"]] == ["ok", "ok"]
    assert not any(r["differs"] for r in data["rows"])
    assert data["topology"]["service"]["vip"] == "192.0.2.100"
    html = page.read_text()
    assert html.count("<tr") == 3 + 1 + 2 and "<svg" in html  # kernels table, header, 2 cells
    for name in ("host", "again"):
        assert (tmp_path / "logs" / f"{name}.log").read_text().count("as predicted") == 1
    # IPVS axes on a kernel without IPVS are reported as not run, not as failures
    if not ipvs_available():
        q = drlab("kernels", "run", "--kernel", "host", "--json", str(out),
                  "--logs", str(tmp_path / "logs2"), "matrix", "--sloppy-tcp", "0,1")
        assert q.returncode == 0, q.stdout + q.stderr
        assert {r["kernels"]["host"]["status"] for r in json.loads(out.read_text())["rows"]} \
            == {"not run"}


def test_kernels_run_rejects_bad_kernels_in_one_line(tmp_path):
    for bad, msg in (("Trixie!", "not a Debian suite"),
                     (str(tmp_path / "vmlinuz-1"), "no such file")):
        p = drlab("kernels", "run", "--kernel", bad, "matrix")
        assert p.returncode == 2 and msg in p.stderr and len(p.stderr.splitlines()) == 1, \
            p.stderr


# Every error path of the CLI that needs no lab: exactly one line on stderr, the
# exit code the README promises (2 bad input), no traceback, nothing left behind.
ERROR_PATHS = [
    ((), 2, "the following arguments are required: COMMAND"),
    (("bogus",), 2, "invalid choice: 'bogus'"),
    (("demo", "--rs", "x"), 2, "argument --rs: invalid int value: 'x'"),
    (("demo", "--rs", "0"), 2, "--rs must be at least 1"),
    (("demo", "--connections", "0"), 2, "--connections must be at least 1"),
    (("demo", "--topology", "/nonexistent.toml"), 2, "/nonexistent.toml"),
    (("up", "--name", "bad/name"), 2, "--name 'bad/name' must match"),
    (("up", "--scenario", "no-such"), 2, "--scenario needs --broken or --fixed"),
    (("up", "--scenario", "no-such", "--broken"), 2, "no scenario 'no-such'"),
    (("up", "--broken"), 2, "--broken/--fixed go with --scenario NAME"),
    (("up", "--broken", "--fixed", "--scenario", "x"), 2, "not allowed with argument"),
    (("status", "no-such-lab"), 2, "no running lab 'no-such-lab'"),
    (("check", "no-such-lab"), 2, "no running lab 'no-such-lab'"),
    (("check", "--connections", "0", "x"), 2, "--connections must be at least 1"),
    (("shell", "no-such-lab", "rs1"), 2, "no running lab 'no-such-lab'"),
    (("shell",), 2, "the following arguments are required: name, host"),
    (("down",), 2, "name a lab, or --all"),
    (("down", "no-such-lab"), 2, "no running lab 'no-such-lab'"),
    (("down", "x", "--all"), 2, "name a lab or --all, not both"),
    (("scenario", "run", "no-such"), 2, "no scenario 'no-such'"),
    (("scenario",), 2, "the following arguments are required: ACTION"),
    (("validate", "--sysctl", "nokey"), 2, "expected KEY=VALUE"),
    (("validate", "--sysctl", "net.ipv4.conf.all.arp_ignore=abc"), 2, "is not an integer"),
    (("validate", "--host", "nope", "--sysctl", "net.ipv4.conf.all.arp_ignore=1"), 2,
     "--host 'nope'"),
    (("validate", "--scenario", "no-such", "--sysctl", "net.ipv4.conf.all.arp_ignore=1"), 2,
     "no scenario 'no-such'"),
    (("matrix", "--arp-ignore", "7"), 2, "arp_ignore"),
    (("matrix", "--spec", "/nonexistent.toml"), 2, "/nonexistent.toml"),
    (("kernels", "run", "--kernel", "host", "--kernel", "host", "matrix"), 2,
     "a kernel is named twice"),
    (("kernels", "run", "--kernel", "/nonexistent/vmlinuz", "matrix"), 2, "/nonexistent"),
    (("kernels", "run", "--kernel", "host", "diagnose"), 2, "give the cluster"),
    (("kernels", "run", "--jobs", "0", "--kernel", "host", "matrix"), 2, "--jobs 0"),
    (("import", "/nonexistent", "-o", "/nonexistent/x.toml"), 2, "/nonexistent"),
    (("import", "x"), 2, "the following arguments are required: -o/--output"),
    (("import", "x", "-o", "-", "--role", "web1=router"), 2, "--role 'web1=router'"),
    (("diagnose", "/nonexistent.toml"), 2, "/nonexistent.toml"),
    (("diagnose", "examples/dr.toml", "--connections", "0"), 2, "--connections must be"),
    (("diagnose", "examples/dr.toml", "--service", "192.0.2.1:1"), 2,
     "--service 192.0.2.1:1: dr-file has 192.0.2.100:80/tcp"),
    (("validate", "--topology", "/nonexistent.toml", "--sysctl", "a.b=1"), 2,
     "/nonexistent.toml"),
    (("validate", "--topology", "examples/dr.toml", "--host", "nohost", "--sysctl",
      "net.ipv4.conf.all.arp_ignore=1"), 2, "--host 'nohost': not a role"),
    (("validate", "--topology", "examples/dr.toml", "--scenario", "x", "--sysctl",
      "net.ipv4.conf.all.arp_ignore=1"), 2, "--scenario and --topology"),
    (("validate", "--json", "--sysctl", "net.ipv4.conf.all.arp_ignore=1"), 2,
     "--json goes with --topology"),
]


def test_every_cli_error_path_is_one_line_with_the_promised_exit_code():
    from concurrent.futures import ThreadPoolExecutor

    logs_before = set(Path(tempfile.gettempdir()).glob("drlab-kernels.*"))
    with ThreadPoolExecutor(4) as pool:
        runs = list(pool.map(lambda c: drlab(*c[0], env={"PYTHONDEVMODE": "1"}), ERROR_PATHS))
    # nothing left behind: not even the log directory kernels run makes for itself
    assert set(Path(tempfile.gettempdir()).glob("drlab-kernels.*")) == logs_before
    bad = []
    for (args, code, needle), p in zip(ERROR_PATHS, runs, strict=True):
        lines = p.stderr.splitlines()
        if (p.returncode, len(lines)) != (code, 1) or needle not in p.stderr \
                or not lines[0].startswith("drlab"):
            bad.append(f"drlab {' '.join(args)}: exit {p.returncode}, stderr {p.stderr!r}")
    assert not bad, "\n".join(bad)
    assert leftovers() == []


def test_scripts_drlab_refuses_a_lab_that_would_die_with_its_one_shot_vm(tmp_path):
    if ipvs_available():
        pytest.skip("this kernel has IPVS: scripts/drlab runs here, no one-shot VM")
    env = {**os.environ, "DRLAB_RUN_DIR": str(tmp_path)}  # no VM that stays up
    for args in (("up", "--name", "x"), ("status", "x"), ("check",), ("shell", "x", "rs1"),
                 ("down", "x")):
        p = subprocess.run([str(REPO / "scripts/drlab"), *args], capture_output=True,
                           text=True, timeout=120, env=env)
        assert p.returncode == 2, (args, p.stdout, p.stderr)
        assert p.stderr.count("\n") == 1 and "scripts/drlab vm start" in p.stderr, p.stderr
        assert ("no lab is up" in p.stderr) == (args[0] != "up"), p.stderr
        assert "booting" not in p.stdout + p.stderr  # refused before any VM


def test_keepalived_files_bad_input_is_one_line_exit_2(tmp_path):
    """A user's keepalived.conf is checked before anything is built: the lab's limits
    (only DR), then `keepalived -t`; each problem is one line naming the file, exit 2."""
    if shutil.which("keepalived") is None and os.environ.get("CI") != "true":
        pytest.skip("keepalived is not installed (scripts/bootstrap installs it)")
    master = (REPO / "examples/keepalived/master.conf").read_text()
    nat = tmp_path / "nat.conf"
    nat.write_text(master.replace("lb_kind DR", "lb_kind NAT"))
    broken = tmp_path / "broken.conf"
    broken.write_text(master.replace("lb_algo wrr", "lb_algo wrr\n    bogus_keyword {"))
    vrid = tmp_path / "vrid.conf"  # only keepalived -t knows this one
    vrid.write_text(master.replace("virtual_router_id 51", "virtual_router_id 999"))
    cases = [
        ((str(vrid),), "keepalived -t"),
        ((str(nat),), "lb_kind NAT: only DR is supported"),
        ((str(broken),), str(broken)),
        ((str(tmp_path / "missing.conf"),), "missing.conf"),
    ]
    for files, needle in cases:
        args = ["up", "--name", "kbad"] + [x for f in files for x in ("--keepalived", f)]
        p = drlab(*args)
        assert p.returncode == 2, (args, p.stdout, p.stderr)
        assert p.stderr.count("\n") == 1 and needle in p.stderr, p.stderr
    assert leftovers() == []
