"""Reach the long-running workflows (``apply:{space}:{unit}``, ``drift:{space}:{unit}``,
``sync-pr:{space}``) from any client: the CLI, the Claim watcher, the worker's
Temporal activities and the tests. Signal-with-start and update-with-start.

A request can meet its workflow just as the workflow completes (an idle loop ends).
The workflows drain what arrived before they complete; here, a signal-with-start or
an update that the server answers with "completed" is sent again, and then starts
(or reaches) the next run. Nothing a caller asks for is lost or answered with an
error for that reason.

A run whose workflow task keeps failing (a worker too slow for the deadlock
detector, or a bug being fixed) cannot answer a query or accept an update: the
server says "Workflow Task in failed state" until a retried task succeeds. That is
an answer for now, not for good, so queries and updates wait it out, bounded.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, TypeVar

from temporalio.client import Client
from temporalio.common import WorkflowIDConflictPolicy
from temporalio.exceptions import WorkflowAlreadyStartedError
from temporalio.service import RPCError, RPCStatusCode

from client.contract import (
    APPLY_REQUEST_SIGNAL,
    APPLY_WORKFLOW,
    DRIFT_CHECK_SIGNAL,
    DRIFT_WORKFLOW,
    SYNC_NOW_UPDATE,
    SYNC_PR_WORKFLOW,
    SYNC_REQUEST_SIGNAL,
    search_attributes,
)
from domain.apply import ApplyInput, RequestApplyInput
from domain.drift import CheckRequest, DriftInput, DriftStatus
from domain.naming import apply_id, drift_id, sync_pr_id
from domain.sync import SyncNowInput, SyncPRInput, SyncRequest, SyncResult

T = TypeVar("T")

# A retry finds the run closed and starts the next one, so one retry nearly always
# does; the bound only keeps a real NOT_FOUND (no such namespace) from looping.
ATTEMPTS = 5
RETRY_PAUSE_SECONDS = 0.05
# A failing workflow task is retried by the server with growing pauses (seconds,
# then up to ten minutes); about five minutes covers a slow worker, not a bug.
NOT_READY_ATTEMPTS = 60
NOT_READY_PAUSE_SECONDS = 5.0
NOT_READY_DETAIL = "temporal.api.errordetails.v1.WorkflowNotReadyFailure"


def not_ready(e: BaseException) -> bool:
    """The run's workflow task is failing, so it can answer no query or update now.

    The server answers FAILED_PRECONDITION with a ``WorkflowNotReadyFailure`` detail
    ("Unable to query workflow due to Workflow Task in failed state.") once a task
    has failed three times in a row; the next task that succeeds ends it.
    """
    if not isinstance(e, RPCError) or e.status != RPCStatusCode.FAILED_PRECONDITION:
        return False
    details = e.grpc_status.details if e.grpc_status else []
    return any(d.type_url.endswith(NOT_READY_DETAIL) for d in details) or (
        "Workflow Task in failed state" in e.message
    )


def not_ready_pause(attempt: int) -> float:
    """Seconds before asking a not-ready run again: quick first, then every 5 s."""
    return min(NOT_READY_PAUSE_SECONDS, 0.5 * attempt)


def completed_meanwhile(e: Exception) -> bool:
    """The workflow's run ended (or began) between the server's look and the delivery.

    A signal-with-start's "is it running?" and its signal are not one step on every
    server: the time-skipping test server answers "Completed workflow" (NOT_FOUND)
    when the run completes in between, and "already started" when another request's
    start won the race (we always ask to use the existing run). An update sent to a
    run that completes before accepting it gets "workflow execution already
    completed" (NOT_FOUND). Each means "ask again": the retry reaches the run that is
    current then, or starts one.
    """
    if isinstance(e, WorkflowAlreadyStartedError):
        return True
    return isinstance(e, RPCError) and e.status in (
        RPCStatusCode.NOT_FOUND,
        RPCStatusCode.ALREADY_EXISTS,
    )


async def until_ready(call: Callable[[], Awaitable[T]]) -> T:
    """``call()`` (a query or update), asked again while the run is not ready."""
    for attempt in range(1, NOT_READY_ATTEMPTS + 1):
        try:
            return await call()
        except RPCError as e:
            if not not_ready(e) or attempt == NOT_READY_ATTEMPTS:
                raise
            await asyncio.sleep(not_ready_pause(attempt))
    raise AssertionError("unreachable")  # pragma: no cover


async def retry_completed(call: Callable[[], Awaitable[T]]) -> T:
    """``call()``, sent again (bounded) while it meets a run that just ended or began,
    and waited out (``until_ready``) while the run's workflow task is failing."""
    for attempt in range(1, ATTEMPTS + 1):
        try:
            return await until_ready(call)
        except (RPCError, WorkflowAlreadyStartedError) as e:
            if not completed_meanwhile(e) or attempt == ATTEMPTS:
                raise
            await asyncio.sleep(RETRY_PAUSE_SECONDS * attempt)
    raise AssertionError("unreachable")  # pragma: no cover


