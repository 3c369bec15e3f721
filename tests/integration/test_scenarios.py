"""Every scenario of the catalogue, both variants: broken shows the symptom, fixed does not."""

import pytest

from lab.scenarios import REGISTRY, run_both

CASES = [pytest.param(s, id=s.name, marks=pytest.mark.ipvs if s.needs_ipvs else
                      pytest.mark.netns) for s in REGISTRY.values()]


@pytest.mark.parametrize("scenario", CASES)
def test_scenario_reproduces(scenario, drlab_root):
    verdict = run_both(scenario)
    assert verdict.reproduced, verdict.report()
