"""``drlab gate``: a config change (sysctl.d, keepalived.conf, ipvsadm rules) measured on
the cluster's twin before it ships; the verdict is the exit code (0 pass or fixed,
1 fail, 2 bad input). The logic is :mod:`lab.scenarios.gate`; the files are read by
:mod:`lab.model.gate`; the reports are :mod:`lab.report.gate`."""

from __future__ import annotations

import argparse
import json
import os
import platform
from collections.abc import Callable
from pathlib import Path
from typing import Any

from lab.cli import progress, writes
from lab.cli.cluster import add_allow_scripts, load_cluster
from lab.errors import LabError, UsageError
from lab.machine import preflight
from lab.model.files import shown
from lab.model.gate import GateFile, apply_changes, parse_apply, read_gate_file, read_manifest

#: ``--kernel twin``: the twin's own kernel series (as drlab import recorded it)
TWIN = "twin"

#: --OPTION -> the report it writes
REPORTS = ("junit", "markdown", "json", "html")


def _command(args: argparse.Namespace) -> list[str]:
    """The command that reproduces this gate locally (reports left out)."""
    cmd = ["drlab", "gate"]
    if args.manifest:
        cmd += ["--manifest", args.manifest]
    if args.topology:
        cmd += ["--topology", args.topology]
    for a in args.apply or []:
        cmd += ["--apply", a]
    if args.reload_budget:
        cmd += ["--reload-budget", str(args.reload_budget)]
    if args.allow_scripts:
        cmd.append("--allow-scripts")
    return cmd


def _child_args(args: argparse.Namespace, names: list[str]) -> list[str]:
    """The gate's arguments for each kernel's run (``--kernel``): the same change, its
    files by absolute path; reports are the parent's. A kernel's VM reads through to
    this repository only: a file outside it is refused before a VM boots."""
    # lazy: only gate --kernel needs it (the kernel matrix's machinery)
    from lab.sweep.kmatrix import REPO

    vm = any(n != "host" for n in names)

    def path(p: str, what: str) -> str:
        a = os.path.abspath(p)
        if vm and not Path(a).is_relative_to(REPO):
            raise UsageError(shown(f"{what} {p}: outside {REPO}, which a kernel's VM "
                                   "cannot read: put it inside the repository"))
        return a

    out = []
    if args.manifest:
        out += ["--manifest", path(args.manifest, "--manifest")]
    if args.topology:
        out += ["--topology", path(args.topology, "--topology")]
    for item in args.apply or []:
        host, p = parse_apply(item)
        out += ["--apply", f"{host}={path(str(p), f'--apply {host}=')}"]
    out += ["--reload-budget", str(args.reload_budget), "--running-kernel"]
    if args.no_reload:
        out.append("--no-reload")
    if args.allow_scripts:
        out.append("--allow-scripts")
    return out


def _check_outputs(args: argparse.Namespace) -> None:
    """Before anything runs: each report's directory is there (so nothing is built for
    a report that cannot be written)."""
    for name in REPORTS:
        value = getattr(args, name)
        if value and not Path(value).parent.is_dir():
            raise UsageError(shown(f"--{name} {value}: no such directory "
                                   f"{Path(value).parent}"))


def cmd_gate(args: argparse.Namespace) -> int:
    # lazy: only this verb needs it, not every drlab run (+320 modules; pyroute2)
    from lab.report.gate import html, junit, markdown
    from lab.scenarios.gate import gate

    if args.reload_budget < 0:
        raise UsageError("--reload-budget must be 0 or more")
    if args.kernel and len(set(args.kernel)) != len(args.kernel):
        raise UsageError("--kernel: a kernel is named twice")
    if not args.manifest and not args.apply:
        raise UsageError("nothing to gate: --apply HOST=FILE or --manifest drlab-gate.toml")
    _check_outputs(args)
    applies: list[tuple[str, GateFile]] = []
    target = args.topology
    if args.manifest:
        m = read_manifest(Path(args.manifest))
        applies += m.applies
        target = target or m.topology
    if not target:
        raise UsageError("--topology cluster.toml|COLLECTED_DIR (or topology = in the "
                         "manifest)")
    for item in args.apply or []:
        host, path = parse_apply(item)
        applies.append((host, read_gate_file(path)))
    t = load_cluster(target, allow_scripts=args.allow_scripts)
    applied = apply_changes(t, applies, allow_scripts=args.allow_scripts)
    if not args.kernel and not args.running_kernel:
        args.kernel = _default_kernel(t.kernel)
    elif args.kernel and TWIN in args.kernel:
        line = _default_kernel(t.kernel, twin_named=True)
        args.kernel = [k for n in args.kernel for k in (line if n == TWIN else [n])]
        if len(set(args.kernel)) != len(args.kernel):
            raise UsageError(f"--kernel: a kernel is named twice (twin is {line[0]})")
    if args.kernel:
        return _on_kernels(args)
    preflight.require_ipvs()
    r = gate(t, applied, _command(args), reload_budget=args.reload_budget,
             live_reload=not args.no_reload, progress=progress)
    render: dict[str, Callable[[], str]] = {
        "junit": lambda: junit(r), "markdown": lambda: markdown(r),
        "json": lambda: json.dumps(r.to_json(), indent=1) + "\n", "html": lambda: html(r)}
    for name in REPORTS:
        if getattr(args, name):
            Path(getattr(args, name)).write_text(render[name]())
            progress(f"gate: {name} report: {getattr(args, name)}")
    print(r.text())
    return r.verdict.exit_code


