"""The kernel matrix: one run (matrix, scenarios or the suite) on several kernels.

    drlab kernels run --kernel host --kernel bookworm --kernel trixie \\
        matrix --arp-ignore 0,1,2,3,8 --arp-announce 0,1,2

Each kernel runs the same ``drlab``/pytest command: the host kernel directly,
any other in a VM (``scripts/vm-run --kernel``). Every run writes JSON into a
directory shared with the VM; the results are merged into one table with a
column per kernel (:func:`merge`), printed, and written as JSON and HTML.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ET
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from enum import Enum
from pathlib import Path
from typing import Any, Literal

from lab.errors import LabError, UsageError
from lab.model import Topology, topology_from_dict, topology_to_dict
from lab.sweep import kernels
from lab.sweep.kernels import Kernel
from lab.util import Progress
from lab.util import table as tab

What = Literal["matrix", "scenario", "suite", "diagnose", "run", "gate"]
#: The verbs ``kernels run`` takes (``gate`` runs on several kernels by ``drlab gate
#: --kernel``).
VERBS: tuple[What, ...] = ("matrix", "scenario", "suite", "diagnose", "run")
REPO = Path(__file__).resolve().parents[2]  # lab/sweep/kmatrix.py -> the checkout


@dataclass
class KernelRun:
    kernel: Kernel
    exit_code: int
    seconds: float
    #: What the run gave, read (:func:`read_result`); None: nothing (see ``error``).
    result: KernelResult | None
    #: Why there is no result (the VM did not boot, the command crashed).
    error: str | None = None
    release: str | None = None
    #: The VM died under the command and was booted again.
    retried: bool = False
    #: Seconds from the VM's kernel start to the command (its uptime then); None on host.
    booted: float | None = None


def child_command(what: What, args: list[str], out: Path,
                  shard: tuple[int, int] | None = None) -> list[str]:
    """The command one kernel runs; it writes its result under ``out``. ``shard``
    (I, N): only every Nth cell, scenario or test of it, from the Ith."""
    py = sys.executable
    part = [f"{shard[0]}/{shard[1]}"] if shard else []
    if what == "matrix":
        return [py, "-m", "lab", "matrix", *args, "--json", str(out / "result.json"),
                *(["--shard", *part] if part else [])]
    if what == "scenario":
        return [py, "-m", "lab", "scenario", "run", *(args or ["all"]),
                "--json", str(out / "result.json"), *(["--shard", *part] if part else [])]
    if what == "suite":
        return [py, "-m", "pytest", "-p", "no:cacheprovider", "-q",
                f"--junitxml={out / 'junit.xml'}",
                *([f"--drlab-shard={part[0]}"] if part else []), *args]
    if what == "diagnose":
        if not args:
            raise UsageError("kernels run diagnose: give the cluster (cluster.toml or a "
                             "collected directory)")
        return [py, "-m", "lab", "diagnose", *args, "--json-file", str(out / "result.json")]
    if what == "gate":
        # its reports, rendered by the kernel's own gate, are kept (KernelResult.files)
        return [py, "-m", "lab", "gate", *args, "--json", str(out / "result.json"),
                *(x for ext, opt in GATE_REPORTS.items()
                  for x in (f"--{opt}", str(out / f"{REPORT}.{ext}")))]
    if what == "run":
        if not args:
            raise UsageError("kernels run run: give the command to run (as root, in each "
                             "kernel's VM; its exit code is the verdict: 0 good, 125 skip, "
                             "else bad)")
        # the command's exit code, recorded as the run's result
        return ["bash", "-c", '"$@"; rc=$?; printf \'{"exit": %d}\' "$rc" >"$0/result.json"; '
                'exit "$rc"', str(out), *args]
    raise UsageError(f"kernels run: {what!r} is not one of {', '.join(VERBS)}")


#: ``gate``'s reports: the file's extension -> its option
GATE_REPORTS = {"xml": "junit", "md": "markdown", "html": "html"}
#: The stem of the report files a child writes beside its result.
REPORT = "report"


def kernel_shards(n_kernels: int, what: What, shard: tuple[int, int],
                  whole: bool = False) -> list[tuple[int, int] | None | bool]:
    """What each kernel runs in shard ``(I, N)`` of the kernel-and-cell pairs.

    Cell ``j`` of kernel ``k`` belongs to shard ``(j + k) mod N + 1``, so kernel
    ``k`` runs its own shard ``((I - 1 - k) mod N) + 1`` of the cells, and the N
    shards cover every pair once, spread over the kernels. ``diagnose`` has no
    cells to split, and ``whole`` (``--kernel all-available``: each runner boots
    only its share of the builds) does not: a kernel runs whole (True) in shard
    ``k mod N + 1``, else not at all (False)."""
    i, n = shard
    if what == "diagnose" or whole:
        return [k % n == i - 1 for k in range(n_kernels)]
    return [((i - 1 - k) % n + 1, n) for k in range(n_kernels)]


def run_kernels(names: list[str], what: What, args: list[str], logs: Path | None,
                offline: bool = False,
                progress: Progress | None = None,
                jobs: int = 1, shard: tuple[int, int] | None = None,
                flavour: str = "amd64") -> Report:
    """Resolve each kernel name, run ``what`` on each (``jobs`` kernels at once, each
    in its own VM; logs in ``logs``) and merge the runs into one report
    (:func:`merge`), in the order the kernels were named. With ``shard`` (I, N)
    only that shard of the kernel-and-cell pairs runs (:func:`kernel_shards`);
    :func:`merge_reports` joins the N reports."""
    names, runs, logs = run_all(names, what, args, logs, offline, progress, jobs, shard,
                                flavour)
    if args[:1] == ["--"]:
        args = args[1:]
    report = merge(what, args, runs)
    # the names the kernels' columns have (LABEL of LABEL=PATH), this shard's or not
    report.kernel_names = [lab if sep and lab and rest else n
                           for n in names for lab, sep, rest in [n.partition("=")]]
    report.logs = str(logs)
    report.shard = shard
    return report


def run_all(names: list[str], what: What, args: list[str], logs: Path | None,
            offline: bool = False, progress: Progress | None = None, jobs: int = 1,
            shard: tuple[int, int] | None = None, flavour: str = "amd64",
            ) -> tuple[list[str], list[KernelRun], Path]:
    """:func:`run_kernels`' runs, unmerged: (the kernels' names, all-available
    expanded; a run per kernel this shard runs, in their order; the logs' directory)."""
    progress = progress or Progress()
    whole = kernels.ALL_AVAILABLE in names
    if whole:  # every fetchable build of the flavour, in order
        every = [b.release for b in kernels.available(refresh=not offline)
                 if b.fetchable and b.flavour == flavour]
        names = [x for n in names for x in (every if n == kernels.ALL_AVAILABLE else [n])]
    if len(set(names)) != len(names):
        raise UsageError("kernels run: a kernel is named twice")
    if jobs < 1:
        raise UsageError(f"kernels run: --jobs {jobs}: give 1 or more")
    if args[:1] == ["--"]:
        args = args[1:]
    child_command(what, args, Path("."))  # bad arguments: a usage error before any VM
    parts: list[tuple[int, int] | None | bool] = (
        kernel_shards(len(names), what, shard, whole) if shard else [None] * len(names))
    # only the kernels this shard runs are fetched
    todo = [(kernels.resolve(n, refresh=not offline), p)
            for n, p in zip(names, parts, strict=True) if p is not False]
    # made only now: bad input leaves nothing behind
    logs = logs or Path(tempfile.mkdtemp(prefix="drlab-kernels."))
    logs.mkdir(parents=True, exist_ok=True)

    def one(kp: tuple[Kernel, tuple[int, int] | None | bool]) -> KernelRun:
        k, part = kp
        sub = part if isinstance(part, tuple) else None
        progress(f"kernels: {what} on {k.name}"
                 + (f" ({k.image})" if k.image else " (the running kernel, no VM)")
                 + (f", its shard {sub[0]}/{sub[1]}" if sub else "") + " ...")
        r = run_on(k, what, args, logs / f"{safe_name(k.name)}.log", sub)
        progress(f"kernels: {k.name}: exit {r.exit_code} in {r.seconds:.0f}s"
                 + (f"; {r.error}" if r.error else ""))
        progress.step(k.name)
        return r

    progress.start(f"kernels run {what}", len(todo))
    try:
        with ThreadPoolExecutor(max_workers=max(1, min(jobs, len(todo)))) as pool:
            runs = list(pool.map(one, todo))
    finally:
        progress.finish()
    return names, runs, logs


