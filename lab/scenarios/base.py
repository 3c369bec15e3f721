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

import contextlib
import os
from collections.abc import Callable
from contextlib import AbstractContextManager
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
    #: Build the broken variant without the lab's sysctl pinning (a naive lab).
    naive_broken: bool = False
    #: Changes the root namespace, so it only runs in a disposable VM (DRLAB_IN_VM=1).
    needs_vm: bool = False
    #: Context entered around building a variant (e.g. a root-namespace setting).
    around: Callable[[Variant], AbstractContextManager] | None = None

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
    from lab.errors import PreflightError
    from lab.roles import realserver, up

    if scenario.needs_vm and os.environ.get("DRLAB_IN_VM") != "1":
        raise PreflightError(f"scenario {scenario.name} changes the root namespace, so it only "
                             "runs in the disposable VM: scripts/drlab scenario run "
                             f"{scenario.name}")
    t = scenario.topology(variant)
    pin = not (scenario.naive_broken and variant == "broken")
    around = scenario.around(variant) if scenario.around else contextlib.nullcontext()
    with around:
        if scenario.needs_ipvs:
            return up(t, name=name, persistent=persistent, services=scenario.services,
                      pin_sysctls=pin)
        lab = Lab(t, name=name, persistent=persistent, pin_sysctls=pin).build()
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


ROLE_ALIASES = {"rs": "realserver", "realserver": "realserver", "director": "director",
                "client": "client", "router": "router", "all": "all"}


@dataclass
class Change:
    """A proposed sysctl change for the hosts of one role (``drlab validate``)."""

    sysctls: dict[str, str]
    role: str = "realserver"

    def apply(self, t: Topology) -> Topology:
        for h in t.hosts:
            if self.role == "all" or h.role == self.role:
                h.sysctls.update(self.sysctls)
        return t.validate()


def run_changed(scenario: Scenario, variant: Variant, change: Change) -> Outcome:
    """Run one variant with ``change`` applied on top of it."""
    changed = Scenario(**{**scenario.__dict__,
                          "broken": lambda: change.apply(scenario.broken()),
                          "fixed": lambda: change.apply(scenario.fixed())})
    return run(changed, variant)
