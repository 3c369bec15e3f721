"""``--drlab-forks N`` (lab/pytest_forks.py): tests run in processes forked after
collection, and pytest reports them as if it had run them itself.

Each test here runs pytest as a command on a small generated test file.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from lab.util import wait_for

pytestmark = pytest.mark.subprocess

MIXED = '''
import os, warnings, pytest
from pathlib import Path

LOG = Path(__file__).with_name("log")

def note(what):
    with LOG.open("a") as f:
        f.write(f"{what} {os.getpid()} {os.environ.get('DRLAB_WORKER')}\\n")

@pytest.fixture(scope="module")
def shared():
    note("setup")
    yield

@pytest.mark.parametrize("i", range(8))
def test_pass(shared, i):
    note("ran")

def test_fail(shared):
    print("what the failing test printed")
    assert 1 == 2

def test_skip():
    pytest.skip("not here")

@pytest.mark.xfail(reason="known")
def test_xfail():
    assert 0

def test_warn():
    warnings.warn("a worker's warning", UserWarning)
'''


def pytest_run(path: Path, *args: str, **kw) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "--rootdir", str(path),
         "-rA", *args], cwd=path, capture_output=True, text=True, timeout=300, **kw)


def outcomes(out: str) -> dict[str, str]:
    return {m[1]: m[0] for m in re.findall(r"^(PASSED|FAILED|SKIPPED|XFAIL|ERROR) (\S+)",
                                            out, re.M)}


def test_a_forked_run_reports_what_a_serial_run_reports(tmp_path: Path) -> None:
    (tmp_path / "test_mixed.py").write_text(MIXED)
    serial = pytest_run(tmp_path)
    (tmp_path / "log").unlink()
    forked = pytest_run(tmp_path, "--drlab-forks", "3")
    assert serial.returncode == forked.returncode == 1, forked.stdout + forked.stderr
    assert "drlab: 3 test processes forked from this one" in forked.stdout
    assert outcomes(forked.stdout) == outcomes(serial.stdout)
    assert len(outcomes(forked.stdout)) == 12
    summary = re.compile(r"=+ (.* in [0-9.]+s) =+$", re.M)
    assert summary.search(forked.stdout)[1].split(" in ")[0] == \
        summary.search(serial.stdout)[1].split(" in ")[0] == \
        "1 failed, 9 passed, 1 skipped, 1 xfailed, 1 warning"
    assert "what the failing test printed" in forked.stdout  # the test's captured output
    assert "a worker's warning" in forked.stdout
    log = [line.split() for line in (tmp_path / "log").read_text().splitlines()]
    ran = [(pid, worker) for what, pid, worker in log if what == "ran"]
    assert len(ran) == 8 and {w for _, w in ran} <= {"fw0", "fw1", "fw2"}
    assert str(os.getpid()) not in {pid for pid, _ in ran}
    assert len({pid for pid, _ in ran}) >= 2, "one worker ran every test"
    setups = [pid for what, pid, _ in log if what == "setup"]
    assert len(setups) == len(set(setups)), "a worker set the module fixture up twice"


def test_a_worker_that_dies_fails_its_test_and_the_others_run(tmp_path: Path) -> None:
    (tmp_path / "test_die.py").write_text(
        "import os, pytest\n"
        "@pytest.mark.parametrize('i', range(6))\n"
        "def test_before(i): pass\n"
        "def test_dies(): os._exit(3)\n"
        "@pytest.mark.parametrize('i', range(6))\n"
        "def test_after(i): pass\n")
    r = pytest_run(tmp_path, "--drlab-forks", "2")
    assert r.returncode == 1, r.stdout + r.stderr
    got = outcomes(r.stdout)
    assert got.pop("test_die.py::test_dies") == "FAILED"
    assert set(got.values()) == {"PASSED"} and len(got) == 12
    assert re.search(r"worker fw\d \(pid \d+\) ended with exit status 3 while it ran this test",
                     r.stdout)


def test_bad_counts_and_xdist_together_are_usage_errors(tmp_path: Path) -> None:
    (tmp_path / "test_one.py").write_text("def test_one(): pass\n")
    for args, says in ((["--drlab-forks", "-1"], "--drlab-forks -1: give a number"),
                       (["--drlab-forks", "2", "-n", "2"], "--drlab-forks and pytest-xdist's -n")):
        r = pytest_run(tmp_path, *args)
        assert r.returncode == pytest.ExitCode.USAGE_ERROR, r.stdout + r.stderr
        assert says in r.stderr
        assert "Traceback" not in r.stderr


WAITING = '''
import os, pytest
from pathlib import Path
from lab.util import wait_for

HERE = Path(__file__).parent

@pytest.fixture
def held():
    yield
    (HERE / f"torn-down-{os.getpid()}").touch()

@pytest.mark.parametrize("i", range(2))
def test_waits(held, i):
    (HERE / f"running-{os.getpid()}").touch()
    wait_for(lambda: (HERE / "never").exists(), 600, "a file that never comes")
'''


def running_workers(path: Path, n: int) -> list[int]:
    pids = wait_for(lambda: len(found := list(path.glob("running-*"))) == n and found,
                    60, f"{n} workers to run a test")
    return [int(p.name.split("-")[1]) for p in pids]


def gone(pids: list[int]) -> bool:
    def dead(pid: int) -> bool:
        try:
            stat = Path(f"/proc/{pid}/stat").read_text()
        except OSError:
            return True
        return stat.rsplit(")", 1)[1].split()[0] == "Z"
    return all(dead(p) for p in pids)


@pytest.mark.parametrize("how", ["SIGINT", "SIGKILL"])
def test_an_interrupted_run_leaves_no_worker(tmp_path: Path, how: str) -> None:
    """Ctrl-C: the workers tear their tests down and exit, and pytest says it was
    interrupted. SIGKILL of pytest: the workers get SIGTERM from the kernel
    (PR_SET_PDEATHSIG) and go too."""
    (tmp_path / "test_waiting.py").write_text(WAITING)
    p = subprocess.Popen(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "--rootdir", str(tmp_path),
         str(tmp_path), "--drlab-forks", "2"], stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT, text=True)
    try:
        pids = running_workers(tmp_path, 2)
        p.send_signal(getattr(signal, how))
        out, _ = p.communicate(timeout=120)
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
    wait_for(lambda: gone(pids), 60, "the workers to exit")
    if how == "SIGINT":
        assert p.returncode == pytest.ExitCode.INTERRUPTED, out
        assert "KeyboardInterrupt" in out
        assert sorted(int(f.name.split("-")[2]) for f in tmp_path.glob("torn-down-*")) == \
            sorted(pids), "a worker did not tear its test down"
    else:
        assert p.returncode == -signal.SIGKILL


ROOTNS = '''
import os, pytest
from pathlib import Path
from lab.util import wait_for

HERE = Path(__file__).parent

def wait(cond, what):
    try:
        return wait_for(cond, 3, what)
    except Exception:
        return None

@pytest.mark.netns
@pytest.mark.parametrize("i", range(3))
def test_namespace(i):
    mine = HERE / f"running-{i}"
    mine.touch()
    wait(lambda: (HERE / "released").exists(), "the rootns test")  # a window
    mine.unlink()

@pytest.mark.rootns
def test_rootns():
    seen = wait(lambda: list(HERE.glob("running-*")), "a namespace test")
    (HERE / "released").touch()
    assert not seen, f"namespace tests ran with the rootns test: {seen}"
'''


@pytest.mark.netns
def test_a_rootns_test_runs_alone_among_forked_workers(tmp_path: Path) -> None:
    (tmp_path / "test_rootns.py").write_text(ROOTNS)
    r = pytest_run(tmp_path, "--drlab-forks", "4")
    assert r.returncode == 0, r.stdout + r.stderr
    assert set(outcomes(r.stdout).values()) == {"PASSED"} and len(outcomes(r.stdout)) == 4
