"""Drift activities: compare what runs with the authority; capture it as a revision."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from temporalio import activity

from activities._errors import decided
from activities.policy import check_objects
from adapters.aws import ManagedResourceObserver
from adapters.kube import FIELD_MANAGER, KubeClient
from authority.protocol import AuthorityStore
from domain.apply import gate_for, readiness, standing_approval
from domain.authority import PolicyResult, RevisionRecord, UnitChange
from domain.composition import CompositionCache
from domain.drift import (
    CaptureInput,
    CaptureReconcileInput,
    CaptureReconcileResult,
    CaptureResult,
    DriftCheckInput,
    DriftCheckResult,
    DriftField,
    DriftPauseInput,
    DriftRecord,
    DriftRecordInput,
    DriftRecordResult,
    DriftReport,
    TagCaptureInput,
    TagCaptureResult,
    captured_data,
    changed_at,
    check_row,
    comparable,
    kubernetes_drift,
    managed_drift,
)
from domain.errors import BadInput, NotFound
from domain.normalize import RECONCILE_ANNOTATION
from domain.policy import CheckObjectsInput
from domain.project import ApprovalMode
from domain.schema import SchemaSet, schemas_from_xrd


class DriftActivities:
    def __init__(
        self,
        store: AuthorityStore,
        kube: KubeClient,
        managed: ManagedResourceObserver | None = None,
    ) -> None:
        self.store = store
        self.kube = kube
        self.managed = managed or ManagedResourceObserver(kube)
        self._compositions = CompositionCache()

    @activity.defn(name="drift.check")
    @decided
    def check(self, inp: DriftCheckInput) -> DriftCheckResult:
        """Compare what runs with the unit's live revision. Read-only: the drift loop
        records what it decides (``domain.drift.decide``, ``check_row``)."""
        result = self._check(inp)
        now = datetime.now(UTC)  # when it finished reading, as the row always said
        result = result.model_copy(update={"checked_at": now})
        capturing = result.state == "drifted" and result.mode == "capture" and result.claim_data
        if inp.record and result.state not in ("inactive", "paused") and not capturing:
            # A loop run started before "drift-one-owner" (workflows/drift.py) records
            # nothing of its own for what a check saw: the check writes it, as it did.
            self.store.record_drift(check_row(inp.space, inp.unit, inp.sweep_id, result, now))
        return result

    @activity.defn(name="drift.set_paused")
    @decided
    def set_paused(self, inp: DriftPauseInput) -> DriftRecordResult:
        """Keep pause in the authority: a loop restarted by a watch or a sweep reads it."""
        self.store.set_drift_paused(inp.space, inp.unit, inp.paused)
        return DriftRecordResult()

    @activity.defn(name="drift.record")
    @decided
    def record(self, inp: DriftRecordInput) -> DriftRecordResult:
        """Record what the drift loop decided: what a check saw (in sync, drifted, an
        apply in flight), paused, reverting, reverted, failing, failed. ("captured" is
        written by ``capture``, in the transaction of the captured revision.)"""
        self.store.record_drift(inp.record)
        return DriftRecordResult()

    def _check(self, inp: DriftCheckInput) -> DriftCheckResult:
        space = self.store.get_space(inp.space)
        unit = self.store.get_unit(inp.space, inp.unit)
        if space is None or unit is None:
            raise NotFound(f"unit {inp.space}/{inp.unit} does not exist in the authority")
        rows = self.store.list_drift(inp.space, inp.unit)
        base = DriftCheckResult(
            state="in-sync",
            live_revision=unit.live_revision,
            head_revision=unit.head_revision,
            expected_version=unit.version,
            mode=space.drift,
            interval_seconds=space.drift_interval_seconds,
            paused=any(r.paused for r in rows),
        )
        if unit.state != "active":
            return base.model_copy(update={"state": "inactive"})
        if base.paused and not inp.force:
            return base.model_copy(update={"state": "paused"})
        if unit.live_revision is None:
            return base.model_copy(update={"state": "not-applied"})
        live_rev = self.store.get_revision(inp.space, inp.unit, unit.live_revision)
        assert live_rev is not None  # a unit's live revision always exists
        authority = live_rev.data
        schema = _schema(space.policy.xrds, authority)
        res = self.kube.resource(str(authority.get("apiVersion")), str(authority.get("kind")))
        meta = authority.get("metadata", {})
        obj = (
            self.kube.get(res, meta["name"], meta.get("namespace") or "default")
            if res is not None
            else None
        )
        if obj is None:
            gone = DriftField(
                path="(object)",
                authority="present",
                live="missing",
                manager="",
                capturable=False,
            )
            return _drifted(base, [gone], authority)
        fields = kubernetes_drift(authority, obj, ignore=space.ignore, schema=schema)
        if fields and unit.last_applied_revision not in (None, unit.live_revision):
            applied = self.store.get_revision(inp.space, inp.unit, unit.last_applied_revision)
            if applied and not kubernetes_drift(
                applied.data, obj, ignore=space.ignore, schema=schema
            ):
                # The cluster runs a newer revision that is not Ready yet: not drift.
                return base.model_copy(update={"state": "applying"})
        if fields and unit.head_revision not in (unit.live_revision, unit.last_applied_revision):
            # The apply of the head reached the cluster but its record did not (a worker
            # killed in between): the cluster runs exactly a head that may run. Not drift,
            # or the head would be captured a second time. A head nobody approved that
            # turns up in the cluster is still drift: the gate was bypassed.
            head = self.store.get_revision(inp.space, inp.unit, unit.head_revision)
            if (
                head is not None
                and _may_run(space.approval, head)
                and not kubernetes_drift(head.data, obj, ignore=space.ignore, schema=schema)
            ):
                return base.model_copy(update={"state": "applying"})
        compositions = self._compositions.of(space.policy)
        generation = int((obj.get("metadata") or {}).get("generation") or 1)
        if compositions and readiness(obj, generation).state == "ready":
            # AWS is comparable only once Crossplane has reconciled the Claim's
            # current spec; before that it lags behind by design, which is not drift.
            # The observer sees the whole claim (defaults in, nothing ignored); what it
            # reports under an ignored path is then dropped, like on the Kubernetes side.
            live_claim = comparable(obj, [], schema)
            wanted = comparable(authority, [], schema)
            # The sweep judges with the same function (domain/sweep.py), so a unit it
            # records in sync is one this check would call in sync.
            fields += managed_drift(
                self.managed.observe(obj, live_claim, compositions),
                wanted=wanted,
                ignore=space.ignore,
                claim_paths={f.path for f in fields},
            )
        if not fields:
            return base
        managed = (obj.get("metadata") or {}).get("managedFields") or []
        changed_paths = [f.path for f in fields if f.source == "kubernetes-live"]
        base = base.model_copy(update={"changed_at": changed_at(changed_paths, managed)})
        return _drifted(base, fields, authority)

    @activity.defn(name="drift.capture")
    @decided
    def capture(self, inp: CaptureInput) -> CaptureResult:
        """Write what runs as a revision and mark it live (DESIGN.md "Capture")."""
        space = self.store.get_space(inp.space)
        if space is None:
            raise NotFound(f"space {inp.space!r} does not exist in the authority")
        try:
            [checked] = check_objects(
                CheckObjectsInput(
                    bundle=space.policy,
                    space=inp.space,
                    environment=space.environment,
                    origin="live state",
                    objects=[inp.data],
                )
            )
            policy = PolicyResult(
                violations=checked.violations,
                warnings=checked.warnings,
                policy_digest=space.policy.digest,
            )
        except BadInput as e:
            # What runs is recorded even when it breaks the schema; it just can't be
            # applied again until fixed.
            policy = PolicyResult(violations=[e.message], policy_digest=space.policy.digest)
        # Live at once (it is what runs), but not "applied": the cluster's Claim may
        # not say it yet (an AWS-side edit) until a sync apply lands. A pending head is
        # re-based onto it (or kept, with the conflict recorded); nothing is applied.
        return self.store.capture(
            UnitChange(
                space=inp.space,
                slug=inp.unit,
                expected_version=inp.expected_version,
                data=inp.data,
                description=inp.description,
                source=inp.source,
                tags=inp.tags,
                author=inp.author,
                policy=policy,
                idempotency_key=inp.idempotency_key,
            ),
            expected_live=inp.live_revision,
            record=DriftRecord(
                space=inp.space,
                unit=inp.unit,
                state="captured",
                checked_at=datetime.now(UTC),
                fields=inp.fields,
                message=inp.description,
                sweep_id=inp.sweep_id,
            ),
        )

    @activity.defn(name="drift.request_reconcile")
    @decided
    def request_reconcile(self, inp: CaptureReconcileInput) -> CaptureReconcileResult:
        """Ask Crossplane to reconcile the Claim now, as a changed annotation does.

        Re-applying identical content bumps no generation, so a revert of an AWS-side
        edit would otherwise wait for Crossplane's poll interval.
        """
        rev = self.store.get_revision(inp.space, inp.unit, inp.revision)
        if rev is None:
            raise NotFound(f"unit {inp.space}/{inp.unit} has no revision {inp.revision}")
        res = self.kube.resource(str(rev.data.get("apiVersion")), str(rev.data.get("kind")))
        meta = rev.data.get("metadata", {})
        if res is None:
            return CaptureReconcileResult(requested=False)
        status, _ = self.kube.request(
            "PATCH",
            res.path(meta["name"], meta.get("namespace") or "default"),
            query=[("fieldManager", FIELD_MANAGER)],
            body={"metadata": {"annotations": {RECONCILE_ANNOTATION: inp.token}}},
            content_type="application/merge-patch+json",
        )
        return CaptureReconcileResult(requested=status != 404)

    # Registered by its first name: loops' histories schedule "drift.classify".
    @activity.defn(name="drift.classify")
    @decided
    def tag_capture(self, inp: TagCaptureInput) -> TagCaptureResult:
        """Tag a capture after the fact: the watch captured the edit before the operator
        could say it was break-glass for an incident."""
        rev = self.store.get_revision(inp.space, inp.unit, inp.revision)
        if rev is None or rev.source not in ("drift-capture", "break-glass"):
            raise NotFound(f"revision {inp.revision} of {inp.space}/{inp.unit} is not a capture")
        self.store.classify_revision(
            inp.space, inp.unit, inp.revision, source=inp.source, tags=inp.tags
        )
        return TagCaptureResult(revision=inp.revision)


def _drifted(
    base: DriftCheckResult, fields: list[DriftField], authority: dict[str, Any]
) -> DriftCheckResult:
    report = DriftReport(fields=fields)
    capturable = [f for f in fields if f.capturable]
    return base.model_copy(
        update={
            "state": "drifted",
            "fields": fields,
            "claim_data": captured_data(authority, capturable) if capturable else None,
            "fingerprint": report.fingerprint(),
        }
    )


def _schema(xrds: dict[str, list[dict[str, Any]]], obj: dict[str, Any]) -> dict[str, Any] | None:
    schemas = SchemaSet(
        [s for path, docs in xrds.items() for d in docs for s in schemas_from_xrd(d, path)]
    )
    found = schemas.find(str(obj.get("apiVersion")), str(obj.get("kind")))
    return found.schema_ if found else None


def _may_run(mode: ApprovalMode, revision: RevisionRecord) -> bool:
    """Whether an apply may put ``revision`` into the cluster: its policies passed and its
    gate is open (domain/apply.py decides gates for the apply workflow too)."""
    if revision.policy.violations:
        return False
    gate = gate_for(mode, "apply", precious=False)
    return not gate or bool(standing_approval(gate, "apply", revision.approvals, revision.author))