def safe_name(name: str) -> str:
    """A kernel's name as a file name."""
    return re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("_") or "kernel"


#: How often a VM that died under a command is booted again.
VM_RETRIES = 2


def run_on(kernel: Kernel, what: What, args: list[str], log: Path,
           shard: tuple[int, int] | None = None) -> KernelRun:
    """Run on one kernel; stdout/stderr go to ``log`` (and are echoed).

    A VM that dies before the command finishes (vm-run's exit 125: no boot, or
    qemu gone) is booted again, up to :data:`VM_RETRIES` times, with its console
    in the log (trixie's 6.12 under software emulation with several vCPUs
    sometimes panics, "Oops: int3" in text patching, at boot or later); a
    failing command is never retried."""
    run = _run_once(kernel, what, args, log, verbose=False, shard=shard)
    attempt = 1
    while (run.result is None and run.exit_code == 125 and not kernel.is_host
           and attempt <= VM_RETRIES):
        earlier = log.with_suffix(f".attempt-{attempt}.log")
        log.rename(earlier)
        sys.stderr.write(f"  [{kernel.name}] the VM died before the command finished "
                         f"(log: {earlier}); booting it again, console in {log}\n")
        run = _run_once(kernel, what, args, log, verbose=True, shard=shard)
        run.retried = True
        attempt += 1
    return run


