"""Changes made in the authority rather than in Git: bulk ``set``, ``rollback``, and
a space's gates (``tributary space show|set``).

Both meet the same gates as a publish — the schemas and policies stored with the
space by its last publish — and write through the same optimistic-concurrency
commit, re-planning if a unit moved on meanwhile.
"""

from __future__ import annotations

from typing import Any

from temporalio import workflow
from temporalio.exceptions import ActivityError, ApplicationError

with workflow.unsafe.imports_passed_through():
    from activities.authority import AuthorityActivities
    from activities.policy import PolicyActivities
    from activities.temporal import TemporalActivities
    from client.contract import decided_type
    from domain.authority import PolicyResult, UnitChange
    from domain.change import (
        BulkSetInput,
        BulkSetResult,
        ChangedUnit,
        FindUnitsInput,
        FindUnitsResult,
        GetRevisionInput,
        LiveObjectsInput,
        LiveObjectsResult,
        RollbackInput,
        RollbackResult,
        SpaceGatesInput,
        SpaceGatesResult,
    )
    from domain.diff import diff, json_equal
    from domain.errors import BadInput
    from domain.paths import identity_problem, parse_path, set_path
    from domain.policy import CheckObjectsInput
    from domain.publish import CommitInput, RenderedUnit
    from domain.sync import RequestSyncInput
    from workflows import _options as opt


def _bad_input(e: BadInput) -> ApplicationError:
    return ApplicationError(e.message, type="BadInput", non_retryable=True)


async def _find(inp: FindUnitsInput) -> FindUnitsResult:
    result: FindUnitsResult = await workflow.execute_activity_method(
        AuthorityActivities.find_units,
        inp,
        start_to_close_timeout=opt.AUTHORITY_TIMEOUT,
        retry_policy=opt.RETRY,
        summary="find units",
    )
    return result


async def _check(
    found: FindUnitsResult, space: str, origin: str, objects: list[dict[str, Any]]
) -> list[RenderedUnit]:
    gate = found.gates[space]
    checked = await workflow.execute_activity_method(
        PolicyActivities.check,
        CheckObjectsInput(
            bundle=gate.policy,
            space=space,
            environment=gate.environment,
            origin=origin,
            objects=objects,
        ),
        start_to_close_timeout=opt.POLICY_TIMEOUT,
        retry_policy=opt.RETRY,
        summary=f"check {len(objects)} objects in {space}",
    )
    return checked.units


async def _commit(changes: list[UnitChange]) -> dict[tuple[str, str], int]:
    committed = await workflow.execute_activity_method(
        AuthorityActivities.commit,
        CommitInput(changes=changes),
        start_to_close_timeout=opt.AUTHORITY_TIMEOUT,
        retry_policy=opt.RETRY,
        summary=f"write {len(changes)} revisions",
    )
    return {(o.space, o.slug): o.revision for o in committed.outcomes}


async def _request_sync(spaces: list[str], reason: str) -> None:
    """The authority changed outside Git: the sync PR arrow takes it from here."""
    await workflow.execute_activity_method(
        TemporalActivities.request_sync,
        RequestSyncInput(spaces=spaces, reason=reason),
        start_to_close_timeout=opt.AUTHORITY_TIMEOUT,
        retry_policy=opt.RETRY,
        summary="ask for a sync PR",
    )


@workflow.defn(name="BulkSetWorkflow")
class BulkSetWorkflow:
    """``tributary set``: one new revision per matching unit, source ``bulk``."""

    @workflow.run
    async def run(self, inp: BulkSetInput) -> BulkSetResult:
        try:
            paths = [(parse_path(a.path), a.value) for a in inp.assignments]
        except BadInput as e:
            raise _bad_input(e) from e
        for path, _ in paths:
            problem = identity_problem(path)
            if problem:
                raise ApplicationError(problem, type="BadInput", non_retryable=True)
        attempt = 0
        while True:
            attempt += 1
            workflow.set_current_details("finding units")
            found = await _find(FindUnitsInput(spaces=inp.spaces, where=inp.where))
            planned: list[tuple[ChangedUnit, UnitChange | None]] = []
            for space in inp.spaces:
                heads = [u for u in found.units if u.space == space]
                new_data: dict[str, dict[str, Any]] = {}
                for head in heads:
                    data = head.data
                    try:
                        for path, value in paths:
                            data = set_path(data, path, value)
                    except BadInput as e:
                        raise ApplicationError(
                            f"{space}/{head.slug}: {e.message}", type="BadInput", non_retryable=True
                        ) from e
                    new_data[head.slug] = data
                changed = [h for h in heads if not json_equal(h.data, new_data[h.slug])]
                checked = (
                    {
                        u.slug: u
                        for u in await _check(
                            found, space, "tributary set", [new_data[h.slug] for h in changed]
                        )
                    }
                    if changed
                    else {}
                )
                for head in heads:
                    if head not in changed:
                        planned.append(
                            (
                                ChangedUnit(
                                    space=space,
                                    unit=head.slug,
                                    action="unchanged",
                                    revision=head.head_revision,
                                ),
                                None,
                            )
                        )
                        continue
                    check = checked[head.slug]
                    outcome = ChangedUnit(
                        space=space,
                        unit=head.slug,
                        action="denied" if check.violations else "changed",
                        revision=head.head_revision if check.violations else None,
                        changed_fields=[c.path for c in diff(head.data, new_data[head.slug])],
                        violations=check.violations,
                        warnings=check.warnings,
                    )
                    change = UnitChange(
                        space=space,
                        slug=head.slug,
                        expected_version=head.version,
                        data=new_data[head.slug],
                        description=inp.message,
                        source="bulk",
                        tags={
                            "workflow_id": workflow.info().workflow_id,
                            "change": ", ".join(f"{a.path}={a.value!r}" for a in inp.assignments),
                        },
                        author=inp.author,
                        policy=PolicyResult(
                            warnings=check.warnings, policy_digest=found.gates[space].policy.digest
                        ),
                        idempotency_key=f"{workflow.info().workflow_id}/{space}/{head.slug}",
                    )
                    planned.append((outcome, change))
            units = [u for u, _ in planned]
            changes = [c for u, c in planned if c is not None and u.action == "changed"]
            if inp.dry_run or any(u.action == "denied" for u in units) or not changes:
                return BulkSetResult(units=units, written=False)
            workflow.set_current_details(f"writing {len(changes)} revisions")
            try:
                revisions = await _commit(changes)
            except ActivityError as e:
                if decided_type(e) == "StaleVersion" and attempt < opt.MAX_REPLANS:
                    continue
                raise
            for u in units:
                if u.action == "changed":
                    u.revision = revisions[(u.space, u.unit)]
            await _request_sync(sorted({c.space for c in changes}), "set")
            workflow.set_current_details(f"wrote {len(changes)} revisions")
            return BulkSetResult(units=units, written=True)


