"""PublishWorkflow on the time-skipping server with every real activity.

Real git remotes on disk, real ``kubectl kustomize``, real Rego (regopy), and the
embedded store on SQLite and PostgreSQL.
"""

from __future__ import annotations

import asyncio
import threading
import uuid
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from temporalio import activity
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from activities.authority import AuthorityActivities
from activities.temporal import TemporalActivities
from adapters.kube import KubeClient
from adapters.source import SourceCache
from authority.sql import SqlStore
from domain.authority import UnitChange
from domain.naming import publish_options
from domain.paths import parse_path, set_path
from domain.publish import (
    AwaitPublishInput,
    PublishResult,
    PublishRunInput,
    SnapshotUnitsInput,
    SnapshotUnitsResult,
)
from domain.repos import SourceRef
from starter.applying import follow
from starter.gitref import resolve
from tests.conftest import Sandbox
from tests.support import HANG, AuthoringRepo, set_patch_value
from tests.workflows.helpers import actions, publish, publish_failure, snapshot
from worker import WORKFLOWS, activities, build_worker
from workflows.publish import PublishRunWorkflow

DEV_EAST = "infra/claims/overlays/dev-east/kustomization.yaml"
PROD_EAST = "infra/claims/overlays/prod-east/kustomization.yaml"
ORDERS_PROD_DB = "deploy/envs/production/database.yaml"
ORDERS_PROD_QUEUE = "deploy/envs/production/queue.yaml"


def authority_edit(store: SqlStore, space: str, unit: str, **fields: Any) -> int:
    """A change made in the authority, outside Git (as an operator would)."""
    current = store.get_unit(space, unit)
    assert current is not None
    data = store.get_revision(space, unit, current.head_revision).data  # type: ignore[union-attr]
    for path, value in fields.items():
        data = set_path(data, parse_path(path.replace("__", ".")), value)
    [outcome] = store.commit(
        [
            UnitChange(
                space=space,
                slug=unit,
                expected_version=current.version,
                data=data,
                description="operator edit",
                source="operator",
            )
        ]
    )
    return outcome.revision


def head(store: SqlStore, space: str, unit: str) -> dict[str, Any]:
    u = store.get_unit(space, unit)
    assert u is not None
    rev = store.get_revision(space, unit, u.head_revision)
    assert rev is not None
    return rev.data


async def test_first_publish_creates_one_revision_per_unit(
    env: WorkflowEnvironment, worker: Worker, store: SqlStore, messagewall: AuthoringRepo
) -> None:
    result = await publish(env, worker, messagewall)

    assert result.commit == messagewall.head
    assert result.subject == "messagewall: initial"
    assert actions(result) == {
        "messagewall-dev-east": ("published", 1),
        "messagewall-dev-west": ("published", 1),
        "messagewall-prod-east": ("published", 1),
        "messagewall-prod-west": ("published", 1),
    }
    assert all(s.written and s.error is None for s in result.spaces)
    [rev] = store.list_revisions("messagewall-prod-east", "messagewall-prod-east")
    assert rev.source == "ci"
    assert rev.description == "CI: messagewall: initial"
    assert rev.author == "Dana Developer <dana@example.com>"
    assert rev.tags["commit"] == messagewall.head
    assert rev.tags["ref"] == "main"
    assert rev.tags["workflow_id"] == f"publish:messagewall-prod-east:{messagewall.head}"
    assert rev.data["spec"]["lambdaMemory"] == 256
    unit = store.get_unit("messagewall-prod-east", "messagewall-prod-east")
    assert unit is not None
    assert (unit.head_revision, unit.git_revision, unit.version) == (1, 1, 1)
    assert unit.labels["environment"] == "prod"
    space = store.get_space("messagewall-prod-east")
    assert space is not None
    assert (space.environment, space.approval, space.drift) == ("prod", "required", "capture")
    assert space.policy.commit == messagewall.head
    assert "platform/policies/claims.rego" in space.policy.modules


