"""A bisection over Debian kernel builds as one self-contained HTML page: the
answer, each step (build, verdict, fetch/boot/run seconds) and the suspects."""

from __future__ import annotations

from html import escape

from lab.report.html import STYLE
from lab.sweep.bisect import KernelBisection

_CLASS = {"good": "ok", "bad": "bad", "skip": "skip"}


def bisect_html(r: KernelBisection, command: list[str]) -> str:
    b = r.bisection
    steps = "".join(
        f"<tr><td>{n}</td><td><code>{escape(s.build)}</code></td>"
        f"<td class={_CLASS[s.verdict.value]}>{s.verdict.value}</td>"
        f"<td>{s.seconds:.0f}</td>"
        + "".join(f"<td>{'' if (v := r.timings.get(s.build, {}).get(k)) is None else v}</td>"
                  for k in ("fetch", "boot", "run")) + "</tr>"
        for n, s in enumerate(b.steps, 1))
    sus = ("<p>" + escape(r.suspects_note) + "</p>" if r.suspects_note else
           "<table><tr><th>upload</th><th>change</th><th>upstream commits</th></tr>" + "".join(
               f"<tr><td><code>{escape(x.version)}</code></td><td>{escape(x.text)}</td>"
               f"<td><code>{escape(', '.join(x.commits))}</code></td></tr>"
               for x in r.suspects) + "</table>")
    skipped = (f"<p>Not judged between them: {escape(', '.join(b.skipped_between))}</p>"
               if b.skipped_between else "")
    return (f"<!doctype html><html><head><meta charset=utf-8><title>kernel bisect: "
            f"{escape(b.first_bad)}</title><style>{STYLE}</style></head><body>"
            f"<h1>Kernel bisect</h1><p class=meta><code>{escape(' '.join(command))}</code> over "
            f"{len(r.builds)} builds, {escape(r.builds[0])} to {escape(r.builds[-1])}</p>"
            f"<p><span class=tag>last good</span> <code>{escape(b.last_good)}</code>, "
            f"<span class=tag>first bad</span> <code>{escape(b.first_bad)}</code>; "
            f"{b.boots} boots, {r.seconds:.0f} s</p>{skipped}"
            f"<h2>Steps</h2><table><tr><th>#</th><th>build</th><th>verdict</th><th>s</th>"
            f"<th>fetch s</th><th>boot s</th><th>run s</th></tr>{steps}</table>"
            f"<h2>Suspects ({len(r.suspects)})</h2>{sus}</body></html>\n")
