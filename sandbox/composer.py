"""What the Crossplane stand-in does with one claim: composite, managed resources, provider.

As Crossplane (v1, claims) does it, through the Kubernetes API only:

* the claim's spec (XRD defaults applied, as a real API server would have) becomes a
  cluster-scoped composite ``{claim}-{5 chars}``, carrying the claim's labels and annotations,
  ``spec.claimRef``, ``spec.compositionRef`` and ``spec.resourceRefs``; the claim gets
  ``spec.resourceRef``;
* the Composition's resource templates, patched from the composite (``domain/composition.py``),
  become cluster-scoped managed resources ``{composite}-{5 chars}`` labelled
  ``crossplane.io/composite`` and annotated ``crossplane.io/composition-resource-name``;
  their CRDs are installed on first use, as installing a provider package does;
* the provider stand-in (``provider_aws.py``) reconciles each managed resource into AWS and
  writes ``status.atProvider`` and its conditions; kinds it does not know are Ready without
  AWS;
* ``ToCompositeFieldPath`` patches fill the composite's status, which is copied to the claim's.

Managed resources the composition no longer renders are deleted, and with them their AWS
resource unless their ``spec.deletionPolicy`` is ``Orphan``; the same happens to all of them
when the claim is deleted.
"""

from __future__ import annotations

import copy
import hashlib
import logging
import threading
from collections.abc import Callable, Mapping
from typing import Any, cast

from botocore.exceptions import ClientError
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from domain.composition import (
    RESOURCE_NAME_ANNOTATION,
    Composition,
    patch_composite,
    render,
)
from sandbox.provider_aws import (
    COMPOSITE_LABEL,
    ProviderAws,
    Unresolved,
    error_code,
    external_name,
    resolve_references,
)

CRD_GROUP, CRD_VERSION, CRD_PLURAL = "apiextensions.k8s.io", "v1", "customresourcedefinitions"
FIELD_MANAGER = "crossplane"
APPLY = "application/apply-patch+yaml"
MERGE = "application/merge-patch+json"
REQUEST_TIMEOUT = 10.0
CLAIM_NAME_LABEL = "crossplane.io/claim-name"
CLAIM_NAMESPACE_LABEL = "crossplane.io/claim-namespace"
NOT_PROPAGATED = ("kubectl.kubernetes.io/last-applied-configuration",)
_NOT_FOUND = {
    "404",
    "NoSuchBucket",
    "NoSuchEntity",
    "ResourceNotFoundException",
    "QueueDoesNotExist",
    "AWS.SimpleQueueService.NonExistentQueue",
}

log = logging.getLogger(__name__)


def suffix(*parts: str) -> str:
    """Five characters derived from ``parts``: Crossplane's names carry a random suffix; a
    derived one makes composing twice name the same objects."""
    return hashlib.sha256("/".join(parts).encode()).hexdigest()[:5]


def plural(kind: str) -> str:
    """The plural a provider's CRD gives a kind (``bucketpolicies``, ``functionurls``)."""
    lower = kind.lower()
    if lower.endswith("y") and lower[-2:-1] not in ("a", "e", "i", "o", "u"):
        return lower[:-1] + "ies"
    return lower + ("es" if lower.endswith(("s", "x", "ch", "sh")) else "s")


def managed_crd(group: str, version: str, kind: str) -> dict[str, Any]:
    """A managed resource kind's CRD (schema open), as a provider package installs it."""
    names = {
        "kind": kind,
        "listKind": f"{kind}List",
        "plural": plural(kind),
        "singular": kind.lower(),
        "categories": ["crossplane", "managed"],
    }
    open_object = {"type": "object", "x-kubernetes-preserve-unknown-fields": True}
    return {
        "apiVersion": f"{CRD_GROUP}/{CRD_VERSION}",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": f"{names['plural']}.{group}"},
        "spec": {
            "group": group,
            "names": names,
            "scope": "Cluster",
            "versions": [
                {
                    "name": version,
                    "served": True,
                    "storage": True,
                    "schema": {
                        "openAPIV3Schema": {
                            "type": "object",
                            "properties": {"spec": open_object, "status": open_object},
                        }
                    },
                    "subresources": {"status": {}},
                }
            ],
        },
    }


