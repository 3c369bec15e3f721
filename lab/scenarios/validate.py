"""``drlab validate``: what a proposed sysctl change breaks or fixes, measured.

Every scenario's broken and fixed labs are run as they are and with the change
applied to every host of a role; a scenario the change *breaks* showed no
symptom in its fixed lab and shows it with the change; one it *fixes* showed
the symptom in its broken lab and no longer does.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from lab.errors import LabError, UsageError
from lab.model import Topology, check_sysctl, default_dr
from lab.model.predict import masked_by_interface
from lab.scenarios.base import ROLE_ALIASES, Change, Scenario, run, run_changed
from lab.scenarios.catalogue import REGISTRY
from lab.util import Progress

if TYPE_CHECKING:  # diagnose is imported when a twin is validated (it loads the probes)
    from lab.scenarios.diagnose import Diagnosis, Finding, ServiceResult


def parse_change(items: list[str], host: str, topology: Topology | None = None) -> Change:
    """``KEY=VALUE`` items and a role name (``--host``) as a :class:`Change`; with a
    ``topology``, ``--host`` may also name one of its hosts (lab or collected name)."""
    role = ROLE_ALIASES.get(host)
    names: tuple[str, ...] = ()
    if role is None and topology is not None:
        if not any(host in (h.name, h.label) for h in topology.hosts):
            raise UsageError(f"--host {host!r}: not a role ({', '.join(ROLE_ALIASES)}) nor a "
                             f"host of {topology.name} "
                             f"({', '.join(h.shown for h in topology.hosts)})")
        role, names = "realserver", (host,)
    if role is None:
        raise UsageError(f"--host {host!r}: one of {', '.join(ROLE_ALIASES)}")
    sysctls = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep:
            raise UsageError(f"--sysctl {item!r}: expected KEY=VALUE")
        err = check_sysctl(key.strip(), value.strip())
        if err:
            raise UsageError(f"--sysctl: {err}")
        sysctls[key.strip()] = value.strip()
    return Change(sysctls, role, names)


@dataclass
class Validation:
    change: Change
    breaks: list[str] = field(default_factory=list)
    fixes: list[str] = field(default_factory=list)
    same: list[str] = field(default_factory=list)
    #: Scenarios this machine cannot run (no IPVS, or VM-only).
    skipped: list[str] = field(default_factory=list)
    #: Runs that could not be measured: "name variant: error".
    errors: list[str] = field(default_factory=list)

    @property
    def notes(self) -> list[str]:
        hosts = [h for h in default_dr().hosts if self.change.role in ("all", h.role)]
        return masked_by_interface(self.change.sysctls, hosts)

    def text(self) -> str:
        what = ", ".join(f"{k}={v}" for k, v in self.change.sysctls.items())
        lines = [f"proposed change: {what} on {self.change.where}",
                 f"  breaks ({len(self.breaks)}): " + (", ".join(self.breaks) or "nothing"),
                 f"  fixes  ({len(self.fixes)}): " + (", ".join(self.fixes) or "nothing"),
                 f"  unchanged ({len(self.same)}): " + (", ".join(self.same) or "-")]
        if self.skipped:
            lines.append(f"  not run here ({len(self.skipped)}, need IPVS or the VM): "
                         + ", ".join(self.skipped))
        lines += [f"  error: {e}" for e in self.errors]
        lines += [f"  note: {n}" for n in self.notes]
        return "\n".join(lines)


def validate(change: Change, names: list[str] | None, runnable: Callable[[Scenario], str | None],
             progress: Progress | None = None) -> Validation:
    """Run ``names`` (default: the whole catalogue) with and without ``change``.
    ``runnable(scenario)`` says why a scenario cannot run here (None: it can)."""
    for name in names or []:
        if name not in REGISTRY:
            raise UsageError(f"no scenario {name!r}; see `drlab scenarios`")
    progress = progress or Progress()
    result = Validation(change)
    todo = [n for n in names or list(REGISTRY) if runnable(REGISTRY[n]) is None]
    result.skipped = [n for n in names or list(REGISTRY) if n not in todo]
    progress.start("validate", len(todo))
    for name in todo:
        s = REGISTRY[name]
        progress(f"validate: {name} ...")
        row: dict[str, tuple[bool | None, bool | None]] = {}
        for variant in ("broken", "fixed"):
            try:
                row[variant] = (run(s, variant).symptom, run_changed(s, variant, change).symptom)
            except LabError as e:
                row[variant] = (None, None)
                result.errors.append(f"{name} {variant}: {e}")
        was, now = row["fixed"]
        bwas, bnow = row["broken"]
        if was is False and now is True:
            result.breaks.append(name)
        elif bwas is True and bnow is False:
            result.fixes.append(name)
        else:
            result.same.append(name)
        progress.step(name)
    progress.finish()
    return result


# -- on the twin of the operator's own cluster ---------------------------------------


@dataclass(frozen=True)
class Served:
    """One service in one twin: connections that worked, of how many, who answered ARP."""

    ok: int
    of: int
    census: list[str]

    @classmethod
    def of_result(cls, s: ServiceResult) -> Served:
        return cls(s.connections - len(s.failed), s.connections, s.census)

    def to_json(self) -> dict[str, Any]:
        return {"ok": self.ok, "of": self.of, "census": self.census}


@dataclass(frozen=True)
class ServiceChange:
    """A service before the change and after it (None: not measured after)."""

    service: str
    before: Served
    after: Served | None

    def to_json(self) -> dict[str, Any]:
        return {"service": self.service, "before": self.before.to_json(),
                "after": self.after.to_json() if self.after else None}


@dataclass
class TwinValidation:
    """A change measured on a cluster's twin: its diagnosis before and after."""

    change: Change
    hosts: list[str]
    before: Diagnosis
    after: Diagnosis

    @property
    def breaks(self) -> list[Finding]:
        return compare(self.before, self.after).breaks

    @property
    def fixes(self) -> list[Finding]:
        return compare(self.before, self.after).fixes

    @property
    def still(self) -> list[Finding]:
        return compare(self.before, self.after).still

    def services(self) -> list[ServiceChange]:
        """Per service: connections that worked and who answered ARP, before and after."""
        return compare(self.before, self.after).services

    def to_json(self) -> dict[str, Any]:
        return {"change": self.change.sysctls, "hosts": self.hosts,
                "breaks": [f.to_json() for f in self.breaks],
                "fixes": [f.to_json() for f in self.fixes],
                "unchanged": [f.to_json() for f in self.still],
                "services": [s.to_json() for s in self.services()],
                "before": self.before.to_json(), "after": self.after.to_json()}

    def text(self) -> str:
        what = ", ".join(f"{k}={v}" for k, v in self.change.sysctls.items())
        lines = [f"proposed change: {what} on {', '.join(self.hosts)} "
                 f"(measured on the twin of {self.before.cluster}, kernel "
                 f"{self.before.kernel})"]
        for s in self.services():
            b, a = s.before, s.after
            lines.append(f"  {s.service}: connections {b.ok}/{b.of} -> "
                         + (f"{a.ok}/{a.of}; ARP answered by {', '.join(b.census)}"
                            f" -> {', '.join(a.census)}" if a else "not measured"))
        for label, fs in (("breaks", self.breaks), ("fixes", self.fixes),
                          ("unchanged", self.still)):
            lines.append(f"  {label} ({len(fs)}): " + ("; ".join(
                f"{f.name} on {', '.join(f.hosts)} [{f.service}]"
                + ("" if f.measured else " (prediction)") for f in fs) or "nothing"))
        return "\n".join(lines)


