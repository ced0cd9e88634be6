"""ApplyWorkflow against the sandbox cluster: API peer, Crossplane stand-in, moto."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

import pytest
import yaml
from botocore.exceptions import ClientError
from temporalio.api.enums.v1 import EventType
from temporalio.client import WorkflowExecutionStatus, WorkflowUpdateFailedError
from temporalio.service import RPCError
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from authority.sql import SqlStore
from domain.apply import ApplyStatus, ApproveInput, ApproveResult
from domain.authority import GatesUpdate, PolicyResult, UnitChange
from domain.drift import DriftStatus
from domain.gates import OWNER_LABEL
from domain.naming import apply_id, drift_id
from starter.applying import follow
from tests.conftest import Sandbox
from tests.support import AuthoringRepo, eventually, set_patch_value
from tests.workflows.helpers import ask, publish, query_under_load, settle, until
from workflows.apply import ApplyWorkflow
from workflows.drift import DriftWorkflow


async def test_apply_makes_the_claim_ready_and_the_lambda_match(
    env: WorkflowEnvironment,
    cluster_worker: Worker,
    store: SqlStore,
    sandbox: Sandbox,
    messagewall: AuthoringRepo,
) -> None:
    space = unit = "messagewall-dev-east"
    await publish(env, cluster_worker, messagewall, spaces=[space])

    outcome = await settle(env, cluster_worker, space, unit, 1)

    assert (outcome.state, outcome.reason) == ("ready", "")
    lam = sandbox.aws.lambda_()
    config = lam.get_function_configuration(FunctionName="messagewall-east-api-handler")
    assert (config["MemorySize"], config["Timeout"]) == (128, 10)
    assert applied(store, space, unit) == (1, 1)


# ---- helpers ---------------------------------------------------------------------------------

# Cluster-heavy tests where PostgreSQL adds nothing run on SQLite only.
SQLITE_ONLY = pytest.mark.parametrize("store_url", ["sqlite"], indirect=True)

AUTHOR = "Dana Developer <dana@example.com>"
MW_GROUP, MW_PLURAL = "messagewall.demo", "serverlesseventappclaims"
ACCOUNT = "123456789012"


async def approve(
    env: WorkflowEnvironment, space: str, unit: str, revision: int, by: str, comment: str = ""
) -> ApproveResult:
    handle = env.client.get_workflow_handle_for(ApplyWorkflow.run, apply_id(space, unit))
    return await handle.execute_update(
        ApplyWorkflow.approve, ApproveInput(revision=revision, by=by, comment=comment)
    )


async def refused(env: WorkflowEnvironment, space: str, unit: str, revision: int, by: str) -> str:
    """The message an approval is rejected with."""
    with pytest.raises(WorkflowUpdateFailedError) as err:
        await approve(env, space, unit, revision, by)
    return str(getattr(err.value.cause, "message", err.value.cause))


async def status_of(env: WorkflowEnvironment, space: str, unit: str) -> ApplyStatus:
    handle = env.client.get_workflow_handle(apply_id(space, unit))
    result: ApplyStatus = await query_under_load(lambda: handle.query(ApplyWorkflow.status))
    return result


async def drift_checked(env: WorkflowEnvironment, space: str, unit: str) -> DriftStatus:
    """Wait for the unit's drift loop to finish its first check (so it cannot race the next
    change of the test), and return its status."""
    handle = env.client.get_workflow_handle(drift_id(space, unit))

    async def status() -> DriftStatus | None:
        with contextlib.suppress(RPCError):  # not started yet
            checked: DriftStatus = await handle.query(DriftWorkflow.get_status)
            return checked
        return None

    checked = await eventually(
        status, lambda st: st is not None and st.checks >= 1, what=f"drift:{space}:{unit} checked"
    )
    assert checked is not None
    return checked


async def activity_attempts(env: WorkflowEnvironment, workflow_id: str, name: str) -> list[int]:
    """The attempt number each finished ``name`` activity ran with (from history)."""
    history = await env.client.get_workflow_handle(workflow_id).fetch_history()
    scheduled: set[int] = set()
    attempts: list[int] = []
    for event in history.events:
        if event.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED:
            attrs = event.activity_task_scheduled_event_attributes
            if attrs.activity_type.name == name:
                scheduled.add(event.event_id)
        elif event.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_STARTED:
            started = event.activity_task_started_event_attributes
            if started.scheduled_event_id in scheduled:
                attempts.append(started.attempt)
    return attempts


def claim_in_cluster(sandbox: Sandbox, name: str) -> dict[str, Any] | None:
    return sandbox.peer.peer.get_object(MW_GROUP, MW_PLURAL, name, "default")


def conditions_of(obj: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {c["type"]: c for c in obj.get("status", {}).get("conditions", [])}


def lambdas(sandbox: Sandbox, region: str = "us-east-1") -> dict[str, tuple[int, int]]:
    listed = sandbox.aws.lambda_(region).list_functions()["Functions"]
    return {f["FunctionName"]: (f["MemorySize"], f["Timeout"]) for f in listed}


def write_revision(store: SqlStore, space: str, unit: str, data: dict[str, Any], **kw: Any) -> int:
    """A new head revision written straight into the authority (as an operator tool would)."""
    current = store.get_unit(space, unit)
    assert current is not None
    [outcome] = store.commit(
        [
            UnitChange(
                space=space,
                slug=unit,
                expected_version=current.version,
                data=data,
                description=kw.pop("description", "operator change"),
                source=kw.pop("source", "operator"),
                **kw,
            )
        ]
    )
    assert outcome.created
    return outcome.revision


def with_spec(store: SqlStore, space: str, unit: str, revision: int, **spec: Any) -> dict[str, Any]:
    rev = store.get_revision(space, unit, revision)
    assert rev is not None
    data = dict(rev.data)
    data["spec"] = {**data["spec"], **spec}
    return data


def applied(store: SqlStore, space: str, unit: str) -> tuple[int | None, int | None]:
    """A unit's ``(live_revision, last_applied_revision)`` in the authority."""
    record = store.get_unit(space, unit)
    assert record is not None
    return record.live_revision, record.last_applied_revision


