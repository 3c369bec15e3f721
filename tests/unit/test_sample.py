"""lab.model.sample: the first, the last and K random services, seeded."""

from __future__ import annotations

import pytest

from lab.model.sample import sample


def test_a_sample_has_the_first_the_last_and_k_others_in_order() -> None:
    items = [f"198.18.{i // 256}.{i % 256}" for i in range(5000)]
    s = sample(items, 10, seed=7)
    assert len(s.chosen) == 12 and len(set(s.chosen)) == 12
    assert s.chosen[0] == items[0] and s.chosen[-1] == items[-1]
    assert s.chosen == sorted(s.chosen, key=items.index)
    assert s.said() == ("measured 12 of 5000 services: the first, the last and 10 chosen "
                        "at random (seed 7)")


def test_the_same_seed_chooses_the_same_and_another_seed_differs() -> None:
    items = list(range(1000))
    assert sample(items, 10, 1).chosen == sample(items, 10, 1).chosen
    assert sample(items, 10, 1).chosen != sample(items, 10, 2).chosen


@pytest.mark.parametrize("n", [0, 1, 2, 12])
def test_few_items_are_all_measured(n: int) -> None:
    s = sample(list(range(n)), 10)
    assert s.chosen == list(range(n)) and s.all
    assert s.said() == f"measured all {n} services"


def test_k_zero_is_the_first_and_the_last() -> None:
    assert sample(list(range(100)), 0).chosen == [0, 99]
    with pytest.raises(ValueError):
        sample([1, 2, 3], -1)
