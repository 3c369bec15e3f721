"""``drlab diagnose --html``: the diagnosis of a cluster's twin as one self-contained page.

The twin drawn (:mod:`lab.report.diagram`): directors, real servers, the lab's
client, the segments and where every host holds each VIP; each finding's number
as a badge on the hosts it names (red: measured in the twin, orange: predicted
from the configuration alone; a green tick: nothing found; a grey "?" on a real
server no connection through the director reached: not verified, never a tick),
next to the list of findings with their evidence and fix. Then a table per service
(the ARP census, the connections, red when one bypassed the director, their spread
and what the pass through the director showed of each real server, the symptoms
once each with their count), where each host holds each VIP, and the notes.

No scripts, no external files: inline CSS and SVG. Every string is escaped: host
names and keepalived text come from the collected cluster.
"""

from __future__ import annotations

import time
from html import escape
from typing import TYPE_CHECKING, Any

from lab.model import Address, Host, Topology
from lab.report.diagram import BAD, OK, Badge, captions, svg

if TYPE_CHECKING:
    from lab.scenarios.diagnose import Diagnosis, Finding, ServiceResult

PREDICTED = "#e8590c"
PREDICTION = "prediction \u2014 not measured in the twin"
UNVERIFIED = "#868e96"
NOT_VERIFIED = "not verified: no connection through the director reached it"

STYLE = """
body{font:14px/1.4 system-ui,sans-serif;margin:24px;color:#212529}
h1{font-size:22px;margin:0 0 4px}h2{font-size:17px;margin:24px 0 8px}
.meta{color:#495057;margin:0}
.verdict{display:inline-block;font-weight:bold;padding:2px 10px;border-radius:12px;color:#fff}
.verdict.ok{background:#2b8a3e}.verdict.bad{background:#c92a2a}
.twin{display:flex;flex-wrap:wrap;gap:24px;align-items:flex-start}
.twin figure{margin:0;flex:0 0 auto;max-width:100%}
.twin svg{max-width:100%;height:auto}
.twin figcaption{font-size:12px;color:#495057;width:0;min-width:100%}
.twin figcaption p{margin:2px 0}
.findings{flex:1 1 360px;max-width:640px}
.findings h2{margin-top:0}
.finding{border:1px solid #ced4da;border-left:6px solid #c92a2a;border-radius:4px;
 padding:8px 12px;margin:0 0 12px}
.finding.predicted{border-left-color:#e8590c;border-left-style:dashed}
.finding h3{font-size:15px;margin:0 0 6px}
.num{display:inline-block;min-width:22px;height:22px;line-height:22px;border-radius:11px;
 background:#c92a2a;color:#fff;text-align:center;font-weight:bold;margin-right:6px}
.predicted .num{background:#e8590c}
.pred{display:inline-block;font-size:12px;font-weight:bold;color:#e8590c;
 border:1px solid #e8590c;border-radius:3px;padding:0 4px;margin-left:6px}
.finding dl{display:grid;grid-template-columns:max-content 1fr;gap:2px 10px;margin:0}
.finding dt{font-weight:bold;color:#495057}.finding dd{margin:0}
.finding ul{margin:0;padding-left:18px}
.none{color:#2b8a3e;font-weight:bold}
table{border-collapse:collapse;margin:8px 0}
th,td{border:1px solid #ced4da;padding:4px 8px;vertical-align:top;text-align:left}
th{background:#f1f3f5}td.name{white-space:nowrap}td.hostname{max-width:24em}
td ul{margin:0;padding-left:18px}td.ok{background:#ebfbee}td.bad{background:#ffe3e3}
.rs-verified{color:#2b8a3e}.rs-failed{color:#c92a2a;font-weight:bold}
.rs-not-verified{color:#868e96;font-style:italic}
code,pre{font:12px monospace}pre{margin:4px 0;white-space:pre-wrap;max-width:70em}
small{color:#495057}details summary{cursor:pointer}
.legend span{display:inline-block;margin-right:14px}
.dot{display:inline-block;width:12px;height:12px;border-radius:6px;vertical-align:middle;
 margin-right:4px}
"""


