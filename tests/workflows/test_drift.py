"""DriftWorkflow (arrow 3) on the time-skipping server, against the sandbox cluster."""

from __future__ import annotations

import asyncio
import copy
import threading
import uuid
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta
from typing import Any, TypeVar

import pytest
import yaml
from kubernetes import client
from temporalio import activity
from temporalio.api.enums.v1 import EventType
from temporalio.client import (
    WorkflowHandle,
    WorkflowUpdateFailedError,
    WorkflowUpdateHandle,
    WorkflowUpdateStage,
)
from temporalio.exceptions import ApplicationError
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker
from temporalio.worker.workflow_sandbox import SandboxedWorkflowRunner, SandboxRestrictions

import workflows.drift
from activities.drift import DriftActivities
from adapters.source import SourceCache
from authority.sql import SqlStore
from client.loops import retry_completed, signal_drift
from domain.apply import ApplyOutcome, ApproveInput
from domain.authority import UnitChange, UnitStateChange
from domain.change import RollbackInput, RollbackResult
from domain.drift import (
    CaptureInput,
    CaptureOutcome,
    CaptureRequest,
    CaptureResult,
    CheckRequest,
    DriftCheckInput,
    DriftCheckResult,
    DriftInput,
    DriftRecord,
    DriftStatus,
)
from domain.naming import apply_id, drift_id
from starter.applying import find
from starter.commands.drift import _drift_json
from tests.conftest import Sandbox
from tests.support import HANG, AuthoringRepo, eventually
from tests.workflows.helpers import (
    apply_status,
    ask,
    in_flight,
    publish,
    query_under_load,
    skip,
)
from worker import WORKFLOWS, activities
from workflows.apply import ApplyWorkflow
from workflows.change import RollbackWorkflow
from workflows.drift import DriftWorkflow

T = TypeVar("T")
APPROVER = "Olga Operator"
SQLITE_ONLY = pytest.mark.parametrize("store_url", ["sqlite"], indirect=True)
MW = "messagewall-dev-east"
MW_API = "messagewall-east-api-handler"
MW_WRITER = "messagewall-east-snapshot-writer"
STAGING = "orders-staging"
STAGING_DB = "staging-orders-db"
IGNORED = "kubectl.kubernetes.io/last-applied-configuration"


# ---- fixtures ------------------------------------------------------------------------------


# ---- helpers -------------------------------------------------------------------------------


async def apply_and_wait(
    env: WorkflowEnvironment,
    worker: Worker,
    space: str,
    unit: str,
    revision: int,
    **kw: Any,
) -> ApplyOutcome:
    """Request an apply; approve it when a gate stops it; wait until it settles for good."""
    _, request_id = await ask(env, worker, space, unit, revision, **kw)
    handle = env.client.get_workflow_handle_for(ApplyWorkflow.run, apply_id(space, unit))
    approved = False

    async def outcome() -> ApplyOutcome | None:
        nonlocal approved
        status = await query_under_load(lambda: handle.query(ApplyWorkflow.status))
        found = find(status, request_id)
        if found is not None and found.state == "awaiting-approval" and not approved:
            await handle.execute_update(
                ApplyWorkflow.approve, ApproveInput(revision=revision, by=APPROVER)
            )
            approved = True
        return found

    settled = await eventually(
        outcome,
        lambda o: o is not None and o.settled and o.state != "awaiting-approval",
        what=f"apply of {space}/{unit} r{revision} settled",
    )
    assert settled is not None
    return settled


async def update_result(update: WorkflowUpdateHandle[T], *, limit: float = HANG) -> T:
    """The result of an accepted update; not answered within ``limit`` seconds, it fails."""
    task = asyncio.ensure_future(update.result())
    done, _ = await asyncio.wait({task}, timeout=limit)
    if not done:
        # Not awaited: cancelling the long poll can take a while. Its error is expected.
        task.add_done_callback(lambda t: t.cancelled() or t.exception())
        task.cancel()
        raise AssertionError(f"update {update.id} not answered in {limit}s")
    return task.result()


def drift_handle(env: WorkflowEnvironment, space: str, unit: str) -> WorkflowHandle[Any, Any]:
    return env.client.get_workflow_handle_for(DriftWorkflow.run, drift_id(space, unit))


async def idle(env: WorkflowEnvironment, space: str, unit: str) -> None:
    """Until a unit's drift loop has no task in flight (between checks)."""
    handle = drift_handle(env, space, unit)

    async def busy() -> bool:
        # One read, the history: a describe and a history read in turn can straddle a
        # task that schedules an activity (neither shows it), and a run terminated with
        # an activity in flight keeps the time-skipping server's clock locked for good.
        return in_flight([e async for e in handle.fetch_history_events()])

    await eventually(busy, lambda b: not b, what=f"{space}/{unit} idle")


async def terminate_when_idle(env: WorkflowEnvironment, space: str, unit: str) -> None:
    """Terminate a unit's drift loop between its tasks: the time-skipping server keeps
    the clock locked for a task of a workflow terminated while it runs."""
    await idle(env, space, unit)
    await drift_handle(env, space, unit).terminate("not under test")


async def status_of(env: WorkflowEnvironment, space: str, unit: str) -> DriftStatus:
    handle = drift_handle(env, space, unit)
    st: DriftStatus = await query_under_load(lambda: handle.query(DriftWorkflow.get_status))
    return st


async def first_check(store: SqlStore, space: str, unit: str) -> None:
    """Until the unit's drift loop has checked once (it records every check).

    Waits on the authority, not with queries: a query racing a continue-as-new can
    hang on the time-skipping server.
    """

    async def records() -> list[DriftRecord]:
        return await asyncio.to_thread(store.list_drift, space, unit)

    await eventually(records, bool, what=f"first drift check of {space}/{unit}")


async def go_live(
    env: WorkflowEnvironment,
    worker: Worker,
    store: SqlStore,
    repo: AuthoringRepo,
    space: str,
) -> list[str]:
    """Publish a space and apply every unit until Ready; wait for each drift loop's first
    check (a successful apply starts the loop and asks it to check)."""
    await publish(env, worker, repo, spaces=[space])
    units = [u.slug for u in store.list_units(space)]
    outcomes = await asyncio.gather(*(apply_and_wait(env, worker, space, u, 1) for u in units))
    assert [o.state for o in outcomes] == ["ready"] * len(units), outcomes
    for u in units:
        await first_check(store, space, u)
    return units


async def check_now(env: WorkflowEnvironment, space: str, unit: str) -> DriftStatus:
    """``check_now``, sent again (as the CLI does) if it meets a run continuing as new."""
    handle = drift_handle(env, space, unit)
    st: DriftStatus = await retry_completed(
        lambda: handle.execute_update(DriftWorkflow.check_now, CheckRequest(reason="test"))
    )
    return st


def claim_path(sandbox: Sandbox, data: dict[str, Any]) -> str:
    res = sandbox.kube.resource(str(data["apiVersion"]), str(data["kind"]))
    assert res is not None
    meta = data["metadata"]
    return res.path(meta["name"], meta.get("namespace") or "default")


def live_claim(sandbox: Sandbox, store: SqlStore, space: str, unit: str) -> dict[str, Any]:
    rev = store.get_revision(space, unit, 1)
    assert rev is not None
    status, body = sandbox.kube.request("GET", claim_path(sandbox, rev.data))
    assert status == 200
    return body


