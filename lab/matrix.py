"""Sweeps: measure many real-server configurations against the prediction.

``drlab matrix`` takes ranges (command line or TOML), runs every cell in its
own lab (several side by side), compares each observation with
:func:`lab.model.predict.predict`, and reports as a terminal table, JSON and
Markdown. ``--save``/``--baseline`` diff two runs cell by cell (before/after
a change, or two kernels).
"""

from __future__ import annotations

import itertools
import json
import platform
import time
import tomllib
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from lab.errors import UsageError
from lab.model.predict import RsConfig, predict, topology_for

#: Sweep axes, their RsConfig field and the values allowed.
AXES: dict[str, tuple[str, tuple]] = {
    "arp_ignore": ("arp_ignore", (0, 1, 2, 3, 8)),
    "arp_announce": ("arp_announce", (0, 1, 2)),
    "knob_on": ("knob_on", ("all", "lan", "lo")),
    "vip_place": ("vip_place", ("lo32", "lo-wide", "lan", "absent")),
    "scope": ("scope", ("global", "host")),
    "vip_in_lan": ("vip_in_lan", (True, False)),
    "rp_filter": ("rp_filter", (0, 1, 2)),
}
FIELDS = ("answers_arp", "announce_sender", "dr_works", "poisons")


def _parse_value(axis: str, text: str) -> Any:
    allowed = AXES[axis][1]
    if isinstance(allowed[0], bool):
        v: Any = {"yes": True, "true": True, "1": True, "no": False, "false": False,
                  "0": False}.get(text.lower())
    elif isinstance(allowed[0], int):
        v = int(text) if text.lstrip("-").isdigit() else None
    else:
        v = text
    if v not in allowed:
        raise UsageError(f"matrix: {axis}={text!r} is not one of "
                         f"{', '.join(str(a) for a in allowed)}")
    return v


def parse_axes(spec: dict[str, Any]) -> dict[str, list[Any]]:
    """``{"arp_ignore": "0,1" or [0, 1], ...}`` -> validated value lists per axis."""
    out: dict[str, list[Any]] = {}
    for axis, raw in spec.items():
        if axis not in AXES:
            raise UsageError(f"matrix: unknown axis {axis!r} (one of {', '.join(AXES)})")
        items = raw.split(",") if isinstance(raw, str) else list(raw)
        out[axis] = [_parse_value(axis, str(x).strip()) for x in items]
        if not out[axis]:
            raise UsageError(f"matrix: axis {axis} is empty")
    return out


def load_spec(path: str | Path) -> dict[str, list[Any]]:
    """A TOML file of axes: ``arp_ignore = [0, 1, 2]`` etc."""
    try:
        data = tomllib.loads(Path(path).read_text())
    except FileNotFoundError:
        raise UsageError(f"{path}: no such file") from None
    except tomllib.TOMLDecodeError as e:
        raise UsageError(f"{path}: not valid TOML: {e}") from None
    return parse_axes(data)


def cells(axes: dict[str, list[Any]]) -> list[RsConfig]:
    base = RsConfig()
    names = list(axes)
    out = []
    for combo in itertools.product(*(axes[n] for n in names)):
        kw = {AXES[n][0]: v for n, v in zip(names, combo, strict=True)}
        out.append(RsConfig(**{**{f.name: getattr(base, f.name) for f in fields(base)}, **kw}))
    return out


@dataclass
class Cell:
    config: RsConfig
    predicted: dict[str, Any]
    observed: dict[str, Any] | None = None
    evidence: list[str] = field(default_factory=list)
    error: str | None = None
    seconds: float = 0.0

    @property
    def label(self) -> str:
        return self.config.label()

    @property
    def match(self) -> bool:
        return self.error is None and self.observed == self.predicted

    def to_json(self) -> dict[str, Any]:
        return {"label": self.label, "config": asdict(self.config),
                "predicted": self.predicted, "observed": self.observed,
                "match": self.match, "error": self.error, "evidence": self.evidence,
                "seconds": round(self.seconds, 3)}


def _run_cell(cfg: RsConfig) -> Cell:
    from lab.builder import Lab
    from lab.probes.arpcheck import measure
    from lab.roles import realserver

    p = predict(cfg)
    cell = Cell(cfg, {k: getattr(p, k) for k in FIELDS})
    t0 = time.monotonic()
    try:
        with Lab(topology_for(cfg)) as lab:
            realserver.start_service(lab, "rs1")
            o = measure(lab)
            cell.observed = {k: getattr(o, k) for k in FIELDS}
            cell.evidence = o.evidence
    except Exception as e:  # a cell that cannot be measured is reported, not fatal
        cell.error = f"{type(e).__name__}: {e}"
    cell.seconds = time.monotonic() - t0
    return cell


def run(configs: list[RsConfig], jobs: int = 4) -> list[Cell]:
    """Measure every cell, ``jobs`` labs side by side (threads: setns is per thread)."""
    with ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
        return list(pool.map(_run_cell, configs))


def _fmt(v: Any) -> str:
    return "-" if v is None else "yes" if v is True else "no" if v is False else str(v)


def table(result: list[Cell]) -> str:
    from lab.report import table as tab

    rows = []
    for c in result:
        obs = c.observed or {}
        rows.append([c.label] + [
            _fmt(obs.get(k)) + ("" if c.observed is None or obs.get(k) == c.predicted[k]
                                else f" (predicted {_fmt(c.predicted[k])})") for k in FIELDS]
            + ["ok" if c.match else ("ERROR " + (c.error or "")) if c.error else "MISMATCH"])
    return tab(rows, ["cell", "answers ARP", "announce", "DR works", "poisons", "verdict"])


def markdown(result: list[Cell]) -> str:
    lines = ["| cell | answers ARP | announce sender | DR works | poisons | verdict |",
             "| --- | --- | --- | --- | --- | --- |"]
    for c in result:
        obs = c.observed or {}
        lines.append(f"| `{c.label}` | " + " | ".join(_fmt(obs.get(k)) for k in FIELDS)
                     + f" | {'ok' if c.match else 'MISMATCH'} |")
    return "\n".join(lines)


def to_json(result: list[Cell], wall: float) -> dict[str, Any]:
    return {"kernel": platform.release(), "wall_seconds": round(wall, 2),
            "cells": [c.to_json() for c in result],
            "mismatches": sum(not c.match for c in result)}


def diff(baseline: dict[str, Any], current: dict[str, Any]) -> list[str]:
    """Cells whose observation changed between two saved runs, with the evidence."""
    before = {c["label"]: c for c in baseline["cells"]}
    out = []
    for c in current["cells"]:
        b = before.get(c["label"])
        if b is None:
            out.append(f"{c['label']}: new cell (observed {c['observed']})")
            continue
        if b["observed"] != c["observed"]:
            changes = ", ".join(f"{k} {_fmt((b['observed'] or {}).get(k))} -> "
                                f"{_fmt((c['observed'] or {}).get(k))}" for k in FIELDS
                                if (b["observed"] or {}).get(k) != (c["observed"] or {}).get(k))
            out.append(f"{c['label']}: {changes} (kernel {baseline.get('kernel')} -> "
                       f"{current.get('kernel')})\n    " + "\n    ".join(c["evidence"]))
    for label in sorted(set(before) - {c["label"] for c in current["cells"]}):
        out.append(f"{label}: missing from this run")
    return out


def load_result(path: str | Path) -> dict[str, Any]:
    try:
        return json.loads(Path(path).read_text())
    except FileNotFoundError:
        raise UsageError(f"{path}: no such file") from None
    except ValueError as e:
        raise UsageError(f"{path}: not a saved matrix run: {e}") from None
