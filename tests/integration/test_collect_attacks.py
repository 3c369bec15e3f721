"""scripts/collect run as root beside a hostile local user (``nobody``, through
setpriv): where it writes, what it removes, which links and tools it follows.

Each test plays one way the user tried to make root write, delete or run
something of their choosing (issue #23, item 2); the script must refuse in one
line with exit 2, or skip what it was pointed at, and leave the victim as it was."""

from __future__ import annotations

import os
import shutil
import subprocess
import tarfile
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from io import BytesIO
from pathlib import Path

import pytest

from lab.probes.snapshot import COLLECT
from lab.util import wait_for

# root and setpriv, no IPVS: the host part (collect only reads the machine's state)
pytestmark = [pytest.mark.netns, pytest.mark.subprocess]

NOBODY = ["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups"]
KCONF = "global_defs {\n  router_id victim\n}\n"


@dataclass
class World:
    base: Path      # root's, 0755: every user can reach what is in it
    attacker: Path  # nobody's directory (like a /tmp another user controls)
    victim: Path    # a root-owned directory the attacker wants root to write into
    sticky: Path    # root's, 1777, like /tmp

    def victim_state(self) -> dict[str, str]:
        return {p.name: p.read_text() if p.is_file() else "(not a file)"
                for p in sorted(self.victim.iterdir())}


def as_nobody(script: str, *args: str, cwd: Path | None = None) -> None:
    p = subprocess.run([*NOBODY, "sh", "-ec", script, "sh", *args], cwd=cwd,
                       capture_output=True, text=True, timeout=60)
    assert p.returncode == 0, p.stderr