def patch_claim(
    sandbox: Sandbox,
    store: SqlStore,
    space: str,
    unit: str,
    patch: dict[str, Any],
    *,
    manager: str = "kubectl-patch",
) -> dict[str, Any]:
    """``kubectl patch --type merge`` of the live claim (kubectl's field manager is
    ``kubectl-patch``), through the official client."""
    rev = store.get_revision(space, unit, 1)
    assert rev is not None
    res = sandbox.kube.resource(str(rev.data["apiVersion"]), str(rev.data["kind"]))
    assert res is not None
    body: dict[str, Any] = client.CustomObjectsApi(sandbox.kube.api).patch_namespaced_custom_object(
        res.group,
        res.version,
        rev.data["metadata"].get("namespace") or "default",
        res.plural,
        rev.data["metadata"]["name"],
        patch,
        field_manager=manager,
        _content_type="application/merge-patch+json",
    )
    return body


async def wait_applied(
    env: WorkflowEnvironment, store: SqlStore, space: str, unit: str, revision: int
) -> None:
    """Until an apply of ``revision`` (e.g. the sync apply a capture asks for) is Ready."""
    handle = env.client.get_workflow_handle_for(ApplyWorkflow.run, apply_id(space, unit))

    async def outcomes() -> list[tuple[int, str]]:
        status = await query_under_load(lambda: handle.query(ApplyWorkflow.status))
        return [(o.revision, o.state) for o in status.outcomes]

    await eventually(outcomes, lambda o: (revision, "ready") in o, what=f"apply of r{revision}")
    unit_record = store.get_unit(space, unit)
    assert unit_record is not None
    assert unit_record.last_applied_revision == revision


def numbers(store: SqlStore, space: str, unit: str) -> list[int]:
    return [r.number for r in store.list_revisions(space, unit)]


def lambda_memory(sandbox: Sandbox, function: str) -> int:
    config = sandbox.aws.lambda_().get_function_configuration(FunctionName=function)
    return int(config["MemorySize"])


async def claim_spec(sandbox: Sandbox, store: SqlStore, space: str, unit: str) -> dict[str, Any]:
    spec: dict[str, Any] = live_claim(sandbox, store, space, unit)["spec"]
    return spec


async def memories(sandbox: Sandbox) -> tuple[int, int]:
    return lambda_memory(sandbox, MW_API), lambda_memory(sandbox, MW_WRITER)


# ---- the loop ------------------------------------------------------------------------------


@SQLITE_ONLY
async def test_days_of_ticks_without_drift_write_no_revision(
    env: WorkflowEnvironment,
    cluster_worker: Worker,
    store: SqlStore,
    sandbox: Sandbox,
    orders: AuthoringRepo,
) -> None:
    """Two days of orders-staging's 10-minute ticks (a kind no AWS observer reads, so each
    check costs little real time)."""
    units = await go_live(env, cluster_worker, store, orders, STAGING)
    assert STAGING_DB in units
    for other in set(units) - {STAGING_DB}:  # one loop ticking keeps the test short
        await terminate_when_idle(env, STAGING, other)
    # Already running since the apply; starting it again joins that run.
    await signal_drift(env.client, cluster_worker.task_queue, STAGING, STAGING_DB, signal=None)
    handle = drift_handle(env, STAGING, STAGING_DB)
    first_run = (await handle.describe()).run_id
    before = await status_of(env, STAGING, STAGING_DB)

    # 288 ticks. In steps: one 2-day skip is a single request to the time-skipping
    # server, which under CPU load can time out while it runs every timer in between.
    for _ in range(12):
        await skip(env, timedelta(hours=4))
    await skip(env, timedelta(minutes=3))

    after = await status_of(env, STAGING, STAGING_DB)
    # One check per tick: many, and no more than the interval allows.
    assert 284 <= after.checks - before.checks <= 290, after
    assert (after.state, after.captures, after.last_revision) == ("in-sync", 0, None)
    assert after.interval_seconds == 600
    assert numbers(store, STAGING, STAGING_DB) == [1]
    unit = store.get_unit(STAGING, STAGING_DB)
    assert unit is not None
    assert (unit.head_revision, unit.live_revision, unit.version) == (1, 1, 1)
    [record] = store.list_drift(STAGING, STAGING_DB)
    assert (record.state, record.fields, record.revision) == ("in-sync", [], 1)

    # More checks than one run may hold: it continued as new, with its state, and no
    # run's history grew past the bound.
    desc = await handle.describe()
    assert desc.run_id != first_run
    assert desc.status is not None
    assert desc.status.name == "RUNNING"
    first = await env.client.get_workflow_handle(
        drift_id(STAGING, STAGING_DB), run_id=first_run
    ).fetch_history()
    current = await handle.fetch_history()
    assert first.events[-1].event_type == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_CONTINUED_AS_NEW
    assert len(first.events) < 4_000
    assert len(current.events) < 4_000


@pytest.fixture
async def small_runs_worker(
    env: WorkflowEnvironment,
    store: SqlStore,
    cache: SourceCache,
    executor: ThreadPoolExecutor,
    sandbox: Sandbox,
    monkeypatch: pytest.MonkeyPatch,
    request: pytest.FixtureRequest,
    check_starts: list[str],
) -> AsyncIterator[Worker]:
    """A cluster worker whose drift loops continue as new after 3 checks (or the
    indirect parameter's number); every drift check attempt is noted in ``check_starts``.

    The workflow sandbox re-imports workflow modules for every run; passing
    ``workflows.drift`` through makes the runs see the patched constant.
    """
    monkeypatch.setattr(workflows.drift, "CHECKS_PER_RUN", getattr(request, "param", 3))
    task_queue = f"tq-{uuid.uuid4()}"
    runner = SandboxedWorkflowRunner(
        restrictions=SandboxRestrictions.default.with_passthrough_modules("workflows.drift")
    )
    w = Worker(
        env.client,
        task_queue=task_queue,
        workflows=list(WORKFLOWS),
        activities=noting_checks(
            activities(store, cache, sandbox.kube, env.client, task_queue), check_starts
        ),
        activity_executor=executor,
        workflow_runner=runner,
    )
    async with w:
        yield w


@pytest.fixture
def check_starts() -> list[str]:
    return []


def noting_checks(acts: list[Any], starts: list[str]) -> list[Any]:
    """The worker's activities, with ``drift.check`` noting each attempt in ``starts``
    (a local activity never shows among a workflow's pending activities)."""
    original = next(
        a
        for a in acts
        if isinstance(getattr(a, "__self__", None), DriftActivities) and a.__name__ == "check"
    )

    @activity.defn(name="drift.check")
    def check(inp: DriftCheckInput) -> DriftCheckResult:
        starts.append(inp.unit)
        result: DriftCheckResult = original(inp)
        return result

    return [check if a is original else a for a in acts]


