"""The flight recorder on real namespaces (no IPVS: these run on any kernel).

The packets of a failing test are saved without the test asking for them
(``--drlab-capture``); the IPVS version of this check, with a failing
``dr_lab`` test, is in test_probes.py.
"""

import json
import os
import socket
import subprocess
import sys
import time

import pytest
from scapy.layers.inet import ICMP, UDP
from scapy.layers.l2 import ARP
from scapy.utils import rdpcap

from lab.builder import Lab, netns
from lab.model import default_dr
from lab.probes.capture import Capture
from lab.probes.recorder import Recorder, recording_of
from lab.util import wait_for

pytestmark = pytest.mark.netns

RS1 = "192.0.2.101"


def udp_to_rs1(lab) -> None:
    """client -> rs1 UDP port 9: an ARP exchange, the datagram, an ICMP port unreachable."""
    s = netns.socket_in(lab.ns("client"), socket.AF_INET, socket.SOCK_DGRAM)
    with s:
        s.settimeout(10)
        s.connect((RS1, 9))
        s.send(b"drlab")
        with pytest.raises(ConnectionRefusedError):
            s.recv(100)


def packet_sockets(lab) -> dict[str, int]:
    """AF_PACKET sockets open in each host's namespace (/proc/net/packet, a line each)."""
    return {h.name: len(netns.read_proc(lab.ns(h.name), "net/packet").splitlines()) - 1
            for h in lab.topology.hosts}


def promiscuous(lab) -> set[str]:
    return {f"{h.name}-{link.get_attr('IFLA_IFNAME')}"
            for h in lab.topology.hosts for link in lab.ipr(h.name).get_links()
            if link["flags"] & 0x100 or link.get_attr("IFLA_PROMISCUITY")}


def test_recorder_is_passive_sees_what_a_capture_sees_and_closes_its_sockets(drlab_root):
    with Lab(default_dr(rs=1)) as lab:  # not lab_factory: this test owns the recorder
        hosts = [h.name for h in lab.topology.hosts]
        assert packet_sockets(lab) == dict.fromkeys(hosts, 0)
        recorder = Recorder()
        try:
            rec = recorder.add(lab)
            assert recording_of(lab) is rec and recorder.running
            assert packet_sockets(lab) == dict.fromkeys(hosts, 1)
            assert not promiscuous(lab)
            # an interface that goes down and up again is recorded on
            ipr = lab.ipr("rs1")
            idx = ipr.link_lookup(ifname="eth0")[0]
            ipr.link("set", index=idx, state="down")
            ipr.link("set", index=idx, state="up")
            wait_for(lambda: ipr.get_links(idx)[0].get("operstate") == "UP", 10, "rs1 eth0 up")
            with Capture(lab, "rs1") as cap:  # a test's own capture sees what it always saw
                udp_to_rs1(lab)
            kinds = [("ARP" if ARP in x else "ICMP" if ICMP in x else "UDP" if UDP in x
                      else "?") for x in cap.packets()]
            assert kinds == ["ARP", "ARP", "UDP", "ICMP"], kinds
            tap = next(t for t in rec.taps if t.name == "rs1-eth0")
            # the thread moves frames into the ring as they arrive, before any stop()
            wait_for(lambda: len(rec.frames(tap)) >= len(cap.frames), 5,
                     "the recorder to catch up")
        finally:
            recorder.stop()
        recorder.stop()  # idempotent
        assert not recorder.running
        got = [(f.ts, f.data, f.outgoing) for f in rec.frames(tap)]
        assert got[-len(cap.frames):] == [(f.ts, f.data, f.outgoing) for f in cap.frames]
        assert all(t.sock is None and not t.error and not t.kernel_drops for t in rec.taps)
        assert {t.name: t.downs for t in rec.taps} == {"client-eth0": 0, "director-eth0": 0,
                                                        "rs1-eth0": 1}
        assert rec.stopped is not None and not rec.error
        wait_for(lambda: packet_sockets(lab) == dict.fromkeys(hosts, 0), 10,
                 "the recorder's sockets to be closed")
        with Capture(lab, "client") as cap:  # nothing recorded after stop()
            udp_to_rs1(lab)
        assert cap.frames and [(f.ts, f.data, f.outgoing) for f in rec.frames(tap)] == got


