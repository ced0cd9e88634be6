"""Requests that meet a workflow at the end of its life: as it completes, or as it
continues as new.

Each test sends requests in a tight loop while the workflow ends (the idle timer of a
singleton loop, pushed by skipping time) or hands over (continue-as-new), then counts:
every request is acted on or answered exactly once, and none fails. These are the
windows of issue 15 (``RPCError: Completed workflow`` at a signal-with-start) and of
issue 9.3 (``SyncPRWorkflow`` dropping requests, and deadlocking an update, at
continue-as-new).
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import uuid
from collections.abc import AsyncIterator, Awaitable, Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from pathlib import Path
from typing import Any, TypeVar

import pytest
import sqlalchemy
from temporalio.api.enums.v1 import EventType, WorkflowTaskFailedCause
from temporalio.api.filter.v1 import WorkflowExecutionFilter
from temporalio.api.workflowservice.v1 import ListClosedWorkflowExecutionsRequest
from temporalio.client import WorkflowExecutionStatus, WorkflowHandle, WorkflowUpdateStage
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker
from temporalio.worker.workflow_sandbox import SandboxedWorkflowRunner, SandboxRestrictions

import workflows.apply
import workflows.sync
from activities.drift import DriftActivities
from adapters.kube import KubeClient
from adapters.source import SourceCache
from authority.sql import SqlStore
from client.loops import (
    signal_drift,
    signal_sync,
    sync_now,
    update_with_start,
)
from domain.authority import UnitStateChange
from domain.drift import (
    CaptureOutcome,
    CaptureRequest,
    CheckRequest,
    DriftCheckInput,
    DriftCheckResult,
    DriftStatus,
)
from domain.naming import apply_id, drift_id, sync_pr_id
from domain.sync import SyncNowInput, SyncPRInput, SyncResult
from tests.support import HANG, AuthoringRepo, authority_change, eventually, git, make_repo
from tests.workflows.helpers import ask, publish, skip
from tests.workflows.test_drift import check_starts, go_live, small_runs_worker
from worker import ACTIVITY_THREADS, WORKFLOWS, activities
from workflows.apply import ApplyWorkflow
from workflows.sync import SYNCS_PER_HISTORY, SyncPRWorkflow

# fixtures of the drift tests, used here too
__all__ = ["check_starts", "small_runs_worker"]

UNHANDLED_COMMAND = WorkflowTaskFailedCause.WORKFLOW_TASK_FAILED_CAUSE_UNHANDLED_COMMAND
TIMER_STARTED = EventType.EVENT_TYPE_TIMER_STARTED
# what a request leaves in a run's history
REQUESTS = (
    EventType.EVENT_TYPE_WORKFLOW_EXECUTION_SIGNALED,
    EventType.EVENT_TYPE_WORKFLOW_EXECUTION_UPDATE_ACCEPTED,
)
SQLITE_ONLY = pytest.mark.parametrize("store_url", ["sqlite"], indirect=True)
T = TypeVar("T")
BURSTS = 30
PER_BURST = 4
SYNC_BURSTS = 8


@pytest.fixture
async def short_runs(
    env: WorkflowEnvironment,
    store: SqlStore,
    cache: SourceCache,
    executor: ThreadPoolExecutor,
    monkeypatch: pytest.MonkeyPatch,
) -> AsyncIterator[Worker]:
    """A worker with every real activity whose loops hand over (continue as new) after
    a few requests instead of a hundred, so a test meets many hand-overs.

    The limits are module constants of the workflows; the sandbox re-imports workflow
    modules for every run, so these two pass through to see the patched constants.
    """
    monkeypatch.setattr(workflows.apply, "REQUESTS_PER_RUN", 3)
    monkeypatch.setattr(workflows.apply, "OUTCOMES_KEPT", 10_000)  # every outcome, to count
    monkeypatch.setattr(workflows.sync, "SYNCS_PER_HISTORY", 2)
    task_queue = f"tq-{uuid.uuid4()}"
    w = Worker(
        env.client,
        task_queue=task_queue,
        workflows=list(WORKFLOWS),
        activities=activities(store, cache, KubeClient(), env.client, task_queue),
        activity_executor=executor,
        max_concurrent_activities=ACTIVITY_THREADS,
        workflow_runner=SandboxedWorkflowRunner(
            restrictions=SandboxRestrictions.default.with_passthrough_modules(
                "workflows.apply", "workflows.sync"
            )
        ),
    )
    async with w:
        yield w


async def runs_of(env: WorkflowEnvironment, workflow_id: str) -> list[tuple[str, int]]:
    """(run id, status) of every closed run of ``workflow_id``, oldest first."""
    resp = await env.client.workflow_service.list_closed_workflow_executions(
        ListClosedWorkflowExecutionsRequest(
            namespace=env.client.namespace,
            maximum_page_size=1000,
            execution_filter=WorkflowExecutionFilter(workflow_id=workflow_id),
        )
    )
    ordered = sorted(resp.executions, key=lambda e: e.start_time.ToDatetime())
    return [(e.execution.run_id, e.status) for e in ordered]


async def history(handle: WorkflowHandle[Any, Any]) -> list[Any]:
    return [e async for e in handle.fetch_history_events()]


def seen(events: list[Any], kind: EventType.ValueType) -> int:
    return sum(1 for e in events if e.event_type == kind)


# ---- apply: signal-with-start while the loop completes ------------------------------------


async def statuses(env: WorkflowEnvironment, workflow_id: str) -> set[int]:
    """How the closed runs of ``workflow_id`` ended (completed, continued as new)."""
    return {status for _, status in await runs_of(env, workflow_id)}


ENDS = {
    WorkflowExecutionStatus.COMPLETED.value,
    WorkflowExecutionStatus.CONTINUED_AS_NEW.value,
}


def spread(burst: int) -> float:
    """Seconds between the requests of a burst: none in the first ``BURSTS``; wider in
    each burst after, sent only when those missed a window (a loop that completes, or one
    that hands over) because on a slow machine a whole burst reaches the loop in one
    workflow task and counts as one request."""
    return min(1.0, 0.1 * max(0, burst - BURSTS + 1))


@SQLITE_ONLY
async def test_apply_requests_that_meet_the_loop_as_it_ends_are_each_handled_once(
    env: WorkflowEnvironment, short_runs: Worker, store: SqlStore
) -> None:
    """``tributary apply`` and ``delete`` meet ``apply:{space}:{unit}`` as it completes
    idle or continues as new (here after every 3 requests), over and over.

    The unit does not exist, so each request fails fast at its first activity: the loop
    handles it and idles, and skipping time ends it while the next burst is on its way.
    Before the fix a signal-with-start could fail there with "Completed workflow" or
    "already started" (two starts racing to the closed workflow). ``BURSTS`` bursts, then
    more (at most twice as many) until the loop has both completed and handed over.
    """
    space, unit = "nowhere", "ghost"
    workflow_id = apply_id(space, unit)
    sent: list[str] = []

    async def later(delay: float, call: Awaitable[tuple[str, str]]) -> tuple[str, str]:
        await asyncio.sleep(delay)
        return await call

    for burst in range(3 * BURSTS):
        if burst >= BURSTS and await statuses(env, workflow_id) >= ENDS:
            break
        ticking = asyncio.create_task(skip(env, timedelta(minutes=3)))
        await asyncio.sleep(0.002 * (burst % 10))  # land a little later each burst
        asked = await asyncio.gather(
            *(
                later(
                    spread(burst) * i,
                    ask(
                        env,
                        short_runs,
                        space,
                        unit,
                        burst + 1,
                        action="delete" if i % 2 else "apply",
                    ),
                )
                for i in range(PER_BURST)
            )
        )
        sent += [request_id for _, request_id in asked]
        await ticking
    ended = await statuses(env, workflow_id)  # the runs that ended while requests came
    handle = env.client.get_workflow_handle_for(ApplyWorkflow.run, workflow_id)
    await skip(env, timedelta(minutes=3))
    await eventually(
        handle.describe,
        lambda d: d.status == WorkflowExecutionStatus.COMPLETED,
        what="the loop completes",
    )

    runs = await runs_of(env, workflow_id)
    answered: list[str] = []
    for run_id, status in runs:
        if status == WorkflowExecutionStatus.COMPLETED.value:
            # the last run of a chain holds every outcome of the chain
            result = await env.client.get_workflow_handle_for(
                ApplyWorkflow.run, workflow_id, run_id=run_id
            ).result(follow_runs=False)
            answered += [i for o in result.outcomes for i in o.request_ids]
    assert sorted(answered) == sorted(sent)  # each exactly once, none lost
    assert ended == ENDS, (
        f"in {len(sent) // PER_BURST} bursts the runs ended as {ended}: the loop never "
        "completed or never handed over while requests came, and nothing was tested"
    )


# ---- sync PR: continue-as-new and the end of an idle loop ----------------------------------

UNIT = "messagewall-dev-east"
SPACE = "messagewall-dev-east"


@pytest.fixture
async def sync_space(
    env: WorkflowEnvironment, worker: Worker, store: SqlStore, tmp_path: Path
) -> AuthoringRepo:
    """The message wall (5 s debounce) published, and one authority change to sync."""
    repo = make_repo(tmp_path, "messagewall")
    repo.edit("tributary.yaml", lambda text: text + "sync:\n  debounce: 5s\n")
    repo.commit("a 5 s debounce")
    await publish(env, worker, repo, spaces=[SPACE])
    authority_change(store, SPACE, UNIT, "drift-capture", spec__lambdaMemory=512)
    return repo


@contextlib.contextmanager
def spaces_locked(store_url: str) -> Iterator[sqlalchemy.Connection]:
    """Hold the authority's ``spaces`` table so that every read of it waits: a sync
    that starts meanwhile stays inside its push activity until the lock goes."""
    engine = sqlalchemy.create_engine(store_url.replace("postgresql://", "postgresql+psycopg://"))
    try:
        with engine.connect() as conn:
            conn.execute(sqlalchemy.text("LOCK TABLE spaces IN ACCESS EXCLUSIVE MODE"))
            yield conn
            conn.rollback()
    finally:
        engine.dispose()


def waiting_for_lock(conn: sqlalchemy.Connection) -> int:
    return int(
        conn.execute(
            sqlalchemy.text("SELECT count(*) FROM pg_locks WHERE NOT granted")
        ).scalar_one()
    )


async def run_inputs(env: WorkflowEnvironment, workflow_id: str) -> list[SyncPRInput]:
    """The input of every run of ``sync-pr:{space}``, oldest first (one chain)."""
    handle = env.client.get_workflow_handle(workflow_id)
    first = (await handle.describe()).raw_description.workflow_execution_info
    run_id: str | None = first.first_run_id or None
    converter = env.client.data_converter
    out: list[SyncPRInput] = []
    while run_id:
        events = [
            e
            async for e in env.client.get_workflow_handle(
                workflow_id, run_id=run_id
            ).fetch_history_events()
        ]
        started = events[0].workflow_execution_started_event_attributes
        [inp] = await converter.decode(started.input.payloads, [SyncPRInput])
        out.append(inp)
        last = events[-1]
        run_id = (
            last.workflow_execution_continued_as_new_event_attributes.new_execution_run_id
            if last.event_type == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_CONTINUED_AS_NEW
            else None
        )
    return out


def pushes(events: list[Any]) -> int:
    return sum(
        1
        for e in events
        if e.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED
        and e.activity_task_scheduled_event_attributes.activity_type.name == "sync.push"
    )


@contextlib.asynccontextmanager
async def last_sync_in_flight(
    env: WorkflowEnvironment, worker: Worker, store_url: str
) -> AsyncIterator[tuple[WorkflowHandle[Any, Any], asyncio.Task[SyncResult]]]:
    """A sync loop one sync away from its hand-over, that sync asked for with
    ``sync_now`` and held inside its push until the block ends."""
    handle = await env.client.start_workflow(
        SyncPRWorkflow.run,
        SyncPRInput(space=SPACE, syncs=SYNCS_PER_HISTORY - 1),
        id=sync_pr_id(SPACE),
        task_queue=worker.task_queue,
    )
    await eventually(
        lambda: history(handle),
        lambda events: seen(events, EventType.EVENT_TYPE_ACTIVITY_TASK_COMPLETED) == 1,
        what="the run read its settings",
    )
    with spaces_locked(store_url) as conn:
        first = asyncio.create_task(sync_now(env.client, worker.task_queue, SPACE, SyncNowInput()))
        await eventually(
            lambda: asyncio.to_thread(waiting_for_lock, conn),
            lambda n: n > 0,
            what="the run's last sync waits inside its push",
        )
        yield handle, first


@pytest.mark.parametrize("store_url", ["postgresql"], indirect=True)
async def test_sync_request_during_the_last_sync_of_a_run_goes_along_to_the_next(
    env: WorkflowEnvironment,
    worker: Worker,
    store: SqlStore,
    store_url: str,
    sync_space: AuthoringRepo,
) -> None:
    """Issue 9.3: before the fix, continue-as-new carried only ``runs``: a request that
    came during the run's last sync was dropped, and its change never reached Git."""
    async with last_sync_in_flight(env, worker, store_url) as (handle, first):
        await signal_sync(env.client, worker.task_queue, SPACE, "capture")
        await eventually(
            lambda: history(handle),
            lambda events: seen(events, EventType.EVENT_TYPE_WORKFLOW_EXECUTION_SIGNALED) == 1,
            what="the request reached the run",
        )
    assert (await asyncio.wait_for(first, timeout=HANG)).action == "opened"

    inputs = await eventually(
        lambda: run_inputs(env, sync_pr_id(SPACE)), lambda runs: len(runs) == 2, what="hand-over"
    )
    assert [(i.syncs, i.requests, i.reasons) for i in inputs] == [
        (SYNCS_PER_HISTORY - 1, 0, []),
        (SYNCS_PER_HISTORY, 1, ["capture"]),
    ]
    # the next run syncs the request after its debounce
    current = env.client.get_workflow_handle(sync_pr_id(SPACE))
    await eventually(
        lambda: history(current),
        lambda events: seen(events, EventType.EVENT_TYPE_TIMER_STARTED) == 1,
        what="the next run debounces the request",
    )
    await skip(env, timedelta(seconds=6))
    events = await eventually(lambda: history(current), lambda events: pushes(events) == 1)
    assert pushes(events) == 1


