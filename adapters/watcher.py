"""The worker's Kubernetes watch: a live edit reaches its drift loop in about a second.

One thread per claim kind that units of the authority have. It lists, then watches
all namespaces; when an object's content (spec, labels, annotations — not status)
changes, it signals ``drift:{space}:{unit}`` to check now. The drift loop decides
whether that is drift: our own applies show up here too, and are recognised there.

The worker starts it beside its pollers (``worker.py``); it is an adapter, not an
activity: Kubernetes events in, Temporal signals out (``client/loops.py``).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import threading
import time
from typing import Any

from temporalio.client import Client

from adapters.kube import KubeClient, KubeUnavailable, Resource
from authority.protocol import AuthorityStore
from client.loops import signal_drift
from domain.normalize import strip_server_fields

log = logging.getLogger("tributary.watcher")

REFRESH_SECONDS = 15
WATCH_SECONDS = 60
ObjectKey = tuple[str, str, str, str]  # apiVersion group, kind, namespace, name


def content_hash(obj: dict[str, Any]) -> str:
    """What the watch compares: the object without server-owned fields, hashed. Not
    the drift fingerprint (``DriftReport.fingerprint``, what drifted to which value)."""
    content = strip_server_fields(obj)
    return hashlib.sha256(json.dumps(content, sort_keys=True).encode()).hexdigest()


class ClaimWatcher:
    def __init__(
        self,
        store: AuthorityStore,
        kube: KubeClient,
        client: Client,
        task_queue: str,
        loop: asyncio.AbstractEventLoop,
    ) -> None:
        self.store = store
        self.kube = kube
        self.client = client
        self.task_queue = task_queue
        self.loop = loop
        self.stop_event = threading.Event()
        self.units: dict[ObjectKey, tuple[str, str]] = {}
        # What this worker applied last, per object: the baseline of a kind's first list
        # (a watch started by the apply may list only after an edit that follows it).
        self._applied: dict[ObjectKey, str] = {}
        self._namespaces: dict[tuple[str, str, int], str] = {}
        self._threads: dict[tuple[str, str], threading.Thread] = {}
        self._lock = threading.Lock()
        self._refresh_lock = threading.Lock()
        self._refreshed = 0.0
        self.signals = 0

    def start(self) -> None:
        threading.Thread(target=self._refresh_loop, name="claim-watch-refresh", daemon=True).start()

    def stop(self) -> None:
        self.stop_event.set()

    # ---- which objects belong to which units ---------------------------------------------

    def _refresh_loop(self) -> None:
        while not self.stop_event.is_set():
            try:
                self._refresh()
            except Exception as e:
                log.warning("watch refresh failed: %s", e)
            self.stop_event.wait(REFRESH_SECONDS)

    def _refresh(self) -> None:
        with self._refresh_lock:
            self._refresh_locked()

    def _refresh_locked(self) -> None:
        units: dict[ObjectKey, tuple[str, str]] = {}
        kinds: set[tuple[str, str]] = set()
        for space in self.store.list_spaces():
            for unit in self.store.list_units(space.name):
                if unit.state != "active":
                    continue
                namespace = self._namespace(space.name, unit.slug, unit.head_revision)
                group = unit.api_version.split("/")[0] if "/" in unit.api_version else ""
                # A unit's slug is its Claim's metadata.name (publish names units so:
                # DESIGN.md, the authoring repo contract): the watch finds a unit by its name.
                units[(group, unit.kind, namespace, unit.slug)] = (space.name, unit.slug)
                kinds.add((unit.api_version, unit.kind))
        with self._lock:
            # Objects noticed at apply time stay mapped even before the store lists them.
            self.units = {**self.units, **units}
            self._refreshed = time.monotonic()
        for kind in kinds:
            self._ensure_thread(kind)

    def _namespace(self, space: str, slug: str, revision: int) -> str:
        key = (space, slug, revision)
        if key not in self._namespaces:
            rev = self.store.get_revision(space, slug, revision)
            meta = (rev.data.get("metadata") if rev else None) or {}
            self._namespaces[key] = str(meta.get("namespace") or "default")
        return self._namespaces[key]

    def notice(self, res: Resource, obj: dict[str, Any], space: str, unit: str) -> None:
        """An object was just applied for a unit: map it and make sure its kind is watched."""
        meta = obj.get("metadata") or {}
        key: ObjectKey = (
            res.group,
            res.kind,
            str(meta.get("namespace") or "default"),
            str(meta.get("name")),
        )
        with self._lock:
            self.units[key] = (space, unit)
            self._applied[key] = content_hash(obj)
        self._ensure_thread((res.api_version, res.kind))

    def _ensure_thread(self, kind: tuple[str, str]) -> None:
        with self._lock:
            thread = self._threads.get(kind)
            if thread is not None and thread.is_alive():
                return
            thread = threading.Thread(
                target=self._watch_kind, args=kind, name=f"watch-{kind[1]}", daemon=True
            )
            self._threads[kind] = thread
        thread.start()

    # ---- watching ------------------------------------------------------------------------

    def _watch_kind(self, api_version: str, kind: str) -> None:
        seen: dict[ObjectKey, str] = {}
        backoff = 1.0
        while not self.stop_event.is_set():
            try:
                res = self.kube.resource(api_version, kind)
                if res is None:
                    self.stop_event.wait(REFRESH_SECONDS)
                    continue
                items, version = self.kube.list_kind(res)
                for obj in items:
                    self._observe(res, obj, seen, initial=True)
                backoff = 1.0
                while not self.stop_event.is_set():
                    for kind_event, obj in self.kube.watch_kind(
                        res, resource_version=version, timeout_seconds=WATCH_SECONDS
                    ):
                        version = str(obj.get("metadata", {}).get("resourceVersion") or version)
                        if kind_event != "BOOKMARK":
                            self._observe(res, obj, seen, initial=False)
                    # The server ended this watch (timeout or 410): list again if needed.
                    break
            except (KubeUnavailable, OSError) as e:
                log.info("watch of %s interrupted (%s); retrying in %.0fs", kind, e, backoff)
                self.stop_event.wait(backoff)
                backoff = min(backoff * 2, 30)
            except Exception as e:
                log.warning("watch of %s failed: %s", kind, e)
                self.stop_event.wait(backoff)
                backoff = min(backoff * 2, 30)

    def _observe(
        self, res: Resource, obj: dict[str, Any], seen: dict[ObjectKey, str], *, initial: bool
    ) -> None:
        meta = obj.get("metadata") or {}
        key: ObjectKey = (
            res.group,
            res.kind,
            str(meta.get("namespace") or "default"),
            str(meta.get("name")),
        )
        digest = content_hash(obj)
        before = seen.get(key)
        if before is None:
            with self._lock:
                before = self._applied.get(key)
        seen[key] = digest
        # A list compares with what the last watch saw, or with what was applied: an
        # edit made before the first list, or between two watches (timeout, 410, an
        # outage), shows only there. With neither, nothing to compare with (the loop
        # checks when it starts).
        if before == digest or (initial and before is None):
            return
        with self._lock:
            unit = self.units.get(key)
            stale = time.monotonic() - self._refreshed > 1.0
        if unit is None and stale:
            # Published moments ago: learn about it now rather than at the next refresh.
            self._refresh()
            with self._lock:
                unit = self.units.get(key)
        if unit is None:
            return
        self.signals += 1
        future = asyncio.run_coroutine_threadsafe(
            signal_drift(self.client, self.task_queue, unit[0], unit[1], "watch"), self.loop
        )
        try:
            future.result(timeout=30)
        except Exception as e:
            log.warning("could not signal drift %s/%s: %s", unit[0], unit[1], e)
