"""The kernel matrix: one run (matrix, scenarios or the suite) on several kernels.

    drlab kernels run --kernel host --kernel bookworm --kernel trixie \\
        matrix --arp-ignore 0,1,2,3,8 --arp-announce 0,1,2

Each kernel runs the same ``drlab``/pytest command: the host kernel directly,
any other in a VM (``scripts/vm-run --kernel``). Every run writes JSON into a
directory shared with the VM; the results are merged into one table with a
column per kernel (:func:`merge`), printed, and written as JSON and HTML.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ET
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from lab.errors import UsageError
from lab.sweep import kernels
from lab.sweep.kernels import Kernel

What = Literal["matrix", "scenario", "suite", "diagnose"]
REPO = Path(__file__).resolve().parents[2]  # lab/sweep/kmatrix.py -> the checkout


@dataclass
class KernelRun:
    kernel: Kernel
    exit_code: int
    seconds: float
    data: dict[str, Any] | None
    #: Why there is no data (the VM did not boot, the command crashed).
    error: str | None = None
    release: str | None = None
    #: The VM died once and was booted again.
    retried: bool = False


def child_command(what: What, args: list[str], out: Path) -> list[str]:
    """The command one kernel runs; it writes its result under ``out``."""
    py = sys.executable
    if what == "matrix":
        return [py, "-m", "lab", "matrix", *args, "--json", str(out / "result.json")]
    if what == "scenario":
        return [py, "-m", "lab", "scenario", "run", *(args or ["all"]),
                "--json", str(out / "result.json")]
    if what == "suite":
        return [py, "-m", "pytest", "-p", "no:cacheprovider", "-q",
                f"--junitxml={out / 'junit.xml'}", *args]
    if what == "diagnose":
        if not args:
            raise UsageError("kernels run diagnose: give the cluster (cluster.toml or a "
                             "collected directory)")
        return [py, "-m", "lab", "diagnose", *args, "--json-file", str(out / "result.json")]
    raise UsageError(f"kernels run: {what!r} is not one of matrix, scenario, suite, diagnose")


def run_kernels(names: list[str], what: What, args: list[str], logs: Path,
                offline: bool = False,
                progress: Callable[[str], None] = lambda _m: None,
                jobs: int = 1) -> dict[str, Any]:
    """Resolve each kernel name, run ``what`` on each (``jobs`` kernels at once, each
    in its own VM; logs in ``logs``) and merge the runs into one report
    (:func:`merge`), in the order the kernels were named."""
    from concurrent.futures import ThreadPoolExecutor

    if len(set(names)) != len(names):
        raise UsageError("kernels run: a kernel is named twice")
    if jobs < 1:
        raise UsageError(f"kernels run: --jobs {jobs}: give 1 or more")
    if args[:1] == ["--"]:
        args = args[1:]
    child_command(what, args, logs)  # bad arguments are a usage error before any VM
    resolved = [kernels.resolve(n, refresh=not offline) for n in names]
    logs.mkdir(parents=True, exist_ok=True)

    def one(k: Kernel) -> KernelRun:
        progress(f"kernels: {what} on {k.name}"
                 + (f" ({k.image})" if k.image else " (the running kernel, no VM)") + " ...")
        r = run_on(k, what, args, logs / f"{safe_name(k.name)}.log")
        progress(f"kernels: {k.name}: exit {r.exit_code} in {r.seconds:.0f}s"
                 + (f"; {r.error}" if r.error else ""))
        return r

    with ThreadPoolExecutor(max_workers=min(jobs, len(resolved))) as pool:
        runs = list(pool.map(one, resolved))
    return merge(what, args, runs)


def safe_name(name: str) -> str:
    """A kernel's name as a file name."""
    import re

    return re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("_") or "kernel"


