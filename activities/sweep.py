"""Batched drift detection (``SweepWorkflow``): judge a page of units in the worker.

Per page of units the authority is read once per space (units, drift records) and
once for the live revisions (``get_revisions``); the cluster is listed once per kind
and namespace for the Claims, and once per kind for the composites and managed
resources a Composition follows, each list paged (``limit`` and ``continue``). The
listings live for the sweep (keyed by its id, dropped after its last page), so a
sweep of 10,000 units lists each kind once instead of making 17 reads per unit.
The judgement itself is ``domain.sweep``. Units judged in sync are recorded in bulk;
the rest go back to the workflow, which signals their drift loops.

``covered`` is the drift loop's cheap wake-up: one row read instead of a check.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from datetime import UTC, datetime
from typing import Any

from temporalio import activity

from activities._errors import decided
from activities.drift import _schema
from adapters.aws import ManagedResourceObserver, ProviderNotSynced
from adapters.kube import KubeClient, KubeUnavailable, Resource
from authority.protocol import AuthorityStore
from domain.apply import readiness
from domain.authority import SpaceRecord, UnitRecord
from domain.composition import Composition, CompositionCache
from domain.drift import DriftRecord, comparable, managed_drift
from domain.errors import Rejected
from domain.sweep import (
    CoveredInput,
    CoveredResult,
    SweepJudgeInput,
    SweepJudgeResult,
    UnitFacts,
    Verdict,
    covered_for,
    judge_claim,
    precheck,
)

# Sweeps whose listings are kept at once (a scheduled and a manual one may overlap).
KEPT_SWEEPS = 2


def list_paged(
    kube: KubeClient, res: Resource, namespace: str | None, page_size: int
) -> tuple[list[dict[str, Any]], int]:
    """Every object of a kind (in ``namespace``, or the whole cluster), a page of
    ``page_size`` at a time; and how many requests that took. ``managedFields`` are
    dropped: the verdict never needs them, and they are most of a Claim's size."""
    out: list[dict[str, Any]] = []
    token = ""
    requests = 0
    while True:
        query = [("limit", str(page_size))]
        if token:
            query.append(("continue", token))
        _, body = kube.request("GET", res.path(None, namespace), query=query)
        requests += 1
        for item in body.get("items") or []:
            (item.get("metadata") or {}).pop("managedFields", None)
            out.append(item)
        token = str((body.get("metadata") or {}).get("continue") or "")
        if not token:
            return out, requests


class _Space:
    def __init__(
        self, record: SpaceRecord, units: list[UnitRecord], rows: list[DriftRecord]
    ) -> None:
        self.record = record
        self.units = {u.slug: u for u in units}
        self.rows = {r.unit: r for r in rows}
        self.schemas: dict[tuple[str, str], dict[str, Any] | None] = {}


class _Sweep:
    """What one sweep read once: spaces, listings. ``since``: rows written after it are
    newer than anything this sweep judged from, and never overwritten."""

    def __init__(self) -> None:
        self.since = datetime.now(UTC)
        self.spaces: dict[str, _Space | None] = {}
        self.objects: dict[tuple[str, str, str | None], dict[tuple[str, str], Any]] = {}
        self.lists = 0


class _ListedObserver(ManagedResourceObserver):
    """The observer, reading composites and managed resources from per-kind listings."""

    def __init__(self, kube: KubeClient, lookup: Any) -> None:
        super().__init__(kube)
        self._lookup = lookup

    def _get(self, api_version: str, kind: str, name: str) -> dict[str, Any] | None:
        found: dict[str, Any] | None = self._lookup(api_version, kind, None, name)
        return found


