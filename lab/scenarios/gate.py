"""``drlab gate``: a config change measured on the cluster's twin before it ships.

The twin is built as it is and as it would be after the change (the files of
:mod:`lab.model.gate` applied); both are diagnosed and connections run through every
service (:func:`lab.scenarios.validate.compare`, the comparison ``drlab validate
--topology`` makes). A sysctl change is read with the knobs that mask it
(:func:`lab.model.predict.masked_by_interface`, as validate). A keepalived change
is also applied live (:func:`reload_under_load`): keepalived runs the old config
while connections flow through every VIP, the new one is swapped in with SIGHUP, and
the connections that failed or were reset, the VIP holder changes and the real
servers out of the IPVS table are counted, during the reload and after it.

Verdict (:class:`Verdict`): ``fail`` (exit 1) when the change adds a finding, loses
connections that worked, or drops more connections on reload than the budget;
``fixed`` when it removes a finding and adds none; ``pass`` otherwise.
"""

from __future__ import annotations

import errno
import platform
import re
import shlex
import time
from dataclasses import dataclass, field
from enum import Enum
from typing import Any

from lab.builder import Lab
from lab.errors import LabError
from lab.model import Topology
from lab.model.gate import Applied
from lab.model.keepalived import parse as parse_keepalived
from lab.model.predict import masked_by_interface
from lab.model.topology import kernel_series
from lab.probes import vrrp
from lab.roles import client, director, keepalived, up
from lab.scenarios.diagnose import Diagnosis, Finding, diagnose
from lab.scenarios.validate import Comparison, ServiceChange, compare
from lab.util import Progress, Timeout, wait_for


class Verdict(Enum):
    PASS = "pass"
    FIXED = "fixed"
    FAIL = "fail"

    @property
    def exit_code(self) -> int:
        return 1 if self is Verdict.FAIL else 0


def worst(verdicts: list[Verdict]) -> Verdict:
    """The verdict of a gate run on several kernels: ``fail`` if it fails on one,
    else ``fixed`` if it fixes a finding on one (and breaks nothing on any), else
    ``pass``."""
    if not verdicts:
        raise ValueError("no verdict to merge")
    return (Verdict.FAIL if Verdict.FAIL in verdicts else
            Verdict.FIXED if Verdict.FIXED in verdicts else Verdict.PASS)


@dataclass
class ReloadResult:
    """One live reload of keepalived under load (all changed directors at once)."""

    directors: list[str]
    #: connections tried before the SIGHUP, from it until the IPVS table settled, after
    before: int = 0
    during: int = 0
    after: int = 0
    failed: int = 0
    reset: int = 0
    #: the VIP holder as polled: how often it changed (none -> one counts)
    holder_changes: int = 0
    #: "rip of VIP:PORT/proto": out of the table during the reload, and still out after
    out_during: list[str] = field(default_factory=list)
    out_after: list[str] = field(default_factory=list)
    seconds: float = 0.0
    errors: list[str] = field(default_factory=list)
    #: what keepalived logged of the reload
    log: list[str] = field(default_factory=list)

    @property
    def drops(self) -> int:
        return self.failed + self.reset

    def to_json(self) -> dict[str, Any]:
        return {**self.__dict__, "drops": self.drops}

    def text(self) -> str:
        return (f"reload of {', '.join(self.directors)} under load: {self.drops} "
                f"connection(s) dropped ({self.failed} failed, {self.reset} reset) of "
                f"{self.during + self.after} during/after ({self.before} before), "
                f"{self.holder_changes} VIP holder change(s), "
                f"out of the table during: {', '.join(self.out_during) or 'none'}, "
                f"after: {', '.join(self.out_after) or 'none'}; settled in "
                f"{self.seconds:.1f}s")


