"""Sweeps: matrix, kernels run|merge|fetch|list."""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path
from typing import Any

from lab.cli import progress, writes
from lab.errors import UsageError
from lab.machine import preflight
from lab.sweep import kernels, kmatrix, matrix
from lab.sweep.kernels import FLAVOURS, SUITES
from lab.sweep.kmatrix import VERBS, matrix_report
from lab.sweep.matrix import AXES, VS_AXES
from lab.util import parse_shard, sharded


def cmd_matrix(args: argparse.Namespace) -> int:
    """Sweep real-server settings, measure every cell, compare with the prediction."""
    spec: dict[str, Any] = {}
    if args.spec:
        spec.update(matrix.load_spec(args.spec))
    for axis in matrix.ALL_AXES:
        value = getattr(args, axis)
        if value is not None:
            spec.update(matrix.parse_axes({axis: value}))
    if not spec:
        spec = matrix.parse_axes({"arp_ignore": "0,1,2,3,8", "arp_announce": "0,1,2",
                                  "vip_place": "lo32,lo-wide,lan,absent"})
    baseline = matrix.load_result(args.baseline) if args.baseline else None
    configs = matrix.with_extra(matrix.cells(spec), matrix.parse_extra(args.sysctl or []))
    picked = sharded(configs, parse_shard(args.shard) if args.shard else None)
    configs = [c for _, c in picked]
    preflight.require_netns()
    progress(f"matrix: {len(configs)} cells, {args.jobs} labs side by side ...")
    t0 = time.monotonic()
    result = matrix.run(configs, args.jobs, progress)
    wall = time.monotonic() - t0
    data = matrix.to_json(result, wall, [j for j, _ in picked])
    print(matrix.table(result))
    bad = data["mismatches"]
    print(f"{len(result)} cells in {wall:.1f}s on kernel {data['kernel']}: "
          f"{len(result) - bad - data['not_run']} as predicted, {bad} mismatched"
          + (f", {data['not_run']} not run (no IPVS here)" if data["not_run"] else ""))
    for c in result:
        if not c.match and not c.skipped:
            print(f"\n{c.label}: predicted {c.predicted}, observed {c.observed}"
                  + (f", error {c.error}" if c.error else "") + "\n  " + "\n  ".join(c.evidence))
    if args.json:
        Path(args.json).write_text(json.dumps(data, indent=1))
    if args.save:
        Path(args.save).write_text(json.dumps(data, indent=1))
    if args.markdown:
        Path(args.markdown).write_text(matrix.markdown(result) + "\n")
    if args.html:
        # lazy: only this verb needs it, not every drlab run (+5 modules, ~3 ms)
        from lab.report.html import matrix_html

        Path(args.html).write_text(matrix_html(matrix_report(data, _matrix_args(args))))
    changed: list[str] = []
    if baseline is not None:
        changed = matrix.diff(baseline, data)
        print(f"\nbaseline {args.baseline}: {len(changed)} cells changed")
        for line in changed:
            print("  " + line)
    return 1 if bad or changed else 0


def cmd_kernels_run(args: argparse.Namespace) -> int:
    """Run a matrix, scenarios or the suite on several kernels; one report."""

    shard = parse_shard(args.shard) if args.shard else None
    report = kmatrix.run_kernels(args.kernel or ["host", "bookworm"], args.what,
                                 list(args.args), Path(args.logs) if args.logs else None,
                                 args.offline, progress, args.jobs, shard, args.flavour)
    return _show(report, args, f"; logs in {report.logs}"
                 + (f" (shard {shard[0]}/{shard[1]}: `drlab kernels merge` joins the shards)"
                    if shard else ""))


def cmd_kernels_merge(args: argparse.Namespace) -> int:
    """Join the reports of sharded kernel runs into the report of one run."""
    reports = []
    for f in args.reports:
        try:
            reports.append(json.loads(Path(f).read_text()))
        except (OSError, ValueError) as e:
            raise UsageError(f"kernels merge: {f}: {e}") from None
    report = kmatrix.merge_reports(reports, list(args.reports))
    return _show(report, args, f"; {len(reports)} shard report(s) merged")


