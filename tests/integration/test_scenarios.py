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


CHECKED = [pytest.param(s, id=s.name) for s in REGISTRY.values() if s.stimulus is None]
#: Fixed variants whose twin is diagnosed too (every fixed twin is still collected,
#: imported and compared with its lab): one per family of detector.
HEALTHY_TWINS = {"rs-answers-arp", "missing-vip-on-rs", "director-vip-primary"}


@pytest.mark.ipvs
@pytest.mark.parametrize("scenario", CHECKED)
def test_check_and_the_collected_twin_name_the_broken_lab_only(scenario, drlab_ipvs, tmp_path):
    """Each variant's whole DR lab (`drlab up --scenario NAME --broken|--fixed`):

    * `drlab check` on it: the broken one has symptoms, the fixed one none;
    * round trip: scripts/collect runs in every host's namespace, `drlab import`
      makes the twin, which is the same lab (hosts, roles, addresses, VIP
      placements, effective ARP/rp_filter sysctls, services), and `drlab
      diagnose` on the twin finds exactly this scenario in the broken variant and
      nothing in the fixed one (diagnosed for three of them, HEALTHY_TWINS)."""
    from twin_helpers import differences

    from lab.model import topology_from_dict
    from lab.model.collected import import_cluster
    from lab.probes.check import check
    from lab.probes.snapshot import collect
    from lab.scenarios import start
    from lab.scenarios.diagnose import diagnose

    results, originals = {}, {}
    for variant in ("broken", "fixed"):
        lab = start(scenario, variant, whole=True)
        try:
            results[variant] = check(lab)
            collect(lab, tmp_path / variant)
            originals[variant] = lab.topology
        finally:
            lab.teardown()
    assert results["broken"].symptoms, results["broken"].text()
    assert results["fixed"].ok, results["fixed"].text()
    for variant in ("broken", "fixed"):
        imp = import_cluster([tmp_path / variant], fold=False)
        twin = topology_from_dict(imp.topology)
        assert differences(originals[variant], twin) == [], "\n".join(imp.notes)
        if variant == "fixed" and scenario.name not in HEALTHY_TWINS:
            continue  # the VM's time: three healthy twins prove no false finding
        d = diagnose(twin)
        found = {f.name for f in d.findings}
        want = {scenario.name} if variant == "broken" else set()
        assert found == want, d.text()