class SweepActivities:
    def __init__(self, store: AuthorityStore, kube: KubeClient) -> None:
        self.store = store
        self.kube = kube
        self._sweeps: OrderedDict[str, _Sweep] = OrderedDict()
        self._lock = threading.Lock()
        self._compositions = CompositionCache()

    def _sweep(self, sweep_id: str) -> _Sweep:
        with self._lock:
            if sweep_id not in self._sweeps:
                self._sweeps[sweep_id] = _Sweep()
                while len(self._sweeps) > KEPT_SWEEPS:
                    self._sweeps.popitem(last=False)
            return self._sweeps[sweep_id]

    def _done(self, sweep_id: str) -> None:
        with self._lock:
            self._sweeps.pop(sweep_id, None)

    @activity.defn(name="sweep.judge")
    @decided
    def judge(self, inp: SweepJudgeInput) -> SweepJudgeResult:
        """Judge the next page of active units; record those in sync, name the rest."""
        keys = self.store.list_unit_keys(inp.after, inp.limit)
        if not keys:
            self._done(inp.sweep_id)
            return SweepJudgeResult()
        sweep = self._sweep(inp.sweep_id)
        lists_before = sweep.lists
        result = SweepJudgeResult(units=len(keys), last=keys[-1])
        by_space: dict[str, list[str]] = {}
        for space, unit in keys:
            by_space.setdefault(space, []).append(unit)
        for space, units in by_space.items():
            verdicts = self._judge_space(sweep, space, units, inp.page_size)
            in_sync = {u: r for u, (v, r) in verdicts.items() if v == "in-sync" and r is not None}
            # The one writer of drift rows besides the drift loops (which record every
            # decision of theirs): the sweep judged these units itself, with the check's
            # own comparison, so it records that verdict, in bulk under its own id
            # instead of one loop task per unit. Only "in sync", and never over a
            # paused row, a state a loop owns, or a loop's newer row; every other
            # verdict goes back to the unit's loop.
            recorded = set(
                self.store.record_in_sync(
                    space,
                    in_sync,
                    sweep_id=inp.sweep_id,
                    checked_at=datetime.now(UTC),
                    unless_after=sweep.since,
                    cadence_seconds=inp.cadence_seconds,
                )
                if in_sync
                else []
            )
            for unit in units:
                verdict = verdicts[unit][0]
                if verdict == "in-sync" and unit not in recorded:
                    verdict = "due"  # its loop wrote meanwhile: the loop's word is newer
                result.verdicts[verdict] = result.verdicts.get(verdict, 0) + 1
                if verdict == "in-sync":
                    result.in_sync.setdefault(space, []).append(unit)
                    known = sweep.spaces.get(space)
                    if known is not None:
                        result.intervals[space] = known.record.drift_interval_seconds
                else:
                    result.signal.setdefault(space, []).append(unit)
            result.recorded += len(recorded)
            activity.heartbeat(result.units)
        result.lists = sweep.lists - lists_before
        return result

    def _space(self, sweep: _Sweep, name: str) -> _Space | None:
        if name not in sweep.spaces:
            record = self.store.get_space(name)
            sweep.spaces[name] = (
                None
                if record is None
                else _Space(record, self.store.list_units(name), self.store.list_drift(name))
            )
        return sweep.spaces[name]

    def _judge_space(
        self, sweep: _Sweep, space_name: str, units: list[str], page_size: int
    ) -> dict[str, tuple[Verdict, int | None]]:
        space = self._space(sweep, space_name)
        out: dict[str, tuple[Verdict, int | None]] = {}
        compare: list[UnitFacts] = []
        for unit in units:
            record = space.units.get(unit) if space else None
            if space is None or record is None:
                out[unit] = ("unjudged", None)  # created after this sweep read the space
                continue
            facts = UnitFacts(
                space=space_name,
                unit=unit,
                live_revision=record.live_revision,
                last_applied_revision=record.last_applied_revision,
                row=space.rows.get(unit),
            )
            early = precheck(facts)
            if early is not None:
                out[unit] = (early, None)
            else:
                compare.append(facts)
        if not compare or space is None:
            return out
        revisions = {
            r.unit: r
            for r in self.store.get_revisions(
                space_name, [(f.unit, f.live_revision or 0) for f in compare]
            )
        }
        compositions = self._compositions.of(space.record.policy)

        def lookup(
            api_version: str, kind: str, namespace: str | None, name: str
        ) -> dict[str, Any] | None:
            return self._lookup(sweep, api_version, kind, namespace, name, page_size)

        observer = _ListedObserver(self.kube, lookup)
        for facts in compare:
            rev = revisions.get(facts.unit)
            if rev is None:
                out[facts.unit] = ("unjudged", None)
                continue
            try:
                verdict = self._judge_unit(space, rev.data, lookup, observer, compositions)
            except (ProviderNotSynced, Rejected, KubeUnavailable):
                # The loop's own check reports this (failing, retried): not the sweep's call.
                verdict = "unjudged"
            out[facts.unit] = (verdict, facts.live_revision)
        return out

    def _judge_unit(
        self,
        space: _Space,
        authority: dict[str, Any],
        lookup: Any,
        observer: _ListedObserver,
        compositions: list[Composition],
    ) -> Verdict:
        api_version, kind = str(authority.get("apiVersion")), str(authority.get("kind"))
        meta = authority.get("metadata") or {}
        if self.kube.resource(api_version, kind) is None:
            return "unjudged"
        live = lookup(api_version, kind, meta.get("namespace") or "default", str(meta["name"]))
        key = (api_version, kind)
        if key not in space.schemas:
            space.schemas[key] = _schema(space.record.policy.xrds, authority)
        schema = space.schemas[key]
        ignore = space.record.ignore
        verdict = judge_claim(authority, live, ignore=ignore, schema=schema)
        if verdict != "in-sync" or not compositions or live is None:
            return verdict
        generation = int((live.get("metadata") or {}).get("generation") or 1)
        if readiness(live, generation).state != "ready":
            return verdict  # as the check: AWS lags a spec Crossplane has not reconciled
        observed = observer.observe(live, comparable(live, [], schema), compositions)
        fields = managed_drift(
            observed, wanted=comparable(authority, [], schema), ignore=ignore, claim_paths=set()
        )
        return "differs" if fields else "in-sync"

    def _lookup(
        self,
        sweep: _Sweep,
        api_version: str,
        kind: str,
        namespace: str | None,
        name: str,
        page_size: int,
    ) -> dict[str, Any] | None:
        res = self.kube.resource(api_version, kind)
        if res is None:
            return None
        scope = namespace if res.namespaced else None
        key = (api_version, kind, scope)
        if key not in sweep.objects:
            items, requests = list_paged(self.kube, res, scope, page_size)
            sweep.lists += requests
            sweep.objects[key] = {
                (str((o.get("metadata") or {}).get("namespace") or ""), o["metadata"]["name"]): o
                for o in items
            }
        found: dict[str, Any] | None = sweep.objects[key].get((scope or "", name))
        return found

    @activity.defn(name="drift.covered")
    @decided
    def covered(self, inp: CoveredInput) -> CoveredResult:
        """Whether a drift loop's timer may skip its check: a judgement within the
        interval (a sweep's or its own) found the unit in sync at its live revision."""
        unit = self.store.get_unit(inp.space, inp.unit)
        rows = self.store.list_drift(inp.space, inp.unit)
        row = rows[0] if rows else None
        left = covered_for(
            row,
            live_revision=unit.live_revision if unit and unit.state == "active" else None,
            now=datetime.now(UTC),
            interval_seconds=inp.interval_seconds,
            seen=inp.seen,
        )
        if left is None or row is None:
            return CoveredResult()
        return CoveredResult(sleep_seconds=left.total_seconds(), checked_at=row.checked_at)