def _show(report: kmatrix.Report, args: argparse.Namespace, tail: str) -> int:
    """Print a kernel report (table, the bad rows' evidence, a summary), write --json and
    --html; exit 1 if a row fails on some kernel, a kernel gave no result, or a shard or
    a cell is missing."""
    print(kmatrix.table(report))
    for block in kmatrix.details(report):
        print("\n" + block)
    for m in report.missing:
        print(f"MISSING: {m}")
    print("\n" + "; ".join(f"{k.name} {k.release}: {k.seconds:.0f}s"
                           for k in report.kernels)
          + f"; {report.failed} failing rows or runs" + tail)
    if args.json:
        Path(args.json).write_text(json.dumps(report.to_json(), indent=1))
    if args.html:
        # lazy: only this verb needs it, not every drlab run (+5 modules, ~3 ms)
        from lab.report import html as htmlreport

        Path(args.html).write_text(htmlreport.kernels_html(report))
        print(f"HTML report: {args.html}")
    return 1 if report.failed else 0


def cmd_kernels_fetch(args: argparse.Namespace) -> int:
    """Fetch and unpack Debian kernels into the cache (or show the cached one)."""
    for name in args.suite:
        k = kernels.resolve(name, refresh=not args.offline)
        print(f"{k.name}: {k.release} {k.image}")
    return 0


def cmd_kernels_list(args: argparse.Namespace) -> int:
    """The cache's kernels; with --available every build of the reachable suites."""
    if args.available:
        return _list_available(args)
    found = kernels.cached()
    print(f"kernel cache {kernels.cache_dir()}: {len(found)} unpacked")
    for suite, d in found:
        print(f"  {suite:<20} {d.name}")
    return 0


def _list_available(args: argparse.Namespace) -> int:
    builds = [b for b in kernels.available(refresh=not args.offline)
              if args.flavour in (None, b.flavour)]
    if not args.offline:
        kernels.probe_all(builds)  # IPVS from each package's file list (~100 KB a build, once)
    rows = [(b, kernels.is_cached(b), kernels.has_ipvs(b)) for b in builds]
    if args.json:
        print(json.dumps([{"release": b.release, "flavour": b.flavour, "suite": b.suite,
                           "package": b.package, "version": b.version, "size": b.size,
                           "layout": b.layout.value, "fetchable": b.fetchable,
                           "unavailable": b.unavailable, "cached": c, "ipvs": ipvs}
                          for b, c, ipvs in rows], indent=1))
        return 0
    print(f"{'uname -r':<28} {'suite':<18} {'version':<22} {'MB':>5}  cached  ipvs")
    for b, c, ipvs in rows:
        print(f"{b.release:<28} {b.suite:<18} {b.version:<22} {b.size / 1e6:>5.0f}  "
              f"{'yes' if c else 'no':<6}  "
              f"{'?' if ipvs is None else 'yes' if ipvs else 'NO':<4}"
              + (f"  unavailable: {b.unavailable}" if b.unavailable else ""))
    ok = sum(b.fetchable for b in builds)
    print(f"{len(builds)} builds, {ok} fetchable, {sum(c for _, c, _ in rows)} cached "
          "(ipvs: read from the unpacked modules, else from the package's file list; "
          "? not known)")
    return 0


