"""The GitHub Actions example in docs/kernels.md: every kernel it names is one
`kernels list --available` offers (a reachable suite, a build, newest-SERIES,
all-available; tests/integration/test_docs_workflow_kernels.py resolves them in
Debian's index), and actionlint (scripts/actionlint, pinned in the lock) passes it
and fails a broken copy of it."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

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


def _actionlint(*files: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(REPO / "scripts" / "actionlint"), *map(str, files)],
                          capture_output=True, text=True, timeout=120)


def test_actionlint_passes_the_workflow(tmp_path):
    files = []
    for i, (f, block) in enumerate(workflows()):
        files.append(tmp_path / f"w{i}-{f.stem}.yml")
        files[-1].write_text(block)
    p = _actionlint(*files)
    assert p.returncode == 0, p.stdout + p.stderr


def test_actionlint_fails_a_broken_workflow(tmp_path):
    """The lint can fail: a typo in an expression, an action input and a retired
    action each give a finding at their line."""
    (_, block), = [w for w in workflows() if "all-available" in w[1]]
    broken = (block.replace("${{ matrix.shard }}/10", "${{ matrix.shards }}/10", 1)
              .replace("merge-multiple:", "merge-multiples:", 1)
              .replace("actions/checkout@v5", "actions/checkout@v3", 1))
    assert broken.count("\n") == block.count("\n")
    wf = tmp_path / "broken.yml"
    wf.write_text(broken)
    p = _actionlint(wf)
    assert p.returncode == 1, p.stdout + p.stderr
    found = {(int(m[1]), m[2]) for m in
             re.finditer(r"^.*broken\.yml:(\d+):\d+: (.*)$", p.stdout, re.M)}
    for typo, says in (("matrix.shards", 'property "shards" is not defined'),
                       ("merge-multiples", 'input "merge-multiples" is not defined'),
                       ("checkout@v3", '"actions/checkout@v3" action is retired')):
        line = next(i for i, t in enumerate(broken.splitlines(), 1) if typo in t)
        # (in a folded `run: >` block actionlint's line can be a line or two off)
        assert any(abs(n - line) <= 2 and says in m for n, m in found), f"{typo}: {p.stdout}"


def test_actionlint_refuses_bad_usage(tmp_path):
    for args in ([], [tmp_path / "missing.yml"]):
        p = _actionlint(*args)
        assert p.returncode == 2 and len(p.stderr.strip().splitlines()) == 1, p.stderr
