"""The matrix's IPVS axes: every net.ipv4.vs.* knob, measured on a real director
against lab.model.predict.predict_vs (a mismatch fails with the evidence)."""

import pytest

from lab.sweep import matrix

SWEEPS = {
    "sloppy-icmp": {"sloppy_tcp": [0, 1], "schedule_icmp": [0, 1]},
    "nodest-quiescent": {"expire_nodest_conn": [0, 1], "expire_quiescent_template": [0, 1]},
    "reuse": {"conn_reuse_mode": [0, 1, 3], "conntrack": [0, 1]},
}


@pytest.mark.parametrize("sweep", SWEEPS)
def test_ipvs_knobs_match_predictions(drlab_ipvs, sweep):
    result = matrix.run(matrix.cells(SWEEPS[sweep]), jobs=4)
    assert result and not any(c.skipped for c in result)
    bad = [c for c in result if not c.match]
    assert not bad, "\n".join(
        f"{c.label}: predicted {c.predicted}, observed {c.observed}, error {c.error}\n    "
        + "\n    ".join(c.evidence) for c in bad)
    # both values of every knob were seen to make a difference
    for b in result[0].config.behaviours:
        assert {c.observed[b] for c in result} == {True, False}, b
