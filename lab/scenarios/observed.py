"""Which kernels each scenario was observed on: the catalogue's record of measurements.

``observed.json`` (next to this module) holds, per scenario, one entry per kernel
release a ``drlab kernels run ... scenario all`` report covered::

    {"rs-answers-arp": [{"kernel": "6.1.0-56-amd64", "suite": "bookworm",
                         "reproduced": true, "date": "2026-11-27"}, ...]}

It is written only from such a report (:func:`record`: ``drlab scenarios
--record REPORT.json``), never by hand, so ``drlab scenarios --json`` and the
docs/scenarios.md's table show what was measured, not what is hoped. A scenario a kernel did
not run (no IPVS on that kernel, VM-only) gets no entry for it. An entry's
``suite`` is the report's kernel name when that is a suite (``bookworm``), else the
Debian suite that served the build (``trixie-backports`` for ``newest-7``), else
None (the host, a path).
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from lab.errors import UsageError

RECORD = Path(__file__).with_name("observed.json")
#: Kernel-matrix names that are Debian suites (kept as the entry's ``suite``).
SUITES = ("buster", "bullseye", "bookworm", "trixie", "forky", "sid")

Entry = dict[str, Any]
#: The Debian lines CI runs the catalogue on: two suites by name, and the newest 7.x
#: build (``--kernel newest-7``) by its series, whichever suite serves it.
LINES = ("bookworm", "trixie", "7.x")


def load(path: Path = RECORD) -> dict[str, list[Entry]]:
    try:
        record: dict[str, list[Entry]] = json.loads(path.read_text())
    except FileNotFoundError:
        return {}
    return record


def from_report(report: dict[str, Any], date: str) -> dict[str, list[Entry]]:
    """The observations in a ``kernels run ... scenario`` report (its merged JSON)."""
    if report.get("what") != "scenario" or not isinstance(report.get("rows"), list):
        raise UsageError("--record: not a `drlab kernels run ... scenario` report "
                         "(its --json file)")
    kernels = {k["name"]: k for k in report["kernels"]}
    out: dict[str, list[Entry]] = {}
    for row in report["rows"]:
        for name, cell in row["kernels"].items():
            if cell is None or cell["status"] not in ("ok", "not reproduced"):
                continue
            k = kernels[name]
            if not k.get("release"):
                continue
            out.setdefault(row["key"], []).append({
                "kernel": k["release"],
                "suite": name if name in SUITES else k.get("suite"),
                "reproduced": cell["status"] == "ok", "date": date})
    return out


def merged(record: dict[str, list[Entry]], new: dict[str, list[Entry]],
           known: list[str]) -> dict[str, list[Entry]]:
    """``record`` with ``new``'s entries replacing those of the same scenario and
    kernel release; scenarios not in ``known`` (the registry) are dropped. Entries
    are sorted by kernel release."""
    out: dict[str, list[Entry]] = {}
    for name in known:
        entries = {e["kernel"]: e for e in record.get(name, [])}
        entries |= {e["kernel"]: e for e in new.get(name, [])}
        if entries:
            out[name] = sorted(entries.values(), key=lambda e: _release_key(e["kernel"]))
    return out


def _release_key(release: str) -> list[int]:
    return [int(n) for n in re.findall(r"\d+", release)]


def lines(entries: list[Entry]) -> set[str]:
    """The :data:`LINES` a scenario reproduced on: an entry of bookworm or trixie by
    its suite, a Debian build (one with a suite) of 7.x as ``7.x``."""
    out = set()
    for e in entries:
        if not e["reproduced"] or not e.get("suite"):
            continue
        if e["suite"] in LINES:
            out.add(str(e["suite"]))
        elif str(e["kernel"]).startswith("7."):
            out.add("7.x")
    return out


def label(e: Entry) -> str:
    """``6.1.0-56-amd64 (bookworm)``."""
    return str(e["kernel"]) + (f" ({e['suite']})" if e.get("suite") else "")


def short(entries: list[Entry]) -> str:
    """The kernels a scenario reproduced on, short: ``6.1 (bookworm), 6.12 (trixie)``;
    a kernel where it did not reproduce is marked."""
    parts = []
    for e in entries:
        m = re.match(r"\d+\.\d+", e["kernel"])
        v = m.group(0) if m else e["kernel"]
        parts.append(v + (f" ({e['suite']})" if e.get("suite") else "")
                     + ("" if e["reproduced"] else " NOT reproduced"))
    return ", ".join(parts) or "not yet"