async def test_second_app_with_strategic_merge_patches(
    env: WorkflowEnvironment, worker: Worker, store: SqlStore, orders: AuthoringRepo
) -> None:
    result = await publish(env, worker, orders)

    assert actions(result) == {
        "staging-orders-db": ("published", 1),
        "staging-orders-queue": ("published", 1),
        "production-orders-db": ("published", 1),
        "production-orders-queue": ("published", 1),
    }
    db = head(store, "orders-production", "production-orders-db")
    assert db["kind"] == "DatabaseClaim"
    assert db["spec"]["multiAZ"] is True
    assert db["spec"]["storageGB"] == 200
    queue = head(store, "orders-production", "production-orders-queue")
    assert queue["apiVersion"] == "messaging.acme.io/v1"


async def test_rerun_on_the_same_commit_writes_nothing(
    env: WorkflowEnvironment, worker: Worker, store: SqlStore, messagewall: AuthoringRepo
) -> None:
    await publish(env, worker, messagewall)
    before = snapshot(store)

    again = await publish(env, worker, messagewall)

    assert set(actions(again).values()) == {("unchanged", 1)}
    assert snapshot(store) == before


async def test_git_change_becomes_the_new_head(
    env: WorkflowEnvironment, worker: Worker, store: SqlStore, messagewall: AuthoringRepo
) -> None:
    await publish(env, worker, messagewall)
    messagewall.edit(DEV_EAST, lambda t: set_patch_value(t, "/spec/lambdaMemory", "512"))
    commit = messagewall.commit("dev-east: 512 MB")

    result = await publish(env, worker, messagewall)

    dev_east = next(s for s in result.spaces if s.space == "messagewall-dev-east")
    assert [(u.action, u.revision, u.changed_fields) for u in dev_east.units] == [
        ("published", 2, ["spec.lambdaMemory"])
    ]
    assert actions(result)["messagewall-dev-west"] == ("unchanged", 1)
    assert (
        head(store, "messagewall-dev-east", "messagewall-dev-east")["spec"]["lambdaMemory"] == 512
    )
    rev = store.get_revision("messagewall-dev-east", "messagewall-dev-east", 2)
    assert rev is not None
    assert (rev.source, rev.tags["commit"], rev.description) == (
        "ci",
        commit,
        "CI: dev-east: 512 MB",
    )


async def test_authority_ahead_when_only_the_authority_changed(
    env: WorkflowEnvironment, worker: Worker, store: SqlStore, messagewall: AuthoringRepo
) -> None:
    await publish(env, worker, messagewall)
    authority_edit(store, "messagewall-prod-east", "messagewall-prod-east", spec__lambdaTimeout=60)
    before = snapshot(store)

    result = await publish(env, worker, messagewall, spaces=["messagewall-prod-east"])

    [unit] = result.spaces[0].units
    assert (unit.action, unit.revision, unit.changed_fields) == (
        "authority-ahead",
        2,
        ["spec.lambdaTimeout"],
    )
    assert snapshot(store) == before


async def test_disjoint_changes_are_merged(
    env: WorkflowEnvironment, worker: Worker, store: SqlStore, messagewall: AuthoringRepo
) -> None:
    await publish(env, worker, messagewall)
    authority_edit(store, "messagewall-prod-east", "messagewall-prod-east", spec__lambdaTimeout=60)
    messagewall.edit(PROD_EAST, lambda t: set_patch_value(t, "/spec/lambdaMemory", "512"))
    messagewall.commit("prod-east: 512 MB")

    result = await publish(env, worker, messagewall, spaces=["messagewall-prod-east"])

    [unit] = result.spaces[0].units
    assert (unit.action, unit.revision) == ("merged", 3)
    spec = head(store, "messagewall-prod-east", "messagewall-prod-east")["spec"]
    assert (spec["lambdaMemory"], spec["lambdaTimeout"]) == (512, 60)
    rev = store.get_revision("messagewall-prod-east", "messagewall-prod-east", 3)
    assert rev is not None
    assert rev.source == "ci-merged"
    # The merge base is Git's render at this commit, stored as such — not the merge.
    base = store.git_bases("messagewall-prod-east")["messagewall-prod-east"]
    assert base.commit == messagewall.head
    assert (base.data["spec"]["lambdaMemory"], base.data["spec"]["lambdaTimeout"]) == (512, 30)


