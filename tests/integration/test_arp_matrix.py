"""Predicted vs observed: every case of lab.model.predict.matrix() measured in namespaces.

Needs no IPVS (the director's DR hop is reproduced on the wire), so it runs on
the host kernel and in the VM; a mismatch fails with both values printed.
"""

import pytest

from lab.model.predict import matrix, predict, topology_for
from lab.probes.rs_arp import measure
from lab.roles import realserver

pytestmark = pytest.mark.netns

CASES = matrix()


@pytest.mark.parametrize("cfg", CASES, ids=[c.label() for c in CASES])
def test_prediction_matches_kernel(lab_factory, cfg):
    lab = lab_factory(topology_for(cfg), roles=False)
    realserver.start_service(lab, "rs1")
    observed = measure(lab)
    p = predict(cfg)
    want = {"answers_arp": p.answers_arp, "announce_sender": p.announce_sender,
            "dr_works": p.dr_works, "poisons": p.poisons}
    got = {"answers_arp": observed.answers_arp, "announce_sender": observed.announce_sender,
           "dr_works": observed.dr_works, "poisons": observed.poisons}
    diff = {k: f"predicted {want[k]!r}, observed {got[k]!r}" for k in want if want[k] != got[k]}
    assert not diff, (f"{cfg.label()}: " + "; ".join(f"{k}: {v}" for k, v in diff.items())
                      + "\n  evidence:\n    " + "\n    ".join(observed.evidence))


def test_matrix_progress_names_each_cell():
    # `drlab matrix` says which cell finished; it once said "<bound method CellConfig.label
    # ...>" (the method, not its value: found by mypy)
    import io

    from lab.model.predict import RsConfig
    from lab.sweep.matrix import CellConfig, run
    from lab.util import Progress

    out = io.StringIO()
    cfg = CellConfig(rs=RsConfig())
    [cell] = run([cfg], jobs=1, progress=Progress(enabled=True, interval=0, tty=False,
                                                  stream=out))
    assert cell.config == cfg
    assert "1/1 done, " in out.getvalue() and f"({cfg.label()})" in out.getvalue()
    assert "bound method" not in out.getvalue()