# ---- approval none ---------------------------------------------------------------------------


@SQLITE_ONLY
async def test_apply_without_approval_is_live_and_owned_by_tributary(
    env: WorkflowEnvironment,
    cluster_worker: Worker,
    store: SqlStore,
    sandbox: Sandbox,
    messagewall: AuthoringRepo,
) -> None:
    space = unit = "messagewall-dev-east"
    await publish(env, cluster_worker, messagewall, spaces=[space])

    outcome = await settle(env, cluster_worker, space, unit, 1)

    assert (outcome.state, outcome.reason, outcome.gate) == ("ready", "", "")
    assert outcome.message == "Ready and Synced"
    assert outcome.approved_by == ""
    record = store.get_unit(space, unit)
    assert record is not None
    assert (record.head_revision, record.live_revision, record.last_applied_revision) == (1, 1, 1)

    claim = claim_in_cluster(sandbox, unit)
    assert claim is not None
    rev = store.get_revision(space, unit, 1)
    assert rev is not None
    # What Tributary applied, plus the composite Crossplane made of it.
    assert claim["spec"].pop("resourceRef")["kind"] == "ServerlessEventApp"
    assert claim["spec"] == rev.data["spec"]
    # ... plus the owner label that ties the object to its space (issue 10)
    assert claim["metadata"]["labels"] == {**rev.data["metadata"]["labels"], OWNER_LABEL: space}
    assert claim["metadata"]["generation"] == 2  # 2: Crossplane's spec.resourceRef
    managers = {(e["manager"], e["operation"]) for e in claim["metadata"]["managedFields"]}
    assert ("tributary", "Apply") in managers
    assert ("crossplane", "Update") in managers
    [ours] = [e for e in claim["metadata"]["managedFields"] if e["manager"] == "tributary"]
    assert ours["fieldsV1"]["f:spec"]["f:lambdaMemory"] == {}
    conditions = conditions_of(claim)
    assert (conditions["Ready"]["status"], conditions["Synced"]["status"]) == ("True", "True")
    assert conditions["Ready"]["observedGeneration"] == 2
    assert claim["status"]["bucketName"] == f"messagewall-east-dev-{ACCOUNT}"

    assert lambdas(sandbox) == {
        "messagewall-east-api-handler": (128, 10),
        "messagewall-east-snapshot-writer": (128, 10),
    }
    assert sandbox.aws.s3().head_bucket(Bucket=f"messagewall-east-dev-{ACCOUNT}")

    status = await status_of(env, space, unit)
    assert status.current is None
    assert status.pending == []
    assert [(o.revision, o.state) for o in status.outcomes] == [(1, "ready")]
    # Nothing waits, so there is nothing to approve.
    assert await refused(env, space, unit, 1, "Olu Operator") == "nothing is awaiting approval"

    # Every successful apply leaves the unit's drift loop running; it found no drift.
    description = await env.client.get_workflow_handle(drift_id(space, unit)).describe()
    assert description.status == WorkflowExecutionStatus.RUNNING
    assert description.workflow_type == "DriftWorkflow"
    drift = await drift_checked(env, space, unit)
    assert (drift.state, drift.last_drift) == ("in-sync", None)