def _run_once(kernel: Kernel, what: What, args: list[str], log: Path,
              verbose: bool, shard: tuple[int, int] | None = None) -> KernelRun:
    out = Path(tempfile.mkdtemp(prefix="drlab-k."))
    os.chmod(out, 0o755)
    cmd = child_command(what, args, out, shard)
    # the release as the kernel itself reports it (a build tree's is not known before)
    cmd = ["bash", "-c", 'uname -r >"$0/release" && cut -d" " -f1 /proc/uptime >"$0/uptime" '
           '&& exec "$@"', str(out), *cmd]
    env = dict(os.environ)
    if not kernel.is_host:
        vm_run = REPO / "scripts" / "vm-run"
        if not vm_run.exists():
            raise UsageError(f"{vm_run} not found: run the kernel matrix from the repository")
        env.setdefault("DRLAB_TIMEOUT_SCALE", "10")
        cmd = [str(vm_run), "--force-vm", "--kernel", str(kernel.image), "--share", str(out),
               "--kernel-warnings", str(out / "kernel-warnings"),
               *(["--verbose"] if verbose else []), "--", *cmd]
    t0 = time.monotonic()
    try:
        with open(log, "w") as lf:
            lf.write(f"$ {' '.join(cmd)}\n")
            lf.flush()
            p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                 text=True, env=env, cwd=REPO)
            assert p.stdout is not None
            for line in p.stdout:
                lf.write(line)
                sys.stderr.write(f"  [{kernel.name}] {line}")
            rc = p.wait()
        seconds = time.monotonic() - t0
        result, error = None, None
        try:
            result = read_result(what, suite_result(out / "junit.xml") if what == "suite"
                                 else json.loads((out / "result.json").read_text()))
            # the reports the child rendered beside its result (gate's)
            result.files = {f.suffix[1:]: f.read_text() for f in out.glob(f"{REPORT}.*")}
        except (OSError, ValueError, ET.ParseError):
            error = (f"no result (exit {rc}, " + ("the VM failed" if rc == 125 else
                                                   "see the log") + f": {log})")
        with contextlib.suppress(OSError):  # vm-run's excerpt when the kernel warned
            warned = (out / "kernel-warnings").read_text().strip()
            error = "; ".join(e for e in (error, f"{warned} (exit {rc})") if e)
        try:
            release = (out / "release").read_text().strip()
        except OSError:
            release = None
        try:
            booted = None if kernel.is_host else float((out / "uptime").read_text())
        except (OSError, ValueError):
            booted = None
    finally:
        shutil.rmtree(out, ignore_errors=True)
    return KernelRun(kernel, rc, seconds, result, error, release or kernel.release,
                     booted=booted)


