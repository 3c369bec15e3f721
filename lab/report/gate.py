"""``drlab gate``'s reports for a pipeline: JUnit XML (one testcase per service, per
finding and per reload), Markdown for a person in the pull request (before/after per
finding, the reload's numbers, the command to reproduce it; fit for
``$GITHUB_STEP_SUMMARY``), and one self-contained HTML page.

Every string from the cluster (host names, evidence) is escaped: XML by ElementTree,
HTML by :func:`html.escape`, Markdown table cells by :func:`_md`.
"""

from __future__ import annotations

import time
import xml.etree.ElementTree as ET
from html import escape
from typing import TYPE_CHECKING

from lab.report.diagnosis import STYLE

if TYPE_CHECKING:
    from lab.scenarios.diagnose import Finding
    from lab.scenarios.gate import GateResult

_ICON = {"pass": "\u2705", "fixed": "\u2705", "fail": "\u274c"}


def _where(f: Finding) -> str:
    return f"{f.name} on {', '.join(f.hosts)} [{f.service}]"


def _rows(r: GateResult) -> list[tuple[str, Finding, str, str]]:
    """(status, finding, before, after) for every finding of either side."""
    return ([("added", f, "-", "found") for f in r.breaks]
            + [("fixed", f, "found", "-") for f in r.fixes]
            + [("unchanged", f, "found", "found") for f in r.still])


def junit(r: GateResult) -> str:
    """JUnit XML: testsuites/testsuite/testcase; a finding the change adds, a service
    that loses connections and a reload over budget are failures; a finding there
    before and after is skipped (not this change's), a fixed one passes."""
    cases: list[ET.Element] = []
    failures = skipped = 0
    for s in r.services:
        c = ET.Element("testcase", classname=f"drlab.gate.{r.cluster}.service",
                       name=f"service {s.service}")
        a = f"{s.after.ok}/{s.after.of}" if s.after else "gone"
        out = f"connections {s.before.ok}/{s.before.of} before, {a} after"
        if s in r.lost:
            failures += 1
            ET.SubElement(c, "failure", message=f"the change loses connections: {out}",
                          type="connections").text = out
        ET.SubElement(c, "system-out").text = out
        cases.append(c)
    for status, f, _b, _a in _rows(r):
        c = ET.Element("testcase", classname=f"drlab.gate.{r.cluster}.finding",
                       name=_where(f))
        detail = "\n".join([f.symptom, *f.evidence, f"fix: {f.fix}"])
        if status == "added":
            failures += 1
            ET.SubElement(c, "failure", message=f"the change adds {_where(f)}: {f.symptom}",
                          type=f.name).text = detail
        elif status == "unchanged":
            skipped += 1
            ET.SubElement(c, "skipped", message="found before the change as well")
        else:
            ET.SubElement(c, "system-out").text = "fixed by the change\n" + detail
        cases.append(c)
    if r.reload is not None:
        c = ET.Element("testcase", classname=f"drlab.gate.{r.cluster}.reload",
                       name=f"keepalived reload of {', '.join(r.reload.directors)}")
        c.set("time", f"{r.reload.seconds:.3f}")
        if r.reload_over_budget:
            failures += 1
            ET.SubElement(c, "failure", message=f"{r.reload.drops} dropped, budget "
                          f"{r.reload_budget}", type="reload").text = "\n".join(
                              [r.reload.text(), *r.reload.errors])
        ET.SubElement(c, "system-out").text = r.reload.text()
        cases.append(c)
    counts = {"tests": str(len(cases)), "failures": str(failures), "errors": "0",
              "skipped": str(skipped)}
    root = ET.Element("testsuites", {"name": "drlab gate", **counts})
    suite = ET.SubElement(root, "testsuite", {"name": f"drlab gate: {r.cluster}",
                                              "timestamp": time.strftime("%Y-%m-%dT%H:%M:%S"),
                                              **counts})
    props = ET.SubElement(suite, "properties")
    for k, v in (("kernel", r.kernel), ("verdict", r.verdict.value),
                 ("reproduce", r.reproduce)):
        ET.SubElement(props, "property", name=k, value=v)
    suite.extend(cases)
    ET.indent(root)
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(root, "unicode") + "\n"


def _md(text: str) -> str:
    """A Markdown table cell: pipes, backticks and angle brackets neutralised, one line."""
    return (" ".join(text.split()).replace("\\", "\\\\").replace("|", "\\|")
            .replace("`", "'").replace("<", "&lt;").replace(">", "&gt;"))


