"""Files a command writes, when it runs in a VM: which options name them
(lab.cli.written_paths) and which paths the VM would lose (lab.machine.vm.check_written)."""

from __future__ import annotations

from pathlib import Path

import pytest

from lab.cli import written_paths
from lab.errors import UsageError
from lab.machine import vm


@pytest.mark.parametrize(("argv", "paths"), [
    (["diagnose", "c.toml", "--html", "/tmp/d.html", "--json-file", "d.json"],
     [("--json-file", "d.json"), ("--html", "/tmp/d.html")]),
    (["diagnose", "c.toml", "--json"], []),
    (["scenario", "run", "all", "--json", "v.json"], [("--json", "v.json")]),
    (["matrix", "--markdown", "m.md", "--save", "b.json"],
     [("--markdown", "m.md"), ("--save", "b.json")]),
    (["import", "d", "-o", "c.toml"], [("--output", "c.toml")]),
    (["import", "d", "-o", "-"], []),  # stdout
    (["status", "--json"], []),
    (["no-such-verb", "--html", "/tmp/x"], []),  # the command itself says what is wrong
])
def test_written_paths(argv, paths):
    assert written_paths(argv) == paths


def test_check_written_takes_paths_under_the_shared_dirs_only(tmp_path: Path):
    repo, elsewhere = tmp_path / "repo", tmp_path / "elsewhere"
    (repo / "sub").mkdir(parents=True)
    elsewhere.mkdir()
    (repo / "out").symlink_to(elsewhere)  # a link in the repo to a place the VM loses
    shared = (repo,)
    vm.check_written([("--html", "sub/d.html"), ("--json", str(repo / "v.json"))],
                     cwd=repo, shared=shared)
    vm.check_written([("--json", "../repo/v.json")], cwd=repo / "sub", shared=shared)
    for path, cwd in (("/tmp/d.html", repo), ("d.html", elsewhere), ("../d.html", repo),
                      ("out/d.html", repo)):
        with pytest.raises(UsageError) as e:
            vm.check_written([("--html", path)], cwd=cwd, shared=shared)
        assert str(e.value).startswith(f"--html {path}: this command runs in a VM, which "
                                       f"writes files through to this host only under {repo}")
        assert "\n" not in str(e.value)
