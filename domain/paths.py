"""Field paths: ``spec.lambdaMemory``, ``metadata.annotations["a.b/c"]``, ``spec.list[0]``.

One syntax everywhere — drift reports, conflict lists, ``ignore`` entries and
``tributary set`` — so a path copied from one place works in the others.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Iterator
from typing import Any

from domain.errors import BadInput

Segment = str | int
Path = tuple[Segment, ...]

_PLAIN = re.compile(r"[A-Za-z_][A-Za-z0-9_-]*")
_TOKEN = re.compile(
    r"""
    (?P<dot>\.)?
    (?:
        (?P<name>[A-Za-z0-9_-]+)
      | \[(?P<index>\d+)\]
      | \["(?P<dq>(?:[^"\\]|\\.)*)"\]
      | \['(?P<sq>(?:[^'\\]|\\.)*)'\]
    )
    """,
    re.VERBOSE,
)


def parse_path(text: str) -> Path:
    """Parse a path; raises ``BadInput`` naming the offending position."""
    text = text.strip()
    if not text:
        raise BadInput("empty field path", field=text)
    segments: list[Segment] = []
    pos = 0
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if not m or (pos > 0 and m.group("name") is not None and not m.group("dot")):
            raise BadInput(f"cannot parse field path at position {pos}", field=text)
        if pos == 0 and m.group("dot"):
            raise BadInput("a field path cannot start with '.'", field=text)
        if m.group("name") is not None:
            segments.append(m.group("name"))
        elif m.group("index") is not None:
            segments.append(int(m.group("index")))
        else:
            quoted = m.group("dq") if m.group("dq") is not None else m.group("sq")
            segments.append(re.sub(r"\\(.)", r"\1", quoted))
        pos = m.end()
    return tuple(segments)


# The fields that make an object the object it is: changing one would make a unit
# describe another object (or none), so no edit outside Git may touch them.
IDENTITY_PATHS: tuple[Path, ...] = (
    ("apiVersion",),
    ("kind",),
    ("metadata", "name"),
    ("metadata", "namespace"),
)


def identity_problem(path: Path) -> str | None:
    """Why setting ``path`` would change an object's identity, or None.

    Guards the identity fields themselves, everything under them
    (``metadata.name.x``) and everything above them (``metadata``, the root):
    replacing a parent replaces the identity field inside it.
    """
    for guarded in IDENTITY_PATHS:
        n = min(len(path), len(guarded))
        if tuple(path[:n]) == guarded[:n]:
            where = ""
            if len(path) < len(guarded):
                where = f" (it holds {format_path(guarded)})"
            elif len(path) > len(guarded):
                where = f" (it is inside {format_path(guarded)})"
            shown = format_path(path) or "(the whole object)"
            return f"{shown}: a unit's identity cannot be changed by `set`{where}"
    return None


def format_path(path: Path) -> str:
    out: list[str] = []
    for seg in path:
        if isinstance(seg, int):
            out.append(f"[{seg}]")
        elif _PLAIN.fullmatch(seg):
            out.append(f".{seg}" if out else seg)
        else:
            escaped = seg.replace("\\", "\\\\").replace('"', '\\"')
            out.append(f'["{escaped}"]')
    return "".join(out)


class _Missing:
    """Marks an absent field, distinct from an explicit ``null``."""

    _instance: _Missing | None = None

    def __new__(cls) -> _Missing:
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance

    def __repr__(self) -> str:
        return "<absent>"

    def __bool__(self) -> bool:
        return False


MISSING: Any = _Missing()


def get_path(obj: Any, path: Path) -> Any:
    """The value at ``path`` or ``MISSING``."""
    cur = obj
    for seg in path:
        if isinstance(seg, int):
            if not isinstance(cur, list) or seg >= len(cur):
                return MISSING
            cur = cur[seg]
        else:
            if not isinstance(cur, dict) or seg not in cur:
                return MISSING
            cur = cur[seg]
    return cur


def set_path(obj: dict[str, Any], path: Path, value: Any) -> dict[str, Any]:
    """A copy of ``obj`` with ``value`` at ``path`` (``MISSING`` deletes).

    Intermediate maps are created as needed; list indices must already exist.
    Maps emptied by a delete are removed too, so deleting the last annotation
    leaves no ``annotations: {}`` behind.
    """
    if not path:
        raise BadInput("cannot set the whole object", field="")
    result = copy.deepcopy(obj)
    _set(result, path, value)
    return result


def _set(cur: Any, path: Path, value: Any) -> None:
    seg, rest = path[0], path[1:]
    if isinstance(seg, int):
        if not isinstance(cur, list) or seg >= len(cur):
            raise BadInput(f"no list item {seg} to set", field=format_path(path))
        if rest:
            _set(cur[seg], rest, value)
        elif value is MISSING:
            del cur[seg]
        else:
            cur[seg] = copy.deepcopy(value)
        return
    if not isinstance(cur, dict):
        raise BadInput("not a map", field=format_path(path))
    if not rest:
        if value is MISSING:
            cur.pop(seg, None)
        else:
            cur[seg] = copy.deepcopy(value)
        return
    if seg not in cur or not isinstance(cur[seg], (dict, list)):
        if value is MISSING:
            return
        cur[seg] = {}
    was_empty = cur[seg] == {}
    _set(cur[seg], rest, value)
    if value is MISSING and not was_empty and cur[seg] == {}:
        del cur[seg]


def iter_leaves(obj: Any, prefix: Path = ()) -> Iterator[tuple[Path, Any]]:
    """Every leaf (scalar, list, or empty map) with its path; lists are atomic."""
    if isinstance(obj, dict) and obj:
        for key, value in obj.items():
            yield from iter_leaves(value, (*prefix, key))
    else:
        yield prefix, obj
