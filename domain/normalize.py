"""Normalization: the form in which authority, Git and live objects are compared."""

from __future__ import annotations

import copy
from collections.abc import Iterable
from typing import Any

from domain.errors import BadInput
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
# Written by a revert to make Crossplane reconcile a Claim whose spec did not change
# (like Flux's ``reconcile.fluxcd.io/requestedAt``): a request, never intent.
RECONCILE_ANNOTATION = "tributary.dev/reconcile-requested-at"
# Written by Argo CD (annotation resource tracking) on what an Application applies —
# a space with actuator argocd: bookkeeping of the delivery, never intent.
ARGOCD_TRACKING_ANNOTATION = "argocd.argoproj.io/tracking-id"
# Written on a Claim by Crossplane: the composite it made of it. Never authored.
CROSSPLANE_OWNED_SPEC = ("resourceRef",)


def strip_server_fields(obj: dict[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(obj)
    out.pop("status", None)
    spec = out.get("spec")
    if isinstance(spec, dict):
        for key in CROSSPLANE_OWNED_SPEC:
            spec.pop(key, None)
    meta = out.get("metadata")
    if isinstance(meta, dict):
        for key in SERVER_OWNED_METADATA:
            meta.pop(key, None)
        if isinstance(meta.get("labels"), dict):
            # Set by the apply from the unit's space (domain/gates.py), not authored:
            # it is never drift, and never part of a unit's data.
            meta["labels"].pop(OWNER_LABEL, None)
        annotations = meta.get("annotations")
        if isinstance(annotations, dict):
            annotations.pop(RECONCILE_ANNOTATION, None)
            annotations.pop(ARGOCD_TRACKING_ANNOTATION, None)
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


def is_ignored(path: str, ignore: Iterable[str]) -> bool:
    """``path`` is an ``ignore`` entry or lies inside one (e.g. a field reported by an
    AWS observer, which never sees the dropped object)."""
    try:
        target = parse_path(path)
    except BadInput:
        return False  # not a path at all: nothing ignores it
    return any(target[: len(p)] == p for p in parse_ignore(ignore))


def normalize(
    obj: dict[str, Any],
    *,
    ignore: Iterable[Path] = (),
) -> dict[str, Any]:
    """Server-owned fields dropped, then every ``ignore`` path."""
    return drop_paths(strip_server_fields(obj), ignore)
