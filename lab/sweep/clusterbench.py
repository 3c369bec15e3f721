"""From a collected cluster to a diagnosis: how long each step takes, in one run.

Builds a cluster the size operators run (two directors under keepalived, N real
servers: ``keepalived_dr(rs=N)``), collects every host with ``scripts/collect``
as an operator would, imports it (identical real servers fold), and diagnoses
the twin. Prints the time of each step on this kernel. Not a test: run it with
``scripts/vm-run -- .venv/bin/python -m lab.sweep.clusterbench --rs 20``.
"""

from __future__ import annotations

import argparse
import json
import platform
import tempfile
import time
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m lab.sweep.clusterbench",
                                 description=__doc__.split("\n")[0])
    ap.add_argument("--rs", type=int, default=20, help="real servers (default 20)")
    ap.add_argument("--name", default="bench", help="the lab's name (default bench)")
    ap.add_argument("--json", metavar="FILE", help="write the timings as JSON")
    args = ap.parse_args(argv)

    # lazy: loaded only when main() runs (+387 modules, ~180 ms; pyroute2)
    from lab.model.collected import import_cluster
    from lab.model.keepalived import keepalived_dr
    from lab.probes import snapshot, vrrp
    from lab.roles import up
    from lab.scenarios.diagnose import diagnose

    steps: dict[str, float] = {}
    with tempfile.TemporaryDirectory(prefix="drlab-collected.") as tmp:
        out = Path(tmp)
        t0 = time.monotonic()
        lab = up(keepalived_dr(rs=args.rs, name=args.name))
        try:
            vrrp.wait_holder(lab)
            steps["build the cluster (not part of the path)"] = time.monotonic() - t0
            t1 = time.monotonic()
            snapshot.collect(lab, out)
            steps[f"collect {len(lab.topology.hosts)} hosts (scripts/collect, one after the "
                  "other)"] = time.monotonic() - t1
        finally:
            lab.teardown()
        t2 = time.monotonic()
        imp = import_cluster([out])
        twin = imp.topology
        steps[f"import ({len(twin.hosts)} hosts in the twin)"] = time.monotonic() - t2
    t3 = time.monotonic()
    d = diagnose(twin)
    steps["diagnose (build the twin, measure, explain)"] = time.monotonic() - t3
    total = sum(v for k, v in steps.items() if "not part" not in k)
    print(f"kernel {platform.release()}: 2 directors, {args.rs} real servers")
    for k, v in steps.items():
        print(f"  {v:7.1f} s  {k}")
    print(f"  {total:7.1f} s  collected cluster -> diagnosis (collect + import + diagnose)")
    print(f"findings: {[f.name for f in d.findings] or 'none'}; notes: {imp.notes}")
    if args.json:
        Path(args.json).write_text(json.dumps({"kernel": platform.release(), "rs": args.rs,
                                               "steps": steps, "total": total,
                                               "findings": [f.to_json() for f in d.findings]},
                                              indent=1))
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