async def update_with_start(
    client: Client,
    start: Callable[[], Awaitable[object]],
    workflow_id: str,
    update: str,
    arg: Any,
    result_type: type[T],
) -> T:
    """Make sure ``workflow_id`` runs (``start``: idempotent, retrying on its own), then
    run an update on it.

    The update goes to the current run, whichever it is (a continue-as-new hands it
    on); when that run completed between the start and the update, the server never
    accepted the update, so both are sent again.
    """

    async def once() -> T:
        await start()
        handle = client.get_workflow_handle(workflow_id)
        result: T = await handle.execute_update(update, arg, result_type=result_type)
        return result

    return await retry_completed(once)


async def _signal_with_start(
    client: Client,
    task_queue: str,
    workflow: str,
    workflow_id: str,
    arg: Any,
    *,
    signal: str | None,
    signal_args: Sequence[Any] = (),
    space: str,
    unit: str | None = None,
    summary: str,
) -> str:
    """Make sure ``workflow_id`` runs and, unless ``signal`` is None, signal it: one
    request, so there is no window between a start and a signal in which the loop
    could complete."""
    await retry_completed(
        lambda: client.start_workflow(
            workflow,
            arg,
            id=workflow_id,
            task_queue=task_queue,
            start_signal=signal,
            start_signal_args=list(signal_args),
            id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
            search_attributes=search_attributes(space, unit),
            static_summary=summary,
        )
    )
    return workflow_id


async def signal_apply(client: Client, task_queue: str, inp: RequestApplyInput) -> str:
    """Signal-with-start ``apply:{space}:{unit}`` with one request."""
    return await _signal_with_start(
        client,
        task_queue,
        APPLY_WORKFLOW,
        apply_id(inp.space, inp.unit),
        ApplyInput(space=inp.space, unit=inp.unit),
        signal=APPLY_REQUEST_SIGNAL,
        signal_args=[inp.request],
        space=inp.space,
        unit=inp.unit,
        summary=f"apply {inp.space}/{inp.unit}",
    )


async def signal_drift(
    client: Client,
    task_queue: str,
    space: str,
    unit: str,
    reason: str = "",
    sweep_id: str = "",
    *,
    signal: str | None = DRIFT_CHECK_SIGNAL,
    interval_seconds: int | None = None,
) -> str:
    """Signal-with-start ``drift:{space}:{unit}``: make sure it runs, and check now
    (``reason``: who asks, ``sweep_id``: the sweep that asks). With
    ``signal=DRIFT_PAUSE_SIGNAL``/``DRIFT_RESUME_SIGNAL`` pause or resume it instead;
    with ``signal=None`` only make sure it runs: a loop that runs gets nothing (no
    signal, no workflow task), and one this starts waits for its timer (a sweep starts
    loops only for units it has just recorded in sync: a first check would repeat it).
    ``interval_seconds``: the space's drift interval, for a loop started without a check
    (where it would learn it): its first tick comes within the unit's own interval."""
    args = [CheckRequest(reason=reason, sweep_id=sweep_id)] if signal == DRIFT_CHECK_SIGNAL else []
    start = (
        DriftInput(space=space, unit=unit)
        if interval_seconds is None
        else DriftInput(
            space=space,
            unit=unit,
            status=DriftStatus(space=space, unit=unit, interval_seconds=interval_seconds),
        )
    )
    return await _signal_with_start(
        client,
        task_queue,
        DRIFT_WORKFLOW,
        drift_id(space, unit),
        start,
        signal=signal,
        signal_args=args,
        space=space,
        unit=unit,
        summary=f"drift {space}/{unit}",
    )


async def signal_sync(
    client: Client, task_queue: str, space: str, reason: str | None = None
) -> str:
    """Signal-with-start ``sync-pr:{space}``: the authority changed outside Git
    (``reason``); with ``reason=None`` only make sure it runs."""
    return await _signal_with_start(
        client,
        task_queue,
        SYNC_PR_WORKFLOW,
        sync_pr_id(space),
        SyncPRInput(space=space),
        signal=None if reason is None else SYNC_REQUEST_SIGNAL,
        signal_args=[] if reason is None else [SyncRequest(reason=reason)],
        space=space,
        summary=f"sync PR {space}",
    )


async def sync_now(client: Client, task_queue: str, space: str, inp: SyncNowInput) -> SyncResult:
    """Run ``sync-pr:{space}`` now (starting it if needed) and answer with its result."""
    return await update_with_start(
        client,
        lambda: signal_sync(client, task_queue, space),
        sync_pr_id(space),
        SYNC_NOW_UPDATE,
        inp,
        SyncResult,
    )