@pytest.mark.parametrize("store_url", ["postgresql"], indirect=True)
async def test_sync_now_during_the_last_sync_of_a_run_is_answered(
    env: WorkflowEnvironment,
    worker: Worker,
    store: SqlStore,
    store_url: str,
    sync_space: AuthoringRepo,
) -> None:
    """Issue 9.3: before the fix, a ``sync_now`` that came during the run's last sync
    deadlocked: the loop waited for every handler to finish before handing over, and
    the handler waited for a sync that only the loop performs."""
    async with last_sync_in_flight(env, worker, store_url) as (handle, first):
        second = asyncio.create_task(sync_now(env.client, worker.task_queue, SPACE, SyncNowInput()))
        await eventually(
            lambda: history(handle),
            lambda events: (
                seen(events, EventType.EVENT_TYPE_WORKFLOW_EXECUTION_UPDATE_ACCEPTED) == 2
            ),
            what="the second update reached the run",
        )
    done = await asyncio.wait_for(asyncio.gather(first, second), timeout=HANG)
    # the second sync found the PR as the first left it
    assert [r.action for r in done] == ["opened", "unchanged"]
    assert done[0].pr == done[1].pr
    # served in the run it came to, which then hands over
    inputs = await eventually(
        lambda: run_inputs(env, sync_pr_id(SPACE)), lambda runs: len(runs) == 2, what="hand-over"
    )
    assert [(i.syncs, i.requests) for i in inputs] == [
        (SYNCS_PER_HISTORY - 1, 0),
        (SYNCS_PER_HISTORY + 1, 0),
    ]


