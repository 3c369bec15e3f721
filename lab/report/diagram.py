"""Draw a topology as SVG (for the HTML reports): segments as buses, hosts as boxes.

Hosts on one segment hang below its bus; hosts on several segments (routers)
sit to the right and reach every bus they are on. Each box lists the host's
interfaces and addresses, the VIP highlighted wherever it is held.
"""

from __future__ import annotations

from html import escape

from lab.model.topology import Host, Topology

ROLE_COLOUR = {"director": "#cfe2ff", "realserver": "#d1e7dd", "client": "#e9ecef",
               "router": "#ffe5b4"}
BOX_W, LINE_H, GAP, BUS_GAP, MARGIN = 190, 15, 24, 70, 20


def _lines(h: Host) -> list[str]:
    """One line per address: ``eth0 192.0.2.2/24``, continuation lines indented."""
    out = []
    for name, addrs in [(i.name, i.addresses) for i in h.interfaces] + (
            [("lo", h.lo)] if h.lo else []):
        texts = [a.cidr + ("" if a.scope == "global" else f" scope {a.scope}") for a in addrs]
        for n, text in enumerate(texts or ["-"]):
            out.append(f"{name if n == 0 else '':<5}{text}")
    return out


def svg(t: Topology) -> str:
    """The topology as a standalone ``<svg>`` element."""
    vip = t.service.vip if t.service else None
    segs = [s.name for s in t.segments]
    single: dict[str, list[Host]] = {s: [] for s in segs}
    multi: list[Host] = []
    for h in t.hosts:
        on = {i.segment for i in h.interfaces}
        if len(on) == 1:
            single[next(iter(on))].append(h)
        elif on:
            multi.append(h)

    def height(h: Host) -> int:
        return 26 + LINE_H * len(_lines(h))

    per_row = max([len(v) for v in single.values()] + [1])
    width = MARGIN * 2 + (per_row + len(multi)) * (BOX_W + GAP)
    parts: list[str] = []
    y = MARGIN + 20
    bus_y: dict[str, int] = {}
    boxes: list[tuple[Host, int, int]] = []
    for s in segs:
        bus_y[s] = y
        row_h = max([height(h) for h in single[s]] + [0])
        for n, h in enumerate(single[s]):
            boxes.append((h, MARGIN + n * (BOX_W + GAP), y + 30))
        y += 30 + row_h + BUS_GAP
    y -= BUS_GAP
    mx = MARGIN + per_row * (BOX_W + GAP)
    for h in multi:
        ys = sorted(bus_y[i.segment] for i in h.interfaces)
        boxes.append((h, mx, (ys[0] + ys[-1]) // 2 - height(h) // 2 + 20))
        mx += BOX_W + GAP
    total_h = max([by + height(h) for h, _, by in boxes] + [y]) + MARGIN
    bus_x2 = width - MARGIN
    for s in segs:
        parts.append(f'<line x1="{MARGIN}" y1="{bus_y[s]}" x2="{bus_x2}" y2="{bus_y[s]}" '
                     'stroke="#495057" stroke-width="4"/>')
        parts.append(f'<text x="{MARGIN}" y="{bus_y[s] - 8}" class="seg">segment '
                     f'{escape(s)}</text>')
    for h, bx, by in boxes:
        cx = bx + BOX_W // 2
        for n, i in enumerate(h.interfaces):
            y0 = bus_y[i.segment]
            x = cx + (n - (len(h.interfaces) - 1) / 2) * 30
            y1 = by if y0 < by else by + height(h)
            parts.append(f'<line x1="{x:.0f}" y1="{y0}" x2="{x:.0f}" y2="{y1}" '
                         'stroke="#868e96" stroke-width="2"/>')
        parts.append(f'<rect x="{bx}" y="{by}" width="{BOX_W}" height="{height(h)}" rx="6" '
                     f'fill="{ROLE_COLOUR.get(h.role, "#fff")}" stroke="#343a40"/>')
        parts.append(f'<text x="{bx + 8}" y="{by + 17}" class="host">{escape(h.name)} '
                     f'<tspan class="role">{escape(h.role)}</tspan></text>')
        for n, line in enumerate(_lines(h)):
            cls = "addr vip" if vip and f" {vip}/" in f" {line.split()[-1]}" else "addr"
            parts.append(f'<text x="{bx + 8}" y="{by + 34 + n * LINE_H}" class="{cls}" '
                         f'xml:space="preserve">{escape(line)}</text>')
    caption = ""
    if t.service:
        sv = t.service
        rs = ", ".join(f"{r.host} (w{r.weight})" for r in sv.real_servers)
        caption = (f"VIP {sv.vip}:{sv.port}/{sv.protocol}, scheduler {sv.scheduler}, "
                   f"DR via {sv.director} to {rs}")
        total_h += 14
        parts.append(f'<text x="{MARGIN}" y="{total_h - 8}" class="cap">{escape(caption)}</text>')
    style = ("<style>.seg{font:bold 12px sans-serif;fill:#495057}"
             ".host{font:bold 13px sans-serif}.role{font:italic 11px sans-serif;fill:#495057}"
             ".addr{font:11px monospace}.vip{fill:#c92a2a;font-weight:bold}"
             ".cap{font:12px sans-serif}</style>")
    return (f'<svg xmlns="http://www.w3.org/2000/svg" class="topology" width="{width}" '
            f'height="{total_h}" viewBox="0 0 {width} {total_h}" role="img" '
            f'aria-label="topology {escape(t.name)}">{style}{"".join(parts)}</svg>')
