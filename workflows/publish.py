"""Arrow 1, publish: Git → authority.

``PublishRunWorkflow`` is what CI starts for one commit: it fetches the repo,
reads ``tributary.yaml`` and the policy bundle once, then runs one
``PublishWorkflow`` (``publish:{space}:{commit}``) per space. Spaces are
independent environments, like Argo CD applications; within a space a publish is
all or nothing.
"""

from __future__ import annotations

import asyncio
from datetime import timedelta

from temporalio import workflow
from temporalio.common import WorkflowIDReusePolicy
from temporalio.exceptions import (
    ActivityError,
    ApplicationError,
    ChildWorkflowError,
    WorkflowAlreadyStartedError,
)

with workflow.unsafe.imports_passed_through():
    from activities.authority import AuthorityActivities
    from activities.git import GitActivities
    from activities.policy import PolicyActivities
    from activities.render import RenderActivities
    from activities.temporal import TemporalActivities
    from client.contract import decided_type, error_info, search_attributes
    from domain import metrics
    from domain.apply import ApplyRequest, RequestAppliesInput, RequestApplyInput
    from domain.authority import (
        PolicyResult,
        SpaceSpec,
        SyncSettings,
        UnitChange,
        UnitStateChange,
    )
    from domain.gates import (
        GateReview,
        hold_for_gates,
        review_gates,
        seed_kinds,
        seed_namespaces,
    )
    from domain.naming import publish_id, publish_options
    from domain.policy import CheckObjectsInput, LoadBundleInput
    from domain.publish import (
        WRITE_ACTIONS,
        AwaitPublishInput,
        CommitInput,
        LoadProjectInput,
        PublishInput,
        PublishResult,
        PublishRunInput,
        PublishRunResult,
        RenderSpaceInput,
        SnapshotUnitsInput,
        SnapshotUnitsResult,
        SpacePlan,
        UnitOutcome,
        UnitVerdict,
        git_record,
        plan_space,
        to_apply,
    )
    from domain.repos import CheckoutInput, NewerCommitsInput
    from workflows import _options as opt

# A plan's unit as the result reports it: its verdict, without the data to write.
VERDICT_FIELDS = set(UnitVerdict.model_fields)

# Attaching to another run's publish of one space: it renders, checks and writes.
ATTACH_TIMEOUT = timedelta(hours=1)
ATTACH_HEARTBEAT = timedelta(seconds=30)


