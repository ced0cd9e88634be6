"""The API peer's state and write semantics, without HTTP: kinds, objects, versions, watches.

Every change goes through ``_commit``: it bumps the one global resourceVersion, stores the
object and fans the event out to watchers. Around it, the rules our GitOps arrows rely on:

* server-owned metadata (uid, creationTimestamp, generation, resourceVersion) is the server's;
* a stale ``metadata.resourceVersion`` in a write is a 409 Conflict;
* ``generation`` moves only when something other than metadata and status changes;
* with a status subresource, the main resource ignores ``.status`` and ``/status`` ignores
  everything else;
* managedFields are kept per ``kubeapi_ssa``; an apply may fail with a 409 naming the fields;
* a write that changes nothing is a no-op: same resourceVersion, no watch event;
* ``metadata.finalizers`` hold a deleted object (marked with deletionTimestamp) until empty;
* CustomResourceDefinition objects (un)register the kinds they define.

Thread safety: one re-entrant lock guards everything and is never held across an ``await``.
Stored objects are copy-on-write (a write stores a new dict), so callers may hand stored
dicts to responses and watch streams without copying.
"""

from __future__ import annotations

import asyncio
import collections
import copy
import threading
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from sandbox import kubeapi_ssa as ssa
from sandbox.kubeapi_kinds import InvalidCrdError, KindInfo, crd_status, kinds_from_crd
from sandbox.kubeapi_select import Selector
from sandbox.kubeapi_status import (
    ApiError,
    already_exists,
    invalid,
    modified_conflict,
    not_found,
    status_body,
)

ObjectKey = tuple[str, str, str | None, str]  # group, plural, namespace (None: cluster), name

NAMESPACES = KindInfo("", "v1", "Namespace", "namespaces", namespaced=False, short_names=("ns",))
CRDS = KindInfo(
    "apiextensions.k8s.io",
    "v1",
    "CustomResourceDefinition",
    "customresourcedefinitions",
    namespaced=False,
    short_names=("crd", "crds"),
    categories=("api-extensions",),
)
INITIAL_NAMESPACES = ("default", "kube-system", "kube-public")

# Metadata the server owns: carried over from the stored object on every update.
_SERVER_METADATA = (
    "uid",
    "creationTimestamp",
    "generation",
    "resourceVersion",
    "deletionTimestamp",
    "deletionGracePeriodSeconds",
    "name",
    "namespace",
)
_NOT_SPEC = ("metadata", "status", "apiVersion", "kind")


def now_rfc3339() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def as_version(obj: dict[str, Any], kind: KindInfo) -> dict[str, Any]:
    """The object as served by ``kind``'s version (all versions share one stored object, as
    with a CRD's conversion strategy "None")."""
    if obj.get("apiVersion") == kind.api_version:
        return obj
    return {**obj, "apiVersion": kind.api_version}


def _without(obj: Mapping[str, Any], *keys: str) -> dict[str, Any]:
    return {k: v for k, v in obj.items() if k not in keys}


def _fingerprint(obj: Mapping[str, Any]) -> Any:
    """An object minus what changes on every write anyway (managedFields times)."""
    meta = dict(obj.get("metadata") or {})
    meta["managedFields"] = [_without(e, "time") for e in meta.get("managedFields") or []]
    return {**obj, "metadata": meta}


@dataclass(frozen=True)
class WatchEvent:
    rv: int
    type: str  # ADDED, MODIFIED, DELETED
    group: str
    plural: str
    obj: dict[str, Any]
    prev: dict[str, Any] | None