# ---- approval required -----------------------------------------------------------------------


async def test_required_approval_waits_for_someone_other_than_the_author(
    env: WorkflowEnvironment,
    cluster_worker: Worker,
    store: SqlStore,
    sandbox: Sandbox,
    messagewall: AuthoringRepo,
) -> None:
    space = unit = "messagewall-prod-east"
    await publish(env, cluster_worker, messagewall, spaces=[space])
    assert store.get_revision(space, unit, 1).author == AUTHOR  # type: ignore[union-attr]

    workflow_id, request_id = await ask(env, cluster_worker, space, unit, 1)
    waiting = await until(env, workflow_id, request_id, {"awaiting-approval"})

    assert waiting.gate == "required"
    assert waiting.message == (
        "apply of revision 1 needs approval (required): "
        "tributary approve messagewall-prod-east messagewall-prod-east --revision 1 --by WHO"
    )
    assert claim_in_cluster(sandbox, unit) is None
    assert lambdas(sandbox) == {}
    assert applied(store, space, unit) == (None, None)

    assert await refused(env, space, unit, 2, "Olu Operator") == (
        "revision 2 is not awaiting approval; revision 1 is"
    )
    assert await refused(env, space, unit, 1, "Dana Developer") == (
        "Dana Developer wrote revision 1; a required approval must come from someone else"
    )
    assert await refused(env, space, unit, 1, "dana@example.com") == (
        "dana@example.com wrote revision 1; a required approval must come from someone else"
    )
    assert await refused(env, space, unit, 1, "  ") == "an approval needs --by WHO"
    # Rejected approvals changed nothing.
    still = await until(env, workflow_id, request_id, {"awaiting-approval"})
    assert still.approved_by == ""
    assert store.get_revision(space, unit, 1).approvals == []  # type: ignore[union-attr]
    assert claim_in_cluster(sandbox, unit) is None

    result = await approve(env, space, unit, 1, "Olu Operator", "looks right")
    assert (result.revision, result.by, result.accepted) == (1, "Olu Operator", True)
    done = await until(env, workflow_id, request_id, {"ready", "failed"})

    assert (done.state, done.gate, done.approved_by) == ("ready", "required", "Olu Operator")
    rev = store.get_revision(space, unit, 1)
    assert rev is not None
    [approval] = rev.approvals
    assert (approval.by, approval.comment) == ("Olu Operator", "looks right")
    assert approval.at is not None
    assert approval.at.tzinfo is not None
    assert done.at is not None
    assert approval.at <= done.at
    assert applied(store, space, unit) == (1, 1)
    assert lambdas(sandbox) == {
        "messagewall-east-api-handler": (256, 30),
        "messagewall-east-snapshot-writer": (256, 30),
    }


# ---- approval acknowledge --------------------------------------------------------------------