@workflow.defn(name="PublishRunWorkflow")
class PublishRunWorkflow:
    """One CI publish of one commit, fanned out to one PublishWorkflow per space."""

    def __init__(self) -> None:
        self._done: list[str] = []
        self._spaces: list[str] = []

    @workflow.query
    def progress(self) -> list[str]:
        """Spaces finished so far."""
        return list(self._done)

    @workflow.run
    async def run(self, inp: PublishRunInput) -> PublishRunResult:
        workflow.set_current_details(f"fetching `{inp.source.commit[:12]}`")
        info = await workflow.execute_activity_method(
            GitActivities.checkout,
            CheckoutInput(source=inp.source),
            start_to_close_timeout=opt.GIT_TIMEOUT,
            heartbeat_timeout=opt.GIT_HEARTBEAT,
            retry_policy=opt.RETRY,
            summary="fetch the commit",
        )
        loaded = await workflow.execute_activity_method(
            RenderActivities.load_project,
            LoadProjectInput(source=inp.source),
            start_to_close_timeout=opt.RENDER_TIMEOUT,
            retry_policy=opt.RETRY,
            summary="read tributary.yaml",
        )
        project = loaded.project
        unknown = [s for s in inp.spaces if s not in project.spaces]
        if unknown:
            raise ApplicationError(
                f"tributary.yaml: spaces: no space named {', '.join(map(repr, unknown))} "
                f"(known: {', '.join(project.spaces)})",
                type="BadInput",
                non_retryable=True,
            )
        self._spaces = list(inp.spaces or project.spaces)
        bundle = (
            await workflow.execute_activity_method(
                PolicyActivities.load_bundle,
                LoadBundleInput(
                    source=inp.source,
                    policies=project.policies,
                    schemas=project.schemas,
                    compositions=project.all_compositions(),
                ),
                start_to_close_timeout=opt.POLICY_TIMEOUT,
                retry_policy=opt.RETRY,
                summary="load schemas and policies",
            )
        ).bundle
        workflow.set_current_details(f"publishing {len(self._spaces)} spaces")

        # Equal ids mean equal work: the options are in the child id, so a child
        # already running under it (a run of this commit for another --space scope)
        # does exactly what this one would, and is attached to instead.
        options = publish_options(force=inp.force, apply=inp.apply, message=inp.message)

        async def one(space: str) -> PublishResult:
            child_id = publish_id(space, inp.source.commit, dry_run=inp.dry_run, options=options)
            try:
                result: PublishResult = await workflow.execute_child_workflow(
                    PublishWorkflow.run,
                    PublishInput(
                        source=inp.source,
                        ref=inp.ref,
                        space=space,
                        project=project,
                        bundle=bundle,
                        commit_info=info,
                        message=inp.message,
                        force=inp.force,
                        dry_run=inp.dry_run,
                        apply=inp.apply,
                    ),
                    id=child_id,
                    # A finished publish of this commit may run again: it re-plans and
                    # finds the commit published (nothing written). Children have no
                    # conflict policy: a running one is attached to below.
                    id_reuse_policy=WorkflowIDReusePolicy.ALLOW_DUPLICATE,
                    search_attributes=search_attributes(space),
                    static_summary=f"publish {space} @ {inp.source.commit[:12]}"
                    + (" (dry run)" if inp.dry_run else ""),
                )
            except WorkflowAlreadyStartedError:
                result = await self._attach(space, child_id)
            except ChildWorkflowError as e:
                result = PublishResult(space=space, workflow_id=child_id, error=error_info(e))
            self._done.append(space)
            return result

        results = await asyncio.gather(*(one(s) for s in self._spaces))
        workflow.set_current_details(_summary_table(list(results)))
        return PublishRunResult(
            commit=info.commit,
            ref=inp.ref,
            subject=info.subject,
            dry_run=inp.dry_run,
            spaces=list(results),
        )

    async def _attach(self, space: str, child_id: str) -> PublishResult:
        workflow.logger.info("attaching to %s, started by another run of this commit", child_id)
        try:
            return await workflow.execute_activity_method(
                TemporalActivities.await_publish,
                AwaitPublishInput(workflow_id=child_id),
                start_to_close_timeout=ATTACH_TIMEOUT,
                heartbeat_timeout=ATTACH_HEARTBEAT,
                retry_policy=opt.RETRY,
                summary=f"attach to {child_id}",
            )
        except ActivityError as e:
            return PublishResult(space=space, workflow_id=child_id, error=error_info(e))


