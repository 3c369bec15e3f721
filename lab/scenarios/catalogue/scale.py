"""Scale: what a kube-proxy-sized IPVS table does to the packets of every service.

* ``estimator-stall-many-services``: before 6.2 the IPVS rate estimator walked every
  service and real server of a namespace from one timer, every 2 s, with its lock
  held. With about 50,000 services that walk held up packet processing for more
  than 200 ms (the motivation of kernel commit 2232642ec3fb, "ipvs: add sysctl
  run_estimation to support disable estimation", 5.18, and of 705dd3444081, "ipvs:
  use kthreads for stats estimation", 6.2); production reports pod latency jitter of
  about 130 ms. Broken: 6.1 (bookworm) with 50,000 services and
  ``net.ipv4.vs.run_estimation=1``; fixed: ``run_estimation=0``; 6.12 (trixie), whose
  estimator is a kthread, is the comparison row (the same two variants there).

  The measure is the latency distribution of short TCP connections (connect, the
  identity line, close) from the client through the director to one normal VIP over
  a window of several estimator passes, first on the idle lab (one service: the
  baseline), then with 50,000 more services in the director's table (loaded with one
  ``ipvsadm -R``, no real servers: only the table's size matters). The symptom is a
  stall: a connection at least :data:`STALL_MS` slower than the baseline's slowest.

  Software emulation (the VM without KVM) may hide the stall or make one of its own:
  this scenario is run by hand (``drlab scenario run estimator-stall-many-services``,
  about two minutes a variant in the VM), not in ``scenario all`` nor in CI, and
  what the kernels did is recorded in observed.json as measured, reproduced or not.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from lab.builder import Lab, sysctl
from lab.errors import LabError
from lab.model import default_dr
from lab.roles import client, director
from lab.scenarios.base import Outcome, Scenario, Variant, register

#: The services loaded into the director's table (kube-proxy's largest clusters).
SERVICES = 50_000
#: The window of each measurement (the estimator runs every 2 s: five passes).
WINDOW_S = 10.0
#: A connection this much slower than the idle baseline's slowest is a stall.
STALL_MS = 100.0


@dataclass(frozen=True)
class Latencies:
    """Connection times in milliseconds over one window."""

    what: str
    ms: list[float]
    failed: int = 0

    def q(self, p: float) -> float:
        s = sorted(self.ms)
        return s[min(len(s) - 1, int(p * len(s)))] if s else float("nan")

    def line(self) -> str:
        return (f"{self.what}: n={len(self.ms)} p50={self.q(0.5):.1f} ms "
                f"p99={self.q(0.99):.1f} ms p99.9={self.q(0.999):.1f} ms "
                f"max={max(self.ms, default=float('nan')):.1f} ms"
                + (f", {self.failed} failed" if self.failed else ""))


def table(services: int) -> str:
    """``ipvsadm -R`` input: ``services`` TCP services from 198.18.0.1 (RFC 2544's
    benchmarking range), no real servers."""
    base = 0xC6120001   # 198.18.0.1
    return "".join(f"-A -t {(base + k) >> 24}.{(base + k) >> 16 & 255}."
                   f"{(base + k) >> 8 & 255}.{(base + k) & 255}:80 -s rr\n"
                   for k in range(services))


def measure(lab: Lab, what: str, seconds: float = WINDOW_S) -> Latencies:
    """Short connections to the lab's VIP, one after another, for ``seconds``."""
    ms: list[float] = []
    failed = 0
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        try:
            ms.append(client.connect(lab, timeout=3.0).seconds * 1000)
        except client.ConnectError:
            failed += 1
    return Latencies(what, ms, failed)


def _stall(lab: Lab, variant: Variant) -> Outcome:
    ns = lab.ns(lab.topology.director.name)
    est = "1" if variant == "broken" else "0"
    try:
        sysctl.write(ns, [("net.ipv4.vs.run_estimation", est)])
    except (LabError, OSError) as e:
        return Outcome(False, [f"net.ipv4.vs.run_estimation: cannot set ({e}): a kernel "
                               "before 5.18 has no such knob"])
    idle = measure(lab, "idle, 1 service")
    t0 = time.monotonic()
    director.ipvsadm(lab, "-R", stdin=table(SERVICES))
    loaded_in = time.monotonic() - t0
    loaded = measure(lab, f"{SERVICES + 1} services, run_estimation={est}")
    worst = max(loaded.ms, default=0.0)
    symptom = worst >= max(idle.ms, default=0.0) + STALL_MS
    return Outcome(symptom, [
        idle.line(), loaded.line(),
        f"{SERVICES} services loaded with one ipvsadm -R in {loaded_in:.1f} s; window "
        f"{WINDOW_S:.0f} s each (the estimator runs every 2 s); stall: a connection "
        f"{STALL_MS:.0f} ms slower than the idle window's slowest",
    ])


register(Scenario(
    name="estimator-stall-many-services",
    symptom="connections through every service stall for 100 ms and more every 2 s",
    trigger=f"{SERVICES} services on a kernel before 6.2 with net.ipv4.vs.run_estimation=1: "
            "the rate estimator walks them all from one timer with its lock held",
    fix="net.ipv4.vs.run_estimation=0 (no rate statistics), or a kernel >= 6.2 (the "
        "estimator runs in kthreads, a chunk at a time)",
    broken=lambda: default_dr(rs=1),
    fixed=lambda: default_dr(rs=1),
    observe=_stall,
    stimulus=f"{SERVICES} services loaded, then connections timed over several estimator "
             "passes",
    source="kernel commit 2232642ec3fb (run_estimation); kernel commit 705dd3444081 "
           "(kthread estimator); Documentation/networking/ipvs-sysctl.rst "
           "(run_estimation); kubernetes/kubernetes#88212",
    by_hand="50,000 services and two 10 s windows a variant; software emulation may hide "
            "or magnify a stall, so its outcome is measured and recorded, not required",
))
