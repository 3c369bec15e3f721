"""Verbs on one lab: demo, up, status, check, shell, down, cleanup, check-env."""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lab.cli import progress
from lab.cli.cluster import add_allow_scripts
from lab.errors import PreflightError, TopologyError, UsageError
from lab.machine import preflight
from lab.model import default_dr, load_topology
from lab.model.files import read_text

if TYPE_CHECKING:
    from lab.scenarios.base import Variant

#: Set by scripts/drlab when it runs a command in a VM that ends with the command.
ONESHOT_ENV = "DRLAB_VM_ONESHOT"
ONESHOT_HINT = ("a lab built in the one-shot VM of scripts/drlab is gone when the command "
                "returns: for a lab that stays up run `scripts/drlab vm start` first (then "
                "up/status/check/shell/down run in that VM); scripts/drlab demo and "
                "scripts/drlab scenario run NAME work as they are")


def _check_name(name: str | None, what: str = "lab name") -> None:
    """A lab name given on the command line: checked (fullmatch) before anything is read,
    made or deleted; one line and exit 2 otherwise."""
    # lazy: only this verb needs it, not every drlab run (+245 modules, ~110 ms; pyroute2)
    from lab.builder import ownership

    if name is not None:
        try:
            ownership.check_name(name)
        except UsageError as e:
            raise UsageError(str(e).replace("lab name", what, 1)) from None


def _refuse_in_oneshot_vm(verb: str) -> None:
    if os.environ.get(ONESHOT_ENV) == "1":
        raise UsageError(f"drlab {verb}: {ONESHOT_HINT}")


def _topology(args: argparse.Namespace) -> Any:
    if getattr(args, "topology", None):
        notes: list[str] = []
        t = load_topology(args.topology, allow_scripts=args.allow_scripts, notes=notes)
        for n in notes:  # what its keepalived configs would have run
            print(f"drlab: {n}", file=sys.stderr)
        return t
    if args.rs < 1:
        raise TopologyError("--rs must be at least 1")
    if getattr(args, "services", None) is not None:
        # lazy: only a scale lab needs it (+1 module, ~1 ms)
        from lab.model.scale import many_services

        return many_services(args.services, rs=args.rs, holder=args.vip_holder,
                             scheduler=args.scheduler).validate()
    return default_dr(rs=args.rs, scheduler=args.scheduler).validate()


def cmd_demo(args: argparse.Namespace) -> int:
    """Build the default DR lab, run its checks, print a report, tear down."""
    topology = _topology(args)  # bad input first: it needs no root
    if topology.service is None:
        raise TopologyError("the topology has no [service]: nothing to demonstrate")
    if args.connections < 1:
        raise TopologyError("--connections must be at least 1")
    preflight.require_ipvs()

    # lazy: only this verb needs it, not every drlab run (+296 modules, ~130 ms; pyroute2)
    from lab.report.text import demo

    print(f"drlab demo: building topology {topology.name!r} on kernel {platform.release()} ...",
          flush=True)
    text, ok = demo(topology, args.connections)
    print(text)
    return 0 if ok else 1


def cmd_cleanup(args: argparse.Namespace) -> int:
    """Remove what labs of dead owners left behind (by their ownership records)."""
    # lazy: only this verb needs it, not every drlab run (+251 modules, ~100 ms; pyroute2)
    from lab.builder import ownership
    from lab.machine import vm

    preflight.require_root()
    removed = ownership.reap() + vm.reap()
    print("\n".join(removed) if removed else "nothing to clean up")
    return 0


def cmd_check_env(args: argparse.Namespace) -> int:
    """Say whether this machine can run labs, and what is missing."""
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