@SQLITE_ONLY
async def test_continue_as_new_keeps_checks_captures_and_last_revision(
    env: WorkflowEnvironment,
    small_runs_worker: Worker,
    store: SqlStore,
    sandbox: Sandbox,
    messagewall: AuthoringRepo,
) -> None:
    await go_live(env, small_runs_worker, store, messagewall, MW)
    patch_claim(sandbox, store, MW, MW, {"spec": {"lambdaMemory": 512}})
    captured = await check_now(env, MW, MW)
    assert (captured.state, captured.captures, captured.last_revision) == ("captured", 1, 2)
    await wait_applied(env, store, MW, MW, 2)
    # The finished sync apply asks for a check too; let it happen before time moves.
    await eventually(
        lambda: asyncio.to_thread(store.list_drift, MW, MW),
        lambda records: records[0].state == "in-sync",
        what="the check after the sync apply",
    )
    await idle(env, MW, MW)  # queries racing a continue-as-new can hang the test server
    handle = drift_handle(env, MW, MW)
    first_run = (await handle.describe()).run_id
    before = await status_of(env, MW, MW)

    await skip(env, timedelta(minutes=52))  # 10 ticks: at least three runs

    after = await status_of(env, MW, MW)
    assert (await handle.describe()).run_id != first_run
    assert after.checks >= before.checks + 9, after
    assert (after.captures, after.last_revision, after.state) == (1, 2, "in-sync")
    assert after.last_drift is not None
    assert [f.path for f in after.last_drift.fields] == ["spec.lambdaMemory"]
    assert numbers(store, MW, MW) == [1, 2]
    first = await env.client.get_workflow_handle(drift_id(MW, MW), run_id=first_run).fetch_history()
    assert first.events[-1].event_type == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_CONTINUED_AS_NEW
    assert len(first.events) < 4_000


async def check_in_flight(sandbox: Sandbox, worker: Worker, check_starts: list[str]) -> None:
    """Ask for a check and keep it in flight for a few seconds: it cannot reach the API
    and retries until the API is back (about 3 s of backoff).

    These loops continue as new after every check. A plain signal that meets that
    hand-over on the time-skipping server fails with "Completed workflow" (the stress run
    caught it), so this asks as a sweep and the CLI do: ``signal_drift``, sent again on
    that answer.
    """
    before = len(check_starts)
    sandbox.peer.refuse_connections(2.0)
    await signal_drift(worker.client, worker.task_queue, MW, MW, "test")

    async def started() -> int:
        return len(check_starts)

    await eventually(started, lambda n: n > before, what="the check in flight")


@SQLITE_ONLY
@pytest.mark.parametrize("small_runs_worker", [1], indirect=True)
async def test_capture_now_during_the_last_check_of_a_run_is_answered(
    env: WorkflowEnvironment,
    small_runs_worker: Worker,
    store: SqlStore,
    sandbox: Sandbox,
    messagewall: AuthoringRepo,
    check_starts: list[str],
) -> None:
    """A ``capture_now`` that arrives while a run's last check is in flight waits for the
    next check; the run must not wait for that handler before continuing as new."""
    await go_live(env, small_runs_worker, store, messagewall, MW)
    handle = drift_handle(env, MW, MW)
    await check_in_flight(sandbox, small_runs_worker, check_starts)

    # Sent again if it meets a run that has just continued as new, as the CLI does.
    update = await retry_completed(
        lambda: handle.start_update(
            DriftWorkflow.capture_now,
            CaptureRequest(tag="break-glass", incident="INC-9"),
            wait_for_stage=WorkflowUpdateStage.ACCEPTED,
        )
    )
    outcome = await update_result(update)

    assert outcome.captured is False  # nothing drifted
    assert numbers(store, MW, MW) == [1]


@SQLITE_ONLY
@pytest.mark.parametrize("small_runs_worker", [1], indirect=True)
async def test_a_sweeps_check_during_the_last_check_of_a_run_is_recorded_for_the_sweep(
    env: WorkflowEnvironment,
    small_runs_worker: Worker,
    store: SqlStore,
    sandbox: Sandbox,
    messagewall: AuthoringRepo,
    check_starts: list[str],
) -> None:
    """A sweep's ``check`` that arrives while a run's last check is in flight is served by
    the next run, which must record it under the sweep (or the sweep never counts it)."""
    await go_live(env, small_runs_worker, store, messagewall, MW)
    await check_in_flight(sandbox, small_runs_worker, check_starts)

    await signal_drift(env.client, small_runs_worker.task_queue, MW, MW, "sweep", "sweep-A")

    async def counted() -> dict[str, int]:
        return await asyncio.to_thread(store.count_drift, "sweep-A")

    try:
        await eventually(counted, lambda c: c == {"in-sync": 1}, what="the sweep's count")
    except AssertionError as e:
        raise AssertionError(f"{e}; the unit's record: {store.list_drift(MW)}") from None


# ---- signals and updates -----------------------------------------------------------------


@SQLITE_ONLY
async def test_pause_resume_check_and_check_now(
    env: WorkflowEnvironment,
    cluster_worker: Worker,
    store: SqlStore,
    sandbox: Sandbox,
    messagewall: AuthoringRepo,
) -> None:
    await go_live(env, cluster_worker, store, messagewall, MW)
    handle = drift_handle(env, MW, MW)

    await handle.signal(DriftWorkflow.pause)
    paused = await eventually(
        lambda: status_of(env, MW, MW), lambda st: st.state == "paused", what="paused"
    )
    assert paused.paused
    await skip(env, timedelta(hours=1, minutes=2))  # 12 ticks while paused
    still = await status_of(env, MW, MW)
    assert (still.state, still.paused, still.checks) == ("paused", True, paused.checks)
    [record] = store.list_drift(MW, MW)
    assert record.state == "paused"

    await handle.signal(DriftWorkflow.resume)
    resumed = await eventually(
        lambda: status_of(env, MW, MW),
        lambda st: st.checks > paused.checks,
        what="a check after resume",
    )
    assert (resumed.state, resumed.paused, resumed.checks) == ("in-sync", False, paused.checks + 1)

    await handle.signal(DriftWorkflow.check, CheckRequest(reason="test"))
    checked = await eventually(
        lambda: status_of(env, MW, MW),
        lambda st: st.checks > resumed.checks,
        what="a check after the check signal",
    )
    assert checked.checks == resumed.checks + 1

    fresh = await check_now(env, MW, MW)
    assert fresh.checks == checked.checks + 1
    assert fresh.state == "in-sync"
    assert fresh.last_check is not None
    assert checked.last_check is not None
    assert fresh.last_check > checked.last_check
    assert numbers(store, MW, MW) == [1]


async def test_a_pause_that_arrives_with_the_start_is_kept(
    env: WorkflowEnvironment, worker: Worker, store: SqlStore, messagewall: AuthoringRepo
) -> None:
    """``tributary drift pause`` on a unit without a running loop starts one and pauses it;
    a pause delivered in the loop's first workflow task must not be lost."""
    await publish(env, worker, messagewall, spaces=[MW])
    await env.client.start_workflow(
        "DriftWorkflow",
        DriftInput(space=MW, unit=MW),
        id=drift_id(MW, MW),
        task_queue=worker.task_queue,
        start_signal="pause",
    )

    await skip(env, timedelta(minutes=32))

    st = await status_of(env, MW, MW)
    assert st.paused, st
    assert (st.state, st.checks) == ("paused", 0)


# ---- capture -----------------------------------------------------------------------------


