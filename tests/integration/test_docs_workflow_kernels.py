"""Every kernel the GitHub Actions example in docs/kernels.md names is one that
`drlab kernels list --available` offers today: a suite with a fetchable amd64 build,
a build or newest-SERIES that resolves to a fetchable build, all-available with at
least one. Reads Debian's kernel index (the one `kernels list --available` keeps;
fetched from the mirrors when this machine has none yet)."""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path

from lab.errors import LabError
from lab.sweep import kernels

_DOCS_CI = Path(__file__).resolve().parents[1] / "unit" / "test_docs_ci.py"


def _workflows() -> list[tuple[Path, str]]:
    spec = importlib.util.spec_from_file_location("_docs_ci", _DOCS_CI)
    assert spec and spec.loader
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return list(mod.workflows())


def test_every_kernel_the_workflow_names_is_offered_by_the_index():
    try:
        builds = kernels.available(refresh=False)
    except LabError:  # no index on this machine yet: the mirrors' own
        builds = kernels.available(refresh=True)
    amd64 = [b for b in builds if b.flavour == "amd64" and b.fetchable]
    names = {n for _, block in _workflows() for n in re.findall(r"--kernel\s+(\S+)", block)}
    assert names >= {"bookworm", "trixie", "newest-7", kernels.ALL_AVAILABLE}, names
    for name in sorted(names):
        if name == kernels.ALL_AVAILABLE:
            assert amd64, "all-available: no fetchable amd64 build"
        elif name in kernels.SUITES:
            assert any(b.suite == name for b in amd64), f"{name}: no fetchable amd64 build"
        else:
            assert kernels.by_name(name, builds).fetchable, name
