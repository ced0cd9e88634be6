"""Authority activities: read unit state, write revisions."""

from __future__ import annotations

import time

from temporalio import activity

from activities._errors import decided
from authority.confighub import ConfigHubStore
from authority.protocol import AuthorityStore
from domain.apply import (
    ApplyContextInput,
    ApplyContextResult,
    ApplyGates,
    RecordAppliedInput,
    RecordAppliedResult,
    RecordApprovalInput,
    RecordApprovalResult,
    is_precious,
)
from domain.authority import GIT_SOURCES, Approval, UnitStateChange
from domain.change import (
    FindUnitsInput,
    FindUnitsResult,
    GetRevisionInput,
    GetRevisionResult,
    LiveObjectsInput,
    LiveObjectsResult,
    SpaceGate,
    SpaceGatesInput,
    SpaceGatesResult,
    UnitHead,
)
from domain.drift import (
    CountDriftInput,
    CountDriftResult,
    ListUnitsPageInput,
    ListUnitsPageResult,
    UnitKey,
    capture_conflict,
)
from domain.errors import NotFound
from domain.gates import live_stream
from domain.publish import (
    CommitInput,
    CommitResult,
    SnapshotUnitsInput,
    SnapshotUnitsResult,
    UnitSnapshot,
)


class AuthorityActivities:
    def __init__(self, store: AuthorityStore) -> None:
        self.store = store

    @activity.defn(name="authority.snapshot_units")
    @decided
    def snapshot_units(self, inp: SnapshotUnitsInput) -> SnapshotUnitsResult:
        """Head and merge base (Git's last render) of every named unit that exists."""
        wanted = set(inp.slugs)
        every = self.store.list_units(inp.space)
        units = [u for u in every if u.slug in wanted]
        heads = {
            r.unit: r
            for r in self.store.get_revisions(
                inp.space, sorted((u.slug, u.head_revision) for u in units)
            )
        }
        bases = self.store.git_bases(inp.space)
        out: dict[str, UnitSnapshot] = {}
        for u in units:
            head = heads[u.slug]
            base = bases.get(u.slug)
            out[u.slug] = UnitSnapshot(
                slug=u.slug,
                version=u.version,
                head_revision=u.head_revision,
                head_data=head.data,
                base_data=base.data if base else None,
                base_commit=base.commit if base else "",
                head_commit=head.tags.get("commit", "") if head.source in GIT_SOURCES else "",
                last_applied_revision=u.last_applied_revision,
                state=u.state,
            )
        space = self.store.get_space(inp.space)
        return SnapshotUnitsResult(
            units=out,
            states={u.slug: u.state for u in every},
            gates=space.gates() if space is not None else None,
            seen=bool(inp.commit) and self.store.is_published(inp.space, inp.commit),
        )

    @activity.defn(name="authority.commit")
    @decided
    def commit(self, inp: CommitInput) -> CommitResult:
        return CommitResult(
            outcomes=self.store.commit(
                inp.changes, spaces=inp.spaces, states=inp.states, git=inp.git
            )
        )

    @activity.defn(name="authority.find_units")
    @decided
    def find_units(self, inp: FindUnitsInput) -> FindUnitsResult:
        """Units of the named spaces whose labels match ``where``, with their heads."""
        heads: list[UnitHead] = []
        gates: dict[str, SpaceGate] = {}
        for name in inp.spaces:
            space = self.store.get_space(name)
            if space is None:
                raise NotFound(f"space {name!r} does not exist in the authority")
            gates[name] = SpaceGate(space=name, environment=space.environment, policy=space.policy)
            units = [
                u
                for u in self.store.list_units(name)
                if u.state == "active"
                and (inp.unit is None or u.slug == inp.unit)
                and all(u.labels.get(k) == v for k, v in inp.where.items())
            ]
            if inp.unit is not None and not units:
                raise NotFound(f"unit {name}/{inp.unit} does not exist in the authority")
            revisions = {
                r.unit: r
                for r in self.store.get_revisions(name, [(u.slug, u.head_revision) for u in units])
            }
            heads.extend(
                UnitHead(
                    space=name,
                    slug=u.slug,
                    version=u.version,
                    head_revision=u.head_revision,
                    data=revisions[u.slug].data,
                    labels=u.labels,
                    conflict=capture_conflict(
                        name, u.slug, u.head_revision, revisions[u.slug].tags
                    ),
                )
                for u in units
            )
        return FindUnitsResult(units=heads, gates=gates)

    @activity.defn(name="authority.get_revision")
    @decided
    def get_revision(self, inp: GetRevisionInput) -> GetRevisionResult:
        rev = self.store.get_revision(inp.space, inp.unit, inp.number)
        if rev is None:
            raise NotFound(f"unit {inp.space}/{inp.unit} has no revision {inp.number}")
        return GetRevisionResult(data=rev.data, source=rev.source, description=rev.description)

    @activity.defn(name="authority.apply_context")
    @decided
    def apply_context(self, inp: ApplyContextInput) -> ApplyContextResult:
        """What the apply gates need to know about one revision."""
        space = self.store.get_space(inp.space)
        unit = self.store.get_unit(inp.space, inp.unit)
        if space is None or unit is None:
            raise NotFound(f"unit {inp.space}/{inp.unit} does not exist in the authority")
        rev = self.store.get_revision(inp.space, inp.unit, inp.revision)
        if rev is None:
            raise NotFound(f"unit {inp.space}/{inp.unit} has no revision {inp.revision}")
        group = str(rev.data.get("apiVersion", "")).split("/")[0]
        kind = rev.data.get("kind")
        xrds = [
            xrd
            for docs in space.policy.xrds.values()
            for xrd in docs
            if (xrd.get("spec") or {}).get("group") == group
            and kind
            in (
                ((xrd.get("spec") or {}).get("claimNames") or {}).get("kind"),
                ((xrd.get("spec") or {}).get("names") or {}).get("kind"),
            )
        ]
        composites = {
            (str(spec.get("group")), str((spec.get("names") or {}).get("kind")))
            for spec in ((x.get("spec") or {}) for x in xrds)
        }
        compositions = [
            doc
            for docs in space.policy.compositions.values()
            for doc in docs
            if (
                str(
                    ((doc.get("spec") or {}).get("compositeTypeRef") or {}).get("apiVersion")
                ).split("/")[0],
                str(((doc.get("spec") or {}).get("compositeTypeRef") or {}).get("kind")),
            )
            in composites
        ]
        return ApplyContextResult(
            gates=ApplyGates(
                kinds=space.kinds,
                namespaces=space.namespaces,
                destination=space.destination,
                actuator=space.actuator,
                argocd_app=space.argocd_app,
            ),
            data=rev.data,
            violations=rev.policy.violations,
            approval=space.approval,
            author=rev.author,
            approvals=rev.approvals,
            precious=is_precious(rev.data),
            head_revision=unit.head_revision,
            xrds=xrds,
            confighub=isinstance(self.store, ConfigHubStore),
            compositions=compositions,
            conflict=capture_conflict(inp.space, inp.unit, inp.revision, rev.tags),
        )

    @activity.defn(name="authority.record_approval")
    @decided
    def record_approval(self, inp: RecordApprovalInput) -> RecordApprovalResult:
        rev = self.store.record_approval(
            inp.space,
            inp.unit,
            inp.revision,
            Approval(
                by=inp.by,
                asserted=inp.asserted,
                at=inp.at,
                comment=inp.comment,
                action=inp.action,
                gate=inp.gate,
            ),
        )
        return RecordApprovalResult(approved_by=[a.by for a in rev.approvals])

    @activity.defn(name="authority.space_gates")
    @decided
    def space_gates(self, inp: SpaceGatesInput) -> SpaceGatesResult:
        """Read a space's gates, or change them (``tributary space set``)."""
        changed: list[str] = []
        if inp.update is not None:
            space, changed = self.store.set_space_gates(inp.update)
        else:
            found = self.store.get_space(inp.space)
            if found is None:
                known = ", ".join(s.name for s in self.store.list_spaces()) or "none yet"
                raise NotFound(f"space {inp.space!r} does not exist (known: {known})")
            space = found
        return SpaceGatesResult(
            space=space.name, environment=space.environment, gates=space.gates(), changed=changed
        )

    @activity.defn(name="authority.live_objects")
    @decided
    def live_objects(self, inp: LiveObjectsInput) -> LiveObjectsResult:
        """The space's live revisions as its CMP renders them (deleted units left out)."""
        if self.store.get_space(inp.space) is None:
            known = ", ".join(s.name for s in self.store.list_spaces()) or "none yet"
            raise NotFound(f"space {inp.space!r} does not exist (known: {known})")
        units = [u for u in self.store.list_units(inp.space) if u.state != "deleted"]
        live = [u for u in units if u.live_revision is not None]
        revisions = self.store.get_revisions(
            inp.space, [(u.slug, u.live_revision) for u in live if u.live_revision is not None]
        )
        found = {r.unit: r.data for r in revisions}
        pairs = [(u.slug, found[u.slug]) for u in live if u.slug in found]
        return LiveObjectsResult(
            space=inp.space,
            objects=live_stream(inp.space, pairs),
            units=sorted(slug for slug, _ in pairs),
            not_live=sorted(u.slug for u in units if u.live_revision is None),
        )

    @activity.defn(name="authority.record_applied")
    @decided
    def record_applied(self, inp: RecordAppliedInput) -> RecordAppliedResult:
        try:
            unit = self.store.record_applied(inp.space, inp.unit, inp.revision, live=inp.live)
        except NotFound:
            if inp.state != "deleted":
                raise
            # Retried after ConfigHub deleted the unit (its authority deletes units, the
            # embedded store marks them): the store's delete is idempotent, and says
            # NotFound of a unit it never had.
            self.store.commit(
                [], states=[UnitStateChange(space=inp.space, slug=inp.unit, state="deleted")]
            )
            return RecordAppliedResult(live_revision=None, last_applied_revision=None)
        if inp.live and (unit.live_revision or 0) > inp.revision:
            # A capture (or a newer apply) got there first: the store keeps the newer
            # live revision, and the next drift check compares the cluster with it.
            activity.logger.info(
                "%s/%s: revision %d applied, live stays at the newer revision %d",
                inp.space,
                inp.unit,
                inp.revision,
                unit.live_revision,
            )
        if inp.state:
            self.store.commit(
                [], states=[UnitStateChange(space=inp.space, slug=inp.unit, state=inp.state)]
            )
        return RecordAppliedResult(
            live_revision=unit.live_revision, last_applied_revision=unit.last_applied_revision
        )

    @activity.defn(name="authority.list_units_page")
    @decided
    def list_units_page(self, inp: ListUnitsPageInput) -> ListUnitsPageResult:
        after = (inp.after.space, inp.after.unit) if inp.after else None
        keys = self.store.list_unit_keys(after, inp.limit)
        return ListUnitsPageResult(units=[UnitKey(space=s, unit=u) for s, u in keys])

    @activity.defn(name="authority.count_drift")
    @decided
    def count_drift(self, inp: CountDriftInput) -> CountDriftResult:
        """Wait (heartbeating) until a sweep's checks have all reported, then count."""
        deadline = time.monotonic() + inp.timeout_seconds
        while True:
            counts = self.store.count_drift(inp.sweep_id)
            done = sum(counts.values())
            activity.heartbeat(done)
            if done >= inp.expected or time.monotonic() > deadline:
                return CountDriftResult(counts=counts, complete=done >= inp.expected)
            time.sleep(0.5)