@SQLITE_ONLY
async def test_kubectl_patch_is_captured_once_with_the_field_and_manager(
    env: WorkflowEnvironment,
    cluster_worker: Worker,
    store: SqlStore,
    sandbox: Sandbox,
    messagewall: AuthoringRepo,
) -> None:
    await go_live(env, cluster_worker, store, messagewall, MW)
    patch_claim(sandbox, store, MW, MW, {"spec": {"lambdaMemory": 512}})

    st = await check_now(env, MW, MW)

    assert (st.state, st.captures, st.last_revision) == ("captured", 1, 2)
    assert numbers(store, MW, MW) == [1, 2]
    r1, r2 = store.list_revisions(MW, MW)
    assert r2.source == "drift-capture"
    assert r2.data["spec"] == {**r1.data["spec"], "lambdaMemory": 512}
    assert r2.data["metadata"] == r1.data["metadata"]
    assert r2.tags["source"] == "kubernetes-live"
    assert r2.tags["workflow_id"] == drift_id(MW, MW)
    assert r2.tags["fields"] == "spec.lambdaMemory"
    datetime.fromisoformat(r2.tags["capture_time"])
    assert "spec.lambdaMemory" in r2.description
    assert "kubectl-patch" in r2.description
    unit = store.get_unit(MW, MW)
    assert unit is not None
    assert (unit.head_revision, unit.live_revision) == (2, 2)
    [record] = store.list_drift(MW, MW)
    assert (record.state, record.revision) == ("captured", 2)
    [field] = record.fields
    assert (field.path, field.authority, field.live, field.manager) == (
        "spec.lambdaMemory",
        128,
        512,
        "kubectl-patch",
    )

    # The capture asks for a sync apply (nothing to change: the Claim says 512 already).
    await wait_applied(env, store, MW, MW, 2)
    assert (await claim_spec(sandbox, store, MW, MW))["lambdaMemory"] == 512

    # The same drift seen again is no new drift.
    again = await check_now(env, MW, MW)
    assert (again.state, again.captures, again.last_revision) == ("in-sync", 1, 2)
    assert numbers(store, MW, MW) == [1, 2]
    # …and the authority keeps what changed, by whom, and the revision that captured it.
    [record] = store.list_drift(MW, MW)
    assert (record.state, record.fields) == ("in-sync", [])
    assert record.last_drift is not None
    assert record.last_drift.revision == 2
    assert [(f.path, f.authority, f.live, f.manager) for f in record.last_drift.fields] == [
        ("spec.lambdaMemory", 128, 512, "kubectl-patch")
    ]


@SQLITE_ONLY
async def test_lambda_memory_changed_in_aws_is_captured_and_synced_back(
    env: WorkflowEnvironment,
    cluster_worker: Worker,
    store: SqlStore,
    sandbox: Sandbox,
    messagewall: AuthoringRepo,
) -> None:
    await go_live(env, cluster_worker, store, messagewall, MW)
    sandbox.aws.lambda_().update_function_configuration(FunctionName=MW_API, MemorySize=256)
    sandbox.crossplane.observe_now()  # the provider's poll: AWS into status.atProvider

    st = await check_now(env, MW, MW)

    assert (st.state, st.last_revision) == ("captured", 2)
    r2 = store.list_revisions(MW, MW)[-1]
    assert (r2.number, r2.source) == (2, "drift-capture")
    assert r2.tags["source"] == "aws-live"
    assert r2.tags["fields"] == "spec.lambdaMemory"
    assert r2.data["spec"]["lambdaMemory"] == 256
    assert f"aws (lambda {MW_API})" in r2.description
    # The sync apply makes the Claim say what runs; Crossplane then converges both Lambdas.
    await eventually(
        lambda: claim_spec(sandbox, store, MW, MW),
        lambda spec: spec["lambdaMemory"] == 256,
        what="the claim saying 256",
    )
    await wait_applied(env, store, MW, MW, 2)
    await eventually(lambda: memories(sandbox), lambda m: m == (256, 256), what="both Lambdas")
    again = await check_now(env, MW, MW)
    assert (again.state, again.captures) == ("in-sync", 1)
    assert numbers(store, MW, MW) == [1, 2]


@SQLITE_ONLY
async def test_another_apps_queue_edited_in_aws_is_captured_through_its_composition(
    env: WorkflowEnvironment,
    cluster_worker: Worker,
    store: SqlStore,
    sandbox: Sandbox,
    orders: AuthoringRepo,
) -> None:
    """Not the message wall: the orders fixture's QueueClaim, composed by its own
    Composition into an SQS queue. Nothing in Tributary knows this app; the drift comes
    from the queue's managed resource and maps back through the Composition's patches."""
    space, unit = "orders-production", "production-orders-queue"
    units = await go_live(env, cluster_worker, store, orders, space)
    assert unit in units
    sqs = sandbox.aws.sqs()
    url = sqs.get_queue_url(QueueName="orders-production-orders-queue.fifo")["QueueUrl"]
    assert sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["VisibilityTimeout"])[
        "Attributes"
    ] == {"VisibilityTimeout": "60"}
    # During an incident, in the AWS console: a longer visibility timeout, more receives
    # (a tag the Composition writes through a convert transform), and a retention period
    # that is the platform's (the Composition's base), not the claim's.
    sqs.set_queue_attributes(
        QueueUrl=url, Attributes={"VisibilityTimeout": "120", "MessageRetentionPeriod": "86400"}
    )
    sqs.tag_queue(QueueUrl=url, Tags={"max-receive-count": "9"})
    sandbox.crossplane.observe_now()  # the provider's poll: AWS into status.atProvider

    st = await check_now(env, space, unit)

    assert st.state == "captured"
    revision = store.list_revisions(space, unit)[-1]
    assert (revision.number, revision.source) == (2, "drift-capture")
    assert revision.tags["source"] == "aws-live"
    assert revision.data["spec"]["visibilityTimeoutSeconds"] == 120
    assert revision.data["spec"]["maxReceiveCount"] == 9  # an integer again, as the XRD says
    assert "messageRetentionSeconds" not in str(revision.data)  # never captured into a claim
    assert st.last_drift is not None
    fields = {f.path: f for f in st.last_drift.fields}
    assert (
        fields["spec.visibilityTimeoutSeconds"].authority,
        fields["spec.visibilityTimeoutSeconds"].live,
    ) == (60, 120)
    assert fields["spec.visibilityTimeoutSeconds"].manager == (
        "aws (sqs orders-production-orders-queue)"
    )
    retention = fields[
        'managed["Queue/orders-production-orders-queue"].spec.forProvider.messageRetentionSeconds'
    ]
    assert (retention.authority, retention.live, retention.capturable) == (345600, 86400, False)


