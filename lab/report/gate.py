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
    from lab.sweep.kgate import KernelsGate

_ICON = {"pass": "\u2705", "fixed": "\u2705", "fail": "\u274c"}
_NO_VERDICT = "\u2757"


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
    if r.kernel_differs:
        lines += [f"Note: {_md(r.kernel_differs)}.", ""]
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


# -- the gate on several kernels (drlab gate --kernel K ...) ----------------------------

def junit_kernels(g: KernelsGate) -> str:
    """One JUnit file: each kernel's testsuite (as its gate wrote it), named and
    classed by the kernel, with the kernel's name and release as properties; a kernel
    that gave no verdict is a testsuite with one error."""
    root = ET.Element("testsuites", name="drlab gate")
    totals = dict.fromkeys(("tests", "failures", "errors", "skipped"), 0)
    for k in g.kernels:
        suites = []
        if "xml" in k.reports and k.verdict:
            suites = list(ET.fromstring(k.reports["xml"]).iter("testsuite"))
        if not suites:
            s = ET.Element("testsuite", name="drlab gate", tests="1", failures="0",
                           errors="1", skipped="0")
            c = ET.SubElement(s, "testcase", classname="drlab.gate", name="the gate")
            ET.SubElement(c, "error", message=k.error or "no verdict").text = k.error
            suites = [s]
        for s in suites:
            s.set("name", f"{s.get('name')} on {k.kernel}")
            props = s.find("properties")
            if props is None:
                props = ET.Element("properties")
                s.insert(0, props)
            for name, value in (("kernel.name", k.kernel), ("kernel.release", k.release)):
                ET.SubElement(props, "property", name=name, value=value or "")
            for c in s.iter("testcase"):
                c.set("classname", f"{k.kernel}.{c.get('classname')}")
            for t in totals:
                totals[t] += int(s.get(t) or 0)
            root.append(s)
    for t, n in totals.items():
        root.set(t, str(n))
    ET.indent(root)
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(root, "unicode") + "\n"


def markdown_kernels(g: KernelsGate) -> str:
    """A table of the kernels' verdicts, then each kernel's summary (its headings one
    level down) under the kernel's name."""
    v = g.verdict
    lines = [f"## {_ICON[v.value] if v else _NO_VERDICT} drlab gate: "
             f"{v.value.upper() if v else 'NO VERDICT'} (the worst of "
             f"{len(g.kernels)} kernel(s))", "", "| Kernel | Release | Verdict | Seconds |",
             "|---|---|---|---|"]
    for k in g.kernels:
        lines.append(f"| {_md(k.kernel)} | `{_md(k.release or '?')}` | "
                     + (k.verdict.value if k.verdict else f"no verdict: {_md(k.error or '')}")
                     + f" | {k.seconds:.0f} |")
    for k in g.kernels:
        lines += ["", f"## Kernel {_md(k.kernel)} (`{_md(k.release or '?')}`)", ""]
        if k.result and k.result.get("reproduce"):
            lines += ["On this kernel alone: `"
                      + _md(f"{k.result['reproduce']} --kernel {k.kernel}") + "`", ""]
        md = k.reports.get("md") if k.verdict else None
        lines += ([("#" + ln if ln.startswith("#") else ln) for ln in md.splitlines()]
                  if md else [f"No verdict: {_md(k.error or '')}"])
    return "\n".join(lines) + "\n"


def html_kernels(g: KernelsGate) -> str:
    """One page: the kernels' verdicts, then each kernel's page (its body)."""
    v = g.verdict
    out = ["<!doctype html><html><head><meta charset='utf-8'>",
           f"<title>drlab gate: {escape(v.value if v else 'no verdict')} "
           f"({len(g.kernels)} kernels)</title>",
           f"<style>{STYLE}table{{border-collapse:collapse}}td,th{{border:1px solid #ced4da;"
           "padding:3px 8px;text-align:left;vertical-align:top}</style></head><body>",
           f"<h1>drlab gate on {len(g.kernels)} kernels <span class='verdict "
           f"{'ok' if v and v.exit_code == 0 else 'bad'}'>"
           f"{escape(v.value.upper() if v else 'NO VERDICT')}</span></h1>",
           "<table><tr><th>Kernel</th><th>Release</th><th>Verdict</th><th>Seconds</th></tr>"]
    for k in g.kernels:
        out.append(f"<tr><td>{escape(k.kernel)}</td><td>{escape(k.release or '?')}</td><td>"
                   + escape(k.verdict.value if k.verdict else f"no verdict: {k.error}")
                   + f"</td><td>{k.seconds:.0f}</td></tr>")
    out.append("</table>")
    for k in g.kernels:
        out.append(f"<hr><h1>Kernel {escape(k.kernel)} ({escape(k.release or '?')})</h1>")
        page = k.reports.get("html", "") if k.verdict else ""
        body = page.partition("<body>")[2].rpartition("</body>")[0]
        out.append(body or f"<p>no verdict: {escape(k.error or '')}</p>")
    out.append("</body></html>")
    return "\n".join(out) + "\n"
