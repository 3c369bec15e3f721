"""Sweeps: measure many configurations against the prediction.

``drlab matrix`` takes ranges (command line or TOML) of two kinds of axes:
the real server's ARP and VIP setup (:data:`AXES`, predicted by
:func:`lab.model.predict.predict`, measured without IPVS) and the director's
net.ipv4.vs.* knobs (:data:`VS_AXES`, predicted by
:func:`lab.model.predict.predict_vs`, measured on a real IPVS director; only
the behaviours that depend on a swept knob are probed). Every cell runs in
its own lab (several side by side) and the report is a terminal table, JSON,
Markdown or HTML. ``--save``/``--baseline`` diff two runs cell by cell
(before/after a change, or two kernels).
"""

from __future__ import annotations

import itertools
import json
import platform
import time
import tomllib
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lab.errors import UsageError
from lab.model.loader import topology_to_dict
from lab.model.predict import (
    EXTRA_KEYS,
    KNOBS_ON,
    PLACES,
    SCOPES,
    VS_BEHAVIOURS,
    VS_KNOBS,
    RsConfig,
    VsConfig,
    predict,
    predict_vs,
    topology_for,
    topology_for_vs,
)
from lab.model.topology import check_sysctl
from lab.util import Progress
from lab.util import table as tab

if TYPE_CHECKING:
    from lab.probes.vs_knobs import VsObservation


#: Real-server axes, their RsConfig field and the values allowed.
AXES: dict[str, tuple[str, tuple[object, ...]]] = {
    "arp_ignore": ("arp_ignore", (0, 1, 2, 3, 8)),
    "arp_announce": ("arp_announce", (0, 1, 2)),
    "knob_on": ("knob_on", KNOBS_ON),
    "vip_place": ("vip_place", PLACES),
    "scope": ("scope", SCOPES),
    "vip_in_lan": ("vip_in_lan", (True, False)),
    "rp_filter": ("rp_filter", (0, 1, 2)),
}
FIELDS = ("answers_arp", "announce_sender", "dr_works", "poisons")
#: The director's IPVS axes: net.ipv4.vs.<name>.
VS_AXES: dict[str, tuple[str, tuple[object, ...]]] = {k: (k, v) for k, v in VS_KNOBS.items()}
ALL_AXES = {**AXES, **VS_AXES}
SHORT = {"answers_arp": "answers ARP", "announce_sender": "announce", "dr_works": "DR works",
         "poisons": "poisons", "midstream_scheduled": "mid-stream ACK scheduled",
         "icmp_scheduled": "ICMP scheduled", "nodest_expires": "no-dest reset",
         "quiescent_sticks": "sticks at w0", "reuse_delay": "reuse delay"}


def _parse_value(axis: str, text: str) -> Any:
    allowed = ALL_AXES[axis][1]
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
    """``{"arp_ignore": "0,1" or [0, 1], ...}`` -> validated value lists per axis.

    IPVS axes may be given as ``net.ipv4.vs.<name>`` too."""
    out: dict[str, list[Any]] = {}
    for key, raw in spec.items():
        axis = key.removeprefix("net.ipv4.vs.")
        if axis not in ALL_AXES:
            raise UsageError(f"matrix: unknown axis {key!r} (one of {', '.join(ALL_AXES)})")
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


