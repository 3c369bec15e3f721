"""The ``drlab`` command (also ``python -m lab``).

Exit codes: 0 success; 1 a check failed; 2 bad input (usage, topology);
3 the machine cannot run the lab (not root, no ipvsadm, no IPVS: see
scripts/vm-run); 130 interrupted.
"""

from __future__ import annotations

import argparse
import platform
import sys
from collections.abc import Sequence

from lab.errors import LabError, TopologyError, UsageError


def _topology(args: argparse.Namespace):  # type: ignore[no-untyped-def]
    from lab.model import default_dr, load_topology

    if getattr(args, "topology", None):
        return load_topology(args.topology)
    return default_dr(rs=args.rs, scheduler=args.scheduler).validate()


def cmd_demo(args: argparse.Namespace) -> int:
    """Build the default DR lab, run its checks, print a report, tear down."""
    from lab.host import preflight

    topology = _topology(args)  # bad input first: it needs no root
    if topology.service is None:
        raise TopologyError("the topology has no [service]: nothing to demonstrate")
    if args.connections < 1:
        raise TopologyError("--connections must be at least 1")
    preflight.require_ipvs()

    from lab.report.text import demo_report
    from lab.roles import up

    out = sys.stdout
    print(f"drlab demo: building topology {topology.name!r} on kernel {platform.release()} ...",
          file=out, flush=True)
    lab = up(topology)
    try:
        text, ok = demo_report(lab, args.connections)
        print(text, file=out)
    finally:
        removed = lab.teardown()
    from lab.builder import netns

    left = [n for n in netns.listing() if n.startswith(f"drl-{lab.id}-")]
    print(f"Torn down lab {lab.id}: removed {len(removed)} namespaces and processes; "
          f"{len(left)} namespaces left.", file=out)
    return 0 if ok and not left else 1


def cmd_cleanup(args: argparse.Namespace) -> int:
    """Remove what labs of dead owners left behind (by their ownership records)."""
    from lab.builder import ownership
    from lab.host import preflight

    preflight.require_root()
    removed = ownership.reap()
    print("\n".join(removed) if removed else "nothing to clean up")
    return 0


def cmd_check_env(args: argparse.Namespace) -> int:
    """Say whether this machine can run labs, and what is missing."""
    from lab.errors import PreflightError
    from lab.host import preflight

    ok = True
    for name, fn in (("root", preflight.require_root), ("ipvsadm", preflight.require_ipvsadm),
                     ("IPVS in kernel", preflight.require_ipvs)):
        try:
            fn()
            print(f"ok    {name}")
        except PreflightError as e:
            ok = False
            print(f"MISS  {name}: {e}")
    return 0 if ok else 3


def _progress(msg: str) -> None:
    print(f"drlab: {msg}", file=sys.stderr, flush=True)


def cmd_up(args: argparse.Namespace) -> int:
    """Build a lab and leave it running (until `drlab down`)."""
    import os

    from lab.host import preflight
    from lab.roles import up
    from lab.scenarios import get, start

    if args.scenario and not (args.broken or args.fixed):
        raise TopologyError("--scenario needs --broken or --fixed")
    scenario = get(args.scenario) if args.scenario else None
    topology = None if scenario else _topology(args)
    if scenario is None or scenario.needs_ipvs:
        preflight.require_ipvs()
    else:
        preflight.require_netns()
    if os.environ.get("DRLAB_IN_VM") == "1":
        _progress("note: inside the VM runner the lab ends when the VM exits; for an "
                  "interactive lab run `scripts/vm-run -- bash` and use drlab there")
    _progress("building ...")
    if scenario is not None:
        variant = "broken" if args.broken else "fixed"
        lab = start(scenario, variant, name=args.name, persistent=True)
    else:
        lab = up(topology, name=args.name, persistent=True)
    print(f"lab {lab.id} is up (topology {lab.topology.name!r})")
    for h in lab.topology.hosts:
        print(f"  {h.name:<10} ip netns exec {lab.ns(h.name)} bash     (or: drlab shell "
              f"{lab.id} {h.name})")
    print(f"status: drlab status {lab.id}    checks: drlab check {lab.id}    "
          f"remove: drlab down {lab.id}")
    return 0


