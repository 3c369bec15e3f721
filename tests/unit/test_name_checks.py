"""Names are checked whole (fullmatch): a trailing newline, a path, a foreign prefix
never pass. The ownership layer refuses what is not a lab's own, whoever calls it."""

import json
import os

import pytest

from lab.builder import netns, ownership
from lab.errors import UsageError
from lab.model import Host, Interface, Segment, Topology, check_sysctl, default_dr


@pytest.mark.parametrize("name", ["x\n", "../../x", "", "A", "-x", "x" * 17, "x/y", "x\0"])
def test_a_lab_name_is_checked_whole(name):
    with pytest.raises(UsageError, match=r"must match \[a-z0-9\]"):
        ownership.check_name(name)
    with pytest.raises(UsageError):
        _ = ownership.Record(name, 1, None).path
    with pytest.raises(UsageError):
        ownership.find(name)


def test_good_lab_names_pass():
    for name in ("a", "lab-1", "0" * 16):
        assert ownership.check_name(name) == name


@pytest.fixture
def labs_dir(tmp_path, monkeypatch):
    d = tmp_path / "labs"
    d.mkdir()
    monkeypatch.setattr(ownership, "LABS_DIR", d)
    return d


def write(d, name, **kw):
    rec = {"lab": name, "owner_pid": 1, "owner_start": None, "persistent": True, **kw}
    (d / f"{name}.json").write_text(json.dumps(rec))


@pytest.mark.parametrize("kw", [
    {"namespaces": ["drl-other-h1"]},
    {"namespaces": ["drl-mine-h1/../x"]},
    {"namespaces": ["drl-mine-h1\n"]},
    {"files": ["/etc/passwd"]},
    {"files": ["LABS/mine.d/../../x"]},
    {"pids": [[1]]},
    {"pids": [["1", 2]]},
])
def test_a_record_naming_what_is_not_its_labs_is_refused(labs_dir, kw):
    kw = json.loads(json.dumps(kw).replace("LABS", str(labs_dir)))
    write(labs_dir, "mine", **kw)
    with pytest.raises(ownership.RecordError, match="refusing the record of lab mine"):
        ownership.find("mine")
    assert ownership.records() == []


def test_a_labs_own_record_loads(labs_dir):
    write(labs_dir, "mine", namespaces=["drl-mine-rs1", "drl-mine-sw-lan"],
          files=[str(labs_dir / "mine.d")], pids=[[12, 34]])
    rec = ownership.find("mine")
    assert rec is not None and rec.namespaces == ["drl-mine-rs1", "drl-mine-sw-lan"]
    assert [r.lab for r in ownership.records()] == ["mine"]


def test_a_record_under_another_labs_file_name_is_refused(labs_dir):
    write(labs_dir, "other")
    os.rename(labs_dir / "other.json", labs_dir / "mine.json")
    with pytest.raises(ownership.RecordError, match="record of another lab"):
        ownership.find("mine")


def test_a_record_that_is_a_link_is_refused(labs_dir, tmp_path):
    write(tmp_path, "mine")
    (labs_dir / "mine.json").symlink_to(tmp_path / "mine.json")
    with pytest.raises(ownership.RecordError, match="refusing"):
        ownership.find("mine")
    assert ownership.records() == []


def test_destroy_refuses_before_it_touches_anything(labs_dir, monkeypatch):
    removed = []
    monkeypatch.setattr(netns, "remove", lambda ns: removed.append(ns))
    victim = labs_dir.parent / "victim"
    victim.write_text("keep")
    rec = ownership.Record("mine", 1, None, namespaces=["drl-mine-h1", "drl-x-h1"],
                           files=[str(victim)])
    with pytest.raises(ownership.RecordError):
        ownership.destroy(rec)
    assert removed == [] and victim.read_text() == "keep"


def test_model_names_are_checked_whole():
    t = Topology("x", [Host("rs1\n", "client", [Interface("eth0\n", "lan\n")])],
                 [Segment("lan\n")])
    with pytest.raises(Exception) as e:
        t.validate()
    msg = str(e.value)
    assert "host 'rs1\\n': name must match" in msg
    assert "segment name 'lan\\n' must match" in msg
    assert check_sysctl("net.ipv4.conf.all.rp_filter\n", "1") is not None
    assert check_sysctl("net.ipv4.conf.all.rp_filter", "1") is None
    assert default_dr().validate()


def test_a_kernel_suite_name_is_checked_whole():
    from lab.sweep.kernels import fetch_debian

    with pytest.raises(UsageError, match="not a Debian suite name"):
        fetch_debian("bookworm\n")