def suite_result(junit: Path) -> dict[str, Any]:
    root = ET.parse(junit).getroot()
    tests = []
    for case in root.iter("testcase"):
        status, msg = "passed", ""
        for child in case:
            if child.tag in ("failure", "error", "skipped"):
                status = {"failure": "failed"}.get(child.tag, child.tag)
                msg = child.get("message") or ""
        tests.append({"name": f"{case.get('classname')}::{case.get('name')}",
                      "status": status, "message": msg[:500],
                      "seconds": float(case.get("time") or 0)})
    return {"tests": tests}


# -- the report: one row per cell/scenario/test, one column per kernel --------------


class Status(Enum):
    """A cell's status: one set for every kind of run (its value is the JSON's word)."""

    OK = "ok"
    NOT_RUN = "not run"
    ERROR = "error"
    MISMATCH = "mismatch"
    FAILED = "failed"
    NOT_REPRODUCED = "not reproduced"
    #: diagnose: a service the twin showed symptoms for
    PROBLEMS = "problems"
    #: diagnose: a finding measured in the twin
    FINDING = "finding"
    #: diagnose: a finding from the configuration alone
    PREDICTED = "predicted"

    @property
    def bad(self) -> bool:
        """The row fails on that kernel."""
        return self not in (Status.OK, Status.NOT_RUN)


@dataclass(frozen=True)
class FindingKey:
    """What a diagnose finding's row is about (``.ci/run`` looks rows up by it)."""

    name: str
    hosts: tuple[str, ...]
    service: str

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "hosts": list(self.hosts), "service": self.service}


@dataclass
class Cell:
    """One row on one kernel."""

    status: Status
    summary: str
    evidence: list[str] = field(default_factory=list)
    #: The row's place in an unsharded run (shards' rows are put back in that order).
    order: int | None = None
    #: Shown under the row's key (a scenario's symptom, a finding's fix).
    note: str | None = None
    #: matrix: what the model predicts for the cell.
    predicted: str | None = None
    #: scenario: each variant's lab.
    topologies: dict[str, Topology] | None = None
    finding: FindingKey | None = None

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"status": self.status.value, "summary": self.summary,
                               "evidence": self.evidence}
        for k in ("order", "note", "predicted"):
            if getattr(self, k) is not None:
                out[k] = getattr(self, k)
        if self.topologies is not None:
            out["topologies"] = {v: topology_to_dict(t) for v, t in self.topologies.items()}
        if self.finding is not None:
            out["finding"] = self.finding.to_json()
        return out

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> Cell:
        f = d.get("finding")
        tops = d.get("topologies")
        return cls(Status(d["status"]), str(d["summary"]), [str(e) for e in d["evidence"]],
                   d.get("order"), d.get("note"), d.get("predicted"),
                   {v: topology_from_dict(t) for v, t in tops.items()} if tops else None,
                   FindingKey(f["name"], tuple(f["hosts"]), f["service"]) if f else None)


