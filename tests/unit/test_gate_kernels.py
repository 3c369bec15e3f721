"""``drlab gate --kernel K ...`` without a VM: the worst-verdict merge, the child's
command (kernels run's machinery, verb ``gate``), the rows a kernel's result gives,
the merged reports (a JUnit testsuite and a markdown section per kernel), and the
arguments refused before any VM boots."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from lab.report.gate import html, html_kernels, junit, junit_kernels, markdown, markdown_kernels
from lab.scenarios.gate import Verdict, worst
from lab.sweep import kmatrix
from lab.sweep.kgate import NO_VERDICT_EXIT, KernelGate, KernelsGate
from tests.unit.test_gate import diag, finding, result

REPO = Path(__file__).resolve().parents[2]
P, X, F = Verdict.PASS, Verdict.FIXED, Verdict.FAIL


@pytest.mark.parametrize(("verdicts", "want"), [
    ([P], P), ([X], X), ([F], F), ([P, X], X), ([X, P, P], X), ([P, F], F),
    ([X, F, P], F), ([F, F], F)])
def test_worst_verdict(verdicts, want):
    assert worst(verdicts) is want


def test_worst_of_nothing_is_an_error():
    with pytest.raises(ValueError):
        worst([])


def kgate(name: str, verdict: Verdict | None, exit_code: int | None = None) -> KernelGate:
    if verdict is None:
        return KernelGate(name, None, 125 if exit_code is None else exit_code, 30.0, None,
                          "no result (exit 125, the VM failed: log)")
    arp = finding("rs-answers-arp")
    r = {P: result(diag([arp]), diag([arp])), X: result(diag([arp]), diag([])),
         F: result(diag([]), diag([arp]))}[verdict]
    r.kernel = f"6.1.0-{name}"
    return KernelGate(name, f"6.1.0-{name}", verdict.exit_code, 90.0, verdict, None,
                      r.to_json(), {"xml": junit(r), "md": markdown(r), "html": html(r)})


def test_kernels_verdict_and_exit_code():
    assert KernelsGate([kgate("a", P), kgate("b", X)]).verdict is X
    g = KernelsGate([kgate("a", P), kgate("b", F)])
    assert g.verdict is F and g.exit_code == 1
    # a kernel without a verdict: fail still fails; otherwise not measured everywhere
    g = KernelsGate([kgate("a", None), kgate("b", F)])
    assert g.verdict is F and g.exit_code == 1
    g = KernelsGate([kgate("a", P), kgate("b", None)])
    assert g.verdict is None and g.exit_code == NO_VERDICT_EXIT
    assert "b (release unknown): no verdict" in g.text()
    assert KernelsGate([kgate("a", P)]).exit_code == 0


def test_child_command_is_drlab_gate_with_its_reports_beside_the_result(tmp_path):
    cmd = kmatrix.child_command("gate", ["--manifest", "/r/m.toml"], tmp_path)
    assert cmd[1:5] == ["-m", "lab", "gate", "--manifest"]
    assert cmd[cmd.index("--json") + 1] == str(tmp_path / "result.json")
    assert cmd[cmd.index("--junit") + 1] == str(tmp_path / "report.xml")
    assert cmd[cmd.index("--markdown") + 1] == str(tmp_path / "report.md")
    assert "gate" not in kmatrix.VERBS  # not a `kernels run` verb: `gate --kernel` is


def test_gate_rows_from_a_kernels_result():
    data = kgate("k", F).result
    rows = kmatrix.read_result("gate", data).cells
    assert rows["verdict"].status is kmatrix.Status.FAILED
    assert rows[f"rs-answers-arp on rs1 [{finding('rs-answers-arp').service}]"].status \
        is kmatrix.Status.FAILED
    assert kmatrix.read_result("gate", kgate("k", X).result).cells["verdict"].status \
        is kmatrix.Status.OK
    with pytest.raises(ValueError):
        kmatrix.read_result("gate", {"verdict": "pass"})


def test_junit_has_a_testsuite_per_kernel_and_sums_failures():
    g = KernelsGate([kgate("bookworm", P), kgate("trixie", F), kgate("sid", None)])
    root = ET.fromstring(junit_kernels(g))
    suites = root.findall("testsuite")
    assert [s.get("name").rsplit(" on ", 1)[1] for s in suites] == ["bookworm", "trixie",
                                                                    "sid"]
    fails = sum(len(s.findall("testcase/failure")) for s in suites)
    assert int(root.get("failures")) == fails == 1
    assert int(root.get("errors")) == 1  # sid gave no verdict
    assert int(root.get("tests")) == sum(len(s.findall("testcase")) for s in suites)
    props = {p.get("name"): p.get("value") for p in suites[1].iter("property")}
    assert props["kernel.name"] == "trixie" and props["kernel.release"] == "6.1.0-trixie"
    # the same testcase on two kernels is two testcases (a reporter keys by class.name)
    names = [f"{c.get('classname')}.{c.get('name')}" for c in root.iter("testcase")]
    assert len(names) == len(set(names))


def test_markdown_and_html_show_each_kernel():
    g = KernelsGate([kgate("bookworm", P), kgate("trixie", F)])
    md = markdown_kernels(g)
    assert md.startswith("## \u274c drlab gate: FAIL (the worst of 2 kernel(s))")
    assert "| trixie | `6.1.0-trixie` | fail |" in md
    assert "## Kernel bookworm (`6.1.0-bookworm`)" in md and "### \u2705 drlab gate: PASS" in md
    assert md.index("Kernel bookworm") < md.index("Kernel trixie")
    assert ("On this kernel alone: `drlab gate --topology c.toml --apply rs1=90.conf "
            "--kernel trixie`") in md
    page = html_kernels(g)
    assert page.count("<body>") == 1 and "Kernel trixie (6.1.0-trixie)" in page
    json.dumps(g.to_json())


def drlab_gate(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "lab", "gate", *args], capture_output=True,
                          text=True, timeout=120, cwd=REPO)


def test_a_kernel_named_twice_is_bad_input(tmp_path):
    p = drlab_gate("--manifest", "examples/gate/changes/safe/drlab-gate.toml",
                   "--kernel", "bookworm", "--kernel", "bookworm",
                   "--json", str(tmp_path / "g.json"))
    assert p.returncode == 2
    assert p.stderr.strip() == "drlab: error: --kernel: a kernel is named twice"
    assert not list(tmp_path.iterdir())


def test_files_outside_the_repository_are_refused_before_a_vm(tmp_path):
    """A kernel's VM reads through to the repository only: a change outside it could
    not be read there; said before any VM boots (no kernel is even resolved)."""
    shutil.copytree(REPO / "examples" / "gate", tmp_path / "gate")
    p = drlab_gate("--manifest", str(tmp_path / "gate/changes/safe/drlab-gate.toml"),
                   "--kernel", "bookworm")
    assert p.returncode == 2 and len(p.stderr.strip().splitlines()) == 1, p.stderr
    assert "outside" in p.stderr and "Traceback" not in p.stderr
