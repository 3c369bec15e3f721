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
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from lab.errors import UsageError
from lab.sweep import kernels
from lab.sweep.kernels import Kernel
from lab.util import Progress

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
    #: The VM died under the command and was booted again.
    retried: bool = False


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
    raise UsageError(f"kernels run: {what!r} is not one of matrix, scenario, suite, diagnose")


def kernel_shards(n_kernels: int, what: What,
                  shard: tuple[int, int]) -> list[tuple[int, int] | None | bool]:
    """What each kernel runs in shard ``(I, N)`` of the kernel-and-cell pairs.

    Cell ``j`` of kernel ``k`` belongs to shard ``(j + k) mod N + 1``, so kernel
    ``k`` runs its own shard ``((I - 1 - k) mod N) + 1`` of the cells, and the N
    shards cover every pair once, spread over the kernels. ``diagnose`` has no
    cells to split: a kernel runs whole (True) in shard ``k mod N + 1``, else not
    at all (False)."""
    i, n = shard
    if what == "diagnose":
        return [k % n == i - 1 for k in range(n_kernels)]
    return [((i - 1 - k) % n + 1, n) for k in range(n_kernels)]


def run_kernels(names: list[str], what: What, args: list[str], logs: Path | None,
                offline: bool = False,
                progress: Progress | None = None,
                jobs: int = 1, shard: tuple[int, int] | None = None) -> dict[str, Any]:
    """Resolve each kernel name, run ``what`` on each (``jobs`` kernels at once, each
    in its own VM; logs in ``logs``) and merge the runs into one report
    (:func:`merge`), in the order the kernels were named. With ``shard`` (I, N)
    only that shard of the kernel-and-cell pairs runs (:func:`kernel_shards`);
    :func:`merge_reports` joins the N reports."""
    from concurrent.futures import ThreadPoolExecutor

    progress = progress or Progress()
    if len(set(names)) != len(names):
        raise UsageError("kernels run: a kernel is named twice")
    if jobs < 1:
        raise UsageError(f"kernels run: --jobs {jobs}: give 1 or more")
    if args[:1] == ["--"]:
        args = args[1:]
    child_command(what, args, Path("."))  # bad arguments: a usage error before any VM
    resolved = [kernels.resolve(n, refresh=not offline) for n in names]
    # made only now: bad input leaves nothing behind
    logs = logs or Path(tempfile.mkdtemp(prefix="drlab-kernels."))
    parts: list[tuple[int, int] | None | bool] = (
        kernel_shards(len(resolved), what, shard) if shard else [None] * len(resolved))
    todo = [(k, p) for k, p in zip(resolved, parts, strict=True) if p is not False]
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
    report = merge(what, args, runs)
    report["kernel_names"] = [k.name for k in resolved]
    report["logs"] = str(logs)
    report["shard"] = list(shard) if shard else None
    return report


