"""A local user hands root a collected directory (#23 item 4): the links and FIFOs they
put in it are refused in one line, and nothing of root's files reaches the output or
the terminal. The attacker's steps run as ``nobody`` (setpriv); root runs
``drlab import`` as a user would. Host only (no IPVS), needs root."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "unit"))
from test_fuzz_parsers import host_files, write_cluster  # noqa: E402

REPO = Path(__file__).resolve().parents[2]
SECRET = "r00t-0nly-s3cr3t"
NOBODY = 65534
pytestmark = [pytest.mark.subprocess,
              pytest.mark.skipif(os.geteuid() != 0 or not shutil.which("setpriv"),
                                 reason="needs root and setpriv (to act as nobody)")]


def as_nobody(script: str, cwd: Path) -> None:
    subprocess.run(["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups",
                    "sh", "-ec", script], cwd=cwd, check=True, timeout=60)


@pytest.fixture
def scene() -> Iterator[tuple[Path, Path]]:
    """(the attacker's collected directory, root's secret directory): the first in a
    directory ``nobody`` owns, the second root-only (0700) with a host's files whose
    uname.txt and skipped.txt hold the secret."""
    top = Path(tempfile.mkdtemp(prefix="drlab-attack-", dir="/tmp"))
    try:
        top.chmod(0o755)
        secret = top / "root-only"
        secret.mkdir(mode=0o700)
        (secret / "secret.txt").write_text(f"{SECRET}\n")
        (secret / "secret.txt").chmod(0o600)
        host = secret / "web2"
        host.mkdir()
        for f, text in host_files("web2").items():
            (host / f).write_text(text.replace("6.1.0-18-amd64", SECRET)
                                  .replace("not found", SECRET))
        bob = top / "bob"
        bob.mkdir()
        c = write_cluster(bob / "c")
        for p in [bob, *bob.rglob("*")]:
            os.chown(p, NOBODY, NOBODY)
        yield c, secret
    finally:
        shutil.rmtree(top)


def import_as_root(c: Path) -> subprocess.CompletedProcess[str]:
    out = c.parent.parent / "out.toml"     # root's: in the 0755 top, not bob's
    p = subprocess.run([sys.executable, "-m", "lab", "import", str(c), "-o", str(out)],
                       capture_output=True, text=True, cwd=REPO, timeout=120,
                       env=dict(os.environ, PYTHONPATH=str(REPO)))
    assert SECRET not in p.stdout + p.stderr
    assert not out.exists(), out.read_text()
    assert "Traceback" not in p.stderr
    assert p.returncode == 2, p.stderr
    assert p.stderr.count("\n") == 1, p.stderr
    return p


@pytest.mark.parametrize("fname", ["uname.txt", "skipped.txt"])
def test_a_link_to_a_root_only_file_is_refused(scene, fname):
    c, secret = scene
    as_nobody(f"rm web1/{fname}; ln -s {secret}/secret.txt web1/{fname}", c)
    p = import_as_root(c)
    assert f"web1/{fname}: a symbolic link: refused" in p.stderr


def test_a_link_to_a_root_only_host_directory_is_refused(scene):
    c, secret = scene
    as_nobody(f"rm -r web2; ln -s {secret}/web2 web2", c)
    p = import_as_root(c)
    assert "web2: a symbolic link to a directory: refused" in p.stderr


def test_a_fifo_does_not_hang_the_import(scene):
    c, _ = scene
    as_nobody("rm web1/uname.txt; mkfifo web1/uname.txt", c)
    p = import_as_root(c)
    assert "web1/uname.txt: a FIFO: refused" in p.stderr
