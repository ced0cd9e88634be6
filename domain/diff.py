"""Field-level comparison and the three-way merge used by the conflict rule.

Maps are compared key by key; lists and scalars are compared whole, because a
Claim's lists (e.g. CORS origins) have no stable identity to merge by.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel

from domain.paths import MISSING, Path, format_path


def json_equal(a: Any, b: Any) -> bool:
    """Equality as JSON sees it: ``1 != True`` and ``1 == 1.0``."""
    if isinstance(a, bool) or isinstance(b, bool):
        return isinstance(a, bool) and isinstance(b, bool) and a == b
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(json_equal(a[k], b[k]) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(json_equal(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, (int, float)) and isinstance(b, (int, float)):
        return a == b
    return type(a) is type(b) and a == b


class FieldChange(BaseModel):
    """One field that differs; ``None`` with ``*_present=False`` means absent."""

    path: str
    old: Any = None
    new: Any = None
    old_present: bool = True
    new_present: bool = True


class FieldConflict(BaseModel):
    path: str
    base: Any = None
    ours: Any = None
    theirs: Any = None


def _change(path: Path, old: Any, new: Any) -> FieldChange:
    return FieldChange(
        path=format_path(path),
        old=None if old is MISSING else old,
        new=None if new is MISSING else new,
        old_present=old is not MISSING,
        new_present=new is not MISSING,
    )


def diff(old: Any, new: Any, prefix: Path = ()) -> list[FieldChange]:
    """Leaf-level differences from ``old`` to ``new``, in a stable order."""
    if json_equal(old, new):
        return []
    if isinstance(old, dict) and isinstance(new, dict) and (old or new):
        changes: list[FieldChange] = []
        for key in _ordered_keys(old, new):
            changes.extend(diff(old.get(key, MISSING), new.get(key, MISSING), (*prefix, key)))
        return changes
    if isinstance(new, dict) and new and old is MISSING:
        return diff({}, new, prefix)
    if isinstance(old, dict) and old and new is MISSING:
        return diff(old, {}, prefix)
    return [_change(prefix, old, new)]


def _ordered_keys(*maps: dict[str, Any]) -> list[str]:
    seen: dict[str, None] = {}
    for m in maps:
        for k in m:
            seen.setdefault(k, None)
    return list(seen)


def three_way_merge(base: Any, ours: Any, theirs: Any) -> tuple[Any, list[FieldConflict]]:
    """Merge two descendants of ``base``.

    A side that left a field as it was in ``base`` yields to the other side; both
    sides making the same change is agreement. The result is ``MISSING`` where
    the merged field is absent. Conflicts list each field both sides changed to
    different values.
    """
    conflicts: list[FieldConflict] = []
    merged = _merge(base, ours, theirs, (), conflicts)
    return merged, conflicts


def _merge(base: Any, ours: Any, theirs: Any, path: Path, out: list[FieldConflict]) -> Any:
    if json_equal(ours, theirs):
        return ours
    if json_equal(base, ours):
        return theirs
    if json_equal(base, theirs):
        return ours
    if _map_or_absent(ours) and _map_or_absent(theirs):
        # One side may have deleted a map the other edited inside: recursing with
        # the deleted side as {} names the individual fields in conflict.
        sub_base = base if isinstance(base, dict) else {}
        sub_ours = ours if isinstance(ours, dict) else {}
        sub_theirs = theirs if isinstance(theirs, dict) else {}
        merged: dict[str, Any] = {}
        for key in _ordered_keys(sub_ours, sub_theirs, sub_base):
            value = _merge(
                sub_base.get(key, MISSING),
                sub_ours.get(key, MISSING),
                sub_theirs.get(key, MISSING),
                (*path, key),
                out,
            )
            if value is not MISSING:
                merged[key] = value
        if not merged and (ours is MISSING or theirs is MISSING):
            return MISSING
        return merged
    out.append(
        FieldConflict(
            path=format_path(path),
            base=None if base is MISSING else base,
            ours=None if ours is MISSING else ours,
            theirs=None if theirs is MISSING else theirs,
        )
    )
    return ours


def _map_or_absent(value: Any) -> bool:
    return value is MISSING or isinstance(value, dict)