async def sync_run(env: WorkflowEnvironment, workflow_id: str, run_id: str) -> dict[str, Any]:
    """What one run of the sync loop received and left: its input, its requests not
    synced by one of its own pushes, how it ended, and the run it handed over to."""
    events = await history(env.client.get_workflow_handle(workflow_id, run_id=run_id))
    started = events[0].workflow_execution_started_event_attributes
    [inp] = await env.client.data_converter.decode(started.input.payloads, [SyncPRInput])
    # a push resets the count of requests in the same workflow task that schedules it
    last_push = max(
        (
            i
            for i, e in enumerate(events)
            if e.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED
            and e.activity_task_scheduled_event_attributes.activity_type.name == "sync.push"
        ),
        default=-1,
    )
    after = seen(events[last_push + 1 :], EventType.EVENT_TYPE_WORKFLOW_EXECUTION_SIGNALED)
    last = events[-1]
    return {
        "input": inp,
        "signals": seen(events, EventType.EVENT_TYPE_WORKFLOW_EXECUTION_SIGNALED),
        "unsynced": after + (inp.requests if last_push < 0 else 0),
        "next": last.workflow_execution_continued_as_new_event_attributes.new_execution_run_id
        if last.event_type == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_CONTINUED_AS_NEW
        else None,
    }


