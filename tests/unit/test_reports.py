"""Kernel-matrix merging, the topology drawing and the HTML report (rendered in
headless Chromium when it is installed; CI installs it and requires it)."""

import json
import re
import subprocess
from pathlib import Path

import pytest

from lab.errors import UsageError
from lab.model import default_dr
from lab.model.loader import topology_to_dict
from lab.report.diagram import svg
from lab.report.html import kernels_html
from lab.sweep import kernels, kmatrix


def _cell(label, observed, predicted, evidence=("e",), skipped=False, error=None):
    return {"label": label, "observed": observed, "predicted": predicted,
            "fields": list(predicted), "match": observed == predicted and not error,
            "skipped": skipped, "error": error, "evidence": list(evidence)}


def _runs():
    good = {"answers_arp": False, "poisons": False}
    k1 = kernels.Kernel("bookworm", None, "6.1.0")
    k2 = kernels.Kernel("trixie", None, "6.12.0")
    d1 = {"kernel": "6.1.0", "cells": [_cell("a", good, good),
                                        _cell("b", good, good, ["b on 6.1"])],
          "topology": topology_to_dict(default_dr(behind_router=True))}
    d2 = {"kernel": "6.12.0", "cells": [_cell("a", good, good),
                                         _cell("b", dict(good, poisons=True), good,
                                               ["tell 192.0.2.100 <script>"])]}
    return [kmatrix.KernelRun(k1, 0, 10.0, kmatrix.read_result("matrix", d1), None, "6.1.0"),
            kmatrix.KernelRun(k2, 1, 12.0, kmatrix.read_result("matrix", d2), None, "6.12.0")]


def test_merge_one_row_per_cell_one_column_per_kernel():
    report = kmatrix.merge("matrix", ["--arp-ignore", "1"], _runs())
    assert [r.key for r in report.rows] == ["a", "b"]
    a, b = report.rows
    assert not a.differs and not a.bad
    assert b.differs and b.bad
    assert b.kernels["bookworm"].status is kmatrix.Status.OK
    assert b.kernels["trixie"].status is kmatrix.Status.MISMATCH
    assert "poisons=yes" in b.kernels["trixie"].summary
    assert report.failed == 1
    text = "\n".join(kmatrix.details(report))
    assert "b:" in text and "trixie: mismatch" in text and "tell 192.0.2.100" in text
    assert "a:" not in text
    assert "DIFFERS" in kmatrix.table(report)


def test_the_report_names_the_suite_that_served_each_kernel():
    runs = _runs()
    runs[1] = kmatrix.KernelRun(kernels.Kernel("newest-7", None, "7.3.4+deb13-amd64",
                                               "trixie-backports"), 0, 1.0, runs[1].result,
                                None, "7.3.4+deb13-amd64")
    report = kmatrix.merge("matrix", [], runs)
    assert [k.suite for k in report.kernels] == [None, "trixie-backports"]
    back = kmatrix.Report.from_json(json.loads(json.dumps(report.to_json())))
    assert [k.suite for k in back.kernels] == [None, "trixie-backports"]


def test_a_kernel_without_result_fails_the_report():
    runs = _runs()
    runs[1] = kmatrix.KernelRun(runs[1].kernel, 125, 3.0, None, "no result (exit 125)")
    report = kmatrix.merge("matrix", [], runs)
    assert report.failed == 1
    assert all(r.kernels["trixie"] is None for r in report.rows)


def test_suite_rows_from_junit(tmp_path):
    junit = tmp_path / "j.xml"
    junit.write_text('<testsuites><testsuite><testcase classname="t" name="ok" time="1"/>'
                     '<testcase classname="t" name="bad"><failure message="boom"/></testcase>'
                     '<testcase classname="t" name="sk"><skipped message="no IPVS"/></testcase>'
                     "</testsuite></testsuites>")
    rows = kmatrix.ROWS["suite"](kmatrix.suite_result(junit))
    assert {k: v.status.value for k, v in rows.items()} == {
        "t::ok": "ok", "t::bad": "failed", "t::sk": "not run"}