@workflow.defn(name="RollbackWorkflow")
class RollbackWorkflow:
    """``tributary rollback``: a new head revision with an old revision's data."""

    @workflow.run
    async def run(self, inp: RollbackInput) -> RollbackResult:
        attempt = 0
        while True:
            attempt += 1
            found = await _find(FindUnitsInput(spaces=[inp.space], unit=inp.unit))
            head = found.units[0]
            target = await workflow.execute_activity_method(
                AuthorityActivities.get_revision,
                GetRevisionInput(space=inp.space, unit=inp.unit, number=inp.to),
                start_to_close_timeout=opt.AUTHORITY_TIMEOUT,
                retry_policy=opt.RETRY,
                summary=f"read revision {inp.to}",
            )
            # A head a capture conflicts with is not "unchanged": rolling back to it is
            # the operator's decision to keep its values, as a new revision.
            if json_equal(target.data, head.data) and not head.conflict:
                return RollbackResult(
                    space=inp.space,
                    unit=inp.unit,
                    revision=head.head_revision,
                    action="unchanged",
                    to=inp.to,
                )
            check = (await _check(found, inp.space, f"revision {inp.to}", [target.data]))[0]
            if check.violations:
                raise ApplicationError(
                    f"rollback of {inp.space}/{inp.unit} to revision {inp.to} is denied by policy: "
                    + "; ".join(check.violations),
                    type="PolicyDenied",
                    non_retryable=True,
                )
            change = UnitChange(
                space=inp.space,
                slug=inp.unit,
                expected_version=head.version,
                data=target.data,
                description=inp.message or f"Rollback to revision {inp.to}",
                source="rollback",
                tags={"rollback_to": str(inp.to), "workflow_id": workflow.info().workflow_id},
                author=inp.author,
                policy=PolicyResult(
                    warnings=check.warnings, policy_digest=found.gates[inp.space].policy.digest
                ),
                idempotency_key=f"{workflow.info().workflow_id}/{head.version}",
            )
            try:
                revisions = await _commit([change])
            except ActivityError as e:
                if decided_type(e) == "StaleVersion" and attempt < opt.MAX_REPLANS:
                    continue
                raise
            await _request_sync([inp.space], "rollback")
            return RollbackResult(
                space=inp.space,
                unit=inp.unit,
                revision=revisions[(inp.space, inp.unit)],
                action="rolled-back",
                to=inp.to,
                changed_fields=[c.path for c in diff(head.data, target.data)],
                warnings=check.warnings,
            )


@workflow.defn(name="RenderLiveWorkflow")
class RenderLiveWorkflow:
    """``tributary render --space S --live``: the space's live revisions, read through the
    worker so an Argo CD CMP sidecar needs only Temporal (no authority credential)."""

    @workflow.run
    async def run(self, inp: LiveObjectsInput) -> LiveObjectsResult:
        result: LiveObjectsResult = await workflow.execute_activity_method(
            AuthorityActivities.live_objects,
            inp,
            start_to_close_timeout=opt.AUTHORITY_TIMEOUT,
            retry_policy=opt.RETRY,
            summary=f"read the live revisions of {inp.space}",
        )
        return result


@workflow.defn(name="SpaceGatesWorkflow")
class SpaceGatesWorkflow:
    """``tributary space show|set``: read or change a space's gates in the authority.

    A workflow rather than a direct write so the CLI needs only Temporal, and so
    every change of a gate — who, how asserted, what changed — is in history.
    """

    @workflow.run
    async def run(self, inp: SpaceGatesInput) -> SpaceGatesResult:
        update = inp.update
        result: SpaceGatesResult = await workflow.execute_activity_method(
            AuthorityActivities.space_gates,
            inp,
            start_to_close_timeout=opt.AUTHORITY_TIMEOUT,
            retry_policy=opt.RETRY,
            summary=f"set the gates of {inp.space}" if update else f"read the gates of {inp.space}",
        )
        if update is not None:
            workflow.set_current_details(
                f"**{inp.space}** gates set by {update.by} ({update.asserted or 'unasserted'}): "
                + (", ".join(result.changed) or "nothing changed")
            )
        return result