@SQLITE_ONLY
async def test_a_report_space_records_drift_until_a_break_glass_capture(
    env: WorkflowEnvironment,
    cluster_worker: Worker,
    store: SqlStore,
    sandbox: Sandbox,
    orders: AuthoringRepo,
) -> None:
    await go_live(env, cluster_worker, store, orders, STAGING)
    patch_claim(sandbox, store, STAGING, STAGING_DB, {"spec": {"storageGB": 100}})

    # drift: report records the drift and writes nothing ...
    st = await check_now(env, STAGING, STAGING_DB)
    assert (st.state, st.captures) == ("drifted", 0)
    assert st.last_drift is not None
    assert [(f.path, f.authority, f.live, f.manager) for f in st.last_drift.fields] == [
        ("spec.storageGB", 50, 100, "kubectl-patch")
    ]
    assert numbers(store, STAGING, STAGING_DB) == [1]
    [record] = store.list_drift(STAGING, STAGING_DB)
    assert record.state == "drifted"
    assert [f.path for f in record.fields] == ["spec.storageGB"]
    await skip(env, timedelta(minutes=27))  # two more ticks: still nothing written
    assert numbers(store, STAGING, STAGING_DB) == [1]

    # ... until an operator captures it, tagged.
    outcome: CaptureOutcome = await drift_handle(env, STAGING, STAGING_DB).execute_update(
        DriftWorkflow.capture_now,
        CaptureRequest(tag="break-glass", incident="INC-7", by=APPROVER),
    )

    assert (outcome.captured, outcome.revision) == (True, 2)
    r2 = store.list_revisions(STAGING, STAGING_DB)[-1]
    assert (r2.number, r2.source, r2.author) == (2, "break-glass", APPROVER)
    assert (r2.tags["tag"], r2.tags["incident"]) == ("break-glass", "INC-7")
    assert r2.tags["source"] == "kubernetes-live"
    assert r2.description.startswith("drift-capture: break-glass (INC-7): spec.storageGB=100")
    assert r2.data["spec"]["storageGB"] == 100
    unit = store.get_unit(STAGING, STAGING_DB)
    assert unit is not None
    assert (unit.head_revision, unit.live_revision) == (2, 2)
    # The other unit of the space is untouched.
    assert numbers(store, STAGING, "staging-orders-queue") == [1]


@SQLITE_ONLY
async def test_tagging_an_edit_the_loop_already_captured_relabels_that_capture(
    env: WorkflowEnvironment,
    cluster_worker: Worker,
    store: SqlStore,
    sandbox: Sandbox,
    messagewall: AuthoringRepo,
) -> None:
    await go_live(env, cluster_worker, store, messagewall, MW)
    patch_claim(sandbox, store, MW, MW, {"spec": {"lambdaTimeout": 30}})
    assert (await check_now(env, MW, MW)).last_revision == 2

    outcome: CaptureOutcome = await drift_handle(env, MW, MW).execute_update(
        DriftWorkflow.capture_now,
        CaptureRequest(tag="break-glass", incident="INC-7", by=APPROVER),
    )

    assert (outcome.captured, outcome.revision) == (True, 2)
    assert numbers(store, MW, MW) == [1, 2]
    r2 = store.list_revisions(MW, MW)[-1]
    assert r2.source == "break-glass"
    assert (r2.tags["tag"], r2.tags["incident"]) == ("break-glass", "INC-7")
    assert r2.tags["classified_by"] == APPROVER
    # The capture's own tags stay.
    assert (r2.tags["source"], r2.tags["fields"]) == ("kubernetes-live", "spec.lambdaTimeout")
    assert r2.data["spec"]["lambdaTimeout"] == 30


# ---- revert and report -------------------------------------------------------------------


@SQLITE_ONLY
async def test_revert_space_puts_the_claim_back(
    env: WorkflowEnvironment,
    cluster_worker: Worker,
    store: SqlStore,
    sandbox: Sandbox,
    messagewall: AuthoringRepo,
) -> None:
    config = yaml.safe_load(messagewall.read("tributary.yaml"))
    config["spaces"][MW]["drift"] = "revert"
    messagewall.write("tributary.yaml", yaml.safe_dump(config, sort_keys=False))
    messagewall.commit("dev-east: revert drift")
    await go_live(env, cluster_worker, store, messagewall, MW)
    patch_claim(sandbox, store, MW, MW, {"spec": {"lambdaMemory": 512}})

    st = await check_now(env, MW, MW)

    # Asked for, not done: a revert counts once a later check agrees.
    assert st.state == "reverting"
    assert st.captures == 0
    [record] = store.list_drift(MW, MW)
    assert record.state == "reverting"
    assert [f.path for f in record.fields] == ["spec.lambdaMemory"]
    await eventually(
        lambda: claim_spec(sandbox, store, MW, MW),
        lambda spec: spec["lambdaMemory"] == 128,
        what="the claim back at 128",
    )
    await eventually(lambda: memories(sandbox), lambda m: m == (128, 128), what="both Lambdas")
    assert numbers(store, MW, MW) == [1]
    again = await eventually(
        lambda: check_now(env, MW, MW), lambda s: s.state != "reverting", what="a check"
    )
    assert again.state in ("reverted", "in-sync")  # the apply's own check may have agreed
    assert (await check_now(env, MW, MW)).state == "in-sync"
    assert numbers(store, MW, MW) == [1]


# ---- ignore, and the end of the loop -----------------------------------------------------


@SQLITE_ONLY
async def test_an_ignored_path_never_drifts(
    env: WorkflowEnvironment,
    cluster_worker: Worker,
    store: SqlStore,
    sandbox: Sandbox,
    messagewall: AuthoringRepo,
) -> None:
    await go_live(env, cluster_worker, store, messagewall, MW)
    patch_claim(sandbox, store, MW, MW, {"metadata": {"annotations": {IGNORED: '{"spec": {}}'}}})
    assert live_claim(sandbox, store, MW, MW)["metadata"]["annotations"][IGNORED]

    st = await check_now(env, MW, MW)

    assert (st.state, st.captures, st.last_drift) == ("in-sync", 0, None)
    assert numbers(store, MW, MW) == [1]
    [record] = store.list_drift(MW, MW)
    assert (record.state, record.fields) == ("in-sync", [])


@pytest.mark.parametrize("state", ["orphaned", "deleted"])
async def test_the_loop_ends_when_its_unit_is_no_longer_active(
    env: WorkflowEnvironment,
    worker: Worker,
    store: SqlStore,
    messagewall: AuthoringRepo,
    state: str,
) -> None:
    await publish(env, worker, messagewall, spaces=[MW])
    await signal_drift(env.client, worker.task_queue, MW, MW, signal=None)
    store.commit([], states=[UnitStateChange(space=MW, slug=MW, state=state)])  # type: ignore[arg-type]
    handle = drift_handle(env, MW, MW)
    await handle.signal(DriftWorkflow.check, CheckRequest(reason="test"))

    result: DriftStatus = await asyncio.wait_for(handle.result(), timeout=HANG)

    assert result.state == "paused"
    assert "orphaned or deleted" in result.message
    desc = await handle.describe()
    assert desc.status is not None
    assert desc.status.name == "COMPLETED"


async def test_the_loop_ends_when_its_unit_is_gone_from_the_authority(
    env: WorkflowEnvironment, worker: Worker, store: SqlStore
) -> None:
    space, unit = f"gone-{uuid.uuid4().hex[:8]}", "nothing-here"
    wid = await signal_drift(env.client, worker.task_queue, space, unit, "test")
    handle = env.client.get_workflow_handle_for(DriftWorkflow.run, wid)

    result: DriftStatus = await asyncio.wait_for(handle.result(), timeout=HANG)

    assert result.state == "failed"
    assert "does not exist" in result.message


# ---- issue 9: trust the loop ---------------------------------------------------------------


PROD = "messagewall-prod-east"


