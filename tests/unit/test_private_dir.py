"""lab.util.private_dir / check_dir / open_new / write_atomic: the directories and files
root writes are its own, checked by lstat, never reached through a link."""

from __future__ import annotations

import os
import stat

import pytest

from lab.errors import UnsafePathError, UsageError
from lab.util import check_dir, open_new, private_dir, write_atomic


def test_made_0700_with_its_parent_0755(tmp_path):
    d = private_dir(tmp_path / "run" / "vm")
    assert stat.S_IMODE(os.lstat(d).st_mode) == 0o700
    assert stat.S_IMODE(os.lstat(d.parent).st_mode) & 0o022 == 0
    assert private_dir(d) == d  # an existing one of root's own: fine


def test_a_parent_may_be_roots_sticky_tmp(tmp_path):
    assert os.lstat("/tmp").st_mode & stat.S_ISVTX
    d = private_dir(f"/tmp/drlab-unit-{os.getpid()}")
    try:
        assert d.is_dir()
    finally:
        d.rmdir()


@pytest.mark.parametrize("what", ["link", "file", "group-writable", "world-readable",
                                  "foreign", "parent-link", "parent-writable", "no-grandparent"])
def test_anything_else_is_one_line_naming_the_path(tmp_path, what):
    run = tmp_path / "run"
    run.mkdir(mode=0o755)
    d = run / "vm"
    if what == "link":
        d.symlink_to(tmp_path)
    elif what == "file":
        d.write_text("")
    elif what == "group-writable":
        d.mkdir()
        d.chmod(0o770)
    elif what == "world-readable":
        d.mkdir()
        d.chmod(0o755)
    elif what == "foreign":
        if os.geteuid() != 0:
            pytest.skip("chown needs root")
        d.mkdir(mode=0o700)
        os.chown(d, 65534, -1)
    elif what == "parent-link":
        run.rmdir()
        (tmp_path / "elsewhere").mkdir()
        run.symlink_to(tmp_path / "elsewhere")
    elif what == "parent-writable":
        run.chmod(0o777)
    else:
        run.rmdir()
        d = tmp_path / "a" / "b" / "vm"
    with pytest.raises(UnsafePathError) as e:
        private_dir(d)
    msg = str(e.value)
    assert "\n" not in msg and (str(d) in msg or str(d.parent) in msg), msg
    assert isinstance(e.value, UsageError) and e.value.exit_code == 2
    if what == "link":
        assert list((tmp_path / "run").iterdir()) == [d]  # nothing made through it


def test_check_dir_allows_a_stricter_mode(tmp_path):
    d = tmp_path / "x"
    d.mkdir(mode=0o700)
    check_dir(d, 0o755)
    d.chmod(0o750)
    with pytest.raises(UnsafePathError, match="0750: others may read it"):
        check_dir(d)


def test_open_new_never_follows_a_link_nor_truncates(tmp_path):
    target = tmp_path / "target"
    target.write_text("root's\n")
    (tmp_path / "link").symlink_to(target)
    for append in (False, True):
        with pytest.raises(OSError):
            open_new(tmp_path / "link", append=append)
    with pytest.raises(FileExistsError):
        open_new(target)
    assert target.read_text() == "root's\n"


def test_write_atomic_replaces_a_link_instead_of_writing_through_it(tmp_path):
    target = tmp_path / "target"
    target.write_text("root's\n")
    (tmp_path / "rec").symlink_to(target)
    write_atomic(tmp_path / "rec", "new")
    assert target.read_text() == "root's\n"
    assert not (tmp_path / "rec").is_symlink() and (tmp_path / "rec").read_text() == "new"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["rec", "target"]