@SQLITE_ONLY
async def test_sync_requests_in_a_tight_loop_across_ends_and_hand_overs(
    env: WorkflowEnvironment, short_runs: Worker, store: SqlStore, sync_space: AuthoringRepo
) -> None:
    """Captures (``request`` signals) and ``tributary sync-pr`` (``sync_now``) keep coming
    while the space's sync loop ends idle or hands over (here every 2 syncs): every
    update is answered, every request is synced by the run it came to or carried to
    the next, and the last change reaches the branch."""
    workflow_id = sync_pr_id(SPACE)
    memory = 512
    requests = 0
    answers: list[SyncResult] = []
    for burst in range(3 * SYNC_BURSTS):
        # more bursts (at most twice as many) until the loop has both ended and handed over
        if burst >= SYNC_BURSTS and await statuses(env, workflow_id) >= ENDS:
            break
        ticking = asyncio.create_task(skip(env, timedelta(minutes=11)))  # debounce and idle
        await asyncio.sleep(0.002 * (burst % SYNC_BURSTS))
        memory += 64
        authority_change(store, SPACE, UNIT, "drift-capture", spec__lambdaMemory=memory)
        now = asyncio.create_task(
            sync_now(env.client, short_runs.task_queue, SPACE, SyncNowInput())
        )
        for reason in ("capture", "set", "rollback", "capture", "set"):
            # before, during and after the sync the update asked for
            await signal_sync(env.client, short_runs.task_queue, SPACE, reason)
            requests += 1
            await asyncio.sleep(0.1)
        answers.append(await now)
        await ticking
    await skip(env, timedelta(minutes=11))
    handle = env.client.get_workflow_handle_for(SyncPRWorkflow.run, workflow_id)
    await eventually(
        handle.describe,
        lambda d: d.status == WorkflowExecutionStatus.COMPLETED,
        what="the loop completes",
    )

    assert {a.action for a in answers} <= {"opened", "updated", "unchanged"}
    runs = {
        run_id: await sync_run(env, workflow_id, run_id)
        for run_id, _ in await runs_of(env, workflow_id)
    }
    assert sum(r["signals"] for r in runs.values()) == requests  # every request delivered
    for run in runs.values():
        if run["next"] is None:
            assert run["unsynced"] == 0  # completed with nothing left unsynced
        else:
            assert runs[run["next"]]["input"].requests == run["unsynced"]  # carried along
    assert any(r["next"] for r in runs.values()), "no hand-over happened: nothing was tested"
    assert sum(1 for r in runs.values() if r["next"] is None) > 1, "the loop never ended"
    # the last change is on the sync branch
    overlay = git(
        sync_space.remote,
        "show",
        f"tributary/sync/{SPACE}:infra/claims/overlays/dev-east/kustomization.yaml",
    )
    assert f"value: {memory}\n" in overlay


