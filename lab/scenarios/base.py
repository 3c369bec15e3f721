"""The scenario model: a known LVS-DR failure, broken and fixed side by side.

A :class:`Scenario` names a symptom users see in production, the trigger and
the fix, and gives two topologies (``broken`` and ``fixed``) plus an
``observe(lab, variant)`` function that builds nothing itself: it looks at a
running lab (acting on it where the scenario needs, e.g. draining a real
server) and returns an :class:`Outcome` saying whether the symptom shows, with the
evidence (census, path proof, neighbour entries, counters, errno, timing).

:func:`run` builds one variant, observes it and tears it down;
:func:`run_both` runs both variants and says whether the scenario reproduced
as documented (broken shows the symptom, fixed does not).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal

from lab.builder import Lab
from lab.model import Topology

Variant = Literal["broken", "fixed"]


@dataclass
class Outcome:
    symptom: bool
    evidence: list[str] = field(default_factory=list)

    def __str__(self) -> str:
        return ("SYMPTOM" if self.symptom else "healthy") + "".join(
            f"\n    {e}" for e in self.evidence)


@dataclass(frozen=True)
class Scenario:
    name: str
    symptom: str
    trigger: str
    fix: str
    broken: Callable[[], Topology]
    fixed: Callable[[], Topology]
    #: Looks at a running lab of the given variant and reports the symptom.
    observe: Callable[[Lab, Variant], Outcome]
    #: Needs a kernel with IPVS (the director really forwards).
    needs_ipvs: bool = True
    #: Start the real servers' identity services (without IPVS too).
    services: bool = True

    def topology(self, variant: Variant) -> Topology:
        t = (self.broken if variant == "broken" else self.fixed)()
        t.name = f"{self.name}-{variant}"
        return t


@dataclass
class Verdict:
    scenario: Scenario
    broken: Outcome
    fixed: Outcome

    @property
    def reproduced(self) -> bool:
        return self.broken.symptom and not self.fixed.symptom

    def report(self) -> str:
        s = self.scenario
        return "\n".join([
            f"{s.name}: {'reproduced' if self.reproduced else 'NOT REPRODUCED'}",
            f"  symptom: {s.symptom}",
            f"  trigger: {s.trigger}",
            f"  fix:     {s.fix}",
            f"  broken:  {self.broken}",
            f"  fixed:   {self.fixed}",
        ])


def start(scenario: Scenario, variant: Variant, *, name: str | None = None,
          persistent: bool = False) -> Lab:
    """Build and start one variant of a scenario (the caller tears it down)."""
    from lab.roles import realserver, up

    t = scenario.topology(variant)
    if scenario.needs_ipvs:
        return up(t, name=name, persistent=persistent, services=scenario.services)
    lab = Lab(t, name=name, persistent=persistent).build()
    try:
        if scenario.services:
            realserver.start_services(lab)
    except BaseException:
        lab.teardown()
        raise
    return lab


def run(scenario: Scenario, variant: Variant) -> Outcome:
    lab = start(scenario, variant)
    try:
        return scenario.observe(lab, variant)
    finally:
        lab.teardown()


def run_both(scenario: Scenario) -> Verdict:
    return Verdict(scenario, run(scenario, "broken"), run(scenario, "fixed"))