def cmd_up(args: argparse.Namespace) -> int:
    """Build a lab and leave it running (until `drlab down`)."""
    # lazy: only this verb needs it, not every drlab run (+317 modules, ~150 ms; pyroute2)
    from lab.scenarios import get

    _refuse_in_oneshot_vm("up")
    _check_name(args.name, "--name")
    if args.scenario and not (args.broken or args.fixed):
        raise UsageError("--scenario needs --broken or --fixed")
    if (args.broken or args.fixed) and not args.scenario:
        raise UsageError("--broken/--fixed go with --scenario NAME")
    if args.keepalived is not None and (args.scenario or args.topology):
        raise UsageError("--keepalived builds its own lab: not with --scenario or --topology")
    if args.services is not None and (args.scenario or args.topology
                                      or args.keepalived is not None):
        raise UsageError("--services builds its own lab: not with --scenario, --topology "
                         "or --keepalived")
    scenario = get(args.scenario) if args.scenario else None
    derived: list[str] = []
    if args.keepalived is not None:
        topology, derived = _keepalived_topology(args)
    else:
        topology = None if scenario else _topology(args)
    preflight.require_ipvs(hint="a lab that stays up needs a kernel with IPVS: run "
                           "`scripts/drlab vm start`, then `scripts/drlab up`")
    # lazy: only this verb needs it, not every drlab run (+317 modules, ~150 ms; pyroute2)
    from lab import scenarios
    from lab.roles import up

    progress("building ...")
    if scenario is not None:
        variant: Variant = "broken" if args.broken else "fixed"
        lab = scenarios.start(scenario, variant, name=args.name, persistent=True, whole=True)
    else:
        lab = up(topology, name=args.name, persistent=True)
    with contextlib.closing(lab):
        print(f"lab {lab.id} is up (topology {lab.topology.name!r})")
        for line in derived:
            print(f"  derived: {line}")
        if lab.topology.keepalived:
            # lazy: only this verb needs it, not every drlab run (+300 modules, ~130 ms; pyroute2)
            from lab.probes import vrrp

            vrrp.wait_holder(lab)
            for line in vrrp.holding(lab).lines():
                print(f"  {line}")
        for h in lab.topology.hosts:
            print(f"  {h.name:<10} ip netns exec {lab.ns(h.name)} bash     (or: drlab shell "
                  f"{lab.id} {h.name})")
        print(f"status: drlab status {lab.id}    checks: drlab check {lab.id}    "
              f"remove: drlab down {lab.id}")
        if scenario is not None:
            print(scenarios.check_note(scenario))
    return 0


def _keepalived_topology(args: argparse.Namespace) -> tuple[Any, list[str]]:
    """The lab of ``--keepalived`` (the default pair) or ``--keepalived FILE ...`` (the
    user's own configs, each checked by ``keepalived -t`` first)."""
    # lazy: only this verb needs it, not every drlab run (+248 modules, ~100 ms; pyroute2)
    from lab.model.keepalived import keepalived_dr, topology_from_files
    from lab.roles import keepalived

    files = [f for f in args.keepalived if f]
    if not files:
        if len(args.keepalived) > 1:
            raise UsageError("--keepalived without a file builds the default pair: give it once")
        return keepalived_dr(rs=args.rs, scheduler=args.scheduler), []
    if len(files) != len(args.keepalived) or len(files) > 2:
        raise UsageError("--keepalived FILE: one file per director, at most two")
    # a regular file (a FIFO does not hang), at most 16 MiB, undecodable bytes replaced
    try:
        texts = [(f, read_text(Path(f), follow=True)) for f in files]
    except TopologyError as e:
        raise UsageError(f"--keepalived {e.problems[0]}") from None
    topology, derived = topology_from_files(texts)  # the lab's own limits first
    for f in files:
        keepalived.config_test(f)
    return topology, derived


def _attach(name: str | None) -> Any:
    """The running lab ``name`` (or the only one); close it when done."""
    # lazy: only this verb needs it, not every drlab run (+245 modules, ~100 ms; pyroute2)
    from lab.builder import Lab, ownership

    _check_name(name)
    preflight.require_root()
    if name is None:
        labs = [r.lab for r in ownership.records() if r.topology_data is not None]
        if len(labs) != 1:
            raise UsageError(f"name a lab: {len(labs)} running ({', '.join(labs) or 'none'})")
        name = labs[0]
    return contextlib.closing(Lab.attach(name))


def cmd_status(args: argparse.Namespace) -> int:
    """Hosts, interfaces, routes, neighbours, effective sysctls and the IPVS table."""
    # lazy: only this verb needs it, not every drlab run (+298 modules, ~120 ms; pyroute2)
    from lab.probes import dump

    _refuse_in_oneshot_vm("status")
    _check_name(args.name)
    with _attach(args.name) as lab:
        if args.json:
            print(json.dumps(dump.status(lab), indent=1))
        else:
            print(dump.dump_state(lab), end="")
    return 0


def cmd_check(args: argparse.Namespace) -> int:
    """Census, DR connections with path proof, the VIP's neighbour entry, distribution."""
    # lazy: only this verb needs it, not every drlab run (+300 modules, ~120 ms; pyroute2)
    from lab.probes.labcheck import check

    _refuse_in_oneshot_vm("check")
    _check_name(args.name)
    # lazy: only this verb needs it (+1 module, ~1 ms)
    from lab.model.scale import SAMPLE_ABOVE

    if args.connections < 1:
        raise UsageError("--connections must be at least 1")
    if args.sample is not None and args.sample < 0:
        raise UsageError("--sample must be 0 or more")
    with _attach(args.name) as lab:
        if lab.topology.service is None:
            raise UsageError(f"lab {lab.id} has no virtual service to check")
        sample = args.sample
        if sample is None and len(lab.topology.services) > SAMPLE_ABOVE:
            sample = 8  # a large lab: proven by sample unless asked otherwise
        result = check(lab, connections=args.connections, sample=sample, seed=args.seed)
    print(json.dumps(result.to_json(), indent=1) if args.json else result.text())
    return 0 if result.ok else 1


