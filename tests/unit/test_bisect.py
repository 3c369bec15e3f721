"""The bisect engine, with a fake verdict: the version predicate of #25's done-when."""

from __future__ import annotations

import math

import pytest

from lab.errors import LabError
from lab.sweep.bisect import Verdict, bisect
from lab.sweep.kernels import compare_versions

# upstream versions as `uname -r` gives them (a made-up but Debian-shaped run)
BUILDS = [f"6.12.{n}" for n in (90, 94, 95, 96, 100, 101, 105, 107, 111, 113, 115, 116, 117,
                                118)] + [f"7.{m}.{p}" for m, p in ((2, 6), (2, 9), (3, 4))]


def below(limit: str):
    def judge(v: str) -> Verdict:  # good while the version is below the limit
        return Verdict.GOOD if compare_versions(v, limit) < 0 else Verdict.BAD
    return judge


@pytest.mark.parametrize("limit", ["6.12.101", "6.12.91", "6.12.118", "7.3.4", "7.2.9"])
def test_version_predicate_finds_the_adjacent_pair_in_log2_plus_2_boots(limit):
    r = bisect(BUILDS, below(limit))
    i = BUILDS.index(r.first_bad)
    assert r.first_bad == min(b for b in BUILDS if compare_versions(b, limit) >= 0) \
        or BUILDS[i] == r.first_bad
    assert BUILDS[i - 1] == r.last_good
    assert compare_versions(r.last_good, limit) < 0 <= compare_versions(r.first_bad, limit)
    assert r.boots <= math.ceil(math.log2(len(BUILDS))) + 2


def test_skipped_builds_are_passed_over_and_neighbours_tried():
    broken = {"6.12.100", "6.12.101", "6.12.105"}

    def judge(v: str) -> Verdict:
        return Verdict.SKIP if v in broken else below("6.12.101")(v)

    r = bisect(BUILDS, judge)
    assert (r.last_good, r.first_bad) == ("6.12.96", "6.12.107")
    assert r.skipped_between == ["6.12.100", "6.12.101", "6.12.105"]
    assert {s.build for s in r.steps if s.verdict is Verdict.SKIP} <= broken


def test_a_fix_is_found_with_the_good_build_newer():
    def fixed(v: str) -> Verdict:  # broken before 6.12.111, fixed from it on
        return Verdict.GOOD if compare_versions(v, "6.12.111") >= 0 else Verdict.BAD

    r = bisect(list(reversed(BUILDS)), fixed)
    assert (r.last_good, r.first_bad) == ("6.12.111", "6.12.107")


def test_no_change_between_the_ends_is_an_error():
    with pytest.raises(LabError, match="nothing changed"):
        bisect(BUILDS, lambda v: Verdict.GOOD)


CHANGELOG = """\
linux (7.9.3-1) unstable; urgency=medium

  * New upstream stable update:
    https://www.kernel.org/pub/linux/kernel/v7.x/ChangeLog-7.9.3
    - ipvs: fix a made-up thing in the
      connection table
    - drm/foo: unrelated
    - locking/rt: Fix something in rt_spin_unlock()
  * [amd64] netfilter: nf_tables: a cherry-pick (0123456789ab)

 -- Someone <someone@example.org>  Mon, 01 Jan 2029 00:00:00 +0000

linux (7.9.2-1) unstable; urgency=medium

  * New upstream stable update:
    - neighbour: a change in 7.9.2
    - sound: unrelated

 -- Someone <someone@example.org>  Mon, 01 Dec 2028 00:00:00 +0000

linux (7.9.1-1) unstable; urgency=medium

  * New upstream stable update:
    - ipv4: fib: a change in 7.9.1, before the range
"""


def test_suspects_between_two_uploads_with_commit_ids():
    from lab.sweep.bisect import suspects

    got = suspects(CHANGELOG, "7.9.1-1", "7.9.3-1")
    assert [(s.version, s.text, s.commits) for s in got] == [
        ("7.9.3-1", "ipvs: fix a made-up thing in the connection table", ()),
        ("7.9.3-1", "[amd64] netfilter: nf_tables: a cherry-pick (0123456789ab)",
         ("0123456789ab",)),
        ("7.9.2-1", "neighbour: a change in 7.9.2", ())]
    # a fix (good newer than bad): the same uploads
    assert suspects(CHANGELOG, "7.9.3-1", "7.9.1-1") == got


def test_signed_package_uploads_map_to_linux_versions():
    from lab.sweep.bisect import changelog_items

    text = ("linux-signed-amd64 (6.12.90+1~bpo13+1) trixie; urgency=high\n\n"
            "  * Sign kernel from linux 6.12.90-1~bpo13+1\n"
            "    - ipvs: something\n")
    v = "6.12.90-1~bpo13+1"
    assert changelog_items(text) == [(v, f"Sign kernel from linux {v}"), (v, "ipvs: something")]


def test_line_of_a_build():
    from lab.sweep.bisect import line_of

    assert line_of("6.12.96+deb13-amd64") == line_of("6.12.115+deb13.1-amd64") == "+deb13"
    assert line_of("6.12.100+deb12-cloud-amd64") == "+deb12"
    assert line_of("6.1.0-48-amd64") == ""


def test_bisect_page_has_answer_steps_and_suspects():
    from lab.report.bisect_html import bisect_html
    from lab.sweep.bisect import KernelBisection, Suspect

    r = bisect(BUILDS, below("6.12.101"))
    sus = [Suspect("6.12.101-1", "ipvs: <x>", ("0123456789ab",))]
    k = KernelBisection(r, BUILDS, "ok", 12.0, sus,
                        timings={r.steps[0].build: {"fetch": 1.5, "boot": 30.0, "run": 40.0}})
    page = bisect_html(k, ["run", "true"])
    assert "6.12.100" in page and "6.12.101" in page and "ipvs: &lt;x&gt;" in page
    assert "0123456789ab" in page and page.count("<tr>") >= r.boots + 2 and "<script" not in page
