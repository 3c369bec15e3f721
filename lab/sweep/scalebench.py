"""``scripts/bench --services 1000,10000,50000``: scale labs built, measured, torn down.

For each size N, in a process of its own (its peak RSS is its own):

* ``lab``: ``Lab(many_services(N)).build()`` and ``director.configure`` (one
  ``ipvsadm -R``), then teardown, each timed; seconds per service, and the cost
  per service at the largest size against the smallest (flat is linear);
* ``floor``: the ``ipvsadm -R`` of the same table alone (what the lab's build
  cannot beat);
* ``shell`` (sizes up to ``--shell-max``): the same lab built without its VIPs and
  services, then one ``ip addr add`` per VIP per host and one ``ipvsadm -A`` /
  ``-a`` per service and real server, as a shell script does it;
* memory: the ``ip_vs_conn`` and ``ip_vs_dest`` slabs from ``/proc/slabinfo``
  (bytes in use, after the build against before it) and the process's peak RSS.

Prints the figures and their ratios; never used in pass/fail tests.
"""

from __future__ import annotations

import dataclasses
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass

from lab.builder import Lab
from lab.machine.preflight import ipvs_available
from lab.model import Topology
from lab.model.scale import many_services

SLABS = ("ip_vs_conn", "ip_vs_dest")


def slab_bytes() -> dict[str, int | None]:
    """Bytes in use by each of :data:`SLABS` (active objects x object size); None when
    the kernel merged the cache into another (it is then not listed)."""
    out: dict[str, int | None] = dict.fromkeys(SLABS)
    try:
        with open("/proc/slabinfo") as f:
            for line in f:
                p = line.split()
                if p and p[0] in out:
                    out[p[0]] = int(p[1]) * int(p[3])
    except OSError:
        pass
    return out


@dataclass
class SizeResult:
    services: int
    build_seconds: float
    teardown_seconds: float
    floor_seconds: float | None  # the ipvsadm -R of the table alone (None: no IPVS)
    shell_seconds: float | None  # the shell way, build without VIPs + per-item commands
    lab_for_shell_seconds: float | None  # the lab's build measured beside the shell way
    slab_bytes: dict[str, int | None]
    peak_rss_kib: int

    @property
    def per_service_us(self) -> float:
        return self.build_seconds / self.services * 1e6


def _bare(t: Topology) -> Topology:
    """``t`` without its VIPs and services (the shell way adds them itself)."""
    t = dataclasses.replace(t, services=[])
    for h in t.hosts:
        h.lo = []
        h.dummies = [dataclasses.replace(d, addresses=[]) for d in h.dummies]
    return t


def shell_way(n: int, with_ipvs: bool) -> float:
    """Build the network of a lab of ``n`` services without its VIPs and services (the
    lab, untimed), then time one ``ip addr add`` per VIP per host and one ``ipvsadm``
    per service and real server, in one bash script (one process per command)."""
    # lazy: the director role loads with the roles (+45 modules, ~20 ms)
    from lab.roles import director

    t = many_services(n)
    lab = Lab(_bare(many_services(n))).build()
    try:
        lines = ["set -e"]
        for h in t.hosts:
            ns = lab.ns(h.name)
            lines += [f"ip -n {ns} addr add {a.cidr} dev lo" for a in h.lo]
            lines += [f"ip -n {ns} addr add {a.cidr} dev {d.name}"
                      for d in h.dummies for a in d.addresses]
        dns = lab.ns("director")
        if with_ipvs:
            for rule in director.restore_rules(t).splitlines():
                lines.append(f"ip netns exec {dns} ipvsadm {rule}")
        t0 = time.perf_counter()
        subprocess.run(["bash"], input="\n".join(lines) + "\n", text=True, check=True)
        return time.perf_counter() - t0
    finally:
        lab.teardown()


def one_size(n: int, shell: bool) -> SizeResult:
    """Measure size ``n`` in this process (see the module's doc)."""
    # lazy: the director role loads with the roles (+45 modules, ~20 ms)
    from lab.roles import director

    with_ipvs = ipvs_available()
    before = slab_bytes()
    t0 = time.perf_counter()
    lab = Lab(many_services(n)).build()
    floor = None
    try:
        if with_ipvs:
            director.configure(lab)
        built = time.perf_counter() - t0
        after = slab_bytes()
        if with_ipvs:
            rules = director.restore_rules(lab.topology)
            director.ipvsadm(lab, "-C")
            t1 = time.perf_counter()
            director.ipvsadm(lab, "-R", stdin=rules)  # the floor: into an empty table
            floor = time.perf_counter() - t1
    finally:
        t2 = time.perf_counter()
        lab.teardown()
        down = time.perf_counter() - t2
    sh = lab_again = None
    if shell:
        sh = shell_way(n, with_ipvs)
        t3 = time.perf_counter()
        lab = Lab(many_services(n)).build()
        try:
            if with_ipvs:
                director.configure(lab)
            lab_again = time.perf_counter() - t3
        finally:
            lab.teardown()
    slabs: dict[str, int | None] = {}
    for k in SLABS:
        a = after[k]
        slabs[k] = None if a is None else a - (before[k] or 0)
    return SizeResult(n, built, down, floor, sh, lab_again, slabs,
                      resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)


