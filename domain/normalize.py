"""Normalization: the form in which authority, Git and live objects are compared."""

from __future__ import annotations

import copy
from collections.abc import Iterable
from typing import Any

from domain.gates import OWNER_LABEL
from domain.paths import MISSING, Path, parse_path, set_path

# Fields the API server owns. They say nothing about intent, so they never count
# as a change, a conflict or drift.
SERVER_OWNED_METADATA = (
    "uid",
    "resourceVersion",
    "generation",
    "creationTimestamp",
    "managedFields",
    "selfLink",
    "deletionTimestamp",
    "deletionGracePeriodSeconds",
    "ownerReferences",
    "finalizers",
)


def strip_server_fields(obj: dict[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(obj)
    out.pop("status", None)
    meta = out.get("metadata")
    if isinstance(meta, dict):
        for key in SERVER_OWNED_METADATA:
            meta.pop(key, None)
        if isinstance(meta.get("labels"), dict):
            # Set by the apply from the unit's space (domain/gates.py), not authored:
            # it is never drift, and never part of a unit's data.
            meta["labels"].pop(OWNER_LABEL, None)
        for key in ("labels", "annotations"):
            if meta.get(key) == {}:
                del meta[key]
    return out


def drop_paths(obj: dict[str, Any], paths: Iterable[Path]) -> dict[str, Any]:
    out = obj
    for path in paths:
        out = set_path(out, path, MISSING)
    return out


def parse_ignore(entries: Iterable[str]) -> list[Path]:
    return [parse_path(e) for e in entries]


def normalize(
    obj: dict[str, Any],
    *,
    ignore: Iterable[Path] = (),
) -> dict[str, Any]:
    """Server-owned fields dropped, then every ``ignore`` path."""
    return drop_paths(strip_server_fields(obj), ignore)