def cmd_kernels_bisect(args: argparse.Namespace) -> int:
    """Which Debian build changed the verdict of a kernels-run verb."""
    # lazy: only this verb needs it, not every drlab run (+4 modules, ~4 ms)
    from lab.sweep import bisect

    rest = list(args.verb)
    if rest[:1] == ["--"]:
        rest = rest[1:]
    if not rest:
        raise UsageError("kernels bisect: give the verb after --: scenario NAME..., "
                         "matrix ..., suite ..., diagnose DIR, run CMD...")
    logs = Path(args.logs) if args.logs else Path(tempfile.mkdtemp(prefix="drlab-bisect."))
    r = bisect.bisect_kernels(args.good, args.bad, args.flavour, rest[0], rest[1:],
                              args.offline, logs, progress)
    b = r.bisection
    print(f"last good: {b.last_good}\nfirst bad: {b.first_bad}\nboots: {b.boots} "
          f"({len(r.builds)} builds, {r.seconds:.0f}s; logs in {logs})"
          + (f"\nnot judged between them: {', '.join(b.skipped_between)}"
             if b.skipped_between else ""))
    for step in b.steps:
        t = r.timings.get(step.build, {})
        print(f"  {step.build:<28} {step.verdict.value:<5} {step.seconds:>5.0f}s"
              + (f"  (fetch {t['fetch']}s, boot {t['boot']}s, run {t['run']}s)" if t else ""))
    if r.suspects_note:
        print(f"suspects: none ({r.suspects_note})")
    else:
        print(f"suspects ({len(r.suspects)}: changelog items between the two uploads naming "
              "IPVS, netfilter, neighbour/ARP, IPv4/IPv6 routing or FIB):")
        for x in r.suspects:
            print(f"  {x.version}: {x.text}"
                  + (f" [{', '.join(x.commits)}]" if x.commits else ""))
    if args.json:
        Path(args.json).write_text(json.dumps(r.to_json(), indent=1))
    if args.html:
        # lazy: only this verb needs it, not every drlab run (+10 modules, ~6 ms)
        from lab.report.bisect_html import bisect_html

        Path(args.html).write_text(bisect_html(r, rest))
        print(f"HTML report: {args.html}")
    return 0


def _matrix_args(args: argparse.Namespace) -> list[str]:
    """The axes of a matrix run as command-line flags (for reports)."""
    out = [f"--spec {args.spec}"] if args.spec else []
    out += [f"--sysctl {x}" for x in args.sysctl or []]
    out += [f"--{a.replace('_', '-')} {getattr(args, a)}" for a in matrix.ALL_AXES
            if getattr(args, a) is not None]
    return out