@dataclass
class GateResult:
    cluster: str
    kernel: str
    applied: Applied
    before: Diagnosis
    after: Diagnosis
    command: list[str]
    reload_budget: int = 0
    reload: ReloadResult | None = None
    masked: list[str] = field(default_factory=list)
    #: the kernel release the cluster recorded (drlab import); empty: none
    twin_kernel: str = ""

    @property
    def kernel_differs(self) -> str:
        """When the cluster recorded a kernel of another series than the one measured:
        one sentence saying so; else empty."""
        twin, here = kernel_series(self.twin_kernel), kernel_series(self.kernel)
        if not twin or twin == here:
            return ""
        return (f"the cluster runs kernel {self.twin_kernel} (series {twin}), this gate ran "
                f"on {self.kernel}: drlab gate --kernel measures it on the cluster's series")

    @property
    def compared(self) -> Comparison:
        return compare(self.before, self.after)

    @property
    def breaks(self) -> list[Finding]:
        return list(self.compared.breaks)

    @property
    def fixes(self) -> list[Finding]:
        return list(self.compared.fixes)

    @property
    def still(self) -> list[Finding]:
        return list(self.compared.still)

    @property
    def services(self) -> list[ServiceChange]:
        return list(self.compared.services)

    @property
    def lost(self) -> list[ServiceChange]:
        """Services with fewer working connections after the change (as a share)."""
        return [s for s in self.services
                if s.after is None or s.after.ok * s.before.of < s.before.ok * s.after.of]

    @property
    def reload_over_budget(self) -> bool:
        return self.reload is not None and (self.reload.drops > self.reload_budget
                                            or bool(self.reload.errors))

    @property
    def verdict(self) -> Verdict:
        if self.breaks or self.lost or self.reload_over_budget:
            return Verdict.FAIL
        return Verdict.FIXED if self.fixes else Verdict.PASS

    @property
    def reproduce(self) -> str:
        return shlex.join(self.command)

    def to_json(self) -> dict[str, Any]:
        return {"verdict": self.verdict.value, "cluster": self.cluster, "kernel": self.kernel,
                "twin_kernel": self.twin_kernel or None,
                "changed": {"sysctls": self.applied.sysctls,
                            "keepalived": self.applied.keepalived,
                            "ipvsadm": self.applied.ipvsadm},
                "notes": self.applied.notes, "masked": self.masked,
                "breaks": [f.to_json() for f in self.breaks],
                "fixes": [f.to_json() for f in self.fixes],
                "unchanged": [f.to_json() for f in self.still],
                "services": [s.to_json() for s in self.services],
                "lost": [s.service for s in self.lost],
                "reload": self.reload.to_json() if self.reload else None,
                "reload_budget": self.reload_budget, "reproduce": self.reproduce,
                "before": self.before.to_json(), "after": self.after.to_json()}

    def text(self) -> str:
        lines = [f"drlab gate: {self.verdict.value.upper()} on the twin of {self.cluster} "
                 f"(kernel {self.kernel})"]
        if self.kernel_differs:
            lines.append(f"  note: {self.kernel_differs}")
        for h, kv in self.applied.sysctls.items():
            lines.append(f"  change on {h}: " + ", ".join(f"{k}={v}" for k, v in kv.items()))
        for h in self.applied.keepalived:
            lines.append(f"  change on {h}: keepalived.conf")
        for h in self.applied.ipvsadm:
            lines.append(f"  change on {h}: IPVS rules")
        for s in self.services:
            b, a = s.before, s.after
            lines.append(f"  {s.service}: connections {b.ok}/{b.of} -> "
                         + (f"{a.ok}/{a.of}" if a else "gone")
                         + ("  LOST" if s in self.lost else ""))
        for label, fs in (("breaks", self.breaks), ("fixes", self.fixes),
                          ("unchanged", self.still)):
            lines.append(f"  {label} ({len(fs)}): " + ("; ".join(
                f"{f.name} on {', '.join(f.hosts)} [{f.service}]"
                + ("" if f.measured else " (prediction)") for f in fs) or "nothing"))
        if self.reload:
            lines.append(f"  {self.reload.text()} (budget {self.reload_budget})")
            lines += [f"  reload error: {e}" for e in self.reload.errors]
        lines += [f"  masked: {m}" for m in self.masked]
        lines += [f"  note: {n}" for n in self.applied.notes]
        lines.append(f"  reproduce: {self.reproduce}")
        return "\n".join(lines)


# -- the live reload ------------------------------------------------------------------


def _table(lab: Lab, host: str) -> dict[str, set[str]]:
    """The IPVS table of ``host``: service key -> its real servers' addresses."""
    try:
        return {f"{s.vip}:{s.port}/{s.protocol}": {d.addr for d in s.dests if d.weight > 0}
                for s in director.read_services(lab, host)}
    except LabError:
        return {}


def _wanted(conf: str) -> dict[str, set[str]]:
    """What a keepalived.conf's virtual_servers put in the table (weight > 0)."""
    try:
        cfg = parse_keepalived(conf)
    except LabError:
        return {}
    return {f"{v.vip}:{v.port}/{v.protocol.lower()}": {r.ip for r in v.real_servers
                                                       if r.weight > 0}
            for v in cfg.virtual_servers if v.vip is not None}


def _advert_int(conf: str) -> float:
    """The longest ``advert_int`` of a keepalived.conf (keepalived's default: 1 s)."""
    return max([float(m) for m in re.findall(r"^\s*advert_int\s+([0-9.]+)\s*$", conf,
                                             re.M) if m.count(".") <= 1] or [1.0])


