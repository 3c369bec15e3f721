"""The predictor's rules, case by case (pure; measured in tests/integration/test_arp_matrix.py)."""

import pytest

from lab.model.predict import RsConfig, matrix, predict, topology_for

OK = RsConfig()


def test_correct_dr_real_server():
    p = predict(OK)
    assert (p.answers_arp, p.announce_sender, p.dr_works, p.poisons) == (False, "rip", True,
                                                                         False)


@pytest.mark.parametrize("ignore,answers", [(0, True), (1, False), (2, False), (3, True),
                                            (8, False)])
def test_arp_ignore_with_vip_on_lo(ignore, answers):
    assert predict(RsConfig(arp_ignore=ignore)).answers_arp is answers


def test_arp_ignore_3_respects_scope_host_anywhere():
    assert predict(RsConfig(arp_ignore=3, scope="host")).answers_arp is False
    assert predict(RsConfig(arp_ignore=3, scope="host", vip_place="lan")).answers_arp is False
    assert predict(RsConfig(arp_ignore=3, scope="global", vip_place="lan")).answers_arp is True


@pytest.mark.parametrize("announce,inside,sender", [
    (0, True, "vip"), (0, False, "vip"), (1, True, "vip"), (1, False, "rip"),
    (2, True, "rip"), (2, False, "rip")])
def test_arp_announce_sender(announce, inside, sender):
    p = predict(RsConfig(arp_announce=announce, vip_in_lan=inside))
    assert p.announce_sender == sender
    assert p.poisons is (sender == "vip")


def test_knobs_on_lo_only_change_nothing():
    p = predict(RsConfig(arp_ignore=1, arp_announce=2, knob_on="lo"))
    assert p == predict(RsConfig(arp_ignore=0, arp_announce=0))
    assert p.answers_arp and p.poisons


def test_vip_on_lan_interface_is_answered_even_with_arp_ignore_1_and_2():
    for ignore in (1, 2):
        assert predict(RsConfig(arp_ignore=ignore, vip_place="lan")).answers_arp


def test_missing_vip_and_wide_prefix_break_dr():
    absent = predict(RsConfig(vip_place="absent"))
    assert (absent.answers_arp, absent.dr_works, absent.announce_sender) == (False, False, None)
    wide = predict(RsConfig(vip_place="lo-wide"))
    assert wide.dr_works is False
    assert predict(RsConfig(vip_place="lo-wide", vip_in_lan=False)).dr_works is True


def test_arp_ignore_8_hides_the_rip():
    p = predict(RsConfig(arp_ignore=8))
    assert (p.answers_arp, p.dr_works) == (False, False)


def test_rp_filter_does_not_break_single_homed_servers():
    for rp in (0, 1, 2):
        assert predict(RsConfig(rp_filter=rp)).dr_works


def test_matrix_is_unique_and_builds_valid_topologies():
    cases = matrix()
    assert len(cases) == len(set(cases)) >= 90
    for c in cases:
        t = topology_for(c)
        rs = t.host("rs1")
        if c.vip_place == "lo32":
            assert rs.lo[0].prefixlen == 32 and rs.lo[0].scope == c.scope
        if c.knob_on == "lo":
            assert rs.sysctls["net.ipv4.conf.lo.arp_ignore"] == str(c.arp_ignore)
            assert rs.sysctls["net.ipv4.conf.all.arp_ignore"] == "0"


def test_extra_sysctls_count_with_the_max_of_all_and_eth0():
    from dataclasses import replace

    from lab.model.predict import RsConfig, effective_knobs, predict, rs_sysctls

    lo_only = RsConfig(knob_on="lo")
    assert predict(lo_only).answers_arp  # knobs on lo only: like the defaults
    fixed = replace(lo_only, extra=(("net.ipv4.conf.eth0.arp_ignore", "1"),))
    assert effective_knobs(fixed) == (1, 0)
    assert not predict(fixed).answers_arp and predict(fixed).poisons
    assert fixed.label() == lo_only.label()  # a baseline pairs them
    assert rs_sysctls(fixed)["net.ipv4.conf.eth0.arp_ignore"] == "1"