def _running(name: str | None):  # type: ignore[no-untyped-def]
    from lab.builder import Lab, ownership
    from lab.host import preflight

    preflight.require_root()
    if name is None:
        labs = [r.lab for r in ownership.records() if r.topology_data is not None]
        if len(labs) != 1:
            raise UsageError(f"name a lab: {len(labs)} running ({', '.join(labs) or 'none'})")
        name = labs[0]
    return Lab.attach(name)


def cmd_status(args: argparse.Namespace) -> int:
    """Hosts, interfaces, routes, neighbours, effective sysctls and the IPVS table."""
    import dataclasses
    import json

    from lab.probes import dump, state
    from lab.roles import director

    lab = _running(args.name)
    data: dict = {"lab": lab.id, "topology": lab.topology.name, "hosts": {}}
    for h in lab.topology.hosts:
        data["hosts"][h.name] = {
            "role": h.role, "netns": lab.ns(h.name),
            "interfaces": [dataclasses.asdict(i) for i in state.interfaces(lab, h.name)],
            "routes": state.routes(lab, h.name),
            "neighbours": state.neighbours(lab, h.name),
            "sysctls": dump.effective_sysctls(lab, h.name),
        }
    if lab.topology.service is not None:
        try:
            data["ipvs"] = [dataclasses.asdict(s) for s in director.read_services(lab)]
        except LabError as e:
            data["ipvs"] = str(e)
    if args.json:
        print(json.dumps(data, indent=1))
        return 0
    print(dump.dump_state(lab), end="")
    return 0


def cmd_check(args: argparse.Namespace) -> int:
    """Census, DR connections with path proof, distribution, on a running lab."""
    import json
    from collections import Counter

    from lab.probes import arp, path

    lab = _running(args.name)
    if lab.topology.service is None:
        raise LabError(f"lab {lab.id} has no virtual service to check")
    hop = path.first_hop(lab)
    census = arp.census(lab, asker=hop)
    proof = path.prove(lab, connections=args.connections)
    dist = Counter(c.server for c in proof.connections)
    ok = census.hosts == {lab.topology.director.name} and proof.ok
    if args.json:
        print(json.dumps({"lab": lab.id, "ok": ok, "census": sorted(census.hosts),
                          "distribution": dict(dist), "problems": proof.problems,
                          "ladder": proof.ladder()}, indent=1))
    else:
        print(f"census: {census}")
        print(proof.ladder())
        print("distribution: " + ", ".join(f"{k} {v}" for k, v in sorted(dist.items())))
        print("OK" if ok else "FAILED: " + "; ".join(
            proof.problems + ([] if census.hosts == {lab.topology.director.name}
                              else [f"census {sorted(census.hosts)}"])))
    return 0 if ok else 1


def cmd_shell(args: argparse.Namespace) -> int:
    """A shell inside one host of a running lab."""
    import os

    lab = _running(args.name)
    ns = lab.ns(args.host)
    shell = os.environ.get("SHELL", "/bin/bash")
    os.execvp("ip", ["ip", "netns", "exec", ns, *(args.command or [shell])])
    return 0  # not reached


def cmd_down(args: argparse.Namespace) -> int:
    """Remove a running lab (or every lab with --all)."""
    from lab.builder import ownership
    from lab.host import preflight

    preflight.require_root()
    if args.all:
        recs = ownership.records()
    else:
        if not args.name:
            raise UsageError("name a lab, or --all")
        rec = ownership.find(args.name)
        if rec is None:
            raise UsageError(f"no running lab {args.name!r}")
        recs = [rec]
    for rec in recs:
        removed = ownership.destroy(rec)
        print(f"lab {rec.lab}: removed {len(removed)} namespaces and processes")
    return 0


def cmd_scenarios(args: argparse.Namespace) -> int:
    """List the scenario catalogue (``--markdown`` for the README table)."""
    from lab.scenarios import REGISTRY

    if args.markdown:
        print(catalogue_markdown())
        return 0
    width = max(len(n) for n in REGISTRY)
    for s in REGISTRY.values():
        print(f"{s.name:<{width}}  {'IPVS ' if s.needs_ipvs else 'ARP  '} {s.symptom}")
    return 0