def run(sizes: list[int], shell_max: int, out: str | None) -> int:
    """Each size in a child process; print the table and the ratios."""
    results: list[SizeResult] = []
    print(f"kernel {platform.release()}, {os.cpu_count()} CPUs, IPVS "
          f"{'yes' if ipvs_available() else 'no (the network only: no table, no floor)'}; "
          "scale labs (2 real servers, VIPs from 198.18.0.1), one run per size, each in its "
          "own process")
    for n in sizes:
        with tempfile.NamedTemporaryFile(suffix=".json") as tmp:
            subprocess.run([sys.executable, "-m", "lab.sweep.bench", "--one-size", str(n),
                            *(["--shell"] if n <= shell_max else []), "--json", tmp.name],
                           check=True)
            with open(tmp.name) as f:
                d = json.load(f)
        results.append(SizeResult(**d))
    print(f"{'services':>9} {'build s':>9} {'µs/svc':>8} {'down s':>7} {'ipvsadm -R s':>13} "
          f"{'build/floor':>11} {'shell s':>8} {'shell/lab':>9} {'ip_vs_dest':>11} "
          f"{'ip_vs_conn':>11} {'peak RSS':>9}")
    for r in results:
        def kib(b: int | None) -> str:
            return "merged" if b is None else f"{b // 1024} KiB"
        shell = f"{r.shell_seconds:.1f}" if r.shell_seconds is not None else "-"
        ratio = (f"{r.shell_seconds / r.lab_for_shell_seconds:.1f}x"
                 if r.shell_seconds is not None and r.lab_for_shell_seconds else "-")
        floor = "-" if r.floor_seconds is None else f"{r.floor_seconds:.2f}"
        over = "-" if r.floor_seconds is None else f"{r.build_seconds / r.floor_seconds:.1f}x"
        print(f"{r.services:>9,} {r.build_seconds:>9.2f} {r.per_service_us:>8.0f} "
              f"{r.teardown_seconds:>7.2f} {floor:>13} {over:>11} {shell:>8} {ratio:>9} "
              f"{kib(r.slab_bytes['ip_vs_dest']):>11} {kib(r.slab_bytes['ip_vs_conn']):>11} "
              f"{r.peak_rss_kib // 1024:>6} MiB")
    lo, hi = results[0], results[-1]
    summary: dict[str, float] = {}
    if len(results) > 1:
        summary["build_per_service_ratio"] = hi.per_service_us / lo.per_service_us
        summary["teardown_per_service_ratio"] = ((hi.teardown_seconds / hi.services)
                                                 / (lo.teardown_seconds / lo.services))
        print(f"cost per service at {hi.services:,} vs {lo.services:,}: build "
              f"{summary['build_per_service_ratio']:.2f}x, teardown "
              f"{summary['teardown_per_service_ratio']:.2f}x (flat = linear; target <= 1.5)")
    shelled = [r for r in results if r.shell_seconds is not None and r.lab_for_shell_seconds]
    for r in shelled:
        assert r.shell_seconds is not None and r.lab_for_shell_seconds is not None
        summary[f"shell_vs_lab_{r.services}"] = r.shell_seconds / r.lab_for_shell_seconds
        print(f"the shell way at {r.services:,} services: {r.shell_seconds:.1f} s for the VIPs "
              f"(and the table, with IPVS) alone, the lab's whole build "
              f"{r.lab_for_shell_seconds:.1f} s: "
              f"the lab is {r.shell_seconds / r.lab_for_shell_seconds:.1f}x faster")
    if out:
        with open(out, "w") as fo:
            json.dump({"kernel": platform.release(), "cpus": os.cpu_count(),
                       "sizes": [dataclasses.asdict(r) for r in results], **summary}, fo,
                      indent=1)
    return 0


def one(n: int, shell: bool, out: str) -> int:
    r = one_size(n, shell)
    with open(out, "w") as f:
        json.dump(dataclasses.asdict(r), f)
    print(f"  measured {n:,} services: {json.dumps(dataclasses.asdict(r))}", flush=True)
    return 0
