"""Lab names: a verb checks the name before it reads, makes or deletes anything.

Each test crafts a record that a bad name would reach (one outside the run
directory, one named ``x\\n.json``) listing a real namespace and a real file,
runs the verb as a user would (a subprocess, ``DRLAB_RUN_DIR`` a private run
directory) and checks: one line on stderr, exit 2, both victims still there.
"""

import json
import os
import secrets
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from lab.builder import netns

REPO = Path(__file__).resolve().parents[2]
pytestmark = [pytest.mark.netns, pytest.mark.subprocess]


def drlab(run_dir: Path, *args: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=str(REPO), DRLAB_RUN_DIR=str(run_dir))
    return subprocess.run([sys.executable, "-m", "lab", *args], capture_output=True,
                          text=True, env=env, cwd=REPO, timeout=300)


@pytest.fixture
def victims(tmp_path):
    """A namespace and a file that a crafted record lists; removed after the test."""
    ns = f"drl-v{secrets.token_hex(3)}-h1"
    netns.create(ns)
    victim = tmp_path / "victim"
    victim.write_text("keep me\n")
    try:
        yield ns, victim
    finally:
        netns.remove(ns)


def crafted(path: Path, lab: str, ns: str, victim: Path) -> None:
    path.write_text(json.dumps({"lab": lab, "owner_pid": 1, "owner_start": None,
                                "namespaces": [ns], "files": [str(victim)],
                                "persistent": True}))


def untouched(ns: str, victim: Path) -> bool:
    return netns.exists(ns) and victim.read_text() == "keep me\n"


def test_down_of_a_path_outside_the_run_dir_is_refused_and_deletes_nothing(victims):
    ns, victim = victims
    # A sticky, world-writable directory (like /tmp): another user drops x.json in it,
    # and root is told `drlab down ../../x` (run/labs/../../x.json is base/x.json).
    base = Path(tempfile.mkdtemp(prefix="drlab-names-", dir="/tmp"))
    try:
        base.chmod(0o1777)
        run = base / "run"
        (run / "labs").mkdir(parents=True)
        record = json.dumps({"lab": "../../x", "owner_pid": 1, "owner_start": None,
                             "namespaces": [ns], "files": [str(victim)], "persistent": True})
        subprocess.run(["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups",
                        "sh", "-c", 'printf %s "$1" > "$2"', "sh", record, str(base / "x.json")],
                       check=True, timeout=30)
        assert (base / "x.json").stat().st_uid != 0
        p = drlab(run, "down", "../../x")
        assert p.returncode == 2, p.stdout + p.stderr
        assert p.stderr == ("drlab: error: lab name '../../x' must match "
                            "[a-z0-9][a-z0-9-]{0,15}\n")
        assert untouched(ns, victim)
    finally:
        shutil.rmtree(base)


@pytest.mark.parametrize("verb", ["down NAME", "status NAME", "check NAME", "shell NAME h1",
                                  "up --name NAME"])
def test_a_name_with_a_trailing_newline_is_refused_before_its_record_is_read(
        tmp_path, victims, verb):
    ns, victim = victims
    run = tmp_path / "run"
    (run / "labs").mkdir(parents=True)
    crafted(run / "labs" / "lab\n.json", "lab\n", ns, victim)
    p = drlab(run, *[("lab\n" if a == "NAME" else a) for a in verb.split()])
    assert p.returncode == 2, p.stdout + p.stderr
    what = "--name" if verb.startswith("up") else "lab name"
    assert p.stderr == f"drlab: error: {what} 'lab\\n' must match [a-z0-9][a-z0-9-]{{0,15}}\n"
    assert untouched(ns, victim)
    assert not netns.exists("drl-lab\n-h1")


def test_a_record_in_the_run_dir_that_lists_what_is_not_its_labs_is_refused(tmp_path, victims):
    ns, victim = victims
    run = tmp_path / "run"
    (run / "labs").mkdir(parents=True)
    crafted(run / "labs" / "mine.json", "mine", ns, victim)
    p = drlab(run, "down", "mine")
    assert p.returncode == 2, p.stdout + p.stderr
    assert p.stderr.count("\n") == 1
    assert p.stderr.startswith("drlab: error: refusing the record of lab mine: it names "
                               "namespaces not named drl-mine-HOST, files other than ")
    assert untouched(ns, victim)
    # and a sweep (cleanup, the plugin's reaping) passes it by
    p = drlab(run, "cleanup")
    assert p.returncode == 0, p.stdout + p.stderr
    assert untouched(ns, victim)


def test_a_record_that_is_a_link_is_not_followed(tmp_path, victims):
    ns, victim = victims
    run = tmp_path / "run"
    (run / "labs").mkdir(parents=True)
    elsewhere = tmp_path / "elsewhere.json"
    elsewhere.write_text(json.dumps({"lab": "mine", "owner_pid": 1, "owner_start": None,
                                     "namespaces": [], "files": [], "persistent": True}))
    (run / "labs" / "mine.json").symlink_to(elsewhere)
    p = drlab(run, "down", "mine")
    assert p.returncode == 2, p.stdout + p.stderr
    assert p.stderr.count("\n") == 1
    assert elsewhere.exists()
    assert untouched(ns, victim)