# ---- drift: requests while the loop ends ---------------------------------------------------

DRIFT_BURSTS = BURSTS // 5


async def met_at_the_end(env: WorkflowEnvironment, workflow_id: str) -> int:
    """How many closed runs of ``workflow_id`` were met by a request as they ended: the
    server refused a task that closed the run because a request had come meanwhile, or
    a request came after a completed run's last timer started (``END_GRACE``, after the
    check that found the unit inactive)."""
    met = 0
    for run_id, status in await runs_of(env, workflow_id):
        events = await history(env.client.get_workflow_handle(workflow_id, run_id=run_id))
        timers = [i for i, e in enumerate(events) if e.event_type == TIMER_STARTED]
        in_grace = (
            events[timers[-1] + 1 :]
            if timers and status == WorkflowExecutionStatus.COMPLETED
            else []
        )
        if any(
            e.event_type == EventType.EVENT_TYPE_WORKFLOW_TASK_FAILED
            and e.workflow_task_failed_event_attributes.cause == UNHANDLED_COMMAND
            for e in events
        ) or any(e.event_type in REQUESTS for e in in_grace):
            met += 1
    return met


@SQLITE_ONLY
async def test_drift_requests_that_meet_the_loop_as_it_ends_are_each_answered(
    env: WorkflowEnvironment,
    small_runs_worker: Worker,
    store: SqlStore,
    messagewall: AuthoringRepo,
) -> None:
    """A drift loop ends when its unit is no longer active. ``drift check`` (signal, then
    ``check_now``), ``drift capture`` (``capture_now``) and the watch's and sweeps'
    ``check`` signals that meet it then are each answered: by the ending run, or by a
    run they start (which checks, finds the unit inactive, and ends too)."""
    space = unit = "messagewall-dev-east"
    await go_live(env, small_runs_worker, store, messagewall, space)
    store.commit([], states=[UnitStateChange(space=space, slug=unit, state="orphaned")])
    tq = small_runs_worker.task_queue
    workflow_id = drift_id(space, unit)

    async def check() -> DriftStatus:
        return await update_with_start(
            env.client,
            lambda: signal_drift(env.client, tq, space, unit, "cli"),
            workflow_id,
            "check_now",
            CheckRequest(reason="cli"),
            DriftStatus,
        )

    async def capture() -> CaptureOutcome:
        return await update_with_start(
            env.client,
            lambda: signal_drift(env.client, tq, space, unit, signal=None),
            workflow_id,
            "capture_now",
            CaptureRequest(tag="break-glass", incident="INC-1"),
            CaptureOutcome,
        )

    async def later(delay: float, call: Awaitable[T]) -> T:
        await asyncio.sleep(delay)
        return await call

    checks: list[DriftStatus] = []
    captures: list[CaptureOutcome] = []
    for burst in range(3 * DRIFT_BURSTS):
        # more bursts (at most twice as many) until a request has met a run's end
        if burst >= DRIFT_BURSTS and await met_at_the_end(env, workflow_id):
            break
        # staggered a few milliseconds apart: some land during the run's last check
        done = await asyncio.wait_for(
            asyncio.gather(
                later(0, check()),
                later(0.003, signal_drift(env.client, tq, space, unit, "watch")),
                later(0.006, capture()),
                later(0.009 + 0.001 * burst, check()),
                later(0.012, signal_drift(env.client, tq, space, unit, "sweep", "sweep-x")),
                later(0.015 + 0.001 * burst, capture()),
            ),
            timeout=HANG,
        )
        checks += [done[0], done[3]]
        captures += [done[2], done[5]]

    assert len(checks) == len(captures) >= 2 * DRIFT_BURSTS
    assert {c.state for c in checks} == {"paused"}  # "the unit is orphaned or deleted"
    assert {c.captured for c in captures} == {False}
    await eventually(
        env.client.get_workflow_handle(workflow_id).describe,
        lambda d: d.status == WorkflowExecutionStatus.COMPLETED,
        what="the last loop ends",
    )
    assert await met_at_the_end(env, workflow_id), (
        f"in {len(checks) // 2} bursts no request met a run as it ended: nothing was tested"
    )


