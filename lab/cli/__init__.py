"""The ``drlab`` command (also ``python -m lab``): argument parsing only.

One module per group of verbs, each registering its subcommands and calling
the layer that owns the logic:

* :mod:`lab.cli.labs`      demo, up, status, check, shell, down, cleanup, check-env
* :mod:`lab.cli.scenarios` scenarios, scenario run, validate
* :mod:`lab.cli.cluster`   import, diagnose (the operator's own cluster)
* :mod:`lab.cli.gate`      gate (a config change checked on the cluster's twin)
* :mod:`lab.cli.sweeps`    matrix, kernels run|merge|fetch|list
* :mod:`lab.cli.vm`        vm start|status|stop (a VM that stays up)

Exit codes: 0 success; 1 a check failed (or a wait ran out); 2 bad input (usage, topology);
3 the machine cannot run the lab (not root, no ipvsadm, no IPVS: see
scripts/vm-run); 124 (in a VM) the command succeeded but the kernel warned
(lab.machine.dmesg); 130 interrupted.

Options that name a file the verb writes are marked (:func:`writes`): a command that
runs in a VM (``scripts/drlab`` on a kernel without IPVS) is refused before it runs
when such a file would land outside what the VM writes through to the host
(:func:`written_paths`, :func:`lab.machine.vm.check_written`).
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import sys
from collections.abc import Sequence
from typing import NoReturn

from lab.errors import LabError
from lab.util import SCALE_ERROR, Progress, Timeout


class _Parser(argparse.ArgumentParser):
    """argparse with the README's promise: bad usage is one line on stderr, exit 2."""

    def error(self, message: str) -> NoReturn:
        sys.stderr.write(f"{self.prog}: error: {message} (try --help)\n")
        sys.exit(2)


#: Progress lines on stderr (stdout carries the result): messages, and done/total
#: with elapsed time and an estimate for the long verbs.
progress = Progress(enabled=True)


def writes(parser: argparse.ArgumentParser, *flags: str) -> None:
    """Mark ``parser``'s options ``flags`` (long ones) as naming files it writes."""
    had = parser.get_default("written") or ()
    parser.set_defaults(written=(*had, *((f, f.lstrip("-").replace("-", "_"))
                                         for f in flags)))


def written_paths(argv: Sequence[str]) -> list[tuple[str, str]]:
    """The files (or directories) ``drlab ARGV`` would write, as (option, path); none if
    ARGV does not parse (the command itself then says why)."""
    with contextlib.redirect_stderr(io.StringIO()), contextlib.redirect_stdout(io.StringIO()):
        try:
            args = build_parser().parse_args(list(argv))
        except SystemExit:
            return []
    return [(flag, value) for flag, dest in getattr(args, "written", ())
            if isinstance(value := getattr(args, dest, None), str) and value not in ("", "-")]


def build_parser() -> argparse.ArgumentParser:
    # lazy: import cycle: the verb modules import main, progress, writes from lab.cli
    from lab.cli import cluster, gate, labs, scenarios, sweeps, vm

    p = _Parser(prog="drlab", description="LVS Direct Routing lab in network namespaces, "
                "with a real IPVS director.")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND",
                           parser_class=_Parser)
    for module in (labs, scenarios, cluster, gate, sweeps, vm):
        module.add_parsers(sub)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if SCALE_ERROR is not None:
        print(f"drlab: error: {SCALE_ERROR}", file=sys.stderr)
        return 2
    try:
        return int(args.func(args))
    except LabError as e:
        print(f"drlab: error: {e}", file=sys.stderr)
        return e.exit_code
    except Timeout as e:  # a wait that ran out (links, an election, a service): its what
        print(f"drlab: error: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("drlab: interrupted; lab torn down", file=sys.stderr)
        return 130
    except BrokenPipeError:  # `drlab scenarios | head`: the reader left, nothing to say

        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
