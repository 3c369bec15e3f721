"""The flight recorder's ring and pcap writing, and the --drlab-capture option (no root)."""

import subprocess
import sys

import pytest
from scapy.layers.inet import IP, TCP
from scapy.layers.l2 import Ether
from scapy.utils import rdpcap

from lab.probes.capture import write_pcap
from lab.probes.recorder import FRAME_OVERHEAD, Recording, Tap
from lab.wire.packet import Frame

A, B = "02:d1:00:00:01:01", "02:d1:00:00:02:01"


def syn(port: int) -> bytes:
    return bytes(Ether(src=A, dst=B) / IP(src="192.0.2.10", dst="192.0.2.100") /
                 TCP(sport=port, dport=80, flags="S"))


def test_write_pcap_keeps_bytes_and_kernel_timestamps(tmp_path):
    frames = [Frame(1_700_000_000.123456, syn(40000), True),
              Frame(1_700_000_000.999999_7, syn(40001), False)]  # rounds up to the next second
    pkts = rdpcap(str(write_pcap(frames, tmp_path / "a.pcap")))
    assert [bytes(p) for p in pkts] == [f.data for f in frames]
    assert [float(p.time) for p in pkts] == pytest.approx([1_700_000_000.123456,
                                                           1_700_000_001.0], abs=1e-6)
    assert pkts[0][TCP].dport == 80 and pkts[0][Ether].dst == B


def test_empty_pcap_is_valid(tmp_path):
    p = write_pcap([], tmp_path / "sub" / "empty.pcap")
    assert p.stat().st_size == 24  # the pcap header alone
    assert len(rdpcap(str(p))) == 0


def test_ring_keeps_the_newest_frames_within_budget_and_counts_the_rest(tmp_path):
    size = len(syn(1)) + FRAME_OVERHEAD
    rec = Recording("ab12cd", budget=10 * size)
    a, b = Tap("client", "eth0", None), Tap("rs1", "eth0", None)
    rec.taps += [a, b]
    for i in range(30):
        rec.keep(a if i % 3 else b, Frame(1000.0 + i, syn(40000 + i), False))
    assert rec.size <= rec.budget and len(rec.ring) == 10
    kept = sorted(f.ts for t in (a, b) for f in rec.frames(t))
    assert kept == [1000.0 + i for i in range(20, 30)]  # the newest, oldest ones dropped
    assert (a.seen, b.seen) == (20, 10)
    assert a.evicted + b.evicted == 20 and rec.dropped == 20
    assert (a.seen - a.evicted, b.seen - b.evicted) == (len(rec.frames(a)), len(rec.frames(b)))
    files = rec.write(tmp_path)
    assert [f.name for f in files] == ["ab12cd-client-eth0.pcap", "ab12cd-rs1-eth0.pcap"]
    assert [len(rdpcap(str(f))) for f in files] == [len(rec.frames(a)), len(rec.frames(b))]
    text = "\n".join(rec.summary())
    assert "ab12cd-client-eth0.pcap" in text and "oldest dropped by the ring" in text


def pytest_run(*args, cwd):
    return subprocess.run([sys.executable, "-m", "pytest", "-p", "no:cacheprovider", *args],
                          cwd=cwd, capture_output=True, text=True, timeout=120)


@pytest.mark.subprocess
def test_capture_option_parses_and_rejects_unknown_modes(tmp_path):
    (tmp_path / "test_x.py").write_text(
        "def test_mode(request):\n"
        "    print('MODE', request.config.getoption('--drlab-capture'))\n")
    for args, mode in [((), "on-failure"), (("--drlab-capture=never",), "never"),
                       (("--drlab-capture", "always"),  "always")]:
        p = pytest_run("-s", "-q", "--no-host-check", *args, "test_x.py", cwd=tmp_path)
        assert p.returncode == 0 and f"MODE {mode}" in p.stdout, p.stdout + p.stderr
    p = pytest_run("--drlab-capture=sometimes", "test_x.py", cwd=tmp_path)
    assert p.returncode == 4, p.stdout + p.stderr  # a usage error
    assert "invalid choice: 'sometimes'" in p.stderr