def catalogue_markdown() -> str:
    from lab.scenarios import REGISTRY

    rows = ["| scenario | symptom | trigger | fix | needs IPVS |",
            "| --- | --- | --- | --- | --- |"]
    for s in REGISTRY.values():
        rows.append(f"| `{s.name}` | {s.symptom} | {s.trigger} | {s.fix} | "
                    f"{'yes' if s.needs_ipvs else 'no'} |")
    return "\n".join(rows)


def cmd_scenario_run(args: argparse.Namespace) -> int:
    """Run scenarios broken and fixed side by side; exit 1 unless each reproduced.

    ``all`` runs the whole catalogue; scenarios this machine cannot run (no
    IPVS, or VM-only) are then reported as not run instead of failing.
    """
    import json
    from pathlib import Path

    from lab.host import preflight
    from lab.scenarios import REGISTRY, Verdict, get, run

    names = list(REGISTRY) if args.name == ["all"] else args.name
    chosen = [get(n) for n in names]
    have_ipvs = preflight.ipvs_available() if any(s.needs_ipvs for s in chosen) else False
    preflight.require_netns()
    results, bad = [], 0
    for s in chosen:
        why = ("needs IPVS" if s.needs_ipvs and not have_ipvs else
               "runs only in the VM" if s.needs_vm and not _in_vm() else None)
        if why and args.name == ["all"]:
            print(f"{s.name}: not run here ({why})")
            results.append({"name": s.name, "ran": False, "why": why})
            continue
        if s.needs_ipvs:
            preflight.require_ipvs()
        _progress(f"{s.name}: running the broken variant ...")
        broken = run(s, "broken")
        _progress(f"{s.name}: running the fixed variant ...")
        fixed = run(s, "fixed")
        v = Verdict(s, broken, fixed)
        print(v.report())
        bad += not v.reproduced
        results.append({"name": s.name, "ran": True, "reproduced": v.reproduced,
                        "symptom": s.symptom, "trigger": s.trigger, "fix": s.fix,
                        "broken": {"symptom": broken.symptom, "evidence": broken.evidence},
                        "fixed": {"symptom": fixed.symptom, "evidence": fixed.evidence}})
    if args.json:
        import platform

        Path(args.json).write_text(json.dumps({"kernel": platform.release(),
                                               "scenarios": results}, indent=1))
    return 1 if bad else 0


def cmd_matrix(args: argparse.Namespace) -> int:
    """Sweep real-server settings, measure every cell, compare with the prediction."""
    import json
    import time
    from pathlib import Path

    from lab.host import preflight
    from lab.sweep import matrix

    spec: dict = {}
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
    preflight.require_netns()
    _progress(f"matrix: {len(configs)} cells, {args.jobs} labs side by side ...")
    t0 = time.monotonic()
    result = matrix.run(configs, args.jobs)
    wall = time.monotonic() - t0
    data = matrix.to_json(result, wall)
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
        from lab.report.html import matrix_html

        Path(args.html).write_text(matrix_html(data, _matrix_args(args)))
    changed: list[str] = []
    if baseline is not None:
        changed = matrix.diff(baseline, data)
        print(f"\nbaseline {args.baseline}: {len(changed)} cells changed")
        for line in changed:
            print("  " + line)
    return 1 if bad or changed else 0