def add_parsers(sub: Any) -> None:
    mx = sub.add_parser("matrix", help="sweep real-server and director settings, compare "
                        "with predictions")
    mx.add_argument("--spec", metavar="FILE", help="TOML file of axes (arp_ignore = [0, 1] ...)")
    for axis, (_f, allowed) in AXES.items():
        mx.add_argument(f"--{axis.replace('_', '-')}", dest=axis, metavar="V,V",
                        help=f"real server's {axis}: "
                             f"{', '.join(str(a).lower() for a in allowed)}")
    for axis, (_f, allowed) in VS_AXES.items():
        mx.add_argument(f"--{axis.replace('_', '-')}", dest=axis, metavar="V,V",
                        help=f"director's net.ipv4.vs.{axis} (needs IPVS): "
                             f"{', '.join(str(a) for a in allowed)}")
    mx.add_argument("--sysctl", action="append", metavar="KEY=VALUE",
                    help="also write this on every cell's real server (net.ipv4.conf."
                         "{all,eth0,lo}.{arp_ignore,arp_announce,rp_filter}); cells keep "
                         "their labels, so --baseline shows what it changes")
    mx.add_argument("--jobs", type=int, default=4, help="labs side by side (default 4)")
    mx.add_argument("--shard", metavar="I/N", help="only every Nth cell, from the Ith "
                    "(`drlab kernels merge` joins the shards' --json files)")
    mx.add_argument("--json", metavar="FILE", help="write the results as JSON")
    mx.add_argument("--markdown", metavar="FILE", help="write the results as a Markdown table")
    mx.add_argument("--html", metavar="FILE", help="write a self-contained HTML report")
    mx.add_argument("--save", metavar="FILE", help="save this run as a baseline")
    mx.add_argument("--baseline", metavar="FILE",
                    help="diff against a saved run; exit 1 if any cell changed")
    mx.set_defaults(func=cmd_matrix)
    writes(mx, "--json", "--markdown", "--html", "--save")



    kn = sub.add_parser("kernels", help="run on several kernels (Debian's, yours) and compare")
    kns = kn.add_subparsers(dest="action", required=True, metavar="ACTION")
    knr = kns.add_parser("run", help="matrix, scenarios or the suite on each --kernel; "
                         "one report with a column per kernel")
    knr.add_argument("--kernel", action="append", metavar="K",
                     help="host, a Debian suite (bookworm, trixie, ...), a build by uname -r "
                          "(6.12.96+deb13-amd64), newest, newest-7, all-available (every "
                          "fetchable build of --flavour), a vmlinuz path or a kernel build "
                          "tree; repeat (default: host and bookworm)")
    knr.add_argument("--json", metavar="FILE", help="write the merged report as JSON")
    knr.add_argument("--html", metavar="FILE", help="write a self-contained HTML report")
    knr.add_argument("--logs", metavar="DIR", help="keep each kernel's output here")
    knr.add_argument("--offline", action="store_true",
                     help="use cached Debian kernels without asking the mirror")
    knr.add_argument("--jobs", type=int, default=1, metavar="N",
                     help="run N kernels at once, each in its own VM (default 1; each VM "
                          "takes --cpus 2 and 2G of memory)")
    knr.add_argument("--shard", metavar="I/N", help="run only shard I of N of the "
                     "kernel-and-cell pairs (every Nth; diagnose: every Nth kernel); "
                     "`drlab kernels merge` joins the N --json reports")
    knr.add_argument("--flavour", choices=FLAVOURS, default="amd64",
                     help="the flavour of --kernel all-available (default amd64)")
    knr.add_argument("what", choices=VERBS)
    knr.add_argument("args", nargs=argparse.REMAINDER,
                     help="arguments of `drlab matrix`, scenario names, pytest's, "
                          "`drlab diagnose`'s (the cluster), or run's command (run as root "
                          "in each kernel's VM; exit 0 good, 125 skip, else bad)")
    knr.set_defaults(func=cmd_kernels_run)
    knm = kns.add_parser("merge", help="join the --json reports of `kernels run --shard` "
                         "into one report")
    knm.add_argument("reports", nargs="+", metavar="REPORT.json")
    knm.add_argument("--json", metavar="FILE", help="write the merged report as JSON")
    knm.add_argument("--html", metavar="FILE", help="write a self-contained HTML report")
    knm.set_defaults(func=cmd_kernels_merge)
    knf = kns.add_parser("fetch", help="download and unpack Debian kernels into the cache")
    knf.add_argument("suite", nargs="+", metavar="KERNEL",
                     help="Debian suites (bookworm, trixie, ...) or builds by uname -r "
                          "(6.12.96+deb13-amd64; newest, newest-7)")
    knf.add_argument("--offline", action="store_true", help="only report what is cached")
    knf.set_defaults(func=cmd_kernels_fetch)
    knb = kns.add_parser("bisect", help="which Debian build changed a verb's verdict "
                         "(kernels run's verbs; the good kernel's verdict is the reference)")
    knb.add_argument("--good", required=True, metavar="K", help="a build (uname -r) whose "
                     "verdict is the reference")
    knb.add_argument("--bad", required=True, metavar="K", help="a build whose verdict "
                     "differs (older than --good: find a fix)")
    knb.add_argument("--flavour", choices=FLAVOURS, default="amd64")
    knb.add_argument("--json", metavar="FILE", help="write the steps and answer as JSON")
    knb.add_argument("--html", metavar="FILE", help="write a self-contained HTML page")
    knb.add_argument("--logs", metavar="DIR", help="keep each build's output here")
    knb.add_argument("--offline", action="store_true",
                     help="the kernel index of the last listing, without asking the mirrors")
    knb.add_argument("verb", nargs=argparse.REMAINDER,
                     help="-- VERB ARGS...: scenario NAME..., matrix ..., suite ..., "
                          "diagnose DIR, run CMD...")
    knb.set_defaults(func=cmd_kernels_bisect)
    knl = kns.add_parser("list", help="kernels in the cache (--available: every build "
                         "Debian serves)")
    knl.add_argument("--available", action="store_true",
                     help="every kernel build of " + ", ".join(SUITES) + ", in version order")
    knl.add_argument("--flavour", choices=FLAVOURS, help="only this flavour's builds")
    knl.add_argument("--json", action="store_true", help="print the list as JSON")
    knl.add_argument("--offline", action="store_true",
                     help="the indexes of the last listing, without asking the mirrors")
    knl.set_defaults(func=cmd_kernels_list)