async def test_after_a_merge_the_authority_side_survives_later_publishes(
    env: WorkflowEnvironment, worker: Worker, store: SqlStore, messagewall: AuthoringRepo
) -> None:
    """Issue 9, defect 1: with the merge as base, Git's render looked like a Git change
    that dropped the authority's field, and the next publish overwrote it."""
    await publish(env, worker, messagewall)
    authority_edit(store, "messagewall-prod-east", "messagewall-prod-east", spec__lambdaTimeout=60)
    messagewall.edit(PROD_EAST, lambda t: set_patch_value(t, "/spec/lambdaMemory", "512"))
    messagewall.commit("prod-east: 512 MB")
    merged = await publish(env, worker, messagewall, spaces=["messagewall-prod-east"])
    assert actions(merged) == {"messagewall-prod-east": ("merged", 3)}
    before = snapshot(store, units_only=True)

    again = await publish(env, worker, messagewall, spaces=["messagewall-prod-east"])
    messagewall.edit(DEV_EAST, lambda t: set_patch_value(t, "/spec/lambdaMemory", "512"))
    messagewall.commit("dev-east: 512 MB (prod-east renders as before)")
    later = await publish(env, worker, messagewall, spaces=["messagewall-prod-east"])

    for result in (again, later):
        [unit] = result.spaces[0].units
        assert (unit.action, unit.revision, unit.changed_fields) == (
            "authority-ahead",
            3,
            ["spec.lambdaTimeout"],
        )
    assert snapshot(store, units_only=True) == before
    spec = head(store, "messagewall-prod-east", "messagewall-prod-east")["spec"]
    assert (spec["lambdaMemory"], spec["lambdaTimeout"]) == (512, 60)


async def test_rerunning_an_older_commit_after_a_newer_one_writes_nothing(
    env: WorkflowEnvironment, worker: Worker, store: SqlStore, messagewall: AuthoringRepo
) -> None:
    first = messagewall.head
    await publish(env, worker, messagewall)
    messagewall.edit(PROD_EAST, lambda t: set_patch_value(t, "/spec/lambdaMemory", "512"))
    messagewall.commit("prod-east: 512 MB")
    await publish(env, worker, messagewall)
    before = snapshot(store)

    old = await publish(env, worker, messagewall, ref=first)

    assert actions(old)["messagewall-prod-east"] == ("unchanged", 2)
    assert {a for a, _ in actions(old).values()} == {"unchanged"}
    assert all(s.seen and not s.written for s in old.spaces)
    assert snapshot(store) == before


async def test_ci_of_an_older_commit_arriving_late_writes_nothing(
    env: WorkflowEnvironment, worker: Worker, store: SqlStore, messagewall: AuthoringRepo
) -> None:
    """C1 was never published here: CI for C2 ran first. C1 is not a re-run, but an
    ancestor of what Git last published, so it must not undo C2."""
    first = messagewall.head
    messagewall.edit(PROD_EAST, lambda t: set_patch_value(t, "/spec/lambdaMemory", "512"))
    messagewall.commit("prod-east: 512 MB")
    await publish(env, worker, messagewall, spaces=["messagewall-prod-east"])
    before = snapshot(store)

    late = await publish(env, worker, messagewall, ref=first, spaces=["messagewall-prod-east"])

    assert actions(late) == {"messagewall-prod-east": ("unchanged", 1)}
    assert late.spaces[0].seen
    assert snapshot(store) == before
    # --force is an explicit overwrite, not CI arriving late: it plans as usual.
    forced = await publish(
        env, worker, messagewall, ref=first, spaces=["messagewall-prod-east"], force=True
    )
    assert actions(forced) == {"messagewall-prod-east": ("published", 2)}


async def test_agreement_moves_the_base_so_a_later_authority_revert_is_kept(
    env: WorkflowEnvironment, worker: Worker, store: SqlStore, messagewall: AuthoringRepo
) -> None:
    """Both sides set 512 (unchanged): the base becomes Git's 512, so when the operator
    later goes back to 256 that is an authority change, not a Git one to re-publish."""
    await publish(env, worker, messagewall)
    authority_edit(store, "messagewall-prod-east", "messagewall-prod-east", spec__lambdaMemory=512)
    messagewall.edit(PROD_EAST, lambda t: set_patch_value(t, "/spec/lambdaMemory", "512"))
    messagewall.commit("prod-east: 512 MB, as the operator did")
    agreed = await publish(env, worker, messagewall, spaces=["messagewall-prod-east"])
    assert actions(agreed) == {"messagewall-prod-east": ("unchanged", 2)}
    authority_edit(store, "messagewall-prod-east", "messagewall-prod-east", spec__lambdaMemory=256)
    messagewall.edit(DEV_EAST, lambda t: set_patch_value(t, "/spec/lambdaMemory", "512"))
    messagewall.commit("dev-east: 512 MB")

    result = await publish(env, worker, messagewall, spaces=["messagewall-prod-east"])

    assert actions(result) == {"messagewall-prod-east": ("authority-ahead", 3)}
    assert (
        head(store, "messagewall-prod-east", "messagewall-prod-east")["spec"]["lambdaMemory"] == 256
    )


