"""Scenarios: every known LVS-DR failure by name, broken and fixed side by side.

``base`` is the model (a scenario, its outcome, the verdict); ``catalogue/``
holds the entries, one module per family (ARP, routing, IPVS, host);
``validate`` measures what a proposed sysctl change does to each of them.
"""

from __future__ import annotations

from lab.scenarios.base import Outcome, Scenario, Verdict, run, run_both, start
from lab.scenarios.catalogue import REGISTRY


def get(name: str) -> Scenario:
    from lab.errors import UsageError

    try:
        return REGISTRY[name]
    except KeyError:
        raise UsageError(f"no scenario {name!r}; see `drlab scenarios`") from None


def runnable(s: Scenario, have_ipvs: bool) -> str | None:
    """Why ``s`` cannot run on this machine (None when it can)."""
    from lab.host.preflight import in_vm

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
    """The README's catalogue table (``drlab scenarios --markdown``)."""
    rows = ["| scenario | symptom | trigger | fix | needs IPVS | `drlab check` |",
            "| --- | --- | --- | --- | --- | --- |"]
    for s in REGISTRY.values():
        rows.append(f"| `{s.name}` | {s.symptom} | {s.trigger} | {s.fix} | "
                    f"{'yes' if s.needs_ipvs else 'no'} | "
                    f"{'sees it' if s.stimulus is None else 'needs: ' + s.stimulus} |")
    return "\n".join(rows)


__all__ = ["REGISTRY", "Outcome", "Scenario", "Verdict", "catalogue_markdown", "check_note",
           "get", "run", "run_both", "runnable", "start"]
