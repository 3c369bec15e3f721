"""Scale labs: thousands of virtual services built, proven by sample, torn down (#27).

The IPVS test builds 5,000 services (the CI-affordable size; the 50,000-service
lab is run by hand, docs/performance.md). The netns tests need no IPVS.
"""

import os
import signal
import subprocess
import sys
import time

import pytest

from lab.builder import Lab, addresses, netns, ownership
from lab.errors import LabError
from lab.model import Address
from lab.model.scale import many_services
from lab.probes.labcheck import check
from lab.roles import director, up
from lab.util import wait_for


@pytest.mark.ipvs
def test_5000_services_up_sampled_check_down(drlab_ipvs):
    t0 = time.perf_counter()
    lab = up(many_services(5000))
    try:
        built = time.perf_counter() - t0
        table = director.ipvsadm(lab, "-Ln")
        assert sum(line.startswith("TCP ") for line in table.splitlines()) == 5000
        res = check(lab, connections=2, sample=4, seed=27)
        assert res.ok, res.text()
        keys = [s.key for s in res.sampled]
        assert keys[0] == "198.18.0.1:80/tcp" and keys[-1] == "198.18.19.136:80/tcp"
        assert len(keys) == 6 and all(s.proof.connections for s in res.sampled)
        assert "sampled: 6 of 5,000 services proven" in res.text()
        routes = subprocess.run(["ip", "-n", lab.ns("client"), "route", "show"],
                                capture_output=True, text=True, check=True).stdout
        assert "198.18.0.0/19 via 192.0.2.2" in routes and routes.count("198.18.") == 1
        names = list(lab.namespaces.values())
    finally:
        t1 = time.perf_counter()
        lab.teardown()
    print(f"5,000 services: up {built:.1f} s, teardown {time.perf_counter() - t1:.1f} s")
    assert not [n for n in names if netns.exists(n)]


@pytest.mark.netns
def test_batched_addresses_on_lo_and_the_refused_one_named(drlab_netns):
    ns = drlab_netns
    vips = [Address(f"198.18.{i // 250}.{i % 250 + 1}/32") for i in range(2500)]
    assert addresses.add(ns, [(1, a) for a in vips], batch=1000) == 2500
    out = subprocess.run(["ip", "-n", ns, "-4", "-o", "addr", "show", "dev", "lo"],
                         capture_output=True, text=True, check=True).stdout
    assert out.count("198.18.") == 2500
    # one already there in the middle of a batch: the kernel says so, it is named
    with pytest.raises(LabError, match=r"adding 198\.18\.0\.7/32 .* File exists"):
        addresses.add(ns, [(1, Address("192.0.2.1/32")), (1, vips[6]),
                           (1, Address("192.0.2.2/32"))])


@pytest.mark.netns
def test_scale_lab_builds_on_this_kernel(lab_factory):
    """No IPVS needed for the network: 2,000 services on dummies (or their veth
    stand-ins where the kernel has no dummy driver), every VIP held."""
    lab: Lab = lab_factory(many_services(2000, holder="dummy"), roles=False)
    for host in ("director", "rs1", "rs2"):
        out = subprocess.run(["ip", "-n", lab.ns(host), "-4", "-o", "addr", "show"],
                             capture_output=True, text=True, check=True).stdout
        assert out.count(" 198.18.") == 2000, host


@pytest.mark.netns
@pytest.mark.subprocess
def test_sigkill_mid_build_then_cleanup_leaves_nothing():
    """A scale lab's owner killed (SIGKILL: no handler runs) while it adds the VIPs:
    its namespaces were recorded before they were made, so cleanup removes them all
    (the dummies and the 3,000 addresses with them)."""
    name = f"scalek{os.getpid() % 10000}"
    code = ("from lab.builder import Lab; from lab.model.scale import many_services; "
            f"Lab(many_services(3000, holder='dummy', rs=4), name={name!r}).build(); "
            "import time; time.sleep(600)")
    p = subprocess.Popen([sys.executable, "-c", code])
    try:
        def mid_build():
            rec = ownership.find(name)
            return rec if rec and netns.exists(f"drl-{name}-rs1") else None
        rec = wait_for(mid_build, timeout=60, what="the child to start building")
        os.kill(p.pid, signal.SIGKILL)
        p.wait()
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
    removed = ownership.reap()
    assert any(name in r for r in removed), removed
    assert not [n for n in rec.namespaces if netns.exists(n)]
    assert ownership.find(name) is None