async def test_same_change_on_both_sides_is_agreement(
    env: WorkflowEnvironment, worker: Worker, store: SqlStore, messagewall: AuthoringRepo
) -> None:
    await publish(env, worker, messagewall)
    authority_edit(store, "messagewall-prod-east", "messagewall-prod-east", spec__lambdaMemory=512)
    messagewall.edit(PROD_EAST, lambda t: set_patch_value(t, "/spec/lambdaMemory", "512"))
    messagewall.commit("prod-east: 512 MB, as the operator did")
    before = snapshot(store, units_only=True)

    result = await publish(env, worker, messagewall, spaces=["messagewall-prod-east"])

    assert actions(result) == {"messagewall-prod-east": ("unchanged", 2)}
    assert snapshot(store, units_only=True) == before


async def test_conflict_lists_fields_and_writes_nothing(
    env: WorkflowEnvironment, worker: Worker, store: SqlStore, messagewall: AuthoringRepo
) -> None:
    await publish(env, worker, messagewall)
    authority_edit(store, "messagewall-prod-east", "messagewall-prod-east", spec__lambdaMemory=512)
    messagewall.edit(PROD_EAST, lambda t: set_patch_value(t, "/spec/lambdaMemory", "1024"))
    messagewall.commit("prod-east: 1 GB")
    before = snapshot(store)

    result = await publish(env, worker, messagewall, spaces=["messagewall-prod-east"])

    [space] = result.spaces
    [unit] = space.units
    assert (unit.action, unit.conflict_fields) == ("conflict", ["spec.lambdaMemory"])
    assert (space.blocked, space.written) == ("conflict", False)
    assert snapshot(store) == before


async def test_force_overwrites_the_authority(
    env: WorkflowEnvironment, worker: Worker, store: SqlStore, messagewall: AuthoringRepo
) -> None:
    await publish(env, worker, messagewall)
    authority_edit(store, "messagewall-prod-east", "messagewall-prod-east", spec__lambdaMemory=512)
    messagewall.edit(PROD_EAST, lambda t: set_patch_value(t, "/spec/lambdaMemory", "1024"))
    messagewall.commit("prod-east: 1 GB")

    result = await publish(env, worker, messagewall, spaces=["messagewall-prod-east"], force=True)

    assert actions(result) == {"messagewall-prod-east": ("forced", 3)}
    rev = store.get_revision("messagewall-prod-east", "messagewall-prod-east", 3)
    assert rev is not None
    assert (rev.source, rev.data["spec"]["lambdaMemory"]) == ("ci-forced", 1024)
    base = store.git_bases("messagewall-prod-east")["messagewall-prod-east"]
    assert (base.commit, base.data) == (messagewall.head, rev.data)


async def test_a_unit_rendered_again_while_the_authority_is_ahead_is_adopted(
    env: WorkflowEnvironment, worker: Worker, store: SqlStore, orders: AuthoringRepo
) -> None:
    """Orphaned, then rendered again with nothing for Git to write (the authority is
    ahead): the unit is Git's again — before the fix it stayed orphaned for good."""
    queue = "production-orders-queue"
    await publish(env, worker, orders, spaces=["orders-production"])
    authority_edit(store, "orders-production", queue, spec__visibilityTimeoutSeconds=120)
    original = orders.read(ORDERS_PROD_QUEUE)
    orders.write(ORDERS_PROD_QUEUE, original + "$patch: delete\n")
    orders.commit("production: no queue")
    gone = await publish(env, worker, orders, spaces=["orders-production"])
    assert actions(gone)[queue] == ("orphaned", None)
    assert store.get_unit("orders-production", queue).state == "orphaned"  # type: ignore[union-attr]
    orders.write(ORDERS_PROD_QUEUE, original)
    orders.commit("production: the queue is back")

    back = await publish(env, worker, orders, spaces=["orders-production"])

    assert actions(back)[queue] == ("authority-ahead", 2)
    unit = store.get_unit("orders-production", queue)
    assert unit is not None
    assert (unit.state, unit.head_revision) == ("active", 2)


