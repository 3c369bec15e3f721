"""Draw a topology as SVG (for the HTML reports): segments as buses, hosts as boxes.

Hosts on one segment hang below its bus (``stacked``: directors, clients and
routers sit above it, real servers below); hosts on several segments (routers)
sit to the right and reach every bus they are on. Each box lists the host's
interfaces (dummies included) and ``lo`` with their addresses, every VIP
highlighted wherever it is held; a host with a collected name shows it (and its
lab name), a folded host how many it stands for. ``marks`` puts badges on hosts
(e.g. the numbers of the findings about them); with marks, every other host gets
a green tick.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from html import escape

from lab.model.topology import Host, Topology

ROLE_COLOUR = {"director": "#cfe2ff", "realserver": "#d1e7dd", "client": "#e9ecef",
               "router": "#ffe5b4"}
BOX_W, LINE_H, GAP, BUS_GAP, MARGIN = 190, 15, 24, 70, 20
MONO_W, TITLE_W, ROLE_W, BADGE_R = 6.7, 8.0, 5.6, 11  # glyph widths (px, estimated)
BAD, OK = "#c92a2a", "#2b8a3e"


@dataclass(frozen=True)
class Badge:
    """A badge on a host's box: short text on a coloured disc, a tooltip."""

    text: str
    colour: str = BAD
    title: str = ""


def _lines(h: Host) -> list[str]:
    """One line per address: ``eth0  192.0.2.2/24``, continuation lines indented."""
    rows = [(i.name, i.addresses) for i in [*h.interfaces, *h.dummies]] + (
        [("lo", h.lo)] if h.lo else [])
    pad = max([5] + [len(n) + 1 for n, _ in rows])
    out = []
    for name, addrs in rows:
        texts = [a.cidr + ("" if a.scope == "global" else f" scope {a.scope}") for a in addrs]
        for n, text in enumerate(texts or ["-"]):
            out.append(f"{name if n == 0 else '':<{pad}}{text}")
    return out


def _notes(h: Host) -> list[str]:
    """The small lines under a host's title: its lab name, what it stands for."""
    out = []
    if h.label and h.label != h.name:
        out.append(f"lab host {h.name}")
    if h.represents:
        out.append(f"stands for {len(h.represents)} identical")
    return out


def _badges(marks: Mapping[str, Sequence[str | Badge]] | None, h: Host) -> list[Badge]:
    if marks is None:
        return []
    got = [b if isinstance(b, Badge) else Badge(b) for b in marks.get(h.name, ())]
    return got or [Badge("\u2713", OK, "nothing found")]