@pytest.mark.parametrize("store_url", ["postgresql"], indirect=True)
async def test_drift_updates_during_the_last_check_of_an_ending_loop_are_answered(
    env: WorkflowEnvironment,
    small_runs_worker: Worker,
    store: SqlStore,
    store_url: str,
    messagewall: AuthoringRepo,
) -> None:
    """``capture_now`` and ``check_now`` that arrive while the check that finds the unit
    inactive is in flight: the loop ends after that check, and must answer both first
    (before the fix the capture was never answered: it failed as the run completed)."""
    space = unit = "messagewall-dev-east"
    await go_live(env, small_runs_worker, store, messagewall, space)
    store.commit([], states=[UnitStateChange(space=space, slug=unit, state="orphaned")])
    tq = small_runs_worker.task_queue
    workflow_id = drift_id(space, unit)
    handle = env.client.get_workflow_handle(workflow_id)

    def ask_now(update: str, arg: Any, result_type: type[T]) -> Awaitable[T]:
        if env.supports_time_skipping_v1:
            # The test server hands the run updates admitted mid-check: it must answer them.
            return handle.execute_update(update, arg, result_type=result_type)
        # A real server aborts an update that meets the run as it completes ("workflow
        # update was aborted by closing workflow", NOT_FOUND); the CLI's
        # update_with_start sends it again, to a run it starts.
        return update_with_start(
            env.client,
            lambda: signal_drift(env.client, tq, space, unit, signal=None),
            workflow_id,
            update,
            arg,
            result_type,
        )

    engine = sqlalchemy.create_engine(store_url.replace("postgresql://", "postgresql+psycopg://"))
    try:
        with engine.connect() as conn:
            conn.execute(sqlalchemy.text("LOCK TABLE units IN ACCESS EXCLUSIVE MODE"))
            await signal_drift(env.client, tq, space, unit, "watch")
            await eventually(
                lambda: asyncio.to_thread(waiting_for_lock, conn),
                lambda n: n > 0,
                what="the check waits for the authority",
            )
            capture = asyncio.ensure_future(
                ask_now("capture_now", CaptureRequest(tag="break-glass"), CaptureOutcome)
            )
            check = asyncio.ensure_future(
                ask_now("check_now", CheckRequest(reason="cli"), DriftStatus)
            )
            await asyncio.sleep(0.5)  # both reach the server (there is no "admitted" wait)
            conn.rollback()
    finally:
        engine.dispose()
    captured, checked = await asyncio.wait_for(asyncio.gather(capture, check), timeout=HANG)
    assert (captured.captured, captured.message) == (False, "unit inactive")
    assert checked.state == "paused"
    await eventually(
        handle.describe,
        lambda d: d.status == WorkflowExecutionStatus.COMPLETED,
        what="the loop of an inactive unit completed",
    )


