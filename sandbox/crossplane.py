"""A Crossplane stand-in for the sandbox: XRDs become claim CRDs, Compositions compose claims.

It talks to Kubernetes only through the official client and a kubeconfig, and to AWS only
through boto3 at the moto endpoint — as real Crossplane talks to a real cluster and AWS — so
nothing here depends on how the API peer or moto are built, and nothing knows any app.

What it does, like Crossplane (v1, claims):

* ``start()`` installs the ``CompositeResourceDefinition`` and ``Composition`` CRDs (what
  installing Crossplane does).
* For each XRD it server-side applies the composite CRD (cluster-scoped) and the claim CRD
  (namespaced, ``spec.claimNames``) with the XRD's versions and schemas and a status
  subresource, then sets the XRD's ``Established``/``Offered`` conditions.
* It watches Compositions, and the claims of every established kind (one thread per kind),
  and composes each new ``metadata.generation`` from the claim's Composition (its
  ``spec.compositionRef``, the XRD's ``defaultCompositionRef``, or the only one for the
  composite type): the composite and its managed resources become objects in the API, with
  ``spec.resourceRefs`` on the composite and ``spec.resourceRef`` on the claim
  (``composer.py``, patch-and-transform in ``domain/composition.py``). The provider stand-in
  (``provider_aws.py``) reconciles the managed resources into AWS and reports
  ``status.atProvider``; kinds it does not know become Ready without AWS. A claim kind with
  no Composition composes nothing and becomes Ready (a Composition arriving later composes it).
* It writes the claim's status through the status subresource: the composite's status
  (``ToCompositeFieldPath`` patches), conditions ``Synced``/``Ready`` and ``observedGeneration``.
* A deleted claim takes its composite and managed resources with it, and their AWS resources
  unless a managed resource's ``deletionPolicy`` is ``Orphan``.

Where it deliberately differs: it is observe-only between claim changes. Real Crossplane
re-converges every few minutes and would revert an edit made in AWS; here the provider only
reads AWS into ``status.atProvider`` every ``OBSERVE_SECONDS`` (so an AWS-side edit shows
there, as drift), and writes to AWS only for a claim change it has not reconciled yet — a new
generation, or changed annotations (a ``kubectl annotate``, a revert's reconcile request:
Crossplane's controllers reconcile on every such watch event too). A failure that AWS (or the
claim's spec) caused is not retried until the next generation; a failure to reach AWS or the
API is retried with backoff for about two minutes. No finalizers: a deleted claim is gone at
once and what it composed goes after it.
"""

from __future__ import annotations

import copy
import logging
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, cast

from botocore.exceptions import ClientError
from kubernetes import client, config, watch
from kubernetes.client.exceptions import ApiException

from domain.composition import (
    COMPOSITION_KIND,
    Composition,
    CompositionError,
    parse_composition,
    select_composition,
)
from domain.schema import apply_defaults
from sandbox._service import Service
from sandbox.composer import Composer
from sandbox.moto_server import AwsClients
from sandbox.provider_aws import ProviderAws

XRD_GROUP, XRD_VERSION, XRD_PLURAL = (
    "apiextensions.crossplane.io",
    "v1",
    "compositeresourcedefinitions",
)
COMPOSITION_PLURAL = "compositions"
CRD_GROUP, CRD_VERSION, CRD_PLURAL = "apiextensions.k8s.io", "v1", "customresourcedefinitions"
FIELD_MANAGER = "crossplane"
APPLY = "application/apply-patch+yaml"
MERGE = "application/merge-patch+json"

WATCH_SECONDS = 60  # a watch ends (server-side) and is renewed this often
REQUEST_TIMEOUT = 10.0  # seconds, for every non-watch request
BACKOFF_MIN, BACKOFF_MAX = 0.2, 5.0  # between failed watches
# Of a reconcile that could not reach AWS or the API: about two minutes in all, so an
# outage of a minute is waited through (real Crossplane retries with backoff up to
# 60 s apart, without end; the apply's ready timeout bounds the wait either way).
RETRY_DELAYS = (1.0, 2.0, 4.0, 8.0, 16.0, 30.0, 30.0, 30.0)
OBSERVE_SECONDS = 1.0  # how often the provider stand-in reads AWS into status.atProvider

log = logging.getLogger(__name__)

# The kubernetes client leaves config loading and watch unannotated: typed handles on them.
_new_client: Callable[..., client.ApiClient] = config.new_client_from_config
_new_watch: Callable[[], Any] = watch.Watch