def svg(t: Topology, *, marks: Mapping[str, Sequence[str | Badge]] | None = None,
        stacked: bool = False, caption: bool = True) -> str:
    """The topology as a standalone ``<svg>`` element.

    ``marks``: host (lab name) -> badges (text, or :class:`Badge`) drawn on its box,
    red unless a badge says otherwise; given, unmarked hosts get a green tick.
    ``stacked``: on each segment, the hosts that are not real servers above the bus.
    ``caption``: a line per service under the drawing (false: the page says it).
    """
    vips = t.vips
    segs = [s.name for s in t.segments]
    single: dict[str, list[Host]] = {s: [] for s in segs}
    multi: list[Host] = []
    for h in t.hosts:
        on = {i.segment for i in h.interfaces}
        if len(on) == 1:
            single[next(iter(on))].append(h)
        elif on:
            multi.append(h)
    rows: dict[str, tuple[list[Host], list[Host]]] = {}
    for s in segs:
        up = [h for h in single[s] if stacked and h.role != "realserver"]
        down = [h for h in single[s] if h not in up]
        rows[s] = (up, down) if up and down else ([], single[s])

    def height(h: Host) -> int:
        return 26 + LINE_H * (len(_notes(h)) + len(_lines(h)))

    def box_w(h: Host) -> int:
        """Wide enough for the longest line, the title and the badges (estimated)."""
        return max(BOX_W, 20 + int(max(
            [MONO_W * len(line) for line in _lines(h)]
            + [ROLE_W * 1.1 * len(note) for note in _notes(h)]
            + [TITLE_W * len(h.shown) + ROLE_W * (len(h.role) + 1)
               + (2 * BADGE_R + 4) * len(_badges(marks, h))])))

    def row_w(hosts: list[Host]) -> int:
        return sum(box_w(h) + GAP for h in hosts)

    per_row = max([row_w(r) for up, down in rows.values() for r in (up, down)]
                  + [BOX_W + GAP])
    width = MARGIN * 2 + per_row + row_w(multi)
    parts: list[str] = []
    y = MARGIN
    bus_y: dict[str, int] = {}
    boxes: list[tuple[Host, int, int]] = []
    for s in segs:
        up, down = rows[s]
        top_h = max([height(h) for h in up] + [0])
        for n, h in enumerate(up):
            boxes.append((h, MARGIN + row_w(up[:n]), y + top_h - height(h)))
        y += top_h + 30 if up else 20
        bus_y[s] = y
        row_h = max([height(h) for h in down] + [0])
        for n, h in enumerate(down):
            boxes.append((h, MARGIN + row_w(down[:n]), y + 30))
        y += 30 + row_h + BUS_GAP
    y -= BUS_GAP
    mx = MARGIN + per_row
    for h in multi:
        ys = sorted(bus_y[i.segment] for i in h.interfaces)
        boxes.append((h, mx, (ys[0] + ys[-1]) // 2 - height(h) // 2 + 20))
        mx += box_w(h) + GAP
    total_h = max([by + height(h) for h, _, by in boxes] + [y]) + MARGIN
    bus_x2 = width - MARGIN
    for s in segs:
        parts.append(f'<line x1="{MARGIN}" y1="{bus_y[s]}" x2="{bus_x2}" y2="{bus_y[s]}" '
                     'stroke="#495057" stroke-width="4"/>')
        parts.append(f'<text x="{MARGIN}" y="{bus_y[s] - 8}" class="seg">segment '
                     f'{escape(s)}</text>')
    for h, bx, by in boxes:
        bw = box_w(h)
        cx = bx + bw // 2
        hh = height(h)
        for n, i in enumerate(h.interfaces):
            y0 = bus_y[i.segment]
            x = cx + (n - (len(h.interfaces) - 1) / 2) * 30
            y1 = by if y0 < by else by + hh
            parts.append(f'<line x1="{x:.0f}" y1="{y0}" x2="{x:.0f}" y2="{y1}" '
                         'stroke="#868e96" stroke-width="2"/>')
        badges = _badges(marks, h)
        fill = ROLE_COLOUR.get(h.role, "#fff")
        stroke = (f'stroke="{escape(badges[0].colour)}" stroke-width="3"' if badges
                  else 'stroke="#343a40"')
        parts.append(f'<g class="hostbox" data-host="{escape(h.name)}">')
        if h.represents:  # a folded host: a stack of cards
            for k in (2, 1):
                parts.append(f'<rect x="{bx + 5 * k}" y="{by - 5 * k}" width="{bw}" '
                             f'height="{hh}" rx="6" fill="{fill}" stroke="#868e96"/>')
        parts.append(f'<rect x="{bx}" y="{by}" width="{bw}" height="{hh}" rx="6" '
                     f'fill="{fill}" {stroke}/>')
        parts.append(f'<text x="{bx + 8}" y="{by + 17}" class="host">{escape(h.shown)} '
                     f'<tspan class="role">{escape(h.role)}</tspan></text>')
        notes = _notes(h)
        for n, note in enumerate(notes):
            parts.append(f'<text x="{bx + 8}" y="{by + 32 + n * LINE_H}" class="note">'
                         f"{escape(note)}</text>")
        top = by + 34 + len(notes) * LINE_H
        for n, line in enumerate(_lines(h)):
            ips = {w.split("/")[0] for w in line.split() if "/" in w}
            cls = "addr vip" if ips & vips else "addr"
            parts.append(f'<text x="{bx + 8}" y="{top + n * LINE_H}" class="{cls}" '
                         f'xml:space="preserve">{escape(line)}</text>')
        for k, b in enumerate(badges):
            bcx = bx + bw - BADGE_R - 4 - (len(badges) - 1 - k) * (2 * BADGE_R + 4)
            tip = f"<title>{escape(b.title)}</title>" if b.title else ""
            parts.append(f'<g class="badge" data-badge="{escape(b.text)}">{tip}'
                         f'<circle cx="{bcx}" cy="{by}" r="{BADGE_R}" '
                         f'fill="{escape(b.colour)}" stroke="#fff" stroke-width="1.5"/>'
                         f'<text x="{bcx}" y="{by + 4}" class="badge" text-anchor="middle">'
                         f"{escape(b.text)}</text></g>")
        parts.append("</g>")
    for text in (captions(t) if caption else []):
        total_h += 16
        parts.append(f'<text x="{MARGIN}" y="{total_h - 8}" class="cap">{escape(text)}</text>')
    style = ("<style>.seg{font:bold 12px sans-serif;fill:#495057}"
             ".host{font:bold 13px sans-serif}.role{font:italic 11px sans-serif;fill:#495057}"
             ".note{font:italic 11px sans-serif;fill:#495057}"
             ".addr{font:11px monospace}.vip{fill:#c92a2a;font-weight:bold}"
             "text.badge{font:bold 12px sans-serif;fill:#fff}"
             ".cap{font:12px sans-serif}</style>")
    return (f'<svg xmlns="http://www.w3.org/2000/svg" class="topology" width="{width}" '
            f'height="{total_h}" viewBox="0 0 {width} {total_h}" role="img" '
            f'aria-label="topology {escape(t.name)}">{style}{"".join(parts)}</svg>')


def captions(t: Topology) -> list[str]:
    """One line per service: VIP, scheduler, director, real servers (shown names)."""
    out = []
    for sv in t.services:
        rs = ", ".join(f"{_shown(t, r.host)} (w{r.weight})" for r in sv.real_servers)
        out.append(f"VIP {sv.vip}:{sv.port}/{sv.protocol}, scheduler {sv.scheduler}, "
                   f"DR via {_shown(t, sv.director)} to {rs}")
    return out


def _shown(t: Topology, name: str) -> str:
    try:
        return t.host(name).shown
    except KeyError:
        return name