def test_lab_factory_records_every_interface_unless_never(request, lab_factory):
    lab = lab_factory(default_dr(behind_router=True), roles=False)
    mode = request.config.getoption("--drlab-capture")
    rec = recording_of(lab)
    if mode == "never":
        assert rec is None
        assert packet_sockets(lab) == dict.fromkeys((h.name for h in lab.topology.hosts), 0)
    else:
        assert rec is not None
        assert sorted(t.name for t in rec.taps) == sorted(
            f"{h.name}-{i.name}" for h in lab.topology.hosts for i in h.interfaces)
        assert "router-eth1" in {t.name for t in rec.taps}
        assert packet_sockets(lab) == {h.name: len(h.interfaces) for h in lab.topology.hosts}


INNER = '''
import json
import os
import socket
import time

import pytest

from lab.builder import Lab, netns
from lab.model import default_dr


def traffic(lab_factory, name):
    t0 = time.time()
    lab = lab_factory(default_dr(), roles=False)
    s = netns.socket_in(lab.ns("client"), socket.AF_INET, socket.SOCK_DGRAM)
    s.settimeout(10)
    s.connect(("192.0.2.101", 9))
    s.send(b"drlab")
    try:
        s.recv(100)
    except ConnectionRefusedError:
        pass
    s.close()
    sockets = {h.name: len(netns.read_proc(lab.ns(h.name), "net/packet").splitlines()) - 1
               for h in lab.topology.hosts}
    with open(os.path.join(os.environ["DRLAB_OUT"], name + ".json"), "w") as f:
        json.dump({"lab": lab.id, "sockets": sockets, "t0": t0, "t1": time.time()}, f)


def test_fails(lab_factory):
    traffic(lab_factory, "fails")
    assert False, "deliberate failure"


def test_passes(lab_factory):
    traffic(lab_factory, "passes")


@pytest.fixture
def broken_lab(lab_factory):
    traffic(lab_factory, "setup")
    raise RuntimeError("deliberate setup failure")


def test_setup_fails(broken_lab):
    pass
'''


def run_inner(tmp_path, mode):
    work = tmp_path / mode
    work.mkdir()
    (work / "test_inner.py").write_text(INNER)
    art = work / "art"
    p = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-rA",
                        "--no-host-check", f"--drlab-artifacts={art}",
                        f"--drlab-capture={mode}", "test_inner.py"],
                       cwd=work, capture_output=True, text=True, timeout=300,
                       env=dict(os.environ, DRLAB_OUT=str(work)))
    assert p.returncode == 1, p.stdout + p.stderr
    assert "1 failed, 1 passed, 1 error" in p.stdout, p.stdout
    seen = {n: json.loads((work / f"{n}.json").read_text())
            for n in ("fails", "passes", "setup")}
    for n in seen:  # the inner run is over: every recording of it has stopped
        seen[n]["ended"] = time.time()
    return p.stdout, art, seen


def pcaps(art, test):
    return {p.name: p for p in (art / f"test_inner.py__{test}").glob("*.pcap")}


