"""Bisection over Debian kernel builds: which build changed a verdict?

The engine (:func:`bisect`) is pure: it takes the builds in order and a function
giving a build's verdict, so it is tested without booting anything. The first
build's verdict is the reference (good), the last must differ from it (bad); a
build whose verdict cannot be had (no fetch, no boot: :attr:`Verdict.SKIP`) is
passed over and its neighbours are tried. A list from a newer good build to an
older bad one finds a fix rather than a regression.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from enum import Enum
from typing import Generic, TypeVar

from lab.errors import LabError

T = TypeVar("T")


class Verdict(Enum):
    GOOD = "good"
    BAD = "bad"
    SKIP = "skip"


@dataclass(frozen=True)
class Step(Generic[T]):
    build: T
    verdict: Verdict
    seconds: float


@dataclass
class Bisection(Generic[T]):
    #: the last good and first bad build, adjacent in the list but for skipped ones
    last_good: T
    first_bad: T
    steps: list[Step[T]] = field(default_factory=list)
    #: builds between the two that could not be judged
    skipped_between: list[T] = field(default_factory=list)

    @property
    def boots(self) -> int:
        return len(self.steps)


def bisect(builds: Sequence[T], judge: Callable[[T], Verdict],
           on_step: Callable[[Step[T]], None] | None = None) -> Bisection[T]:
    """Find the adjacent pair (last good, first bad) in ``builds`` (judged good at
    the start, bad at the end). ``judge`` runs once per build tried."""
    if len(builds) < 2:
        raise LabError("bisect: needs at least two builds (the good and the bad one)")
    steps: list[Step[T]] = []
    verdicts: dict[int, Verdict] = {}

    def try_(i: int) -> Verdict:
        t0 = time.monotonic()
        v = judge(builds[i])
        step = Step(builds[i], v, time.monotonic() - t0)
        steps.append(step)
        verdicts[i] = v
        if on_step:
            on_step(step)
        return v

    if try_(0) is not Verdict.GOOD:
        raise LabError(f"bisect: the good build {builds[0]} gave no verdict (it did not "
                       "fetch, boot or run)")
    if try_(len(builds) - 1) is not Verdict.BAD:
        raise LabError(f"bisect: the bad build {builds[-1]} gives the good build's verdict "
                       "(nothing changed between them)" if verdicts[len(builds) - 1]
                       is Verdict.GOOD else f"bisect: the bad build {builds[-1]} gave no "
                       "verdict (it did not fetch, boot or run)")
    lo, hi = 0, len(builds) - 1
    while hi - lo > 1:
        mid = (lo + hi) // 2
        # mid, then its neighbours outwards, until one gives a verdict
        order = sorted(range(lo + 1, hi), key=lambda i: (abs(i - mid), i))
        for i in order:
            if i in verdicts:
                continue
            v = try_(i)
            if v is Verdict.GOOD:
                lo = i
                break
            if v is Verdict.BAD:
                hi = i
                break
        else:
            break  # every build between lo and hi is skipped
    return Bisection(builds[lo], builds[hi], steps, list(builds[lo + 1:hi]))