def markdown(r: GateResult) -> str:
    v = r.verdict.value
    lines = [f"## {_ICON[v]} drlab gate: {v.upper()}", "",
             f"Measured on the twin of **{_md(r.cluster)}**, kernel `{_md(r.kernel)}`.", ""]
    changes = [f"- `{_md(h)}`: " + ", ".join(f"`{_md(k)}={_md(x)}`" for k, x in kv.items())
               for h, kv in r.applied.sysctls.items()]
    changes += [f"- `{_md(h)}`: keepalived.conf" for h in r.applied.keepalived]
    changes += [f"- `{_md(h)}`: IPVS rules (ipvsadm-save)" for h in r.applied.ipvsadm]
    lines += ["### The change", "", *changes, ""]
    rows = _rows(r)
    lines += ["### Findings", ""]
    if rows:
        lines += ["| | Finding | Hosts | Service | Before | After | Catalogue fix |",
                  "|---|---|---|---|---|---|---|"]
        for status, f, b, a in rows:
            mark = {"added": "\u274c added", "fixed": "\u2705 fixed",
                    "unchanged": "\u2796 unchanged"}[status]
            pred = "" if f.measured else " (prediction)"
            lines.append(f"| {mark} | `{_md(f.name)}`{pred} | {_md(', '.join(f.hosts))} | "
                         f"{_md(f.service)} | {b} | {a} | {_md(f.fix)} |")
    else:
        lines.append("No finding before or after the change.")
    lines += ["", "### Connections through every service", "",
              "| Service | Before | After | ARP answered by (after) |", "|---|---|---|---|"]
    for s in r.services:
        a = f"{s.after.ok}/{s.after.of}" if s.after else "gone"
        lost = " \u274c" if s in r.lost else ""
        lines.append(f"| {_md(s.service)} | {s.before.ok}/{s.before.of} | {a}{lost} | "
                     + _md(", ".join(s.after.census) if s.after else "-") + " |")
    if r.reload:
        x = r.reload
        over = "\u274c over" if r.reload_over_budget else "\u2705 within"
        lines += ["", "### keepalived reload under load (SIGHUP)", "",
                  f"{over} the budget of {r.reload_budget} dropped connection(s).", "",
                  "| Directors | Connections before / during / after | Failed | Reset | "
                  "VIP holder changes | Out of the table during | Still out after | "
                  "Settled in |", "|---|---|---|---|---|---|---|---|",
                  f"| {_md(', '.join(x.directors))} | {x.before} / {x.during} / {x.after} | "
                  f"{x.failed} | {x.reset} | {x.holder_changes} | "
                  f"{_md(', '.join(x.out_during)) or 'none'} | "
                  f"{_md(', '.join(x.out_after)) or 'none'} | {x.seconds:.1f} s |", ""]
        lines += [f"- error: {_md(e)}" for e in x.errors]
        lines += [f"- keepalived: {_md(ln)}" for ln in x.log]
    if r.masked:
        lines += ["", "### Masked: the kernel does not act on these", ""]
        lines += [f"- {_md(m)}" for m in r.masked]
    if r.applied.notes:
        lines += ["", "### Notes", ""] + [f"- {_md(n)}" for n in r.applied.notes]
    lines += ["", "### Reproduce locally", "", "```sh", r.reproduce.replace("```", "'''"),
              "```", ""]
    return "\n".join(lines)


def html(r: GateResult) -> str:
    """One self-contained page: the verdict and the tables of :func:`markdown`."""
    v = r.verdict.value
    cls = "bad" if v == "fail" else "ok"
    out = ["<!doctype html><html><head><meta charset='utf-8'>",
           f"<title>drlab gate: {escape(v)} ({escape(r.cluster)})</title>",
           f"<style>{STYLE}table{{border-collapse:collapse}}td,th{{border:1px solid #ced4da;"
           "padding:3px 8px;text-align:left;vertical-align:top}</style></head><body>",
           f"<h1>drlab gate <span class='verdict {cls}'>{escape(v.upper())}</span></h1>",
           f"<p class='meta'>the twin of {escape(r.cluster)}, kernel {escape(r.kernel)}</p>",
           "<h2>Findings</h2><table><tr><th></th><th>Finding</th><th>Hosts</th>"
           "<th>Service</th><th>Before</th><th>After</th><th>Evidence</th><th>Fix</th></tr>"]
    for status, f, b, a in _rows(r):
        ev = "<br>".join(escape(e) for e in f.evidence)
        out.append(f"<tr><td>{escape(status)}</td><td>{escape(f.name)}"
                   f"{'' if f.measured else ' (prediction)'}</td>"
                   f"<td>{escape(', '.join(f.hosts))}</td><td>{escape(f.service)}</td>"
                   f"<td>{b}</td><td>{a}</td><td>{ev}</td><td>{escape(f.fix)}</td></tr>")
    out.append("</table><h2>Connections</h2><table><tr><th>Service</th><th>Before</th>"
               "<th>After</th></tr>")
    for s in r.services:
        a = f"{s.after.ok}/{s.after.of}" if s.after else "gone"
        out.append(f"<tr><td>{escape(s.service)}</td><td>{s.before.ok}/{s.before.of}</td>"
                   f"<td>{escape(a)}{' (lost)' if s in r.lost else ''}</td></tr>")
    out.append("</table>")
    if r.reload:
        out.append(f"<h2>keepalived reload under load</h2><p>{escape(r.reload.text())} "
                   f"(budget {r.reload_budget})</p>")
        out += [f"<p>error: {escape(e)}</p>" for e in r.reload.errors]
    for title, items in (("Masked", r.masked), ("Notes", r.applied.notes)):
        if items:
            out.append(f"<h2>{title}</h2><ul>"
                       + "".join(f"<li>{escape(m)}</li>" for m in items) + "</ul>")
    out.append(f"<h2>Reproduce locally</h2><pre>{escape(r.reproduce)}</pre></body></html>")
    return "\n".join(out) + "\n"