def unavailable_conditions(now: str) -> list[dict[str, Any]]:
    """A managed resource whose external resource is gone (deleted in AWS meanwhile)."""
    return [
        {"type": "Synced", "status": "True", "reason": "ReconcileSuccess",
         "lastTransitionTime": now},
        {"type": "Ready", "status": "False", "reason": "Unavailable",
         "message": "the external resource does not exist", "lastTransitionTime": now},
    ]  # fmt: skip


def ready_conditions(error: str | None, now: str) -> list[dict[str, Any]]:
    if error is None:
        return [
            {"type": "Synced", "status": "True", "reason": "ReconcileSuccess",
             "lastTransitionTime": now},
            {"type": "Ready", "status": "True", "reason": "Available", "lastTransitionTime": now},
        ]  # fmt: skip
    return [
        {"type": "Synced", "status": "False", "reason": "ReconcileError", "message": error,
         "lastTransitionTime": now},
        {"type": "Ready", "status": "False", "reason": "Creating", "lastTransitionTime": now},
    ]  # fmt: skip


def _split(api_version: str) -> tuple[str, str]:
    group, _, version = api_version.rpartition("/")
    return group, version


class Composer:
    """Composes claims through the API and the provider stand-in (thread-safe: each claim is
    composed by one reconciler at a time, the observer takes the same per-claim lock)."""

    def __init__(
        self,
        custom: Callable[[], client.CustomObjectsApi],
        provider: ProviderAws,
        now: Callable[[], str],
    ) -> None:
        self._custom = custom
        self.provider = provider
        self._now = now
        self._crds: set[str] = set()
        self._lock = threading.Lock()
        self._claim_locks: dict[tuple[str, str], threading.Lock] = {}
        # Every managed resource composed, by composite: what the observer polls.
        self._managed: dict[str, list[dict[str, Any]]] = {}
        self._owner: dict[str, tuple[str, str]] = {}  # composite → claim (namespace, name)
        self.composite_plurals: dict[str, str] = {}  # composite kind → plural (from its XRD)

    def claim_lock(self, namespace: str, name: str) -> threading.Lock:
        with self._lock:
            return self._claim_locks.setdefault((namespace, name), threading.Lock())

    # ---- compose ------------------------------------------------------------------------------

    def composite_name(self, claim: Mapping[str, Any]) -> str:
        ref = (claim.get("spec") or {}).get("resourceRef") or {}
        meta = claim["metadata"]
        return str(
            ref.get("name") or f"{meta['name']}-{suffix(meta.get('namespace') or '', meta['name'])}"
        )

    def compose(
        self,
        claim: Mapping[str, Any],
        composite_api_version: str,
        composite_kind: str,
        composition: Composition | None,
    ) -> dict[str, Any]:
        """Compose ``claim`` (defaults applied); returns the fields for its status besides
        the conditions. ``ClientError``/``ValueError``/``CompositionError`` for what a retry
        of the same spec cannot fix; anything else is worth another try."""
        meta = claim["metadata"]
        namespace, name = str(meta.get("namespace") or ""), str(meta["name"])
        xr_name = self.composite_name(claim)
        annotations = {
            k: v for k, v in (meta.get("annotations") or {}).items() if k not in NOT_PROPAGATED
        }
        labels = {
            **(meta.get("labels") or {}),
            CLAIM_NAME_LABEL: name,
            CLAIM_NAMESPACE_LABEL: namespace,
        }
        spec = {
            k: copy.deepcopy(v)
            for k, v in (claim.get("spec") or {}).items()
            if k not in ("resourceRef", "writeConnectionSecretToRef")
        }
        spec["claimRef"] = {
            "apiVersion": claim["apiVersion"],
            "kind": claim["kind"],
            "namespace": namespace,
            "name": name,
        }
        if composition is not None:
            spec["compositionRef"] = {"name": composition.name}
        xr: dict[str, Any] = {
            "apiVersion": composite_api_version,
            "kind": composite_kind,
            "metadata": {"name": xr_name, "labels": labels, "annotations": annotations},
            "spec": spec,
        }
        composed = render(composition, xr) if composition is not None else []
        desired: list[dict[str, Any]] = []
        for item in composed:
            body = item.body
            body_meta = body.setdefault("metadata", {})
            body_meta["name"] = f"{xr_name}-{suffix(xr_name, item.name)}"
            body_meta.setdefault("labels", {}).update(
                {COMPOSITE_LABEL: xr_name, CLAIM_NAME_LABEL: name, CLAIM_NAMESPACE_LABEL: namespace}
            )
            desired.append(body)
        xr["spec"]["resourceRefs"] = [
            {"apiVersion": b["apiVersion"], "kind": b["kind"], "name": b["metadata"]["name"]}
            for b in desired
        ]
        custom = self._custom()
        previous = self._get(composite_api_version, composite_kind, xr_name)
        self._apply(composite_api_version, composite_kind, xr)
        for body in desired:
            self._apply(body["apiVersion"], body["kind"], body)
        # What the composition no longer renders goes (with its AWS resource).
        kept = {(r["kind"], r["name"]) for r in xr["spec"]["resourceRefs"]}
        for ref in ((previous or {}).get("spec") or {}).get("resourceRefs") or []:
            if (ref.get("kind"), ref.get("name")) not in kept:
                self._delete_managed(ref)
        observed = self._reconcile_managed(desired)
        with self._lock:
            self._managed[xr_name] = observed
            self._owner[xr_name] = (namespace, name)
        by_template = {
            str(o["metadata"]["annotations"][RESOURCE_NAME_ANNOTATION]): o for o in observed
        }
        patched = patch_composite(composition, xr, by_template) if composition else xr
        fields = dict(patched.get("status") or {})
        group, version = _split(composite_api_version)
        custom.patch_cluster_custom_object_status(
            group, version, self._plural(composite_kind), xr_name,
            {"status": {**fields, "conditions": ready_conditions(None, self._now())}},
            field_manager=FIELD_MANAGER, _content_type=MERGE, _request_timeout=REQUEST_TIMEOUT,
        )  # fmt: skip
        return fields

    def resource_ref(
        self, claim: Mapping[str, Any], composite_api_version: str, composite_kind: str
    ) -> dict[str, Any]:
        return {
            "apiVersion": composite_api_version,
            "kind": composite_kind,
            "name": self.composite_name(claim),
        }

    def _reconcile_managed(self, desired: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Each managed resource through its provider, in the composition's order; one whose
        references are not resolved yet waits for a later pass."""
        observed: dict[str, dict[str, Any]] = {}
        pending = list(desired)
        while pending:
            waiting: list[dict[str, Any]] = []
            last: Unresolved | None = None
            for body in pending:
                siblings = list(observed.values())
                try:
                    observed[body["metadata"]["name"]] = self._reconcile_one(body, siblings)
                except Unresolved as unresolved:
                    waiting.append(body)
                    last = unresolved
            if len(waiting) == len(pending):
                assert last is not None
                raise ValueError(f"{waiting[0]['kind']} {waiting[0]['metadata']['name']}: {last}")
            pending = waiting
        return [observed[b["metadata"]["name"]] for b in desired]

    def _reconcile_one(
        self, body: dict[str, Any], siblings: list[dict[str, Any]]
    ) -> dict[str, Any]:
        provider = self.provider.for_kind(body["apiVersion"], body["kind"])
        at: dict[str, Any] = {}
        if provider is not None:
            fp = resolve_references((body.get("spec") or {}).get("forProvider") or {}, siblings)
            name = external_name(body)
            try:
                provider.apply(name, fp)
            except ClientError as error:
                self._status(body, {}, f"create failed: {error}")
                raise
            at = provider.observe(name, fp) or {}
        status = self._status(body, at, None)
        return {**body, "status": status}

    def _status(
        self,
        body: Mapping[str, Any],
        at: dict[str, Any] | None,
        error: str | None,
    ) -> dict[str, Any]:
        """Write a managed resource's status: ``at`` None means AWS has no such resource."""
        conditions = (
            unavailable_conditions(self._now())
            if at is None
            else ready_conditions(error, self._now())
        )
        status = {"atProvider": at or {}, "conditions": conditions}
        group, version = _split(body["apiVersion"])
        self._custom().patch_cluster_custom_object_status(
            group, version, plural(body["kind"]), body["metadata"]["name"], {"status": status},
            field_manager=FIELD_MANAGER, _content_type=MERGE, _request_timeout=REQUEST_TIMEOUT,
        )  # fmt: skip
        return status

    def _not_synced(self, body: dict[str, Any], error: str) -> dict[str, Any]:
        """Mark a managed resource ``Synced=False`` (once), keeping what it last observed."""
        before = body.get("status") or {}
        conditions = [c for c in before.get("conditions") or [] if c.get("type") != "Synced"]
        if any(
            c.get("type") == "Synced" and c.get("status") == "False"
            for c in before.get("conditions") or []
        ):
            return body
        synced = {"type": "Synced", "status": "False", "reason": "ReconcileError",
                  "message": error, "lastTransitionTime": self._now()}  # fmt: skip
        status = {"atProvider": before.get("atProvider") or {}, "conditions": [synced, *conditions]}
        group, version = _split(body["apiVersion"])
        try:
            self._custom().patch_cluster_custom_object_status(
                group, version, plural(body["kind"]), body["metadata"]["name"],
                {"status": status}, field_manager=FIELD_MANAGER, _content_type=MERGE,
                _request_timeout=REQUEST_TIMEOUT,
            )  # fmt: skip
        except ApiException as e:
            log.debug("status of %s: %s", body["metadata"]["name"], e.status)
            return body
        return {**body, "status": status}

    # ---- observe (between claim changes) ------------------------------------------------------

    def observe(self) -> int:
        """Refresh every managed resource's ``atProvider`` from AWS, writing only what
        changed; never writes to AWS. Returns how many statuses were rewritten."""
        with self._lock:
            composites = list(self._owner.items())
        changed = 0
        for xr_name, owner in composites:
            with self.claim_lock(*owner):
                with self._lock:
                    current = self._managed.get(xr_name)
                if current is None:
                    continue  # deleted meanwhile
                resources = current
                fresh: list[dict[str, Any]] = []
                for body in resources:
                    fresh.append(body)
                    provider = self.provider.for_kind(body["apiVersion"], body["kind"])
                    if provider is None:
                        continue
                    try:
                        fp = resolve_references(body["spec"].get("forProvider") or {}, resources)
                        at = provider.observe(external_name(body), fp)
                    except Unresolved:
                        continue
                    except Exception as error:
                        # AWS unreachable: as a real provider does, Synced=False with the
                        # error, atProvider kept as last observed (not evidence any more).
                        log.debug("observing %s failed: %s", body["metadata"]["name"], error)
                        fresh[-1] = self._not_synced(body, f"observe failed: {error}")
                        continue
                    before = body.get("status") or {}
                    conditions = before.get("conditions") or []
                    gone = any(c.get("reason") == "Unavailable" for c in conditions)
                    unsynced = any(
                        c.get("type") == "Synced" and c.get("status") == "False" for c in conditions
                    )
                    if (at or {}) != before.get("atProvider") or (at is None) != gone or unsynced:
                        try:
                            status = self._status(body, at, None)
                        except ApiException as error:
                            log.debug("status of %s: %s", body["metadata"]["name"], error.status)
                            continue
                        fresh[-1] = {**body, "status": status}
                        changed += 1
                with self._lock:
                    if self._managed.get(xr_name) is resources:
                        self._managed[xr_name] = fresh
        return changed

    # ---- delete -------------------------------------------------------------------------------

    def delete(self, claim: Mapping[str, Any], composite_api_version: str, kind: str) -> None:
        """Delete the composite and its managed resources (best effort)."""
        xr_name = self.composite_name(claim)
        with self._lock:
            self._managed.pop(xr_name, None)
            self._owner.pop(xr_name, None)
        xr = self._get(composite_api_version, kind, xr_name)
        refs = ((xr or {}).get("spec") or {}).get("resourceRefs") or []
        for ref in reversed(refs):  # dependents were composed after what they depend on
            self._delete_managed(ref, refs)
        if xr is not None:
            group, version = _split(composite_api_version)
            try:
                self._custom().delete_cluster_custom_object(
                    group, version, self._plural(kind), xr_name, _request_timeout=REQUEST_TIMEOUT
                )
            except ApiException as error:
                if error.status != 404:
                    raise

    def _delete_managed(
        self, ref: Mapping[str, Any], refs: list[Mapping[str, Any]] | None = None
    ) -> None:
        body = self._get(str(ref["apiVersion"]), str(ref["kind"]), str(ref["name"]))
        if body is None:
            return
        provider = self.provider.for_kind(body["apiVersion"], body["kind"])
        orphan = (body.get("spec") or {}).get("deletionPolicy") == "Orphan"
        if provider is not None and not orphan:
            siblings = [
                s
                for r in refs or []
                if (s := self._get(str(r["apiVersion"]), str(r["kind"]), str(r["name"])))
            ]
            try:
                fp = resolve_references(
                    (body.get("spec") or {}).get("forProvider") or {}, siblings or [body]
                )
                provider.delete(external_name(body), fp)
                log.info("deleted %s %s from AWS", body["kind"], external_name(body))
            except ClientError as error:
                if error_code(error) not in _NOT_FOUND:
                    log.warning("could not delete %s %s: %s", body["kind"], ref["name"], error)
            except Unresolved as error:
                log.warning("could not delete %s %s: %s", body["kind"], ref["name"], error)
        elif orphan:
            log.info("kept %s %s (deletionPolicy Orphan)", body["kind"], external_name(body))
        group, version = _split(body["apiVersion"])
        try:
            self._custom().delete_cluster_custom_object(
                group, version, plural(body["kind"]), body["metadata"]["name"],
                _request_timeout=REQUEST_TIMEOUT,
            )  # fmt: skip
        except ApiException as error:
            if error.status != 404:
                raise

    # ---- plumbing -----------------------------------------------------------------------------

    def _ensure_crd(self, api_version: str, kind: str) -> None:
        group, version = _split(api_version)
        crd = managed_crd(group, version, kind)
        name = crd["metadata"]["name"]
        with self._lock:
            if name in self._crds:
                return
        self._custom().patch_cluster_custom_object(
            CRD_GROUP, CRD_VERSION, CRD_PLURAL, name, crd,
            field_manager=FIELD_MANAGER, force=True, _content_type=APPLY,
            _request_timeout=REQUEST_TIMEOUT,
        )  # fmt: skip
        with self._lock:
            self._crds.add(name)

    def _apply(self, api_version: str, kind: str, body: dict[str, Any]) -> None:
        group, version = _split(api_version)
        if kind not in self.composite_plurals:
            self._ensure_crd(api_version, kind)
        self._custom().patch_cluster_custom_object(
            group, version, self._plural(kind),
            body["metadata"]["name"], body,
            field_manager=FIELD_MANAGER, force=True, _content_type=APPLY,
            _request_timeout=REQUEST_TIMEOUT,
        )  # fmt: skip

    def _get(self, api_version: str, kind: str, name: str) -> dict[str, Any] | None:
        group, version = _split(api_version)
        resource = self._plural(kind)
        try:
            return cast(
                "dict[str, Any]",
                self._custom().get_cluster_custom_object(
                    group, version, resource, name, _request_timeout=REQUEST_TIMEOUT
                ),
            )
        except ApiException as error:
            if error.status == 404:
                return None
            raise

    def _plural(self, kind: str) -> str:
        """A composite kind's plural comes from its XRD; a managed kind's from its CRD."""
        with self._lock:
            return self.composite_plurals.get(kind) or plural(kind)
