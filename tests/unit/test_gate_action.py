"""The GitHub workflow of docs/gate.md against the composite action (action.yml):
actionlint (scripts/actionlint, pinned in the lock) checks a workflow, not an
action's metadata alone; when a workflow's step is ``uses: ./`` it reads the
action.yml at the root of the workflow's project and checks the step's ``with:``
inputs and ``steps.ID.outputs`` against it. So the docs' block is written as a
workflow of a project whose action.yml is this repository's, with the action as
``./``: clean, and a misspelt input or output is reported at its line. (The
project must have a ``.git`` directory, or actionlint skips ``./`` silently.)"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
DOC = REPO / "docs" / "gate.md"
USES = "OWNER/lvs-dr-lab@main"


def _block() -> str:
    (block,) = [b for b in re.findall(r"```yaml\n(.*?)```", DOC.read_text(), re.S)
                if "jobs:" in b and USES in b]
    return block


def _lint(tmp_path: Path, workflow: str) -> subprocess.CompletedProcess[str]:
    """actionlint on ``workflow`` as .github/workflows/gate.yml of a project whose
    action.yml is a copy of the repository's. actionlint (1.17.0) finds a project
    only by a ``.git`` directory above the workflow: without one it resolves no
    ``uses: ./`` and checks nothing of it, silently (measured), so one is made."""
    wf = tmp_path / ".github" / "workflows" / "gate.yml"
    wf.parent.mkdir(parents=True)
    (tmp_path / ".git").mkdir()
    wf.write_text(workflow.replace(USES, "./"))
    (tmp_path / "action.yml").write_text((REPO / "action.yml").read_text())
    return subprocess.run([str(REPO / "scripts" / "actionlint"), str(wf)],
                          capture_output=True, text=True, timeout=120)


def test_actionlint_passes_the_docs_workflow_with_the_action(tmp_path):
    p = _lint(tmp_path, _block())
    assert p.returncode == 0, p.stdout + p.stderr


def test_actionlint_reports_a_wrong_input_and_output(tmp_path):
    block = _block()
    broken = (block.replace("reload-budget:", "reload-budjet:", 1)
              .replace("outputs.verdict", "outputs.verdikt", 1))
    assert broken != block and broken.count("\n") == block.count("\n")
    p = _lint(tmp_path, broken)
    assert p.returncode == 1, p.stdout + p.stderr
    lines = broken.splitlines()
    for typo, says in (("reload-budjet", 'input "reload-budjet" is not defined in action '
                        '"drlab gate"'),
                       ("verdikt", 'property "verdikt" is not defined')):
        line = next(i for i, t in enumerate(lines, 1) if typo in t)
        assert re.search(rf"gate\.yml:{line}:\d+: .*{re.escape(says)}", p.stdout), p.stdout


def test_actionlint_reports_an_input_the_action_does_not_have(tmp_path):
    """The check reads action.yml itself: the docs' input against an action that
    lost it fails."""
    (tmp_path / "sub").mkdir()
    p = _lint(tmp_path / "sub", _block())
    assert p.returncode == 0
    action = tmp_path / "sub" / "action.yml"
    action.write_text(action.read_text().replace("  reload-budget:", "  budget:", 1))
    p = subprocess.run([str(REPO / "scripts" / "actionlint"),
                        str(tmp_path / "sub" / ".github" / "workflows" / "gate.yml")],
                       capture_output=True, text=True, timeout=120)
    assert p.returncode == 1 and 'input "reload-budget" is not defined' in p.stdout, p.stdout