def collect(*args: str, cwd: Path | None = None, env: dict[str, str] | None = None):
    return subprocess.run(["sh", str(COLLECT), *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=120)


def refused(p: subprocess.CompletedProcess, needle: str) -> None:
    assert p.returncode == 2 and len(p.stderr.splitlines()) == 1 and needle in p.stderr, \
        (p.returncode, p.stderr)


@pytest.fixture
def world() -> Iterator[World]:
    if shutil.which("setpriv") is None:
        pytest.skip("needs setpriv")
    base = Path(tempfile.mkdtemp(prefix="drlab-collect-", dir="/tmp"))
    try:
        base.chmod(0o755)
        attacker, victim, sticky = base / "attacker", base / "victim", base / "sticky"
        for d in (attacker, victim, sticky):
            d.mkdir()
        os.chown(attacker, 65534, 65534)
        attacker.chmod(0o755)
        victim.chmod(0o755)
        (victim / "keepalived.conf").write_text(KCONF)
        (victim / "keepalived.conf").chmod(0o644)
        sticky.chmod(0o1777)
        yield World(base, attacker, victim, sticky)
    finally:
        shutil.rmtree(base)


@pytest.mark.parametrize("attack", ["none", "symlink", "swap-the-work-directory"])
def test_a_working_directory_another_user_owns_is_refused(world, attack):
    """The default ./drlab-collect, run in a directory of the attacker's: they
    could put a link there first, or swap what root makes in it while it runs."""
    w = world
    stop = w.base / "stop"
    racer = None
    if attack == "symlink":
        as_nobody('ln -s "$1" drlab-collect', str(w.victim), cwd=w.attacker)
    if attack == "swap-the-work-directory":
        # the attacker's own ./drlab-collect; each directory root makes in it is
        # renamed away and replaced by a link to the victim, for as long as it runs
        racer = subprocess.Popen([*NOBODY, "sh", "-ec", """
            mkdir -m 777 drlab-collect; cd drlab-collect; : >../ready
            end=$(( $(date +%s) + 30 ))
            while [ ! -e "$2" ] && [ "$(date +%s)" -lt "$end" ]; do
              for d in .rs1.*; do
                [ -d "$d" ] && [ ! -L "$d" ] || continue
                mv "$d" "old$d" 2>/dev/null && ln -s "$1" "$d" || :
              done
            done""", "sh", str(w.victim), str(stop)], cwd=w.attacker)
        wait_for(lambda: (w.attacker / "ready").exists(), 30, "the attacker's loop")
    p = subprocess.Popen(["sh", str(COLLECT), "-n", "rs1", "-k", str(w.victim / "keepalived.conf")],
                         cwd=w.attacker, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         text=True)
    try:
        _, err = p.communicate(timeout=120)
    finally:
        stop.touch()
        if racer is not None:
            racer.wait(timeout=60)
    assert w.victim_state() == {"keepalived.conf": KCONF}
    refused(subprocess.CompletedProcess(p.args, p.returncode, "", err),
            f"{w.attacker} is owned by uid 65534")
    if attack == "none":
        assert not list(w.attacker.iterdir())
    if attack == "swap-the-work-directory":
        assert racer is not None and racer.returncode == 0


def test_an_outdir_that_is_a_link_is_refused(world):
    """In a sticky /tmp, the attacker names root's OUTDIR first, as a link."""
    as_nobody('ln -s "$1" out', str(w_victim := world.victim), cwd=world.sticky)
    refused(collect("-n", "rs1", "-k", "none", str(world.sticky / "out")),
            f"{world.sticky}/out is a symbolic link")
    assert world.victim_state() == {"keepalived.conf": KCONF} and w_victim.exists()


@pytest.mark.parametrize("where, mode, owner, needle", [
    ("out", 0o777, 0, "is writable by others (drwxrwxrwx)"),
    ("out", 0o770, 0, "is writable by others (drwxrwx---)"),
    ("out", 0o700, 65534, "is owned by uid 65534"),
    ("parent", 0o777, 0, "parent is writable by others"),
    ("parent", 0o755, 65534, "parent is owned by uid 65534"),
])
def test_an_outdir_others_can_write_or_own_is_refused(world, where, mode, owner, needle):
    d = world.base / "parent"
    d.mkdir()
    out = d / "out"
    out.mkdir()
    changed = out if where == "out" else d
    os.chown(changed, owner, owner)
    changed.chmod(mode)
    refused(collect("-n", "rs1", "-k", "none", str(out)), needle)
    assert not list(out.iterdir())


def test_a_sticky_outdir_of_roots_is_used(world):
    """/tmp itself is fine: no one else can rename or remove what root makes there."""
    p = collect("-n", "rs1", "-k", "none", str(world.sticky))
    assert p.returncode == 0, p.stderr
    assert (world.sticky / "rs1" / "collect.txt").is_file()
    assert [x.name for x in world.sticky.iterdir()] == ["rs1"]  # no work directory left


@pytest.mark.parametrize("there", ["a directory of root's", "a file", "a link",
                                   "another user's directory", "another user's collection"])
def test_an_outdir_name_that_is_not_a_collection_is_never_deleted(world, there):
    out = world.sticky  # where the attacker can make names
    name = out / "rs1"
    if there == "a directory of root's":
        name.mkdir()
        (name / "precious").write_text("keep")
    elif there == "a file":
        name.write_text("keep")
    elif there == "a link":
        as_nobody('ln -s "$1" rs1', str(world.victim), cwd=out)
    else:
        text = "collected_at = 2026-01-01T00:00:00Z\nhostname = rs1\ncollect_version = 1\n" \
            if there == "another user's collection" else "keep"
        as_nobody('mkdir rs1; printf %s "$1" >rs1/collect.txt', text, cwd=out)
    before = sorted(str(p) for p in out.rglob("*"))
    refused(collect("-n", "rs1", "-k", "none", str(out)),
            f"refusing to replace {name}: not a collection")
    assert sorted(str(p) for p in out.rglob("*")) == before  # no work directory left
    assert world.victim_state() == {"keepalived.conf": KCONF}
    if there == "a directory of root's":
        assert (name / "precious").read_text() == "keep"


@pytest.mark.parametrize("name", ["-x", "--remove-files", "-rf"])
def test_a_name_beginning_with_a_dash_is_a_name_to_tar(world, name):
    p = subprocess.run(["sh", str(COLLECT), "-t", "-n", name, "-k", "none"], capture_output=True,
                       timeout=120, env=dict(os.environ, TMPDIR=str(world.sticky)))
    assert p.returncode == 0, p.stderr
    with tarfile.open(fileobj=BytesIO(p.stdout)) as tar:
        names = set(tar.getnames())
    assert {f"./{name}/collect.txt", f"./{name}/ip-addr.json"} <= names
    assert not list(world.sticky.iterdir())


@pytest.mark.parametrize("name", ["a\nb", "a\x1b[2Jb", "a\rb", "a\x7fb"])
def test_a_name_with_a_control_character_is_refused(tmp_path, name):
    refused(collect("-n", name, "-k", "none", str(tmp_path / "out"), cwd=tmp_path),
            "a host name cannot contain a control character")
    assert not list(tmp_path.iterdir())


def test_no_tool_runs_from_a_relative_path_entry(world):
    """A PATH with an empty entry (the working directory), run in the attacker's
    directory, which holds an `ip` and a `mkdir` of theirs."""
    marker = world.base / "ran"
    for tool in ("ip", "mkdir", "cat", "sysctl"):
        as_nobody(f'printf "#!/bin/sh\\ntouch {marker}\\n" >{tool}; chmod 755 {tool}',
                  cwd=world.attacker)
    out = world.base / "out"
    p = collect("-n", "rs1", "-k", "none", str(out), cwd=world.attacker,
                env=dict(os.environ, PATH=":" + os.environ["PATH"]))
    assert p.returncode == 0, p.stderr
    assert not marker.exists(), "root ran the attacker's tool"
    assert (out / "rs1" / "ip-addr.json").read_text().startswith("[")


@pytest.fixture
def secret(world) -> Path:
    s = world.base / "secret"
    s.write_text("root's secret\n")
    s.chmod(0o600)
    return s


@pytest.mark.parametrize("kind", ["link in another user's directory",
                                  "file in another user's directory",
                                  "link to a device", "fifo", "over 16 MiB"])
def test_keepalived_conf_is_a_regular_file_no_one_else_can_swap(world, secret, kind):
    """-k FILE: root copies a regular file's content, reached only through
    directories no one else can change; never a device, a FIFO or a huge file."""
    if kind == "link in another user's directory":
        as_nobody('ln -s "$1" k.conf', str(secret), cwd=world.attacker)
        k, needle = world.attacker / "k.conf", "is owned by uid 65534"
    elif kind == "file in another user's directory":
        as_nobody('printf "global_defs {}\\n" >k.conf', cwd=world.attacker)
        k, needle = world.attacker / "k.conf", "is owned by uid 65534"
    elif kind == "link to a device":
        k, needle = world.base / "k.conf", "/dev/zero is not a regular file"
        k.symlink_to("/dev/zero")
    elif kind == "fifo":
        k, needle = world.base / "k.conf", "k.conf is not a regular file"
        os.mkfifo(k)
    else:
        k, needle = world.base / "k.conf", "k.conf is over 16 MiB"
        with open(k, "wb") as f:
            f.truncate(16 * 1024 * 1024 + 1)
    out = world.base / "out"
    p = collect("-n", "rs1", "-k", str(k), str(out))
    assert p.returncode == 0, p.stderr
    skipped = (out / "rs1" / "skipped.txt").read_text()
    assert f"keepalived.conf: {k} not read: " in skipped and needle in skipped, skipped
    assert not (out / "rs1" / "keepalived.conf").exists()


def test_keepalived_conf_through_roots_own_link_is_copied(world):
    """A link of root's, in directories of root's (as config management makes)."""
    (world.base / "etc").mkdir()
    real = world.base / "etc" / "keepalived.conf.lvs1"
    real.write_text(KCONF)
    (world.base / "etc" / "keepalived.conf").symlink_to("keepalived.conf.lvs1")
    out = world.base / "out"
    p = collect("-n", "lvs1", "-k", str(world.base / "etc" / "keepalived.conf"), str(out))
    assert p.returncode == 0, p.stderr
    assert (out / "lvs1" / "keepalived.conf").read_text() == KCONF

