"""An import inside a function says why it is not at the top of its module (#24): a
``# lazy: ...`` comment on its line or on the line before it (for a block of consecutive
imports, before the block's first). What the reasons say was measured with
``python -X importtime`` and in a fresh interpreter: ``+N modules`` are the modules the
import adds to those already loaded with its own module (for lab/cli, with drlab's parser
built), ``pyroute2`` when they include it."""

from __future__ import annotations

import ast
import io
import tokenize
from pathlib import Path

import lab

LAB = Path(lab.__file__).parent

Import = ast.Import | ast.ImportFrom


def _lazy_comments(text: str) -> set[int]:
    """The lines holding a ``# lazy:`` comment (comments only, not strings)."""
    return {t.start[0] for t in tokenize.generate_tokens(io.StringIO(text).readline)
            if t.type == tokenize.COMMENT and t.string.lstrip("# ").startswith("lazy:")}


def _blocks(tree: ast.Module) -> list[list[Import]]:
    """Each run of consecutive import statements inside a function."""
    blocks: list[list[Import]] = []
    seen: set[int] = set()
    for fn in ast.walk(tree):
        if not isinstance(fn, ast.FunctionDef | ast.AsyncFunctionDef):
            continue
        for node in ast.walk(fn):
            for field in ("body", "orelse", "finalbody"):
                body = getattr(node, field, None)
                if not isinstance(body, list):
                    continue
                for stmt in body:
                    if not isinstance(stmt, Import) or id(stmt) in seen:
                        continue
                    seen.add(id(stmt))
                    last = blocks[-1][-1] if blocks else None
                    if last is not None and last.end_lineno == stmt.lineno - 1 \
                            and last in body:
                        blocks[-1].append(stmt)
                    else:
                        blocks.append([stmt])
    return blocks


def unexplained(text: str) -> list[int]:
    """The lines of the imports inside functions in ``text`` that do not say why."""
    lazy = _lazy_comments(text)
    bad = []
    for block in _blocks(ast.parse(text)):
        first, last = block[0].lineno, block[-1].end_lineno or block[-1].lineno
        if not lazy & set(range(first - 1, last + 1)):
            bad += [s.lineno for s in block]
    return bad


def test_every_import_inside_a_function_says_why():
    bad = [f"{p.relative_to(LAB.parent)}:{line}" for p in sorted(LAB.rglob("*.py"))
           for line in unexplained(p.read_text())]
    assert not bad, "imports inside functions without a '# lazy: why' comment: " \
        + ", ".join(bad)


def test_the_check_sees_a_missing_reason():
    text = ("def f():\n"
            "    # lazy: pyroute2 costs ~0.1 s\n"
            "    import pyroute2\n"
            "    import json\n"
            "\n"
            "    import csv  # lazy: a reason on its own line\n"
            "    x = 1\n"
            "    import re\n"
            "    return x\n")
    assert unexplained(text) == [8]
    assert unexplained("def f():\n    # a comment, not a reason\n    import re\n") == [3]
    assert unexplained("import re\n") == []