def finding_key(f: Finding) -> tuple[str, tuple[str, ...], str]:
    """What makes two findings (before and after a change) the same one: the one place
    the comparison is keyed, diagnose's own stable :attr:`Finding.key` (name, hosts,
    service; ``"*"`` for a host-wide fault)."""
    return f.key


@dataclass(frozen=True)
class Comparison:
    """Two diagnoses of a twin, before and after a change, finding by finding."""

    breaks: list[Finding]
    fixes: list[Finding]
    still: list[Finding]
    services: list[ServiceChange]


def compare(before: Diagnosis, after: Diagnosis) -> Comparison:
    """Findings added, removed and kept (by :func:`finding_key`), and per service the
    connections that worked and who answered ARP, before and after."""
    b = {finding_key(f): f for f in before.findings}
    a = {finding_key(f): f for f in after.findings}
    now = {s.service: s for s in after.services}
    return Comparison([f for k, f in a.items() if k not in b],
                      [f for k, f in b.items() if k not in a],
                      [f for k, f in b.items() if k in a],
                      [ServiceChange(s.service, Served.of_result(s),
                                     Served.of_result(n) if (n := now.get(s.service)) else None)
                       for s in before.services])


def validate_twin(topology: Topology, change: Change,
                  progress: Progress | None = None) -> TwinValidation:
    """Diagnose the twin of ``topology`` as it is, then with ``change`` applied."""
    progress = progress or Progress()

    # lazy: loaded only when validate_twin() runs (+3 modules, ~4 ms)
    from lab.scenarios.diagnose import diagnose

    hosts = change.targets(topology)
    if not hosts:
        raise UsageError(f"the change applies to no host of {topology.name}")
    changed = copy.deepcopy(topology)
    try:
        change.apply(changed)
    except LabError as e:
        raise UsageError(f"the change does not fit {topology.name}: {e}") from None
    progress(f"validate: the twin as it is ({topology.name}) ...")
    before = diagnose(topology, progress=progress)
    progress(f"validate: the twin with {', '.join(f'{k}={v}' for k, v in change.sysctls.items())}"
             f" on {', '.join(hosts)} ...")
    after = diagnose(changed, progress=progress)
    return TwinValidation(change, [topology.host(h).shown for h in hosts], before, after)
