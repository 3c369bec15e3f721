"""Which services a large lab measures: the first, the last and K others chosen at
random, seeded (the same seed, the same choice), said in words.

Connections through every one of 5,000 services cannot run in the time a check or a
diagnosis has (issue #27): :func:`sample` chooses, :meth:`Sample.said` says what was
chosen (a report that measured a sample says so)."""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Generic, TypeVar

T = TypeVar("T")

#: How many services are chosen at random besides the first and the last.
DEFAULT_K = 10
#: The seed unless one is given: a run is repeatable.
DEFAULT_SEED = 0


@dataclass(frozen=True)
class Sample(Generic[T]):
    """The chosen items, in their order in the whole, and how they were chosen."""

    chosen: list[T]
    total: int
    k: int
    seed: int

    @property
    def all(self) -> bool:
        return len(self.chosen) == self.total

    def said(self, what: str = "services") -> str:
        if self.all:
            return f"measured all {self.total} {what}"
        return (f"measured {len(self.chosen)} of {self.total} {what}: the first, the last "
                f"and {len(self.chosen) - 2} chosen at random (seed {self.seed})")


def sample(items: Sequence[T], k: int = DEFAULT_K, seed: int = DEFAULT_SEED) -> Sample[T]:
    """The first and last of ``items`` and ``k`` others chosen at random with ``seed``
    (all of them when there are at most ``k + 2``), in their order in ``items``."""
    if k < 0:
        raise ValueError(f"k={k}: expected 0 or more")
    n = len(items)
    if n <= k + 2:
        return Sample(list(items), n, k, seed)
    picked = {0, n - 1, *random.Random(seed).sample(range(1, n - 1), k)}
    return Sample([items[i] for i in sorted(picked)], n, k, seed)