def run_on(kernel: Kernel, what: What, args: list[str], log: Path) -> KernelRun:
    """Run on one kernel; stdout/stderr go to ``log`` (and are echoed).

    A VM that dies before the command finishes (vm-run's exit 125: no boot, or
    qemu gone) is booted once more, with its console in the log; a failing
    command is never retried."""
    run = _run_once(kernel, what, args, log, verbose=False)
    if run.data is None and run.exit_code == 125 and not kernel.is_host:
        first = log.with_suffix(".first-attempt.log")
        log.rename(first)
        sys.stderr.write(f"  [{kernel.name}] the VM died before the command finished "
                         f"(log: {first}); booting it once more, console in {log}\n")
        run = _run_once(kernel, what, args, log, verbose=True)
        run.retried = True
    return run


def _run_once(kernel: Kernel, what: What, args: list[str], log: Path,
              verbose: bool) -> KernelRun:
    out = Path(tempfile.mkdtemp(prefix="drlab-k."))
    os.chmod(out, 0o755)
    cmd = child_command(what, args, out)
    # the release as the kernel itself reports it (a build tree's is not known before)
    cmd = ["bash", "-c", 'uname -r >"$0/release" && exec "$@"', str(out), *cmd]
    env = dict(os.environ)
    if not kernel.is_host:
        vm_run = REPO / "scripts" / "vm-run"
        if not vm_run.exists():
            raise UsageError(f"{vm_run} not found: run the kernel matrix from the repository")
        env.setdefault("DRLAB_TIMEOUT_SCALE", "10")
        cmd = [str(vm_run), "--force-vm", "--kernel", str(kernel.image), "--share", str(out),
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
        data, error = None, None
        try:
            data = (suite_result(out / "junit.xml") if what == "suite"
                    else json.loads((out / "result.json").read_text()))
        except (OSError, ValueError, ET.ParseError):
            error = (f"no result (exit {rc}, " + ("the VM failed" if rc == 125 else
                                                   "see the log") + f": {log})")
        try:
            release = (out / "release").read_text().strip()
        except OSError:
            release = None
    finally:
        shutil.rmtree(out, ignore_errors=True)
    return KernelRun(kernel, rc, seconds, data, error, release or kernel.release)


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


# -- merging: one row per cell/scenario/test, one column per kernel ---------------

def _matrix_rows(data: dict[str, Any]) -> dict[str, dict[str, Any]]:
    from lab.sweep.matrix import FIELDS, fmt

    rows = {}
    for c in data["cells"]:
        obs = c.get("observed") or {}
        fields = c.get("fields") or list(FIELDS)
        summary = (" ".join(f"{k}={fmt(obs[k])}" for k in fields if k in obs) if obs
                   else (c.get("error") or "no observation"))
        if obs and c.get("skipped"):
            summary += f" ({c.get('error')})"
        status = ("ok" if c["match"] else "not run" if c.get("skipped") else
                  "error" if c.get("error") else "mismatch")
        rows[c["label"]] = {"status": status, "summary": summary,
                            "evidence": c.get("evidence") or [],
                            "predicted": " ".join(f"{k}={fmt(v)}"
                                                  for k, v in c["predicted"].items())}
    return rows


def _scenario_rows(data: dict[str, Any]) -> dict[str, dict[str, Any]]:
    rows = {}
    for s in data["scenarios"]:
        if not s["ran"]:
            rows[s["name"]] = {"status": "not run", "summary": s["why"], "evidence": []}
            continue
        b, f = s["broken"], s["fixed"]
        summary = (f"broken {'SYMPTOM' if b['symptom'] else 'healthy'}, "
                   f"fixed {'SYMPTOM' if f['symptom'] else 'healthy'}")
        rows[s["name"]] = {"status": "ok" if s["reproduced"] else "not reproduced",
                           "summary": summary, "note": s.get("symptom"),
                           "topologies": s.get("topologies"),
                           "evidence": [f"broken: {e}" for e in b["evidence"]]
                           + [f"fixed: {e}" for e in f["evidence"]]}
    return rows


def _suite_rows(data: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {t["name"]: {"status": {"passed": "ok", "skipped": "not run"}.get(t["status"],
                                                                            t["status"]),
                        "summary": t["status"] + (f": {t['message']}" if t["message"] else ""),
                        "evidence": [t["message"]] if t["message"] else []}
            for t in data["tests"]}


def _diagnose_rows(data: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """One row per service (what the twin did) and one per finding."""
    rows: dict[str, dict[str, Any]] = {}
    for s in data["services"]:
        ok = s["connections"] - len(s["failed"])
        rows[f"service {s['service']}"] = {
            "status": "ok" if not s["symptoms"] else "problems",
            "summary": f"{ok}/{s['connections']} connections; ARP from "
                       f"{', '.join(s['census']) or 'nobody'}",
            "evidence": s["symptoms"]}
    for f in data["findings"]:
        rows[f"{f['name']} on {', '.join(f['hosts'])} [{f['service']}]"] = {
            "status": "finding" if f["measured"] else "predicted",
            "summary": f["symptom"], "note": f["fix"], "evidence": f["evidence"]}
    return rows


ROWS = {"matrix": _matrix_rows, "scenario": _scenario_rows, "suite": _suite_rows,
        "diagnose": _diagnose_rows}
BAD = {"mismatch", "error", "failed", "not reproduced", "finding", "problems", "predicted"}


def merge(what: What, args: list[str], runs: list[KernelRun]) -> dict[str, Any]:
    """One report: ``rows[i]["kernels"][kernel name]`` = status, summary, evidence."""
    per = {r.kernel.name: (ROWS[what](r.data) if r.data else {}) for r in runs}
    keys: list[str] = []
    for rows in per.values():
        keys += [k for k in rows if k not in keys]
    out_rows = []
    for key in keys:
        cells = {name: rows.get(key) for name, rows in per.items()}
        ran = [c["summary"] for c in cells.values() if c and c["status"] != "not run"]
        if what == "diagnose":  # a finding on one kernel and none on another: it differs
            ran += ["absent" for name, c in cells.items() if c is None and per[name]]
        predicted = next((c["predicted"] for c in cells.values() if c and "predicted" in c),
                         None)
        note = next((c["note"] for c in cells.values() if c and c.get("note")), None)
        topologies = next((c["topologies"] for c in cells.values()
                           if c and c.get("topologies")), None)
        out_rows.append({"key": key, "note": note, "kernels": cells, "predicted": predicted,
                         "topologies": topologies,
                         "differs": len(set(ran)) > 1,
                         "bad": any(c and c["status"] in BAD for c in cells.values())})
    topology = next((r.data.get("topology") for r in runs if r.data and r.data.get("topology")),
                    None)
    return {"what": what, "args": args,
            "kernels": [{"name": r.kernel.name, "image": str(r.kernel.image or ""),
                         "release": r.release, "exit_code": r.exit_code,
                         "seconds": round(r.seconds, 1), "error": r.error,
                         "retried": r.retried} for r in runs],
            "rows": out_rows, "topology": topology,
            "failed": sum(r["bad"] for r in out_rows) + sum(r.error is not None for r in runs)}


def table(report: dict[str, Any]) -> str:
    from lab.util import table as tab

    names = [k["name"] for k in report["kernels"]]
    rows = []
    for r in report["rows"]:
        rows.append([r["key"]] + [(c["status"] if c else "-") for c in
                                  (r["kernels"][n] for n in names)]
                    + ["DIFFERS" if r["differs"] else ""])
    header = ["", *(f"{k['name']} ({k['release']})" for k in report["kernels"]), "across"]
    return tab(rows, header)


def details(report: dict[str, Any]) -> list[str]:
    """Every row that is bad on some kernel or differs across kernels, with evidence."""
    out = []
    for r in report["rows"]:
        if not (r["bad"] or r["differs"]):
            continue
        lines = [f"{r['key']}:" + (f" predicted {r['predicted']}" if r["predicted"] else "")]
        for name, c in r["kernels"].items():
            if c is None:
                lines.append(f"  {name}: not in this run")
                continue
            lines.append(f"  {name}: {c['status']}: {c['summary']}")
            lines += [f"      {e}" for e in c["evidence"]]
        out.append("\n".join(lines))
    return out