def _default_kernel(twin: str, twin_named: bool = False) -> list[str]:
    """Without --kernel: the running kernel when it has IPVS, else the twin's own
    series in its VM (:func:`lab.sweep.kgate.default_kernel`); ``twin_named``
    (``--kernel twin``): the twin's series wherever this runs."""
    # lazy: only a gate without --kernel, or with --kernel twin, needs them
    from lab.sweep import kernels
    from lab.sweep.kgate import default_kernel, twin_series

    has = False if twin_named else preflight.ipvs_available()
    builds: list[kernels.Build] = []
    if not has and kernels.debian_line(twin):
        try:  # the exact build when the last kernel index lists it; else its line
            builds = kernels.available(refresh=False)
        except LabError:
            builds = []
    d = twin_series(twin, builds) if twin_named else \
        default_kernel(has, platform.release(), twin, builds)
    if d.because:
        progress(f"gate: {d.because}")
    return d.kernels


def _on_kernels(args: argparse.Namespace) -> int:
    """``--kernel K ...``: the gate in each kernel's VM (``host``: here), as ``drlab
    kernels run`` runs a verb; one report of each kind, a section per kernel."""
    # lazy: only gate --kernel needs them (the kernel matrix, its reports)
    from lab.report.gate import html_kernels, junit_kernels, markdown_kernels
    from lab.sweep.kgate import gate_on_kernels

    child = _child_args(args, args.kernel)
    g = gate_on_kernels(args.kernel, child, progress=progress)
    render: dict[str, Callable[[], str]] = {
        "junit": lambda: junit_kernels(g), "markdown": lambda: markdown_kernels(g),
        "json": lambda: json.dumps(g.to_json(), indent=1) + "\n",
        "html": lambda: html_kernels(g)}
    for name in REPORTS:
        if getattr(args, name):
            Path(getattr(args, name)).write_text(render[name]())
            progress(f"gate: {name} report: {getattr(args, name)}")
    print(g.text())
    return g.exit_code


def add_parsers(sub: Any) -> None:
    g = sub.add_parser("gate", help="a config change (sysctl.d, keepalived.conf, ipvsadm "
                       "rules) measured on your cluster's twin: exit 1 if it breaks DR",
                       description="Build the twin of your cluster as it is and as it "
                       "would be after the change, diagnose both, run connections through "
                       "every service, reload a changed keepalived.conf live under load. "
                       "Exit 0: passes (or fixes a finding), 1: fails, 2: bad input.")
    g.add_argument("--topology", metavar="FILE|DIR",
                   help="cluster.toml (drlab import) or a collected directory")
    g.add_argument("--apply", action="append", metavar="HOST=FILE",
                   help="deploy FILE (sysctl.d, keepalived.conf or ipvsadm-save rules, "
                   "recognised by content) on HOST: a host, a role (rs, director) or a "
                   "glob over the hosts' names (repeatable)")
    g.add_argument("--manifest", metavar="TOML",
                   help="drlab-gate.toml: [apply] globs of hosts -> files (relative to it), "
                   "and optionally topology = ...")
    g.add_argument("--reload-budget", type=int, default=0, metavar="N",
                   help="connections a keepalived reload may drop (default 0)")
    g.add_argument("--no-reload", action="store_true",
                   help="skip the live keepalived reload under load")
    g.add_argument("--kernel", action="append", metavar="K",
                   help="run the gate on kernel K, in its VM (host: the running one), as "
                   "`drlab kernels run --kernel` does; repeatable; the verdict is the "
                   "worst of them; twin: the twin's own kernel series, as drlab import "
                   "recorded it (default: the running kernel if it has IPVS, else twin)")
    # a kernel's run of the gate (--kernel): on the kernel it runs on, no default
    g.add_argument("--running-kernel", action="store_true", help=argparse.SUPPRESS)
    g.add_argument("--junit", metavar="FILE", help="write JUnit XML (one testcase per "
                   "service, finding and reload)")
    g.add_argument("--markdown", metavar="FILE", help="write a Markdown summary (e.g. for "
                   "$GITHUB_STEP_SUMMARY)")
    g.add_argument("--json", metavar="FILE", help="write the result as JSON")
    g.add_argument("--html", metavar="FILE", help="write a self-contained HTML page")
    add_allow_scripts(g)
    g.set_defaults(func=cmd_gate)
    writes(g, *(f"--{r}" for r in REPORTS))

