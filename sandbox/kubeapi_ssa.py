"""Field ownership (``metadata.managedFields``) and server-side apply, as pure functions.

This is the part of the API peer that our drift arrow leans on: who owns which field, and
whether an apply may change it. It follows the real apiserver (structured-merge-diff) closely
enough for Claims, with these deliberate simplifications:

* Maps are granular, everything else is a leaf. Lists are *atomic*: owning a list means
  owning all of it, and an apply replaces it whole. That is what the real apiserver does for
  custom resources whose schema declares no ``x-kubernetes-list-type`` (the default), and no
  schema is consulted here, so ``k:``/``v:``/``i:`` list-element keys are never produced (they
  are understood when read back, as ownership of the whole list).
* ``fieldsV1`` holds leaves only (``{"f:spec": {"f:lambdaMemory": {}}}``). A ``"."`` marker is
  written only when one owned path is a prefix of another, never for "I created this map".
* ``null`` in an applied configuration means "not set here", not "delete".
* A map left empty by removing an applier's dropped fields is removed too (unless owned).
* Identity and server-owned fields (``apiVersion``, ``kind``, ``metadata.name``,
  ``metadata.uid``, ``metadata.resourceVersion`` ...) are never owned.

Semantics implemented (see ``record_update`` and ``apply``):

* A non-apply write (create, update, merge/JSON patch) gives its manager an ``Update`` entry
  owning the fields it changed; those fields leave every other manager. Removed fields leave
  everyone.
* An apply owns exactly the leaves of its configuration. Changing a field's value that another
  manager owns is a conflict (409) unless ``force``; with force the field moves. Setting the
  same value is shared ownership, not a conflict. A field the applier owned before, left out of
  this configuration and owned by nobody else, is removed from the object.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

Path = tuple[str, ...]

# Fields that identify the object or are written by the server: nobody "manages" them.
_UNMANAGED_TOP = frozenset({"apiVersion", "kind"})
_UNMANAGED_METADATA = frozenset(
    {
        "name",
        "namespace",
        "uid",
        "resourceVersion",
        "generation",
        "creationTimestamp",
        "managedFields",
        "deletionTimestamp",
        "deletionGracePeriodSeconds",
        "selfLink",
    }
)

_MISSING = object()


def _is_unmanaged(path: Path) -> bool:
    if len(path) == 1:
        return path[0] in _UNMANAGED_TOP
    return len(path) == 2 and path[0] == "metadata" and path[1] in _UNMANAGED_METADATA


def leaf_paths(obj: Mapping[str, Any]) -> set[Path]:
    """The managed leaves of an object: scalars, lists and empty maps, by their path."""
    leaves: set[Path] = set()

    def walk(value: Any, path: Path) -> None:
        if isinstance(value, Mapping) and value:
            for key, sub in value.items():
                child = (*path, str(key))
                if not _is_unmanaged(child):
                    walk(sub, child)
        elif path != ("metadata",):  # an object's metadata is never a leaf of its own
            leaves.add(path)

    for key, value in obj.items():
        if not _is_unmanaged((key,)):
            walk(value, (key,))
    return leaves


def get_path(obj: Any, path: Path) -> Any:
    """The value at ``path`` or ``_MISSING``; only maps are traversed (lists are atomic)."""
    node = obj
    for name in path:
        if not isinstance(node, Mapping) or name not in node:
            return _MISSING
        node = node[name]
    return node


def has_path(obj: Any, path: Path) -> bool:
    return get_path(obj, path) is not _MISSING


def delete_path(obj: dict[str, Any], path: Path) -> None:
    node: Any = obj
    for name in path[:-1]:
        node = node.get(name) if isinstance(node, dict) else None
        if node is None:
            return
    if isinstance(node, dict):
        node.pop(path[-1], None)


def overlaps(a: Path, b: Path) -> bool:
    """Whether one path is the other or contains it (ownership of either touches both)."""
    shorter = min(len(a), len(b))
    return a[:shorter] == b[:shorter]


def drop_nulls(value: Any) -> Any:
    """A copy of an applied configuration without ``null`` values (they mean "not set")."""
    if isinstance(value, Mapping):
        return {k: drop_nulls(v) for k, v in value.items() if v is not None}
    return copy.deepcopy(value)


def deep_merge(base: Any, overlay: Any) -> Any:
    """Apply semantics for values: maps merge recursively, everything else is replaced."""
    if isinstance(base, Mapping) and isinstance(overlay, Mapping):
        merged = dict(base)
        for key, value in overlay.items():
            merged[key] = deep_merge(base.get(key), value)
        return merged
    return copy.deepcopy(overlay)


# ---------------------------------------------------------------------------------------------
# fieldsV1 encoding


def encode_fields_v1(paths: Iterable[Path]) -> dict[str, Any]:
    """``{("spec", "x")}`` -> ``{"f:spec": {"f:x": {}}}``; ``"."`` marks an owned inner node."""
    root: dict[str, Any] = {}
    ordered = sorted(set(paths))
    owned = set(ordered)
    for path in ordered:
        node = root
        for depth, name in enumerate(path):
            node = node.setdefault(f"f:{name}", {})
            if depth < len(path) - 1 and path[: depth + 1] in owned:
                node["."] = {}
    return root


def decode_fields_v1(fields: Mapping[str, Any], prefix: Path = ()) -> set[Path]:
    """The inverse of ``encode_fields_v1``; tolerant of what a real apiserver writes."""
    paths: set[Path] = set()
    for key, sub in fields.items():
        if key == ".":
            if prefix:
                paths.add(prefix)
            continue
        kind, _, name = key.partition(":")
        if kind == "f":
            child = (*prefix, name)
            if isinstance(sub, Mapping) and sub:
                paths |= decode_fields_v1(sub, child)
            else:
                paths.add(child)
        elif prefix:
            # A list element (k:/v:/i:). Lists are atomic here: the element means the list.
            paths.add(prefix)
    return paths


# ---------------------------------------------------------------------------------------------
# managedFields entries


@dataclass
class FieldOwner:
    """One ``managedFields`` entry, decoded into a set of paths for easy arithmetic."""

    manager: str
    operation: str  # "Apply" or "Update"
    api_version: str
    time: str
    paths: set[Path] = field(default_factory=set)
    subresource: str = ""

    @classmethod
    def from_entry(cls, entry: Mapping[str, Any]) -> FieldOwner:
        fields = entry.get("fieldsV1")
        return cls(
            manager=str(entry.get("manager", "")),
            operation=str(entry.get("operation", "Update")),
            api_version=str(entry.get("apiVersion", "")),
            time=str(entry.get("time", "")),
            paths=decode_fields_v1(fields) if isinstance(fields, Mapping) else set(),
            subresource=str(entry.get("subresource", "")),
        )

    def to_entry(self) -> dict[str, Any]:
        entry: dict[str, Any] = {
            "manager": self.manager,
            "operation": self.operation,
            "apiVersion": self.api_version,
            "time": self.time,
            "fieldsType": "FieldsV1",
            "fieldsV1": encode_fields_v1(self.paths),
        }
        if self.subresource:
            entry["subresource"] = self.subresource
        return entry

    def is_(self, manager: str, operation: str, api_version: str, subresource: str) -> bool:
        # Update entries are per API version, Apply entries are not (as in the apiserver).
        return (
            self.manager == manager
            and self.operation == operation
            and self.subresource == subresource
            and (operation == "Apply" or self.api_version == api_version)
        )

    def describe(self) -> str:
        """How the apiserver names a manager in conflict messages."""
        text = f'"{self.manager}"'
        if self.subresource:
            text += f' with subresource "{self.subresource}"'
        if self.operation == "Update":
            text += f" using {self.api_version}"
            if self.time:
                text += f" at {self.time}"
        return text


def decode_entries(entries: Any) -> list[FieldOwner]:
    if not isinstance(entries, list):
        return []
    return [FieldOwner.from_entry(e) for e in entries if isinstance(e, Mapping) and e]


def _find_or_add(
    owners: list[FieldOwner],
    manager: str,
    operation: str,
    api_version: str,
    subresource: str,
    now: str,
) -> FieldOwner:
    for owner in owners:
        if owner.is_(manager, operation, api_version, subresource):
            return owner
    owner = FieldOwner(manager, operation, api_version, now, subresource=subresource)
    owners.append(owner)
    return owner


def record_update(
    old: Mapping[str, Any] | None,
    new: Mapping[str, Any],
    entries: Any,
    *,
    manager: str,
    api_version: str,
    subresource: str = "",
    now: str,
) -> list[dict[str, Any]]:
    """managedFields after a non-apply write turned ``old`` into ``new``."""
    owners = decode_entries(entries)
    old_leaves = leaf_paths(old) if old is not None else set()
    new_leaves = leaf_paths(new)
    changed = {p for p in new_leaves if get_path(old, p) != get_path(new, p)}
    gone = old_leaves - new_leaves
    for owner in owners:
        # Changed fields move to the writer; removed (or no longer present) fields leave all.
        owner.paths = {p for p in owner.paths if p not in changed and p not in gone}
        owner.paths = {p for p in owner.paths if has_path(new, p)}
    if changed:
        mine = _find_or_add(owners, manager, "Update", api_version, subresource, now)
        mine.paths |= changed
        mine.time = now
    return [o.to_entry() for o in owners if o.paths]


@dataclass(frozen=True)
class Conflict:
    owner: FieldOwner
    path: Path

    @property
    def field(self) -> str:
        return "." + ".".join(self.path)


class ApplyConflictError(Exception):
    """An apply would change fields that other managers own (and ``force`` was not given)."""

    def __init__(self, conflicts: list[Conflict]) -> None:
        self.conflicts = conflicts
        super().__init__(conflict_message(conflicts))


def conflict_message(conflicts: list[Conflict]) -> str:
    """The apiserver's wording, e.g. ``Apply failed with 1 conflict: conflict with ...``."""
    if len(conflicts) == 1:
        only = conflicts[0]
        return f"Apply failed with 1 conflict: conflict with {only.owner.describe()}: {only.field}"
    by_manager: dict[str, list[str]] = {}
    for c in conflicts:
        by_manager.setdefault(c.owner.describe(), []).append(c.field)
    lines = []
    for manager in sorted(by_manager):
        lines.append(f"conflicts with {manager}:")
        lines.extend(f"- {f}" for f in by_manager[manager])
    return f"Apply failed with {len(conflicts)} conflicts: " + "\n".join(lines)


