"""Benchmarks (``scripts/bench``): the lab against a pyroute2 floor and the shell approach.

    python -m lab.sweep.bench [--repeat N] [--json FILE] [--scale 2,8,32,64]
    python -m lab.sweep.bench --services 1000,10000,50000 [--shell-max N] [--json FILE]

All variants build the same default DR network (client, director, N real
servers on one bridge: namespaces, veths, addresses, routes, the pinned
sysctls, the VIP; the IPVS table when the kernel has IPVS) and tear it down:

* ``lab``:   ``Lab(default_dr(rs=N)).build()`` (+ ``ipvsadm -R``) and teardown;
* ``floor``: a minimal pyroute2 script doing the same kernel operations with
  no lab machinery (no model, no validation, no ownership records);
* ``shell``: one ``ip``/``sysctl``/``ipvsadm`` process per operation, as the
  kernel's IPVS selftest does.

With IPVS, a second comparison goes from nothing to a verified DR connection
and back:

* ``lab``:   ``up(default_dr())``, an ARP census of the VIP, one connection
  and a path proof of it (``lab.probes.path.prove``), teardown;
* ``shell``: the same network and IPVS table one process per command, a
  ``busybox nc`` listener on each real server, the selftest's ``sleep 1``
  before the client connects, a check that a real server answered, teardown.

Prints medians and ratios measured in this one run; never used in pass/fail tests.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import platform
import shlex
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from typing import Any

from pyroute2 import IPRoute
from pyroute2 import netns as p2netns

from lab.builder import Lab
from lab.builder import netns as lab_netns
from lab.builder.sysctl import plan
from lab.machine.preflight import ipvs_available
from lab.model import Topology, default_dr


def _ops(rs: int, tag: str) -> dict[str, Any]:
    """The operations of the default DR network, as plain data all variants share."""
    t = default_dr(rs=rs)
    hosts = []
    for h in t.hosts:
        hosts.append({"ns": f"drb-{tag}-{h.name}", "name": h.name,
                      "addrs": [a.cidr for a in h.interfaces[0].addresses],
                      "lo": [a.cidr for a in h.lo],
                      "sysctls": plan(["eth0"], h.sysctls)})
    return {"switch": f"drb-{tag}-sw", "hosts": hosts,
            "ipvs": [line for line in _rules(t).splitlines() if line]}


def _rules(t: Topology) -> str:
    # lazy: loaded only when _rules() runs (+45 modules, ~20 ms)
    from lab.roles.director import restore_rules

    return restore_rules(t)


# -- lab ------------------------------------------------------------------------
def run_lab(rs: int, with_ipvs: bool) -> None:
    # lazy: loaded only when run_lab() runs (+45 modules, ~20 ms)
    from lab.roles import director

    lab = Lab(default_dr(rs=rs)).build()
    try:
        if with_ipvs:
            director.configure(lab)
    finally:
        lab.teardown()


# -- floor: bare pyroute2 ---------------------------------------------------------
def run_floor(rs: int, with_ipvs: bool) -> None:
    ops = _ops(rs, f"f{os.getpid()}")
    names = [ops["switch"]] + [h["ns"] for h in ops["hosts"]]
    for n in names:
        p2netns.create(n)
    try:
        sw = IPRoute(netns=ops["switch"])
        sw.link("add", ifname="br0", kind="bridge")
        br = sw.link_lookup(ifname="br0")[0]
        sw.link("set", index=br, state="up")
        for h in ops["hosts"]:
            fd = os.open(f"/run/netns/{h['ns']}", os.O_RDONLY)
            sw.link("add", ifname=h["name"], kind="veth",
                    peer={"ifname": "eth0", "net_ns_fd": fd})
            os.close(fd)
            sw.link("set", index=sw.link_lookup(ifname=h["name"])[0], master=br, state="up")
            p2netns.pushns(h["ns"])
            try:
                for k, v in h["sysctls"]:
                    with open("/proc/sys/" + k.replace(".", "/"), "w") as f:
                        f.write(v)
            finally:
                p2netns.popns()
            with IPRoute(netns=h["ns"]) as ipr:
                ipr.link("set", index=1, state="up")
                for cidr in h["lo"]:
                    a, p = cidr.split("/")
                    ipr.addr("add", index=1, address=a, prefixlen=int(p))
                idx = ipr.link_lookup(ifname="eth0")[0]
                for cidr in h["addrs"]:
                    a, p = cidr.split("/")
                    ipr.addr("add", index=idx, address=a, prefixlen=int(p))
                ipr.link("set", index=idx, state="up")
        sw.close()
        if with_ipvs:
            director_ns = next(h["ns"] for h in ops["hosts"] if h["name"] == "director")
            subprocess.run(["ip", "netns", "exec", director_ns, "ipvsadm", "-R"],
                           input="\n".join(["-C", *ops["ipvs"]]) + "\n", text=True, check=True)
    finally:
        for n in names:
            p2netns.remove(n)


# -- shell: one process per operation ------------------------------------------------
def shell_script(ops: dict[str, Any], with_ipvs: bool) -> tuple[str, str]:
    up, down = [], []
    sw = ops["switch"]
    up += [f"ip netns add {sw}", f"ip -n {sw} link add br0 type bridge",
           f"ip -n {sw} link set br0 up"]
    down.append(f"ip netns del {sw}")
    for h in ops["hosts"]:
        ns, name = h["ns"], h["name"]
        up.append(f"ip netns add {ns}")
        down.append(f"ip netns del {ns}")
        up.append(f"ip -n {sw} link add {name} type veth peer name eth0 netns {ns}")
        up.append(f"ip -n {sw} link set {name} master br0 up")
        up += [f"ip netns exec {ns} sysctl -qw {k}={v}" for k, v in h["sysctls"]]
        up.append(f"ip -n {ns} link set lo up")
        up += [f"ip -n {ns} addr add {c} dev lo" for c in h["lo"]]
        up += [f"ip -n {ns} addr add {c} dev eth0" for c in h["addrs"]]
        up.append(f"ip -n {ns} link set eth0 up")
        if with_ipvs and name == "director":
            up += [f"ip netns exec {ns} ipvsadm {rule}" for rule in ops["ipvs"]]
    return "set -e\n" + "\n".join(up) + "\n", "\n".join(down) + "\n"


def run_shell(rs: int, with_ipvs: bool) -> None:
    up, down = shell_script(_ops(rs, f"s{os.getpid()}"), with_ipvs)
    try:
        subprocess.run(["bash", "-c", up], check=True)
    finally:
        subprocess.run(["bash", "-c", down], check=False, stderr=subprocess.DEVNULL)


def run_lab_verified(rs: int) -> None:
    # lazy: loaded only when run_lab_verified() runs (+53 modules, ~30 ms)
    from lab.probes import arp, path
    from lab.roles import up

    lab = up(default_dr(rs=rs))
    try:
        c = arp.census(lab)
        if c.hosts != {"director"}:
            raise RuntimeError(f"census: {c}")
        proof = path.prove(lab, connections=1)
        if proof.problems:
            raise RuntimeError("path proof: " + "; ".join(proof.problems))
    finally:
        lab.teardown()


def run_shell_verified(rs: int) -> None:
    ops = _ops(rs, f"v{os.getpid()}")
    up, down = shell_script(ops, True)
    vip = default_dr(rs=rs).main_service.vip
    ns = {h["name"]: h["ns"] for h in ops["hosts"]}
    servers = [n for n in ns if n.startswith("rs")]
    check = "\n".join(
        [*(f"ip netns exec {ns[r]} sh -c 'echo {r} | busybox nc -l -p 80' & pids=\"$pids $!\""
           for r in servers),
         "sleep 1",  # as the kernel's ipvs.sh does before its client connects
         f"out=$(ip netns exec {ns['client']} busybox nc -w 2 {vip} 80 </dev/null)",
         "kill $pids 2>/dev/null; wait",
         'case $out in rs*) ;; *) echo "no answer: $out" >&2; exit 1 ;; esac'])
    try:
        subprocess.run(["bash", "-c", up + "pids=\n" + check], check=True)
    finally:
        subprocess.run(["bash", "-c", down], check=False, stderr=subprocess.DEVNULL)


def timed(fn: Callable[[], None], repeat: int) -> float:
    """Median wall time of ``repeat`` runs (after one warm-up)."""
    fn()
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def vm_commands(repeat: int, out: str | None) -> int:
    """``scripts/bench --vm-commands``: the commands users type, timed as they type them
    (``scripts/drlab``, host interpreter and all), against the shell DR case measured
    in the same VM in the same run."""
    # lazy: loaded only when vm_commands() runs (+6 modules, ~4 ms)
    from lab.machine import vm

    repo = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    drlab = [os.path.join(repo, "scripts", "drlab")]
    started = False
    if not vm.running():
        print("starting the VM that stays up (not timed) ...")
        vm.start()
        started = True
    try:
        share = vm.VM_DIR / "out" / "bench-shell.json"
        rc = vm.run_remote(["--shell-dr", str(repeat), "--json", str(share)],
                           module="lab.sweep.bench")
        if rc != 0:
            return rc
        shell = json.loads(share.read_text())
        share.unlink()

        def cmd(*a: str) -> float:
            t0 = time.perf_counter()
            subprocess.run([*drlab, *a], check=True, stdout=subprocess.DEVNULL)
            return time.perf_counter() - t0
        updown, checks = [], []
        for i in range(repeat + 1):  # the first of each is the warm-up
            up = cmd("up", "--name", f"drbench{i}")
            checks.append(cmd("check", f"drbench{i}"))
            updown.append(up + cmd("down", f"drbench{i}"))
        res = {"kernel": shell["kernel"], "repeat": repeat,
               "shell_dr_seconds": shell["shell_dr_seconds"],
               "check_seconds": statistics.median(checks[1:]),
               "up_down_seconds": statistics.median(updown[1:])}
        res["check_vs_shell"] = res["check_seconds"] / res["shell_dr_seconds"]
        res["up_down_vs_shell"] = res["up_down_seconds"] / res["shell_dr_seconds"]
        print(f"in the VM that stays up (kernel {res['kernel']}), median of {repeat}, "
              "host commands timed whole (scripts/drlab, interpreter included):")
        print(f"  the kernel-selftest-style shell DR case in the VM: "
              f"{res['shell_dr_seconds']:.2f} s")
        print(f"  scripts/drlab check on a running lab: {res['check_seconds']:.2f} s = "
              f"{res['check_vs_shell']:.2f}x the shell case (target <= 0.3)")
        print(f"  scripts/drlab up + down: {res['up_down_seconds']:.2f} s = "
              f"{res['up_down_vs_shell']:.2f}x the shell case (target <= 0.5)")
        if out:
            with open(out, "w") as f:
                json.dump(res, f, indent=1)
        return 0
    finally:
        if started:
            vm.stop()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="scripts/bench", description=__doc__.split("\n")[0])
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--rs", type=int, default=2, help="real servers in the comparison")
    ap.add_argument("--scale", default="2,8,32,64", help="real-server counts for scaling")
    ap.add_argument("--json", metavar="FILE")
    ap.add_argument("--vm-commands", action="store_true",
                    help="on a host without IPVS: time scripts/drlab up, check and down "
                         "through the VM that stays up against the shell DR case in it")
    ap.add_argument("--services", metavar="N,N,...",
                    help="scale labs instead: build and tear down labs of N services each "
                    "(e.g. 1000,10000,50000) against ipvsadm -R alone and the shell way; "
                    "slab use and peak RSS (lab/sweep/scalebench.py)")
    ap.add_argument("--shell-max", type=int, default=1000, metavar="N",
                    help="with --services: time the shell way up to N services (default "
                    "1000: one process per address and rule is slow)")
    ap.add_argument("--shell-dr", type=int, metavar="N", help=argparse.SUPPRESS)
    ap.add_argument("--one-size", type=int, help=argparse.SUPPRESS)
    ap.add_argument("--shell", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.one_size or args.services:
        # lazy: only the scale benchmark needs it (+1 module)
        from lab.sweep import scalebench

        if args.one_size:
            return scalebench.one(args.one_size, args.shell, args.json)
        try:
            sizes = [int(x) for x in args.services.split(",")]
        except ValueError:
            ap.error(f"--services {args.services!r}: sizes like 1000,10000,50000")
        if not sizes or min(sizes) < 1:
            ap.error("--services: sizes of at least 1")
        return scalebench.run(sorted(sizes), args.shell_max, args.json)
    if args.shell_dr:  # in the VM, for --vm-commands
        s = timed(lambda: run_shell_verified(args.rs), args.shell_dr)
        print(f"shell DR case (one process per command, sleep 1, busybox nc): {s:.2f} s")
        if args.json:
            with open(args.json, "w") as f:
                json.dump({"shell_dr_seconds": s, "kernel": platform.release()}, f)
        return 0
    if args.vm_commands:
        return vm_commands(args.repeat, args.json)
    with_ipvs = ipvs_available()
    res: dict[str, object] = {
        "kernel": platform.release(), "ipvs": with_ipvs, "repeat": args.repeat,
        "cpus": os.cpu_count(), "in_vm": os.environ.get("DRLAB_IN_VM") == "1"}
    print(f"kernel {res['kernel']}, IPVS {'yes' if with_ipvs else 'no (network only)'}, "
          f"{res['cpus']} CPUs, median of {args.repeat}")
    t = {name: timed(functools.partial(f, args.rs, with_ipvs), args.repeat)
         for name, f in (("lab", run_lab), ("floor", run_floor), ("shell", run_shell))}
    res["build_teardown_seconds"] = t
    res["lab_vs_floor"] = t["lab"] / t["floor"]
    res["shell_vs_lab"] = t["shell"] / t["lab"]
    print(f"default DR lab ({args.rs} real servers) build + teardown:")
    for k, v in t.items():
        print(f"  {k:<6} {v * 1000:8.1f} ms")
    print(f"  lab / floor = {t['lab'] / t['floor']:.2f}x (target <= 1.5)")
    print(f"  shell / lab = {t['shell'] / t['lab']:.1f}x faster (target >= 5)")
    if with_ipvs:
        vt = {name: timed(functools.partial(f, args.rs), args.repeat)
              for name, f in (("lab", run_lab_verified), ("shell", run_shell_verified))}
        res["verified_connection_seconds"] = vt
        res["verified_lab_vs_shell"] = vt["lab"] / vt["shell"]
        print("from nothing to a verified DR connection and back (census + connection + "
              "path proof; shell: its own connection check):")
        for k, x in vt.items():
            print(f"  {k:<6} {x * 1000:8.1f} ms")
        print(f"  lab / shell = {vt['lab'] / vt['shell']:.2f} (target <= 0.2)")
    else:
        print("from nothing to a verified DR connection: needs IPVS (scripts/bench in the VM)")
    scale: dict[int, float] = {}
    for n in (int(x) for x in args.scale.split(",")):
        scale[n] = timed(functools.partial(run_lab, n, with_ipvs), max(1, args.repeat // 2))
        print(f"  lab with {n:>3} real servers: {scale[n] * 1000:8.1f} ms "
              f"({scale[n] / n * 1000:.1f} ms per real server)")
    res["scaling_seconds"] = scale
    ns = sorted(scale)
    if len(ns) >= 2 and 8 in scale:
        ratio = res["per_rs_ratio_max_vs_8"] = (scale[ns[-1]] / ns[-1]) / (scale[8] / 8)
        print(f"  per-server cost at {ns[-1]} vs 8: {ratio:.2f}x "
              "(target <= 1.3)")
    left = [n for n in lab_netns.listing() if n.startswith("drb-")]
    if left:
        print("bench left namespaces behind: " + " ".join(shlex.quote(n) for n in left))
        return 1
    if args.json:
        with open(args.json, "w") as f:
            json.dump(res, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