async def test_policy_denial_writes_nothing_in_that_space(
    env: WorkflowEnvironment, worker: Worker, store: SqlStore, messagewall: AuthoringRepo
) -> None:
    messagewall.edit(PROD_EAST, lambda t: set_patch_value(t, "/spec/lambdaMemory", "128"))
    messagewall.edit(DEV_EAST, lambda t: set_patch_value(t, "/spec/lambdaMemory", "2048"))
    messagewall.commit("too little memory for prod")

    result = await publish(env, worker, messagewall)

    by_space = {s.space: s for s in result.spaces}
    prod = by_space["messagewall-prod-east"]
    assert (prod.blocked, prod.written) == ("denied", False)
    [unit] = prod.units
    assert unit.action == "denied"
    assert unit.violations == [
        "ServerlessEventAppClaim/messagewall-prod-east: spec.lambdaMemory is 128; "
        "prod claims need at least 256"
    ]
    assert store.get_space("messagewall-prod-east") is None
    assert store.list_units("messagewall-prod-east") == []
    # Spaces are independent environments: the others published, warnings recorded.
    assert actions(result)["messagewall-prod-west"] == ("published", 1)
    dev = by_space["messagewall-dev-east"].units[0]
    assert dev.action == "published"
    assert any("lambdaMemory is 2048" in w for w in dev.warnings)
    rev = store.get_revision("messagewall-dev-east", "messagewall-dev-east", 1)
    assert rev is not None
    assert rev.policy.warnings == dev.warnings


async def test_one_denied_unit_holds_back_the_whole_space(
    env: WorkflowEnvironment, worker: Worker, store: SqlStore, orders: AuthoringRepo
) -> None:
    await publish(env, worker, orders)
    orders.edit(ORDERS_PROD_DB, lambda t: t.replace("multiAZ: true", "multiAZ: false"))
    orders.edit(
        "deploy/envs/production/queue.yaml",
        lambda t: t.replace("visibilityTimeoutSeconds: 60", "visibilityTimeoutSeconds: 90"),
    )
    orders.commit("production: single-AZ database, longer visibility")
    before = snapshot(store)

    result = await publish(env, worker, orders, spaces=["orders-production"])

    assert actions(result) == {
        "production-orders-db": ("denied", 1),
        "production-orders-queue": ("held", 1),
    }
    assert snapshot(store) == before


async def test_dry_run_plans_but_writes_nothing(
    env: WorkflowEnvironment, worker: Worker, store: SqlStore, messagewall: AuthoringRepo
) -> None:
    result = await publish(env, worker, messagewall, dry_run=True)

    assert result.dry_run
    assert {a for a, _ in actions(result).values()} == {"published"}
    assert all(not s.written for s in result.spaces)
    assert store.list_spaces() == []


async def test_stale_version_is_replanned(
    env: WorkflowEnvironment,
    store: SqlStore,
    cache: SourceCache,
    executor: ThreadPoolExecutor,
    messagewall: AuthoringRepo,
) -> None:
    """An authority write landing between read and write makes the workflow re-plan."""
    real = AuthorityActivities(store)
    raced: list[str] = []

    @activity.defn(name="authority.snapshot_units")
    def snapshot_then_race(inp: SnapshotUnitsInput) -> SnapshotUnitsResult:
        result = real.snapshot_units(inp)
        if result.units and not raced:
            # A real write by someone else, after our read and before our write.
            raced.append("once")
            authority_edit(store, inp.space, "messagewall-prod-east", spec__lambdaTimeout=60)
        return result

    await publish_with(env, store, cache, executor, messagewall)  # first publish, no race yet
    raced.clear()
    messagewall.edit(PROD_EAST, lambda t: set_patch_value(t, "/spec/lambdaMemory", "512"))
    messagewall.commit("prod-east: 512 MB")
    task_queue = f"tq-{uuid.uuid4()}"
    acts = [
        a
        for a in activities(store, cache, KubeClient(), env.client, task_queue)
        if a.__name__ != "snapshot_units"
    ]
    async with Worker(
        env.client,
        task_queue=task_queue,
        workflows=list(WORKFLOWS),
        activities=[*acts, snapshot_then_race],
        activity_executor=executor,
    ) as w:
        result = await publish(env, w, messagewall, spaces=["messagewall-prod-east"])

    assert raced == ["once"]
    assert actions(result) == {"messagewall-prod-east": ("merged", 3)}
    spec = head(store, "messagewall-prod-east", "messagewall-prod-east")["spec"]
    assert (spec["lambdaMemory"], spec["lambdaTimeout"]) == (512, 60)


