"""Matrix axes, cells and baseline diffs (pure)."""

import pytest

from lab.errors import UsageError
from lab.sweep import matrix


def test_parse_axes_and_cells():
    axes = matrix.parse_axes({"arp_ignore": "0,1", "vip_place": ["lo32", "lan"],
                              "vip_in_lan": "yes,no"})
    assert axes == {"arp_ignore": [0, 1], "vip_place": ["lo32", "lan"], "vip_in_lan": [True,
                                                                                       False]}
    cells = matrix.cells(axes)
    assert len(cells) == 8
    assert {(c.rs.arp_ignore, c.rs.vip_place, c.rs.vip_in_lan) for c in cells} == {
        (i, p, v) for i in (0, 1) for p in ("lo32", "lan") for v in (True, False)}
    assert all(c.rs.arp_announce == 2 for c in cells)  # unswept axes keep the correct DR value
    assert all(c.vs is None and c.fields == matrix.FIELDS for c in cells)


def test_ipvs_axes_probe_only_what_they_change():
    axes = matrix.parse_axes({"net.ipv4.vs.conn_reuse_mode": "1,3", "conntrack": [0, 1]})
    cells = matrix.cells(axes)
    assert len(cells) == 4 and all(c.rs is None for c in cells)
    assert {c.behaviours for c in cells} == {("reuse_delay",)}
    pred = {(c.vs.conn_reuse_mode, c.vs.conntrack): c.predicted()["reuse_delay"] for c in cells}
    # bit 2 of conn_reuse_mode reuses a DR entry in FIN_WAIT; conntrack then drops the SYN
    assert pred == {(1, 0): False, (1, 1): False, (3, 0): False, (3, 1): True}
    assert cells[0].label() == "reuse1-ct0-nodest0-eqt0-sloppy0-icmp0"


def test_mixed_axes_cell_has_both_kinds_of_fields():
    [cell] = matrix.cells(matrix.parse_axes({"arp_ignore": "1", "sloppy_tcp": "1"}))
    assert cell.fields == (*matrix.FIELDS, "midstream_scheduled")
    assert cell.predicted() == {"answers_arp": False, "announce_sender": "rip",
                                "dr_works": True, "poisons": False,
                                "midstream_scheduled": True}
    assert "+reuse1-ct0" in cell.label()


def test_skipped_cells_are_not_mismatches():
    [cfg] = matrix.cells(matrix.parse_axes({"schedule_icmp": "1"}))
    c = matrix.Cell(cfg, cfg.predicted(), skipped=True, error="not run: no IPVS")
    data = matrix.to_json([c], 1.0)
    assert data["mismatches"] == 0 and data["not_run"] == 1
    assert data["topology"]["hosts"]["director"]["sysctls"]["net.ipv4.vs.schedule_icmp"] == "1"
    assert "not run" in matrix.table([c])


@pytest.mark.parametrize("spec,msg", [
    ({"arp_ignore": "4"}, "arp_ignore='4' is not one of 0, 1, 2, 3, 8"),
    ({"colour": "red"}, "unknown axis 'colour'"),
    ({"vip_place": "moon"}, "vip_place='moon'"),
    ({"conn_reuse_mode": "4"}, "conn_reuse_mode='4' is not one of 0, 1, 2, 3"),
    ({"net.ipv4.vs.nope": "1"}, "unknown axis 'net.ipv4.vs.nope'"),
])
def test_bad_axes(spec, msg):
    with pytest.raises(UsageError, match=msg):
        matrix.parse_axes(spec)


def test_load_spec(tmp_path):
    p = tmp_path / "m.toml"
    p.write_text('arp_ignore = [0, 8]\nknob_on = ["lo"]\n')
    assert matrix.load_spec(p) == {"arp_ignore": [0, 8], "knob_on": ["lo"]}
    with pytest.raises(UsageError, match="no such file"):
        matrix.load_spec(tmp_path / "nope.toml")


def _run(obs):
    return {"kernel": "k", "cells": [{"label": "a", "observed": obs, "evidence": ["e1"]}]}


def test_diff_reports_only_changed_cells():
    same = {"answers_arp": False, "announce_sender": "rip", "dr_works": True, "poisons": False}
    assert matrix.diff(_run(same), _run(same)) == []
    changed = dict(same, answers_arp=True)
    out = matrix.diff(_run(same), _run(changed))
    assert len(out) == 1 and out[0].startswith("a: answers_arp no -> yes") and "e1" in out[0]


@pytest.mark.parametrize("kernels, cells, n", [(3, 10, 4), (10, 1, 10), (2, 5, 1), (1, 7, 3)])
def test_shards_cover_every_kernel_and_cell_pair_once(kernels, cells, n):
    from lab.sweep.kmatrix import kernel_shards
    from lab.util import sharded

    seen = []
    for i in range(1, n + 1):
        for k, part in enumerate(kernel_shards(kernels, "matrix", (i, n))):
            seen += [(k, j) for j, _ in sharded(list(range(cells)), part)]
    assert sorted(seen) == [(k, j) for k in range(kernels) for j in range(cells)]
    # diagnose: whole kernels, each in one shard
    runs = [k for i in range(1, n + 1)
            for k, whole in enumerate(kernel_shards(kernels, "diagnose", (i, n))) if whole]
    assert sorted(runs) == list(range(kernels))


@pytest.mark.parametrize("text", ["0/2", "3/2", "1", "a/b", "1/0", "-1/2"])
def test_a_bad_shard_is_a_usage_error(text):
    from lab.errors import UsageError
    from lab.util import parse_shard

    with pytest.raises(UsageError, match="give I/N"):
        parse_shard(text)


@pytest.mark.parametrize("rc, status", [(0, "ok"), (125, "not run"), (1, "failed"),
                                        (3, "failed")])
def test_run_verb_exit_code_is_the_verdict(rc, status):
    from lab.sweep.kmatrix import read_result

    cell = read_result("run", {"exit": rc}).cells["command"]
    assert cell.status.value == status and cell.summary.startswith(f"exit {rc}")


def test_run_verb_needs_a_command_and_records_its_exit(tmp_path):
    import subprocess

    from lab.errors import UsageError
    from lab.sweep.kmatrix import child_command

    with pytest.raises(UsageError, match="give the command"):
        child_command("run", [], tmp_path)
    cmd = child_command("run", ["sh", "-c", "exit 7"], tmp_path)
    assert subprocess.run(cmd).returncode == 7
    assert (tmp_path / "result.json").read_text() == '{"exit": 7}'


@pytest.mark.parametrize("kernels, n", [(5, 3), (45, 10), (2, 4)])
def test_all_available_shards_whole_kernels(kernels, n):
    """`--kernel all-available --shard I/N`: each build boots in one shard only."""
    from lab.sweep.kmatrix import kernel_shards

    runs = sorted(k for i in range(1, n + 1)
                  for k, whole in enumerate(kernel_shards(kernels, "scenario", (i, n), True))
                  if whole is True)
    assert runs == list(range(kernels))


def test_bisect_bad_input_is_one_line_exit_2():
    import subprocess
    import sys

    for argv in (["--good", "6.1.0-48-amd64", "--bad", "7.3.4+deb13-amd64"],
                 ["--good", "6.1.0-48-amd64", "--bad", "7.3.4+deb13-amd64", "--", "nope"]):
        p = subprocess.run([sys.executable, "-m", "lab", "kernels", "bisect", *argv],
                           capture_output=True, text=True)
        assert p.returncode == 2 and len(p.stderr.strip().splitlines()) == 1, p.stderr
        assert "Traceback" not in p.stderr