@dataclass(frozen=True)
class CellConfig:
    """One cell: a real-server setup (ARP axes), director knobs (IPVS axes), or both."""

    rs: RsConfig | None = None
    vs: VsConfig | None = None
    #: The IPVS behaviours probed (those depending on a swept knob).
    behaviours: tuple[str, ...] = ()

    def label(self) -> str:
        return "+".join(x.label() for x in (self.rs, self.vs) if x is not None)

    @property
    def fields(self) -> tuple[str, ...]:
        return (FIELDS if self.rs else ()) + self.behaviours

    def predicted(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        if self.rs:
            p = predict(self.rs)
            out.update({k: getattr(p, k) for k in FIELDS})
        if self.vs:
            pv = predict_vs(self.vs)
            out.update({k: pv[k] for k in self.behaviours})
        return out

    def to_json(self) -> dict[str, Any]:
        return {"rs": asdict(self.rs) if self.rs else None,
                "vs": asdict(self.vs) if self.vs else None}


def cells(axes: dict[str, list[Any]]) -> list[CellConfig]:
    """Every combination of the axes' values; unswept settings keep their defaults
    (the correct DR setup, the kernel's IPVS defaults)."""
    names = list(axes)
    arp = any(n in AXES for n in names)
    vs_axes = {n for n in names if n in VS_AXES}
    behaviours = tuple(b for b, knobs in VS_BEHAVIOURS.items() if vs_axes & set(knobs))
    out = []
    for combo in itertools.product(*(axes[n] for n in names)):
        chosen = dict(zip(names, combo, strict=True))
        rs = RsConfig(**{AXES[n][0]: v for n, v in chosen.items() if n in AXES}) if arp else None
        vs = (VsConfig(**{n: v for n, v in chosen.items() if n in VS_AXES}) if vs_axes
              else None)
        out.append(CellConfig(rs, vs, behaviours))
    return out


def parse_extra(items: list[str]) -> tuple[tuple[str, str], ...]:
    """``--sysctl KEY=VALUE`` for the real server of every ARP cell (validated)."""
    out = []
    for item in items:
        key, sep, value = (x.strip() for x in item.partition("="))
        if not sep:
            raise UsageError(f"matrix --sysctl {item!r}: expected KEY=VALUE")
        if not EXTRA_KEYS.fullmatch(key):
            raise UsageError(f"matrix --sysctl {key}: only net.ipv4.conf.{{all,eth0,lo}}."
                             "{arp_ignore,arp_announce,rp_filter} (the ones the prediction "
                             "knows); use drlab validate for others")
        err = check_sysctl(key, value)
        if err:
            raise UsageError(f"matrix --sysctl: {err}")
        out.append((key, value))
    return tuple(out)


def with_extra(configs: list[CellConfig], extra: tuple[tuple[str, str], ...]
               ) -> list[CellConfig]:
    """The same cells (same labels) with ``extra`` written on their real server."""
    if not extra:
        return configs
    if not any(c.rs for c in configs):
        raise UsageError("matrix --sysctl: applies to the real server's ARP axes, and none "
                         "is swept")

    return [replace(c, rs=replace(c.rs, extra=extra)) if c.rs else c for c in configs]


@dataclass
class Cell:
    config: CellConfig
    predicted: dict[str, Any]
    observed: dict[str, Any] | None = None
    evidence: list[str] = field(default_factory=list)
    error: str | None = None
    #: Not measurable here (IPVS axes on a kernel without IPVS).
    skipped: bool = False
    seconds: float = 0.0

    @property
    def label(self) -> str:
        return self.config.label()

    @property
    def match(self) -> bool:
        return self.error is None and self.observed == self.predicted

    def to_json(self) -> dict[str, Any]:
        return {"label": self.label, "config": self.config.to_json(),
                "fields": list(self.config.fields), "predicted": self.predicted,
                "observed": self.observed, "match": self.match, "error": self.error,
                "skipped": self.skipped, "evidence": self.evidence,
                "seconds": round(self.seconds, 3)}


def _run_cell(cfg: CellConfig, have_ipvs: bool) -> Cell:
    # lazy: loaded only when _run_cell() runs (+279 modules, ~110 ms; pyroute2)
    from lab.builder import Lab
    from lab.probes.rs_arp import measure
    from lab.roles import realserver

    cell = Cell(cfg, cfg.predicted())
    t0 = time.monotonic()
    observed: dict[str, Any] = {}
    try:
        if cfg.rs is not None:
            with Lab(topology_for(cfg.rs)) as lab:
                realserver.start_service(lab, "rs1")
                o = measure(lab)
                observed.update({k: getattr(o, k) for k in FIELDS})
                cell.evidence += o.evidence
        if cfg.vs is not None and not have_ipvs:
            cell.skipped = True
            cell.error = "not run: the director's IPVS axes need a kernel with IPVS"
        elif cfg.vs is not None:
            ov = measure_vs(cfg.vs, list(cfg.behaviours))
            observed.update(ov.values)
            cell.evidence += ov.evidence
        if observed or not cell.skipped:  # the ARP part of a cell is measured anyway
            cell.observed = observed
    except Exception as e:  # a cell that cannot be measured is reported, not fatal
        cell.error = f"{type(e).__name__}: {e}"
    cell.seconds = time.monotonic() - t0
    return cell


def measure_vs(cfg: VsConfig, behaviours: list[str]) -> VsObservation:
    """Build the DR lab for ``cfg`` and observe ``behaviours`` (names of
    :data:`lab.probes.vs_knobs.PROBES`)."""
    # lazy: loaded only when measure_vs() runs (+318 modules, ~120 ms; pyroute2)
    from lab.probes import vs_knobs
    from lab.roles import up

    obs = vs_knobs.VsObservation()
    lab = up(topology_for_vs(cfg))
    try:
        for name, probe in vs_knobs.PROBES.items():
            if name in behaviours:
                probe(lab, obs)
    finally:
        lab.teardown()
    return obs


def run(configs: list[CellConfig], jobs: int = 4, progress: Progress | None = None) -> list[Cell]:
    """Measure every cell, ``jobs`` labs side by side (threads: setns is per thread)."""
    progress = progress or Progress()
    have_ipvs = False
    if any(c.vs for c in configs):
        # lazy: loaded only when run() runs (+15 modules, ~5 ms)
        from lab.machine import preflight

        have_ipvs = preflight.ipvs_available()

    def one(c: CellConfig) -> Cell:
        cell = _run_cell(c, have_ipvs)
        progress.step(c.label())
        return cell

    progress.start("matrix", len(configs))
    try:
        with ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
            return list(pool.map(one, configs))
    finally:
        progress.finish()


def fmt(v: Any) -> str:
    return "-" if v is None else "yes" if v is True else "no" if v is False else str(v)


def _columns(result: list[Cell]) -> list[str]:
    cols: list[str] = []
    for c in result:
        cols += [f for f in c.config.fields if f not in cols]
    return cols


def verdict(c: Cell) -> str:
    return ("ok" if c.match else "not run" if c.skipped else
            ("ERROR " + (c.error or "")) if c.error else "MISMATCH")


def table(result: list[Cell]) -> str:
    cols = _columns(result)
    rows = []
    for c in result:
        obs = c.observed or {}
        rows.append([c.label] + [
            "" if k not in c.predicted else fmt(obs.get(k)) + (
                "" if c.observed is None or obs.get(k) == c.predicted[k]
                else f" (predicted {fmt(c.predicted[k])})") for k in cols] + [verdict(c)])
    return tab(rows, ["cell", *(SHORT.get(k, k) for k in cols), "verdict"])


def markdown(result: list[Cell]) -> str:
    cols = _columns(result)
    lines = ["| cell | " + " | ".join(SHORT.get(k, k) for k in cols) + " | verdict |",
             "| --- | " + " | ".join("---" for _ in cols) + " | --- |"]
    for c in result:
        obs = c.observed or {}
        lines.append(f"| `{c.label}` | " + " | ".join(
            fmt(obs.get(k)) if k in c.predicted else "" for k in cols)
            + f" | {verdict(c)} |")
    return "\n".join(lines)


def to_json(result: list[Cell], wall: float,
            indexes: list[int] | None = None) -> dict[str, Any]:
    """The run as data; ``indexes`` are the cells' places in the unsharded run."""
    first = result[0].config if result else CellConfig(RsConfig())
    if first.rs is not None:
        topo = topology_for(first.rs)
    else:
        topo = topology_for_vs(first.vs or VsConfig())
    return {"kernel": platform.release(), "wall_seconds": round(wall, 2),
            "topology": topology_to_dict(topo),
            "cells": [{**c.to_json(), "index": j} for c, j in
                      zip(result, indexes or range(len(result)), strict=True)],
            "mismatches": sum(not c.match and not c.skipped for c in result),
            "not_run": sum(c.skipped for c in result)}


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
            bo, co = b["observed"] or {}, c["observed"] or {}
            changes = ", ".join(f"{k} {fmt(bo.get(k))} -> {fmt(co.get(k))}"
                                for k in [*bo, *(k for k in co if k not in bo)]
                                if bo.get(k) != co.get(k))
            out.append(f"{c['label']}: {changes} (kernel {baseline.get('kernel')} -> "
                       f"{current.get('kernel')})\n    " + "\n    ".join(c["evidence"]))
    for label in sorted(set(before) - {c["label"] for c in current["cells"]}):
        out.append(f"{label}: missing from this run")
    return out


def load_result(path: str | Path) -> dict[str, Any]:
    try:
        result: dict[str, Any] = json.loads(Path(path).read_text())
        return result
    except FileNotFoundError:
        raise UsageError(f"{path}: no such file") from None
    except ValueError as e:
        raise UsageError(f"{path}: not a saved matrix run: {e}") from None