@SQLITE_ONLY
async def test_a_capture_over_a_change_awaiting_approval_keeps_it_waiting(
    env: WorkflowEnvironment,
    cluster_worker: Worker,
    store: SqlStore,
    sandbox: Sandbox,
    messagewall: AuthoringRepo,
) -> None:
    """Defect 2: prod waits for approval of revision 2 when a kubectl edit is captured.
    The capture is live; the pending change is re-based onto it as the new head and
    still waits at its gate; nothing is applied and the wait is not superseded."""
    [unit] = await go_live(env, cluster_worker, store, messagewall, PROD)
    r1 = store.get_revision(PROD, unit, 1)
    assert r1 is not None
    pending = copy.deepcopy(r1.data)
    pending["spec"]["lambdaTimeout"] = 45
    [change] = store.commit(
        [
            UnitChange(
                space=PROD,
                slug=unit,
                expected_version=1,
                data=pending,
                description="timeout 45",
                source="ci",
            )
        ]
    )
    assert change.revision == 2
    _, request_id = await ask(env, cluster_worker, PROD, unit, 2)
    await eventually(
        lambda: apply_status(env, PROD, unit),
        lambda s: s.current is not None and s.current.state == "awaiting-approval",
        what="revision 2 awaiting approval",
    )
    patch_claim(sandbox, store, PROD, unit, {"spec": {"lambdaMemory": 1024}})

    st = await check_now(env, PROD, unit)

    assert (st.state, st.last_revision) == ("captured", 3)
    u = store.get_unit(PROD, unit)
    assert u is not None
    assert (u.head_revision, u.live_revision) == (4, 3)
    r3, r4 = store.list_revisions(PROD, unit)[2:]
    assert r3.data["spec"] == {**r1.data["spec"], "lambdaMemory": 1024}
    assert r4.data["spec"] == {**r1.data["spec"], "lambdaMemory": 1024, "lambdaTimeout": 45}
    assert r4.approvals == []
    [record] = store.list_drift(PROD, unit)
    assert record.last_drift is not None
    assert (record.last_drift.revision, record.last_drift.rebased_revision) == (3, 4)
    # The waiting request now stands for the re-based revision, with its waiter, and
    # still waits at the gate: the capture applied nothing and approved nothing.
    status = await eventually(
        lambda: apply_status(env, PROD, unit),
        lambda s: s.current is not None and s.current.revision == 4,
        what="the request following revision 4",
    )
    assert status.current is not None
    assert status.current.state == "awaiting-approval"
    assert request_id in status.current.request_ids
    assert all(request_id not in o.request_ids for o in status.outcomes)
    assert [(o.revision, o.state) for o in status.outcomes if o.revision > 1] == [(2, "superseded")]
    assert (await claim_spec(sandbox, store, PROD, unit))["lambdaTimeout"] == 30
    u = store.get_unit(PROD, unit)
    assert u is not None
    assert u.live_revision == 3

    # Approved, the re-based head runs both: the developer's change and the edit.
    outcome = await apply_and_wait(env, cluster_worker, PROD, unit, 4)
    assert outcome.state == "ready"
    spec = await claim_spec(sandbox, store, PROD, unit)
    assert (spec["lambdaMemory"], spec["lambdaTimeout"]) == (1024, 45)


@SQLITE_ONLY
async def test_a_capture_over_a_head_nobody_asked_to_apply_applies_nothing(
    env: WorkflowEnvironment,
    cluster_worker: Worker,
    store: SqlStore,
    sandbox: Sandbox,
    messagewall: AuthoringRepo,
) -> None:
    """Published without --apply: the re-based head waits for someone to apply it."""
    await go_live(env, cluster_worker, store, messagewall, MW)
    r1 = store.get_revision(MW, MW, 1)
    assert r1 is not None
    pending = copy.deepcopy(r1.data)
    pending["spec"]["lambdaTimeout"] = 45
    store.commit(
        [
            UnitChange(
                space=MW, slug=MW, expected_version=1, data=pending, description="45",
                source="ci",
            )
        ]
    )  # fmt: skip
    patch_claim(sandbox, store, MW, MW, {"spec": {"lambdaMemory": 512}})

    st = await check_now(env, MW, MW)

    assert (st.state, st.last_revision) == ("captured", 3)
    u = store.get_unit(MW, MW)
    assert u is not None
    assert (u.head_revision, u.live_revision, u.last_applied_revision) == (4, 3, 1)
    status = await apply_status(env, MW, MW)
    assert [o.revision for o in status.outcomes if o.revision != 1] == []
    assert status.current is None
    assert status.pending == []
    assert (await claim_spec(sandbox, store, MW, MW))["lambdaTimeout"] == 10


@SQLITE_ONLY
async def test_a_capture_conflicting_with_a_pending_change_keeps_the_head_and_says_so(
    env: WorkflowEnvironment,
    cluster_worker: Worker,
    store: SqlStore,
    sandbox: Sandbox,
    messagewall: AuthoringRepo,
) -> None:
    [unit] = await go_live(env, cluster_worker, store, messagewall, PROD)
    r1 = store.get_revision(PROD, unit, 1)
    assert r1 is not None
    pending = copy.deepcopy(r1.data)
    pending["spec"]["lambdaMemory"] = 512
    store.commit(
        [
            UnitChange(
                space=PROD, slug=unit, expected_version=1, data=pending, description="512",
                source="ci",
            )
        ]
    )  # fmt: skip
    patch_claim(sandbox, store, PROD, unit, {"spec": {"lambdaMemory": 1024}})

    outcome: CaptureOutcome = await drift_handle(env, PROD, unit).execute_update(
        DriftWorkflow.capture_now, CaptureRequest(tag="break-glass", incident="INC-3")
    )

    assert (outcome.captured, outcome.revision, outcome.head_revision) == (True, 3, 2)
    assert [c.path for c in outcome.conflicts] == ["spec.lambdaMemory"]
    u = store.get_unit(PROD, unit)
    assert u is not None
    assert (u.head_revision, u.live_revision) == (2, 3)
    [record] = store.list_drift(PROD, unit)
    assert record.last_drift is not None
    assert [c.path for c in record.last_drift.conflicts] == ["spec.lambdaMemory"]


@SQLITE_ONLY
async def test_a_head_a_capture_conflicts_with_is_neither_approved_nor_applied(
    env: WorkflowEnvironment,
    cluster_worker: Worker,
    store: SqlStore,
    sandbox: Sandbox,
    messagewall: AuthoringRepo,
) -> None:
    """Prod waits for approval of 512 when a kubectl edit sets 1024 and is captured: a
    conflict, head kept. Approving (or applying) the old head would put 512 back over
    the captured 1024 unseen; both are refused, naming the field, until a new revision
    (here a rollback to it, the operator's explicit choice) decides."""
    [unit] = await go_live(env, cluster_worker, store, messagewall, PROD)
    r1 = store.get_revision(PROD, unit, 1)
    assert r1 is not None
    pending = copy.deepcopy(r1.data)
    pending["spec"]["lambdaMemory"] = 512
    store.commit(
        [
            UnitChange(
                space=PROD, slug=unit, expected_version=1, data=pending, description="512",
                source="ci", author="dev@example.com",
            )
        ]
    )  # fmt: skip
    await ask(env, cluster_worker, PROD, unit, 2)
    await eventually(
        lambda: apply_status(env, PROD, unit),
        lambda s: s.current is not None and s.current.state == "awaiting-approval",
        what="revision 2 awaiting approval",
    )
    patch_claim(sandbox, store, PROD, unit, {"spec": {"lambdaMemory": 1024}})
    st = await check_now(env, PROD, unit)
    assert (st.state, st.last_revision) == ("captured", 3)
    u = store.get_unit(PROD, unit)
    assert u is not None
    assert (u.head_revision, u.live_revision) == (2, 3)
    handle = env.client.get_workflow_handle_for(ApplyWorkflow.run, apply_id(PROD, unit))

    with pytest.raises(WorkflowUpdateFailedError) as refused:
        await handle.execute_update(ApplyWorkflow.approve, ApproveInput(revision=2, by=APPROVER))

    cause = refused.value.cause
    assert isinstance(cause, ApplicationError)
    assert (cause.type, cause.non_retryable) == ("CaptureConflict", True)
    assert "revision 2 conflicts with drift capture r3" in cause.message
    assert "spec.lambdaMemory" in cause.message
    r2 = store.get_revision(PROD, unit, 2)
    assert r2 is not None
    assert r2.approvals == []
    status = await apply_status(env, PROD, unit)
    assert status.current is not None
    assert (status.current.revision, status.current.state) == (2, "awaiting-approval")
    assert (await claim_spec(sandbox, store, PROD, unit))["lambdaMemory"] == 1024

    # A rollback to revision 2 is the operator's decision to keep 512: a new revision,
    # free of the conflict, that goes through the gate like any other (its request
    # supersedes the wait for revision 2).
    rolled: RollbackResult = await env.client.execute_workflow(
        RollbackWorkflow.run,
        RollbackInput(space=PROD, unit=unit, to=2, author="oncall@example.com"),
        id=f"rollback-test-{uuid.uuid4()}",
        task_queue=cluster_worker.task_queue,
    )
    assert (rolled.action, rolled.revision) == ("rolled-back", 4)
    outcome = await apply_and_wait(env, cluster_worker, PROD, unit, 4)
    assert outcome.state == "ready"
    assert outcome.approved_by == APPROVER
    assert (await claim_spec(sandbox, store, PROD, unit))["lambdaMemory"] == 512


