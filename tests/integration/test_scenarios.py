"""Every scenario of the catalogue, both variants: broken shows the symptom, fixed does not."""

import os

import pytest

from lab.scenarios import REGISTRY, run_both


def _marks(s):
    marks = [pytest.mark.ipvs if s.needs_ipvs else pytest.mark.netns]
    if s.needs_vm:
        marks.append(pytest.mark.skipif(os.environ.get("DRLAB_IN_VM") != "1",
                                        reason="changes the root namespace: VM runner only"))
    return marks


CASES = [pytest.param(s, id=s.name, marks=_marks(s)) for s in REGISTRY.values()]


@pytest.mark.parametrize("scenario", CASES)
def test_scenario_reproduces(scenario, drlab_root):
    verdict = run_both(scenario)
    assert verdict.reproduced, verdict.report()
