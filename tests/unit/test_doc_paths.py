"""The docs name only repository paths that exist.

Every path a doc names in backticks (inline or in a fenced block) that looks like
one of the repository's (``lab/...``, ``tests/...``, ``scripts/...``, ``docs/...``,
``examples/...``, ``.ci/run``, ``*.md``) and every relative link target must exist:
a moved module or a renamed script fails here, not in a reader's shell.
CHANGELOG.md is history (it names what was, by design) and is not checked.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]

#: A repository path inside code: one of the top-level directories, ``.ci/run``, or a
#: Markdown file; not part of a longer path or name (``/run/drlab/labs/...`` is not
#: ``lab/...``).
PATH = re.compile(
    r"(?<![\w./<>-])"
    r"((?:lab|tests|scripts|docs|examples)/[\w.*/-]*|\.ci/run\b|[\w-][\w./-]*\.md\b)")
LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")
FENCE = re.compile(r"^(```|~~~)")
INLINE = re.compile(r"(`+)(.+?)\1")


@dataclass(frozen=True)
class Named:
    """A path a doc names: the doc, its line, the path, and whether it is a link."""

    doc: Path
    line: int
    path: str
    link: bool

    def exists(self) -> bool:
        path = self.path.split("#", 1)[0].rstrip("/")
        if not path:  # an anchor in the same page
            return True
        bases = [self.doc.parent] if self.link else [REPO, self.doc.parent]
        for base in bases:
            if any(c in path for c in "*?["):
                if any(base.glob(path)):
                    return True
            elif (base / path).exists():
                return True
        return False

    def __str__(self) -> str:
        return f"{self.doc.relative_to(REPO)}:{self.line}: {self.path}"


def named_paths(doc: Path) -> list[Named]:
    """Every repository path ``doc`` names in code or as a relative link."""
    found: list[Named] = []
    fenced = False
    for n, line in enumerate(doc.read_text().splitlines(), 1):
        if FENCE.match(line.lstrip()):
            fenced = not fenced
            continue
        code = [line] if fenced else [m.group(2) for m in INLINE.finditer(line)]
        for text in code:
            found += [Named(doc, n, m.group(1).rstrip(".,;:"), False)
                      for m in PATH.finditer(text)]
        if not fenced:
            for m in LINK.finditer(line):
                target = m.group(1)
                if not re.match(r"[a-z][a-z0-9+.-]*:", target):  # http:, mailto:, ...
                    found.append(Named(doc, n, target, True))
    return found


def docs() -> list[Path]:
    return [REPO / "README.md", REPO / "CONTRIBUTING.md", REPO / "SECURITY.md",
            *sorted((REPO / "docs").glob("*.md"))]


@pytest.mark.parametrize("doc", docs(), ids=lambda p: str(p.relative_to(REPO)))
def test_every_path_a_doc_names_exists(doc: Path) -> None:
    missing = [str(p) for p in named_paths(doc) if not p.exists()]
    assert not missing, "docs name paths that do not exist:\n" + "\n".join(missing)


def test_the_check_sees_a_missing_path(tmp_path: Path) -> None:
    """A made-up path in code or a link is caught; look-alikes are not paths."""
    doc = REPO / "docs" / "probe.md"  # never written: only its name and directory matter
    text = ("`lab/nosuch.py` and [x](nosuch.md) and `scripts/test -k x` and "
            "`/run/drlab/labs/<lab>.json` and [y](https://example.com/a.md) and "
            "[z](architecture.md#the-layers)\n```sh\nscripts/nosuch --flag\n```\n")
    src = tmp_path / "probe.md"
    src.write_text(text)
    found = [Named(doc, p.line, p.path, p.link) for p in named_paths(src)]
    assert [(p.path, p.exists()) for p in found] == [
        ("lab/nosuch.py", False), ("scripts/test", True), ("nosuch.md", False),
        ("architecture.md#the-layers", True), ("scripts/nosuch", False)]