@SQLITE_ONLY
async def test_an_apply_of_a_head_a_capture_conflicts_with_is_refused(
    env: WorkflowEnvironment,
    cluster_worker: Worker,
    store: SqlStore,
    sandbox: Sandbox,
    messagewall: AuthoringRepo,
) -> None:
    """No gate in dev: a head published without --apply, then a live edit of the same
    field captured (a conflict). Applying that head later would overwrite the captured
    value; it fails as a conflict, naming the field, and nothing changes."""
    await go_live(env, cluster_worker, store, messagewall, MW)
    r1 = store.get_revision(MW, MW, 1)
    assert r1 is not None
    pending = copy.deepcopy(r1.data)
    pending["spec"]["lambdaMemory"] = 512
    store.commit(
        [
            UnitChange(
                space=MW, slug=MW, expected_version=1, data=pending, description="512",
                source="ci",
            )
        ]
    )  # fmt: skip
    patch_claim(sandbox, store, MW, MW, {"spec": {"lambdaMemory": 1024}})
    st = await check_now(env, MW, MW)
    assert (st.state, st.last_revision) == ("captured", 3)

    outcome = await apply_and_wait(env, cluster_worker, MW, MW, 2)

    assert (outcome.state, outcome.reason) == ("failed", "conflict")
    assert "revision 2 conflicts with drift capture r3" in outcome.message
    assert "spec.lambdaMemory" in outcome.message
    assert (await claim_spec(sandbox, store, MW, MW))["lambdaMemory"] == 1024
    u = store.get_unit(MW, MW)
    assert u is not None
    assert (u.head_revision, u.live_revision) == (2, 3)


@pytest.fixture
async def racing_worker(
    env: WorkflowEnvironment,
    store: SqlStore,
    cache: SourceCache,
    executor: ThreadPoolExecutor,
    sandbox: Sandbox,
) -> AsyncIterator[Worker]:
    """A cluster worker whose first capture loses a race: just before it writes, a
    change to the unit is applied (live moves on), as a publish --apply or a rollback
    finishing between the check and the capture would."""
    task_queue = f"tq-{uuid.uuid4()}"
    acts = activities(store, cache, sandbox.kube, env.client, task_queue)
    original = next(
        a
        for a in acts
        if isinstance(getattr(a, "__self__", None), DriftActivities) and a.__name__ == "capture"
    )
    raced: list[int] = []

    @activity.defn(name="drift.capture")
    def capture(inp: CaptureInput) -> CaptureResult:
        if not raced:
            unit = store.get_unit(inp.space, inp.unit)
            assert unit is not None
            assert unit.live_revision is not None
            live = store.get_revision(inp.space, inp.unit, unit.live_revision)
            assert live is not None
            data = copy.deepcopy(live.data)
            data["spec"]["lambdaTimeout"] = 20
            [out] = store.commit(
                [
                    UnitChange(
                        space=inp.space,
                        slug=inp.unit,
                        expected_version=unit.version,
                        data=data,
                        description="set timeout 20",
                        source="bulk",
                    )
                ]
            )
            store.record_applied(inp.space, inp.unit, out.revision, live=True)
            raced.append(out.revision)
        result: CaptureResult = original(inp)
        return result

    w = Worker(
        env.client,
        task_queue=task_queue,
        workflows=list(WORKFLOWS),
        activities=[capture if a is original else a for a in acts],
        activity_executor=executor,
    )
    async with w:
        yield w


@SQLITE_ONLY
async def test_a_capture_that_loses_a_race_re_plans_and_the_loop_lives(
    env: WorkflowEnvironment,
    racing_worker: Worker,
    store: SqlStore,
    sandbox: Sandbox,
    messagewall: AuthoringRepo,
) -> None:
    """Defect 4: a StaleVersion from the capture used to end the drift loop."""
    await go_live(env, racing_worker, store, messagewall, MW)
    patch_claim(sandbox, store, MW, MW, {"spec": {"lambdaMemory": 512}})

    st = await check_now(env, MW, MW)

    # Re-read and re-planned: what runs (512, and the claim's timeout 10) on top of r2.
    assert (st.state, st.last_revision) == ("captured", 3)
    r3 = store.list_revisions(MW, MW)[-1]
    assert (r3.data["spec"]["lambdaMemory"], r3.data["spec"]["lambdaTimeout"]) == (512, 10)
    desc = await drift_handle(env, MW, MW).describe()
    assert desc.status is not None
    assert desc.status.name == "RUNNING"


@SQLITE_ONLY
async def test_a_paused_loop_restarted_by_a_sweep_stays_paused(
    env: WorkflowEnvironment,
    cluster_worker: Worker,
    store: SqlStore,
    sandbox: Sandbox,
    messagewall: AuthoringRepo,
) -> None:
    """Defect 4: pause used to live only in the loop's memory."""
    await go_live(env, cluster_worker, store, messagewall, MW)
    handle = drift_handle(env, MW, MW)
    await handle.signal(DriftWorkflow.pause)
    await eventually(
        lambda: asyncio.to_thread(store.list_drift, MW, MW),
        lambda rs: bool(rs) and rs[0].paused,
        what="pause in the authority",
    )
    await terminate_when_idle(env, MW, MW)
    patch_claim(sandbox, store, MW, MW, {"spec": {"lambdaMemory": 512}})

    # A sweep (or the watch) starts the loop again and asks it to check.
    await signal_drift(env.client, cluster_worker.task_queue, MW, MW, "sweep")
    await skip(env, timedelta(minutes=11))

    st = await status_of(env, MW, MW)
    assert (st.paused, st.state, st.captures) == (True, "paused", 0)
    assert numbers(store, MW, MW) == [1]
    [record] = store.list_drift(MW, MW)
    assert (record.paused, record.state) == (True, "paused")

    await handle.signal(DriftWorkflow.resume)
    resumed = await eventually(
        lambda: status_of(env, MW, MW), lambda s: s.captures == 1, what="captured"
    )
    assert (resumed.paused, resumed.last_revision) == (False, 2)


