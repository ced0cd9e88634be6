"""Bulk ``set`` and ``rollback``: changes made in the authority, gated like a publish."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from temporalio.client import WorkflowFailureError
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from authority.sql import SqlStore
from client.contract import error_info
from domain.change import Assignment, BulkSetInput, BulkSetResult, RollbackInput, RollbackResult
from tests.support import AuthoringRepo, set_patch_value
from tests.workflows.helpers import publish, snapshot
from workflows.change import BulkSetWorkflow, RollbackWorkflow

PROD = ["messagewall-prod-east", "messagewall-prod-west"]
ALL = ["messagewall-dev-east", "messagewall-dev-west", *PROD]


async def bulk_set(env: WorkflowEnvironment, worker: Worker, **kw: Any) -> BulkSetResult:
    kw.setdefault("message", "bulk change")
    kw.setdefault("author", "oncall@example.com")
    result: BulkSetResult = await env.client.execute_workflow(
        BulkSetWorkflow.run,
        BulkSetInput(**kw),
        id=f"set-test-{uuid.uuid4()}",
        task_queue=worker.task_queue,
    )
    return result


async def rollback(env: WorkflowEnvironment, worker: Worker, **kw: Any) -> RollbackResult:
    kw.setdefault("author", "oncall@example.com")
    result: RollbackResult = await env.client.execute_workflow(
        RollbackWorkflow.run,
        RollbackInput(**kw),
        id=f"rollback-test-{uuid.uuid4()}",
        task_queue=worker.task_queue,
    )
    return result


async def failure(coro: Any) -> tuple[str, str]:
    with pytest.raises(WorkflowFailureError) as caught:
        await coro
    info = error_info(caught.value)
    return info.type, info.message


@pytest.fixture
async def published(
    env: WorkflowEnvironment, worker: Worker, messagewall: AuthoringRepo
) -> AuthoringRepo:
    await publish(env, worker, messagewall)
    return messagewall


async def test_set_writes_one_bulk_revision_per_matching_unit(
    env: WorkflowEnvironment, worker: Worker, store: SqlStore, published: AuthoringRepo
) -> None:
    result = await bulk_set(
        env,
        worker,
        spaces=ALL,
        where={"environment": "prod"},
        assignments=[Assignment(path="spec.lambdaTimeout", value=60)],
        message="Holiday peak",
    )

    assert result.written
    assert [(u.unit, u.action, u.revision, u.changed_fields) for u in result.units] == [
        ("messagewall-prod-east", "changed", 2, ["spec.lambdaTimeout"]),
        ("messagewall-prod-west", "changed", 2, ["spec.lambdaTimeout"]),
    ]
    rev = store.get_revision("messagewall-prod-west", "messagewall-prod-west", 2)
    assert rev is not None
    assert (rev.source, rev.description, rev.author) == (
        "bulk",
        "Holiday peak",
        "oncall@example.com",
    )
    assert rev.data["spec"]["lambdaTimeout"] == 60
    assert rev.tags["change"] == "spec.lambdaTimeout=60"
    dev = store.get_unit("messagewall-dev-east", "messagewall-dev-east")
    assert dev is not None
    assert dev.head_revision == 1


async def test_set_again_changes_nothing(
    env: WorkflowEnvironment, worker: Worker, store: SqlStore, published: AuthoringRepo
) -> None:
    kw: dict[str, Any] = {
        "spaces": PROD,
        "assignments": [Assignment(path="spec.lambdaTimeout", value=60)],
    }
    await bulk_set(env, worker, **kw)
    before = snapshot(store)

    again = await bulk_set(env, worker, **kw)

    assert not again.written
    assert {(u.action, u.revision) for u in again.units} == {("unchanged", 2)}
    assert snapshot(store) == before


async def test_set_denied_by_policy_writes_nothing(
    env: WorkflowEnvironment, worker: Worker, store: SqlStore, published: AuthoringRepo
) -> None:
    before = snapshot(store)

    result = await bulk_set(
        env, worker, spaces=ALL, assignments=[Assignment(path="spec.lambdaMemory", value=128)]
    )

    assert not result.written
    actions = {u.unit: u.action for u in result.units}
    assert actions["messagewall-prod-east"] == "denied"
    assert actions["messagewall-dev-east"] == "unchanged"  # already 128
    assert result.units[2].violations == [
        "ServerlessEventAppClaim/messagewall-prod-east: spec.lambdaMemory is 128; "
        "prod claims need at least 256"
    ]
    assert snapshot(store) == before


async def test_set_schema_violation_is_bad_input(
    env: WorkflowEnvironment, worker: Worker, store: SqlStore, published: AuthoringRepo
) -> None:
    before = snapshot(store)

    kind, message = await failure(
        bulk_set(
            env,
            worker,
            spaces=PROD,
            assignments=[Assignment(path="spec.lambdaMemory", value="lots")],
        )
    )

    assert kind == "BadInput"
    assert (
        "ServerlessEventAppClaim/messagewall-prod-east: "
        "spec.lambdaMemory: 'lots' is not of type 'integer'" in message
    )
    assert snapshot(store) == before


async def test_set_cannot_rename_a_unit(
    env: WorkflowEnvironment, worker: Worker, store: SqlStore, published: AuthoringRepo
) -> None:
    kind, message = await failure(
        bulk_set(
            env, worker, spaces=PROD, assignments=[Assignment(path="metadata.name", value="x")]
        )
    )
    assert (kind, message) == (
        "BadInput",
        "metadata.name: a unit's identity cannot be changed by `set`",
    )


@pytest.mark.parametrize(
    ("path", "value"),
    [("metadata", {"name": "x"}), ("metadata.name.x", "y"), ("kind", "Secret")],
)
async def test_set_cannot_reach_identity_through_a_parent_or_child(
    env: WorkflowEnvironment,
    worker: Worker,
    store: SqlStore,
    published: AuthoringRepo,
    path: str,
    value: object,
) -> None:
    before = snapshot(store)
    kind, message = await failure(
        bulk_set(env, worker, spaces=PROD, assignments=[Assignment(path=path, value=value)])
    )
    assert kind == "BadInput"
    assert message.startswith(f"{path}: a unit's identity cannot be changed by `set`")
    assert snapshot(store) == before


async def test_set_unknown_space(
    env: WorkflowEnvironment, worker: Worker, store: SqlStore, published: AuthoringRepo
) -> None:
    kind, message = await failure(
        bulk_set(env, worker, spaces=["nope"], assignments=[Assignment(path="spec.x", value=1)])
    )
    assert (kind, message) == ("NotFound", "space 'nope' does not exist in the authority")


async def test_set_dry_run(
    env: WorkflowEnvironment, worker: Worker, store: SqlStore, published: AuthoringRepo
) -> None:
    before = snapshot(store)
    result = await bulk_set(
        env,
        worker,
        spaces=PROD,
        assignments=[Assignment(path='metadata.annotations["incident"]', value="INC-7")],
        dry_run=True,
    )
    assert [u.changed_fields for u in result.units] == [["metadata.annotations.incident"]] * 2
    assert not result.written
    assert snapshot(store) == before


async def test_rollback_restores_an_earlier_revision(
    env: WorkflowEnvironment, worker: Worker, store: SqlStore, published: AuthoringRepo
) -> None:
    await bulk_set(
        env, worker, spaces=PROD, assignments=[Assignment(path="spec.lambdaTimeout", value=60)]
    )

    result = await rollback(env, worker, space=PROD[0], unit=PROD[0], to=1)

    assert (result.action, result.revision, result.changed_fields) == (
        "rolled-back",
        3,
        ["spec.lambdaTimeout"],
    )
    rev = store.get_revision(PROD[0], PROD[0], 3)
    first = store.get_revision(PROD[0], PROD[0], 1)
    assert rev is not None
    assert first is not None
    assert (rev.source, rev.data, rev.tags["rollback_to"]) == ("rollback", first.data, "1")
    again = await rollback(env, worker, space=PROD[0], unit=PROD[0], to=1)
    assert (again.action, again.revision) == ("unchanged", 3)


async def test_rollback_to_a_missing_revision(
    env: WorkflowEnvironment, worker: Worker, store: SqlStore, published: AuthoringRepo
) -> None:
    kind, message = await failure(rollback(env, worker, space=PROD[0], unit=PROD[0], to=9))
    assert (kind, message) == ("NotFound", f"unit {PROD[0]}/{PROD[0]} has no revision 9")


async def test_rollback_meets_todays_policy(
    env: WorkflowEnvironment, worker: Worker, store: SqlStore, published: AuthoringRepo
) -> None:
    """Revision 1 passed yesterday's policy; today's forbids it, so no rollback to it."""
    published.edit(
        "infra/claims/overlays/prod-east/kustomization.yaml",
        lambda t: set_patch_value(t, "/spec/lambdaMemory", "512"),
    )
    published.edit(
        "platform/policies/claims.rego",
        lambda t: t.replace("lambda_memory(input) < 256", "lambda_memory(input) < 512"),
    )
    published.commit("prod needs 512 MB now")
    await publish(env, worker, published, spaces=[PROD[0]])
    before = snapshot(store)

    kind, message = await failure(rollback(env, worker, space=PROD[0], unit=PROD[0], to=1))

    assert kind == "PolicyDenied"
    assert "spec.lambdaMemory is 256" in message
    assert snapshot(store) == before