@SQLITE_ONLY
async def test_author_may_acknowledge(
    env: WorkflowEnvironment,
    cluster_worker: Worker,
    store: SqlStore,
    sandbox: Sandbox,
    orders: AuthoringRepo,
) -> None:
    space, unit = "orders-staging", "staging-orders-db"
    await publish(env, cluster_worker, orders, spaces=[space])

    workflow_id, request_id = await ask(env, cluster_worker, space, unit, 1)
    waiting = await until(env, workflow_id, request_id, {"awaiting-approval"})
    assert waiting.gate == "acknowledge"
    assert (
        sandbox.peer.peer.get_object("platform.acme.io", "databaseclaims", unit, "orders") is None
    )

    await approve(env, space, unit, 1, "Dana Developer")
    done = await until(env, workflow_id, request_id, {"ready", "failed"})

    assert (done.state, done.gate, done.approved_by) == ("ready", "acknowledge", "Dana Developer")
    claim = sandbox.peer.peer.get_object("platform.acme.io", "databaseclaims", unit, "orders")
    assert claim is not None
    assert claim["spec"]["storageGB"] == 50
    conditions = conditions_of(claim)
    assert (conditions["Ready"]["status"], conditions["Synced"]["status"]) == ("True", "True")
    assert [a.by for a in store.get_revision(space, unit, 1).approvals] == [  # type: ignore[union-attr]
        "Dana Developer"
    ]
    record = store.get_unit(space, unit)
    assert record is not None
    assert record.live_revision == 1


@SQLITE_ONLY
async def test_authors_acknowledgement_does_not_satisfy_a_later_required_gate(
    env: WorkflowEnvironment,
    cluster_worker: Worker,
    store: SqlStore,
    sandbox: Sandbox,
    orders: AuthoringRepo,
) -> None:
    """Four eyes: once the space requires approval, re-applying a revision that only its
    author acknowledged (while the space asked for acknowledgement) must wait for someone
    else."""
    space, unit = "orders-staging", "staging-orders-db"
    await publish(env, cluster_worker, orders, spaces=[space])
    workflow_id, request_id = await ask(env, cluster_worker, space, unit, 1)
    await until(env, workflow_id, request_id, {"awaiting-approval"})
    await approve(env, space, unit, 1, "Dana Developer")
    assert (await until(env, workflow_id, request_id, {"ready", "failed"})).state == "ready"

    # The authority holds the gate (issue 10): an admin tightens it with `space set`.
    store.set_space_gates(GatesUpdate(space=space, approval="required", by="olu"))
    assert store.get_space(space).approval == "required"  # type: ignore[union-attr]

    _, again = await ask(env, cluster_worker, space, unit, 1)
    outcome = await until(env, workflow_id, again, {"awaiting-approval", "ready", "failed"})

    assert (outcome.state, outcome.gate) == ("awaiting-approval", "required")
    assert await refused(env, space, unit, 1, "Dana Developer") == (
        "Dana Developer wrote revision 1; a required approval must come from someone else"
    )


# ---- supersede -------------------------------------------------------------------------------


@SQLITE_ONLY
async def test_newer_request_supersedes_one_awaiting_approval(
    env: WorkflowEnvironment,
    cluster_worker: Worker,
    store: SqlStore,
    sandbox: Sandbox,
    messagewall: AuthoringRepo,
) -> None:
    space = unit = "messagewall-prod-east"
    await publish(env, cluster_worker, messagewall, spaces=[space])
    workflow_id, first = await ask(env, cluster_worker, space, unit, 1)
    await until(env, workflow_id, first, {"awaiting-approval"})

    r2 = write_revision(
        store, space, unit, with_spec(store, space, unit, 1, lambdaMemory=512), author=AUTHOR
    )
    assert r2 == 2
    _, second = await ask(env, cluster_worker, space, unit, 2)
    waiting = await until(env, workflow_id, second, {"awaiting-approval"})

    assert waiting.revision == 2
    superseded = await until(env, workflow_id, first, {"superseded"})
    assert superseded.revision == 1
    assert superseded.message == "superseded by revision 2 while awaiting approval"
    status = await status_of(env, space, unit)
    assert [(o.revision, o.state) for o in status.outcomes] == [(1, "superseded")]
    assert status.current is not None
    assert (status.current.revision, status.current.state) == (2, "awaiting-approval")
    assert status.pending == []
    assert await refused(env, space, unit, 1, "Olu Operator") == (
        "revision 1 is not awaiting approval; revision 2 is"
    )
    assert claim_in_cluster(sandbox, unit) is None


