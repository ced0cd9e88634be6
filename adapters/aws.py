"""The AWS side of drift, as Crossplane sees it: managed resources' ``status.atProvider``.

Crossplane turns a Claim into a composite and managed resources; its providers report what
AWS holds in each managed resource's ``status.atProvider``. An edit made in AWS directly (the
console during an incident) shows there, never on the Claim. The observer follows the
Claim's ``spec.resourceRef`` to the composite and its ``spec.resourceRefs`` to the managed
resources, compares each ``atProvider`` with the ``spec.forProvider`` the space's Composition
derives from the Claim (``domain/composition.py``), and maps a difference back to the Claim
field the patch reads — ``spec.forProvider.memorySize`` ← ``spec.lambdaMemory`` — so drift
can be captured into the Claim. A field no patch maps back is reported against the managed
resource and never captured.

It works for any claim kind whose Composition the space names (``compositions:`` in
tributary.yaml), and needs only read access to the composite and managed resources: no AWS
credentials, no per-app code. A kind without a Composition is compared on the Claim alone.
"""

from __future__ import annotations

from typing import Any

from adapters.kube import KubeClient
from domain.composition import (
    EXTERNAL_NAME_ANNOTATION,
    Composition,
    resource_drift,
    select_composition,
)
from domain.drift import DriftField
from domain.paths import format_path


def managed_path(kind: str, name: str, path: str = "") -> str:
    """Where a managed resource's own drift is reported: ``managed["Function/name"].…``."""
    return format_path(("managed", f"{kind}/{name}")) + (f".{path}" if path else "")


def _condition(obj: dict[str, Any], kind: str) -> dict[str, Any]:
    for c in (obj.get("status") or {}).get("conditions") or []:
        if isinstance(c, dict) and c.get("type") == kind:
            return c
    return {}


class ProviderNotSynced(Exception):
    """A managed resource its provider cannot sync now (``Synced=False``: AWS unreachable,
    throttled, or refusing): its ``atProvider`` is not evidence of what AWS holds, so the
    check fails (transient, retried; ``drift status`` reads ``failing``) instead of
    comparing with a stale observation."""


class ManagedResourceObserver:
    """Drift between a Claim and its managed resources' ``atProvider``, through the API."""

    def __init__(self, kube: KubeClient) -> None:
        self.kube = kube

    def _get(self, api_version: str, kind: str, name: str) -> dict[str, Any] | None:
        res = self.kube.resource(api_version, kind)
        if res is None:
            return None
        return self.kube.get(res, name, None)

    def observe(
        self, live: dict[str, Any], claim: dict[str, Any], compositions: list[Composition]
    ) -> list[DriftField]:
        """``live``: the Claim as the cluster has it (its ``spec.resourceRef``); ``claim``: the
        same, normalized with its XRD's defaults — what the patches derive from."""
        ref = (live.get("spec") or {}).get("resourceRef") or {}
        if not compositions or not ref.get("name"):
            return []  # nothing composed it (yet), or nothing to map AWS back through
        composite = self._get(str(ref.get("apiVersion")), str(ref.get("kind")), str(ref["name"]))
        if composite is None:
            return [
                DriftField(
                    path=managed_path(str(ref.get("kind")), str(ref["name"])),
                    authority="present",
                    live="missing",
                    manager="crossplane",
                    source="aws-live",
                    capturable=False,
                )
            ]
        composition = select_composition(
            compositions,
            str(composite.get("apiVersion")),
            str(composite.get("kind")),
            name=str(((composite.get("spec") or {}).get("compositionRef") or {}).get("name") or ""),
        )
        if composition is None:
            return []
        # What the patches read: the Claim's spec and metadata, on the composite.
        xr = {
            **composite,
            "metadata": {
                **(composite.get("metadata") or {}),
                "labels": (claim.get("metadata") or {}).get("labels") or {},
                "annotations": (claim.get("metadata") or {}).get("annotations") or {},
            },
            "spec": {**(composite.get("spec") or {}), **(claim.get("spec") or {})},
        }
        out: list[DriftField] = []
        seen: set[str] = set()
        for mref in (composite.get("spec") or {}).get("resourceRefs") or []:
            kind, name = str(mref.get("kind")), str(mref.get("name"))
            mr = self._get(str(mref.get("apiVersion")), kind, name)
            if mr is None:
                out.append(self._missing(kind, name, "missing"))
                continue
            external = str(
                ((mr.get("metadata") or {}).get("annotations") or {}).get(EXTERNAL_NAME_ANNOTATION)
                or name
            )
            synced = _condition(mr, "Synced")
            if synced.get("status") == "False":
                raise ProviderNotSynced(
                    f"{kind} {external}: the provider cannot sync it "
                    f"({synced.get('reason') or 'not synced'}: {synced.get('message') or '-'})"
                )
            ready = _condition(mr, "Ready")
            if ready.get("status") == "False" and ready.get("reason") == "Unavailable":
                out.append(self._missing(kind, external, "missing in AWS"))
                continue
            for d in resource_drift(composition, xr, mr):
                family = str(mr.get("apiVersion", "")).split(".")[0]  # lambda.aws.upbound.io
                manager = f"aws ({family} {external})"
                if d.claim_path:
                    path = format_path(d.claim_path)
                    if path in seen:
                        continue  # one claim field, one report, even if several resources moved
                    seen.add(path)
                    out.append(
                        DriftField(path=path, live=d.claim_live, manager=manager, source="aws-live")
                    )
                else:
                    out.append(
                        DriftField(
                            path=managed_path(kind, external, d.path),
                            authority=d.wanted,
                            live=d.observed,
                            manager=manager,
                            source="aws-live",
                            capturable=False,
                        )
                    )
        return out

    @staticmethod
    def _missing(kind: str, name: str, live: str) -> DriftField:
        return DriftField(
            path=managed_path(kind, name),
            authority="present",
            live=live,
            manager="aws",
            source="aws-live",
            capturable=False,
        )