@pytest.mark.subprocess
def test_failing_test_leaves_one_pcap_per_interface(drlab_root, tmp_path):
    out, art, seen = run_inner(tmp_path, "on-failure")
    lab = seen["fails"]["lab"]
    assert seen["fails"]["sockets"] == {"client": 1, "director": 1, "rs1": 1, "rs2": 1}
    files = pcaps(art, "test_fails")
    names = [f"{lab}-{h}-eth0.pcap" for h in ("client", "director", "rs1", "rs2")]
    assert sorted(files) == sorted(names)
    assert (art / "test_inner.py__test_fails" / f"state-{lab}.txt").exists()
    assert not (art / "test_inner.py__test_passes").exists()  # passing: nothing written
    for n in names:  # listed in the failure report
        assert n in out, out
    lab = seen["setup"]["lab"]  # a lab fixture's setup failed: its packets are saved too
    assert sorted(pcaps(art, "test_setup_fails")) == sorted(
        f"{lab}-{h}-eth0.pcap" for h in ("client", "director", "rs1", "rs2"))
    assert "every interface recorded for" in out
    pk = {n.split("-", 1)[1]: rdpcap(str(files[n])) for n in names}
    # Kernel timestamps (CLOCK_REALTIME, as time.time()): each frame within the
    # recording, from before the lab was built (t0) until the inner run ended (the
    # recorder stops when the failure is reported, after the test's traffic ended at
    # t1). What the test sent lies within [t0, t1]; after t1 come only the kernel's
    # own neighbour upkeep: rs1 learned the client's address from its ARP request,
    # answered it (the port unreachable) and probes that entry 5 s later
    # (delay_first_probe_time), a unicast ARP seen when the report takes that long
    # (a VM under software emulation).
    t0, t1, ended = seen["fails"]["t0"], seen["fails"]["t1"], seen["fails"]["ended"]

    def at(x) -> str:
        return f"{x.summary()} at t0{float(x.time) - t0:+.6f} s"

    for where, pkts in pk.items():
        assert pkts, where
        outside = [at(x) for x in pkts if not t0 <= float(x.time) <= ended]
        assert not outside, f"{where} (inner run ended at t0+{ended - t0:.3f} s): {outside}"
        late = [at(x) for x in pkts if float(x.time) > t1 and ARP not in x]
        assert not late, f"{where} (traffic ended at t0+{t1 - t0:.3f} s): {late}"
    # the client's ARP for rs1 is on every interface of the segment (a broadcast)
    for where, pkts in pk.items():
        assert any(ARP in x and x[ARP].op == 1 and x[ARP].pdst == RS1
                   and t0 <= float(x.time) <= t1 for x in pkts), where
    # the datagram and the port unreachable are on the client and on rs1, not elsewhere,
    # stamped within the traffic
    for where in ("client-eth0.pcap", "rs1-eth0.pcap"):
        for what in (lambda x: UDP in x and ICMP not in x and x[UDP].dport == 9,
                     lambda x: ICMP in x and x[ICMP].type == 3):
            got = [x for x in pk[where] if what(x)]
            assert got and all(t0 <= float(x.time) <= t1 for x in got), (
                where, [at(x) for x in got])
    for where in ("director-eth0.pcap", "rs2-eth0.pcap"):
        assert not any(UDP in x or ICMP in x for x in pk[where]), where


@pytest.mark.subprocess
def test_capture_always_and_never(drlab_root, tmp_path):
    _out, art, seen = run_inner(tmp_path, "always")
    for test, run in (("test_fails", "fails"), ("test_passes", "passes")):
        lab = seen[run]["lab"]
        assert sorted(pcaps(art, test)) == sorted(
            f"{lab}-{h}-eth0.pcap" for h in ("client", "director", "rs1", "rs2")), test
    assert not (art / "test_inner.py__test_passes" / f"state-{seen['passes']['lab']}.txt"
                ).exists()  # a passing test's packets only

    out, art, seen = run_inner(tmp_path, "never")
    for run in ("fails", "passes"):  # no socket opened
        assert seen[run]["sockets"] == {"client": 0, "director": 0, "rs1": 0, "rs2": 0}
    assert not pcaps(art, "test_fails") and not (art / "test_inner.py__test_passes").exists()
    assert (art / "test_inner.py__test_fails" / f"state-{seen['fails']['lab']}.txt").exists()
    assert "every interface recorded" not in out
