"""Every scenario of the catalogue, both variants: broken shows the symptom, fixed does not."""

import os

import pytest

from lab.scenarios import REGISTRY, run_both


def _marks(s):
    marks = [pytest.mark.ipvs if s.needs_ipvs else pytest.mark.netns]
    if s.needs_vm:
        marks.append(pytest.mark.skipif(os.environ.get("DRLAB_IN_VM") != "1",
                                        reason="changes the root namespace: VM runner only"))
    if s.needs_vm or s.around:
        marks.append(pytest.mark.rootns)  # alone, under pytest-xdist
    return marks


CASES = [pytest.param(s, id=s.name, marks=_marks(s)) for s in REGISTRY.values()]


@pytest.mark.parametrize("scenario", CASES)
def test_scenario_reproduces(scenario, drlab_root):
    verdict = run_both(scenario)
    assert verdict.reproduced, verdict.report()


CHECKED = [s for s in REGISTRY.values() if s.stimulus is None]


def _same_lab(s):
    """What makes two scenarios' fixed labs the same lab: the topology (its name
    aside) and whether the scenario changes anything around it."""
    import json

    from lab.model import topology_to_dict

    d = topology_to_dict(s.topology("fixed"))
    d.pop("name", None)
    return json.dumps(d, sort_keys=True, default=str), s.around is not None


def _fixed_labs():
    """One case per distinct fixed lab (six scenarios share the healthy default DR
    lab), named after every scenario it stands for."""
    groups = {}
    for s in CHECKED:
        groups.setdefault(_same_lab(s), []).append(s)
    return [pytest.param(g[0], id="+".join(x.name for x in g)) for g in groups.values()]


def _round_trip(scenario, variant, tmp_path):
    """Build the variant's whole DR lab (`drlab up --scenario NAME --broken|--fixed`),
    `drlab check` it, collect it as an operator would (scripts/collect in every
    host's namespace), tear it down, `drlab import` the collection and check that
    the twin is the same lab (hosts, roles, addresses, VIP placements, effective
    ARP/rp_filter sysctls, services); return the check's result and the twin."""
    from twin_helpers import differences

    from lab.model.collected import import_cluster
    from lab.probes.labcheck import check
    from lab.probes.snapshot import collect
    from lab.scenarios import start

    lab = start(scenario, variant, whole=True)
    try:
        result = check(lab)
        collect(lab, tmp_path / variant)
        original = lab.topology
    finally:
        lab.teardown()
    imp = import_cluster([tmp_path / variant], fold=False)
    twin = imp.topology
    assert differences(original, twin) == [], "\n".join(imp.notes)
    return result, twin


@pytest.mark.ipvs
@pytest.mark.parametrize("scenario", [pytest.param(s, id=s.name) for s in CHECKED])
def test_broken_lab_check_and_its_collected_twin_name_the_scenario(scenario, drlab_ipvs,
                                                                   tmp_path):
    """The broken variant: `drlab check` finds symptoms, the round trip (collect,
    import) gives the same lab, and `drlab diagnose` on the twin finds exactly
    this scenario."""
    from lab.scenarios.diagnose import diagnose

    result, twin = _round_trip(scenario, "broken", tmp_path)
    assert result.symptoms, result.text()
    d = diagnose(twin)
    assert {f.name for f in d.findings} == {scenario.name}, d.text()


@pytest.mark.ipvs
@pytest.mark.parametrize("scenario", _fixed_labs())
def test_fixed_lab_check_and_its_collected_twin_find_nothing(scenario, drlab_ipvs, tmp_path):
    """The fixed variant, once per distinct lab (the scenarios in the test's id
    all have this very lab fixed): `drlab check` finds no symptom, the round trip
    gives the same lab, and `drlab diagnose` on the twin finds nothing."""
    from lab.scenarios.diagnose import diagnose

    result, twin = _round_trip(scenario, "fixed", tmp_path)
    assert result.ok, result.text()
    d = diagnose(twin)
    assert not d.findings, d.text()


@pytest.mark.netns
def test_a_scenario_whose_wait_runs_out_is_an_error_line_and_the_next_still_runs(drlab_root):
    """A scenario's own wait (VRRP never elects, a server never answers) that runs out
    is reported as that scenario's error in one line, its lab torn down, instead of
    ending `drlab scenario run` with a traceback; the next scenario still runs."""
    from dataclasses import replace

    from lab.builder import netns
    from lab.model import default_dr
    from lab.scenarios.base import Outcome
    from lab.sweep.scenario_runs import run_catalogue
    from lab.util import TIMEOUT_SCALE, Progress, wait_for

    built = []

    def stuck(lab, variant):
        built.append(list(lab.namespaces.values()))
        wait_for(lambda: False, 0.05, "something that never happens")

    def fine(lab, variant):
        return Outcome(variant == "broken", [f"{variant} looked"])

    base = replace(REGISTRY["noarp-dummy-vip"], needs_ipvs=False, services=False,
                   broken=default_dr, fixed=default_dr, around=None)
    lines = []
    progress = Progress(enabled=False)
    progress.echo = lines.append
    got = run_catalogue([(0, replace(base, name="stuck", observe=stuck)),
                         (1, replace(base, name="fine", observe=fine))], False, False,
                        progress=progress)
    assert got[0]["error"] and not got[0]["ran"] and not got[0]["reproduced"]
    assert got[0]["why"] == ("could not be measured: timed out after "
                             f"{0.05 * TIMEOUT_SCALE:.1f}s "
                             "waiting for something that never happens")
    assert lines[0] == f"stuck: ERROR: {got[0]['why']}"
    assert got[1]["ran"] and got[1]["reproduced"]
    assert len(built) == 1 and not set(built[0]) & set(netns.listing())  # torn down