def conflict_causes(conflicts: list[Conflict]) -> list[dict[str, str]]:
    return [
        {
            "type": "FieldManagerConflict",
            "message": f"conflict with {c.owner.describe()}",
            "field": c.field,
        }
        for c in conflicts
    ]


def apply(
    live: Mapping[str, Any] | None,
    config: Mapping[str, Any],
    entries: Any,
    *,
    manager: str,
    api_version: str,
    subresource: str = "",
    force: bool = False,
    now: str,
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Server-side apply of ``config`` onto ``live``: the merged object and its managedFields.

    Raises ``ApplyConflictError`` when the apply changes another manager's field without force.
    The caller scopes ``config`` (e.g. strips ``status`` for the main resource) beforehand.
    """
    cfg = drop_nulls(config)
    cfg_leaves = leaf_paths(cfg)
    base: dict[str, Any] = copy.deepcopy(dict(live)) if live is not None else {}
    live_leaves = leaf_paths(base)
    owners = decode_entries(entries)
    me = _find_or_add(owners, manager, "Apply", api_version, subresource, now)
    others = [o for o in owners if o is not me]

    conflicts: list[Conflict] = []
    for path in sorted(cfg_leaves):
        if get_path(base, path) == get_path(cfg, path):
            continue  # same value: shared ownership, never a conflict
        for other in others:
            # Only ownership of what is really there counts (stale entries are harmless).
            if any(overlaps(q, path) for q in other.paths & live_leaves):
                conflicts.append(Conflict(other, path))
    if conflicts and not force:
        raise ApplyConflictError(conflicts)
    for c in conflicts:  # forced: the field moves to the applier
        c.owner.paths = {q for q in c.owner.paths if not overlaps(q, c.path)}

    merged: dict[str, Any] = deep_merge(base, cfg)

    # Fields this manager applied before but not any more go away, unless someone else
    # (or this very configuration, one level down or up) still holds them.
    still_owned: set[Path] = set()
    for other in others:
        still_owned |= other.paths
    held = still_owned | cfg_leaves
    for path in sorted(me.paths - cfg_leaves, key=len, reverse=True):
        if any(overlaps(path, q) for q in held):
            continue
        delete_path(merged, path)
        # A map emptied by the removal goes too, unless someone owns it as such.
        parent = path[:-1]
        while len(parent) > 1 or parent[:1] not in ((), ("metadata",)):
            if get_path(merged, parent) != {} or parent in held:
                break
            delete_path(merged, parent)
            parent = parent[:-1]

    me.paths = cfg_leaves
    me.api_version = api_version
    me.time = now
    for other in others:
        other.paths = {p for p in other.paths if has_path(merged, p)}
    return merged, [o.to_entry() for o in owners if o.paths]