async def publish_with(
    env: WorkflowEnvironment,
    store: SqlStore,
    cache: SourceCache,
    executor: ThreadPoolExecutor,
    repo: AuthoringRepo,
) -> None:
    async with build_worker(env.client, f"tq-{uuid.uuid4()}", store, cache, executor) as w:
        await publish(env, w, repo, spaces=["messagewall-prod-east"])


# ---- workflow ids reflect what a run does (issue 9, defect 7) ------------------------


async def test_two_runs_of_one_commit_with_different_scopes_share_the_space_publish(
    env: WorkflowEnvironment,
    store: SqlStore,
    cache: SourceCache,
    executor: ThreadPoolExecutor,
    messagewall: AuthoringRepo,
) -> None:
    """Run A publishes prod-east; run B (every space, same options) meets A's child
    ``publish:messagewall-prod-east:{commit}`` still running and attaches to it instead
    of failing on the id (an uncaught WorkflowAlreadyStartedError before the fix)."""
    real = AuthorityActivities(store)
    in_snapshot, attached = threading.Event(), threading.Event()
    task_queue = f"tq-{uuid.uuid4()}"
    temporal = TemporalActivities(env.client, task_queue)

    @activity.defn(name="authority.snapshot_units")
    def held_snapshot(inp: SnapshotUnitsInput) -> SnapshotUnitsResult:
        if inp.space == "messagewall-prod-east" and not in_snapshot.is_set():
            in_snapshot.set()  # run A's child is now running
            attached.wait(timeout=HANG)  # until run B attaches (or, before the fix, never)
        return real.snapshot_units(inp)

    @activity.defn(name="temporal.await_publish")
    async def noticed_attach(inp: AwaitPublishInput) -> PublishResult:
        attached.set()
        return await temporal.await_publish(inp)

    replaced = {"snapshot_units", "await_publish"}
    acts = [
        a
        for a in activities(store, cache, KubeClient(), env.client, task_queue)
        if a.__name__ not in replaced
    ]
    url, commit = resolve(messagewall.url, "main")
    async with Worker(
        env.client,
        task_queue=task_queue,
        workflows=list(WORKFLOWS),
        activities=[*acts, held_snapshot, noticed_attach],
        activity_executor=executor,
    ) as w:
        run_a = await env.client.start_workflow(
            PublishRunWorkflow.run,
            PublishRunInput(
                source=SourceRef(repo=url, commit=commit),
                ref="main",
                spaces=["messagewall-prod-east"],
            ),
            id=f"publish-run-test-{uuid.uuid4()}",
            task_queue=w.task_queue,
        )
        assert await asyncio.to_thread(in_snapshot.wait, HANG)
        run_b = await env.client.start_workflow(
            PublishRunWorkflow.run,
            PublishRunInput(source=SourceRef(repo=url, commit=commit), ref="main"),
            id=f"publish-run-test-{uuid.uuid4()}",
            task_queue=w.task_queue,
        )
        result_b = await asyncio.wait_for(run_b.result(), timeout=HANG)
        result_a = await asyncio.wait_for(run_a.result(), timeout=HANG)

    assert attached.is_set()
    child = f"publish:messagewall-prod-east:{commit}"
    [a_prod] = result_a.spaces
    b_prod = next(s for s in result_b.spaces if s.space == "messagewall-prod-east")
    assert (a_prod.workflow_id, b_prod.workflow_id) == (child, child)
    assert actions(result_a) == {"messagewall-prod-east": ("published", 1)}
    assert set(actions(result_b).values()) == {("published", 1)}
    assert all(s.error is None for s in result_b.spaces)
    assert len(store.list_revisions("messagewall-prod-east", "messagewall-prod-east")) == 1


