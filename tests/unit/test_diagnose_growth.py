"""diagnose's predictions grow linearly with the services of a collected cluster:
counted in Python function calls (cProfile), not in seconds (no timing decides a test).

The cluster is tests/gen_collected.py's (every VIP on each real server's lo). A scan
of the real server's addresses per service (``vip_place``) made the predictions
quadratic: 1.7 s on the host for 1,000 services, about 42 s for 5,000 (issue #27)."""

from __future__ import annotations

import cProfile
import pstats
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import gen_collected  # noqa: E402

from lab.model.collected import import_cluster  # noqa: E402
from lab.scenarios.diagnose import predictions  # noqa: E402


def calls(root: Path, services: int) -> int:
    d = root / str(services)
    d.mkdir()
    gen_collected.write_cluster(d, services)
    t = import_cluster([d]).topology
    prof = cProfile.Profile()
    prof.enable()
    predictions(t, [])
    prof.disable()
    return int(pstats.Stats(prof).total_calls)  # type: ignore[attr-defined]


def test_predictions_grow_linearly_with_the_services(tmp_path: Path) -> None:
    small, large = calls(tmp_path, 100), calls(tmp_path, 800)
    # linear: 8x the input, 8x the calls at most; a scan per service is ~8x more
    assert large / small < 8 * 1.15, (small, large)
