"""drlab gate's default kernel (#26): the twin's own kernel series. The import keeps
each host's ``uname -r`` (cluster.toml round-trips it, ``--anonymize`` keeps its
version only); a release maps to the Debian line that ships it; without ``--kernel``
the gate runs on the running kernel when it has IPVS, else on the twin's series, and
the report says when the twin's series differs from the kernel measured."""

from __future__ import annotations

import copy
import os
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from lab.errors import UsageError
from lab.machine import preflight
from lab.model import default_dr
from lab.model.collected import import_cluster
from lab.model.gate import Applied
from lab.model.loader import topology_from_dict
from lab.model.topology import kernel_series
from lab.model.writer import dump
from lab.report.gate import markdown
from lab.scenarios.diagnose import Diagnosis
from lab.scenarios.gate import GateResult
from lab.sweep.kernels import Build, Layout, debian_line
from lab.sweep.kgate import default_kernel, twin_series

EXAMPLE = Path(__file__).parents[2] / "examples" / "cluster" / "collected"


def build(release: str, unavailable: str | None = None) -> Build:
    return Build(release, "amd64", "bookworm-security", f"linux-image-{release}", "1",
                 1, Layout.IMAGE, unavailable)


@pytest.mark.parametrize(("release", "line"), [
    ("6.1.0-57-amd64", "bookworm"), ("6.1.0-18-cloud-amd64", "bookworm"), ("6.1", "bookworm"),
    ("6.12.38+deb13-amd64", "trixie"), ("6.12.0", "trixie"), ("7.0.3+deb14-amd64", "newest-7"),
    ("7.1", "newest-7"), ("6.10.5", None), ("6.18.44-fc-v1147", None), ("5.10.0-31-amd64", None),
    ("61.0", None), ("", None), ("Linux", None)])
def test_release_maps_to_its_debian_line(release, line):
    assert debian_line(release) == line


def test_release_maps_to_the_exact_build_when_fetchable():
    builds = [build("6.1.0-56-amd64"), build("6.1.0-57-amd64"),
              build("6.1.0-58-amd64", unavailable="not in the index")]
    assert debian_line("6.1.0-57-amd64", builds) == "6.1.0-57-amd64"
    assert debian_line("6.1.0-58-amd64", builds) == "bookworm"   # listed, not fetchable
    assert debian_line("6.1.0-59-amd64", builds) == "bookworm"   # not listed


def test_default_is_the_running_kernel_when_it_has_ipvs():
    d = default_kernel(True, "6.1.0-57-amd64", "6.12.38+deb13-amd64")
    assert d.kernels == [] and d.because == ""
    assert default_kernel(True, "6.18.44", "").kernels == []


def test_default_without_ipvs_is_the_twins_series():
    d = default_kernel(False, "6.18.44-fc", "6.1.0-57-amd64")
    assert d.kernels == ["bookworm"] and d.because == "the twin's kernel 6.1.0-57-amd64 -> bookworm"
    d = default_kernel(False, "6.18.44-fc", "6.1.0-57-amd64", [build("6.1.0-57-amd64")])
    assert d.kernels == ["6.1.0-57-amd64"]


@pytest.mark.parametrize(("twin", "says"), [("", "records no kernel"),
                                            ("5.10.0-31-amd64", "5.10.0-31-amd64 is in no")])
def test_default_without_ipvs_nor_a_twin_kernel_asks_for_one(twin, says):
    with pytest.raises(UsageError, match=f"kernel 6.18.44 has no IPVS.*{says}.*give --kernel"):
        default_kernel(False, "6.18.44", twin)


def test_import_keeps_each_hosts_kernel_and_the_toml_round_trips_it():
    t = import_cluster([EXAMPLE]).topology
    assert {h.kernel for h in t.hosts if h.role != "client"} == {"6.1.0-56-amd64"}
    assert t.kernel == "6.1.0-56-amd64"
    again = topology_from_dict(tomllib.loads(dump(t)))
    assert [h.kernel for h in again.hosts] == [h.kernel for h in t.hosts]
    assert 'kernel = "6.1.0-56-amd64"' in dump(t)


def test_anonymized_import_keeps_the_version_only(tmp_path):
    root = tmp_path / "c"
    for d in EXAMPLE.iterdir():
        (root / d.name).mkdir(parents=True)
        for f in d.iterdir():
            (root / d.name / f.name).write_bytes(f.read_bytes())
        (root / d.name / "uname.txt").write_text("6.1.0-56-acme-zeta-amd64\n")
    t = import_cluster([root], anonymize=True).topology
    assert {h.kernel for h in t.hosts if h.role != "client"} == {"6.1.0"}
    assert "acme" not in dump(t) and debian_line(t.kernel) == "bookworm"


def test_topology_kernel_is_the_directors():
    t = copy.deepcopy(default_dr())
    assert t.kernel == ""
    for h in t.hosts:
        h.kernel = "6.12.38+deb13-amd64" if h.role == "director" else "6.1.0-57-amd64"
    assert t.kernel == "6.12.38+deb13-amd64"
    assert kernel_series(t.kernel) == "6.12" and kernel_series("x") == ""


def gate_result(kernel: str, twin: str) -> GateResult:
    t = default_dr()
    return GateResult("cluster", kernel, Applied(copy.deepcopy(t)),
                      Diagnosis("cluster", kernel, t), Diagnosis("cluster", kernel, t),
                      ["drlab", "gate"], twin_kernel=twin)