# ---- policy ----------------------------------------------------------------------------------


async def test_revision_with_policy_violations_is_never_applied(
    env: WorkflowEnvironment,
    cluster_worker: Worker,
    store: SqlStore,
    sandbox: Sandbox,
    messagewall: AuthoringRepo,
) -> None:
    space = unit = "messagewall-dev-east"
    await publish(env, cluster_worker, messagewall, spaces=[space])
    violation = (
        'ServerlessEventAppClaim/messagewall-dev-east: spec.awsAccountId is "12345"; '
        "must be exactly 12 digits"
    )
    # What a drift capture of a bad live state records: the revision, with the policy's verdict.
    r2 = write_revision(
        store,
        space,
        unit,
        with_spec(store, space, unit, 1, awsAccountId="12345"),
        source="drift-capture",
        description="drift capture",
        policy=PolicyResult(violations=[violation], warnings=["a warning"]),
    )

    outcome = await settle(env, cluster_worker, space, unit, r2)

    assert (outcome.state, outcome.reason) == ("failed", "denied")
    assert outcome.message == f"denied by policy: {violation}"
    assert claim_in_cluster(sandbox, unit) is None
    assert lambdas(sandbox) == {}
    record = store.get_unit(space, unit)
    assert record is not None
    assert (record.head_revision, record.live_revision, record.last_applied_revision) == (
        2,
        None,
        None,
    )


# ---- readiness -------------------------------------------------------------------------------


@SQLITE_ONLY
async def test_claim_that_never_becomes_ready_fails_and_keeps_the_live_revision(
    env: WorkflowEnvironment,
    cluster_worker: Worker,
    store: SqlStore,
    sandbox: Sandbox,
    messagewall: AuthoringRepo,
) -> None:
    space = unit = "messagewall-dev-east"
    await publish(env, cluster_worker, messagewall, spaces=[space])
    assert (await settle(env, cluster_worker, space, unit, 1)).state == "ready"
    await drift_checked(env, space, unit)

    prefix = "messagewall-east-with-a-prefix-far-too-long-for-s3"
    assert len(f"{prefix}-dev-{ACCOUNT}") > 63
    messagewall.edit(
        "infra/claims/overlays/dev-east/kustomization.yaml",
        lambda t: set_patch_value(t, "/spec/resourcePrefix", prefix),
    )
    messagewall.commit("a longer prefix")
    result = await publish(env, cluster_worker, messagewall, spaces=[space])
    assert result.spaces[0].units[0].revision == 2

    # Crossplane reports ReconcileError (as for an unreachable AWS): the apply waits,
    # showing the error in its status, until its ready timeout — then fails with it.
    messages: list[str] = []
    outcome = await settle(
        env, cluster_worker, space, unit, 2, messages=messages, ready_timeout_seconds=15
    )

    assert (outcome.state, outcome.reason) == ("failed", "not-ready")
    assert outcome.message.startswith("not Ready after 15s: ReconcileError: ")
    assert "InvalidBucketName" in outcome.message
    waiting = [m for m in messages if "waiting: Crossplane reports ReconcileError: " in m]
    assert waiting, messages
    assert "InvalidBucketName" in waiting[-1]
    record = store.get_unit(space, unit)
    assert record is not None
    assert (record.head_revision, record.live_revision, record.last_applied_revision) == (2, 1, 2)
    claim = claim_in_cluster(sandbox, unit)
    assert claim is not None
    assert claim["spec"]["resourcePrefix"] == prefix
    synced = conditions_of(claim)["Synced"]
    # generation 2 was Crossplane's spec.resourceRef, 3 the new prefix
    assert (synced["status"], synced["observedGeneration"]) == ("False", 3)
    assert "InvalidBucketName" in synced["message"]
    # What revision 1 composed is untouched.
    assert lambdas(sandbox) == {
        "messagewall-east-api-handler": (128, 10),
        "messagewall-east-snapshot-writer": (128, 10),
    }


# ---- API faults ------------------------------------------------------------------------------

CLAIM_PATH = r"/namespaces/default/serverlesseventappclaims/messagewall-dev-east$"