def safe_name(name: str) -> str:
    """A kernel's name as a file name."""
    import re

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
    while (run.data is None and run.exit_code == 125 and not kernel.is_host
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
        rows[c["label"]] = {"status": status, "summary": summary, "order": c.get("index"),
                            "evidence": c.get("evidence") or [],
                            "predicted": " ".join(f"{k}={fmt(v)}"
                                                  for k, v in c["predicted"].items())}
    return rows


def _scenario_rows(data: dict[str, Any]) -> dict[str, dict[str, Any]]:
    rows = {}
    for s in data["scenarios"]:
        if not s["ran"]:
            rows[s["name"]] = {"status": "error" if s.get("error") else "not run",
                               "summary": s["why"], "evidence": [], "order": s.get("index")}
            continue
        b, f = s["broken"], s["fixed"]
        summary = (f"broken {'SYMPTOM' if b['symptom'] else 'healthy'}, "
                   f"fixed {'SYMPTOM' if f['symptom'] else 'healthy'}")
        rows[s["name"]] = {"status": "ok" if s["reproduced"] else "not reproduced",
                           "summary": summary, "note": s.get("symptom"),
                           "order": s.get("index"),
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
    topology = next((r.data.get("topology") for r in runs if r.data and r.data.get("topology")),
                    None)
    kernels_ = [{"name": r.kernel.name, "image": str(r.kernel.image or ""),
                 "release": r.release, "exit_code": r.exit_code,
                 "seconds": round(r.seconds, 1), "error": r.error,
                 "retried": r.retried} for r in runs]
    return _report(what, args, kernels_, per, topology)


def _report(what: str, args: list[str], kernels_: list[dict[str, Any]],
            per: dict[str, dict[str, dict[str, Any]]], topology: Any,
            missing: list[str] | None = None) -> dict[str, Any]:
    """The report from each kernel's rows (``per[kernel][key]`` = cell)."""
    keys: list[str] = []
    for rows in per.values():
        keys += [k for k in rows if k not in keys]
    orders = {k: min((rows[k]["order"] for rows in per.values()
                      if k in rows and rows[k].get("order") is not None), default=None)
              for k in keys}
    if keys and all(o is not None for o in orders.values()):
        keys.sort(key=lambda k: orders[k] or 0)  # a shard's rows back in the unsharded order
    out_rows: list[dict[str, Any]] = []
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
    return {"what": what, "args": args, "kernels": kernels_,
            "rows": out_rows, "topology": topology, "missing": missing or [],
            "failed": sum(r["bad"] for r in out_rows)
            + sum(k["error"] is not None for k in kernels_) + len(missing or [])}


def merge_reports(reports: list[dict[str, Any]],
                  names: list[str] | None = None) -> dict[str, Any]:
    """Join the JSON reports of ``kernels run --shard I/N`` (I = 1..N) into the report
    one unsharded run gives; ``missing`` names each shard not given and each cell no
    shard has (``names``: the files, for messages). Reports of different runs (what,
    arguments, kernels, N) are a usage error."""
    names = names or [f"report {n + 1}" for n in range(len(reports))]
    if not reports:
        raise UsageError("kernels merge: give the shards' --json reports")
    first = reports[0]
    for r, name in zip(reports, names, strict=True):
        if not isinstance(r, dict) or "rows" not in r or "kernels" not in r:
            raise UsageError(f"kernels merge: {name} is not a `drlab kernels run` report")
        for field in ("what", "args", "kernel_names"):
            if r.get(field) != first.get(field):
                raise UsageError(f"kernels merge: {name} is another run ({field} "
                                 f"{r.get(field)!r}, not {first.get(field)!r})")
        if (r.get("shard") or [1, 1])[1] != (first.get("shard") or [1, 1])[1]:
            raise UsageError(f"kernels merge: {name} is shard {r.get('shard')}, of another N")
    n = (first.get("shard") or [1, 1])[1]
    given = [(r.get("shard") or [1, 1])[0] for r in reports]
    dup = sorted({i for i in given if given.count(i) > 1})
    if dup:
        raise UsageError(f"kernels merge: shard {dup[0]}/{n} given twice")
    missing = [f"shard {i}/{n} (not given)" for i in range(1, n + 1) if i not in given]
    order = first.get("kernel_names") or [k["name"] for k in first["kernels"]]
    kinfo: dict[str, dict[str, Any]] = {}
    per: dict[str, dict[str, dict[str, Any]]] = {}
    for r in reports:
        for k in r["kernels"]:
            had = kinfo.get(k["name"])
            if had is None:
                kinfo[k["name"]] = dict(k)
                per[k["name"]] = {}
                continue
            had["seconds"] = round(had["seconds"] + k["seconds"], 1)
            had["exit_code"] = max(had["exit_code"], k["exit_code"])
            had["error"] = "; ".join(e for e in (had["error"], k["error"]) if e) or None
            had["retried"] = had.get("retried") or k.get("retried")
            had["release"] = had["release"] or k["release"]
        for row in r["rows"]:
            for kname, cell in row["kernels"].items():
                if cell is not None:
                    per[kname][row["key"]] = cell
    kernels_ = [kinfo[k] for k in order if k in kinfo]
    per = {k: per[k] for k in order if k in per}
    if first.get("what") != "diagnose":  # every kernel has every cell in one run
        keys = {key for rows in per.values() for key in rows}
        missing += [f"{key} on {k}" for k in per for key in sorted(keys - set(per[k]))]
    topology = next((r.get("topology") for r in reports if r.get("topology")), None)
    out = _report(first["what"], first["args"], kernels_, per, topology, missing)
    out["kernel_names"] = order
    out["shard"] = None
    out["merged"] = len(reports)
    return out


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