@dataclass
class Row:
    key: str
    #: Each kernel's cell (None: the kernel has no such row).
    kernels: dict[str, Cell | None]
    #: The row's outcome differs across kernels.
    differs: bool
    #: It fails on some kernel.
    bad: bool

    def _cells(self) -> list[Cell]:
        return [c for c in self.kernels.values() if c is not None]

    # what the kernels' cells say about the row itself: the first that says it
    @property
    def note(self) -> str | None:
        return next((c.note for c in self._cells() if c.note), None)

    @property
    def predicted(self) -> str | None:
        return next((c.predicted for c in self._cells() if c.predicted), None)

    @property
    def topologies(self) -> dict[str, Topology] | None:
        return next((c.topologies for c in self._cells() if c.topologies), None)

    @property
    def finding(self) -> FindingKey | None:
        return next((c.finding for c in self._cells() if c.finding), None)

    def to_json(self) -> dict[str, Any]:
        return {"key": self.key, "note": self.note,
                "kernels": {k: c.to_json() if c else None for k, c in self.kernels.items()},
                "predicted": self.predicted,
                "topologies": ({v: topology_to_dict(t) for v, t in self.topologies.items()}
                               if self.topologies else None),
                "finding": self.finding.to_json() if self.finding else None,
                "differs": self.differs, "bad": self.bad}

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> Row:
        return cls(d["key"], {k: Cell.from_json(c) if c is not None else None
                              for k, c in d["kernels"].items()}, d["differs"], d["bad"])


@dataclass
class KernelInfo:
    """One kernel's run, as the report shows it."""

    name: str
    image: str
    release: str | None
    exit_code: int
    seconds: float
    error: str | None
    retried: bool = False
    #: The Debian suite that served the kernel (see :class:`Kernel`).
    suite: str | None = None

    def to_json(self) -> dict[str, Any]:
        return dict(self.__dict__)

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> KernelInfo:
        return cls(d["name"], d.get("image") or "", d.get("release"), int(d["exit_code"]),
                   float(d["seconds"]), d.get("error"), bool(d.get("retried")),
                   d.get("suite"))


@dataclass
class Report:
    """A kernel run's report (:func:`merge`); JSON only at the edge (:meth:`to_json`)."""

    what: str
    args: list[str]
    kernels: list[KernelInfo]
    rows: list[Row]
    topology: Topology | None = None
    #: Shards not given and cells no shard has (:func:`merge_reports`).
    missing: list[str] = field(default_factory=list)
    #: The kernels as named (their order).
    kernel_names: list[str] | None = None
    logs: str | None = None
    shard: tuple[int, int] | None = None
    #: How many shard reports were merged into this one.
    merged: int | None = None

    @property
    def failed(self) -> int:
        """Rows failing on some kernel, kernels without a result and missing parts."""
        return (sum(r.bad for r in self.rows) + sum(k.error is not None for k in self.kernels)
                + len(self.missing))

    def row(self, key: str) -> Row | None:
        return next((r for r in self.rows if r.key == key), None)

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "what": self.what, "args": self.args,
            "kernels": [k.to_json() for k in self.kernels],
            "rows": [r.to_json() for r in self.rows],
            "topology": topology_to_dict(self.topology) if self.topology else None,
            "missing": self.missing, "failed": self.failed,
            "kernel_names": self.kernel_names,
            "shard": list(self.shard) if self.shard else None}
        if self.logs is not None:
            out["logs"] = self.logs
        if self.merged is not None:
            out["merged"] = self.merged
        return out

    @classmethod
    def from_json(cls, d: Any, name: str = "the report") -> Report:
        """A report's JSON (``--json``) back as data; anything else is a usage error."""
        if not isinstance(d, dict) or "rows" not in d or "kernels" not in d:
            raise UsageError(f"{name} is not a `drlab kernels run` report")
        try:
            shard = d.get("shard")
            return cls(d["what"], list(d["args"]),
                       [KernelInfo.from_json(k) for k in d["kernels"]],
                       [Row.from_json(r) for r in d["rows"]],
                       topology_from_dict(d["topology"]) if d.get("topology") else None,
                       list(d.get("missing") or []), d.get("kernel_names"), d.get("logs"),
                       (int(shard[0]), int(shard[1])) if shard else None, d.get("merged"))
        except (KeyError, TypeError, ValueError, IndexError, LabError) as e:
            raise UsageError(f"{name} is not a `drlab kernels run` report "
                             f"({type(e).__name__}: {e})") from None


# -- the rows of each kind of run, from its JSON result ------------------------------