@SQLITE_ONLY
async def test_server_errors_are_retried_until_the_apply_succeeds(
    env: WorkflowEnvironment,
    cluster_worker: Worker,
    store: SqlStore,
    sandbox: Sandbox,
    messagewall: AuthoringRepo,
) -> None:
    space = unit = "messagewall-dev-east"
    await publish(env, cluster_worker, messagewall, spaces=[space])
    rule = sandbox.peer.peer.inject_faults(500, count=2, method="PATCH", path=CLAIM_PATH)

    outcome = await settle(env, cluster_worker, space, unit, 1)

    assert (outcome.state, outcome.reason) == ("ready", "")
    assert rule.hits == 2
    assert await activity_attempts(env, apply_id(space, unit), "kube.apply") == [3]
    assert applied(store, space, unit) == (1, 1)
    assert lambdas(sandbox)["messagewall-east-api-handler"] == (128, 10)


@SQLITE_ONLY
async def test_refused_connections_are_retried_until_the_apply_succeeds(
    env: WorkflowEnvironment,
    cluster_worker: Worker,
    store: SqlStore,
    sandbox: Sandbox,
    messagewall: AuthoringRepo,
) -> None:
    space = unit = "messagewall-dev-east"
    await publish(env, cluster_worker, messagewall, spaces=[space])
    sandbox.peer.refuse_connections(3.0)

    outcome = await settle(env, cluster_worker, space, unit, 1)

    assert (outcome.state, outcome.reason) == ("ready", "")
    [attempt] = await activity_attempts(env, apply_id(space, unit), "kube.apply")
    assert attempt >= 2
    assert applied(store, space, unit) == (1, 1)
    assert lambdas(sandbox)["messagewall-east-api-handler"] == (128, 10)


@SQLITE_ONLY
async def test_rejected_object_fails_at_once_with_the_server_message(
    env: WorkflowEnvironment,
    cluster_worker: Worker,
    store: SqlStore,
    sandbox: Sandbox,
    messagewall: AuthoringRepo,
) -> None:
    space = unit = "messagewall-dev-east"
    await publish(env, cluster_worker, messagewall, spaces=[space])
    server_message = (
        'ServerlessEventAppClaim.messagewall.demo "messagewall-dev-east" is invalid: '
        "spec.lambdaMemory: Invalid value: 128: must be a multiple of 64"
    )
    rule = sandbox.peer.peer.inject_faults(
        422, count=None, method="PATCH", path=CLAIM_PATH, message=server_message
    )
    try:
        outcome = await settle(env, cluster_worker, space, unit, 1)
    finally:
        sandbox.peer.peer.clear_faults()

    assert (outcome.state, outcome.reason) == ("failed", "rejected")
    assert outcome.message == (
        "PATCH /apis/messagewall.demo/v1alpha1/namespaces/default/serverlesseventappclaims/"
        f"messagewall-dev-east was rejected (422 Invalid): {server_message}"
    )
    assert rule.hits == 1  # no retries
    assert await activity_attempts(env, apply_id(space, unit), "kube.apply") == [1]
    assert claim_in_cluster(sandbox, unit) is None
    assert applied(store, space, unit) == (None, None)


# ---- publish --apply -------------------------------------------------------------------------


