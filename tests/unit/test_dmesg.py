"""lab.machine.dmesg: which kernel log lines are a verdict, and their excerpts."""

from __future__ import annotations

from pathlib import Path

import pytest

from lab.machine import dmesg


@pytest.mark.parametrize(("line", "kind"), [
    ("[   12.5] WARNING: CPU: 0 PID: 1 at net/core/dev.c:1 x+0x1/0x2", "warning"),
    ("WARNING: drlab planted", "warning"),
    ("[    3.0] BUG: kernel NULL pointer dereference, address: 0000000000000008", "bug"),
    ("BUG: KASAN: slab-use-after-free in ip_vs_conn_expire+0x1/0x2", "bug"),
    ("Oops: 0000 [#1] PREEMPT SMP NOPTI", "oops"),
    ("Oops: int3: 0000 [#1] PREEMPT SMP NOPTI", "oops"),
    ("==================================================================", None),
    ("UBSAN: shift-out-of-bounds in net/ipv4/route.c:10:5", "ubsan"),
    ("WARNING: possible circular locking dependency detected", "warning"),
    ("inconsistent lock state", "lockdep"),
    ("INFO: task kworker/0:1:12 blocked for more than 120 seconds.", "hung task"),
    ("rcu: INFO: rcu_preempt detected stalls on CPUs/tasks:", "rcu stall"),
    ("INFO: rcu_sched detected stalls on CPUs/tasks: { 1} (detected by 0, t=21002)",
     "rcu stall"),
    ("rcu: Preemptible hierarchical RCU implementation.", None),
    ("landlock: Up and running.", None),
    ("Block layer SCSI generic (bsg) driver version 0.4 loaded (major 248)", None),
    ("IPVS: Registered protocols (TCP, UDP, SCTP, AH, ESP)", None),
    ("Spectre V2 : WARNING: Unprivileged eBPF is enabled with eIBRS on, data leaks "
     "possible via Spectre v2 BHB attacks!", None),
])
def test_classify(line, kind):
    assert dmesg.classify(dmesg.message(line)) == kind


def test_an_excerpt_runs_to_the_end_of_its_trace_and_no_further():
    log = ["[ 1.0] eth0: up", "[ 2.0] WARNING: CPU: 0 at a.c:1 f", "[ 2.1] Call Trace:",
           "[ 2.2]  f+0x1", "[ 2.3] ---[ end trace 0 ]---", "[ 3.0] BUG: unable to handle",
           "[ 3.1] Oops: 0002 [#1]"]
    found = dmesg.scan(log)
    assert [(f.kind, f.line) for f in found] == [("warning", "WARNING: CPU: 0 at a.c:1 f"),
                                                 ("bug", "BUG: unable to handle")]
    assert found[0].excerpt == ("WARNING: CPU: 0 at a.c:1 f", "Call Trace:", " f+0x1",
                                "---[ end trace 0 ]---")
    # the Oops right after the BUG is part of the BUG's excerpt, not a finding of its own
    assert found[1].excerpt == ("BUG: unable to handle", "Oops: 0002 [#1]")
    assert dmesg.report(found).startswith("the kernel warned (2 in its log: bug, warning):")
    assert dmesg.report([]) == ""


def test_an_excerpt_is_bounded():
    log = ["WARNING: x"] + [f" frame {i}" for i in range(50)]
    [f] = dmesg.scan(log)
    assert len(f.excerpt) == 1 + dmesg.EXCERPT_LINES


def test_every_benign_line_has_a_reason():
    assert all(why.strip() for _p, why in dmesg.BENIGN)


def test_main_is_the_verdict_on_a_file(tmp_path: Path, capsys):
    clean, warned = tmp_path / "clean", tmp_path / "warned"
    clean.write_text("[    0.0] Linux version 6.1.0\n")
    warned.write_text("[    0.0] Linux version 6.1.0\n[   9.9] WARNING: drlab planted\n")
    assert dmesg.main([str(clean)]) == 0 and capsys.readouterr().out == ""
    assert dmesg.main([str(warned)]) == 1
    assert "WARNING: drlab planted" in capsys.readouterr().out
    assert dmesg.main([str(tmp_path / "missing")]) == 2


def test_kmsg_records_reads_from_a_sequence_number_on(tmp_path: Path):
    """/dev/kmsg gives one record per read; a regular file stands in for it here (one
    read returns it all), so only its first record is seen, from a sequence on."""
    f = tmp_path / "kmsg"
    f.write_text("4,7,100,-;WARNING: planted\n SUBSYSTEM=x\n")
    assert dmesg.kmsg_records(-1, str(f)) == (["WARNING: planted"], 7)
    assert dmesg.kmsg_records(7, str(f)) == ([], 7)


def test_allowed(monkeypatch):
    monkeypatch.delenv("DRLAB_ALLOW_KERNEL_WARNINGS", raising=False)
    assert not dmesg.allowed()
    monkeypatch.setenv("DRLAB_ALLOW_KERNEL_WARNINGS", "1")
    assert dmesg.allowed()
    monkeypatch.setenv("DRLAB_ALLOW_KERNEL_WARNINGS", "0")
    assert not dmesg.allowed()
    assert dmesg.allowed({"DRLAB_ALLOW_KERNEL_WARNINGS": "1"})
    assert not dmesg.allowed({})