# ---- what Crossplane writes (pure) ----------------------------------------------------------


def now_rfc3339() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _crd(
    group: str, names: Mapping[str, Any], scope: str, versions: list[dict[str, Any]]
) -> dict[str, Any]:
    return {
        "apiVersion": f"{CRD_GROUP}/{CRD_VERSION}",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": f"{names['plural']}.{group}"},
        "spec": {"group": group, "names": dict(names), "scope": scope, "versions": versions},
    }


def xrd_crd() -> dict[str, Any]:
    """The CRD of ``CompositeResourceDefinition`` itself, as the Crossplane chart installs it
    (schema left open: we read XRDs, we do not validate them)."""
    return _crossplane_crd(
        {
            "kind": "CompositeResourceDefinition",
            "listKind": "CompositeResourceDefinitionList",
            "plural": XRD_PLURAL,
            "singular": "compositeresourcedefinition",
            "shortNames": ["xrd", "xrds"],
            "categories": ["crossplane"],
        }
    )


def composition_crd() -> dict[str, Any]:
    """The CRD of ``Composition``, as the Crossplane chart installs it (schema open)."""
    return _crossplane_crd(
        {
            "kind": COMPOSITION_KIND,
            "listKind": "CompositionList",
            "plural": COMPOSITION_PLURAL,
            "singular": "composition",
            "shortNames": ["comp"],
            "categories": ["crossplane"],
        }
    )


def _crossplane_crd(names: dict[str, Any]) -> dict[str, Any]:
    open_object = {"type": "object", "x-kubernetes-preserve-unknown-fields": True}
    schema = {"type": "object", "properties": {"spec": open_object, "status": open_object}}
    version = {
        "name": XRD_VERSION,
        "served": True,
        "storage": True,
        "schema": {"openAPIV3Schema": schema},
        "subresources": {"status": {}},
    }
    return _crd(XRD_GROUP, names, "Cluster", [version])


def storage_version(xrd: Mapping[str, Any]) -> str:
    """The XRD version the CRDs store: the referenceable one (the first, if none is)."""
    versions = xrd["spec"]["versions"]
    chosen = next((v for v in versions if v.get("referenceable")), versions[0])
    return str(chosen["name"])


def _with_crossplane_status(schema: Mapping[str, Any]) -> dict[str, Any]:
    """The XRD's schema plus the status fields Crossplane itself writes."""
    result = copy.deepcopy(dict(schema)) or {"type": "object"}
    status = result.setdefault("properties", {}).setdefault("status", {"type": "object"})
    status.setdefault("properties", {}).update(
        conditions={
            "type": "array",
            "items": {"type": "object", "x-kubernetes-preserve-unknown-fields": True},
        },
        observedGeneration={"type": "integer", "format": "int64"},
    )
    return result