@SQLITE_ONLY
async def test_publish_with_apply_applies_every_changed_unit(
    env: WorkflowEnvironment,
    cluster_worker: Worker,
    store: SqlStore,
    sandbox: Sandbox,
    messagewall: AuthoringRepo,
) -> None:
    spaces = ["messagewall-dev-east", "messagewall-dev-west"]
    result = await publish(env, cluster_worker, messagewall, spaces=spaces, apply=True)

    units = {u.unit: u for s in result.spaces for u in s.units}
    assert sorted(units) == spaces
    for name, u in units.items():
        assert (u.action, u.revision) == ("published", 1)
        assert u.apply_workflow_id == f"apply:{name}:{name}"
        assert u.apply_request_id != ""
    outcomes = await asyncio.gather(
        *(follow(env.client, u.apply_workflow_id, u.apply_request_id) for u in units.values())
    )
    assert [(o.revision, o.state) for o in outcomes] == [(1, "ready"), (1, "ready")]
    for name in spaces:
        assert applied(store, name, name) == (1, 1)
        assert claim_in_cluster(sandbox, name) is not None
    assert lambdas(sandbox, "us-east-1") == {
        "messagewall-east-api-handler": (128, 10),
        "messagewall-east-snapshot-writer": (128, 10),
    }
    assert lambdas(sandbox, "us-west-2") == {
        "messagewall-west-api-handler": (128, 10),
        "messagewall-west-snapshot-writer": (128, 10),
    }

    # The next commit changes one space: only its unit is applied (a new generation).
    await drift_checked(env, "messagewall-dev-east", "messagewall-dev-east")
    messagewall.edit(
        "infra/claims/overlays/dev-east/kustomization.yaml",
        lambda t: set_patch_value(t, "/spec/lambdaMemory", "512"),
    )
    messagewall.commit("more memory in dev-east")
    again = await publish(env, cluster_worker, messagewall, spaces=spaces, apply=True)

    units = {u.unit: u for s in again.spaces for u in s.units}
    west = units["messagewall-dev-west"]
    assert (west.action, west.apply_workflow_id, west.apply_request_id) == ("unchanged", "", "")
    east = units["messagewall-dev-east"]
    assert (east.action, east.revision) == ("published", 2)
    assert east.apply_workflow_id == "apply:messagewall-dev-east:messagewall-dev-east"
    outcome = await follow(env.client, east.apply_workflow_id, east.apply_request_id)
    assert (outcome.revision, outcome.state) == (2, "ready")
    assert applied(store, "messagewall-dev-east", "messagewall-dev-east") == (2, 2)
    claim = claim_in_cluster(sandbox, "messagewall-dev-east")
    assert claim is not None
    # generation 2 was Crossplane's spec.resourceRef, 3 the new memory
    assert (claim["metadata"]["generation"], claim["spec"]["lambdaMemory"]) == (3, 512)
    assert lambdas(sandbox, "us-east-1") == {
        "messagewall-east-api-handler": (512, 10),
        "messagewall-east-snapshot-writer": (512, 10),
    }
    west_record = store.get_unit("messagewall-dev-west", "messagewall-dev-west")
    assert west_record is not None
    assert west_record.live_revision == 1


# ---- removed units ---------------------------------------------------------------------------

QUEUE_GONE = """\
# Staging no longer runs the queue.
$patch: delete
apiVersion: messaging.acme.io/v1
kind: QueueClaim
metadata:
  name: orders-queue
  namespace: orders
"""


async def test_removed_unit_is_orphaned_then_deleted_on_request(
    env: WorkflowEnvironment,
    cluster_worker: Worker,
    store: SqlStore,
    sandbox: Sandbox,
    orders: AuthoringRepo,
) -> None:
    space, unit = "orders-staging", "staging-orders-queue"
    await publish(env, cluster_worker, orders, spaces=[space])
    workflow_id, request_id = await ask(env, cluster_worker, space, unit, 1)
    await until(env, workflow_id, request_id, {"awaiting-approval"})
    await approve(env, space, unit, 1, "Dana Developer")
    assert (await until(env, workflow_id, request_id, {"ready", "failed"})).state == "ready"
    await drift_checked(env, space, unit)

    def queue() -> dict[str, Any] | None:
        return sandbox.peer.peer.get_object("messaging.acme.io", "queueclaims", unit, "orders")

    assert queue() is not None

    orders.write("deploy/envs/staging/queue.yaml", QUEUE_GONE)
    orders.commit("staging: drop the queue")
    result = await publish(env, cluster_worker, orders, spaces=[space], apply=True)

    by_unit = {u.unit: u for u in result.spaces[0].units}
    assert by_unit[unit].action == "orphaned"
    assert by_unit[unit].apply_workflow_id == ""  # never deleted silently
    assert by_unit["staging-orders-db"].action == "unchanged"
    record = store.get_unit(space, unit)
    assert record is not None
    assert record.state == "orphaned"
    assert queue() is not None  # still in the cluster

    workflow_id, request_id = await ask(env, cluster_worker, space, unit, 1, action="delete")
    waiting = await until(env, workflow_id, request_id, {"awaiting-approval"})
    assert (waiting.action, waiting.gate) == ("delete", "acknowledge")
    assert waiting.message == (
        "delete of revision 1 needs approval (acknowledge): "
        "tributary approve orders-staging staging-orders-queue --revision 1 --by WHO"
    )
    assert queue() is not None
    await approve(env, space, unit, 1, "Dana Developer")
    done = await until(env, workflow_id, request_id, {"deleted", "failed"})

    assert (done.state, done.action, done.message) == (
        "deleted",
        "delete",
        "removed from the cluster",
    )
    assert queue() is None
    record = store.get_unit(space, unit)
    assert record is not None
    assert record.state == "deleted"
    db = store.get_unit(space, "staging-orders-db")
    assert db is not None
    assert db.state == "active"


