"""Two test modules of one name (tests/unit/test_x.py and tests/integration/test_x.py)
stop pytest's collection of the whole run (the rootdir import mode imports both as
``test_x``): CI's first stop of this session was that."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

TESTS = Path(__file__).resolve().parents[1]


def test_no_two_test_modules_share_a_name() -> None:
    names = Counter(p.name for p in TESTS.rglob("test_*.py") if "__pycache__" not in p.parts)
    assert [n for n, k in names.items() if k > 1] == []