@SQLITE_ONLY
async def test_tagging_long_after_a_capture_with_no_drift_now_labels_nothing(
    env: WorkflowEnvironment,
    cluster_worker: Worker,
    store: SqlStore,
    sandbox: Sandbox,
    messagewall: AuthoringRepo,
) -> None:
    """Defect 6: a tagged capture request with no current drift relabelled the last
    capture however old."""
    await go_live(env, cluster_worker, store, messagewall, MW)
    patch_claim(sandbox, store, MW, MW, {"spec": {"lambdaTimeout": 30}})
    assert (await check_now(env, MW, MW)).last_revision == 2
    await skip(env, timedelta(hours=3))  # many in-sync ticks: that drift is history

    outcome: CaptureOutcome = await drift_handle(env, MW, MW).execute_update(
        DriftWorkflow.capture_now,
        CaptureRequest(tag="break-glass", incident="INC-8", by=APPROVER),
    )

    assert (outcome.captured, outcome.action) == (False, "none")
    r2 = store.list_revisions(MW, MW)[-1]
    assert (r2.number, r2.source) == (2, "drift-capture")
    assert "incident" not in r2.tags


@pytest.fixture
async def held_capture_worker(
    env: WorkflowEnvironment,
    store: SqlStore,
    cache: SourceCache,
    executor: ThreadPoolExecutor,
    sandbox: Sandbox,
) -> AsyncIterator[tuple[Worker, threading.Event, threading.Event]]:
    """A cluster worker whose captures wait for ``release`` (``entered`` says one is
    waiting): a check is done, its capture is in flight."""
    task_queue = f"tq-{uuid.uuid4()}"
    acts = activities(store, cache, sandbox.kube, env.client, task_queue)
    original = next(
        a
        for a in acts
        if isinstance(getattr(a, "__self__", None), DriftActivities) and a.__name__ == "capture"
    )
    entered, release = threading.Event(), threading.Event()

    @activity.defn(name="drift.capture")
    def capture(inp: CaptureInput) -> CaptureResult:
        entered.set()
        release.wait(HANG)
        result: CaptureResult = original(inp)
        return result

    w = Worker(
        env.client,
        task_queue=task_queue,
        workflows=list(WORKFLOWS),
        activities=[capture if a is original else a for a in acts],
        activity_executor=executor,
    )
    async with w:
        try:
            yield w, entered, release
        finally:
            release.set()  # before the worker's shutdown, which waits for the capture


@SQLITE_ONLY
async def test_check_now_answers_with_a_check_that_started_after_it(
    env: WorkflowEnvironment,
    held_capture_worker: tuple[Worker, threading.Event, threading.Event],
    store: SqlStore,
    sandbox: Sandbox,
    messagewall: AuthoringRepo,
) -> None:
    """Defect 9: a check_now that arrived while an earlier check was still being acted
    on (its capture in flight) was answered by that check, which read the cluster
    before the request."""
    worker, entered, release = held_capture_worker
    await go_live(env, worker, store, messagewall, MW)
    before = (await status_of(env, MW, MW)).checks
    patch_claim(sandbox, store, MW, MW, {"spec": {"lambdaMemory": 512}})
    handle = drift_handle(env, MW, MW)
    await handle.signal(DriftWorkflow.check, CheckRequest(reason="test"))
    assert await asyncio.to_thread(entered.wait, HANG)

    update = await handle.start_update(
        DriftWorkflow.check_now, CheckRequest(reason="test"),
        wait_for_stage=WorkflowUpdateStage.ACCEPTED,
    )  # fmt: skip
    release.set()
    st = await update_result(update)

    # Not the check whose capture was in flight: a check that started after the request.
    assert st.checks >= before + 2
    assert (st.captures, st.state) == (1, "in-sync")


@SQLITE_ONLY
async def test_a_revert_of_an_aws_edit_counts_once_a_check_agrees(
    env: WorkflowEnvironment,
    cluster_worker: Worker,
    store: SqlStore,
    sandbox: Sandbox,
    messagewall: AuthoringRepo,
) -> None:
    """Defect 10: re-applying identical content bumped no generation, Crossplane never
    reconciled, and the unit read `reverted` forever."""
    config = yaml.safe_load(messagewall.read("tributary.yaml"))
    config["spaces"][MW]["drift"] = "revert"
    messagewall.write("tributary.yaml", yaml.safe_dump(config, sort_keys=False))
    messagewall.commit("dev-east: revert drift")
    await go_live(env, cluster_worker, store, messagewall, MW)
    sandbox.aws.lambda_().update_function_configuration(FunctionName=MW_API, MemorySize=256)
    sandbox.crossplane.observe_now()  # the provider's poll: AWS into status.atProvider

    st = await check_now(env, MW, MW)

    assert st.state == "reverting"
    await eventually(lambda: memories(sandbox), lambda m: m == (128, 128), what="AWS put back")
    confirmed = await eventually(
        lambda: check_now(env, MW, MW), lambda s: s.state != "reverting", what="a check"
    )
    # The first check that agrees says "reverted" (the revert's apply asks for one
    # itself, so by now a later check may already say "in-sync").
    assert confirmed.state in ("reverted", "in-sync")
    assert numbers(store, MW, MW) == [1]
    [record] = store.list_drift(MW, MW)
    assert record.state in ("reverted", "in-sync")
    assert record.last_drift is not None
    assert [f.path for f in record.last_drift.fields] == ["spec.lambdaMemory"]


# ---- a check that fails shows while it retries ---------------------------------------------


@SQLITE_ONLY
async def test_an_api_outage_shows_as_failing_then_recovers(
    env: WorkflowEnvironment,
    cluster_worker: Worker,
    store: SqlStore,
    sandbox: Sandbox,
    messagewall: AuthoringRepo,
) -> None:
    """A drift check is a local activity: its failed attempts are invisible until the
    last one. During an API outage ``drift status`` says ``failing`` (with the error,
    redacted) as soon as one attempt fails, not "in-sync" with an ever older last
    check; the next good check puts the real state back."""
    await go_live(env, cluster_worker, store, messagewall, MW)
    rule = sandbox.peer.peer.inject_faults(
        503,
        count=None,
        method="GET",
        path=r"/serverlesseventappclaims/messagewall-dev-east$",
        message="upstream https://ops:hunter2-sekrit@proxy.example/ unavailable",
    )
    try:
        await signal_drift(env.client, cluster_worker.task_queue, MW, MW, "watch")

        async def shown() -> dict[str, Any]:
            [record] = await asyncio.to_thread(store.list_drift, MW, MW)
            return _drift_json(record, MW, MW)

        failing = await eventually(
            shown, lambda row: row["state"] == "failing", what="drift status shows failing"
        )
        assert rule.hits >= 1
        assert "503" in failing["message"]
        assert "unavailable" in failing["message"]
        assert "hunter2-sekrit" not in failing["message"]
        assert failing["drift"] == []
        assert (await status_of(env, MW, MW)).state == "failing"
    finally:
        sandbox.peer.peer.clear_faults()
    recovered = await eventually(
        shown, lambda row: row["state"] != "failing", what="the next good check"
    )
    assert (recovered["state"], recovered["drift"]) == ("in-sync", [])