@workflow.defn(name="PublishWorkflow")
class PublishWorkflow:
    """Publish one space's render of one commit into the authority."""

    def __init__(self) -> None:
        self._gates = GateReview()

    @workflow.run
    async def run(self, inp: PublishInput) -> PublishResult:
        space_cfg = inp.project.spaces[inp.space]
        workflow.set_current_details(f"rendering `{space_cfg.overlay}`")
        rendered = await workflow.execute_activity_method(
            RenderActivities.render_space,
            RenderSpaceInput(
                source=inp.source,
                space=inp.space,
                overlay=space_cfg.overlay,
                allow_remote=space_cfg.allow_remote,
            ),
            start_to_close_timeout=opt.RENDER_TIMEOUT,
            retry_policy=opt.RETRY,
            summary=f"kustomize {space_cfg.overlay}",
        )
        workflow.set_current_details("checking schemas and policies")
        checked = await workflow.execute_activity_method(
            PolicyActivities.check,
            CheckObjectsInput(
                bundle=inp.bundle,
                space=inp.space,
                environment=space_cfg.environment,
                origin=space_cfg.overlay,
                objects=rendered.objects,
            ),
            start_to_close_timeout=opt.POLICY_TIMEOUT,
            retry_policy=opt.RETRY,
            summary=f"check {len(rendered.objects)} objects",
        )
        spec = SpaceSpec(
            name=inp.space,
            environment=space_cfg.environment,
            approval=space_cfg.approval,
            drift=space_cfg.drift,
            drift_interval_seconds=space_cfg.drift_interval_seconds,
            labels={"environment": space_cfg.environment, **space_cfg.labels},
            repo=inp.source.repo,
            overlay=space_cfg.overlay,
            ignore=inp.project.ignore,
            policy=inp.bundle.for_folders(inp.project.compositions_of(inp.space)),
            sync=SyncSettings(
                debounce_seconds=inp.project.sync.debounce_seconds,
                author=inp.project.sync.author,
                base=inp.project.sync.base,
                message=inp.project.sync.message,
            ),
            # gates a new space starts with; an existing space keeps the authority's
            kinds=seed_kinds(inp.bundle),
            namespaces=seed_namespaces(rendered.objects),
        )
        by_slug = {u.slug: u for u in checked.units}
        attempt = 0
        while True:
            attempt += 1
            workflow.set_current_details("planning")
            snapshot = await workflow.execute_activity_method(
                AuthorityActivities.snapshot_units,
                SnapshotUnitsInput(
                    space=inp.space, slugs=sorted(by_slug), commit=inp.source.commit
                ),
                start_to_close_timeout=opt.AUTHORITY_TIMEOUT,
                retry_policy=opt.RETRY,
                summary="read heads and merge bases",
            )
            seen = snapshot.seen or (not inp.force and await self._superseded(inp, snapshot))
            plan = plan_space(
                checked.units,
                snapshot.units,
                force=inp.force,
                states=snapshot.states,
                seen=seen,
            )
            # The authority holds the gates: a commit that would loosen one is held.
            self._gates = review_gates(
                snapshot.gates, spec, {u.slug: u.data for u in checked.units}
            )
            plan = hold_for_gates(plan, self._gates, snapshot.units)
            if plan.blocked == "gates" and snapshot.gates is None and not inp.dry_run:
                # A new space held by its seeded gates is created with them (and no
                # units), so an admin can allow the kind with `tributary space set`.
                await workflow.execute_activity_method(
                    AuthorityActivities.commit,
                    CommitInput(changes=[], spaces=[spec]),
                    start_to_close_timeout=opt.AUTHORITY_TIMEOUT,
                    retry_policy=opt.RETRY,
                    summary="create the held space with its seeded gates",
                )
            if plan.blocked or inp.dry_run:
                return self._finish(inp, plan, written=False)
            if plan.seen:
                # A re-run of a commit already published here: nothing is written.
                result = self._finish(inp, plan, written=False)
                if inp.apply:
                    await self._request_applies(
                        inp, result, to_apply(plan, snapshot.units, inp.source.commit)
                    )
                return result
            changes = [
                UnitChange(
                    space=inp.space,
                    slug=u.unit,
                    expected_version=u.expected_version,
                    data=u.data or {},
                    description=f"CI: {inp.message or inp.commit_info.subject}",
                    source=WRITE_ACTIONS[u.action],
                    tags={
                        "commit": inp.source.commit,
                        "ref": inp.ref,
                        "repo": inp.source.repo,
                        "workflow_id": workflow.info().workflow_id,
                    },
                    author=inp.commit_info.author,
                    policy=PolicyResult(
                        warnings=by_slug[u.unit].warnings, policy_digest=inp.bundle.digest
                    ),
                    labels=u.labels,
                    idempotency_key=f"{workflow.info().workflow_id}/{u.unit}",
                )
                for u in plan.writes
            ]
            states = [
                UnitStateChange(space=inp.space, slug=u.unit, state="orphaned")
                for u in plan.units
                if u.action == "orphaned"
            ] + [
                UnitStateChange(space=inp.space, slug=u.unit, state="active")
                for u in plan.units
                if u.adopt
            ]
            git = git_record(inp.space, inp.source.commit, plan, checked.units, snapshot.units)
            workflow.set_current_details(f"writing {len(changes)} revisions")
            try:
                committed = await workflow.execute_activity_method(
                    AuthorityActivities.commit,
                    CommitInput(changes=changes, spaces=[spec], states=states, git=git),
                    start_to_close_timeout=opt.AUTHORITY_TIMEOUT,
                    retry_policy=opt.RETRY,
                    summary=f"write {len(changes)} revisions",
                )
            except ActivityError as e:
                if decided_type(e) == "StaleVersion" and attempt < opt.MAX_REPLANS:
                    workflow.logger.info("authority moved on during publish; re-planning")
                    continue
                raise
            revisions = {o.slug: o.revision for o in committed.outcomes}
            for u in plan.units:
                if u.unit in revisions:
                    u.revision = revisions[u.unit]
            result = self._finish(inp, plan, written=True)
            if inp.apply:
                await self._request_applies(
                    inp, result, to_apply(plan, snapshot.units, inp.source.commit)
                )
            return result

    async def _superseded(self, inp: PublishInput, snapshot: SnapshotUnitsResult) -> bool:
        """Whether a commit already published to this space descends from this one.

        CI for an older commit arriving late (never published here, so not ``seen``)
        would otherwise look like a Git change against the newer render and undo it.
        """
        bases = sorted(
            {
                u.base_commit
                for u in snapshot.units.values()
                if u.base_commit and u.base_commit != inp.source.commit
            }
        )
        if not bases:
            return False
        found = await workflow.execute_activity_method(
            GitActivities.newer_commits,
            NewerCommitsInput(source=inp.source, commits=bases),
            start_to_close_timeout=opt.GIT_TIMEOUT,
            retry_policy=opt.RETRY,
            summary="is a newer commit published already?",
        )
        return bool(found.newer)

    async def _request_applies(
        self, inp: PublishInput, result: PublishResult, units: list[str]
    ) -> None:
        """Arrow 2 for every unit this publish (or an earlier run of its commit) changed."""
        wanted = set(units)
        changed = [u for u in result.units if u.unit in wanted and u.revision]
        if not changed:
            return
        for u in changed:
            u.apply_request_id = str(workflow.uuid4())
        started = await workflow.execute_activity_method(
            TemporalActivities.request_applies,
            RequestAppliesInput(
                requests=[
                    RequestApplyInput(
                        space=inp.space,
                        unit=u.unit,
                        request=ApplyRequest(
                            revision=u.revision or 0,
                            requested_by=f"publish {inp.source.commit[:12]}",
                            request_ids=[u.apply_request_id],
                        ),
                    )
                    for u in changed
                ]
            ),
            start_to_close_timeout=opt.AUTHORITY_TIMEOUT,
            retry_policy=opt.RETRY,
            summary=f"request apply of {len(changed)} units",
        )
        for u, workflow_id in zip(changed, started.workflow_ids, strict=True):
            u.apply_workflow_id = workflow_id

    def _finish(self, inp: PublishInput, plan: SpacePlan, *, written: bool) -> PublishResult:
        result = PublishResult(
            space=inp.space,
            workflow_id=workflow.info().workflow_id,
            units=[
                UnitOutcome.model_validate(u.model_dump(include=VERDICT_FIELDS)) for u in plan.units
            ],
            blocked=plan.blocked,
            written=written,
            gate_reasons=self._gates.held_reasons(plan),
            gate_notes=self._gates.notes,
            seen=plan.seen,
        )
        workflow.set_current_details(_summary_table([result]))
        if not inp.dry_run:
            meter = workflow.metric_meter()
            for u in result.units:
                metrics.count(meter, metrics.PUBLISHES, {"space": inp.space, "action": u.action})
        return result


def _summary_table(results: list[PublishResult]) -> str:
    """Markdown for the Web UI's current details."""
    lines = ["| space | unit | action | revision |", "|---|---|---|---|"]
    for r in results:
        if r.error:
            lines.append(f"| {r.space} | — | error: {r.error.type} | — |")
        for u in r.units:
            lines.append(f"| {r.space} | {u.unit} | {u.action} | {u.revision or '—'} |")
    return "\n".join(lines)