@dataclass(eq=False)
class Watcher:
    """One open watch: what it selects, and the queue its events arrive in."""

    kind: KindInfo
    selector: Selector
    loop: asyncio.AbstractEventLoop
    queue: asyncio.Queue[WatchEvent | None] = field(default_factory=asyncio.Queue)

    def offer(self, event: WatchEvent | None) -> None:
        # Writers may be on another thread: hand over through the watcher's loop. Callbacks
        # run in FIFO order, so events keep their order. None ends the stream.
        self.loop.call_soon_threadsafe(self.queue.put_nowait, event)

    def render(self, event: WatchEvent) -> dict[str, Any] | None:
        """The event as this watcher sees it (selectors turn updates into adds and deletes)."""
        if (event.group, event.plural) != (self.kind.group, self.kind.plural):
            return None
        now = self.selector.matches(event.obj)
        kind = event.type
        if kind == "MODIFIED":
            before = event.prev is not None and self.selector.matches(event.prev)
            if not (now or before):
                return None
            kind = "MODIFIED" if now and before else "ADDED" if now else "DELETED"
        elif not now:
            return None
        return {"type": kind, "object": as_version(event.obj, self.kind)}


class ObjectStore:
    def __init__(self, *, event_log_size: int = 10_000) -> None:
        self._lock = threading.RLock()
        self._kinds: dict[tuple[str, str, str], KindInfo] = {}
        self._objects: dict[ObjectKey, dict[str, Any]] = {}
        self._rv = 0
        self._events: collections.deque[WatchEvent] = collections.deque()
        self._event_log_size = event_log_size
        self._expired_rv = 0  # events up to this resourceVersion can no longer be replayed
        self._watchers: set[Watcher] = set()
        self.register_kind(NAMESPACES)
        self.register_kind(CRDS)
        for name in INITIAL_NAMESPACES:
            namespace = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}}
            self.create(NAMESPACES, namespace, manager=None)

    # ---- kinds --------------------------------------------------------------------------------

    def register_kind(self, info: KindInfo) -> None:
        with self._lock:
            self._kinds[info.group, info.version, info.plural] = info

    def kind(self, group: str, version: str, plural: str) -> KindInfo | None:
        with self._lock:
            return self._kinds.get((group, version, plural))

    def kinds(self) -> list[KindInfo]:
        with self._lock:
            return list(self._kinds.values())

    @property
    def resource_version(self) -> int:
        with self._lock:
            return self._rv

    # ---- reads --------------------------------------------------------------------------------

    def _key(self, kind: KindInfo, namespace: str | None, name: str) -> ObjectKey:
        return (kind.group, kind.plural, namespace if kind.namespaced else None, name)

    def get(self, kind: KindInfo, namespace: str | None, name: str) -> dict[str, Any]:
        with self._lock:
            obj = self._objects.get(self._key(kind, namespace, name))
        if obj is None:
            raise not_found(kind, name)
        return obj

    def snapshot(
        self, group: str, plural: str, name: str, namespace: str | None = None
    ) -> dict[str, Any] | None:
        """A private copy of a stored object, or None (for tests and tools)."""
        with self._lock:
            obj = self._objects.get((group, plural, namespace, name))
            return copy.deepcopy(obj) if obj is not None else None

    def _matching(self, kind: KindInfo, selector: Selector) -> list[dict[str, Any]]:
        found = [
            obj
            for (group, plural, _, _), obj in self._objects.items()
            if (group, plural) == (kind.group, kind.plural) and selector.matches(obj)
        ]
        return sorted(
            found, key=lambda o: (o["metadata"].get("namespace") or "", o["metadata"]["name"])
        )

    def list_objects(self, kind: KindInfo, selector: Selector) -> tuple[list[dict[str, Any]], int]:
        with self._lock:
            return [as_version(o, kind) for o in self._matching(kind, selector)], self._rv

    # ---- watches ------------------------------------------------------------------------------

    def watch(
        self,
        kind: KindInfo,
        selector: Selector,
        loop: asyncio.AbstractEventLoop,
        *,
        since: int | None,
        initial_events: bool = False,
    ) -> tuple[Watcher | None, list[dict[str, Any]]]:
        """Subscribe; returns the watcher (None if nothing follows) and the events to send first.

        ``since=None`` starts at the most recent state: synthetic ADDED events for what exists.
        A resourceVersion replays the later events, or is 410 Expired if they are gone.
        ``initial_events`` is the streaming list of kubectl >= 1.32: the current state, then a
        BOOKMARK marking the end of it.
        """
        watcher = Watcher(kind, selector, loop)
        with self._lock:
            if since is None or initial_events:
                initial = [
                    {"type": "ADDED", "object": as_version(obj, kind)}
                    for obj in self._matching(kind, selector)
                ]
                if initial_events:
                    initial.append({"type": "BOOKMARK", "object": self._bookmark(kind)})
            elif since < self._expired_rv:
                message = f"too old resource version: {since} ({self._expired_rv})"
                return None, [{"type": "ERROR", "object": status_body(410, message, "Expired")}]
            else:
                replay = (watcher.render(e) for e in self._events if e.rv > since)
                initial = [e for e in replay if e is not None]
            self._watchers.add(watcher)
        return watcher, initial

    def _bookmark(self, kind: KindInfo) -> dict[str, Any]:
        return {
            "apiVersion": kind.api_version,
            "kind": kind.kind,
            "metadata": {
                "resourceVersion": str(self._rv),
                "annotations": {"k8s.io/initial-events-end": "true"},
            },
        }

    def unwatch(self, watcher: Watcher) -> None:
        with self._lock:
            self._watchers.discard(watcher)

    def close_watches(self) -> None:
        """End every open watch stream (as an apiserver restart would)."""
        with self._lock:
            watchers, self._watchers = self._watchers, set()
        for watcher in watchers:
            watcher.offer(None)

    # ---- writes -------------------------------------------------------------------------------

    def create(
        self,
        kind: KindInfo,
        body: dict[str, Any],
        *,
        manager: str | None,
        entries: list[dict[str, Any]] | None = None,
        dry_run: bool = False,
    ) -> dict[str, Any]:
        """Store a new object; ``body`` is already checked against the URL (name, namespace)."""
        obj = copy.deepcopy(body)
        if kind.status_subresource:
            obj.pop("status", None)  # status cannot be set on create
        obj["apiVersion"], obj["kind"] = kind.api_version, kind.kind
        meta = obj["metadata"]
        for server_field in ("resourceVersion", "deletionTimestamp", "deletionGracePeriodSeconds"):
            meta.pop(server_field, None)
        meta.pop("managedFields", None)
        if entries is None and manager is not None:
            entries = ssa.record_update(
                None, obj, None, manager=manager, api_version=kind.api_version, now=now_rfc3339()
            )
        meta.update(uid=str(uuid.uuid4()), creationTimestamp=now_rfc3339(), generation=1)
        if entries:
            meta["managedFields"] = entries
        with self._lock:
            key = self._key(kind, meta.get("namespace"), meta["name"])
            if key in self._objects:
                raise already_exists(kind, meta["name"])
            self._server_fields(kind, obj, None)
            return self._commit(kind, key, obj, None, dry_run=dry_run)

    def update(
        self,
        kind: KindInfo,
        namespace: str | None,
        name: str,
        change: Callable[[dict[str, Any]], dict[str, Any]],
        *,
        subresource: str = "",
        manager: str,
        dry_run: bool = False,
    ) -> dict[str, Any]:
        """Replace or patch: ``change`` turns the stored object into the wanted one (under the
        lock, so read-modify-write is atomic)."""
        with self._lock:
            old = self.get(kind, namespace, name)
            candidate = change(old)
            return self._update(kind, old, candidate, None, subresource, manager, dry_run)

    def apply(
        self,
        kind: KindInfo,
        namespace: str | None,
        name: str,
        config: dict[str, Any],
        *,
        subresource: str = "",
        manager: str,
        force: bool,
        dry_run: bool = False,
    ) -> tuple[dict[str, Any], bool]:
        """Server-side apply; returns the object and whether it was created."""
        if subresource == "status":
            scoped = {"status": config.get("status") or {}}
        elif kind.status_subresource:
            scoped = _without(config, "status")
        else:
            scoped = config
        with self._lock:
            old = self._objects.get(self._key(kind, namespace, name))
            if old is None and subresource:
                raise not_found(kind, name)
            wanted_rv = config["metadata"].get("resourceVersion")
            if wanted_rv and (old is None or wanted_rv != old["metadata"]["resourceVersion"]):
                raise modified_conflict(kind, name)
            try:
                merged, entries = ssa.apply(
                    old,
                    scoped,
                    old["metadata"].get("managedFields") if old else None,
                    manager=manager,
                    api_version=kind.api_version,
                    subresource=subresource,
                    force=force,
                    now=now_rfc3339(),
                )
            except ssa.ApplyConflictError as error:
                causes = {"causes": ssa.conflict_causes(error.conflicts)}
                raise ApiError(409, str(error), "Conflict", causes) from error
            if old is None:
                return self.create(
                    kind, merged, manager=None, entries=entries, dry_run=dry_run
                ), True
            return self._update(kind, old, merged, entries, subresource, manager, dry_run), False

    def _update(
        self,
        kind: KindInfo,
        old: dict[str, Any],
        candidate: dict[str, Any],
        entries: list[dict[str, Any]] | None,
        subresource: str,
        manager: str,
        dry_run: bool,
    ) -> dict[str, Any]:
        """Finish any write over ``old``: scope, ownership, generation, no-op check, commit."""
        name = old["metadata"]["name"]
        wanted_rv = candidate["metadata"].get("resourceVersion")
        if wanted_rv and wanted_rv != old["metadata"]["resourceVersion"]:
            raise modified_conflict(kind, name)

        if subresource == "status":
            new = copy.deepcopy(old)  # /status changes .status only
            new.pop("status", None)
            if "status" in candidate:
                new["status"] = copy.deepcopy(candidate["status"])
        else:
            new = copy.deepcopy(candidate)
            if kind.status_subresource:  # ... and the main resource everything but .status
                new.pop("status", None)
                if "status" in old:
                    new["status"] = copy.deepcopy(old["status"])
            meta, old_meta = new["metadata"], old["metadata"]
            for server_field in _SERVER_METADATA:
                meta.pop(server_field, None)
                if server_field in old_meta:
                    meta[server_field] = old_meta[server_field]
        new["apiVersion"], new["kind"] = kind.api_version, kind.kind
        self._server_fields(kind, new, old)

        meta = new["metadata"]
        old_entries = old["metadata"].get("managedFields")
        requested = candidate["metadata"].get("managedFields")
        user_reset = "managedFields" in candidate["metadata"] and requested != old_entries
        if entries is None and not subresource and user_reset:
            # A client may rewrite ownership itself; [{}] clears it (as on a real apiserver).
            entries = [e for e in requested or [] if isinstance(e, dict) and e]
        elif entries is None:
            entries = ssa.record_update(
                old,
                new,
                old_entries,
                manager=manager,
                api_version=kind.api_version,
                subresource=subresource,
                now=now_rfc3339(),
            )
        meta.pop("managedFields", None)
        if entries:
            meta["managedFields"] = entries

        if _without(new, *_NOT_SPEC) != _without(old, *_NOT_SPEC):
            meta["generation"] = int(old["metadata"].get("generation", 1)) + 1

        key = self._key(kind, meta.get("namespace"), name)
        if meta.get("deletionTimestamp") and not meta.get("finalizers"):
            return self._commit(kind, key, None, old, dry_run=dry_run)  # last finalizer gone
        if _fingerprint(new) == _fingerprint(old):
            return old  # a no-op neither bumps the resourceVersion nor notifies watchers
        return self._commit(kind, key, new, old, dry_run=dry_run)

    def delete(
        self,
        kind: KindInfo,
        namespace: str | None,
        name: str,
        *,
        preconditions: Mapping[str, Any],
        dry_run: bool = False,
    ) -> tuple[dict[str, Any], bool]:
        """Delete; returns the object and whether finalizers still hold it (then it is only
        marked with a deletionTimestamp and goes when the last finalizer is removed)."""
        with self._lock:
            old = self.get(kind, namespace, name)
            meta = old["metadata"]
            if preconditions.get("uid") not in (None, meta["uid"]):
                raise ApiError(
                    409,
                    f"Precondition failed: UID in precondition: {preconditions['uid']}, "
                    f"UID in object meta: {meta['uid']}",
                )
            if preconditions.get("resourceVersion") not in (None, meta["resourceVersion"]):
                raise ApiError(
                    409,
                    f"the ResourceVersion in the precondition ({preconditions['resourceVersion']})"
                    f" does not match the ResourceVersion in record ({meta['resourceVersion']})."
                    " The object might have been modified",
                )
            if kind == NAMESPACES and name in INITIAL_NAMESPACES:
                raise ApiError(
                    403, f'namespaces "{name}" is forbidden: this namespace may not be deleted'
                )
            key = self._key(kind, namespace, name)
            if not meta.get("finalizers"):
                return self._commit(kind, key, None, old, dry_run=dry_run), False
            if meta.get("deletionTimestamp"):
                return old, True
            marked = copy.deepcopy(old)
            marked["metadata"].update(deletionTimestamp=now_rfc3339(), deletionGracePeriodSeconds=0)
            return self._commit(kind, key, marked, old, dry_run=dry_run), True

    # ---- the one place objects change ---------------------------------------------------------

    def _commit(
        self,
        kind: KindInfo,
        key: ObjectKey,
        new: dict[str, Any] | None,
        old: dict[str, Any] | None,
        *,
        dry_run: bool,
    ) -> dict[str, Any]:
        """Store ``new`` (or delete, when None), bump the resourceVersion, notify watchers."""
        if dry_run:
            return copy.deepcopy(new if new is not None else old) or {}
        self._rv += 1
        if new is None:
            assert old is not None
            obj = copy.deepcopy(old)
            del self._objects[key]
            event_type = "DELETED"
        else:
            obj = new
            self._objects[key] = obj
            event_type = "ADDED" if old is None else "MODIFIED"
        obj["metadata"]["resourceVersion"] = str(self._rv)
        event = WatchEvent(self._rv, event_type, kind.group, kind.plural, obj, old)
        if len(self._events) >= self._event_log_size:
            self._expired_rv = self._events.popleft().rv
        self._events.append(event)
        for watcher in self._watchers:
            watcher.offer(event)
        if kind == CRDS:
            self._sync_crd(old, new)
        return obj

    def _server_fields(
        self, kind: KindInfo, obj: dict[str, Any], old: dict[str, Any] | None
    ) -> None:
        """Fields the real control plane's controllers would write."""
        if kind == CRDS:
            try:
                kinds_from_crd(obj)
            except InvalidCrdError as error:
                field_path, _, message = str(error).partition(": ")
                raise invalid(kind, obj["metadata"]["name"], field_path, message) from error
            obj["status"] = crd_status(obj, now_rfc3339(), (old or {}).get("status"))
        elif kind == NAMESPACES and old is None:
            obj.setdefault("spec", {"finalizers": ["kubernetes"]})
            obj["status"] = {"phase": "Active"}

    def _sync_crd(self, old: dict[str, Any] | None, new: dict[str, Any] | None) -> None:
        """(Un)register the kinds a CRD object serves; deleting a CRD deletes its objects."""
        before = kinds_from_crd(old) if old is not None else []
        after = kinds_from_crd(new) if new is not None else []
        for info in before:
            if info not in after:
                self._kinds.pop((info.group, info.version, info.plural), None)
        for info in after:
            self.register_kind(info)
        if new is None and before:
            gone = before[0]
            for key in [k for k in self._objects if k[:2] == (gone.group, gone.plural)]:
                self._commit(gone, key, None, self._objects[key], dry_run=False)
