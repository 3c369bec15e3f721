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

from lab.errors import LabError, TopologyError


def _topology(args: argparse.Namespace):  # type: ignore[no-untyped-def]
    from lab.model import default_dr, load_topology

    if getattr(args, "topology", None):
        return load_topology(args.topology)
    return default_dr(rs=args.rs, scheduler=args.scheduler).validate()


def cmd_demo(args: argparse.Namespace) -> int:
    """Build the default DR lab, run its checks, print a report, tear down."""
    from lab import preflight

    topology = _topology(args)  # bad input first: it needs no root
    if topology.service is None:
        raise TopologyError("the topology has no [service]: nothing to demonstrate")
    if args.connections < 1:
        raise TopologyError("--connections must be at least 1")
    preflight.require_ipvs()

    from lab.report import demo_report
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
    from lab import preflight
    from lab.builder import ownership

    preflight.require_root()
    removed = ownership.reap()
    print("\n".join(removed) if removed else "nothing to clean up")
    return 0


def cmd_check_env(args: argparse.Namespace) -> int:
    """Say whether this machine can run labs, and what is missing."""
    from lab import preflight
    from lab.errors import PreflightError

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