def test_diagram_draws_every_host_and_segment():
    t = default_dr(behind_router=True)
    out = svg(t)
    assert out.startswith("<svg") and out.endswith("</svg>")
    for h in t.hosts:
        assert f">{h.name} <tspan" in out
    for s in t.segments:
        assert f"segment {s.name}" in out
    assert out.count('class="addr vip"') == 1 + 2  # the director's and each real server's


def test_kernel_names_are_checked(tmp_path):
    with pytest.raises(UsageError, match="no such file"):
        kernels.resolve(str(tmp_path / "vmlinuz-9.9"))
    img = tmp_path / "boot" / "vmlinuz-9.9"
    img.parent.mkdir()
    img.write_bytes(b"x")
    with pytest.raises(UsageError, match="its modules are not in"):
        kernels.resolve(str(img))
    (tmp_path / "lib" / "modules" / "9.9").mkdir(parents=True)
    assert kernels.resolve(str(img)).release == "9.9"
    named = kernels.resolve(f"mine={img}")
    assert (named.name, named.release, named.image) == ("mine", "9.9", img)
    with pytest.raises(UsageError, match="not a Debian suite"):
        kernels.resolve("Trixie!")
    assert kernels.resolve("host").is_host


def test_html_report_renders_in_headless_chromium(tmp_path, chromium):
    report = kmatrix.merge("matrix", ["--arp-ignore", "1"], _runs())
    page = tmp_path / "report.html"
    page.write_text(kernels_html(report))
    html = page.read_text()
    assert "<script" not in html.replace("&lt;script", "")  # self-contained, escaped
    assert not re.search(r'(src|href)="(http|//)', html)
    # (a profile of its own: headless Chromium fails without a writable one, as where
    # root's home is read-only, e.g. scripts/vm-run's VM)
    args = [chromium, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
            f"--user-data-dir={tmp_path / 'chromium'}"]
    dom = subprocess.run([*args, "--dump-dom", page.as_uri()], capture_output=True, text=True,
                         timeout=120).stdout
    body = dom[dom.index('<table id="results">'):]
    body = body[:body.index("</table>")]
    assert body.count("<tr") == 1 + 2  # header and one row per cell
    assert "<th>bookworm<br><small>6.1.0</small></th>" in body
    assert 'class="bad"' in body and "mismatch" in body
    assert "&lt;script&gt;" in body  # evidence is text, never markup
    assert "<svg" in dom and "segment lan" in dom
    shot = tmp_path / "report.png"
    subprocess.run([*args, "--window-size=1200,900", f"--screenshot={shot}", page.as_uri()],
                   capture_output=True, timeout=120, check=True)
    png = shot.read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 20_000  # a page, not a blank


def _diagnosis(finding_on: str | None) -> dict:
    svc = {"service": "192.0.2.100:80/tcp", "director": "lvs1", "census": ["lvs1"],
           "connections": 4, "failed": [], "distribution": {"web1": 4}, "vip_entry": "lvs1",
           "symptoms": [], "ladder": ""}
    findings = []
    if finding_on:
        svc = dict(svc, census=["lvs1", "web3"], symptoms=["web3 answers who-has 192.0.2.100"])
        findings = [{"name": "sysctls-on-lo-only", "hosts": [finding_on],
                     "service": "192.0.2.100:80/tcp", "symptom": "s", "evidence": ["e <b>"],
                     "fix": "f", "measured": True}]
    return {"ok": not findings, "cluster": "c", "kernel": "k", "findings": findings,
            "services": [svc], "notes": [], "topology": topology_to_dict(default_dr())}