@SQLITE_ONLY
async def test_drift_updates_accepted_during_the_final_check_are_answered(
    env: WorkflowEnvironment,
    small_runs_worker: Worker,
    store: SqlStore,
    messagewall: AuthoringRepo,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """``capture_now`` and ``check_now`` accepted while the check that finds the unit
    orphaned is still running (the check outlasts a workflow task, so the updates are
    accepted mid-check): the loop answers both before it ends. Before the drain they
    were left waiting as the run completed."""
    space = unit = "messagewall-dev-east"
    await go_live(env, small_runs_worker, store, messagewall, space)
    store.commit([], states=[UnitStateChange(space=space, slug=unit, state="orphaned")])
    entered, release = threading.Event(), threading.Event()
    original = DriftActivities._check

    def held(self: DriftActivities, inp: DriftCheckInput) -> DriftCheckResult:
        entered.set()
        release.wait(timeout=HANG)
        return original(self, inp)

    monkeypatch.setattr(DriftActivities, "_check", held)
    handle = env.client.get_workflow_handle(drift_id(space, unit))
    try:
        await signal_drift(env.client, small_runs_worker.task_queue, space, unit, "watch")
        assert await asyncio.to_thread(entered.wait, HANG), "the final check never started"
        # Accepted only by a workflow task during the check (the local activity's
        # heartbeat): the requests then wait on a check that is already running.
        capture = await asyncio.wait_for(
            handle.start_update(
                "capture_now",
                CaptureRequest(tag="break-glass"),
                wait_for_stage=WorkflowUpdateStage.ACCEPTED,
                result_type=CaptureOutcome,
            ),
            timeout=HANG,
        )
        check = await asyncio.wait_for(
            handle.start_update(
                "check_now",
                CheckRequest(reason="cli"),
                wait_for_stage=WorkflowUpdateStage.ACCEPTED,
                result_type=DriftStatus,
            ),
            timeout=HANG,
        )
        assert not release.is_set()
    finally:
        release.set()
    try:
        captured, checked = await asyncio.wait_for(
            asyncio.gather(capture.result(), check.result()), timeout=HANG
        )
    except TimeoutError:
        pytest.fail("updates accepted during the final check were never answered")
    assert (captured.captured, captured.action, captured.message) == (
        False,
        "none",
        "unit inactive",
    )
    assert checked.state == "paused"
    await eventually(
        handle.describe,
        lambda d: d.status == WorkflowExecutionStatus.COMPLETED,
        what="the loop of an orphaned unit completed",
    )
