"""Self-contained HTML reports (no scripts, no external files) for matrix and kernel runs.

One page: what was run and where, the topology drawn (:mod:`lab.report.diagram`), a
table with a row per cell (or scenario, or test) and a column per kernel, and
under every cell its evidence in a ``<details>`` block. Attach it to a change
request as it is.
"""

from __future__ import annotations

import time
from html import escape

from lab.report.diagram import svg
from lab.sweep.kmatrix import Report, Status

STYLE = """
body{font:14px/1.4 system-ui,sans-serif;margin:24px;color:#212529}
h1{font-size:22px}h2{font-size:17px;margin-top:28px}
table{border-collapse:collapse;margin:8px 0}
th,td{border:1px solid #ced4da;padding:4px 8px;vertical-align:top;text-align:left}
th{background:#f1f3f5}
td.ok{background:#ebfbee}td.bad{background:#ffe3e3}td.skip{background:#f8f9fa;color:#868e96}
tr.differs td.key{border-left:4px solid #f08c00}
code,pre{font:12px monospace}pre{margin:4px 0;white-space:pre-wrap;max-width:60em}
details summary{cursor:pointer}
.meta{color:#495057}.tag{font-weight:bold}
"""

_CLASS = {Status.OK: "ok", Status.NOT_RUN: "skip"}


def _status_class(status: Status) -> str:
    return _CLASS.get(status, "bad")


def _command(what: str, args: list[str]) -> str:
    if what == "suite":
        return "pytest " + " ".join(args)
    if what == "scenario":
        return "drlab scenario run " + (" ".join(args) or "all")
    return f"drlab {what} " + " ".join(args)


def kernels_html(report: Report, title: str | None = None) -> str:
    """A merged report (:func:`lab.sweep.kmatrix.merge`) as one HTML page."""
    what = report.what
    kernels = report.kernels
    title = title or (f"LVS-DR lab: {what} on {len(kernels)} kernel"
                      + ("s" if len(kernels) != 1 else ""))
    out = ["<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
           f"<title>{escape(title)}</title><style>{STYLE}</style></head><body>",
           f"<h1>{escape(title)}</h1>",
           f'<p class="meta">Generated {time.strftime("%Y-%m-%d %H:%M:%S %Z")} by drlab; '
           f"command on each kernel: <code>{escape(_command(what, report.args))}</code></p>"]
    bad = sum(r.bad for r in report.rows)
    differs = sum(r.differs for r in report.rows)
    missing = report.missing
    out.append(f'<p id="verdict" class="tag">{len(report.rows)} rows; {bad} failing on some '
               f"kernel; {differs} differing across kernels"
               + (f"; {len(missing)} missing" if missing else "") + ".</p>")
    if report.merged:
        out.append(f'<p class="meta">Merged from {report.merged} shard reports '
                   "(<code>drlab kernels merge</code>).</p>")
    if missing:
        out.append('<ul id="missing">' + "".join(f"<li>missing: {escape(m)}</li>"
                                                 for m in missing) + "</ul>")
    out.append('<h2>Kernels</h2><table id="kernels"><tr><th>kernel</th><th>release</th>'
               "<th>image</th><th>wall time</th><th>exit</th><th>problem</th></tr>")
    for k in kernels:
        out.append(f"<tr><td>{escape(k.name)}</td><td>{escape(str(k.release))}</td>"
                   f"<td><code>{escape(k.image or 'running kernel')}</code></td>"
                   f"<td>{k.seconds:.0f} s</td><td>{k.exit_code}</td>"
                   f"<td>{escape(k.error or '')}"
                   + (" (the VM died and was booted again)" if k.retried else "")
                   + "</td></tr>")
    out.append("</table>")
    if report.topology is not None:
        out.append("<h2>Topology</h2>")
        out.append(svg(report.topology))
        if what == "matrix":
            out.append('<p class="meta">Drawn for the first cell; every cell changes the '
                       "settings its label names.</p>")
    out.append("<h2>Results</h2>")
    has_pred = any(r.predicted for r in report.rows)
    out.append('<table id="results"><thead><tr><th>' + {"matrix": "cell", "scenario": "scenario",
                                                          "suite": "test"}.get(what, "row")
               + "</th>" + ("<th>predicted</th>" if has_pred else "")
               + "".join(f"<th>{escape(k.name)}<br><small>{escape(str(k.release))}"
                         "</small></th>" for k in kernels)
               + "<th>across kernels</th></tr></thead><tbody>")
    for r in report.rows:
        cls = ' class="differs"' if r.differs else ""
        note = f"<br><small>{escape(r.note)}</small>" if r.note else ""
        if r.topologies:  # a scenario row: each variant's own lab, drawn
            note += "".join(
                f'<details class="topology"><summary>{escape(v)} lab</summary>'
                f"{svg(t)}</details>" for v, t in r.topologies.items())
        cells = [f'<td class="key"><code>{escape(r.key)}</code>{note}</td>']
        if has_pred:
            cells.append(f"<td><small>{escape(r.predicted or '')}</small></td>")
        for k in kernels:
            c = r.kernels.get(k.name)
            if c is None:
                cells.append('<td class="skip">-</td>')
                continue
            ev = "\n".join(c.evidence)
            body = (f'<span class="tag">{escape(c.status.value)}</span><br>'
                    f"<small>{escape(c.summary)}</small>")
            if ev:
                body += (f"<details><summary>evidence</summary><pre>{escape(ev)}</pre>"
                         "</details>")
            cells.append(f'<td class="{_status_class(c.status)}">{body}</td>')
        cells.append(f"<td>{'differs' if r.differs else 'same'}</td>")
        out.append(f"<tr{cls}>" + "".join(cells) + "</tr>")
    out.append("</tbody></table></body></html>")
    return "\n".join(out)


def matrix_html(report: Report) -> str:
    """A single ``drlab matrix`` run (:func:`lab.sweep.kmatrix.matrix_report`) as HTML:
    one kernel column."""
    return kernels_html(report, title=f"LVS-DR lab: matrix on kernel "
                                      f"{report.kernels[0].release}")