def _e(v: Any) -> str:
    return escape(str(v))


class _Names:
    """Findings name hosts by their collected name (label, else the lab name); the
    measurements (census, spread) by lab name. Both map to the lab name here."""

    def __init__(self, t: Topology) -> None:
        hosts = t.hosts
        self.shown = {h.name: h.shown for h in hosts}
        self.by_shown: dict[str, str] = {}
        for h in hosts:
            self.by_shown.setdefault(h.shown, h.name)

    def host(self, name: str) -> str | None:
        """The lab name of the host a finding names, if any (its shown name first)."""
        return self.by_shown.get(name) or (name if name in self.shown else None)

    def show(self, name: str) -> str:
        """How to show a host a measurement names by its lab name."""
        return self.shown.get(name, name)


def _placements(h: Host, vip: str) -> list[str]:
    """Where ``h`` holds ``vip``: ``lo /32``, ``dummy0 (dummy) /32``, ``eth0 (LAN lan) /24``."""
    out = []

    def one(where: str, a: Address) -> str:
        return f"{where} /{a.prefixlen}" + ("" if a.scope == "global" else f" scope {a.scope}")

    out += [one("lo", a) for a in h.lo if a.ip == vip]
    out += [one(f"{i.name} (dummy)", a) for i in h.dummies for a in i.addresses if a.ip == vip]
    out += [one(f"{i.name} (LAN {i.segment})", a) for i in h.interfaces for a in i.addresses
            if a.ip == vip]
    return out


def _header(d: Diagnosis) -> list[str]:
    findings = d.findings
    predicted = sum(1 for f in findings if not f.measured)
    if findings:
        verdict = (f'<span id="verdict" class="verdict bad">{len(findings)} finding'
                   + ("s" if len(findings) != 1 else "") + "</span>"
                   + (f" <small>({len(findings) - predicted} measured, {predicted} "
                      "predicted)</small>" if predicted else ""))
    else:
        verdict = '<span id="verdict" class="verdict ok">OK</span> <small>no finding</small>'
    return [f"<h1>Diagnosis of cluster {_e(d.cluster)} {verdict}</h1>",
            f'<p class="meta">Twin measured on kernel <code>{_e(d.kernel)}</code>'
            f"; {len(d.services)} service(s); generated "
            f"{_e(time.strftime('%Y-%m-%d %H:%M:%S %Z'))} by <code>drlab diagnose</code>.</p>"]


def _finding(n: int, f: Finding) -> str:
    measured = f.measured
    cls = "finding" + ("" if measured else " predicted")
    pred = "" if measured else f' <span class="pred">{_e(PREDICTION)}</span>'
    hosts = ", ".join(_e(h) for h in f.hosts)
    evidence = "".join(f"<li><code>{_e(e)}</code></li>" for e in f.evidence)
    return (f'<article class="{cls}" id="finding-{n}" data-finding="{_e(f.name)}">'
            f'<h3><span class="num">{n}</span>{_e(f.name)}{pred}</h3><dl>'
            f"<dt>hosts</dt><dd>{hosts or '-'}</dd>"
            f"<dt>service</dt><dd><code>{_e(f.service)}</code></dd>"
            f"<dt>symptom</dt><dd>{_e(f.symptom)}</dd>"
            f"<dt>evidence</dt><dd><ul>{evidence or '<li>-</li>'}</ul></dd>"
            f"<dt>fix</dt><dd>{_e(f.fix)}</dd></dl></article>")


def verified(d: Diagnosis, host: str) -> bool:
    """Real server ``host`` was reached through the director in every service it
    serves (a service not measured leaves it unverified)."""
    measured = {s.service: s for s in d.services}
    for svc in d.topology.services:
        if any(r.host == host for r in svc.real_servers):
            res = measured.get(svc.key)
            if res is None or res.status(host).value != "verified":
                return False
    return True