# ---- precious delete -------------------------------------------------------------------------


@SQLITE_ONLY
async def test_deleting_a_precious_unit_needs_approval_and_keeps_its_data(
    env: WorkflowEnvironment,
    cluster_worker: Worker,
    store: SqlStore,
    sandbox: Sandbox,
    messagewall: AuthoringRepo,
) -> None:
    space = unit = "messagewall-prod-east"
    config = yaml.safe_load(messagewall.read("tributary.yaml"))
    config["spaces"][space]["approval"] = "none"
    messagewall.write("tributary.yaml", yaml.safe_dump(config, sort_keys=False))
    messagewall.commit("prod-east: no approval for applies")
    await publish(env, cluster_worker, messagewall, spaces=[space])
    assert store.get_space(space).approval == "none"  # type: ignore[union-attr]
    assert (await settle(env, cluster_worker, space, unit, 1)).state == "ready"  # no gate
    await drift_checked(env, space, unit)
    name = f"messagewall-east-prod-{ACCOUNT}"
    assert lambdas(sandbox) == {
        "messagewall-east-api-handler": (256, 30),
        "messagewall-east-snapshot-writer": (256, 30),
    }

    iam = sandbox.aws.iam()

    def roles() -> list[str]:
        return sorted(r["RoleName"] for r in iam.list_roles()["Roles"])

    assert roles() == ["messagewall-east-api-role", "messagewall-east-snapshot-role"]

    workflow_id, request_id = await ask(env, cluster_worker, space, unit, 1, action="delete")
    waiting = await until(env, workflow_id, request_id, {"awaiting-approval"})

    assert (waiting.action, waiting.gate) == ("delete", "required")
    assert claim_in_cluster(sandbox, unit) is not None
    assert await refused(env, space, unit, 1, "Dana Developer") == (
        "Dana Developer wrote revision 1; a required approval must come from someone else"
    )
    await approve(env, space, unit, 1, "Olu Operator")
    done = await until(env, workflow_id, request_id, {"deleted", "failed"})

    assert (done.state, done.approved_by) == ("deleted", "Olu Operator")
    assert claim_in_cluster(sandbox, unit) is None
    record = store.get_unit(space, unit)
    assert record is not None
    assert record.state == "deleted"
    assert [a.by for a in store.get_revision(space, unit, 1).approvals] == [  # type: ignore[union-attr]
        "Olu Operator"
    ]
    # The stand-in tears down what the claim composed, except the precious data stores.
    await eventually(  # the teardown runs after the claim is gone, in the background
        lambda: asyncio.to_thread(lambda: (lambdas(sandbox), roles())),
        lambda composed: composed == ({}, []),
        what="the teardown of what the claim composed",
    )
    assert lambdas(sandbox) == {}
    assert roles() == []
    with pytest.raises(ClientError) as gone:
        iam.get_role(RoleName="messagewall-east-api-role")
    assert gone.value.response["Error"]["Code"] == "NoSuchEntity"
    assert sandbox.aws.events().list_rules()["Rules"] == []
    table = sandbox.aws.dynamodb().describe_table(TableName=name)["Table"]
    assert table["TableStatus"] == "ACTIVE"
    assert sandbox.aws.s3().head_bucket(Bucket=name)["ResponseMetadata"]["HTTPStatusCode"] == 200