@pytest.mark.parametrize("store_url", ["sqlite"], indirect=True)
async def test_a_retry_with_apply_applies_what_the_run_without_it_published(
    env: WorkflowEnvironment,
    cluster_worker: Worker,
    store: SqlStore,
    sandbox: Sandbox,
    messagewall: AuthoringRepo,
) -> None:
    """Before the fix the retry attached to the run without ``--apply`` (same id) and,
    run again, found nothing changed: exit 0, nothing applied."""
    space = "messagewall-dev-east"
    first = await publish(env, cluster_worker, messagewall, spaces=[space])
    assert actions(first) == {space: ("published", 1)}

    retry = await publish(env, cluster_worker, messagewall, spaces=[space], apply=True)

    [unit] = retry.spaces[0].units
    assert (unit.action, unit.revision) == ("unchanged", 1)
    assert retry.spaces[0].workflow_id == (
        f"publish:{space}:{messagewall.head}:{publish_options(apply=True)}"
    )
    assert unit.apply_workflow_id == f"apply:{space}:{space}"
    outcome = await follow(env.client, unit.apply_workflow_id, unit.apply_request_id)
    assert (outcome.revision, outcome.state) == (1, "ready")
    applied = store.get_unit(space, space)
    assert applied is not None
    assert (applied.last_applied_revision, applied.live_revision) == (1, 1)

    # Applied now: a further retry requests nothing.
    again = await publish(env, cluster_worker, messagewall, spaces=[space], apply=True)
    assert [u.apply_workflow_id for u in again.spaces[0].units] == [""]


# ---- bad input: a clear error naming file/object/field, and nothing written ---------


async def test_unknown_space_fails_and_writes_nothing(
    env: WorkflowEnvironment, worker: Worker, store: SqlStore, messagewall: AuthoringRepo
) -> None:
    kind, message = await publish_failure(
        env,
        worker,
        SourceRef(repo=messagewall.url, commit=messagewall.head),
        spaces=["messagewall-staging"],
    )
    assert kind == "BadInput"
    assert "tributary.yaml: spaces: no space named 'messagewall-staging'" in message
    assert store.list_spaces() == []


async def test_commit_missing_from_the_repo(
    env: WorkflowEnvironment, worker: Worker, store: SqlStore, messagewall: AuthoringRepo
) -> None:
    kind, message = await publish_failure(
        env, worker, SourceRef(repo=messagewall.url, commit="0" * 40)
    )
    assert kind == "BadInput"
    assert f"commit {'0' * 40} is not in the repository" in message
    assert store.list_spaces() == []


async def test_path_that_is_not_a_repository(
    env: WorkflowEnvironment, worker: Worker, store: SqlStore, tmp_path: Any
) -> None:
    kind, message = await publish_failure(
        env, worker, SourceRef(repo=(tmp_path / "nothing").as_uri(), commit="1" * 40)
    )
    assert kind == "BadInput"
    assert "cannot fetch" in message
    assert store.list_spaces() == []


BAD_CONFIGS = {
    "missing": (None, "tributary.yaml: not found at the root of the repository"),
    "malformed": ("spaces: [unclosed\n", "tributary.yaml:2:1: malformed YAML"),
    "invalid field": (
        "spaces:\n  a:\n    overlay: x\n    environment: dev\n    approval: sometimes\n",
        "tributary.yaml: spaces.a.approval:",
    ),
}


async def _bad_config(
    env: WorkflowEnvironment, worker: Worker, repo: AuthoringRepo, text: str | None
) -> tuple[str, str]:
    if text is None:
        repo.remove("tributary.yaml")
    else:
        repo.write("tributary.yaml", text)
    repo.commit("break tributary.yaml")
    return await publish_failure(env, worker, SourceRef(repo=repo.url, commit=repo.head))


async def test_missing_tributary_yaml(
    env: WorkflowEnvironment, worker: Worker, store: SqlStore, messagewall: AuthoringRepo
) -> None:
    text, expected = BAD_CONFIGS["missing"]
    kind, message = await _bad_config(env, worker, messagewall, text)
    assert (kind, expected in message) == ("BadInput", True), message
    assert store.list_spaces() == []


