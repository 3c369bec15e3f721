"""drlab import grows linearly with the services of a collected cluster: counted in
Python function calls (cProfile), not in seconds (no timing decides a test).

The cluster is tests/gen_collected.py's: two keepalived directors and three real
servers holding every VIP on lo. A scan per service (the director of each service
found by walking every address of every director, a set rebuilt per address) made
the import quadratic: 53 s for 5,000 services where 500 took 0.5 s (issue #27)."""

from __future__ import annotations

import cProfile
import pstats
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import gen_collected  # noqa: E402

from lab.model.collected import import_cluster  # noqa: E402


def calls(root: Path, services: int) -> int:
    d = root / str(services)
    d.mkdir()
    gen_collected.write_cluster(d, services)
    prof = cProfile.Profile()
    prof.runcall(import_cluster, [d])
    return int(pstats.Stats(prof).total_calls)  # type: ignore[attr-defined]


def test_import_calls_grow_linearly_with_the_services(tmp_path: Path) -> None:
    small, large = calls(tmp_path, 100), calls(tmp_path, 1600)
    # linear: 16x the input, 16x the calls at most (measured 15.8x); the scans per
    # service made it 23.5x at these sizes (and 8.7 s of CPU at 5,000 services)
    assert large / small < 16 * 1.15, (small, large)