def _marks(d: Diagnosis, names: _Names) -> dict[str, list[str | Badge]]:
    marks: dict[str, list[str | Badge]] = {}
    for n, f in enumerate(d.findings, 1):
        measured = f.measured
        for shown in f.hosts:
            lab = names.host(shown)
            if lab is None:
                continue
            tip = f"{n}: {f.name}" + ("" if measured else f" ({PREDICTION})")
            marks.setdefault(lab, []).append(Badge(str(n), BAD if measured else PREDICTED, tip))
    members = {r.host for s in d.topology.services for r in s.real_servers}
    for h in sorted(members - set(marks)):
        if not verified(d, h):
            marks[h] = [Badge("?", UNVERIFIED, NOT_VERIFIED)]
    return marks


def _services(d: Diagnosis, names: _Names) -> list[str]:
    rows = d.services
    if not rows:
        return ["<p>No service was measured.</p>"]
    out = ['<table id="services"><thead><tr><th>service</th><th>director</th>'
           "<th>who answered ARP for the VIP (census)</th><th>connections ok/total</th>"
           "<th>spread over real servers</th><th>client's VIP entry after</th>"
           "<th>symptoms</th></tr></thead><tbody>"]
    by_key = {s.key: s for s in d.topology.services}
    for s in rows:
        director = s.director
        census = s.census
        census_ok = list(census) == [director]
        total = s.connections
        good = total - len(s.failed)
        dist = dict(s.distribution)
        svc = by_key.get(s.service)
        members = [r.host for r in svc.real_servers] if svc else []
        spread = [(m, dist.pop(m, 0)) for m in members] + sorted(dist.items())
        spread_html = "<br>".join(f"{_e(names.show(h))}: {c}" + _pass(s, h, members)
                                  for h, c in spread) or "-"
        entry = s.vip_entry
        entry_ok = entry in (None, director)
        symptoms = "".join(f"<li>{_e(text)}" + (f" <b>\u00d7{n}</b>" if n > 1 else "")
                           + "</li>" for text, n in s.grouped_symptoms())
        symptoms = f"<ul>{symptoms}</ul>" if symptoms else ""
        ladder = s.ladder
        if ladder:
            symptoms += (f"<details><summary>path proof</summary><pre>{_e(ladder)}</pre>"
                         "</details>")
        failed = s.failed
        if failed:
            symptoms += ("<details><summary>failed connections</summary><pre>"
                         + _e("\n".join(failed)) + "</pre></details>")
        out.append(
            f'<tr><td class="name"><code>{_e(s.service)}</code></td>'
            f'<td class="name">{_e(names.show(director))}</td>'
            f'<td class="{"ok" if census_ok else "bad"}">'
            + (", ".join(_e(names.show(c)) for c in census) or "nobody") + "</td>"
            f'<td class="{"ok" if good == total and not s.bypassed else "bad"}">'
            f"{good}/{total}"
            + (f"<br><small>{s.bypassed} bypassed the director</small>" if s.bypassed else "")
            + "</td>"
            f"<td>{spread_html}</td>"
            f'<td class="{"ok" if entry_ok else "bad"}">'
            f"{_e(names.show(entry)) if entry else '-'}</td>"
            f"<td>{symptoms or '-'}</td></tr>")
    out.append("</tbody></table>")
    return out


def _pass(s: ServiceResult, host: str, members: list[str]) -> str:
    """What the pass through the director showed of real server ``host``."""
    if host not in members:
        return ""
    c = next((r for r in s.real_servers if r.host == host), None)
    status = c.status.value if c else "not-verified"
    label = {"verified": "\u2713 verified through the director",
             "failed": "\u2717 failed through the director"}.get(status, "not verified")
    tip = f' title="{_e(c.detail)}"' if c and c.detail else ""
    return f' <span class="rs-{status}"{tip}>{label}</span>'