def _matrix_rows(data: dict[str, Any]) -> dict[str, Cell]:
    # lazy: loaded only when _matrix_rows() runs (+2 modules, ~4 ms)
    from lab.sweep.matrix import FIELDS, fmt

    rows = {}
    for c in data["cells"]:
        obs = c.get("observed") or {}
        fields = c.get("fields") or list(FIELDS)
        summary = (" ".join(f"{k}={fmt(obs[k])}" for k in fields if k in obs) if obs
                   else (c.get("error") or "no observation"))
        if obs and c.get("skipped"):
            summary += f" ({c.get('error')})"
        status = (Status.OK if c["match"] else Status.NOT_RUN if c.get("skipped") else
                  Status.ERROR if c.get("error") else Status.MISMATCH)
        rows[c["label"]] = Cell(status, summary, c.get("evidence") or [], c.get("index"),
                                predicted=" ".join(f"{k}={fmt(v)}"
                                                   for k, v in c["predicted"].items()))
    return rows


def _scenario_rows(data: dict[str, Any]) -> dict[str, Cell]:
    rows = {}
    for s in data["scenarios"]:
        if not s["ran"]:
            rows[s["name"]] = Cell(Status.ERROR if s.get("error") else Status.NOT_RUN,
                                   s["why"], [], s.get("index"))
            continue
        b, f = s["broken"], s["fixed"]
        summary = (f"broken {'SYMPTOM' if b['symptom'] else 'healthy'}, "
                   f"fixed {'SYMPTOM' if f['symptom'] else 'healthy'}")
        tops = s.get("topologies")
        rows[s["name"]] = Cell(
            Status.OK if s["reproduced"] else Status.NOT_REPRODUCED, summary,
            [f"broken: {e}" for e in b["evidence"]] + [f"fixed: {e}" for e in f["evidence"]],
            s.get("index"), note=s.get("symptom"),
            topologies={v: topology_from_dict(t) for v, t in tops.items()} if tops else None)
    return rows


#: JUnit's outcomes as statuses.
_JUNIT = {"passed": Status.OK, "skipped": Status.NOT_RUN, "failed": Status.FAILED,
          "error": Status.ERROR}


def _suite_rows(data: dict[str, Any]) -> dict[str, Cell]:
    return {t["name"]: Cell(_JUNIT[t["status"]],
                            t["status"] + (f": {t['message']}" if t["message"] else ""),
                            [t["message"]] if t["message"] else [])
            for t in data["tests"]}


def _diagnose_rows(data: dict[str, Any]) -> dict[str, Cell]:
    """One row per service (what the twin did) and one per finding."""
    rows: dict[str, Cell] = {}
    for s in data["services"]:
        ok = s["connections"] - len(s["failed"])
        rows[f"service {s['service']}"] = Cell(
            Status.OK if not s["symptoms"] else Status.PROBLEMS,
            f"{ok}/{s['connections']} connections; ARP from "
            f"{', '.join(s['census']) or 'nobody'}", list(s["symptoms"]))
    for f in data["findings"]:
        rows[f"{f['name']} on {', '.join(f['hosts'])} [{f['service']}]"] = Cell(
            Status.FINDING if f["measured"] else Status.PREDICTED, f["symptom"],
            list(f["evidence"]), note=f["fix"],
            finding=FindingKey(f["name"], tuple(f["hosts"]), f["service"]))
    return rows


def _run_rows(data: dict[str, Any]) -> dict[str, Cell]:
    """``run CMD``: one row, the command's exit code by git bisect run's convention."""
    rc = int(data["exit"])
    status = Status.OK if rc == 0 else Status.NOT_RUN if rc == 125 else Status.FAILED
    return {"command": Cell(status, f"exit {rc}" + (" (skip)" if rc == 125 else ""))}