async def test_malformed_tributary_yaml(
    env: WorkflowEnvironment, worker: Worker, store: SqlStore, messagewall: AuthoringRepo
) -> None:
    text, expected = BAD_CONFIGS["malformed"]
    kind, message = await _bad_config(env, worker, messagewall, text)
    assert (kind, expected in message) == ("BadInput", True), message
    assert store.list_spaces() == []


async def test_invalid_tributary_yaml(
    env: WorkflowEnvironment, worker: Worker, store: SqlStore, messagewall: AuthoringRepo
) -> None:
    text, expected = BAD_CONFIGS["invalid field"]
    kind, message = await _bad_config(env, worker, messagewall, text)
    assert (kind, expected in message) == ("BadInput", True), message
    assert store.list_spaces() == []


async def _space_error(
    env: WorkflowEnvironment, worker: Worker, repo: AuthoringRepo, space: str
) -> str:
    result = await publish(env, worker, repo, spaces=[space])
    [outcome] = result.spaces
    assert outcome.error is not None, outcome
    assert outcome.error.type == "BadInput", outcome
    assert not outcome.written
    assert outcome.units == []
    return outcome.error.message


async def test_overlay_that_fails_to_render(
    env: WorkflowEnvironment, worker: Worker, store: SqlStore, messagewall: AuthoringRepo
) -> None:
    messagewall.edit(DEV_EAST, lambda t: t.replace("../../base", "../../nowhere"))
    messagewall.commit("point at a missing base")

    message = await _space_error(env, worker, messagewall, "messagewall-dev-east")

    assert message.startswith("infra/claims/overlays/dev-east: kustomize failed:")
    assert store.list_spaces() == []


async def test_malformed_yaml_in_a_claim(
    env: WorkflowEnvironment, worker: Worker, store: SqlStore, messagewall: AuthoringRepo
) -> None:
    messagewall.edit("infra/claims/base/claim.yaml", lambda t: t + "\n  bad: [unclosed\n")
    messagewall.commit("break the claim")

    message = await _space_error(env, worker, messagewall, "messagewall-dev-east")

    assert "claim.yaml" in message
    assert store.list_spaces() == []


async def test_schema_violation_names_object_and_field(
    env: WorkflowEnvironment, worker: Worker, store: SqlStore, messagewall: AuthoringRepo
) -> None:
    await publish(env, worker, messagewall, spaces=["messagewall-dev-east"])
    before = snapshot(store)
    messagewall.edit(DEV_EAST, lambda t: set_patch_value(t, "/spec/lambdaMemory", "64"))
    messagewall.commit("64 MB")

    message = await _space_error(env, worker, messagewall, "messagewall-dev-east")

    assert message == (
        "infra/claims/overlays/dev-east: ServerlessEventAppClaim/messagewall-dev-east: "
        "spec.lambdaMemory: 64 is less than the minimum of 128"
    )
    assert snapshot(store) == before


async def test_unit_name_that_is_not_a_kubernetes_name(
    env: WorkflowEnvironment, worker: Worker, store: SqlStore, messagewall: AuthoringRepo
) -> None:
    messagewall.edit(
        DEV_EAST, lambda t: set_patch_value(t, "/metadata/name", "MessageWall_Dev_East")
    )
    messagewall.commit("bad name")

    message = await _space_error(env, worker, messagewall, "messagewall-dev-east")

    assert message.startswith(
        "infra/claims/overlays/dev-east: ServerlessEventAppClaim/MessageWall_Dev_East: "
        "metadata.name: 'MessageWall_Dev_East' is not a valid Kubernetes name"
    )
    assert store.list_spaces() == []


async def test_broken_policy_fails_the_run(
    env: WorkflowEnvironment, worker: Worker, store: SqlStore, messagewall: AuthoringRepo
) -> None:
    messagewall.edit("platform/policies/claims.rego", lambda t: t + "\ndeny contains msg if {\n")
    messagewall.commit("half a rule")

    kind, message = await publish_failure(
        env, worker, SourceRef(repo=messagewall.url, commit=messagewall.head)
    )

    assert kind == "BadInput"
    assert message.startswith("platform/policies/claims.rego: Rego does not compile")
    assert store.list_spaces() == []