def reload_under_load(before: Topology, after: Topology, directors: list[str],
                      progress: Progress | None = None, settle_rounds: int = 5,
                      after_rounds: int = 4) -> ReloadResult:
    """Run ``before``'s twin under load, swap in ``after``'s keepalived configs of
    ``directors`` with SIGHUP, and count what the clients and the table saw.

    A round is one connection per service and one poll of every director's IPVS table
    and of who holds the VIP. The reload has settled when every changed director's
    table showed what its new config wants (the same table) and one director held the
    VIP for ``settle_rounds`` rounds in a row and for 3 VRRP advert intervals and a
    second (a transition the reload starts shows by then), once every changed keepalived
    logged that its reload is done; ``after_rounds`` rounds follow."""
    progress = progress or Progress()
    res = ReloadResult([before.host(d).shown for d in directors])
    services = [(s.vip, s.port, s.protocol) for s in before.services]
    wanted = {d: _wanted(after.keepalived[d]) for d in directors}
    lab = up(before)
    try:
        progress("gate: waiting for VRRP to place the VIP before the reload ...")
        vrrp.wait_holder(lab)
        holder = tuple(vrrp.holders(lab))
        base = {d: _table(lab, d) for d in directors}

        def round_(phase: str) -> tuple[dict[str, dict[str, set[str]]], tuple[str, ...]]:
            nonlocal holder
            for vip, port, proto in services:
                setattr(res, phase, getattr(res, phase) + 1)
                try:
                    client.connect(lab, addr=vip, port=port, protocol=proto, timeout=1.0)
                except client.ConnectError as e:
                    if phase == "before":
                        res.errors.append(f"before the reload: {e}")
                    elif e.errno == errno.ECONNRESET:
                        res.reset += 1
                    else:
                        res.failed += 1
            now = tuple(vrrp.holders(lab))
            if now != holder:
                res.holder_changes += 1
                holder = now
            tables = {d: _table(lab, d) for d in directors}
            return tables, now

        for _ in range(2):
            round_("before")
        progress(f"gate: SIGHUP to keepalived on {', '.join(res.directors)} with the new "
                 "config, connections flowing ...")
        t0 = time.monotonic()
        seen = {d: len(keepalived.reload_lines(lab, d)) for d in directors}
        for d in directors:
            keepalived.reload(lab, d, after.keepalived[d])
        # VRRP acts on its own clock: a transition the reload starts (a preemption, a
        # new instance's master-down timer) shows within 3 advert intervals and a skew
        quiet = 3.0 * max(_advert_int(after.keepalived[d]) for d in directors) + 1.0
        streak = 0
        stable_since = time.monotonic()
        last: dict[str, dict[str, set[str]]] | None = None
        out_during: set[str] = set()

        def settled() -> bool:
            nonlocal streak, last, stable_since
            tables, held = round_("during")
            for d, table in tables.items():
                for key, rips in base[d].items():
                    keep = wanted[d].get(key, set())
                    out_during.update(f"{r} of {key}" for r in rips & keep
                                      if r not in table.get(key, set()))
            # every changed keepalived logged that its reload is done ("Reload complete"
            # on 2.2, "Reload finished in N usec" on later versions)
            reloaded = all(any(w in ln for ln in keepalived.reload_lines(lab, d)[n:]
                               for w in ("Reload complete", "Reload finished"))
                           for d, n in seen.items())
            ok = reloaded and len(held) == 1 and all(
                not wanted[d] or {k: v for k, v in t.items() if k in wanted[d]} == wanted[d]
                for d, t in tables.items())
            streak = streak + 1 if ok and tables == last else (1 if ok else 0)
            if streak <= 1:
                stable_since = time.monotonic()
            last = tables
            return streak >= settle_rounds and time.monotonic() - stable_since >= quiet

        try:
            wait_for(settled, 20.0, "the IPVS table to settle after the reload")
        except Timeout as e:
            res.errors.append(f"{e}: " + "; ".join(
                f"{before.host(d).shown}: {keepalived.tail(lab, d, 3)}" for d in directors
            ).replace("\n", " | "))
        res.seconds = time.monotonic() - t0
        res.log = [f"{before.host(d).shown}: {ln}" for d in directors
                   for ln in keepalived.reload_lines(lab, d)[seen[d]:]]
        tables: dict[str, dict[str, set[str]]] = {}
        for _ in range(after_rounds):
            tables, _h = round_("after")
        res.out_during = sorted(out_during)
        res.out_after = sorted(f"{r} of {key}" for d in directors
                               for key, rips in wanted[d].items()
                               for r in rips if r not in tables.get(d, {}).get(key, set()))
    finally:
        lab.teardown()
    return res


# -- the gate -------------------------------------------------------------------------


def gate(topology: Topology, applied: Applied, command: list[str], *, reload_budget: int = 0,
         live_reload: bool = True, progress: Progress | None = None) -> GateResult:
    """Diagnose ``topology``'s twin as it is and with ``applied``; reload keepalived
    live when a director's keepalived.conf changed and it ran keepalived before."""
    progress = progress or Progress()
    after_t = applied.topology
    masked = []
    for h in after_t.hosts:
        change = applied.sysctls.get(h.shown)
        if change:
            masked += masked_by_interface(change, [h])
    progress(f"gate: the twin as it is ({topology.name}) ...")
    before = diagnose(topology, progress=progress)
    progress(f"gate: the twin with the change on {', '.join(applied.hosts)} ...")
    after = diagnose(after_t, progress=progress)
    result = GateResult(topology.name, platform.release(), applied, before, after, command,
                        reload_budget, masked=masked, twin_kernel=topology.kernel)
    live = [h.name for h in topology.hosts if h.shown in applied.keepalived
            and h.name in topology.keepalived]
    if live and live_reload:
        result.reload = reload_under_load(topology, after_t, live, progress)
    return result
