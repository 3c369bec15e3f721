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
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from typing import Any, Literal

from lab.builder import Lab
from lab.errors import PreflightError
from lab.machine.preflight import in_vm
from lab.model import Topology, topology_to_dict
from lab.probes import vrrp
from lab.roles import up

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
    around: Callable[[Variant], AbstractContextManager[None]] | None = None
    #: Where the failure is reported or explained (issue threads, docs).
    source: str = ""
    #: Why ``drlab check`` cannot see the symptom on a lab of the broken variant
    #: (it needs its own stimulus: ``drlab scenario run NAME``); None when it can.
    stimulus: str | None = None
    #: Why it runs only by name (``drlab scenario run NAME``), outside ``scenario all``
    #: and CI's catalogue (it is in :data:`BY_HAND`, not :data:`REGISTRY`); None: it
    #: runs everywhere and must reproduce.
    by_hand: str | None = None

    def topologies(self) -> dict[str, dict[str, Any]]:
        """Both variants' topologies as data (reports draw them)."""
        return {v: topology_to_dict(self.topology(v)) for v in ("broken", "fixed")}

    def topology(self, variant: Variant) -> Topology:
        t = (self.broken if variant == "broken" else self.fixed)()
        t.name = f"{self.name}-{variant}"
        return t


#: Every scenario by name, in catalogue order (the catalogue's modules fill it).
REGISTRY: dict[str, Scenario] = {}


#: Scenarios run only by name (their ``by_hand`` says why): too slow for every run, or
#: measured rather than required to reproduce (issue #27's estimator stall).
BY_HAND: dict[str, Scenario] = {}


def register(s: Scenario) -> Scenario:
    if s.name in REGISTRY or s.name in BY_HAND:
        raise ValueError(f"scenario {s.name!r} registered twice")
    (BY_HAND if s.by_hand else REGISTRY)[s.name] = s
    return s


@dataclass
class Verdict:
    scenario: Scenario
    broken: Outcome
    fixed: Outcome

    @property
    def reproduced(self) -> bool:
        return self.broken.symptom and not self.fixed.symptom

    def to_json(self) -> dict[str, Any]:
        s = self.scenario
        return {"name": s.name, "ran": True, "reproduced": self.reproduced,
                "symptom": s.symptom, "trigger": s.trigger, "fix": s.fix,
                "topologies": s.topologies(),
                "broken": {"symptom": self.broken.symptom, "evidence": self.broken.evidence},
                "fixed": {"symptom": self.fixed.symptom, "evidence": self.fixed.evidence}}

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
          persistent: bool = False, whole: bool = False) -> Lab:
    """Build and start one variant of a scenario (the caller tears it down).

    ``whole`` brings up the whole DR lab of the variant (IPVS table and every
    service) even where the scenario's own observation needs less, as
    ``drlab up --scenario`` does for exploring it."""
    if scenario.needs_vm and not in_vm():
        raise PreflightError(f"scenario {scenario.name} changes the root namespace, so it only "
                             "runs in the disposable VM: scripts/drlab scenario run "
                             f"{scenario.name}")
    t = scenario.topology(variant)
    pin = not (scenario.naive_broken and variant == "broken")
    around = scenario.around(variant) if scenario.around else contextlib.nullcontext()
    with around:
        lab = up(t, name=name, persistent=persistent, ipvs=scenario.needs_ipvs or whole,
                 services=scenario.services or whole, pin_sysctls=pin)
    if t.keepalived:  # observe the pair once VRRP has elected, as an operator would
        try:
            vrrp.wait_holder(lab)
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
    #: Named hosts (lab or collected names) instead of a role.
    hosts: tuple[str, ...] = ()

    def targets(self, t: Topology) -> list[str]:
        """The hosts of ``t`` the change applies to."""
        if self.hosts:
            return [h.name for h in t.hosts if h.name in self.hosts or h.label in self.hosts]
        return [h.name for h in t.hosts if self.role == "all" or h.role == self.role]

    def apply(self, t: Topology) -> Topology:
        for name in self.targets(t):
            t.host(name).sysctls.update(self.sysctls)
        return t.validate()

    @property
    def where(self) -> str:
        return ", ".join(self.hosts) if self.hosts else f"every {self.role} host"


def run_changed(scenario: Scenario, variant: Variant, change: Change) -> Outcome:
    """Run one variant with ``change`` applied on top of it."""
    changed = Scenario(**{**scenario.__dict__,
                          "broken": lambda: change.apply(scenario.broken()),
                          "fixed": lambda: change.apply(scenario.fixed())})
    return run(changed, variant)
