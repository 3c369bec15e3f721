"""Verbs on the catalogue: scenarios, scenario run, validate."""

from __future__ import annotations

import argparse
import datetime
import json
import platform
from pathlib import Path
from typing import Any

from lab.cli import progress, writes
from lab.cli.cluster import add_allow_scripts, load_cluster
from lab.errors import UsageError
from lab.machine import preflight
from lab.util import parse_shard, sharded


def cmd_scenarios(args: argparse.Namespace) -> int:
    """List the scenario catalogue (``--markdown`` for the table in docs/scenarios.md)."""
    # lazy: only this verb needs it, not every drlab run (+317 modules, ~130 ms; pyroute2)
    from lab.scenarios import REGISTRY, catalogue_markdown, to_json

    if args.record:
        return _record(Path(args.record))
    if args.markdown:
        print(catalogue_markdown())
        return 0
    if args.json:
        # lazy: only this verb needs it, not every drlab run (+317 modules, ~130 ms; pyroute2)
        from lab.scenarios import observed

        seen = observed.load()
        print(json.dumps([to_json(s, seen) for s in REGISTRY.values()], indent=1))
        return 0
    width = max(len(n) for n in REGISTRY)
    for s in REGISTRY.values():
        print(f"{s.name:<{width}}  {'IPVS ' if s.needs_ipvs else 'ARP  '} "
              f"{'check' if s.stimulus is None else 'run  '}  {s.symptom}")
    print("\ncheck: `drlab up --scenario NAME --broken` then `drlab check` shows the symptom;"
          "\nrun:   it needs its own stimulus: `drlab scenario run NAME` (which one: --json)")
    return 0


def _record(report_file: Path) -> int:
    """Fold a kernel matrix's scenario report into the catalogue's record."""
    # lazy: only this verb needs it, not every drlab run (+317 modules, ~170 ms; pyroute2)
    from lab.scenarios import BY_HAND, REGISTRY, observed

    try:
        report = json.loads(report_file.read_text())
    except (OSError, ValueError) as e:
        raise UsageError(f"--record {report_file}: {e}") from None
    new = observed.from_report(report, datetime.date.today().isoformat())
    known = [*REGISTRY, *BY_HAND]   # (a by-hand scenario's runs are recorded too)
    unknown = sorted(set(new) - set(known))
    record = observed.merged(observed.load(), new, known)
    observed.RECORD.write_text(json.dumps(record, indent=1) + "\n")
    kernels = sorted({observed.label(e) for es in new.values() for e in es})
    print(f"recorded {sum(map(len, new.values()))} observations of {len(new)} scenarios on "
          f"{', '.join(kernels) or 'no kernel'} in {observed.RECORD}"
          + (f"; not in the catalogue (dropped): {', '.join(unknown)}" if unknown else ""))
    return 0


def cmd_scenario_run(args: argparse.Namespace) -> int:
    """Run scenarios broken and fixed side by side; exit 1 unless each reproduced.

    ``all`` runs the whole catalogue; scenarios this machine cannot run (no
    IPVS, or VM-only) are then reported as not run instead of failing.
    """
    # lazy: only this verb needs it, not every drlab run (+318 modules, ~180 ms; pyroute2)
    from lab.scenarios import REGISTRY, get
    from lab.sweep.scenario_runs import run_catalogue

    if args.jobs < 1:
        raise UsageError(f"--jobs {args.jobs}: give 1 or more")
    everything = args.name == ["all"]
    picked = sharded([get(n) for n in (list(REGISTRY) if everything else args.name)],
                     parse_shard(args.shard) if args.shard else None)
    preflight.require_netns()
    have_ipvs = (preflight.ipvs_available() if any(s.needs_ipvs for _, s in picked)
                 else False)
    results = run_catalogue(picked, everything, have_ipvs, args.jobs, progress)
    bad = sum(1 for r in results if (r["ran"] and not r["reproduced"]) or r.get("error"))
    if args.json:
        Path(args.json).write_text(json.dumps({"kernel": platform.release(),
                                               "scenarios": results}, indent=1))
    return 1 if bad else 0


def cmd_validate(args: argparse.Namespace) -> int:
    """Apply proposed sysctls to the lab's hosts of a role; report what breaks or gets fixed."""
    # lazy: only this verb needs it, not every drlab run (+318 modules, ~150 ms; pyroute2)
    from lab.scenarios import runnable
    from lab.scenarios.validate import parse_change, validate

    if args.topology:
        # lazy: only this verb needs it, not every drlab run (+318 modules, ~150 ms; pyroute2)
        from lab.scenarios.validate import validate_twin

        if args.scenario:
            raise UsageError("--scenario and --topology: the catalogue or your cluster, "
                             "not both")
        t = load_cluster(args.topology, allow_scripts=args.allow_scripts)
        change = parse_change(args.sysctl, args.host, t)
        preflight.require_ipvs()
        tv = validate_twin(t, change, progress)
        print(json.dumps(tv.to_json(), indent=1) if args.json else tv.text())
        return 1 if tv.breaks else 0
    if args.json:
        raise UsageError("--json goes with --topology (the catalogue's validation prints text)")
    change = parse_change(args.sysctl, args.host)
    preflight.require_netns()
    have_ipvs = preflight.ipvs_available()
    result = validate(change, args.scenario, lambda s: runnable(s, have_ipvs), progress)
    print(result.text())
    return 1 if result.breaks else 0


def add_parsers(sub: Any) -> None:
    sc = sub.add_parser("scenarios", help="list the catalogue of DR failures")
    fmt = sc.add_mutually_exclusive_group()
    fmt.add_argument("--markdown", action="store_true", help="as a Markdown table")
    fmt.add_argument("--json", action="store_true", help="as JSON (with sources and the "
                     "kernels each scenario was observed on)")
    fmt.add_argument("--record", metavar="REPORT", help="fold the --json report of `drlab "
                     "kernels run ... scenario all` into the catalogue's record of the "
                     "kernels each scenario reproduced on")
    sc.set_defaults(func=cmd_scenarios)

    sr = sub.add_parser("scenario", help="run a scenario: `drlab scenario run NAME`")
    srs = sr.add_subparsers(dest="action", required=True, metavar="ACTION")
    srr = srs.add_parser("run", help="broken and fixed side by side, with a verdict")
    srr.add_argument("name", nargs="+", help="scenario names, or all")
    srr.add_argument("--json", metavar="FILE", help="write the verdicts as JSON")
    srr.add_argument("--shard", metavar="I/N", help="only every Nth scenario, from the Ith")
    srr.add_argument("--jobs", type=int, default=1, metavar="N",
                     help="N scenarios side by side, in N worker processes (default 1); "
                          "those that change the root namespace run first, alone")
    srr.set_defaults(func=cmd_scenario_run)
    writes(srr, "--json")

    va = sub.add_parser("validate", help="what a proposed sysctl change breaks or fixes")
    va.add_argument("--sysctl", action="append", required=True, metavar="KEY=VALUE",
                    help="a proposed setting (repeatable)")
    va.add_argument("--host", default="rs", help="role whose hosts get it: rs (default), "
                    "director, client, router, all; with --topology also a host's name")
    va.add_argument("--topology", metavar="FILE|DIR",
                    help="measure on the twin of your cluster (cluster.toml from drlab "
                    "import, or a collected directory) instead of the catalogue")
    va.add_argument("--json", action="store_true", help="with --topology: print JSON")
    add_allow_scripts(va)
    va.add_argument("--scenario", action="append", metavar="NAME",
                    help="only these scenarios (repeatable; default: all)")
    va.set_defaults(func=cmd_validate)