def _gate_rows(data: dict[str, Any]) -> dict[str, Cell]:
    """``drlab gate``: its verdict, a row per finding it adds, fixes or leaves, per
    service that loses connections, and its reload."""
    bad = {"fail": Status.FAILED}
    rows = {"verdict": Cell(bad.get(data["verdict"], Status.OK), data["verdict"])}
    for label, status in (("breaks", Status.FAILED), ("fixes", Status.OK),
                          ("unchanged", Status.NOT_RUN)):
        for f in data[label]:
            rows[f"{f['name']} on {', '.join(f['hosts'])} [{f['service']}]"] = Cell(
                status, f"{label}: {f['symptom']}", list(f["evidence"]), note=f["fix"],
                finding=FindingKey(f["name"], tuple(f["hosts"]), f["service"]))
    for s in data["lost"]:
        rows[f"service {s}"] = Cell(Status.FAILED, "loses connections")
    if (r := data["reload"]) is not None:
        over = r["drops"] > data["reload_budget"] or bool(r["errors"])
        rows["reload"] = Cell(Status.FAILED if over else Status.OK,
                              f"{r['drops']} dropped (budget {data['reload_budget']}), "
                              f"{r['holder_changes']} VIP holder change(s)", list(r["errors"]))
    return rows


ROWS = {"matrix": _matrix_rows, "run": _run_rows, "scenario": _scenario_rows, "suite": _suite_rows,
        "diagnose": _diagnose_rows, "gate": _gate_rows}


@dataclass
class KernelResult:
    """One kernel's result, read: a cell per row, and the topology it ran (if it says)."""

    cells: dict[str, Cell]
    topology: Topology | None = None
    #: the child's JSON, as read
    data: Any = None
    #: reports the child rendered beside its result: extension -> text (gate's)
    files: dict[str, str] = field(default_factory=dict)


def read_result(what: What, data: Any) -> KernelResult:
    """A kernel's result file as data: the child's JSON (the JUnit XML's tests, for the
    suite), read where it is read. One that is not what ``what`` writes is a ValueError."""
    try:
        top = data.get("topology")
        return KernelResult(ROWS[what](data), topology_from_dict(top) if top else None, data)
    except (KeyError, TypeError, AttributeError, LabError) as e:
        raise ValueError(f"not a {what} result ({type(e).__name__}: {e})") from None


def merge(what: What, args: list[str], runs: list[KernelRun]) -> Report:
    """One report: ``rows[i].kernels[kernel name]`` = status, summary, evidence."""
    per = {r.kernel.name: (r.result.cells if r.result else {}) for r in runs}
    topology = next((r.result.topology for r in runs if r.result and r.result.topology), None)
    kernels_ = [KernelInfo(r.kernel.name, str(r.kernel.image or ""), r.release, r.exit_code,
                           round(r.seconds, 1), r.error, r.retried, r.kernel.suite)
                for r in runs]
    return _report(what, args, kernels_, per, topology)


def matrix_report(data: dict[str, Any], args: list[str]) -> Report:
    """A single ``drlab matrix`` run (its JSON, run by ``args``) as a report with one
    kernel column, the running one."""
    run = KernelRun(Kernel("this kernel", None, data.get("kernel")), 1 if data["mismatches"]
                    else 0, data["wall_seconds"], read_result("matrix", data), None,
                    data.get("kernel"))
    return merge("matrix", args, [run])


def _report(what: str, args: list[str], kernels_: list[KernelInfo],
            per: dict[str, dict[str, Cell]], topology: Topology | None,
            missing: list[str] | None = None) -> Report:
    """The report from each kernel's rows (``per[kernel][key]`` = cell)."""
    keys: list[str] = []
    for rows in per.values():
        keys += [k for k in rows if k not in keys]
    orders = {k: min((o for rows in per.values() if k in rows
                      and (o := rows[k].order) is not None), default=None)
              for k in keys}
    if keys and all(o is not None for o in orders.values()):
        keys.sort(key=lambda k: orders[k] or 0)  # a shard's rows back in the unsharded order
    out_rows: list[Row] = []
    for key in keys:
        cells = {name: rows.get(key) for name, rows in per.items()}
        ran = [c.summary for c in cells.values() if c and c.status is not Status.NOT_RUN]
        if what == "diagnose":  # a finding on one kernel and none on another: it differs
            ran += ["absent" for name, c in cells.items() if c is None and per[name]]
        out_rows.append(Row(key, cells, differs=len(set(ran)) > 1,
                            bad=any(c and c.status.bad for c in cells.values())))
    return Report(what, args, kernels_, out_rows, topology, missing or [])


