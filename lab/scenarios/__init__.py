"""Scenarios: every known LVS-DR failure by name, broken and fixed side by side.

``base`` is the model (a scenario, its outcome, the verdict); ``catalogue/``
holds the entries, one module per family (arp, routing, ipvs, conntable, host,
keepalived, twodirectors, paths, neighbours: see :mod:`lab.scenarios.catalogue`);
``observed`` records the kernels each reproduced on; ``validate`` measures what a
proposed sysctl change does to each of them; ``diagnose`` matches a cluster
twin's measured symptoms to them.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from lab.errors import UsageError
from lab.machine.preflight import in_vm
from lab.scenarios import observed
from lab.scenarios.base import Outcome, Scenario, Verdict, run, run_both, start
from lab.scenarios.catalogue import BY_HAND, REGISTRY

if TYPE_CHECKING:
    from re import Match


def get(name: str) -> Scenario:
    try:
        return REGISTRY[name] if name in REGISTRY else BY_HAND[name]
    except KeyError:
        raise UsageError(f"no scenario {name!r}; see `drlab scenarios`") from None


def runnable(s: Scenario, have_ipvs: bool) -> str | None:
    """Why ``s`` cannot run on this machine (None when it can)."""
    if s.needs_ipvs and not have_ipvs:
        return "needs IPVS"
    if s.needs_vm and not in_vm():
        return "runs only in the VM"
    return None


def check_note(s: Scenario) -> str:
    """What ``drlab check`` does with a lab of the scenario's broken variant."""
    if s.stimulus is None:
        return (f"drlab check sees it: drlab up --scenario {s.name} --broken, "
                "then drlab check")
    return f"needs its own stimulus ({s.stimulus}): drlab scenario run {s.name}"


def catalogue_markdown() -> str:
    """The catalogue table of docs/scenarios.md (``drlab scenarios --markdown``)."""
    seen = observed.load()
    rows = ["| scenario | symptom | trigger | fix | needs IPVS | `drlab check` | reproduced on |",
            "| --- | --- | --- | --- | --- | --- | --- |"]
    for s in REGISTRY.values():
        rows.append(f"| `{s.name}` | {s.symptom} | {s.trigger} | {s.fix} | "
                    f"{'yes' if s.needs_ipvs else 'no'} | "
                    f"{'sees it' if s.stimulus is None else 'needs: ' + s.stimulus} | "
                    f"{observed.short(seen.get(s.name, []))} |")
    return "\n".join(rows)


def sources(s: Scenario) -> list[str]:
    """The scenario's sources, one per item (issue threads, docs, kernel files): its
    ``source`` split at the semicolons outside parentheses."""
    out, depth, cur = [], 0, ""
    for ch in s.source:
        depth += (ch == "(") - (ch == ")")
        if ch == ";" and depth <= 0:
            out.append(cur)
            cur = ""
        else:
            cur += ch
    return [p.strip() for p in [*out, cur] if p.strip()]


_KERNEL_TREE = "https://git.kernel.org/pub/scm/linux/kernel/git/torvalds/linux.git/tree/"
#: How a source names what it cites, and the public address of that.
_LINKS: list[tuple[str, Callable[[Match[str]], str]]] = [
    (r"https://[^\s;]+", lambda m: m.group(0).rstrip(").,")),
    (r"\b([\w.-]+/[\w.-]+)#(\d+)", lambda m: f"https://github.com/{m[1]}/issues/{m[2]}"),
    (r"\bDocumentation/([\w/-]+)\.rst", lambda m: f"https://docs.kernel.org/{m[1]}.html"),
    (r"\b((?:net|include)/[\w/-]+\.[ch])\b", lambda m: _KERNEL_TREE + m[1]),
    (r"\bkernel commit ([0-9a-f]{12})", lambda m: f"https://git.kernel.org/torvalds/c/{m[1]}"),
    (r"\b([a-z][\w-]*)\((\d)\)", lambda m: f"https://manpages.debian.org/{m[1]}.{m[2]}"),
    (r"(?<![/\w.-])LVS-HOWTO\b(?![^;]*https://)",
      lambda m: "https://www.austintek.com/LVS/LVS-HOWTO/HOWTO/"),
    (r"\bkeepalived (?:VRRP|TCP_CHECK)", lambda m: "https://manpages.debian.org/keepalived.conf.5"),
]


def links(s: Scenario) -> list[str]:
    """Every source of ``s`` as a public address (issue threads, kernel docs and
    source, man pages), in the order cited, without repeats."""
    found: list[tuple[int, str]] = []
    for pattern, url in _LINKS:
        found += [(m.start(), url(m)) for m in re.finditer(pattern, s.source)]
    out: list[str] = []
    for _, u in sorted(found):
        if u not in out:
            out.append(u)
    return out


def to_json(s: Scenario, seen: dict[str, list[dict[str, Any]]] | None = None) -> dict[str, object]:
    """One entry of ``drlab scenarios --json`` (``seen``: the record, read once by the
    caller; read here when not given)."""
    seen = observed.load() if seen is None else seen
    return {"name": s.name, "symptom": s.symptom, "trigger": s.trigger, "fix": s.fix,
            "sources": sources(s),
            "links": links(s),
            "observed": seen.get(s.name, []),
            "needs_ipvs": s.needs_ipvs, "needs_vm": s.needs_vm,
            "drlab_check": check_note(s)}


__all__ = ["BY_HAND", "REGISTRY", "Outcome", "Scenario", "Verdict", "catalogue_markdown",
           "check_note", "get", "links", "run", "run_both", "runnable", "sources", "start",
           "to_json"]
