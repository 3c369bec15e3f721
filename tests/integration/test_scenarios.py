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


CHECKED = [pytest.param(s, id=s.name) for s in REGISTRY.values() if s.stimulus is None]


@pytest.mark.ipvs
@pytest.mark.parametrize("scenario", CHECKED)
def test_drlab_check_names_the_symptom_of_the_broken_lab_only(scenario, drlab_ipvs):
    """What `drlab up --scenario NAME --broken|--fixed` then `drlab check` do, in-process:
    the whole DR lab of each variant; the broken one has symptoms, the fixed one none."""
    from lab.probes.check import check
    from lab.scenarios import start

    results = {}
    for variant in ("broken", "fixed"):
        lab = start(scenario, variant, whole=True)
        try:
            results[variant] = check(lab)
        finally:
            lab.teardown()
    assert results["broken"].symptoms, results["broken"].text()
    assert results["fixed"].ok, results["fixed"].text()