def cmd_kernels_run(args: argparse.Namespace) -> int:
    """Run a matrix, scenarios or the suite on several kernels; one report."""
    import json
    import tempfile
    from pathlib import Path

    from lab.sweep import kernels, kmatrix

    names = args.kernel or ["host", "bookworm"]
    if len(set(names)) != len(names):
        raise UsageError("kernels run: a kernel is named twice")
    rest = list(args.args)
    if rest[:1] == ["--"]:
        rest = rest[1:]
    resolved = [kernels.resolve(n, refresh=not args.offline) for n in names]
    logs = Path(args.logs) if args.logs else Path(tempfile.mkdtemp(prefix="drlab-kernels."))
    logs.mkdir(parents=True, exist_ok=True)
    runs = []
    for k in resolved:
        _progress(f"kernels: {args.what} on {k.name}"
                  + (f" ({k.image})" if k.image else " (the running kernel, no VM)") + " ...")
        r = kmatrix.run_on(k, args.what, rest, logs / f"{_safe(k.name)}.log")
        _progress(f"kernels: {k.name}: exit {r.exit_code} in {r.seconds:.0f}s"
                  + (f"; {r.error}" if r.error else ""))
        runs.append(r)
    report = kmatrix.merge(args.what, rest, runs)
    print(kmatrix.table(report))
    for block in kmatrix.details(report):
        print("\n" + block)
    print("\n" + "; ".join(f"{k['name']} {k['release']}: {k['seconds']:.0f}s"
                           for k in report["kernels"])
          + f"; {report['failed']} failing rows or runs; logs in {logs}")
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=1))
    if args.html:
        from lab.report import html as htmlreport

        Path(args.html).write_text(htmlreport.kernels_html(report))
        print(f"HTML report: {args.html}")
    return 1 if report["failed"] else 0


def _safe(name: str) -> str:
    import re

    return re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("_") or "kernel"


def cmd_kernels_fetch(args: argparse.Namespace) -> int:
    """Fetch and unpack Debian kernels into the cache (or show the cached one)."""
    from lab.sweep import kernels

    for name in args.suite:
        k = kernels.resolve(name, refresh=not args.offline)
        print(f"{k.name}: {k.release} {k.image}")
    return 0


def cmd_kernels_list(args: argparse.Namespace) -> int:
    from lab.sweep import kernels

    found = kernels.cached()
    print(f"kernel cache {kernels.cache_dir()}: {len(found)} unpacked")
    for suite, d in found:
        print(f"  {suite:<20} {d.name}")
    return 0


def _matrix_args(args: argparse.Namespace) -> list[str]:
    """The axes of a matrix run as command-line flags (for reports)."""
    from lab.sweep import matrix

    out = [f"--spec {args.spec}"] if args.spec else []
    out += [f"--sysctl {x}" for x in args.sysctl or []]
    out += [f"--{a.replace('_', '-')} {getattr(args, a)}" for a in matrix.ALL_AXES
            if getattr(args, a) is not None]
    return out


def cmd_validate(args: argparse.Namespace) -> int:
    """Apply proposed sysctls to the lab's hosts of a role; report what breaks or gets fixed."""
    from lab.host import preflight
    from lab.model import check_sysctl
    from lab.scenarios import REGISTRY
    from lab.scenarios.base import ROLE_ALIASES, Change, run, run_changed

    role = ROLE_ALIASES.get(args.host)
    if role is None:
        raise UsageError(f"--host {args.host!r}: one of {', '.join(ROLE_ALIASES)}")
    sysctls = {}
    for item in args.sysctl:
        key, sep, value = item.partition("=")
        if not sep:
            raise UsageError(f"--sysctl {item!r}: expected KEY=VALUE")
        err = check_sysctl(key.strip(), value.strip())
        if err:
            raise UsageError(f"--sysctl: {err}")
        sysctls[key.strip()] = value.strip()
    change = Change(sysctls, role)
    preflight.require_netns()
    have_ipvs = preflight.ipvs_available()
    names = args.scenario or list(REGISTRY)
    breaks, fixes, same, skipped = [], [], [], []
    for name in names:
        s = REGISTRY.get(name)
        if s is None:
            raise UsageError(f"no scenario {name!r}; see `drlab scenarios`")
        if (s.needs_ipvs and not have_ipvs) or (s.needs_vm and not _in_vm()):
            skipped.append(name)
            continue
        _progress(f"validate: {name} ...")
        row = {}
        for variant in ("broken", "fixed"):
            try:
                row[variant] = (run(s, variant).symptom, run_changed(s, variant, change).symptom)
            except LabError as e:
                row[variant] = (None, None)
                _progress(f"validate: {name} {variant}: {e}")
        was, now = row["fixed"]
        bwas, bnow = row["broken"]
        if was is False and now is True:
            breaks.append(name)
        elif bwas is True and bnow is False:
            fixes.append(name)
        else:
            same.append(name)
    what = ", ".join(f"{k}={v}" for k, v in sysctls.items())
    print(f"proposed change: {what} on every {role} host")
    print(f"  breaks ({len(breaks)}): " + (", ".join(breaks) or "nothing"))
    print(f"  fixes  ({len(fixes)}): " + (", ".join(fixes) or "nothing"))
    print(f"  unchanged ({len(same)}): " + (", ".join(same) or "-"))
    if skipped:
        print(f"  not run here ({len(skipped)}, need IPVS or the VM): " + ", ".join(skipped))
    for note in _masked_notes(change):
        print("  note: " + note)
    return 1 if breaks else 0


