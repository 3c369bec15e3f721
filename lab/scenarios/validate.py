"""``drlab validate``: what a proposed sysctl change breaks or fixes, measured.

Every scenario's broken and fixed labs are run as they are and with the change
applied to every host of a role; a scenario the change *breaks* showed no
symptom in its fixed lab and shows it with the change; one it *fixes* showed
the symptom in its broken lab and no longer does.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from lab.errors import LabError, UsageError
from lab.model import check_sysctl, default_dr
from lab.model.predict import masked_by_interface
from lab.scenarios.base import ROLE_ALIASES, Change, Scenario, run, run_changed
from lab.scenarios.catalogue import REGISTRY


def parse_change(items: list[str], host: str) -> Change:
    """``KEY=VALUE`` items and a role name (``--host``) as a :class:`Change`."""
    role = ROLE_ALIASES.get(host)
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
    return Change(sysctls, role)


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
        lines = [f"proposed change: {what} on every {self.change.role} host",
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
             progress: Callable[[str], None] = lambda _m: None) -> Validation:
    """Run ``names`` (default: the whole catalogue) with and without ``change``.
    ``runnable(scenario)`` says why a scenario cannot run here (None: it can)."""
    for name in names or []:
        if name not in REGISTRY:
            raise UsageError(f"no scenario {name!r}; see `drlab scenarios`")
    result = Validation(change)
    for name in names or list(REGISTRY):
        s = REGISTRY[name]
        if runnable(s) is not None:
            result.skipped.append(name)
            continue
        progress(f"validate: {name} ...")
        row = {}
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
    return result