def test_report_says_when_the_twins_series_differs():
    r = gate_result("6.1.0-44-amd64", "6.12.38+deb13-amd64")
    assert "the cluster runs kernel 6.12.38+deb13-amd64 (series 6.12)" in r.text()
    assert "Note: the cluster runs kernel" in markdown(r)
    assert r.to_json()["twin_kernel"] == "6.12.38+deb13-amd64"
    for same in (gate_result("6.1.0-44-amd64", "6.1.0-57-amd64"),
                 gate_result("6.1.0-44-amd64", "")):
        assert same.kernel_differs == "" and "the cluster runs" not in same.text()


# -- the CLI: without --kernel, on this machine's kernel (no IPVS) ---------------------

REPO = Path(__file__).parents[2]
no_ipvs = pytest.mark.skipif(preflight.ipvs_available(load=False),
                             reason="the running kernel has IPVS: the gate runs on it")


def drlab_gate(*args: str, cache: Path | None = None) -> subprocess.CompletedProcess[str]:
    """``cache``: an empty kernel cache (no kernel index: the twin's line, not its build)."""
    env = os.environ | ({"DRLAB_KERNEL_CACHE": str(cache)} if cache else {})
    return subprocess.run([sys.executable, "-m", "lab", "gate", *args], capture_output=True,
                          text=True, timeout=120, cwd=REPO, env=env)


def gate_copy(tmp_path: Path, kernel: str) -> Path:
    """examples/gate outside the repository, its twin recording ``kernel``."""
    shutil.copytree(REPO / "examples" / "gate", tmp_path / "gate")
    toml = tmp_path / "gate" / "cluster.toml"
    t = topology_from_dict(tomllib.loads(toml.read_text()))
    for h in t.hosts:
        h.kernel = kernel
    toml.write_text(dump(t))
    return tmp_path / "gate/changes/safe/drlab-gate.toml"


@no_ipvs
def test_no_ipvs_and_no_twin_kernel_is_one_line_exit_2(tmp_path):
    p = drlab_gate("--manifest", "examples/gate/changes/safe/drlab-gate.toml",
                   "--json", str(tmp_path / "g.json"))
    assert p.returncode == 2 and len(p.stderr.strip().splitlines()) == 1, p.stderr
    assert "has no IPVS and the twin records no kernel" in p.stderr
    assert "give --kernel" in p.stderr and not list(tmp_path.iterdir())


@no_ipvs
def test_no_ipvs_and_an_unmapped_twin_kernel_is_one_line_exit_2(tmp_path):
    p = drlab_gate("--manifest", str(gate_copy(tmp_path, "5.10.0-31-amd64")))
    assert p.returncode == 2 and len(p.stderr.strip().splitlines()) == 1, p.stderr
    assert "the twin's kernel 5.10.0-31-amd64 is in no Debian line" in p.stderr


@no_ipvs
def test_no_ipvs_runs_the_twins_series_as_kernel_does(tmp_path):
    """The default goes through --kernel's dispatch: here refused before a VM boots,
    as --kernel bookworm is for a change outside the repository."""
    p = drlab_gate("--manifest", str(gate_copy(tmp_path, "6.1.0-57-amd64")),
                   cache=tmp_path / "kernels")
    assert p.returncode == 2 and "Traceback" not in p.stderr, p.stderr
    lines = p.stderr.strip().splitlines()
    assert "gate: the twin's kernel 6.1.0-57-amd64 -> bookworm" in lines[0]
    assert "outside" in lines[-1] and "a kernel's VM cannot read" in lines[-1]


def test_kernel_twin_names_the_twins_series_wherever_it_runs(tmp_path):
    assert twin_series("6.12.38+deb13-amd64").kernels == ["trixie"]
    with pytest.raises(UsageError, match="^--kernel twin: the twin records no kernel"):
        twin_series("")
    p = drlab_gate("--manifest", "examples/gate/changes/safe/drlab-gate.toml",
                   "--kernel", "twin")
    assert p.returncode == 2 and len(p.stderr.strip().splitlines()) == 1, p.stderr
    assert "--kernel twin: the twin records no kernel" in p.stderr
    p = drlab_gate("--manifest", str(gate_copy(tmp_path, "6.1.0-57-amd64")),
                   "--kernel", "twin", "--kernel", "bookworm", cache=tmp_path / "kernels")
    assert p.returncode == 2 and "Traceback" not in p.stderr, p.stderr
    assert p.stderr.strip().splitlines()[-1] == ("drlab: error: --kernel: a kernel is named "
                                                 "twice (twin is bookworm)")


@no_ipvs
def test_a_kernels_run_of_the_gate_stays_on_that_kernel():
    """--kernel host: the gate's child runs on the running kernel (--running-kernel),
    not the default (which here, without IPVS, would be the twin's series)."""
    p = drlab_gate("--manifest", "examples/gate/changes/safe/drlab-gate.toml",
                   "--kernel", "host")
    logs = [x.split("logs: ", 1)[1] for x in p.stdout.splitlines() if "logs: " in x]
    for d in logs:
        shutil.rmtree(d)
    assert p.returncode == 3 and len(logs) == 1, p.stdout + p.stderr
    assert "[host] drlab: error: kernel " in p.stderr and "has no IPVS" in p.stderr
    assert "records no kernel" not in p.stderr