def test_kernels_run_diagnose_one_row_per_service_and_finding():
    assert kmatrix.child_command("diagnose", ["cluster.toml"], Path("/o"))[-4:] == [
        "diagnose", "cluster.toml", "--json-file", "/o/result.json"]
    with pytest.raises(UsageError, match="give the cluster"):
        kmatrix.child_command("diagnose", [], Path("/o"))
    k1 = kernels.Kernel("bookworm", None, "6.1.0")
    k2 = kernels.Kernel("trixie", None, "6.12.0")
    report = kmatrix.merge("diagnose", ["cluster.toml"], [
        kmatrix.KernelRun(k1, 0, 10.0, kmatrix.read_result("diagnose", _diagnosis(None)), None,
                          "6.1.0"),
        kmatrix.KernelRun(k2, 1, 12.0, kmatrix.read_result("diagnose",
                                                           _diagnosis("web3.example.net")),
                          None, "6.12.0")])
    rows = {r.key: r for r in report.rows}
    svc = rows["service 192.0.2.100:80/tcp"]
    assert svc.differs and svc.kernels["bookworm"].status is kmatrix.Status.OK
    assert svc.kernels["trixie"].status is kmatrix.Status.PROBLEMS
    f = rows["sysctls-on-lo-only on web3.example.net [192.0.2.100:80/tcp]"]
    assert f.kernels["bookworm"] is None
    assert f.kernels["trixie"].status is kmatrix.Status.FINDING
    assert f.differs
    assert f.finding == kmatrix.FindingKey("sysctls-on-lo-only", ("web3.example.net",),
                                           "192.0.2.100:80/tcp")
    assert report.failed == 2
    page = kernels_html(report)
    assert "sysctls-on-lo-only on web3.example.net" in page and "e &lt;b&gt;" in page


def test_a_report_is_data_and_its_json_comes_back_the_same():
    """The report's JSON (what --json writes, CI and `kernels merge` read) keeps its
    shape and parses back into the same report."""
    report = kmatrix.merge("matrix", ["--arp-ignore", "1"], _runs())
    data = report.to_json()
    assert set(data) >= {"what", "args", "kernels", "rows", "topology", "missing", "failed"}
    b = data["rows"][1]
    assert (b["key"], b["differs"], b["bad"]) == ("b", True, True)
    assert b["kernels"]["trixie"]["status"] == "mismatch" and "predicted" in b
    assert data["failed"] == 1 and data["kernels"][0]["name"] == "bookworm"
    back = kmatrix.Report.from_json(data)
    assert back.to_json() == data and back.topology == report.topology
    with pytest.raises(UsageError, match="not a `drlab kernels run` report"):
        kmatrix.Report.from_json({"rows": [{"key": "a"}], "kernels": []})
    bad = dict(data, rows=[dict(b, kernels={"k": dict(b["kernels"]["trixie"], status="meh")})])
    with pytest.raises(UsageError, match="not a `drlab kernels run` report"):
        kmatrix.Report.from_json(bad)


def test_every_status_is_bad_but_ok_and_not_run():
    S = kmatrix.Status
    assert {s for s in S if not s.bad} == {S.OK, S.NOT_RUN}


def test_a_single_matrix_run_is_a_one_kernel_report():
    from lab.report.html import matrix_html

    good = {"answers_arp": False, "poisons": False}
    data = {"kernel": "6.1.0", "cells": [_cell("a", good, good), _cell("b", good, good)],
            "mismatches": 0, "wall_seconds": 3.0}
    report = kmatrix.matrix_report(data, ["--arp-ignore 1"])
    assert [k.name for k in report.kernels] == ["this kernel"] and report.failed == 0
    assert [r.key for r in report.rows] == ["a", "b"]
    page = matrix_html(report)
    assert "LVS-DR lab: matrix on kernel 6.1.0" in page and "--arp-ignore 1" in page


def test_a_result_file_of_another_kind_is_no_result():
    with pytest.raises(ValueError, match="not a matrix result"):
        kmatrix.read_result("matrix", {"scenarios": []})
    with pytest.raises(ValueError, match="not a diagnose result"):
        kmatrix.read_result("diagnose", ["not", "a", "dict"])
