"""The type checker's house rules that mypy itself does not hold (it runs in .ci/run):
the public fixtures are typed, and every `# type: ignore` says which error and why."""

from __future__ import annotations

import ast
import io
import re
import tokenize
from pathlib import Path

import lab
import lab.pytest_plugin

LAB = Path(lab.__file__).parent

#: The fixtures a user's tests take, and what an editor must know they return.
FIXTURES = {
    "lab_factory": "Iterator[LabFactory]",
    "dr_topology": "Topology",
    "dr_lab": "Lab",
    "keepalived_topology": "Topology",
    "keepalived_lab": "Lab",
    "drlab_netns": "str",
}


def test_public_fixtures_say_what_they_return():
    tree = ast.parse(Path(lab.pytest_plugin.__file__).read_text())
    returns = {f.name: ast.unparse(f.returns) if f.returns else None
               for f in tree.body if isinstance(f, ast.FunctionDef)}
    assert {name: returns.get(name) for name in FIXTURES} == FIXTURES


def test_lab_factory_protocol_takes_what_make_takes():
    # the Protocol an editor reads and the function the fixture yields agree
    proto = next(n for n in ast.parse(Path(lab.pytest_plugin.__file__).read_text()).body
                 if isinstance(n, ast.ClassDef) and n.name == "LabFactory")
    call = next(f for f in proto.body if isinstance(f, ast.FunctionDef))
    make = next(f for f in ast.walk(ast.parse(Path(lab.pytest_plugin.__file__).read_text()))
                if isinstance(f, ast.FunctionDef) and f.name == "make")
    assert ast.unparse(call.args).removeprefix("self, ") == ast.unparse(make.args)


IGNORE = re.compile(r"#\s*type:\s*ignore(?P<code>\[[a-z, -]+\])?(?P<rest>.*)")


def _ignores(text: str) -> list[tuple[int, str]]:
    """(line, comment) of each `type: ignore` comment (comments only, not strings)."""
    return [(t.start[0], t.string) for t in tokenize.generate_tokens(io.StringIO(text).readline)
            if t.type == tokenize.COMMENT and IGNORE.search(t.string)]


def _bad(comment: str) -> bool:
    m = IGNORE.search(comment)
    assert m is not None
    return not m["code"] or not re.match(r"\s+#\s*\S", m["rest"])


def test_every_type_ignore_names_its_code_and_a_reason():
    bad = [f"{p.relative_to(LAB.parent)}:{n}: {c}"
           for p in sorted(LAB.rglob("*.py")) for n, c in _ignores(p.read_text())
           if _bad(c)]
    assert bad == []


def test_the_ignore_rule_tells_good_from_bad():
    assert not _bad("# type: ignore[arg-type]  # tcp/udp: checked above")
    assert _bad("# type: ignore")
    assert _bad("# type: ignore[arg-type]")
    assert _bad("# type: ignore  # no code")
    assert _ignores('x = "# type: ignore"\ny = 1  # type: ignore[misc]\n') == [
        (2, "# type: ignore[misc]")]


def _strict_patterns() -> list[str]:
    import tomllib

    conf = tomllib.loads((LAB.parent / "pyproject.toml").read_text())["tool"]["mypy"]
    [strict] = [o for o in conf["overrides"] if o.get("disallow_untyped_defs")]
    return strict["module"]


def _matches(module: str, pattern: str) -> bool:
    # mypy's rule: "a.*" names a and every module below it
    return module == pattern or (pattern.endswith(".*") and (
        module == pattern[:-2] or module.startswith(pattern[:-1])))


def test_mypy_is_strict_on_the_lower_layers_and_every_module_of_lab():
    patterns = _strict_patterns()
    assert {"lab.model.*", "lab.builder.*", "lab.wire.*", "lab.probes.*",
            "lab.roles.*"} <= set(patterns)
    modules = [".".join(p.relative_to(LAB.parent).with_suffix("").parts).removesuffix(
        ".__init__") for p in LAB.rglob("*.py")]
    assert [m for m in modules if not any(_matches(m, p) for p in patterns)] == []