def _hosts(t: Topology, marks: dict[str, list[str | Badge]]) -> list[str]:
    vips = list(dict.fromkeys(s.vip for s in t.services))
    out = ['<table id="hosts"><thead><tr><th>host</th><th>role</th><th>in services</th>'
           + "".join(f"<th>VIP {_e(v)}</th>" for v in vips)
           + "<th>findings</th></tr></thead><tbody>"]
    for h in t.hosts:
        name = _e(h.shown) + (f"<br><small>lab host {_e(h.name)}</small>"
                              if h.label and h.label != h.name else "")
        if h.represents:
            name += (f"<br><small>stands for {len(h.represents)} identical: "
                     f"{_e(', '.join(h.represents))}</small>")
        roles = []
        for s in t.services:
            if s.director == h.name:
                roles.append(f"director of <code>{_e(s.key)}</code>")
            for r in s.real_servers:
                if r.host == h.name:
                    roles.append(f"real server of <code>{_e(s.key)}</code> (weight {r.weight}"
                                 + (f", listens {_e(r.listen)}" if r.listen != "any" else "")
                                 + ")")
        cells = "".join('<td class="name">' + ("<br>".join(_e(p) for p in _placements(h, v))
                                                or "-") + "</td>" for v in vips)
        got = [b for b in marks.get(h.name, [])
               if not (isinstance(b, Badge) and b.colour == UNVERIFIED)]
        nums = ", ".join(_e(b.text if isinstance(b, Badge) else b) for b in got)
        unverified = h.name in marks and not got
        out.append(f'<tr><td class="hostname">{name}</td><td>{_e(h.role)}</td>'
                   f"<td>{'<br>'.join(roles) or '-'}</td>{cells}"
                   + (f'<td class="rs-not-verified" title="{_e(NOT_VERIFIED)}">none found, '
                      "not verified</td></tr>" if unverified else
                      f'<td class="{"bad" if got else "ok"}">{nums or "none"}</td></tr>'))
    out.append("</tbody></table>")
    return out


def html(d: Diagnosis) -> str:
    """A diagnosis (:func:`lab.scenarios.diagnose.diagnose`) as one HTML page."""
    findings = d.findings
    t = d.topology
    names = _Names(t)
    marks = _marks(d, names)
    title = f"drlab diagnose: {d.cluster}"
    out = ["<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
           f"<title>{_e(title)}</title><style>{STYLE}</style></head><body>"]
    out += _header(d)
    out.append('<div class="twin"><figure>')
    out.append(svg(t, marks=marks, stacked=True, caption=False))
    out.append(
        "<figcaption>" + "".join(f"<p>{_e(c)}</p>" for c in captions(t))
        + '<p class="legend">'
        f'<span><i class="dot" style="background:{BAD}"></i>finding (measured)</span>'
        f'<span><i class="dot" style="background:{PREDICTED}"></i>finding (prediction)'
        "</span>"
        f'<span><i class="dot" style="background:{OK}"></i>nothing found</span>'
        f'<span><i class="dot" style="background:{UNVERIFIED}"></i>not verified '
        "(no connection through the director reached it)</span>"
        '<span style="color:#c92a2a;font-weight:bold">VIP</span> where a host holds it; '
        "a stack of cards is a folded host.</p></figcaption>")
    out.append('</figure><section class="findings" id="findings"><h2>Findings</h2>')
    if findings:
        out += [_finding(n, f) for n, f in enumerate(findings, 1)]
    else:
        out.append('<p class="none">No finding: the twin behaves as LVS-DR should.</p>')
    out.append("</section></div>")
    out.append("<h2>Services</h2>")
    out += _services(d, names)
    out.append("<h2>Hosts and where they hold each VIP</h2>")
    out += _hosts(t, marks)
    if d.notes:
        out.append('<h2>Notes</h2><ul id="notes">'
                   + "".join(f"<li>{_e(n)}</li>" for n in d.notes) + "</ul>")
    out.append("</body></html>")
    return "\n".join(out)
