"""``drlab gate --kernel K ...``: the gate run on each kernel, in its VM, by the kernel
matrix's machinery (:func:`lab.sweep.kmatrix.run_all`, as ``drlab kernels run``), and
its verdicts merged: the worst of them (:func:`lab.scenarios.gate.worst`)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lab.errors import UsageError
from lab.scenarios.gate import Verdict, worst
from lab.sweep import kmatrix
from lab.sweep.kernels import Build, debian_line
from lab.util import Progress

#: The exit code when a kernel gave no verdict (its VM failed, the gate crashed)
#: and none failed: not measured everywhere, as when the machine cannot run the lab.
NO_VERDICT_EXIT = 3


@dataclass
class KernelGate:
    """The gate on one kernel."""

    kernel: str
    #: the release the kernel reported (uname -r)
    release: str | None
    exit_code: int
    seconds: float
    #: None: no result (see ``error``)
    verdict: Verdict | None
    error: str | None = None
    #: the gate's JSON (GateResult.to_json)
    result: dict[str, Any] | None = None
    #: the reports that kernel's gate rendered: "xml" (JUnit), "md", "html" -> text
    reports: dict[str, str] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {"kernel": self.kernel, "release": self.release, "exit": self.exit_code,
                "seconds": round(self.seconds, 1),
                "verdict": self.verdict.value if self.verdict else None,
                "error": self.error, "result": self.result}


@dataclass
class KernelsGate:
    """The gate on several kernels."""

    kernels: list[KernelGate]
    logs: str = ""

    @property
    def verdict(self) -> Verdict | None:
        """The worst kernel's; ``fail`` if one fails even when another gave none;
        None when a kernel gave no verdict and none failed."""
        vs = [k.verdict for k in self.kernels]
        if Verdict.FAIL in vs:
            return Verdict.FAIL
        if None in vs or not vs:
            return None
        return worst([v for v in vs if v is not None])

    @property
    def exit_code(self) -> int:
        v = self.verdict
        return v.exit_code if v else NO_VERDICT_EXIT

    def to_json(self) -> dict[str, Any]:
        return {"verdict": self.verdict.value if self.verdict else None,
                "exit": self.exit_code, "kernels": [k.to_json() for k in self.kernels],
                "logs": self.logs}

    def text(self) -> str:
        v = self.verdict
        lines = [f"drlab gate on {len(self.kernels)} kernel(s): "
                 + (v.value.upper() if v else "NO VERDICT (a kernel gave none)")
                 + " (the worst of them)"]
        for k in self.kernels:
            lines.append(f"  {k.kernel} ({k.release or 'release unknown'}): "
                         + (k.verdict.value if k.verdict else f"no verdict: {k.error}")
                         + f", exit {k.exit_code}, {k.seconds:.0f}s")
        lines.append(f"  logs: {self.logs}")
        return "\n".join(lines)


def kernel_gate(run: kmatrix.KernelRun) -> KernelGate:
    """One kernel's run of ``gate`` (:func:`kmatrix.run_all`) as its verdict."""
    data = run.result.data if run.result else None
    verdict = None
    if isinstance(data, dict):
        try:
            verdict = Verdict(data.get("verdict"))
        except ValueError:
            verdict = None
    error = run.error if verdict or run.error else f"no verdict (exit {run.exit_code})"
    return KernelGate(run.kernel.name, run.release, run.exit_code, run.seconds, verdict,
                      error, data if verdict else None,
                      dict(run.result.files) if run.result else {})


def gate_on_kernels(names: list[str], args: list[str], logs: Path | None = None,
                    progress: Progress | None = None) -> KernelsGate:
    """``drlab gate ARGS`` on each kernel of ``names`` (``host``, a Debian suite, a
    build ...: what ``kernels run --kernel`` takes), one after the other."""
    _names, runs, where = kmatrix.run_all(names, "gate", args, logs, progress=progress)
    return KernelsGate([kernel_gate(r) for r in runs], str(where))


@dataclass(frozen=True)
class DefaultKernel:
    """Where ``drlab gate`` runs without ``--kernel``."""

    #: the kernels to run on, as ``--kernel`` would name them; empty: the running one
    kernels: list[str]
    #: why, for the user ("the twin's kernel 6.1.0-57-amd64 -> bookworm"); empty: none
    because: str = ""


def default_kernel(running_has_ipvs: bool, running: str, twin: str,
                   builds: Sequence[Build] = ()) -> DefaultKernel:
    """The gate's kernel when none is named: the running one when it has IPVS (in
    scripts/vm-run, a VM, a director); else the twin's own series (``twin``, the
    release the cluster recorded, mapped by :func:`lab.sweep.kernels.debian_line`,
    ``builds`` the fetchable ones), in its VM. UsageError when the running kernel
    lacks IPVS and the twin names no kernel the lab can fetch."""
    if running_has_ipvs:
        return DefaultKernel([])
    return twin_series(twin, builds, f"kernel {running} has no IPVS and")


def twin_series(twin: str, builds: Sequence[Build] = (),
                why: str = "--kernel twin:") -> DefaultKernel:
    """The twin's own kernel series (``--kernel twin``): ``twin``, the release the
    cluster recorded, mapped by :func:`lab.sweep.kernels.debian_line`; UsageError
    (``why`` ... give --kernel) when it records none or none the lab can fetch."""
    if not twin:
        raise UsageError(f"{why} the twin records no kernel "
                         "(a cluster.toml from an older drlab import?): give --kernel K "
                         "(bookworm, trixie, a build; see drlab kernels list --available)")
    line = debian_line(twin, builds)
    if line is None:
        raise UsageError(f"{why} the twin's kernel {twin} is "
                         "in no Debian line the lab fetches: give --kernel K (bookworm, "
                         "trixie, a build, a path; see drlab kernels list --available)")
    return DefaultKernel([line], f"the twin's kernel {twin} -> {line}")
