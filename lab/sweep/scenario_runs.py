"""``drlab scenario run``: scenarios broken and fixed, one after the other or side by side.

With ``jobs`` > 1 the scenarios run in that many worker processes (each
``drlab scenario run NAMES --shard I/N``, labs have their own namespaces), after
the ones that change the machine around the lab (the root namespace: VM-only
scenarios, or a setting entered around the build), which run first and alone.
Half of a scenario's time is waiting (timeouts that prove a hang, failovers,
expiring entries), so side by side they take about half as long.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from lab.machine import preflight
from lab.scenarios import Scenario, Verdict, run, runnable
from lab.util import Progress, Timeout, sharded


def run_catalogue(chosen: list[tuple[int, Scenario]], everything: bool, have_ipvs: bool,
                  jobs: int = 1, progress: Progress | None = None) -> list[dict[str, Any]]:
    """Run each ``(index, scenario)``; one JSON verdict each (``index`` kept), in
    index order. With ``everything``, a scenario this machine cannot run is
    reported as not run; otherwise it is run (and fails with the reason)."""
    progress = progress or Progress()
    results: list[dict[str, Any]] = []
    alone: list[tuple[int, Scenario]] = []
    together: list[tuple[int, Scenario]] = []
    for j, s in chosen:
        why = runnable(s, have_ipvs)
        if why and everything:
            progress.echo(f"{s.name}: not run here ({why})")
            results.append({"name": s.name, "ran": False, "why": why, "index": j})
            continue
        if s.needs_ipvs:
            preflight.require_ipvs()
        (alone if jobs == 1 or s.needs_vm or s.around else together).append((j, s))
    progress.start("scenario run" + (" (alone)" if together else ""), len(alone))
    try:
        for j, s in alone:
            results.append({**_one(s, progress), "index": j})
            progress.step(s.name)
    finally:
        progress.finish()
    if together:  # each worker reports its own done/total and estimate
        t0 = time.monotonic()
        results += _side_by_side(together, jobs, progress)
        progress(f"scenario run: {len(together)} side by side in {jobs} workers done in "
                 f"{time.monotonic() - t0:.0f}s")
    return sorted(results, key=lambda r: r["index"])


def _one(s: Scenario, progress: Progress) -> dict[str, Any]:
    try:
        progress(f"{s.name}: running the broken variant ...")
        broken = run(s, "broken")
        progress(f"{s.name}: running the fixed variant ...")
        fixed = run(s, "fixed")
    except Timeout as e:  # a wait ran out (its lab is torn down): no verdict, the rest run
        why = f"could not be measured: {e}"
        progress.echo(f"{s.name}: ERROR: {why}")
        return {"name": s.name, "ran": False, "why": why, "reproduced": False, "error": True,
                "report": f"{s.name}: ERROR: {why}"}
    v = Verdict(s, broken, fixed)
    progress.echo(v.report())
    return {**v.to_json(), "report": v.report()}


def _side_by_side(todo: list[tuple[int, Scenario]], jobs: int,
                  progress: Progress) -> list[dict[str, Any]]:
    """``jobs`` workers, each a ``drlab scenario run`` of every ``jobs``-th scenario;
    their reports are printed as each worker ends, their progress lines pass through."""
    index = {s.name: j for j, s in todo}
    names = [s.name for _, s in todo]
    workers = []
    with tempfile.TemporaryDirectory(prefix="drlab-scenarios.") as tmp:
        for i in range(1, min(jobs, len(names)) + 1):
            part = [n for _, n in sharded(names, (i, jobs))]
            out = Path(tmp) / f"{i}.json"
            cmd = [sys.executable, "-m", "lab", "scenario", "run", *part, "--json", str(out)]
            progress(f"scenario run: worker {i}/{jobs}: {', '.join(part)}")
            env = {**os.environ, "DRLAB_PROGRESS_LIVE": "0"}  # one live line: ours
            workers.append((subprocess.Popen(cmd, stdout=subprocess.DEVNULL, env=env), out,
                            part))
        results: list[dict[str, Any]] = []
        for p, out, part in workers:
            p.wait()
            try:
                got = json.loads(out.read_text())["scenarios"]
            except (OSError, ValueError, KeyError):
                got = [{"name": n, "ran": False, "why": f"its worker failed (exit "
                        f"{p.returncode})", "reproduced": False, "error": True} for n in part]
            for r in got:
                progress.echo(r.get("report") or f"{r['name']}: {r.get('why')}")
                results.append({**r, "index": index[r["name"]]})
    return results