def cmd_shell(args: argparse.Namespace) -> int:
    """A shell inside one host of a running lab."""
    _refuse_in_oneshot_vm("shell")
    _check_name(args.name)
    with _attach(args.name) as lab:
        if args.host not in lab.namespaces:
            raise UsageError(f"lab {lab.id} has no host {args.host!r} "
                             f"(hosts: {', '.join(lab.namespaces)})")
        ns = lab.ns(args.host)
    shell = os.environ.get("SHELL", "/bin/bash")
    sys.stdout.flush()
    os.execvp("ip", ["ip", "netns", "exec", ns, *(args.command or [shell])])
    return 0  # not reached


def cmd_down(args: argparse.Namespace) -> int:
    """Remove a running lab (or every lab with --all)."""
    # lazy: only this verb needs it, not every drlab run (+245 modules, ~120 ms; pyroute2)
    from lab.builder import ownership

    _refuse_in_oneshot_vm("down")
    if args.all and args.name:
        raise UsageError("name a lab or --all, not both")
    if not args.all and not args.name:
        raise UsageError("name a lab, or --all")
    _check_name(args.name)
    preflight.require_root()
    if args.all:
        recs = ownership.records()
    else:
        rec = ownership.find(args.name)
        if rec is None:
            running = ", ".join(r.lab for r in ownership.records()) or "none"
            raise UsageError(f"no running lab {args.name!r} (running: {running})")
        recs = [rec]
    for rec in recs:
        removed = ownership.destroy(rec)
        print(f"lab {rec.lab}: removed {len(removed)} namespaces and processes")
    return 0


def add_parsers(sub: Any) -> None:
    d = sub.add_parser("demo", help="build the default DR lab, check it, report, tear down")
    d.add_argument("--rs", type=int, default=2, help="number of real servers (default 2)")
    d.add_argument("--scheduler", default="rr", help="IPVS scheduler (default rr)")
    d.add_argument("--topology", metavar="FILE", help="a TOML topology file instead")
    d.add_argument("--connections", type=int, default=6, help="requests to send (default 6)")
    add_allow_scripts(d)
    d.set_defaults(func=cmd_demo)

    c = sub.add_parser("cleanup", help="reap namespaces and processes left by dead runs")
    c.set_defaults(func=cmd_cleanup)

    e = sub.add_parser("check-env", help="can this machine run labs?")
    e.set_defaults(func=cmd_check_env)

    u = sub.add_parser("up", help="build a lab and leave it running")
    u.add_argument("--name", help="lab name (default: random); namespaces are drl-NAME-HOST")
    u.add_argument("--topology", metavar="FILE", help="a TOML topology file")
    u.add_argument("--rs", type=int, default=2, help="real servers in the default topology")
    add_allow_scripts(u)
    u.add_argument("--scheduler", default="rr", help="IPVS scheduler (default rr)")
    u.add_argument("--services", type=int, metavar="N",
                   help="a scale lab: N virtual services on consecutive VIPs from "
                   "198.18.0.1 (RFC 2544's range), one ipvsadm -R, the client's one "
                   "aggregate route (docs/performance.md)")
    u.add_argument("--vip-holder", choices=("auto", "lo", "dummy"), default="auto",
                   help="with --services: the real servers hold the VIPs on lo or on NOARP "
                   "dummies as kube-proxy does (auto: lo up to 1,024 services)")
    u.add_argument("--scenario", metavar="NAME", help="build a scenario's variant instead: "
                   "the whole DR lab of it (IPVS table, services)")
    u.add_argument("--keepalived", action="append", nargs="?", const="", metavar="FILE",
                   help="two directors under keepalived (VRRP for the VIP, health checks, "
                   "sync); with FILE (once per director) from your own keepalived.conf")
    g = u.add_mutually_exclusive_group()
    g.add_argument("--broken", action="store_true", help="with --scenario: the broken variant")
    g.add_argument("--fixed", action="store_true", help="with --scenario: the fixed variant")
    u.set_defaults(func=cmd_up)

    st = sub.add_parser("status", help="state of a running lab")
    st.add_argument("name", nargs="?", help="lab name (optional if only one runs)")
    st.add_argument("--json", action="store_true", help="machine-readable output")
    st.set_defaults(func=cmd_status)

    ck = sub.add_parser("check", help="census, path proof, VIP neighbour entry and "
                        "distribution on a running lab; exit 1 with each symptom")
    ck.add_argument("name", nargs="?", help="lab name (optional if only one runs)")
    ck.add_argument("--json", action="store_true", help="machine-readable output")
    ck.add_argument("--connections", type=int, default=4, help="connections to prove")
    ck.add_argument("--sample", type=int, metavar="K",
                    help="also prove one connection through each of K services drawn at "
                    "random plus the first and the last (the default, K=8, for a lab of "
                    "more than 64 services)")
    ck.add_argument("--seed", type=int, help="with --sample: the draw's seed (it is printed)")
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
