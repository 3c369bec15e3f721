"""Topologies -> TOML files: the writer beside :mod:`lab.model.loader`, which reads
them back. :func:`dump` writes a :class:`Topology` (``load_topology`` of the file gives
it again); :func:`to_toml` writes TOML-shaped data (what ``tomllib`` reads back), with
every character that is not printable escaped, so that no value makes a line of its own.
"""

from __future__ import annotations

import re
from typing import Any

from lab.errors import TopologyError
from lab.model.loader import topology_to_dict
from lab.model.topology import Topology


def dump(t: Topology) -> str:
    """``t`` as a topology file: ``topology_from_dict(tomllib.loads(dump(t))) == t`` (the
    services as ``[[services]]``, each real server's ``listen`` said, keepalived.conf
    texts as multi-line strings; whether scripts may run is never in a file)."""
    return to_toml(topology_to_dict(t, full=True))


_BARE = re.compile(r"[A-Za-z0-9_-]+")
_ESCAPES = {'"': '\\"', "\\": "\\\\", "\n": "\\n", "\t": "\\t", "\r": "\\r"}


def _key(k: str) -> str:
    return k if _BARE.fullmatch(k) else _str(k)


def _str(s: str) -> str:
    """A TOML basic string: every character that is not printable escaped (control
    characters, separators, bidirectional overrides), so that no value makes a line of
    its own; a lone surrogate (an undecodable name) is refused."""
    if s.isprintable() and '"' not in s and "\\" not in s:  # nothing to escape
        return '"' + s + '"'
    out = ['"']
    for ch in s:
        if ch in _ESCAPES:
            out.append(_ESCAPES[ch])
        elif ch.isprintable():
            out.append(ch)
        elif 0xD800 <= ord(ch) <= 0xDFFF:
            raise TopologyError(f"to_toml: {s[:60]!r} is not Unicode text (an "
                                "undecodable name?)")
        else:
            out.append(f"\\u{ord(ch):04x}" if ord(ch) <= 0xFFFF else f"\\U{ord(ch):08x}")
    out.append('"')
    return "".join(out)


def _text(s: str) -> str:
    """A multi-line string: literal when it can be, so that configs read as they are."""
    if "\n" in s and "'''" not in s and not s.endswith("'") and s.replace(
            "\n", "").replace("\t", "").isprintable():  # each character printable, or one of those
        return "'''\n" + s + "'''"
    return _str(s)


def _value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int | float):
        return repr(v)
    if isinstance(v, str):
        return _str(v)
    if isinstance(v, list):
        return "[" + ", ".join(_value(x) for x in v) + "]"
    if isinstance(v, dict):
        return "{ " + ", ".join(f"{_key(k)} = {_value(x)}" for k, x in v.items()) + " }" \
            if v else "{}"
    raise TypeError(f"to_toml: cannot write {type(v).__name__} {v!r}")


def _pairs(d: dict[str, Any], out: list[str]) -> None:
    for k, v in d.items():
        if isinstance(v, dict):
            continue
        if isinstance(v, list) and v and all(isinstance(x, dict) for x in v):
            out.append(f"{_key(k)} = [")
            out += [f"    {_value(x)}," for x in v]
            out.append("]")
        elif isinstance(v, str) and "\n" in v:
            out.append(f"{_key(k)} = {_text(v)}")
        else:
            out.append(f"{_key(k)} = {_value(v)}")


def _tables(path: list[str], d: dict[str, Any], out: list[str], top: bool = False) -> None:
    for k, v in d.items():
        if isinstance(v, dict):
            sub = [*path, _key(k)]
            if not v or any(not isinstance(x, dict) for x in v.values()):
                out += ["", f"[{'.'.join(sub)}]"]
                _pairs(v, out)
            _tables(sub, v, out)
        elif top and isinstance(v, list) and v and all(isinstance(x, dict) for x in v):
            for x in v:
                out += ["", f"[[{_key(k)}]]"]
                _pairs(x, out)
                _tables([_key(k)], {kk: vv for kk, vv in x.items() if isinstance(vv, dict)},
                        out)


def to_toml(data: dict[str, Any]) -> str:
    """TOML for topology-shaped data: ``tomllib.loads(to_toml(d)) == d``. Top-level
    lists of tables (``services``) become ``[[services]]``, deeper ones arrays of
    inline tables, keepalived.conf texts multi-line strings."""
    out: list[str] = []
    top = {k: v for k, v in data.items()
           if not (isinstance(v, list) and v and all(isinstance(x, dict) for x in v))}
    _pairs(top, out)
    _tables([], data, out, top=True)
    return "\n".join(out).lstrip("\n") + "\n"
