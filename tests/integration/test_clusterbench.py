"""lab.sweep.clusterbench (the README's collect -> import -> diagnose timings) runs,
times every step and leaves nothing behind."""

from __future__ import annotations

import json
import tempfile

import pytest

from lab.sweep import clusterbench

pytestmark = pytest.mark.ipvs


def test_clusterbench_times_every_step_and_cleans_up(drlab_ipvs, tmp_path, monkeypatch,
                                                     capsys):
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))
    out = tmp_path / "bench.json"
    assert clusterbench.main(["--rs", "2", "--name", "cbench", "--json", str(out)]) == 0
    res = json.loads(out.read_text())
    assert res["rs"] == 2
    steps = list(res["steps"])
    assert [s.split()[0] for s in steps] == ["build", "collect", "import", "diagnose"]
    assert steps[1].startswith("collect 5 hosts")  # 2 directors, 2 real servers, the client
    assert all(v > 0 for v in res["steps"].values()) and res["total"] > 0
    assert "collected cluster -> diagnosis" in capsys.readouterr().out
    assert list(scratch.iterdir()) == []  # the collected files went with the run