def definition_crds(xrd: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The CRDs an XRD defines: the composite (cluster-scoped) and, with ``spec.claimNames``,
    the claim (namespaced) — each with the XRD's versions, schemas and a status subresource."""
    spec = xrd["spec"]
    storage = storage_version(xrd)
    columns = [
        {"name": c, "type": "string", "jsonPath": f".status.conditions[?(@.type=='{c}')].status"}
        for c in ("Synced", "Ready")
    ]
    versions = [
        {
            "name": v["name"],
            "served": v.get("served", True),
            "storage": v["name"] == storage,
            "schema": {
                "openAPIV3Schema": _with_crossplane_status(
                    (v.get("schema") or {}).get("openAPIV3Schema") or {}
                )
            },
            "subresources": {"status": {}},
            "additionalPrinterColumns": columns,
        }
        for v in spec["versions"]
    ]
    crds = [_crd(spec["group"], spec["names"], "Cluster", versions)]
    if spec.get("claimNames"):
        crds.append(_crd(spec["group"], spec["claimNames"], "Namespaced", versions))
    return crds


def _condition(
    kind: str, status: bool, reason: str, message: str, previous: Iterable[Any], now: str
) -> dict[str, Any]:
    """A condition whose lastTransitionTime moves only when its status does (else rewriting
    the same status would be a change every time, and every write an event)."""
    value = "True" if status else "False"
    before = next((c for c in previous if isinstance(c, Mapping) and c.get("type") == kind), None)
    since = (
        before.get("lastTransitionTime", now) if before and before.get("status") == value else now
    )
    condition = {"type": kind, "status": value, "reason": reason, "lastTransitionTime": since}
    if message:
        condition["message"] = message
    return condition


def claim_conditions(
    generation: int, error: str | None, previous: Iterable[Any], now: str
) -> list[dict[str, Any]]:
    """``Synced`` and ``Ready`` after reconciling ``generation`` (``error``: why it failed)."""
    previous = list(previous)
    if error is None:
        synced = _condition("Synced", True, "ReconcileSuccess", "", previous, now)
        ready = _condition("Ready", True, "Available", "", previous, now)
    else:
        synced = _condition("Synced", False, "ReconcileError", error, previous, now)
        ready = _condition("Ready", False, "Creating", "", previous, now)
    return [{**c, "observedGeneration": generation} for c in (synced, ready)]


# ---- the controller -------------------------------------------------------------------------


def _generation(obj: Mapping[str, Any]) -> int:
    return int(obj["metadata"].get("generation", 1))


def _annotations(obj: Mapping[str, Any]) -> dict[str, Any]:
    return dict(obj["metadata"].get("annotations") or {})


@dataclass(frozen=True)
class ClaimKind:
    group: str
    version: str
    kind: str
    plural: str


@dataclass(frozen=True)
class ClaimRef:
    group: str
    plural: str
    namespace: str
    name: str

    def __str__(self) -> str:
        return f"{self.plural}.{self.group} {self.namespace}/{self.name}"


RECONCILERS = 4


class _WorkQueue:
    """Claims to process, each at most once, each when due (client-go's workqueue, minus its
    rate limiter): a claim that changes ten times while busy is processed once, and never by
    two reconcilers at the same time."""

    def __init__(self) -> None:
        self._due: dict[ClaimRef, float] = {}
        self._processing: set[ClaimRef] = set()
        self._closed = False
        self._cond = threading.Condition()

    def add(self, ref: ClaimRef, delay: float = 0.0) -> None:
        with self._cond:
            due = time.monotonic() + delay
            self._due[ref] = min(due, self._due.get(ref, due))
            self._cond.notify()

    def get(self) -> ClaimRef | None:
        """The next claim when it is due; None once the queue is closed."""
        with self._cond:
            while not self._closed:
                ready = [(r, d) for r, d in self._due.items() if r not in self._processing]
                if not ready:
                    self._cond.wait()
                    continue
                ref, due = min(ready, key=lambda item: item[1])
                wait = due - time.monotonic()
                if wait <= 0:
                    del self._due[ref]
                    self._processing.add(ref)
                    return ref
                self._cond.wait(wait)
            return None

    def done(self, ref: ClaimRef) -> None:
        """``ref`` is processed; if it changed meanwhile, another reconciler may take it."""
        with self._cond:
            self._processing.discard(ref)
            self._cond.notify_all()

    def close(self) -> None:
        """Make ``get`` return None from now on (for stopping)."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()

    def reopen(self) -> None:
        with self._cond:
            self._closed = False


class CrossplaneStandIn(Service):
    """The stand-in; ``start()`` runs it in daemon threads until ``stop()``::

    with CrossplaneStandIn(kubeconfig, moto.endpoint) as crossplane:
        ...  # apply XRDs and claims through the API
    """

    def __init__(
        self,
        kubeconfig: Path,
        aws_endpoint: str,
        *,
        observe_seconds: float | None = None,
    ) -> None:
        self.kubeconfig = Path(kubeconfig)
        self.aws = AwsClients(aws_endpoint)
        self.observe_seconds = OBSERVE_SECONDS if observe_seconds is None else observe_seconds
        self.composer = Composer(self._custom, ProviderAws(self.aws), now_rfc3339)
        self._stopping = threading.Event()
        self._threads: list[threading.Thread] = []
        self._watches: set[Any] = set()  # watch.Watch
        self._queue = _WorkQueue()
        self._local = threading.local()
        # Guards everything below; notified when an XRD is established or a claim reconciled.
        self._cond = threading.Condition()
        self._kinds: dict[tuple[str, str], ClaimKind] = {}  # (group, plural) → watched kind
        self._established: dict[str, int] = {}  # XRD name → generation
        self._seen: dict[ClaimRef, dict[str, Any]] = {}  # latest object of each live claim
        self._gone: dict[ClaimRef, dict[str, Any]] = {}  # deleted claims, awaiting teardown
        self._reconciled: dict[ClaimRef, int] = {}  # generation last reconciled (or tried)
        # the annotations of that reconcile: a change of them asks for another
        self._annotations: dict[ClaimRef, dict[str, Any]] = {}
        self._retries: dict[ClaimRef, tuple[int, int]] = {}  # generation, attempts so far
        self._xrds: dict[tuple[str, str], dict[str, Any]] = {}  # (group, claim kind) → XRD
        self._compositions: dict[str, Composition] = {}  # by name
        # claims composed while their composite type had no Composition: one arriving asks
        # for them again
        self._bare: dict[ClaimRef, str] = {}  # → composite kind
        # when each claim's latest event arrived, and when the last read of every
        # Composition from the API began: one read serves every claim seen before it
        self._claim_seen_at: dict[ClaimRef, float] = {}
        self._compositions_read_at = float("-inf")

    # ---- lifecycle ----------------------------------------------------------------------------

    def start(self) -> None:
        """Install the XRD CRD, then watch XRDs and work on claims in background threads."""
        if self._threads:
            raise RuntimeError("the Crossplane stand-in is already started")
        self._stopping.clear()
        self._queue.reopen()
        with self._api() as api:
            for crd in (xrd_crd(), composition_crd()):
                client.CustomObjectsApi(api).patch_cluster_custom_object(
                    CRD_GROUP, CRD_VERSION, CRD_PLURAL, crd["metadata"]["name"], crd,
                    field_manager=FIELD_MANAGER, force=True, _content_type=APPLY,
                    _request_timeout=REQUEST_TIMEOUT,
                )  # fmt: skip
        # Several reconcilers, as Crossplane runs several: one slow claim (AWS calls)
        # does not hold up the others.
        for i in range(RECONCILERS):
            self._spawn(f"crossplane-reconciler-{i}", self._work)
        self._spawn(
            "crossplane-xrds",
            self._watch_loop,
            XRD_GROUP,
            XRD_VERSION,
            XRD_PLURAL,
            self._on_xrds_listed,
            self._on_xrd,
        )
        self._spawn(
            "crossplane-compositions",
            self._watch_loop,
            XRD_GROUP,
            XRD_VERSION,
            COMPOSITION_PLURAL,
            self._on_compositions_listed,
            self._on_composition,
        )
        if self.observe_seconds > 0:
            self._spawn("crossplane-provider-observe", self._observe_loop)
        log.info("Crossplane stand-in started (AWS at %s)", self.aws.endpoint)

    def stop(self, timeout: float = 5.0) -> None:
        self._stopping.set()
        with self._cond:
            watches = list(self._watches)
        for w in watches:
            w.stop()  # shuts the stream's socket down, so a blocked read returns now
        self._queue.close()
        deadline = time.monotonic() + timeout
        for thread in self._threads:
            thread.join(max(0.0, deadline - time.monotonic()))
        self._threads = []
        with self._cond:  # a restart re-establishes every XRD and re-watches its claims
            self._kinds.clear()
            self._established.clear()

    # ---- the provider's poll: AWS → status.atProvider -----------------------------------------

    def _observe_loop(self) -> None:
        try:
            while not self._stopping.wait(self.observe_seconds):
                try:
                    self.composer.observe()
                except Exception as error:  # the API is away: the next poll tries again
                    log.debug("observing managed resources failed: %s", error)
        finally:
            self._close_custom()

    def observe_now(self) -> int:
        """One poll of the provider now (tests): every managed resource's ``atProvider`` read
        from AWS; returns how many changed."""
        return self.composer.observe()

    # ---- waiting (tests, tools) ---------------------------------------------------------------

    def wait_established(self, xrd_name: str, timeout: float = 10.0) -> None:
        """Until the XRD's CRDs exist and its claims are watched; TimeoutError otherwise."""
        with self._cond:
            if not self._cond.wait_for(lambda: xrd_name in self._established, timeout):
                raise TimeoutError(f"XRD {xrd_name} not established within {timeout}s")

    def wait_reconciled(
        self, plural: str, namespace: str, name: str, generation: int, timeout: float = 30.0
    ) -> None:
        """Until the claim's ``generation`` (or a later one) was reconciled and its status
        written — successfully or not; TimeoutError otherwise."""

        def done() -> bool:
            return any(
                (ref.plural, ref.namespace, ref.name) == (plural, namespace, name)
                and seen >= generation
                for ref, seen in self._reconciled.items()
            )

        with self._cond:
            if not self._cond.wait_for(done, timeout):
                raise TimeoutError(
                    f"{plural} {namespace}/{name} generation {generation} "
                    f"not reconciled within {timeout}s"
                )

    # ---- plumbing -----------------------------------------------------------------------------

    def _api(self) -> client.ApiClient:
        return _new_client(config_file=str(self.kubeconfig))

    def _custom(self) -> client.CustomObjectsApi:
        """This thread's client (made on first use): a watch holds its connection for long,
        so threads do not share a connection pool."""
        custom: client.CustomObjectsApi | None = getattr(self._local, "custom", None)
        if custom is None:
            custom = self._local.custom = client.CustomObjectsApi(self._api())
        return custom

    def _close_custom(self) -> None:
        custom: client.CustomObjectsApi | None = getattr(self._local, "custom", None)
        if custom is not None:
            custom.api_client.close()
            self._local.custom = None

    def _spawn(self, name: str, target: Callable[..., None], *args: Any) -> None:
        if self._stopping.is_set():
            return  # an XRD handled while stopping: its claims will be watched after a restart
        thread = threading.Thread(target=target, args=args, name=name, daemon=True)
        self._threads.append(thread)
        thread.start()

    def _watch_loop(
        self,
        group: str,
        version: str,
        plural: str,
        on_list: Callable[[list[dict[str, Any]]], None],
        on_event: Callable[[str, dict[str, Any]], None],
    ) -> None:
        """List, then watch from the list's resourceVersion, forever: resume after a dropped
        stream, relist after 410 Gone or a failed handler (handlers are idempotent)."""
        resource = f"{plural}.{group}"
        custom = self._custom()
        backoff = BACKOFF_MIN
        version_seen: str | None = None
        try:
            while not self._stopping.is_set():
                try:
                    if version_seen is None:
                        listing = cast(  # the client types custom objects as "object"
                            "dict[str, Any]",
                            custom.list_cluster_custom_object(
                                group, version, plural, _request_timeout=REQUEST_TIMEOUT
                            ),
                        )
                        on_list(listing.get("items") or [])
                        version_seen = listing["metadata"]["resourceVersion"]
                    stream = _new_watch()
                    with self._cond:
                        self._watches.add(stream)
                    try:
                        for event in stream.stream(
                            custom.list_cluster_custom_object, group, version, plural,
                            resource_version=version_seen, timeout_seconds=WATCH_SECONDS,
                            # A bound on silence too, should the server never end the stream.
                            _request_timeout=(REQUEST_TIMEOUT, WATCH_SECONDS + 10),
                        ):  # fmt: skip
                            if self._stopping.is_set():
                                break
                            obj = event["raw_object"]
                            version_seen = obj["metadata"]["resourceVersion"]
                            if event["type"] in ("ADDED", "MODIFIED", "DELETED"):
                                on_event(event["type"], obj)
                            backoff = BACKOFF_MIN
                    finally:
                        with self._cond:
                            self._watches.discard(stream)
                    continue
                except ApiException as error:
                    if error.status == 410:
                        log.debug("watch of %s expired; relisting", resource)
                        version_seen = None
                        continue
                    log.warning("watch of %s failed: %s %s", resource, error.status, error.reason)
                    version_seen = None  # the failure may have been ours: start over
                except Exception as error:  # the API is unreachable, a handler failed, ...
                    if not self._stopping.is_set():
                        log.warning("watch of %s failed: %s", resource, error)
                    version_seen = None
                self._stopping.wait(backoff)
                backoff = min(backoff * 2, BACKOFF_MAX)
        finally:
            self._close_custom()

    # ---- XRDs ---------------------------------------------------------------------------------

    def _on_xrds_listed(self, items: list[dict[str, Any]]) -> None:
        # One XRD that cannot be established must not hold up the others; raising at the end
        # makes the watch loop relist (after a backoff) and try it again.
        failed: list[str] = []
        for xrd in items:
            try:
                self._on_xrd("ADDED", xrd)
            except Exception as error:
                log.warning("cannot establish XRD %s: %s", xrd["metadata"]["name"], error)
                failed.append(xrd["metadata"]["name"])
        if failed:
            raise RuntimeError(f"XRDs not established yet: {', '.join(failed)}")

    def _on_xrd(self, event_type: str, xrd: dict[str, Any]) -> None:
        name = xrd["metadata"]["name"]
        if event_type == "DELETED":
            # Real Crossplane would hold the XRD until its claims are gone and then remove the
            # CRDs; the sandbox leaves both (and keeps watching the claims).
            log.info("XRD %s deleted; its CRDs and claims stay", name)
            return
        generation = _generation(xrd)
        with self._cond:
            if self._established.get(name) == generation:
                return  # e.g. our own status write
        custom = self._custom()
        for crd in definition_crds(xrd):
            custom.patch_cluster_custom_object(
                CRD_GROUP, CRD_VERSION, CRD_PLURAL, crd["metadata"]["name"], crd,
                field_manager=FIELD_MANAGER, force=True, _content_type=APPLY,
                _request_timeout=REQUEST_TIMEOUT,
            )  # fmt: skip
        custom.patch_cluster_custom_object_status(
            XRD_GROUP, XRD_VERSION, XRD_PLURAL, name, {"status": self._xrd_status(xrd)},
            field_manager=FIELD_MANAGER, _content_type=MERGE, _request_timeout=REQUEST_TIMEOUT,
        )  # fmt: skip
        spec = xrd["spec"]
        with self._cond:
            self.composer.composite_plurals[spec["names"]["kind"]] = spec["names"]["plural"]
            if spec.get("claimNames"):
                self._xrds[spec["group"], spec["claimNames"]["kind"]] = xrd
        if spec.get("claimNames"):
            self._watch_claims(
                ClaimKind(
                    spec["group"],
                    storage_version(xrd),
                    spec["claimNames"]["kind"],
                    spec["claimNames"]["plural"],
                )
            )
        with self._cond:
            self._established[name] = generation
            self._cond.notify_all()
        log.info("XRD %s established", name)

    @staticmethod
    def _xrd_status(xrd: Mapping[str, Any]) -> dict[str, Any]:
        spec, now = xrd["spec"], now_rfc3339()
        previous = (xrd.get("status") or {}).get("conditions") or []
        api_version = f"{spec['group']}/{storage_version(xrd)}"
        conditions = [_condition("Established", True, "WatchingComposite", "", previous, now)]
        controllers = {
            "compositeResourceType": {"apiVersion": api_version, "kind": spec["names"]["kind"]}
        }
        if spec.get("claimNames"):
            conditions.append(_condition("Offered", True, "OfferedClaim", "", previous, now))
            controllers["compositeResourceClaimType"] = {
                "apiVersion": api_version,
                "kind": spec["claimNames"]["kind"],
            }
        return {"conditions": conditions, "controllers": controllers}

    # ---- Compositions -------------------------------------------------------------------------

    def _on_compositions_listed(self, items: list[dict[str, Any]]) -> None:
        with self._cond:
            self._compositions.clear()
        for item in items:
            self._on_composition("ADDED", item)

    def _catch_up_compositions(self) -> None:
        """Read every Composition from the API now, ahead of the watch (idempotent with
        the events that follow)."""
        with self._cond:
            self._compositions_read_at = time.monotonic()
        listing = cast(
            "dict[str, Any]",
            self._custom().list_cluster_custom_object(
                XRD_GROUP, XRD_VERSION, COMPOSITION_PLURAL, _request_timeout=REQUEST_TIMEOUT
            ),
        )
        for item in listing.get("items") or []:
            self._add_composition(item)

    def _on_composition(self, event_type: str, doc: dict[str, Any]) -> None:
        if event_type == "DELETED":
            with self._cond:
                self._compositions.pop(str(doc["metadata"]["name"]), None)
            return
        self._add_composition(doc)

    def _add_composition(self, doc: dict[str, Any]) -> None:
        name = str(doc["metadata"]["name"])
        try:
            composition = parse_composition(doc)
        except CompositionError as error:
            log.warning("Composition %s cannot be used: %s", name, error)
            with self._cond:
                self._compositions.pop(name, None)
            return
        with self._cond:
            self._compositions[name] = composition
            waiting = [r for r, kind in self._bare.items() if kind == composition.composite_kind]
            for ref in waiting:
                # compose it again now that its composite type has a Composition
                self._reconciled.pop(ref, None)
        for ref in waiting:
            self._queue.add(ref)
        log.info("Composition %s ready for %s", name, composition.composite_kind)

    # ---- claims: events -----------------------------------------------------------------------

    def _watch_claims(self, kind: ClaimKind) -> None:
        with self._cond:
            if (kind.group, kind.plural) in self._kinds:
                return
            self._kinds[kind.group, kind.plural] = kind

        def listed(items: list[dict[str, Any]]) -> None:
            # A relist can reveal claims deleted while we were not watching: tear them down.
            present = {self._ref(kind, obj) for obj in items}
            with self._cond:
                missed = [
                    obj
                    for ref, obj in self._seen.items()
                    if (ref.group, ref.plural) == (kind.group, kind.plural) and ref not in present
                ]
            for obj in missed:
                self._on_claim(kind, "DELETED", obj)
            for obj in items:
                self._on_claim(kind, "ADDED", obj)

        self._spawn(
            f"crossplane-{kind.plural}",
            self._watch_loop,
            kind.group,
            kind.version,
            kind.plural,
            listed,
            lambda event_type, obj: self._on_claim(kind, event_type, obj),
        )

    @staticmethod
    def _ref(kind: ClaimKind, obj: Mapping[str, Any]) -> ClaimRef:
        meta = obj["metadata"]
        return ClaimRef(kind.group, kind.plural, meta.get("namespace") or "", meta["name"])

    def _on_claim(self, kind: ClaimKind, event_type: str, obj: dict[str, Any]) -> None:
        """Queue the claim if there is work: a generation not reconciled yet, or a deletion.
        Only a queue and dicts here — the watch must never wait on AWS."""
        ref = self._ref(kind, obj)
        with self._cond:
            if event_type == "DELETED":
                self._seen.pop(ref, None)
                self._claim_seen_at.pop(ref, None)
                self._gone[ref] = obj
                # Forgotten now, not at teardown: a claim re-created under the same name starts
                # at generation 1 again and must be reconciled.
                self._reconciled.pop(ref, None)
                self._annotations.pop(ref, None)
                self._retries.pop(ref, None)
            else:
                self._seen[ref] = obj
                self._claim_seen_at[ref] = time.monotonic()
                # Re-created before its teardown ran: composing it again adopts what is there.
                self._gone.pop(ref, None)
                if self._up_to_date(ref, obj):
                    return  # a status-only change (e.g. its own write): observe, do not reconcile
        self._queue.add(ref)

    # ---- claims: work -------------------------------------------------------------------------

    def _work(self) -> None:
        try:
            while (ref := self._queue.get()) is not None:
                try:
                    self._process(ref)
                except Exception:  # a bug: keep serving the other claims
                    log.exception("processing %s failed", ref)
                finally:
                    self._queue.done(ref)
        finally:
            self._close_custom()

    def _composite_type(self, ref: ClaimRef, kind: str) -> tuple[dict[str, Any], str, str]:
        """The claim kind's XRD, and its composite's apiVersion and kind."""
        with self._cond:
            xrd = self._xrds[ref.group, kind]
        return xrd, f"{ref.group}/{storage_version(xrd)}", str(xrd["spec"]["names"]["kind"])

    def _compose(self, ref: ClaimRef, claim: dict[str, Any]) -> dict[str, Any]:
        """Compose the claim; returns its status fields."""
        xrd, api_version, kind = self._composite_type(ref, claim["kind"])
        version = claim["apiVersion"].rpartition("/")[2]
        schema = next(
            (
                (v.get("schema") or {}).get("openAPIV3Schema") or {}
                for v in xrd["spec"]["versions"]
                if v["name"] == version
            ),
            {},
        )
        # The peer does not default on write, unlike a real apiserver with the XRD's schema.
        defaulted = apply_defaults(schema, claim) if schema else claim
        spec = defaulted.get("spec") or {}
        wanted = str((spec.get("compositionRef") or {}).get("name") or "")
        default = str((xrd["spec"].get("defaultCompositionRef") or {}).get("name") or "")

        def select() -> Composition | None:
            return select_composition(
                list(self._compositions.values()), api_version, kind, name=wanted, default=default
            )

        with self._cond:
            composition = select()
            # The Compositions' watch may lag the claims' (an apply installs the
            # Composition, then the claim, and the two events race to two threads): ask
            # the API before composing nothing, or the claim would turn Ready bare. A read
            # begun after the claim's event arrived has seen every Composition made
            # before the claim, so a fleet of bare claims costs one read, not one each.
            stale = self._compositions_read_at < self._claim_seen_at.get(ref, float("inf"))
        if composition is None and stale:
            self._catch_up_compositions()
        with self._cond:
            composition = select() if composition is None else composition
            if composition is None:
                self._bare[ref] = kind
            else:
                self._bare.pop(ref, None)
        if composition is None:
            log.info("no Composition for %s yet: %s composes nothing", kind, ref)
        with self.composer.claim_lock(ref.namespace, ref.name):
            return self.composer.compose(defaulted, api_version, kind, composition)

    def _reference(self, ref: ClaimRef, claim: dict[str, Any]) -> int:
        """Write the composite's reference into the claim's ``spec.resourceRef``, as
        Crossplane does; returns the claim's generation after it."""
        _, api_version, kind = self._composite_type(ref, claim["kind"])
        wanted = self.composer.resource_ref(claim, api_version, kind)
        if (claim.get("spec") or {}).get("resourceRef") == wanted:
            return _generation(claim)
        version = claim["apiVersion"].rpartition("/")[2]
        written = self._custom().patch_namespaced_custom_object(
            ref.group, version, ref.namespace, ref.plural, ref.name,
            {"spec": {"resourceRef": wanted}},
            field_manager=FIELD_MANAGER, _content_type=MERGE, _request_timeout=REQUEST_TIMEOUT,
        )  # fmt: skip
        return _generation(cast("dict[str, Any]", written))

    def _process(self, ref: ClaimRef) -> None:
        with self._cond:
            claim, gone = self._seen.get(ref), self._gone.pop(ref, None)
        if claim is None:
            if gone is not None:
                self._delete(ref, gone)
            return
        generation = _generation(claim)
        with self._cond:
            retrying = self._retries.get(ref, (None, 0))[0] == generation
            if self._up_to_date(ref, claim) and not retrying:
                return
        error: str | None = None
        transient = False
        fields: dict[str, Any] = {}
        try:
            generation = self._reference(ref, claim)  # a new generation, the first time
            fields = self._compose(ref, claim)
        except (ClientError, ValueError, CompositionError) as failure:
            error = str(failure)  # AWS said no, or the spec or composition is unusable
        except ApiException as failure:
            if failure.status == 404:
                return  # deleted meanwhile: its DELETED event is on its way
            error, transient = f"{failure.status} {failure.reason}", True
        except Exception as failure:  # AWS unreachable, ...: worth another try
            error, transient = str(failure), True
        status = {
            **fields,
            "conditions": claim_conditions(
                generation,
                error,
                (claim.get("status") or {}).get("conditions") or [],
                now_rfc3339(),
            ),
            "observedGeneration": generation,
        }
        try:
            self._write_status(ref, claim, status)
        except ApiException as failure:
            if failure.status == 404:
                return  # deleted meanwhile: its DELETED event is on its way
            log.warning("cannot write the status of %s: %s %s", ref, failure.status, failure.reason)
            transient = True
        except Exception as failure:
            log.warning("cannot write the status of %s: %s", ref, failure)
            transient = True
        self._finish(ref, generation, error, transient, _annotations(claim))

    def _up_to_date(self, ref: ClaimRef, claim: Mapping[str, Any]) -> bool:
        """This generation and these annotations were reconciled already (caller holds
        the lock)."""
        return self._reconciled.get(ref) == _generation(claim) and self._annotations.get(
            ref
        ) == _annotations(claim)

    def _finish(
        self,
        ref: ClaimRef,
        generation: int,
        error: str | None,
        transient: bool,
        annotations: dict[str, Any],
    ) -> None:
        with self._cond:
            self._reconciled[ref] = generation
            self._annotations[ref] = annotations
            attempts = self._retries.pop(ref, (generation, 0))[1] if transient else 0
            retry = transient and attempts < len(RETRY_DELAYS)
            if retry:
                self._retries[ref] = (generation, attempts + 1)
            self._cond.notify_all()
        if retry:
            delay = RETRY_DELAYS[attempts]
            log.warning(
                "reconciling %s generation %d failed (%s); retrying in %.0fs",
                ref,
                generation,
                error,
                delay,
            )
            self._queue.add(ref, delay)
        elif error is not None:
            log.warning("reconciling %s generation %d failed: %s", ref, generation, error)
        else:
            log.info("reconciled %s generation %d: Ready", ref, generation)

    def _write_status(
        self, ref: ClaimRef, claim: Mapping[str, Any], status: dict[str, Any]
    ) -> None:
        version = claim["apiVersion"].rpartition("/")[2]
        self._custom().patch_namespaced_custom_object_status(
            ref.group, version, ref.namespace, ref.plural, ref.name, {"status": status},
            field_manager=FIELD_MANAGER, _content_type=MERGE, _request_timeout=REQUEST_TIMEOUT,
        )  # fmt: skip

    def _delete(self, ref: ClaimRef, claim: Mapping[str, Any]) -> None:
        try:
            _, api_version, kind = self._composite_type(ref, claim["kind"])
            with self.composer.claim_lock(ref.namespace, ref.name):
                self.composer.delete(claim, api_version, kind)
        except Exception as error:  # best effort: the claim is gone either way
            log.warning("deleting what %s composed failed: %s", ref, error)
        else:
            log.debug("claim %s deleted", ref)