def merge_reports(data: list[Any], names: list[str] | None = None) -> Report:
    """Join the JSON reports of ``kernels run --shard I/N`` (I = 1..N) into the report
    one unsharded run gives; ``missing`` names each shard not given and each cell no
    shard has (``names``: the files, for messages). Reports of different runs (what,
    arguments, kernels, N) are a usage error."""
    names = names or [f"report {n + 1}" for n in range(len(data))]
    if not data:
        raise UsageError("kernels merge: give the shards' --json reports")
    reports = [Report.from_json(d, f"kernels merge: {name}")
               for d, name in zip(data, names, strict=True)]
    first = reports[0]
    for r, name in zip(reports, names, strict=True):
        for attr in ("what", "args", "kernel_names"):
            if getattr(r, attr) != getattr(first, attr):
                raise UsageError(f"kernels merge: {name} is another run ({attr} "
                                 f"{getattr(r, attr)!r}, not {getattr(first, attr)!r})")
        if (r.shard or (1, 1))[1] != (first.shard or (1, 1))[1]:
            raise UsageError(f"kernels merge: {name} is shard {list(r.shard or [])}, "
                             "of another N")
    n = (first.shard or (1, 1))[1]
    given = [(r.shard or (1, 1))[0] for r in reports]
    dup = sorted({i for i in given if given.count(i) > 1})
    if dup:
        raise UsageError(f"kernels merge: shard {dup[0]}/{n} given twice")
    missing = [f"shard {i}/{n} (not given)" for i in range(1, n + 1) if i not in given]
    order = first.kernel_names or [k.name for k in first.kernels]
    kinfo: dict[str, KernelInfo] = {}
    per: dict[str, dict[str, Cell]] = {}
    for r in reports:
        for k in r.kernels:
            had = kinfo.get(k.name)
            if had is None:
                kinfo[k.name] = replace(k)
                per[k.name] = {}
                continue
            had.seconds = round(had.seconds + k.seconds, 1)
            had.exit_code = max(had.exit_code, k.exit_code)
            had.error = "; ".join(e for e in (had.error, k.error) if e) or None
            had.retried = had.retried or k.retried
            had.release = had.release or k.release
        for row in r.rows:
            for kname, cell in row.kernels.items():
                if cell is not None:
                    per[kname][row.key] = cell
    kernels_ = [kinfo[k] for k in order if k in kinfo]
    per = {k: per[k] for k in order if k in per}
    if first.what != "diagnose":  # every kernel has every cell in one run
        keys = {key for rows in per.values() for key in rows}
        missing += [f"{key} on {k}" for k in per for key in sorted(keys - set(per[k]))]
    topology = next((r.topology for r in reports if r.topology), None)
    out = _report(first.what, first.args, kernels_, per, topology, missing)
    out.kernel_names = order
    out.merged = len(reports)
    return out


def table(report: Report) -> str:
    names = [k.name for k in report.kernels]
    rows = []
    for r in report.rows:
        rows.append([r.key] + [(c.status.value if c else "-") for c in
                               (r.kernels[n] for n in names)]
                    + ["DIFFERS" if r.differs else ""])
    header = ["", *(f"{k.name} ({k.release})" for k in report.kernels), "across"]
    return tab(rows, header)


def details(report: Report) -> list[str]:
    """Every row that is bad on some kernel or differs across kernels, with evidence."""
    out = []
    for r in report.rows:
        if not (r.bad or r.differs):
            continue
        lines = [f"{r.key}:" + (f" predicted {r.predicted}" if r.predicted else "")]
        for name, c in r.kernels.items():
            if c is None:
                lines.append(f"  {name}: not in this run")
                continue
            lines.append(f"  {name}: {c.status.value}: {c.summary}")
            lines += [f"      {e}" for e in c.evidence]
        out.append("\n".join(lines))
    return out
