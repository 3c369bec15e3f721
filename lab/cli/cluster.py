"""Verbs on the operator's own cluster: import, diagnose (validate --topology lives
with validate in :mod:`lab.cli.scenarios`)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from lab.cli import progress, writes
from lab.errors import UsageError
from lab.machine import preflight
from lab.model import load_topology
from lab.model.files import shown


def parse_roles(items: list[str] | None) -> dict[str, str]:
    """``--role NAME=ROLE`` items as a dict."""
    out = {}
    for item in items or []:
        name, sep, role = item.partition("=")
        if not sep or not name or role not in ("director", "realserver"):
            raise UsageError(f"--role {item!r}: expected NAME=director or NAME=realserver")
        out[name] = role
    return out


def cmd_import(args: argparse.Namespace) -> int:
    """Collected hosts (scripts/collect) -> a topology file of the cluster's twin."""
    # lazy: only this verb needs it, not every drlab run (+9 modules, ~9 ms)
    from lab.model.collected import import_cluster
    from lab.model.writer import dump

    imp = import_cluster(args.dir, roles=parse_roles(args.role), anonymize=args.anonymize,
                         fold=not args.no_fold, name=args.name,
                         allow_scripts=args.allow_scripts)
    t = imp.topology
    # anonymized: not even the collected directories' names (hostnames, usually)
    head = "# drlab import --anonymize" if args.anonymize else "# drlab import " + " ".join(
        map(shown, args.dir))
    text = head + "\n" + "".join(f"# {n}\n" for n in imp.notes) + dump(t)
    if args.output == "-":
        sys.stdout.write(text)
    else:
        Path(args.output).write_text(text)
    for n in imp.notes:
        print(f"drlab import: {n}", file=sys.stderr)
    print(f"drlab import: {len(t.hosts)} hosts ({', '.join(h.name for h in t.hosts)}), "
          f"{len(t.services)} services -> {args.output}", file=sys.stderr)
    return 0


def load_cluster(target: str, roles: dict[str, str] | None = None,
                 allow_scripts: bool = False) -> Any:
    """A topology file, or a directory of collected hosts (imported on the fly). What
    their keepalived configs would run is removed (said on stderr, by file:line)
    unless ``allow_scripts``."""
    p = Path(target)
    notes: list[str] = []
    if p.is_dir():
        # lazy: only this verb needs it, not every drlab run (+9 modules, ~10 ms)
        from lab.model.collected import import_cluster

        imp = import_cluster([p], roles=roles or {}, allow_scripts=allow_scripts)
        t = imp.topology
        t.allow_scripts = allow_scripts
        notes = [s.note() for s in imp.stripped]
    else:
        t = load_topology(p, allow_scripts=allow_scripts, notes=notes)
    for n in notes:
        print(f"drlab: {n}", file=sys.stderr)
    return t


def add_allow_scripts(p: argparse.ArgumentParser) -> None:
    """``--allow-scripts``: the opt-in to run a handed-in keepalived.conf's programs."""
    p.add_argument("--allow-scripts", action="store_true",
                   help="run the programs the keepalived configs name (notify, "
                   "vrrp_script, MISC_CHECK ...) as keepalived would, under "
                   "enable_script_security as a user without privileges unless a line names "
                   "its own; by default they are removed, each said by file:line")


def cmd_diagnose(args: argparse.Namespace) -> int:
    """Build the twin, measure every service, name each finding with its scenario."""
    # lazy: only this verb needs it, not every drlab run (+320 modules, ~140 ms; pyroute2)
    from lab.scenarios.diagnose import diagnose, select

    t = load_cluster(args.target, parse_roles(args.role), args.allow_scripts)
    select(t, args.service)
    if args.connections is not None and args.connections < 1:
        raise UsageError("--connections must be at least 1")
    preflight.require_ipvs()
    d = diagnose(t, connections=args.connections, services=args.service, progress=progress)
    data = d.to_json()
    if args.json_file:
        Path(args.json_file).write_text(json.dumps(data, indent=1))
    if args.html:
        # lazy: only this verb needs it, not every drlab run (+5 modules, ~3 ms)
        from lab.report.diagnosis import html

        Path(args.html).write_text(html(d))
        progress(f"HTML report: {args.html}")
    print(json.dumps(data, indent=1) if args.json else d.text())
    return 0 if d.ok else 1


def add_parsers(sub: Any) -> None:
    im = sub.add_parser("import", help="collected hosts (scripts/collect) -> cluster.toml")
    im.add_argument("dir", nargs="+", help="a collected host's directory, or a directory of "
                    "them")
    im.add_argument("-o", "--output", required=True, metavar="FILE",
                    help="the topology file to write (- for stdout)")
    im.add_argument("--role", action="append", metavar="NAME=ROLE",
                    help="override an inferred role (director or realserver; repeatable)")
    im.add_argument("--anonymize", action="store_true",
                    help="map addresses and names into documentation ranges, consistently")
    im.add_argument("--no-fold", action="store_true",
                    help="keep every real server (default: identical ones fold into two)")
    im.add_argument("--name", default="cluster", help="the topology's name")
    add_allow_scripts(im)
    im.set_defaults(func=cmd_import)
    writes(im, "--output")

    dg = sub.add_parser("diagnose", help="build the cluster's twin, run every check, name "
                        "each finding")
    dg.add_argument("target", help="cluster.toml (drlab import), or a collected directory")
    dg.add_argument("--json", action="store_true", help="print the result as JSON")
    dg.add_argument("--json-file", metavar="FILE", help="also write the JSON here")
    dg.add_argument("--html", metavar="FILE", help="write a self-contained HTML page")
    dg.add_argument("--service", action="append", metavar="VIP:PORT",
                    help="only this service (repeatable)")
    dg.add_argument("--connections", type=int, metavar="N",
                    help="connections per service (default: two per real server, at least 4)")
    dg.add_argument("--role", action="append", metavar="NAME=ROLE",
                    help="with a collected directory: override an inferred role")
    add_allow_scripts(dg)
    dg.set_defaults(func=cmd_diagnose)
    writes(dg, "--json-file", "--html")