def _masked_notes(change) -> list[str]:  # type: ignore[no-untyped-def]
    """Changes on conf/all that the kernel ignores where an interface holds a larger value."""
    from lab.builder.sysctl import MAX_OF_ALL_AND_DEV
    from lab.model import default_dr

    notes = []
    hosts = [h for h in default_dr().hosts if change.role in ("all", h.role)]
    for key, value in change.sysctls.items():
        parts = key.split(".")
        if len(parts) != 5 or parts[2:4] != ["conf", "all"] or parts[4] not in MAX_OF_ALL_AND_DEV:
            continue
        for h in hosts:
            for dev_key, dev_value in h.sysctls.items():
                p = dev_key.split(".")
                dev_value = change.sysctls.get(dev_key, dev_value)
                if len(p) == 5 and p[4] == parts[4] and p[3] not in ("all", "default") \
                        and int(dev_value) > int(value):
                    notes.append(f"the kernel uses max(all, {p[3]}) for {parts[4]}: with "
                                 f"{dev_key}={dev_value} on {h.name}, {key}={value} changes "
                                 "nothing there")
    return notes


def _in_vm() -> bool:
    import os

    return os.environ.get("DRLAB_IN_VM") == "1"


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="drlab", description="LVS Direct Routing lab in network "
                                "namespaces, with a real IPVS director.")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    d = sub.add_parser("demo", help="build the default DR lab, check it, report, tear down")
    d.add_argument("--rs", type=int, default=2, help="number of real servers (default 2)")
    d.add_argument("--scheduler", default="rr", help="IPVS scheduler (default rr)")
    d.add_argument("--topology", metavar="FILE", help="a TOML topology file instead")
    d.add_argument("--connections", type=int, default=6, help="requests to send (default 6)")
    d.set_defaults(func=cmd_demo)

    c = sub.add_parser("cleanup", help="reap namespaces and processes left by dead runs")
    c.set_defaults(func=cmd_cleanup)

    e = sub.add_parser("check-env", help="can this machine run labs?")
    e.set_defaults(func=cmd_check_env)

    u = sub.add_parser("up", help="build a lab and leave it running")
    u.add_argument("--name", help="lab name (default: random); namespaces are drl-NAME-HOST")
    u.add_argument("--topology", metavar="FILE", help="a TOML topology file")
    u.add_argument("--rs", type=int, default=2, help="real servers in the default topology")
    u.add_argument("--scheduler", default="rr", help="IPVS scheduler (default rr)")
    u.add_argument("--scenario", metavar="NAME", help="build a scenario's variant instead")
    g = u.add_mutually_exclusive_group()
    g.add_argument("--broken", action="store_true", help="with --scenario: the broken variant")
    g.add_argument("--fixed", action="store_true", help="with --scenario: the fixed variant")
    u.set_defaults(func=cmd_up)

    st = sub.add_parser("status", help="state of a running lab")
    st.add_argument("name", nargs="?", help="lab name (optional if only one runs)")
    st.add_argument("--json", action="store_true", help="machine-readable output")
    st.set_defaults(func=cmd_status)

    ck = sub.add_parser("check", help="census, path proof and distribution on a running lab")
    ck.add_argument("name", nargs="?", help="lab name (optional if only one runs)")
    ck.add_argument("--json", action="store_true", help="machine-readable output")
    ck.add_argument("--connections", type=int, default=4, help="connections to prove")
    ck.set_defaults(func=cmd_check)

    sh_ = sub.add_parser("shell", help="a shell (or COMMAND) inside a host of a running lab")
    sh_.add_argument("name")
    sh_.add_argument("host")
    sh_.add_argument("command", nargs=argparse.REMAINDER)
    sh_.set_defaults(func=cmd_shell)

    dn = sub.add_parser("down", help="remove a running lab")
    dn.add_argument("name", nargs="?")
    dn.add_argument("--all", action="store_true", help="every lab on this machine")
    dn.set_defaults(func=cmd_down)

    sc = sub.add_parser("scenarios", help="list the catalogue of DR failures")
    sc.add_argument("--markdown", action="store_true", help="as a Markdown table")
    sc.set_defaults(func=cmd_scenarios)

    mx = sub.add_parser("matrix", help="sweep real-server and director settings, compare "
                        "with predictions")
    mx.add_argument("--spec", metavar="FILE", help="TOML file of axes (arp_ignore = [0, 1] ...)")
    from lab.sweep.matrix import AXES, VS_AXES

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
    mx.add_argument("--json", metavar="FILE", help="write the results as JSON")
    mx.add_argument("--markdown", metavar="FILE", help="write the results as a Markdown table")
    mx.add_argument("--html", metavar="FILE", help="write a self-contained HTML report")
    mx.add_argument("--save", metavar="FILE", help="save this run as a baseline")
    mx.add_argument("--baseline", metavar="FILE",
                    help="diff against a saved run; exit 1 if any cell changed")
    mx.set_defaults(func=cmd_matrix)

    va = sub.add_parser("validate", help="what a proposed sysctl change breaks or fixes")
    va.add_argument("--sysctl", action="append", required=True, metavar="KEY=VALUE",
                    help="a proposed setting (repeatable)")
    va.add_argument("--host", default="rs", help="role whose hosts get it: rs (default), "
                    "director, client, router, all")
    va.add_argument("--scenario", action="append", metavar="NAME",
                    help="only these scenarios (repeatable; default: all)")
    va.set_defaults(func=cmd_validate)

    kn = sub.add_parser("kernels", help="run on several kernels (Debian's, yours) and compare")
    kns = kn.add_subparsers(dest="action", required=True, metavar="ACTION")
    knr = kns.add_parser("run", help="matrix, scenarios or the suite on each --kernel; "
                         "one report with a column per kernel")
    knr.add_argument("--kernel", action="append", metavar="K",
                     help="host, a Debian suite (bookworm, trixie, ...), a vmlinuz path or "
                          "a kernel build tree; repeat (default: host and bookworm)")
    knr.add_argument("--json", metavar="FILE", help="write the merged report as JSON")
    knr.add_argument("--html", metavar="FILE", help="write a self-contained HTML report")
    knr.add_argument("--logs", metavar="DIR", help="keep each kernel's output here")
    knr.add_argument("--offline", action="store_true",
                     help="use cached Debian kernels without asking the mirror")
    knr.add_argument("what", choices=["matrix", "scenario", "suite"])
    knr.add_argument("args", nargs=argparse.REMAINDER,
                     help="arguments of `drlab matrix`, scenario names, or pytest's")
    knr.set_defaults(func=cmd_kernels_run)
    knf = kns.add_parser("fetch", help="download and unpack Debian kernels into the cache")
    knf.add_argument("suite", nargs="+", help="Debian suites: bookworm, trixie, ...")
    knf.add_argument("--offline", action="store_true", help="only report what is cached")
    knf.set_defaults(func=cmd_kernels_fetch)
    knl = kns.add_parser("list", help="kernels in the cache")
    knl.set_defaults(func=cmd_kernels_list)

    sr = sub.add_parser("scenario", help="run a scenario: `drlab scenario run NAME`")
    srs = sr.add_subparsers(dest="action", required=True, metavar="ACTION")
    srr = srs.add_parser("run", help="broken and fixed side by side, with a verdict")
    srr.add_argument("name", nargs="+", help="scenario names, or all")
    srr.add_argument("--json", metavar="FILE", help="write the verdicts as JSON")
    srr.set_defaults(func=cmd_scenario_run)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args))
    except LabError as e:
        print(f"drlab: error: {e}", file=sys.stderr)
        return e.exit_code
    except KeyboardInterrupt:
        print("drlab: interrupted; lab torn down", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
