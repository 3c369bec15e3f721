"""The VM that stays up: vm start|status|stop (and the two ends of a command in it)."""

from __future__ import annotations

import argparse
import importlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

from lab.cli import main, progress, written_paths
from lab.machine import preflight


def cmd_vm_start(args: argparse.Namespace) -> int:
    # lazy: only this verb needs it, not every drlab run (+251 modules, ~100 ms; pyroute2)
    from lab.machine import vm

    s = vm.start(args.kernel, args.memory, args.accel, progress)
    print(s.text())
    print("labs built now stay up between commands: scripts/drlab up, status, check, "
          "shell, down ...; scripts/drlab vm stop ends the VM and every lab in it")
    return 0


def cmd_vm_status(args: argparse.Namespace) -> int:
    # lazy: only this verb needs it, not every drlab run (+251 modules, ~100 ms; pyroute2)
    from lab.machine import vm

    s = vm.status()
    print(s.text())
    return 0 if s.running else 1


def cmd_vm_stop(args: argparse.Namespace) -> int:
    # lazy: only this verb needs it, not every drlab run (+251 modules, ~100 ms; pyroute2)
    from lab.machine import vm

    preflight.require_root()
    print(vm.stop())
    return 0


def cmd_vm_run(args: argparse.Namespace) -> int:
    """The host end of a command in the VM (scripts/drlab calls it)."""
    # lazy: only this verb needs it, not every drlab run (+251 modules, ~90 ms; pyroute2)
    from lab.machine import vm

    argv = list(args.argv)
    if argv[:1] == ["--"]:
        argv = argv[1:]
    vm.check_written(written_paths(argv))
    return vm.run_remote(argv, stdin=args.stdin)


def cmd_vm_check_written(args: argparse.Namespace) -> int:
    """(scripts/drlab, before a one-shot VM) refuse a command whose files the VM would
    lose (exit 2, one line)."""
    # lazy: only this verb needs it, not every drlab run (+251 modules, ~100 ms; pyroute2)
    from lab.machine import vm

    argv = list(args.argv)
    if argv[:1] == ["--"]:
        argv = argv[1:]
    vm.check_written(written_paths(argv))
    return 0


def cmd_vm_serve(args: argparse.Namespace) -> int:
    """The guest end: the VM's server (vm start runs it in the VM)."""
    # lazy: only this verb needs it, not every drlab run (+251 modules, ~100 ms; pyroute2)
    from lab.machine import vm

    vm.note(Path(args.dir), "the server runs")  # a sign of life for vm start, early

    return vm.serve(Path(args.dir), main, _warm, args.kmsg)


def _warm(note: Callable[[str], None]) -> None:
    """Import what the verbs use, once, before the server says it is ready; ``note``
    each (vm start waits as long as they come)."""
    for name in ("lab.cli.cluster", "lab.cli.labs", "lab.cli.scenarios", "lab.cli.sweeps",
                 "lab.model.collected", "lab.probes.labcheck", "lab.probes.dump",
                 "lab.report.html", "lab.roles", "lab.scenarios.diagnose",
                 "lab.scenarios.validate", "lab.sweep.matrix", "scapy.all"):
        importlib.import_module(name)
        note(f"imported {name}")


def add_parsers(sub: Any) -> None:
    v = sub.add_parser("vm", help="a VM that stays up, for labs across commands on a "
                       "kernel without IPVS: vm start|status|stop")
    vs = v.add_subparsers(dest="action", required=True, metavar="ACTION")
    st = vs.add_parser("start", help="boot it (a Debian kernel with IPVS) with a warm "
                       "interpreter in it")
    st.add_argument("--kernel", metavar="VMLINUZ", help="the kernel image (default: the "
                    "newest /boot/vmlinuz-* with IPVS modules)")
    st.add_argument("--memory", default="2G", help="the VM's memory (default 2G)")
    st.add_argument("--accel", choices=["auto", "kvm", "tcg"], default="auto",
                    help="KVM or software emulation (default auto: KVM if a test boot "
                         "with it works; see scripts/vm-run)")
    st.set_defaults(func=cmd_vm_start)
    vs.add_parser("status", help="whether it runs (exit 1 if not)").set_defaults(
        func=cmd_vm_status)
    vs.add_parser("stop", help="end it and every lab in it").set_defaults(func=cmd_vm_stop)
    rn = vs.add_parser("run", help="(scripts/drlab) run `drlab ARGS` in the VM")
    rn.add_argument("--stdin", action="store_true", help="forward this terminal's input")
    rn.add_argument("argv", nargs=argparse.REMAINDER)
    rn.set_defaults(func=cmd_vm_run)
    cw = vs.add_parser("check-written", help="(scripts/drlab) refuse `drlab ARGS` if a "
                       "file it writes would be lost in a one-shot VM")
    cw.add_argument("argv", nargs=argparse.REMAINDER)
    cw.set_defaults(func=cmd_vm_check_written)
    se = vs.add_parser("serve", help="(in the VM) the server vm start runs")
    se.add_argument("dir")
    se.add_argument("--kmsg", metavar="PATH", help="watch this kernel log (vm start: "
                    "/dev/kmsg): a command that succeeded while it warned ends with 124")
    se.set_defaults(func=cmd_vm_serve)
