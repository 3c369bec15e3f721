"""Matrix axes, cells and baseline diffs (pure)."""

import pytest

from lab import matrix
from lab.errors import UsageError


def test_parse_axes_and_cells():
    axes = matrix.parse_axes({"arp_ignore": "0,1", "vip_place": ["lo32", "lan"],
                              "vip_in_lan": "yes,no"})
    assert axes == {"arp_ignore": [0, 1], "vip_place": ["lo32", "lan"], "vip_in_lan": [True,
                                                                                       False]}
    cells = matrix.cells(axes)
    assert len(cells) == 8
    assert {(c.arp_ignore, c.vip_place, c.vip_in_lan) for c in cells} == {
        (i, p, v) for i in (0, 1) for p in ("lo32", "lan") for v in (True, False)}
    assert all(c.arp_announce == 2 for c in cells)  # unswept axes keep the correct DR value


@pytest.mark.parametrize("spec,msg", [
    ({"arp_ignore": "4"}, "arp_ignore='4' is not one of 0, 1, 2, 3, 8"),
    ({"colour": "red"}, "unknown axis 'colour'"),
    ({"vip_place": "moon"}, "vip_place='moon'"),
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
